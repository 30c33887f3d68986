"""Why a gradient is None, in words.

The causes follow TensorFlow's autodiff guide ("Cases where gradient returns None"):
the source was not watched, it has an integer or string dtype, the computation left
TensorFlow (NumPy, .numpy(), Python numbers), a Variable was replaced by a Tensor, or
the target simply does not depend on the source along a differentiable path.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .._spec import TapeSpec
from .cell import Cell
from .sources import Source, describe_type, is_differentiable_target, leaves

__all__ = ["opaque", "hessian_unknown", "explain", "rebinding_notes", "frozen_notes", "unavailable", "no_gradient", "failed_again", "missing_note"]


def no_gradient(error: LookupError) -> str:
    """An op on the way from the source to the target has no registered gradient."""
    text = str(error).strip().strip("'\"")
    op = text.rsplit(":", 1)[-1].strip() if "registry has no entry" in text else text
    return (f"TensorFlow has no gradient registered for {op}, an operation the cell used to compute the target, "
            f"so its backward pass stops there (LookupError: {text}). Use a differentiable operation instead, "
            "or wrap that part in tf.stop_gradient if it should not be differentiated.")


def failed_again(error: Exception) -> str:
    """TensorFlow could take the first derivative but failed on a higher one."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return (f"TensorFlow failed while differentiating the cell again ({type(error).__name__}: {first[:200]}). "
            "Some operations (tf.py_function, tf.numpy_function) can be differentiated once but not twice.")


def missing_note(target: str, reason: str) -> str:
    return f"{target}: a higher derivative, Jacobian or Hessian is missing: {reason}"


def explain(spec: TapeSpec, target: str, value: Any, source: Source, cell: Cell | None,
            namespace: dict[str, Any] | None, watched: bool) -> str:
    """One or two sentences: why d(target)/d(source) is None, and what to do."""
    name = source.name
    dtype = source.value.dtype
    if not source.differentiable:
        return (
            f"{name} has dtype {dtype.name}: only floating-point tensors have gradients "
            f"(TensorFlow: 'The dtype of the watched tensor must be floating'). "
            f"Make it a float, e.g. tf.cast({name}, tf.float32) or tf.Variable(3.0)."
        )
    parts = leaves(value)
    if parts is None:
        where = _hint_lines(cell)
        return (
            f"the target {target} is a {describe_type(value)}, not a tensor: the computation left "
            f"TensorFlow{where}, so the tape has no path from {name} to it. Keep it in TensorFlow "
            "(tf.* ops instead of np.*, no .numpy() before the end)."
        )
    dtypes = {tf.as_dtype(part.dtype) for part in parts}
    bad = sorted(d.name for d in dtypes if not (d.is_floating or d.is_complex))
    if bad:
        return f"the target {target} has dtype {', '.join(bad)}: an integer or bool result has no gradient."
    if not watched:
        return _not_watched(spec, source)
    rebound = _rebound_line(source, cell, namespace)
    if rebound:
        return rebound
    branch = _only_decides_a_branch(source, cell)
    if branch:
        return branch
    where = _hint_lines(cell)
    if where:
        return (
            f"{target} does not depend on {name} along a differentiable path: the cell{where}. "
            "Values that pass through there are constants to the tape."
        )
    return (
        f"{target} does not depend on {name}: {name} is not used to compute {target}, or only "
        "through operations without a gradient (integer casts, argmax, rounding, assignment)."
    )


def _only_decides_a_branch(source: Source, cell: Cell | None) -> str | None:
    if cell is None or source.name not in cell.conditions:
        return None
    line = cell.conditions[source.name]
    return (
        f"{source.name} only decides a branch (line {line}: a Python condition): the tape records the operations "
        f"of the branch taken, and {source.name} is not used in them, so the target does not depend on it "
        "along any recorded path. A condition is not differentiable."
    )


def _not_watched(spec: TapeSpec, source: Source) -> str:
    name = source.name
    if source.is_variable and not source.value.trainable:
        return (
            f"{name} is a tf.Variable with trainable=False, which tapes do not watch by themselves: "
            f"name it as a source without --no-watch, or call tapemagic.watch({name}) in the cell."
        )
    if not spec.auto_watch:
        return (
            f"{name} was not watched: the tape was made with watch_accessed_variables=False "
            f"(--no-auto-watch) and {name} was neither watched as a named source (--no-watch) nor "
            f"passed to tapemagic.watch({name}) in the cell."
        )
    return (
        f"{name} was not watched: a tensor must be watched to be differentiated; "
        f"name it as a source or call tapemagic.watch({name})."
    )


