"""Derivatives from tapes: first and higher orders, Jacobians and Hessians.

The same code serves the real run (eager tapes) and the traced path (tapes inside a
tf.function): :class:`Recorder` runs the body once under ``spec.depth`` nested tapes and
then takes every derivative from them, innermost tape first. Each target's numbers come
back as one frozen :class:`Derivatives` record, whichever path made them.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
from typing import Any, Callable, Iterator, Mapping, Sequence

import tensorflow as tf

from .._i18n import _
from . import seeds
from .sources import Source, is_differentiable_target, leaves
from .why import failed_again as _failed, no_gradient

__all__ = ["Derivatives", "Recorder", "untaped", "watch", "leaves", "is_differentiable_target", "pfor_failed"]

# The tapes of the %%tape cell now running, for tapemagic.watch() inside it.
_ACTIVE: contextvars.ContextVar[tuple[tf.GradientTape, ...] | None] = contextvars.ContextVar(
    "tapemagic_active_tapes", default=None
)
# The ids of what the cell passed to tapemagic.watch(), so a None gradient is not blamed on watching.
_WATCHED: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("tapemagic_watched", default=None)


def watch(*tensors: Any) -> None:
    """Watch tensors on every tape of the running ``%%tape`` cell, as ``tape.watch`` does."""
    tapes = _ACTIVE.get()
    if tapes is None:
        raise RuntimeError(_("tapemagic.watch() works inside a %%tape cell (or a tapemagic.tape call)"))
    for tape in tapes:
        for tensor in tensors:
            tape.watch(tensor)
    watched = _WATCHED.get()
    if watched is not None:
        watched.update(id(tensor) for tensor in tensors)


@contextlib.contextmanager
def untaped() -> Iterator[set[int]]:
    """A run without tapes (its derivatives come from a trace): ``tapemagic.watch`` inside it watches on
    no tape, and the ids of what it was given are collected in the set yielded."""
    manual: set[int] = set()
    active, watched = _ACTIVE.set(()), _WATCHED.set(manual)
    try:
        yield manual
    finally:
        _ACTIVE.reset(active)
        _WATCHED.reset(watched)


@dataclasses.dataclass(frozen=True)
class Derivatives:
    """One target's numbers, as every path returns them.

    ``orders[k][source]`` is the k-th derivative (k = 1 is the gradient); ``jacobian`` is by
    source; ``hessian`` spans the flattened sources. ``missing`` holds, by source name (or
    "*" for all), why something asked for could not be computed (an op with no gradient).
    """

    value: Any
    orders: Mapping[int, Mapping[str, Any]]
    jacobian: Mapping[str, Any] | None = None
    hessian: Any = None
    missing: Mapping[str, str] = dataclasses.field(default_factory=dict)


class _TapeStack:
    """Nested tapes entered outermost first, stopped innermost first, always closed."""

    def __init__(self, depth: int, auto_watch: bool) -> None:
        self.tapes = [tf.GradientTape(persistent=True, watch_accessed_variables=auto_watch) for _ in range(depth)]
        self._open: list[tf.GradientTape] = []

    def enter(self) -> None:
        for tape in reversed(self.tapes):
            tape.__enter__()
            self._open.append(tape)

    def stop(self, index: int) -> tf.GradientTape:
        """Stop recording on tape ``index`` (0 is innermost) and everything inside it."""
        tape = self.tapes[index]
        while tape in self._open:
            self._open.pop().__exit__(None, None, None)
        return tape

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No tape records inside (a tf.function called here would otherwise be recorded too)."""
        with contextlib.ExitStack() as stack:
            for tape in self._open:
                stack.enter_context(tape.stop_recording())
            yield

    def close(self) -> None:
        while self._open:
            self._open.pop().__exit__(None, None, None)


