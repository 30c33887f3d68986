"""The traced path: higher orders, Jacobians and Hessians inside one compiled tf.function.

Used only after the real run, and only when a second run of the code leaves no trace
(:mod:`.effects`): the body is traced once on a copy of the namespace as it was before the
real run, with the nested tapes inside the graph and Jacobians vectorized by pfor, then
compiled by XLA. Traces are cached. A cached trace holds the Python values the code read
while it was traced, baked in as constants, so the cache key compares those values by
content (lists, dicts, arrays, objects' attributes, closures, globals read by functions),
never by identity; a value that cannot be compared makes the trace single-use. Each traced
result is checked against the real run's value and gradient before it is used.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import sys
import time
import types
from typing import Any

import numpy as np
import tensorflow as tf

from .._i18n import _
from . import effects, flat, seeds, why
from .derive import Derivatives, Recorder
from .sources import Source, as_variable, holds_sparse, leaves
from .words import joined

__all__ = ["TraceCache", "Reuse", "wanted", "disagreement_of", "first_line", "TRACE_MIN_ELEMENTS"]

TRACE_MIN_ELEMENTS = 16
_SCALARS = (int, float, complex, str, bytes, bool, type(None))
# Library modules whose functions compute from their arguments alone: a cell that reads only these (and values
# compared by content) is seen whole by the key. Any other (os, time, pathlib, pandas, ...) may bring in what
# the key cannot compare: an environment variable, a file, a clock.
_PURE_MODULES = frozenset({"tensorflow", "numpy", "math", "cmath", "keras", "jax", "functools", "operator",
                           "itertools", "tapemagic"})


def wanted(spec: Any, sources: list[Source]) -> bool:
    """Trace only when it pays. A Jacobian or Hessian, at any size: eagerly, TensorFlow vectorises it
    (pfor) inside a tf.function it makes anew on every run, 65 to 95 ms even for one element, where a
    cached trace answers in 1 to 2 ms. Higher orders alone (-n) over sources of 16 elements or more:
    below that, eager nested tapes answer in about 4 ms and a trace saves little."""
    if spec.eager or not (spec.hessian or spec.jacobian or spec.order > 1):
        return False
    if not all(s.value.shape.is_fully_defined() for s in sources):
        return False  # a variable of unknown shape: the eager tapes take whatever shape it has now
    elements = _elements(sources)
    return elements >= (1 if spec.hessian or spec.jacobian else TRACE_MIN_ELEMENTS)


def _elements(sources: list[Source]) -> int:
    return sum(s.value.shape.num_elements() or 0 for s in sources)


@dataclasses.dataclass
class _Entry:
    function: Any
    keep: list[Any]  # what the key names by identity, kept alive so no other object can take its id
    trace_seconds: float = 0.0
    xla: bool = False
    flat: bool = False  # the sources were fed as one vector (flat.py)


@dataclasses.dataclass
class Reuse:
    """A cell's verified trace, found by its key before the cell runs: the cell then runs once (without
    tapes, or under one where ``blind`` is not empty) and its derivatives come from the trace
    (:meth:`TraceCache.reusable`, ``Engine._reused``)."""

    key: Any  # the entry's key (the layout's mark included)
    entry: _Entry
    layout: flat.Plan | None
    lifted: dict[str, Any]  # the Python floats passed in, at their values now
    watched: list[Any]  # the variables the tapes watched when the trace was verified
    blind: tuple[str, ...] = ()  # what the key holds without its content (see _Fingerprint.blind)


class TraceCache:
    """Traced functions by key, least recently used dropped first."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: collections.OrderedDict[Any, _Entry] = collections.OrderedDict()
        self._no_lift: set[Any] = set()  # cells that need their floats as Python numbers
        self._no_flat: set[Any] = set()  # cells whose sources cannot be fed as one vector
        self._clean_functions: set[Any] = set()  # keys of function traces made after their code showed no effect
        self._seen: collections.OrderedDict[Any, None] = collections.OrderedDict()  # code run before
        # A key whose tracing failed -> (the error's first line, what the key names by identity, kept alive): not
        # traced again while the code and everything it reads stay the same (it would fail the same way). Only
        # errors raised while tracing: one from running the traced graph may depend on the values, which the key
        # does not hold. As many as the cache holds traces, the oldest dropped first.
        self._failed: collections.OrderedDict[Any, tuple[str, list[Any]]] = collections.OrderedDict()
        self._tracing = False  # set while a graph is being traced, to tell its errors from those of running it
        # A cell's key (without the layout's mark) -> (entry key, layout, watched variables), for traces a
        # real run under tapes has verified (value and gradient): found before the next run of the cell.
        self._verified: dict[Any, tuple[Any, flat.Plan | None, list[Any]]] = {}
        self.last_trace_seconds: float | None = None

    def seen(self, body: Any) -> bool:
        """Whether this code (a cell's text, a function) ran before on this engine."""
        return body.key() in self._seen

    def saw(self, body: Any) -> None:
        self._seen[body.key()] = None
        self._seen.move_to_end(body.key())
        while len(self._seen) > 8 * self.size:
            self._seen.popitem(last=False)

    def derive(self, spec: Any, body: Any, sources: list[Source], recorder: Recorder,
               notes: list[str]) -> dict[str, Derivatives] | None:
        """Every target's derivatives from the traced function, or None (with a note) where the
        body cannot be traced or the trace disagrees with the real run."""
        for source in sources:
            if not source.is_variable and not body.can_replace(source):
                notes.append(_("eager tapes: {source} is a tensor inside another object; name it directly to trace",
                               source=source.name))
                return None
        layout = flat.plan(spec, body, sources, recorder.first) if body.key() not in self._no_flat else None
        called = self._attempt(spec, body, sources, notes, "cell", layout)
        if called is None:
            return None
        entry, out, key = called
        disagreement = disagreement_of(out, recorder.values, recorder.first)
        if disagreement:
            if key is not None:
                self._drop(key)
            notes.append(_("eager tapes: the traced function disagreed with the real run ({disagreement}), so it was "
                           "not used; the derivatives come from the real run's tapes", disagreement=disagreement))
            return None
        notes.append(_cell_note(entry.xla, self.last_trace_seconds is None, key is not None))
        if key is not None:
            base = key[0] if entry.flat else key
            self._verified[base] = (key, layout if entry.flat else None, list(recorder.watched))
        if entry.flat and spec.hessian:
            notes.append(_("traced: the {count} sources went into the trace as one vector, so the Hessian is one pass "
                           "over all of them", count=len(sources)))
        elif entry.flat:
            notes.append(_("traced: the {count} sources went into the trace as one vector, so the Jacobian is one pass "
                           "over all of them", count=len(sources)))
        return {name: Derivatives(
            value=recorder.values[name],
            orders={1: recorder.first[name], **{k: v for k, v in out["derivatives"][name].items() if k > 1}},
            jacobian=out["jacobians"].get(name), hessian=out["hessians"].get(name), missing={},
        ) for name in recorder.values}

    def reusable(self, spec: Any, body: Any, sources: list[Source]) -> Reuse | None:
        """The verified trace of this cell as it reads its values now, or None. Looked up by the same
        key as :meth:`derive` uses (the cell's code, the options, the sources' shapes and everything
        the cell reads, by content), before the cell runs."""
        if body.kind != "cell" or any(not s.is_variable and not body.can_replace(s) for s in sources):
            return None
        lifted = _liftable(body, sources) if body.key() not in self._no_lift else {}
        blind: list[str] = []
        base = _key(spec, body, sources, [], lifted, blind)
        found = self._verified.get(base) if base is not None else None
        if found is None:
            return None
        key, layout, watched = found
        entry = self._entries.get(key)
        if entry is None:  # dropped from the cache since
            del self._verified[base]
            return None
        self._entries.move_to_end(key)
        return Reuse(key, entry, layout, lifted, watched, tuple(dict.fromkeys([*blind, *_reads_outside(body)])))

    def call(self, reuse: Reuse, sources: list[Source]) -> dict[str, Any]:
        """The reused trace called on the sources' values now."""
        dtype = _common_dtype(sources)
        fed = [reuse.layout.vector(sources)] if reuse.layout is not None else [s.value for s in sources if not s.is_variable]
        self.last_trace_seconds = None
        return reuse.entry.function(*fed, *[tf.constant(v, dtype) for v in reuse.lifted.values()])

    def forget(self, reuse: Reuse) -> None:
        """Drop a trace that disagreed with a run, or failed."""
        self._drop(reuse.key)

    def _drop(self, key: Any) -> None:
        self._entries.pop(key, None)
        self._clean_functions.discard(key)
        self._verified = {base: found for base, found in self._verified.items() if found[0] != key}

    def function_run(self, spec: Any, body: Any, sources: list[Source], notes: list[str]) -> dict[str, Derivatives] | None:
        """For a function whose code shows no effect: its one run is the traced graph itself (value,
        gradients and the rest), made only if the graph holds no state-changing op. None: run eagerly."""
        called = self._attempt(spec, body, sources, notes, "function")
        if called is None:
            return None
        entry, out, key = called
        notes.append(_function_note(entry.xla, self.last_trace_seconds is None))
        if key is not None:  # its code was read and showed no effect, and it does not print
            self._clean_functions.add(key)
        return _function_derivatives(out)

    def function_reused(self, spec: Any, body: Any, sources: list[Source], notes: list[str]) -> dict[str, Derivatives] | None:
        """A function's cached trace, when one was made under the same key after its code was read and showed
        no effect: called without reading the code again (the key holds the code and what it reads, by
        content). None: not cached; :meth:`function_run` decides."""
        key = _key(spec, body, sources, [], {})
        entry = self._entries.get(key) if key in self._clean_functions else None
        if entry is None:
            return None
        self._entries.move_to_end(key)
        self.last_trace_seconds = None
        out = entry.function(*[s.value for s in sources if not s.is_variable])
        notes.append(_function_note(entry.xla, True))
        return _function_derivatives(out)

    def _attempt(self, spec: Any, body: Any, sources: list[Source], notes: list[str], what: str,
                 layout: flat.Plan | None = None) -> tuple[_Entry, Any, Any] | None:
        """:meth:`_call`, or None with a note saying why the trace was not used and what ran instead.
        ``what``: "cell" or "function"."""
        cell = what == "cell"
        keep: list[Any] = []
        key = _key(spec, body, sources, keep)
        if key is not None and key in self._failed:
            error = self._failed[key][0]
            self._failed.move_to_end(key)
            if not any(error in note for note in notes):  # not when the function path failed so in this very run
                notes.append(_("eager tapes: tracing this code failed on an earlier run ({error}); it is not traced "
                               "again while the code and what it reads stay the same", error=error))
            return None
        self._tracing = False
        try:
            return self._call(spec, body, sources, notes, layout)
        except _Impure as error:
            effects_found = joined(error.effects)
            notes.append(_("eager tapes: the traced cell would change state ({effects}), so it was not run; the "
                           "derivatives come from the tapes of the one real run", effects=effects_found) if cell else
                         _("eager tapes: the traced function would change state ({effects}), so it was not run; the "
                           "function ran once, eagerly", effects=effects_found))
        except _ReadOtherwise as error:
            names = ", ".join(error.names)
            notes.append(_("eager tapes: the cell also reads {names} under another name (an alias made before the "
                           "cell), which a trace would hold as a constant, so it was not used; the derivatives come "
                           "from the tapes of the one real run", names=names) if cell else
                         _("eager tapes: the cell also reads {names} under another name (an alias made before the "
                           "cell), which a trace would hold as a constant, so it was not used; the function ran once, "
                           "eagerly", names=names))
        except Exception as error:  # noqa: BLE001 - any failure: the eager path answers (a user's error shows there)
            notes.append(_("eager tapes: tracing the cell failed ({error})", error=first_line(error)) if cell else
                         _("eager tapes: tracing the function failed ({error})", error=first_line(error)))
            if key is not None and self._tracing:
                self._failed[key] = (first_line(error), keep)
                while len(self._failed) > self.size:
                    self._failed.popitem(last=False)
        return None

    def _call(self, spec: Any, body: Any, sources: list[Source], notes: list[str],
              layout: flat.Plan | None = None) -> tuple[_Entry, Any, Any]:
        """The cached function for this key called, or a new one traced, checked and called.

        Python floats the cell reads (a learning rate, a coefficient) are passed in as scalar
        tensors, not baked into the graph: a new value reuses the trace instead of adding one
        more compiled function to TensorFlow's memory on every change. A cell that needs such a
        float as a Python number (``range(n)``, an ``if``) is traced again with it baked in.
        Likewise a cell whose sources cannot be fed as one vector (``layout``) is traced again
        with them one by one."""
        lifted = _liftable(body, sources) if body.key() not in self._no_lift else {}
        attempts = [(lifted, layout)] + ([(lifted, None)] if layout is not None else []) + ([({}, None)] if lifted else [])
        for number, (lift, lay) in enumerate(attempts):
            try:
                return self._call_with(spec, body, sources, notes, lift, lay)
            except (_Impure, _ReadOtherwise):
                raise
            except Exception:
                if number == len(attempts) - 1:
                    raise
                if lay is not None:
                    self._no_flat.add(body.key())
                else:
                    self._no_lift.add(body.key())
        raise AssertionError("unreachable")  # pragma: no cover - the last attempt returns or raises

    def _call_with(self, spec: Any, body: Any, sources: list[Source], notes: list[str],
                   lifted: dict[str, Any], layout: flat.Plan | None = None) -> tuple[_Entry, Any, Any]:
        self._tracing = False  # this attempt's own error decides (an earlier attempt's tracing may have failed)
        keep: list[Any] = []
        key = _key(spec, body, sources, keep, lifted)
        if key is not None and layout is not None:
            key = (key, "one vector")
        dtype = _common_dtype(sources)
        fed = [layout.vector(sources)] if layout is not None else [s.value for s in sources if not s.is_variable]
        arguments = fed + [tf.constant(v, dtype) for v in lifted.values()]
        self.last_trace_seconds = None
        entry = self._entries.get(key) if key is not None else None
        if entry is not None:
            self._entries.move_to_end(key)
            return entry, entry.function(*arguments), key
        started = time.perf_counter()
        entry, out = self._first_call(spec, body, sources, arguments, notes, tuple(lifted), layout)
        entry.trace_seconds = self.last_trace_seconds = time.perf_counter() - started
        entry.keep = keep
        if key is not None:
            self._store(key, entry)
        return entry, out, key

    def _first_call(self, spec: Any, body: Any, sources: list[Source], arguments: list[Any],
                    notes: list[str], lifted: tuple[str, ...] = (),
                    layout: flat.Plan | None = None) -> tuple[_Entry, Any]:
        """Trace once, then compile the traced graph with XLA; if XLA cannot compile the cell's
        ops, keep the graph as traced. The key pins shapes and dtypes, so the concrete functions
        are called directly, skipping tf.function's per-call argument binding and cache lookup."""
        self._tracing = True
        graph = _traced(spec, body, sources, lifted, layout).get_concrete_function(*arguments)
        self._tracing = False
        found = effects.graph_effects(graph.graph.as_graph_def())
        if found:  # the op log saw none in the real run; the trace holds one (another branch): never run it
            raise _Impure(found[:3])
        if layout is not None and flat.reached_otherwise(graph, sources):
            raise _NotFlat("the cell reaches a source other than by its name")
        tensors = [s for s in sources if not s.is_variable]  # a variable is read through its handle: that is how it is traced
        if layout is None and flat.reached_otherwise(graph, tensors):
            raise _ReadOtherwise([s.name for s in tensors if flat.reached_otherwise(graph, [s])])
        entry, out = self._compile(graph, arguments, notes, xla=_elements(sources) >= TRACE_MIN_ELEMENTS)
        entry.flat = layout is not None
        return entry, out

    def _compile(self, graph: Any, arguments: list[Any], notes: list[str], xla: bool) -> tuple[_Entry, Any]:
        """``xla``: compile the traced graph with XLA. Not below 16 source elements, where compiling cost more
        than it saved (a 12-element Hessian's second run, which traces, took 337 ms with XLA and 228 ms without,
        medians of 7; then 2.4 and 2.5 ms a run)."""
        entry = _Entry(function=graph, keep=[])
        if not xla:
            return entry, graph(*arguments)
        try:
            # XLA fuses the many small ops that pfor makes of a Jacobian: measured here (before
            # seeds), it cut a 500x500 Hessian from 6.9 to 5.9 ms and a small MLP's from 3.9 to 1.9 ms.
            compiled = tf.function(graph, jit_compile=True).get_concrete_function(*arguments)
            out = compiled(*arguments)
            entry.function, entry.xla = compiled, True
            return entry, out
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as error:
            notes.append(_("traced without XLA: XLA could not compile the cell ({error})", error=first_line(error)))
        return entry, graph(*arguments)

    def _store(self, key: Any, entry: _Entry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._drop(next(iter(self._entries)))


def _function_derivatives(out: dict[str, Any]) -> dict[str, Derivatives]:
    """Every target's record from a function's traced outputs."""
    return {name: Derivatives(
        value=out["values"][name], orders=dict(out["derivatives"][name]),
        jacobian=out["jacobians"].get(name), hessian=out["hessians"].get(name), missing={},
    ) for name in out["values"]}


def _cell_note(xla: bool, cached: bool, kept: bool) -> str:
    """What the traced path of a cell did, as a note."""
    if cached and xla:
        return _("traced: derivatives came from the cached tf.function compiled by XLA (nothing the cell reads has "
                 "changed, but for Python floats, which it takes as arguments)")
    if cached:
        return _("traced: derivatives came from the cached tf.function (nothing the cell reads has "
                 "changed, but for Python floats, which it takes as arguments)")
    if xla and kept:
        return _("traced: derivatives were computed in a tf.function compiled by XLA that re-ran the cell's code "
                 "once, on a copy of the namespace, to trace it; the cell changes no state, so this left no trace")
    if kept:
        return _("traced: derivatives were computed in a tf.function that re-ran the cell's code once, on a copy of "
                 "the namespace, to trace it; the cell changes no state, so this left no trace")
    if xla:
        return _("traced: derivatives were computed in a tf.function compiled by XLA that re-ran the cell's code "
                 "once, on a copy of the namespace, to trace it; the cell changes no state, so this left no trace "
                 "(not kept for reuse: the cell reads a value tapemagic cannot compare between runs)")
    return _("traced: derivatives were computed in a tf.function that re-ran the cell's code once, on a copy of "
             "the namespace, to trace it; the cell changes no state, so this left no trace "
             "(not kept for reuse: the cell reads a value tapemagic cannot compare between runs)")


def _function_note(xla: bool, cached: bool) -> str:
    """What the traced path of a function did, as a note."""
    if cached and xla:
        return _("traced: the function ran once, as its cached tf.function compiled by XLA")
    if cached:
        return _("traced: the function ran once, as its cached tf.function")
    if xla:
        return _("traced: the function ran once, as a tf.function compiled by XLA traced on this call (its code "
                 "changes nothing, and the graph holds no state-changing op)")
    return _("traced: the function ran once, as a tf.function traced on this call (its code "
             "changes nothing, and the graph holds no state-changing op)")


class _Impure(Exception):
    """The traced graph holds a state-changing op (``effects``, in words)."""

    def __init__(self, effects_found: list[str]) -> None:
        super().__init__("; ".join(effects_found))
        self.effects = effects_found


class _ReadOtherwise(Exception):
    """The traced graph holds a tensor source as a captured constant (read through an alias), so part
    of the function would not depend on the argument that stands for it: derivatives would be missing.
    ``names``: those sources."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"the cell also reads {', '.join(names)} under another name")
        self.names = names


class _NotFlat(Exception):
    """The traced graph reads a source other than through its slice of the one vector."""


def first_line(error: Exception) -> str:
    """An error as its type and the first line of its message, for a note."""
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:160]}"


def _traced(spec: Any, body: Any, sources: list[Source], lifted: tuple[str, ...] = (),
            layout: flat.Plan | None = None) -> Any:
    tensors = [s for s in sources if not s.is_variable]

    def traced(*arguments: Any) -> dict[str, Any]:
        if layout is None:
            overlay = {s.name: argument for s, argument in zip(tensors, arguments)}
            overlay.update(zip(lifted, arguments[len(tensors):]))
            graph_sources = [Source(s.name, overlay.get(s.name, s.value)) for s in sources]
            replay = lambda: body.replay(graph_sources, overlay)  # noqa: E731
        else:
            z = arguments[0]
            graph_sources = [Source(flat.FLAT_NAME, z)]

            def replay() -> dict[str, Any]:  # the slices are cut under the tapes, so they reach z
                overlay = layout.overlay(layout.parts(z))
                overlay.update(zip(lifted, arguments[1:]))
                return body.replay(sources, overlay)
        with Recorder(spec, graph_sources) as recorder:
            recorder.run(replay)
            for name, value in recorder.values.items():
                if leaves(value) is None:
                    raise TypeError(_("the target {target} is a {kind}, not a tensor", target=name, kind=type(value).__name__))
                refused = why.no_jacobian(name, value) if spec.jacobian else None
                if refused or holds_sparse(value):
                    raise TypeError(refused or why.sparse_target(name, value))  # the eager run says why, beside the None
            recorder.first_order()
            derived = recorder.rest()
        out = {
            "values": {name: d.value for name, d in derived.items()},
            "derivatives": {name: dict(d.orders) for name, d in derived.items()},
            "jacobians": {name: d.jacobian for name, d in derived.items() if d.jacobian is not None},
            "hessians": {name: d.hessian for name, d in derived.items() if d.hessian is not None},
        }
        return seeds.eliminate(out if layout is None else layout.split(out))

    # Traced without jit_compile, then compiled as a whole by the caller: under XLA, pfor would
    # put each Jacobian in a function of its own, out of reach of seeds.eliminate.
    return tf.function(traced, reduce_retracing=False, autograph=False)


def disagreement_of(out: dict[str, Any], values: dict[str, Any], first: dict[str, dict[str, Any]]) -> str | None:
    """The traced values (and the first derivatives, where ``first`` has them) must be the real run's (up to
    rounding); else what differs, in words."""
    for name, value in values.items():
        pairs = [(f"{name}", value, out["values"].get(name))]
        for source, gradient in first.get(name, {}).items():
            pairs.append((f"∂{name}/∂{source}", gradient, out["derivatives"].get(name, {}).get(1, {}).get(source)))
        for label, eager, traced in pairs:
            if eager is None or traced is None:
                if (eager is None) != (traced is None):
                    return _("{label} is None in one of them", label=label)
                continue
            # a ragged or sparse tensor as its component tensors (values, row splits, indices), which NumPy takes
            parts = tf.nest.flatten(eager, expand_composites=True)
            try:
                a = np.concatenate([np.ravel(np.asarray(part, dtype=np.float64)) for part in parts])
                b = np.concatenate([np.ravel(np.asarray(part, dtype=np.float64))
                                    for part in tf.nest.flatten(traced, expand_composites=True)])
            except (TypeError, ValueError) as error:  # parts NumPy cannot read as numbers: not known to agree
                return _("{label} could not be compared ({error})", label=label, error=first_line(error))
            half = any(getattr(p, "dtype", None) in (tf.float16, tf.bfloat16) for p in parts)
            single = any(getattr(p, "dtype", None) == tf.float32 for p in parts)
            tolerance = 1e-3 if half else 2e-5 if single else 1e-10
            if a.shape != b.shape or not np.allclose(a, b, rtol=tolerance, atol=tolerance * max(1.0, float(np.max(np.abs(a), initial=0))),
                                                     equal_nan=True):
                return _("{label} differs", label=label)
    return None


# -- the key: everything that would change the trace, compared by content ---------------------------
class _Uncomparable(Exception):
    pass


# Calls that read what no key compares (a file, the environment, a clock), whatever module they come from.
_OUTSIDE_READS = frozenset({"open", "input", "load", "loadtxt", "genfromtxt", "fromfile", "read_file", "read_csv",
                            "read_text", "read_bytes", "getenv", "time", "perf_counter", "now", "today"})


def _reads_outside(body: Any) -> list[str]:
    """The cell's calls that read outside what the key compares (``np.load(path)``, ``open(...)``)."""
    cell = getattr(body, "cell", None)
    return [dotted for _line, dotted in getattr(cell, "calls", ()) if dotted.rsplit(".", 1)[-1] in _OUTSIDE_READS]