def _hint_lines(cell: Cell | None) -> str:
    if cell is None or not cell.hints:
        return ""
    return "".join(f"; line {line} {words}" for line, words in cell.hints[:3]).replace("; ", " (", 1) + ")"


def _rebound_line(source: Source, cell: Cell | None, namespace: dict[str, Any] | None) -> str | None:
    if cell is None or namespace is None or "." in source.name or "[" in source.name:
        return None
    line = cell.rebinds(source.name)
    if line is None or namespace.get(source.name) is source.value:
        return None
    return (
        f"line {line} rebinds {source.name}, so the name no longer refers to the source "
        f"the tape watched; the gradient is taken with respect to the {source.name} the cell started with."
    )


def rebinding_notes(sources: list[Source], cell: Cell | None, namespace: dict[str, Any] | None) -> list[str]:
    """Notes for sources the cell rebound, e.g. a Variable replaced by a Tensor (x = x + 1)."""
    notes = []
    if cell is None or namespace is None:
        return notes
    for source in sources:
        if "." in source.name or "[" in source.name:
            continue
        line = cell.rebinds(source.name)
        current = namespace.get(source.name)
        if line is None or current is source.value:
            continue
        what = "a tf.Variable" if source.is_variable else "a tensor"
        now = ("another tf.Variable" if isinstance(current, tf.Variable) else "a Tensor" if tf.is_tensor(current)
               else f"a {describe_type(current)}")
        advice = (f" To update a variable in place, use {source.name}.assign(...)." if source.is_variable else
                  " To differentiate with respect to the new value, give it another name or run another %%tape cell.")
        notes.append(
            f"line {line} rebinds {source.name} ({what}) to {now}: derivatives are with respect to "
            f"the {source.name} the cell started with.{advice}"
        )
    return notes


def frozen_notes(sources: list[Source], frozen: set[int]) -> list[str]:
    """A named source that Keras has frozen is differentiated (as a plain tape does); say what it means."""
    return [f"{source.name} belongs to a Keras layer with trainable=False: the tape differentiates it as a plain "
            "tf.GradientTape does, but model.trainable_variables leaves it out, so an optimizer would not update it."
            for source in sources if id(source.value) in frozen]


def unavailable(spec: TapeSpec, record: Any, reasons: dict[str, str]) -> dict[str, str]:
    """Why an asked-for Jacobian or Hessian is None (or has a None block), in words."""
    out = {}
    because = record.missing.get("*") or next(iter(record.missing.values()), None)
    if because is None and reasons:
        source, reason = next(iter(reasons.items()))
        because = f"the first derivative with respect to {source} is None: {reason}"
    for kind, asked, value in (("jacobian", spec.jacobian, record.jacobian), ("hessian", spec.hessian, record.hessian)):
        missing = value is None or (kind == "jacobian" and any(block is None for block in value.values()))
        if asked and missing:
            out[kind] = because or "TensorFlow returned no derivative"
    return out


def opaque(effects_seen: list[str]) -> str | None:
    """Why a higher derivative TensorFlow reports as unconnected is unknown rather than zero."""
    for words in effects_seen:
        if "py_function" in words or "numpy_function" in words:
            return ("unknown, not zero: the cell runs Python code in a tf.py_function or tf.numpy_function "
                    f"({words}), whose gradient TensorFlow cannot differentiate again")
    return None


def hessian_unknown(record: Any, sources: list[Source], cell: Cell | None, effects_seen: list[str],
                    watched: Any) -> str | None:
    """Whether the zeros a Hessian has where a first derivative is None are unknown rather than zero.
    A source the target simply does not depend on has zero second derivatives (what TensorFlow's
    unconnected_gradients=ZERO gives). But where the path was cut (the value left TensorFlow, an op
    TensorFlow differentiates once, an unwatched source, a target that is no tensor), they are unknown."""
    first = record.orders.get(1, {})
    cut = [source for source in sources if first.get(source.name) is None]
    if not cut:
        return None
    name = cut[0].name
    if not is_differentiable_target(record.value):
        return f"the target is not a floating-point tensor, so it has no second derivatives to show (see ∂/∂{name})"
    hidden = opaque(effects_seen)
    if hidden:
        return hidden
    if cell is not None and cell.hints:
        line, words = cell.hints[0]
        return (f"unknown, not zero: the first derivative with respect to {name} is None because line {line} {words}; "
                "the second derivatives through that point are unknown")
    unwatched = [source.name for source in cut if not watched(source)]
    if unwatched:
        return f"unknown, not zero: {', '.join(unwatched)} was not watched, so its derivatives are unknown"
    return None
