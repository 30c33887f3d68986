"""The traced path: higher orders, Jacobians and Hessians inside one tf.function.

A body that is pure TensorFlow is traced once as a function of its tensor sources
(variables are captured), with the nested tapes inside the graph and Jacobians
vectorized by pfor. A body that cannot be traced (Python side effects, NumPy in the
middle, Python control flow on tensor values) falls back to eager tapes, and the
result's notes say why. Traces are cached, keyed on everything that would change
them: the code, the options, the sources' shapes and dtypes, and the values of the
plain Python names the cell reads.
"""
from __future__ import annotations

import collections
import dataclasses
import time
import types
from typing import Any

import numpy as np
import tensorflow as tf

from . import _seeds
from ._sources import Source
from ._spec import TapeSpec

__all__ = ["TraceCache", "wanted", "first_order", "merge"]

_GRAPH_KEYS = ("values", "derivatives", "jacobians", "hessians")
_SCALARS = (int, float, complex, str, bytes, bool, type(None))


TRACE_MIN_ELEMENTS = 16


def wanted(spec: TapeSpec, sources: list[Source]) -> bool:
    """Trace only when it pays: Jacobians, Hessians or higher orders over sources of 16 elements
    or more. Below that, eager tapes finish before a trace would."""
    if spec.eager or not (spec.hessian or spec.jacobian or spec.order > 1):
        return False
    return sum(s.value.shape.num_elements() or 0 for s in sources) >= TRACE_MIN_ELEMENTS


def first_order(spec: TapeSpec) -> TapeSpec:
    """What the eager pass still computes when the trace does the rest."""
    return dataclasses.replace(spec, order=1, hessian=False, jacobian=False)


def merge(eager: dict[str, Any], traced: dict[str, Any]) -> dict[str, Any]:
    """Eager values, first derivatives, watched variables and tape; the rest from the trace."""
    merged = dict(eager)
    for name, orders in traced["derivatives"].items():
        merged["derivatives"][name] = {1: eager["derivatives"][name][1],
                                       **{k: v for k, v in orders.items() if k > 1}}
    merged["jacobians"] = traced["jacobians"]
    merged["hessians"] = traced["hessians"]
    merged["path"] = traced["path"]
    return merged


class _Replay:
    """A body as the traced function sees it: run on a copy with graph tensors for the sources."""

    def __init__(self, body: Any, overlay: dict[str, Any]) -> None:
        self.body = body
        self.overlay = overlay

    def run(self, sources: list[Source]) -> dict[str, Any]:
        return self.body.replay(sources, self.overlay)


@dataclasses.dataclass
class _Entry:
    function: Any
    watched: list[Any]
    trace_seconds: float = 0.0
    xla: bool = False


class TraceCache:
    """Traced functions by key, least recently used dropped first."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._entries: collections.OrderedDict[Any, _Entry] = collections.OrderedDict()
        self.last_trace_seconds: float | None = None

    def differentiate(self, spec: TapeSpec, body: Any, sources: list[Source], notes: list[str]) -> dict[str, Any] | None:
        """Derivatives from the traced function, or None (with a note) if the body cannot be traced."""
        reason = _untraceable(body, sources)
        if reason:
            notes.append(f"eager tapes: the cell cannot be traced as a tf.function ({reason})")
            return None
        key = _key(spec, body, sources)
        entry = self._entries.get(key)
        arguments = [s.value for s in sources if not s.is_variable]
        self.last_trace_seconds = None
        try:
            if entry is None:
                started = time.perf_counter()
                entry, out = self._first_call(spec, body, sources, arguments, notes)
                entry.trace_seconds = time.perf_counter() - started
                self.last_trace_seconds = entry.trace_seconds
                self._store(key, entry)
            else:
                self._entries.move_to_end(key)
                out = entry.function(*arguments)
        except Exception as error:  # the eager run that follows shows a user's own error with its traceback
            notes.append(f"eager tapes: tracing the cell failed ({_first_line(error)})")
            return None
        raw = dict(out)
        raw.update(sources=list(sources), watched=list(entry.watched), path="traced", tape=None)
        compiled = " compiled by XLA" if entry.xla else ""
        notes.append(f"traced: derivatives were computed in a tf.function{compiled} that re-ran the cell's code once to trace it"
                     if self.last_trace_seconds is not None else f"traced: derivatives came from the cached tf.function{compiled}")
        return raw

    def _first_call(self, spec: TapeSpec, body: Any, sources: list[Source], arguments: list[Any],
                    notes: list[str]) -> tuple[_Entry, Any]:
        """Trace once, then compile the traced graph with XLA; if XLA cannot compile the cell's
        ops, keep the graph as traced. The key pins shapes and dtypes, so the concrete functions
        are called directly, skipping tf.function's per-call argument binding and cache lookup."""
        entry = _trace(spec, body, sources)
        graph = entry.function.get_concrete_function(*arguments)
        try:
            # XLA fuses the many small ops that pfor makes of a Jacobian: measured here (before
            # _seeds), it cut a 500x500 Hessian from 6.9 to 5.9 ms and a small MLP's from 3.9 to 1.9 ms.
            compiled = tf.function(graph, jit_compile=True).get_concrete_function(*arguments)
            out = compiled(*arguments)
            entry.function, entry.xla = compiled, True
            return entry, out
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as error:
            notes.append(f"traced without XLA: XLA could not compile the cell ({_first_line(error)})")
        entry.function = graph
        return entry, graph(*arguments)

    def _store(self, key: Any, entry: _Entry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


def _first_line(error: Exception) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:160]}"


