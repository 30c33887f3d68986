"""The other ways to differentiate a body: forward mode, finite differences, Hessian-vector products.

Forward mode and finite differences run the body again (:meth:`replay`: a copy of the
namespace as it was before the cell, printed output swallowed), which the engine allows only
when :mod:`.effects` finds that a second run changes no state; a variable being perturbed is
restored however the run ends. The Hessian-vector product needs no second run: its
accumulator watches the real one (see :class:`.derive.Recorder`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from .._i18n import _
from .._spec import SpecError, TapeSpec
from .._result import CheckReport
from .body import ReplayLeftTrace
from .sources import Source, concrete_shape, leaves, resolve
from .words import joined, options

__all__ = ["replayed", "tangents_for", "forward", "check", "default_step", "MAX_FORWARD_PASSES"]

MAX_FORWARD_PASSES = 4096
MAX_CHECKED_ELEMENTS = 256
# Central differences: error ~ h² (truncation) + eps/h (rounding), smallest near h = eps^(1/3).
_TOLERANCE = {"float16": 5e-2, "bfloat16": 5e-2, "float32": 1e-2, "float64": 1e-6}


def default_step(dtype: tf.DType) -> float:
    """The central-difference step for a dtype: the cube root of its machine epsilon."""
    return float(np.finfo(dtype.as_numpy_dtype).eps ** (1 / 3)) if dtype.name != "bfloat16" else 0.2


def tangents_for(spec: TapeSpec, body: Any, sources: list[Source], namespace: dict[str, Any] | None, vector: Any) -> list[Any] | None:
    """The Hessian-vector product's vector, split per source; looked up before the real run."""
    if spec.hvp is None and vector is None:
        return None
    if vector is None:
        vector = _lookup_vector(spec.hvp, namespace or {})
    return _tangents(vector, [s for s in sources if s.differentiable])


def replayed(spec: TapeSpec, body: Any, everything: list[Source], first: dict[str, dict[str, Any]],
             names: tuple[str, ...], effects: list[str]) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, int], list[str]]:
    """--forward and --check: both run the body again, which only happens when that leaves no trace.
    Returns, by kind ("forward", "check") and target, the results; notes; pass counts; and what a
    replay was caught doing that the real run had not (then no further run may be made)."""
    sources = [s for s in everything if s.differentiable]
    out: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    passes: dict[str, int] = {}
    cell = body.kind == "cell"
    if (spec.forward or spec.check) and effects:
        asked = options(option for option, on in (("--forward", spec.forward), ("--check", spec.check)) if on)
        notes.append(_("{options} not run: each needs the cell run again, and a second run would change state "
                       "({effects}). The derivatives shown come from the tapes of the one real run.",
                       options=asked, effects=joined(effects[:3])))
        if spec.check:
            problem = _("not run: a second run would change state ({effect})", effect=effects[0])
            out["check"] = {name: {s.name: CheckReport(name, s.name, False, 0, 0, 0, 0, 0, 0, problem=problem)
                                   for s in sources} for name in names}
        return out, notes, passes, []
    try:
        if spec.forward:
            try:
                out["forward"], passes["forward"] = forward(body, everything, sources, names)
                notes.append(_("--forward ran the cell's code {count} more times on a copy of the namespace as it was "
                               "before the cell, printing nothing, one ForwardAccumulator pass per source element; the "
                               "cell changes no state, so this left no trace", count=passes["forward"]) if cell else
                             _("--forward ran the cell's code {count} more times with its printed output swallowed, one "
                               "ForwardAccumulator pass per source element; the cell changes no state, so this left no "
                               "trace", count=passes["forward"]))
            except (ReplayLeftTrace, SpecError):
                raise
            except Exception as error:  # noqa: BLE001 - TensorFlow's forward mode failing must not lose the result
                first = (str(error).strip().splitlines() or [""])[0][:200]
                notes.append(_("--forward: TensorFlow's forward mode (ForwardAccumulator) failed going through the cell "
                               "({error}: {message}). It cannot always follow a variable into a tf.function "
                               "the cell calls; the reverse-mode results above are unaffected.",
                               error=type(error).__name__, message=first))
        if spec.check:
            out["check"] = check(spec, body, everything, first, sources, names)
            runs = 2 * sum(report.checked for report in next(iter(out["check"].values()), {}).values())
            notes.append(_("--check ran the cell's code {count} more times on a copy of the namespace as it was before "
                           "the cell, printing nothing, two per checked element; the cell changes no state, so this "
                           "left no trace", count=runs) if cell else
                         _("--check ran the cell's code {count} more times with its printed output swallowed, two per "
                           "checked element; the cell changes no state, so this left no trace", count=runs))
    except ReplayLeftTrace as error:
        out.pop("forward", None)
        out.pop("check", None)
        notes.append(_("--forward/--check stopped: a second run at other source values ran what the real run had not "
                       "({effects}), in code tapemagic could not read; that one run may have changed state, and no "
                       "further run was made. The derivatives shown come from the tapes of the real run.",
                       effects=joined(error.effects)))
        return out, notes, passes, list(error.effects)
    return out, notes, passes, []