class Recorder:
    """One run of a body under nested tapes, and the derivatives taken from them.

    Use as ``with Recorder(...) as r: values = r.run(fn); r.first_order(); ... r.rest()``.
    Between ``first_order`` and ``rest`` the outer tapes still record, so ``rest`` can
    differentiate the first derivatives again; ``paused()`` stops them recording meanwhile.
    """

    def __init__(self, spec: Any, sources: list[Source], hvp_tangents: Sequence[Any] | None = None) -> None:
        self.spec = spec
        self.sources = sources
        self.stack = _TapeStack(max(spec.depth, 2 if hvp_tangents is not None else 1), spec.auto_watch)
        self.manual: set[int] = set()
        self.values: dict[str, Any] = {}
        self.first: dict[str, dict[str, Any]] = {}
        self.missing: dict[str, dict[str, str]] = {}
        self.hvp: dict[str, dict[str, Any]] | None = None
        self.watched: list[Any] = []
        self._hvp_tangents = hvp_tangents
        self._flat: dict[str, Any] = {}

    @property
    def float_sources(self) -> list[Source]:
        return [source for source in self.sources if source.differentiable]

    def __enter__(self) -> "Recorder":
        self.stack.enter()
        if self.spec.watch_sources:
            for tape in self.stack.tapes:
                for source in self.float_sources:
                    tape.watch(source.value)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def run(self, function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run the body while the tapes record; ``tapemagic.watch`` reaches them meanwhile."""
        active = _ACTIVE.set(tuple(self.stack.tapes))
        manual = _WATCHED.set(self.manual)
        try:
            self.values = function()
        finally:
            _ACTIVE.reset(active)
            _WATCHED.reset(manual)
        return self.values

    def first_order(self, name_variable: Callable[[Any], str] | None = None, frozen: set[int] = frozenset()) -> None:
        """Gradients from the innermost tape, and the Hessian-vector product from the next one out.
        (Forward-over-reverse would need a ForwardAccumulator open during the run, and under one
        the outer tapes record nothing of the gradient: higher orders and Hessians came out zero.)"""
        inner = self.stack.stop(0)
        self.watched = list(inner.watched_variables())
        if not self.sources and name_variable is not None:
            # No source named: the trainable variables the cell read, in the order it read them
            # (not those of a Keras layer with trainable=False: the tf.Variable inside does not know).
            self.sources[:] = [Source(name_variable(variable), variable) for variable in self.watched
                               if variable.trainable and id(variable) not in frozen]
        sources = self.float_sources
        for name, value in self.values.items():
            self.missing[name] = {}
            self.first[name] = _gradients(inner, value, sources, self.missing[name])
            if self.spec.hessian and self._hvp_tangents is not None:
                # Built while the outer tape still records (--hvp stops it below), so it can be differentiated.
                self._flat[name] = _flat(self.first[name], sources)
        if self._hvp_tangents is not None and sources:
            # H·v = ∂(∇f · v)/∂x: the dot product is recorded by the next tape out, then differentiated.
            dots = {}
            for name, value in self.values.items():
                terms = [tf.reduce_sum(self.first[name][s.name] * tf.cast(t, s.value.dtype))
                         for s, t in zip(sources, self._hvp_tangents) if self.first[name].get(s.name) is not None]
                if terms and is_differentiable_target(value):
                    dots[name] = tf.add_n(terms)
            outer = self.stack.stop(1)
            self.hvp = {}
            for name, dot in dots.items():
                grads = outer.gradient(dot, [s.value for s in sources], unconnected_gradients=tf.UnconnectedGradients.ZERO)
                self.hvp[name] = {s.name: _dense(g) for s, g in zip(sources, grads)}

    def paused(self) -> contextlib.AbstractContextManager[None]:
        return self.stack.paused()

    def rest(self, opaque: str | None = None, skip_jacobian: set[str] = frozenset()) -> dict[str, Derivatives]:
        """Higher orders, Jacobians and Hessians from the tapes, one record per target. ``opaque``:
        why an unconnected higher derivative is unknown rather than zero (see _next_order)."""
        spec, sources = self.spec, self.float_sources
        inner = self.stack.tapes[0]
        orders: dict[str, dict[int, dict[str, Any]]] = {name: {1: first} for name, first in self.first.items()}
        jacobians = {name: None if name in skip_jacobian else
                     (_unless_missing(lambda: _jacobians(inner, value, sources), self.missing[name])
                      or {source.name: None for source in sources})
                     for name, value in self.values.items()} if spec.jacobian else {}
        hessians: dict[str, Any] = {}
        if spec.hessian:
            # The flat gradient, built here while the outer tape still records: a traced Hessian never needs
            # it (at K = 500 sources it cost a third of a warm run), so it is made only for the eager one.
            for name in self.values:
                if name not in self._flat:
                    self._flat[name] = _flat(self.first[name], sources)
        for k in range(1, spec.depth):
            outer = self.stack.stop(k)
            for name in self.values:
                missing = self.missing[name]
                if k < spec.order:
                    orders[name][k + 1] = _next_order(outer, orders[name][k], sources, missing, opaque)
                if k == 1 and spec.hessian and not is_differentiable_target(self.values[name]):
                    hessians[name] = None  # no derivative of a non-tensor (or integer) target, not zeros
                elif k == 1 and spec.hessian and missing:
                    hessians[name] = None  # a missing first derivative is unknown, not zero
                    missing.setdefault("*", next(iter(missing.values())))
                elif k == 1 and spec.hessian:
                    hessians[name] = _unless_missing(lambda: _hessian(outer, self._flat[name], sources, missing, opaque),
                                                     missing)
        return {name: Derivatives(value=value, orders=orders[name], jacobian=jacobians.get(name),
                                  hessian=hessians.get(name), missing=dict(self.missing[name]))
                for name, value in self.values.items()}


def _gradients(tape: tf.GradientTape, value: Any, sources: list[Source], missing: dict[str, str]) -> dict[str, Any]:
    if not sources or not is_differentiable_target(value):
        return {}
    try:
        grads = tape.gradient(value, [source.value for source in sources])
        return {source.name: _dense(grad) for source, grad in zip(sources, grads)}
    except LookupError:
        pass  # an op with no registered gradient: find which sources it blocks, keep the others
    found = {}
    for source in sources:
        try:
            found[source.name] = _dense(tape.gradient(value, source.value))
        except LookupError as error:
            found[source.name] = None
            missing[source.name] = no_gradient(error)
    return found


def _dense(gradient: Any) -> Any:
    """An Embedding's or a gather's gradient comes as IndexedSlices: shown as the dense tensor."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def _unless_missing(compute: Callable[[], Any], missing: dict[str, str]) -> Any:
    """Jacobians and Hessians: None, with the reason kept, where an op has no gradient or
    TensorFlow fails to differentiate it again (a tf.py_function differentiated twice, say)."""
    try:
        return compute()
    except (IndexError, KeyError):
        raise  # the user's own bug in a gradient function, not a missing gradient: theirs to see
    except LookupError as error:
        missing.setdefault("*", no_gradient(error))
    except tf.errors.OpError as error:
        if not tf.executing_eagerly():
            raise  # inside a trace: the caller falls back to eager tapes
        missing.setdefault("*", _failed(error))
    return None


def _next_order(tape: tf.GradientTape, lower: Mapping[str, Any], sources: list[Source], missing: dict[str, str],
                opaque: str | None = None) -> dict[str, Any]:
    """Derivative of each source's previous order with respect to that source, element-wise
    as nested tapes give it. A connected source whose derivative no longer depends on it
    gets zeros, not None: the derivative is mathematically zero there. Unless the cell ran an
    op TensorFlow differentiates only once (``opaque``, a py_function): then an unconnected
    higher derivative is unknown, and stays None with that reason."""
    higher: dict[str, Any] = {}
    for source in sources:
        previous = lower.get(source.name)
        if previous is None:
            continue
        found = _unless_missing(lambda: _dense(tape.gradient(previous, source.value)), missing)
        if found is None and opaque is not None:
            missing.setdefault(source.name, opaque)
        elif found is None and "*" not in missing:
            found = tf.zeros_like(source.value)
        higher[source.name] = found
    return higher


def pfor_failed(error: Exception) -> str:
    """The warning (a note on the result) when pfor cannot vectorize a Jacobian."""
    return _("pfor could not vectorize the Jacobian ({error}: {message}); it was computed one row at a time instead",
             error=type(error).__name__, message=(str(error).splitlines() or [""])[0][:120])


def _jacobian(tape: tf.GradientTape, target: Any, source: Any, **options: Any) -> Any:
    """tape.jacobian vectorized by pfor; where pfor cannot convert an op (a py_function's gradient,
    say), TensorFlow's own row-by-row loop, with a warning that becomes a note on the result.
    Inside a trace, pfor over seeds that seeds.eliminate can take out of matrix products."""
    if not tf.executing_eagerly() and target.shape.is_fully_defined():
        return seeds.jacobian(tape, target, source, **options)  # a pfor failure falls back to eager tapes
    try:
        return _eager_jacobian(tape, target, source, **options)
    except (ValueError, NotImplementedError, tf.errors.OpError) as error:
        if not tf.executing_eagerly():
            raise  # inside a trace: the caller falls back to eager tapes
        logging.getLogger("tensorflow").warning(pfor_failed(error))
    # One vector-Jacobian product per row: output_gradients picks the row, so nothing new must be recorded.
    size = int(tf.size(target))
    rows = [tape.gradient(target, source, output_gradients=tf.reshape(tf.one_hot(i, size, dtype=target.dtype), tf.shape(target)),
                          unconnected_gradients=options.get("unconnected_gradients", tf.UnconnectedGradients.ZERO))
            for i in range(size)]
    return tf.reshape(tf.stack(rows), tf.concat([tf.shape(target), tf.shape(source)], axis=0))


def _eager_jacobian(tape: tf.GradientTape, target: Any, sources: Any, **options: Any) -> Any:
    """An eager tape's ``tape.jacobian(target, sources)``, called inside a tf.function of our own, traced
    without AutoGraph.

    Called eagerly, pfor wraps its vectorized loop in a tf.function of its own with AutoGraph on, whose
    conversion costs tens of milliseconds the first time in a process: measured on plain nested tapes in
    fresh processes (median of 7), a Rosenbrock Hessian's jacobian call took 175 ms against 204 ms at
    n = 100, and 399 ms against 478 ms at n = 2000. Called in a graph, pfor builds the same ops in place.
    The tape's tensors are captured as the function's inputs; nothing is kept after the call. Without
    AutoGraph, an error raised in the user's gradient function reaches them as raised. A target that is
    not a tensor (a variable's assign returns a value read lazily, which inside a graph needs the op that
    made it, and an eager assign does not keep it) is differentiated as TensorFlow does it eagerly."""
    def jacobian() -> Any:
        return tape.jacobian(target, sources, **options)

    if not isinstance(target, tf.Tensor) or not tf.executing_eagerly() or tf.config.functions_run_eagerly():
        return jacobian()
    return tf.function(jacobian, autograph=False)()


def _jacobians(tape: tf.GradientTape, value: Any, sources: list[Source]) -> dict[str, Any]:
    parts = leaves(value)
    if not sources or parts is None or not is_differentiable_target(value):
        return {}
    if len(parts) == 1 and tf.is_tensor(value):
        return {source.name: _jacobian(tape, value, source.value) for source in sources}
    # A structure of tensors: one Jacobian over its flattened parts, in tf.nest order.
    found = {}
    for source in sources:
        shape = tf.concat([[-1], tf.shape(source.value)], 0)
        blocks = [_jacobian(tape, part, source.value) for part in parts]
        if all(block is None for block in blocks):
            found[source.name] = None  # no part depends on the source: None, explained like a gradient
            continue
        # A part that does not depend on the source (y = (sin(x), z**2)): its rows are zero.
        found[source.name] = tf.concat([tf.reshape(block if block is not None else
                                                   tf.zeros(tf.concat([tf.shape(part), tf.shape(source.value)], 0), part.dtype),
                                                   shape)
                                        for block, part in zip(blocks, parts)], axis=0)
    return found


def widest(sources: list[Source]) -> tf.DType:
    """The dtype a Hessian over mixed float sources is computed in (float64 over float32)."""
    dtypes = {source.value.dtype for source in sources}
    return max(dtypes, key=lambda dtype: dtype.size) if dtypes else tf.float32


def _flat(first: Mapping[str, Any], sources: list[Source]) -> Any:
    """The first derivatives of all sources as one vector in the widest dtype, zeros where a source is
    not connected (whether such a zero is right or unknown is decided by why.hessian_unknown)."""
    if not sources:
        return None
    dtype = widest(sources)
    return tf.concat([tf.reshape(tf.cast(first[s.name] if first.get(s.name) is not None else tf.zeros_like(s.value), dtype), [-1])
                      for s in sources], axis=0)


def _hessian(tape: tf.GradientTape, gradient: Any, sources: list[Source], missing: dict[str, Any],
             opaque: str | None) -> Any:
    """All second partials over the flattened sources, in source order (mixed blocks too), from one
    Jacobian of the flat gradient with respect to every source at once. A source the gradient does not
    depend on has zero second derivatives, unless the cell ran an op TensorFlow differentiates only once
    (``opaque``, a py_function): then they are unknown, and the Hessian is None with that reason in
    ``missing``, as _next_order does for -n."""
    if gradient is None:
        return None
    values = [source.value for source in sources]
    total = sum(_size(source.value) for source in sources)
    if not tf.executing_eagerly() and gradient.shape.is_fully_defined():
        return tf.reshape(seeds.jacobian_flat(tape, gradient, values), [total, total])
    if opaque is not None:
        # Which sources the gradient depends on does not depend on the cotangent: one product tells.
        probe = tape.gradient(gradient, values, output_gradients=tf.ones_like(gradient))
        if any(part is None for part in probe):
            missing.setdefault("*", opaque)
            return None
    try:
        blocks = _eager_jacobian(tape, gradient, values, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    except (ValueError, NotImplementedError, tf.errors.OpError) as error:
        if not tf.executing_eagerly():
            raise  # inside a trace: the caller falls back to eager tapes
        logging.getLogger("tensorflow").warning(pfor_failed(error))
        size = int(tf.size(gradient))
        rows = [tape.gradient(gradient, values, output_gradients=tf.one_hot(i, size, dtype=gradient.dtype),
                              unconnected_gradients=tf.UnconnectedGradients.ZERO) for i in range(size)]
        blocks = [tf.stack([row[j] for row in rows]) for j in range(len(values))]
    return tf.concat([tf.reshape(tf.cast(block, gradient.dtype), [total, _size(source.value)])
                      for block, source in zip(blocks, sources)], axis=1)


def _size(value: Any) -> int:
    """Elements of a source, also for a variable made with an unknown shape."""
    known = value.shape.num_elements()
    return int(known) if known is not None else int(tf.size(value))