def _trace(spec: TapeSpec, body: Any, sources: list[Source]) -> _Entry:
    from ._engine import differentiate

    tensors = [s for s in sources if not s.is_variable]
    entry = _Entry(function=None, watched=[])

    def traced(*arguments: Any) -> dict[str, Any]:
        overlay = {s.name: argument for s, argument in zip(tensors, arguments)}
        graph_sources = [Source(s.name, overlay.get(s.name, s.value)) for s in sources]
        raw = differentiate(spec, _Replay(body, overlay), graph_sources, set())
        entry.watched[:] = list(raw["watched"])
        for name, value in raw["values"].items():
            if not tf.is_tensor(value):
                raise TypeError(f"the target {name} is a {type(value).__name__}, not a tensor")
        return _seeds.eliminate({key: raw[key] for key in _GRAPH_KEYS})

    # Traced without jit_compile, then compiled as a whole by the caller: under XLA, pfor would
    # put each Jacobian in a function of its own, out of reach of _seeds.eliminate.
    entry.function = tf.function(traced, reduce_retracing=False, autograph=False)
    return entry


def _untraceable(body: Any, sources: list[Source]) -> str | None:
    for source in sources:
        if not source.is_variable and not body.can_replace(source):
            return f"{source.name} is a tensor inside another object; name it directly to trace"
    if body.cell is None:
        return None
    if body.cell.hints:
        line, words = body.cell.hints[0]
        return f"line {line} {words}"
    if body.cell.side_effects:
        return body.cell.side_effects[0]
    return None


def _key(spec: TapeSpec, body: Any, sources: list[Source]) -> tuple[Any, ...]:
    options = (spec.order, spec.jacobian, spec.hessian, spec.auto_watch, spec.watch_sources, spec.targets)
    shapes = tuple(
        (s.name, "var", id(s.value)) if s.is_variable else (s.name, tuple(s.value.shape.as_list()), s.value.dtype.name)
        for s in sources
    )
    if body.function is not None:
        return ("function", body.function, options, shapes)
    namespace = body.namespace
    reads = tuple(sorted((name, _fingerprint(namespace[name])) for name in body.cell.loads if name in namespace))
    return ("cell", body.cell.source, options, shapes, reads)


def _fingerprint(value: Any, depth: int = 0) -> Any:
    """What a captured Python value contributes to a trace: scalars by value, arrays by content, the rest by identity."""
    if isinstance(value, _SCALARS):
        return ("=", type(value).__name__, value)
    if isinstance(value, tuple) and len(value) < 64:
        return ("tuple", tuple(_fingerprint(item, depth + 1) for item in value))
    if isinstance(value, np.ndarray):
        return ("array", value.shape, value.dtype.str, value.tobytes() if value.nbytes <= 1 << 16 else id(value))
    if isinstance(value, types.FunctionType) and depth == 0:
        names = value.__code__.co_names
        return ("function", id(value), tuple(
            (name, _fingerprint(value.__globals__[name], depth + 1)) for name in names
            if name in value.__globals__ and isinstance(value.__globals__[name], _SCALARS)
        ))
    return ("id", id(value))