def forward(body: Any, everything: list[Source], sources: list[Source], names: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """First derivatives by forward mode: one ForwardAccumulator pass per source element."""
    total = sum(int(np.prod(concrete_shape(s.value))) for s in sources)
    if total > MAX_FORWARD_PASSES:
        raise SpecError(_(
            "--forward needs one pass per source element, {total} here (limit {limit}): "
            "forward mode is for few inputs; use reverse mode (the default) for many", total=total, limit=MAX_FORWARD_PASSES,
        ))
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    passes = 0
    for source in sources:
        shape = concrete_shape(source.value)
        size = int(np.prod(shape))
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for index in range(size):
            tangent = tf.reshape(tf.one_hot(index, size, dtype=source.value.dtype), shape)
            with tf.autodiff.ForwardAccumulator(source.value, tangent) as accumulator:
                values = body.replay(everything)
            passes += 1
            for name in names:
                parts = leaves(values[name])
                jvps = [accumulator.jvp(part) for part in parts] if parts is not None else [None]
                columns[name].append(None if any(j is None for j in jvps) else tf.add_n([tf.reduce_sum(j) for j in jvps]))
        for name in names:
            column = columns[name]
            results[name][source.name] = None if any(c is None for c in column) else tf.reshape(tf.stack(column), shape)
    return results, passes


def check(spec: TapeSpec, body: Any, everything: list[Source], first: dict[str, dict[str, Any]], sources: list[Source],
          names: tuple[str, ...]) -> dict[str, dict[str, CheckReport]]:
    reports: dict[str, dict[str, CheckReport]] = {name: {} for name in names}
    for source in sources:
        step = spec.eps or default_step(source.value.dtype)
        tolerance = _TOLERANCE.get(source.value.dtype.name, 1e-2)
        if not source.is_variable and not body.can_replace(source):
            for name in names:
                reports[name][source.name] = CheckReport(name, source.name, False, 0, 0, step, tolerance, 0, 0,
                                                         problem=_("{source} is a tensor inside another object",
                                                                   source=source.name))
            continue
        differences = _differences(body, everything, source, names, step)
        for name in names:
            gradient = first[name].get(source.name)
            reports[name][source.name] = _compare(name, source, gradient, differences[name], step, tolerance)
    return reports


def _sampled(size: int) -> np.ndarray:
    if size <= MAX_CHECKED_ELEMENTS:
        return np.arange(size)
    return np.sort(np.random.default_rng(0).choice(size, MAX_CHECKED_ELEMENTS, replace=False))


def _differences(body: Any, everything: list[Source], source: Source, names: tuple[str, ...], step: float) -> dict[str, dict[int, float]]:
    base = source.value.numpy()
    flat = base.reshape(-1)
    out: dict[str, dict[int, float]] = {name: {} for name in names}
    for index in _sampled(flat.size):
        h = step * max(1.0, abs(float(flat[index])))
        sides = []
        for sign in (1.0, -1.0):
            moved = flat.astype(np.float64).copy()
            moved[index] += sign * h
            moved = moved.astype(base.dtype)
            with _perturbed(source, moved.reshape(base.shape)) as overlay:
                values = body.replay(everything, overlay)
            sides.append((float(moved[index]), {n: _total(values[n]) for n in names}))
        (x_plus, plus), (x_minus, minus) = sides
        for name in names:
            out[name][int(index)] = (plus[name] - minus[name]) / (x_plus - x_minus)
    return out


@contextlib.contextmanager
def _perturbed(source: Source, value: np.ndarray) -> Iterator[dict[str, Any]]:
    """A variable is assigned and restored; a tensor is replaced in the replay's namespace."""
    if source.is_variable:
        original = source.value.read_value()
        source.value.assign(value)
        try:
            yield {}
        finally:
            source.value.assign(original)
    else:
        yield {source.name: tf.constant(value, dtype=source.value.dtype)}


def _total(value: Any) -> float:
    """The sum of a target, as tape.gradient differentiates it (a structure's parts summed too; a ragged
    tensor's entries, a sparse tensor's stored values)."""
    def entries(part: Any) -> Any:
        if isinstance(part, tf.RaggedTensor):
            part = part.flat_values
        elif isinstance(part, tf.SparseTensor):
            part = part.values
        return part.numpy() if hasattr(part, "numpy") else part

    return float(sum(np.sum(np.asarray(entries(part), dtype=np.float64)) for part in tf.nest.flatten(value)))


def _compare(name: str, source: Source, gradient: Any, differences: dict[int, float], step: float, tolerance: float) -> CheckReport:
    size = int(np.prod(concrete_shape(source.value)))
    if gradient is None:
        tape = np.zeros(size)
    else:
        tape = np.asarray(gradient.numpy(), dtype=np.float64).reshape(-1)
    worst = (0.0, 0.0, 0, 0.0, 0.0)
    max_abs = max_rel = 0.0
    for index, estimate in differences.items():
        error = abs(tape[index] - estimate)
        relative = error / max(1.0, abs(tape[index]), abs(estimate))
        max_abs = max(max_abs, error)
        if relative >= max_rel:
            max_rel = relative
            worst = (error, relative, index, tape[index], estimate)
    position = tuple(int(i) for i in np.unravel_index(worst[2], concrete_shape(source.value))) if size else ()
    return CheckReport(name, source.name, max_rel <= tolerance, max_abs, max_rel, step, tolerance,
                       len(differences), size, position, float(worst[3]), float(worst[4]), tape_none=gradient is None)


def _tangents(vector: Any, sources: list[Source]) -> list[Any]:
    if isinstance(vector, (list, tuple)) and len(vector) == len(sources):
        parts = list(vector)
    else:
        flat = tf.reshape(tf.convert_to_tensor(vector), [-1])
        sizes = [int(np.prod(concrete_shape(s.value))) for s in sources]
        if int(flat.shape[0]) != sum(sizes):
            raise SpecError(_(
                "--hvp: the vector has {count} elements but the sources have {total}: "
                "give one element per source element (or one tensor per source)", count=int(flat.shape[0]), total=sum(sizes),
            ))
        parts = tf.split(flat, sizes)
    return [tf.cast(tf.reshape(part, concrete_shape(s.value)), s.value.dtype) for part, s in zip(parts, sources)]


def _lookup_vector(path: str, namespace: dict[str, Any]) -> Any:
    found = resolve((path,), namespace) if path.split(".")[0] in namespace else None
    if not found:
        raise SpecError(_("--hvp {name}: no such name; define the vector first, e.g. v = tf.ones_like(x)", name=path))
    for source in found:  # looking a vector up must not rebind it
        if source.undo:
            source.undo()
    return [s.value for s in found] if len(found) > 1 else found[0].value