def _common_dtype(sources: list[Source]) -> Any:
    dtypes = {s.value.dtype for s in sources}
    return next(iter(dtypes)) if len(dtypes) == 1 else None


def _liftable(body: Any, sources: list[Source]) -> dict[str, float]:
    """The plain Python floats a cell reads, to pass in as tensors of its sources' one float dtype."""
    if body.kind != "cell" or _common_dtype(sources) is None or not _common_dtype(sources).is_floating:
        return {}
    names = {s.name for s in sources}
    return {name: value for name, value in body.captured().items() if type(value) is float and name not in names}


def _key(spec: Any, body: Any, sources: list[Source], keep: list[Any], lifted: dict[str, Any] | None = None,
         blind: list[str] | None = None) -> tuple[Any, ...] | None:
    options = (spec.order, spec.jacobian, spec.hessian, spec.auto_watch, spec.watch_sources, spec.targets)
    shapes = []
    for s in sources:
        if s.is_variable:
            keep.append(s.value)
            shapes.append((s.name, "var", id(s.value)))
        else:
            shapes.append((s.name, tuple(s.value.shape.as_list()), s.value.dtype.name))
    arguments = {s.name for s in sources if not s.is_variable} | set(lifted or {})  # passed in, not captured
    try:
        reads = _Fingerprint(keep, blind).of({name: value for name, value in body.captured().items() if name not in arguments})
    except _Uncomparable:
        return None
    return (body.key(), options, tuple(shapes), reads, tuple(sorted(lifted or {})))


