"""The other ways to differentiate a body: forward mode, finite differences, Hessian-vector products.

Each re-runs the body (a cell on a copy of its namespace, so the user's names are
untouched; a variable being perturbed is restored however the run ends).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Iterator

import numpy as np
import tensorflow as tf

from ._sources import Source, resolve
from ._spec import SpecError, TapeSpec

__all__ = ["extras", "CheckReport", "forward", "check", "hvp", "default_step", "MAX_FORWARD_PASSES"]

MAX_FORWARD_PASSES = 4096
MAX_CHECKED_ELEMENTS = 256
# Central differences: error ~ h² (truncation) + eps/h (rounding), smallest near h = eps^(1/3).
_TOLERANCE = {"float16": 5e-2, "bfloat16": 5e-2, "float32": 1e-2, "float64": 1e-6}


def default_step(dtype: tf.DType) -> float:
    """The central-difference step for a dtype: the cube root of its machine epsilon."""
    return float(np.finfo(dtype.as_numpy_dtype).eps ** (1 / 3)) if dtype.name != "bfloat16" else 0.2


def extras(spec: TapeSpec, body: Any, raw: dict[str, Any], names: tuple[str, ...], namespace: dict[str, Any] | None) -> dict[str, Any]:
    sources = [s for s in raw["sources"] if s.differentiable]
    out: dict[str, Any] = {"passes": {"reverse": 1}}
    notes: list[str] = []
    where = "on a copy of the namespace" if body.cell is not None else ""
    if spec.forward:
        out["forward"], out["passes"]["forward"] = forward(body, raw["sources"], sources, names)
        notes.append(f"--forward re-ran the cell {out['passes']['forward']} times {where}, one per source element".replace("  ", " "))
    if spec.check:
        out["check"] = check(spec, body, raw, sources, names)
        runs = 2 * sum(report.checked for report in next(iter(out["check"].values()), {}).values())
        notes.append(f"--check re-ran the cell {runs} times {where}, two per checked element".replace("  ", " "))
    if spec.hvp is not None or body.hvp_vector is not None:
        vector = body.hvp_vector if body.hvp_vector is not None else _lookup_vector(spec.hvp, namespace or {})
        out["hvp"] = hvp(body, raw["sources"], sources, names, vector)
        notes.append(f"--hvp re-ran the cell once {where} under a ForwardAccumulator (forward-over-reverse)".replace("  ", " "))
    out["method_notes"] = notes
    return out


def forward(body: Any, everything: list[Source], sources: list[Source], names: tuple[str, ...]) -> tuple[dict[str, Any], int]:
    """First derivatives by forward mode: one ForwardAccumulator pass per source element."""
    total = sum(int(np.prod(s.value.shape.as_list())) for s in sources)
    if total > MAX_FORWARD_PASSES:
        raise SpecError(
            f"--forward needs one pass per source element, {total} here (limit {MAX_FORWARD_PASSES}): "
            "forward mode is for few inputs; use reverse mode (the default) for many"
        )
    results: dict[str, dict[str, Any]] = {name: {} for name in names}
    passes = 0
    for source in sources:
        shape = source.value.shape
        size = int(np.prod(shape.as_list()))
        columns: dict[str, list[Any]] = {name: [] for name in names}
        for index in range(size):
            tangent = tf.reshape(tf.one_hot(index, size, dtype=source.value.dtype), shape)
            with tf.autodiff.ForwardAccumulator(source.value, tangent) as accumulator:
                values = body.replay(everything)
            passes += 1
            for name in names:
                value = values[name]
                jvp = accumulator.jvp(value) if tf.is_tensor(value) else None
                columns[name].append(None if jvp is None else tf.reduce_sum(jvp))
        for name in names:
            column = columns[name]
            results[name][source.name] = None if any(c is None for c in column) else tf.reshape(tf.stack(column), shape)
    return results, passes


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """How the tape's gradient compares with central finite differences for one source."""

    target: str
    source: str
    ok: bool
    max_abs: float
    max_rel: float
    step: float
    tolerance: float
    checked: int
    elements: int
    worst: tuple[int, ...] = ()
    tape_value: float = 0.0
    difference_value: float = 0.0
    problem: str | None = None

    def __str__(self) -> str:
        from .render.numbers import scalar

        label = f"∂{self.target}/∂{self.source}"
        if self.problem:
            return f"check {label}: not checked ({self.problem})"
        sampled = "" if self.checked == self.elements else f", {self.checked} of {self.elements} elements sampled"
        errors = f"max abs error {scalar(self.max_abs, 2)}, max rel error {scalar(self.max_rel, 2)}"
        how = f"central differences, step {scalar(self.step, 2)}, 2 runs per element{sampled}"
        if self.ok:
            return f"check {label}: ok, {errors} ({how})"
        return (f"check {label}: MISMATCH, {errors} at element {self.worst}: the tape says "
                f"{scalar(self.tape_value, 6)}, finite differences say {scalar(self.difference_value, 6)} ({how}; "
                f"tolerance {scalar(self.tolerance, 2)})")

    def __contains__(self, word: str) -> bool:  # so tests and users can write "ok" in report
        return word in str(self)


