"""Run code under nested tf.GradientTapes and collect every derivative asked for.

Knows nothing of IPython: the magic and the Python API both hand it a body (a
compiled cell or a callable) and a :class:`TapeSpec`, and get a :class:`TapeResult`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
from typing import Any, Callable, Iterator, Sequence

import tensorflow as tf

from . import _seeds, _why
from ._cell import Cell
from ._result import SourceInfo, TapeResult, TargetResult, WatchedInfo
from ._sources import Source, is_float
from ._spec import SpecError, TapeSpec

__all__ = ["Engine", "Body", "watch", "differentiate"]

MAX_EXPRESSION_NAME = 24

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
        raise RuntimeError("tapemagic.watch() works inside a %%tape cell (or a tapemagic.tape call)")
    for tape in tapes:
        for tensor in tensors:
            tape.watch(tensor)
    watched = _WATCHED.get()
    if watched is not None:
        watched.update(id(tensor) for tensor in tensors)



@dataclasses.dataclass
class Body:
    """What the engine runs: a compiled cell in a namespace, or a callable of the sources.

    ``run()`` returns the targets' values by name, in order.
    """

    cell: Cell | None = None
    namespace: dict[str, Any] | None = None
    function: Callable[..., Any] | None = None
    targets: tuple[str, ...] = ()
    hvp_vector: Any = None

    def target_names(self) -> tuple[str, ...]:
        if self.targets:
            return self.targets
        if self.function is not None:
            return ("f",)
        assert self.cell is not None
        if self.cell.last is not None:
            # A short final expression names itself (f(x, 6) = 8); a long one is called f.
            text = " ".join((self.cell.last_text or "").split())
            return (text if 0 < len(text) <= MAX_EXPRESSION_NAME else "f",)
        if self.cell.default_target is not None:
            return (self.cell.default_target,)
        raise SpecError(
            "cannot tell what to differentiate: end the cell with an expression or an "
            "assignment (y = ...), or name the target with -t NAME"
        )

    def check_targets(self) -> None:
        """Reject a named target that the cell never assigns, before anything runs."""
        if self.cell is None or not self.targets:
            return
        for name in self.targets:
            if name not in self.cell.assigned and name not in (self.namespace or {}):
                raise SpecError(
                    f"target {name!r} is neither assigned by the cell nor defined: "
                    "check its spelling, or assign it in the cell (e.g. y = x**2)"
                )

    def run(self, sources: Sequence[Source]) -> dict[str, Any]:
        """Run once for real: a cell in the user's namespace, a function on the sources."""
        if self.function is not None:
            return self._returned(self.function(*[source.value for source in sources]))
        assert self.cell is not None and self.namespace is not None
        return self._collect(self.cell.run(self.namespace), self.namespace)

    def replay(self, sources: Sequence[Source], values: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run again without touching the user's namespace (for forward mode, checks, tracing).

        ``values`` replaces sources by name: a cell sees them through a copy of its
        namespace, so only top-level names can be replaced (see :meth:`can_replace`).
        """
        values = values or {}
        if self.function is not None:
            return self._returned(self.function(*[values.get(s.name, s.value) for s in sources]))
        assert self.cell is not None and self.namespace is not None
        namespace = dict(self.namespace)
        namespace.update(values)
        return self._collect(self.cell.run(namespace), namespace)

    def can_replace(self, source: Source) -> bool:
        return self.function is not None or ("." not in source.name and "[" not in source.name)

    def _returned(self, returned: Any) -> dict[str, Any]:
        if isinstance(returned, dict):
            return {str(key): value for key, value in returned.items()}
        return {self.target_names()[0]: returned}

    def _collect(self, last: Any, namespace: dict[str, Any]) -> dict[str, Any]:
        names = self.target_names()
        if not self.targets and self.cell is not None and self.cell.last is not None:
            return {names[0]: last}
        values = {}
        for name in names:
            if name not in namespace:
                raise SpecError(f"the cell ran but did not assign the target {name!r}: assign it, or choose another -t")
            values[name] = namespace[name]
        return values


class _TapeStack:
    """Nested tapes entered outermost first, stopped innermost first, always closed."""

    def __init__(self, depth: int, auto_watch: bool) -> None:
        self.tapes = [tf.GradientTape(persistent=True, watch_accessed_variables=auto_watch) for _ in range(depth)]
        self._open: list[tf.GradientTape] = []

    def __enter__(self) -> "_TapeStack":
        for tape in reversed(self.tapes):
            tape.__enter__()
            self._open.append(tape)
        return self

    def stop(self, index: int) -> tf.GradientTape:
        """Stop recording on tape ``index`` (0 is innermost) and everything inside it."""
        tape = self.tapes[index]
        while tape in self._open:
            self._open.pop().__exit__(None, None, None)
        return tape

    def __exit__(self, *exc: object) -> None:
        while self._open:
            self._open.pop().__exit__(None, None, None)


@contextlib.contextmanager
def _tensorflow_warnings(notes: list[str]) -> Iterator[None]:
    """Turn TensorFlow's Python warnings into notes on the result instead of stderr."""
    logger = logging.getLogger("tensorflow")

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            message = record.getMessage().strip()
            if message and message not in notes:
                notes.append(f"TensorFlow said: {message}")
            return False
        return True

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


class Engine:
    """Differentiates bodies; one per shell (the magic) or per caller (the Python API)."""

    def __init__(self) -> None:
        from ._trace import TraceCache

        self.traces = TraceCache()

    def run(self, spec: TapeSpec, body: Body, sources: list[Source], namespace: dict[str, Any] | None = None) -> TapeResult:
        """Differentiate ``body`` as ``spec`` asks and build the result.

        A cell runs once for real under ``spec.depth`` nested tapes. Jacobians,
        Hessians and higher orders are computed in a traced tf.function where the
        body can be traced, else on the eager tapes; forward mode, --check and --hvp
        re-run the body without touching the namespace. On any exception the
        conversions of sources are undone (unless the cell itself rebound the name)
        and every tape is closed, then it propagates.
        """
        from . import _methods, _trace

        body.check_targets()
        names = body.target_names()
        notes: list[str] = [source.note for source in sources if source.note]
        manual: set[int] = set()
        succeeded = False
        try:
            with _tensorflow_warnings(notes):
                traced = None
                if _trace.wanted(spec, sources) and (body.function is not None or spec.sources):
                    # Traced first, on a copy of the namespace: if it cannot be traced,
                    # the cell still runs for real exactly once, below.
                    traced = self.traces.differentiate(spec, body, sources, notes)
                if traced is not None and body.function is not None:
                    raw = traced
                elif traced is not None:
                    raw = _trace.merge(differentiate(_trace.first_order(spec), body, sources, manual), traced)
                else:
                    raw = differentiate(spec, body, sources, manual)
                extras = _methods.extras(spec, body, raw, names, namespace)
            succeeded = True
        finally:
            if not succeeded:
                _undo_conversions(sources, namespace)
        raw.update(extras)
        notes.extend(raw.pop("method_notes", []))
        return self._result(spec, body, names, sources, raw, manual, notes, namespace)

    def _result(self, spec: TapeSpec, body: Body, names: tuple[str, ...], sources: list[Source],
                raw: dict[str, Any], manual: set[int], notes: list[str], namespace: dict[str, Any] | None) -> TapeResult:
        sources = raw["sources"]
        watched = raw.get("watched", ())
        watched_ids = {id(variable) for variable in watched}
        names_by_id = _variable_names(sources, namespace)
        targets = []
        for name in names:
            value = raw["values"][name]
            derivatives = raw["derivatives"][name]
            reasons = {}
            missing = raw.get("missing", {}).get(name, {})
            for source in sources:
                if source.name in missing and derivatives[1].get(source.name) is None:
                    reasons[source.name] = missing[source.name]
                elif derivatives[1].get(source.name) is None:
                    reasons[source.name] = _why.explain(
                        spec, name, value, source, body.cell, namespace,
                        watched=spec.watch_sources or id(source.value) in watched_ids or id(source.value) in manual,
                    )
            targets.append(TargetResult(
                name=name,
                value=value,
                derivatives=derivatives,
                jacobian=raw["jacobians"].get(name),
                hessian=raw["hessians"].get(name),
                reasons=reasons,
                forward=raw.get("forward", {}).get(name),
                check=raw.get("check", {}).get(name),
                hvp=raw.get("hvp", {}).get(name),
            ))
        notes.extend(_why.rebinding_notes(sources, body.cell, namespace))
        for name in names:
            for source_name, reason in raw.get("missing", {}).get(name, {}).items():
                if source_name == "*" or raw["derivatives"][name][1].get(source_name) is not None:
                    notes.append(f"{name}: a higher derivative, Jacobian or Hessian is missing: {reason}")
        return TapeResult(
            spec=spec,
            targets=tuple(targets),
            sources=tuple(SourceInfo.of(source) for source in sources),
            watched=tuple(WatchedInfo.of(variable, names_by_id.get(id(variable), variable.name)) for variable in watched),
            notes=tuple(notes),
            tape=raw.get("tape"),
            path=raw.get("path", "eager"),
            passes=raw.get("passes", {}),
        )


def differentiate(spec: TapeSpec, body: Any, sources: list[Source], manual: set[int]) -> dict[str, Any]:
    """Run ``body`` once under ``spec.depth`` nested tapes; works eagerly and inside tf.function."""
    float_sources = [source for source in sources if source.differentiable]
    with _TapeStack(spec.depth, spec.auto_watch) as stack:
        if spec.watch_sources:
            for tape in stack.tapes:
                for source in float_sources:
                    tape.watch(source.value)
        active = _ACTIVE.set(tuple(stack.tapes))
        manual_token = _WATCHED.set(manual)
        try:
            values = body.run(sources)
        finally:
            _ACTIVE.reset(active)
            _WATCHED.reset(manual_token)
        inner = stack.stop(0)
        if not sources:
            # No source named: the trainable variables the cell read, in the order it read them.
            known = _variable_names([], getattr(body, "namespace", None))
            sources[:] = [Source(known.get(id(variable), variable.name.split(":")[0]), variable)
                          for variable in inner.watched_variables() if variable.trainable]
            float_sources = [source for source in sources if source.differentiable]
        raw = {"values": values, "watched": inner.watched_variables(), "sources": list(sources)}
        missing: dict[str, dict[str, str]] = {name: {} for name in values}  # no gradient registered, by target and source
        derivatives = {name: {1: _gradients(inner, value, float_sources, missing[name])} for name, value in values.items()}
        jacobians = {name: _unless_missing(lambda: _jacobians(inner, value, float_sources), missing[name])
                     or {source.name: None for source in float_sources}
                     for name, value in values.items()} if spec.jacobian else {}
        # The flat gradient is built while the outer tape still records, so it can be differentiated.
        flat = {name: _flat(derivatives[name][1], float_sources) for name in values} if spec.hessian else {}
        hessians: dict[str, Any] = {}
        for k in range(1, spec.depth):
            outer = stack.stop(k)
            for name in values:
                lower = derivatives[name][k]
                if k < spec.order:
                    derivatives[name][k + 1] = _next_order(outer, lower, float_sources, missing[name])
                if k == 1 and spec.hessian and missing[name]:
                    hessians[name] = None  # a missing first derivative is unknown, not zero
                    missing[name].setdefault("*", next(iter(missing[name].values())))
                elif k == 1 and spec.hessian:
                    hessians[name] = _unless_missing(lambda: _hessian(outer, flat[name], float_sources), missing[name])
        raw.update(derivatives=derivatives, jacobians=jacobians, hessians=hessians, missing=missing)
        raw["tape"] = stack.tapes[0] if spec.persistent else None
    return raw


def _gradients(tape: tf.GradientTape, value: Any, sources: list[Source], missing: dict[str, str]) -> dict[str, Any]:
    if not sources or not tf.is_tensor(value) or not is_float(tf.convert_to_tensor(value).dtype):
        return {}
    try:
        grads = tape.gradient(value, [source.value for source in sources])
        return {source.name: grad for source, grad in zip(sources, grads)}
    except LookupError:
        pass  # an op with no registered gradient: find which sources it blocks, keep the others
    found = {}
    for source in sources:
        try:
            found[source.name] = tape.gradient(value, source.value)
        except LookupError as error:
            found[source.name] = None
            missing[source.name] = _no_gradient(error)
    return found


def _no_gradient(error: LookupError) -> str:
    text = str(error).strip().strip("'\"")
    op = text.rsplit(":", 1)[-1].strip() if "registry has no entry" in text else text
    return (f"TensorFlow has no gradient registered for {op}, an operation the cell used to compute the target, "
            f"so its backward pass stops there (LookupError: {text}). Use a differentiable operation instead, "
            "or wrap that part in tf.stop_gradient if it should not be differentiated.")


def _unless_missing(compute: Callable[[], Any], missing: dict[str, str]) -> Any:
    """Jacobians and Hessians: None, with the reason kept, where an op has no gradient or
    TensorFlow fails to differentiate it again (a tf.py_function differentiated twice, say)."""
    try:
        return compute()
    except LookupError as error:
        missing.setdefault("*", _no_gradient(error))
    except tf.errors.OpError as error:
        if not tf.executing_eagerly():
            raise  # inside a trace: the caller falls back to eager tapes
        missing.setdefault("*", _failed(error))
    return None


def _failed(error: Exception) -> str:
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (f"TensorFlow failed while differentiating the cell again ({type(error).__name__}: {first[:200]}). "
            "Some operations (tf.py_function, tf.numpy_function) can be differentiated once but not twice.")


def _next_order(tape: tf.GradientTape, lower: dict[str, Any], sources: list[Source], missing: dict[str, str]) -> dict[str, Any]:
    """Derivative of each source's previous order with respect to that source, element-wise
    as nested tapes give it. A connected source whose derivative no longer depends on it
    gets zeros, not None: the derivative is mathematically zero there."""
    higher: dict[str, Any] = {}
    for source in sources:
        previous = lower.get(source.name)
        if previous is None:
            continue
        higher[source.name] = _unless_missing(
            lambda: tape.gradient(previous, source.value, unconnected_gradients=tf.UnconnectedGradients.ZERO), missing)
    return higher


PFOR_FAILED = "pfor could not vectorize the Jacobian ({}); it was computed one row at a time instead"


def _jacobian(tape: tf.GradientTape, target: Any, source: Any, **options: Any) -> Any:
    """tape.jacobian vectorized by pfor; where pfor cannot convert an op (a py_function's gradient,
    say), TensorFlow's own row-by-row loop, with a warning that becomes a note on the result.
    Inside a trace, pfor over seeds that _seeds.eliminate can take out of matrix products."""
    if not tf.executing_eagerly() and target.shape.is_fully_defined():
        return _seeds.jacobian(tape, target, source, **options)  # a pfor failure falls back to eager tapes
    try:
        return tape.jacobian(target, source, **options)
    except (ValueError, NotImplementedError, tf.errors.OpError) as error:
        if not tf.executing_eagerly():
            raise  # inside a trace: the caller falls back to eager tapes
        logging.getLogger("tensorflow").warning(PFOR_FAILED.format(f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"))
    # One vector-Jacobian product per row: output_gradients picks the row, so nothing new must be recorded.
    size = int(tf.size(target))
    rows = [tape.gradient(target, source, output_gradients=tf.reshape(tf.one_hot(i, size, dtype=target.dtype), tf.shape(target)),
                          unconnected_gradients=options.get("unconnected_gradients", tf.UnconnectedGradients.ZERO))
            for i in range(size)]
    return tf.reshape(tf.stack(rows), tf.concat([tf.shape(target), tf.shape(source)], axis=0))


def _jacobians(tape: tf.GradientTape, value: Any, sources: list[Source]) -> dict[str, Any]:
    if not sources or not tf.is_tensor(value) or not is_float(value.dtype):
        return {}
    return {source.name: _jacobian(tape, value, source.value) for source in sources}


def _flat(first: dict[str, Any], sources: list[Source]) -> Any:
    """The first derivatives of all sources as one vector (zeros where not connected)."""
    if not sources:
        return None
    return tf.concat([
        tf.reshape(first[s.name] if first.get(s.name) is not None else tf.zeros_like(s.value), [-1])
        for s in sources
    ], axis=0)


def _hessian(tape: tf.GradientTape, gradient: Any, sources: list[Source]) -> Any:
    """All second partials over the flattened sources, in source order (mixed blocks too)."""
    if gradient is None:
        return None
    blocks = []
    for source in sources:
        block = _jacobian(tape, gradient, source.value, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        blocks.append(tf.reshape(block, [tf.size(gradient), -1]))
    return tf.concat(blocks, axis=1)


def _variable_names(sources: list[Source], namespace: dict[str, Any] | None) -> dict[int, str]:
    names = {}
    if namespace:
        for name, value in namespace.items():
            if isinstance(value, tf.Variable) and not name.startswith("_"):
                names.setdefault(id(value), name)
    for source in sources:
        names[id(source.value)] = source.name
    return names


def _undo_conversions(sources: list[Source], namespace: dict[str, Any] | None) -> None:
    for source in sources:
        if source.undo is None:
            continue
        # If the cell itself rebound the name before failing, its assignment stays.
        if namespace is not None and "." not in source.name and namespace.get(source.name) is not source.value:
            continue
        source.undo()