class _Fingerprint:
    """A hashable picture of a value's content. Immutable TensorFlow values (tensors) and variables
    (read when the trace runs, not when it is made) count by identity and are kept alive."""

    BUDGET = 20000
    MAX_ARRAY_BYTES = 1 << 24

    def __init__(self, keep: list[Any], blind: list[str] | None = None) -> None:
        self.keep = keep
        self.left = self.BUDGET
        self.path: set[int] = set()
        # What the picture holds without its content: a Keras layer (its Python attributes), a library module
        # other than the pure numerical ones (os: its environment; others: their settings and files).
        self.blind = blind if blind is not None else []

    def of(self, value: Any, depth: int = 0) -> Any:
        self.left -= 1
        if self.left < 0 or depth > 12:
            raise _Uncomparable
        if isinstance(value, _SCALARS):
            return (type(value).__name__, repr(value) if isinstance(value, float) else value)
        if isinstance(value, (np.generic,)):
            return ("np", value.dtype.str, value.tobytes())
        if isinstance(value, types.ModuleType):
            if effects._user_module(value):  # the user's own module: its settings count (cfg.scale = 2)
                if id(value) in self.path:
                    return ("cycle",)
                self.path.add(id(value))
                try:
                    return ("module", value.__name__, self.of({k: v for k, v in vars(value).items()
                                                               if not k.startswith("__") and not isinstance(v, types.ModuleType)}, depth + 1))
                finally:
                    self.path.discard(id(value))
            if value.__name__.split(".")[0] not in _PURE_MODULES:
                self.blind.append(value.__name__)
            return ("module", value.__name__)
        if isinstance(value, (tf.Variable,)) or as_variable(value) is not None or tf.is_tensor(value):
            self.keep.append(value)
            return ("tf", id(value))
        if isinstance(value, (tf.DType, tf.TensorShape)):
            return ("tfmeta", repr(value))
        if isinstance(value, np.ndarray):
            if value.dtype.hasobject or value.nbytes > self.MAX_ARRAY_BYTES:
                raise _Uncomparable
            return ("array", value.shape, value.dtype.str, hashlib.blake2b(np.ascontiguousarray(value).tobytes(), digest_size=16).digest())
        if _keras_layer(value):
            self.blind.append(type(value).__name__)
            return self._keras(value)
        if id(value) in self.path:
            return ("cycle",)
        self.path.add(id(value))
        try:
            return self._container(value, depth)
        finally:
            self.path.discard(id(value))

    def _container(self, value: Any, depth: int) -> Any:
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(self.of(item, depth + 1) for item in value))
        if isinstance(value, (set, frozenset)):
            return (type(value).__name__, tuple(sorted((repr(self.of(item, depth + 1)) for item in value))))
        if isinstance(value, dict):
            return ("dict", tuple((self.of(k, depth + 1), self.of(v, depth + 1)) for k, v in value.items()))
        if isinstance(value, types.FunctionType):
            return self._function(value, depth)
        if isinstance(value, types.MethodType):
            return ("method", self.of(value.__self__, depth + 1), self._function(value.__func__, depth))
        if isinstance(value, functools.partial):
            return ("partial", self.of(value.func, depth + 1), self.of(value.args, depth + 1), self.of(value.keywords, depth + 1))
        python = getattr(value, "python_function", None)
        if isinstance(python, types.FunctionType):  # a tf.function
            self.keep.append(value)
            return ("tf.function", id(value), self._function(python, depth))
        if isinstance(value, type):
            self.keep.append(value)
            if not effects._user_class(value):
                return ("type", id(value))
            return ("class", id(value), tuple(
                self.of({k: v for k, v in vars(klass).items() if not k.startswith("__")}, depth + 1)
                for klass in value.__mro__ if klass is not object and effects._user_class(klass)))
        if callable(value) and type(value).__module__ == "builtins":  # builtin functions: immutable, but a
            owner = getattr(value, "__self__", None)                   # bound one reads its object (params.get)
            bound = self.of(owner, depth + 1) if owner is not None and not isinstance(owner, types.ModuleType) else None
            return ("builtin", getattr(value, "__qualname__", repr(value)), bound)
        attributes = getattr(value, "__dict__", None)
        if attributes is None:
            raise _Uncomparable
        self.keep.append(value)
        kind = type(value)  # class attributes read through the instance (self.c with C.c changed) count too
        klass = self.of(kind, depth + 1) if effects._user_class(kind) else ("type", id(kind))
        return ("object", klass, id(value), self.of(dict(attributes), depth + 1))

    def _keras(self, layer: Any) -> Any:
        """A Keras layer or model by identity, with what changes its graph between runs: which of its
        layers are trainable (and so read as variables or constants) and which variables it holds.
        Its Python attributes (trackers, locks, caches) cannot be compared and need not be: a layer
        whose code was swapped would give a value or gradient the real run does not, and the trace
        is then dropped (:func:`disagreement_of`, which also checks every reuse)."""
        self.keep.append(layer)
        try:
            layers = layer._flatten_layers(include_self=True, recursive=True)
            state = tuple((id(sub), bool(sub.trainable), getattr(sub, "built", None)) for sub in layers)
            weights = tuple(id(weight) for weight in layer.weights)
        except Exception:  # a Keras whose layer API changed: compare nothing rather than the wrong thing
            raise _Uncomparable from None
        self.keep.extend(layer.weights)
        return ("keras", id(layer), state, weights)

    def _function(self, function: types.FunctionType, depth: int) -> Any:
        self.keep.append(function.__code__)
        code = function.__code__
        names = [name for name in _global_names(code) if name in function.__globals__]
        closure = tuple(self.of(cell.cell_contents, depth + 1) if effects.filled(cell) else ("empty",)
                        for cell in function.__closure__ or ())
        return ("function", id(code), self.of(function.__defaults__, depth + 1), self.of(function.__kwdefaults__, depth + 1), closure,
                tuple((name, self.of(function.__globals__[name], depth + 1)) for name in names))


def _keras_layer(value: Any) -> bool:
    """A Keras 3 layer or model, also one subclassed in the notebook (a loss or metric is compared by
    its attributes like any object). Keras is not imported for this: if it is not loaded, nothing is one."""
    keras = sys.modules.get("keras")
    layer = getattr(getattr(keras, "layers", None), "Layer", None)
    return layer is not None and isinstance(value, layer) and hasattr(value, "_flatten_layers")


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.extend(_global_names(constant))
    return sorted(set(names))