def check(spec: TapeSpec, body: Any, raw: dict[str, Any], sources: list[Source], names: tuple[str, ...]) -> dict[str, dict[str, CheckReport]]:
    reports: dict[str, dict[str, CheckReport]] = {name: {} for name in names}
    for source in sources:
        step = spec.eps or default_step(source.value.dtype)
        tolerance = _TOLERANCE.get(source.value.dtype.name, 1e-2)
        if not source.is_variable and not body.can_replace(source):
            for name in names:
                reports[name][source.name] = CheckReport(name, source.name, False, 0, 0, step, tolerance, 0, 0,
                                                         problem=f"{source.name} is a tensor inside another object")
            continue
        differences = _differences(body, raw["sources"], source, names, step)
        for name in names:
            gradient = raw["derivatives"][name][1].get(source.name)
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
    return float(np.sum(np.asarray(value.numpy() if hasattr(value, "numpy") else value, dtype=np.float64)))


def _compare(name: str, source: Source, gradient: Any, differences: dict[int, float], step: float, tolerance: float) -> CheckReport:
    size = int(np.prod(source.value.shape.as_list()))
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
    position = tuple(int(i) for i in np.unravel_index(worst[2], source.value.shape.as_list())) if size else ()
    return CheckReport(name, source.name, max_rel <= tolerance, max_abs, max_rel, step, tolerance,
                       len(differences), size, position, float(worst[3]), float(worst[4]))


def hvp(body: Any, everything: list[Source], sources: list[Source], names: tuple[str, ...], vector: Any) -> dict[str, dict[str, Any]]:
    """Hessian-vector products by forward-over-reverse: a ForwardAccumulator around a tape."""
    tangents = _tangents(vector, sources)
    primals = [s.value for s in sources]
    with tf.autodiff.ForwardAccumulator(primals, tangents) as accumulator:
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            for primal in primals:
                tape.watch(primal)
            values = body.replay(everything)
        gradients = {name: tape.gradient(values[name], primals, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                     for name in names if tf.is_tensor(values[name])}
    return {name: {s.name: accumulator.jvp(g, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                   for s, g in zip(sources, grads)} for name, grads in gradients.items()}


def _tangents(vector: Any, sources: list[Source]) -> list[Any]:
    if isinstance(vector, (list, tuple)) and len(vector) == len(sources):
        parts = list(vector)
    else:
        flat = tf.reshape(tf.convert_to_tensor(vector), [-1])
        sizes = [int(np.prod(s.value.shape.as_list())) for s in sources]
        if int(flat.shape[0]) != sum(sizes):
            raise SpecError(
                f"--hvp: the vector has {int(flat.shape[0])} elements but the sources have {sum(sizes)}: "
                "give one element per source element (or one tensor per source)"
            )
        parts = tf.split(flat, sizes)
    return [tf.cast(tf.reshape(part, s.value.shape), s.value.dtype) for part, s in zip(parts, sources)]


def _lookup_vector(path: str, namespace: dict[str, Any]) -> Any:
    found = resolve((path,), namespace) if path.split(".")[0] in namespace else None
    if not found:
        raise SpecError(f"--hvp {path}: no such name; define the vector first, e.g. v = tf.ones_like(x)")
    for source in found:  # looking a vector up must not rebind it
        if source.undo:
            source.undo()
    return [s.value for s in found] if len(found) > 1 else found[0].value
