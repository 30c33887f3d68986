"""Why a gradient is None, in words.

The causes follow TensorFlow's autodiff guide ("Cases where gradient returns None"):
the source was not watched, it has an integer or string dtype, the computation left
TensorFlow (NumPy, .numpy(), Python numbers), a Variable was replaced by a Tensor, or
the target simply does not depend on the source along a differentiable path.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

from .._i18n import _
from .._spec import TapeSpec
from .cell import Cell
from .sources import Source, describe_type, holds_sparse, is_differentiable_target, leaves
from .words import Reason, joined, kind_of

__all__ = ["Reason", "opaque", "hessian_unknown", "explain", "rebinding_notes", "frozen_notes", "unavailable", "no_gradient", "failed_again", "missing_note", "sparse_target", "no_jacobian"]


def no_gradient(error: LookupError) -> Reason:
    """An op on the way from the source to the target has no registered gradient."""
    text = str(error).strip().strip("'\"")
    op = text.rsplit(":", 1)[-1].strip() if "registry has no entry" in text else text
    return Reason(_("TensorFlow has no gradient registered for {op}, an operation the cell used to compute the target, "
                    "so its backward pass stops there (LookupError: {error}). Use a differentiable operation instead, "
                    "or wrap that part in tf.stop_gradient if it should not be differentiated.", op=op, error=text),
                  "no_gradient")


def failed_again(error: Exception) -> Reason:
    """TensorFlow could take the first derivative but failed on a higher one."""
    first = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return Reason(_("TensorFlow failed while differentiating the cell again ({error}: {message}). "
                    "Some operations (tf.py_function, tf.numpy_function) can be differentiated once but not twice.",
                    error=type(error).__name__, message=first[:200]), "failed_again")


def missing_note(target: str, reason: str) -> str:
    return _("{target}: a higher derivative, Jacobian or Hessian is missing: {reason}", target=target, reason=reason)


def explain(spec: TapeSpec, target: str, value: Any, source: Source, cell: Cell | None,
            namespace: dict[str, Any] | None, watched: bool) -> Reason:
    """One or two sentences: why d(target)/d(source) is None, and what to do. The ``kind`` of the
    :class:`Reason` says which cause it is."""
    name = source.name
    dtype = source.value.dtype
    if not source.differentiable:
        return Reason(_(
            "{source} has dtype {dtype}: only floating-point tensors have gradients "
            "(TensorFlow: 'The dtype of the watched tensor must be floating'). "
            "Make it a float, e.g. tf.cast({source}, tf.float32) or tf.Variable(3.0).", source=name, dtype=dtype.name,
        ), "integer_source")
    parts = leaves(value)
    if parts is None:
        lines = _hint_lines(cell)
        if lines:
            text = _("the target {target} is a {kind}, not a tensor: the computation left TensorFlow ({lines}), "
                     "so the tape has no path from {source} to it. Keep it in TensorFlow "
                     "(tf.* ops instead of np.*, no .numpy() before the end).",
                     target=target, kind=describe_type(value), lines=lines, source=name)
        else:
            text = _("the target {target} is a {kind}, not a tensor: the computation left TensorFlow, "
                     "so the tape has no path from {source} to it. Keep it in TensorFlow "
                     "(tf.* ops instead of np.*, no .numpy() before the end).",
                     target=target, kind=describe_type(value), source=name)
        return Reason(text, "integer_cast" if _casts(cell) else "left_tensorflow")
    if holds_sparse(value):
        return Reason(sparse_target(target, value), "sparse_target")
    dtypes = {tf.as_dtype(part.dtype) for part in parts}
    bad = sorted(d.name for d in dtypes if not (d.is_floating or d.is_complex))
    if bad:
        return Reason(_("the target {target} has dtype {dtypes}: an integer or bool result has no gradient.",
                        target=target, dtypes=", ".join(bad)), "integer_target")
    if not watched:
        return _not_watched(spec, source)
    rebound = _rebound_line(source, cell, namespace)
    if rebound:
        return rebound
    branch = _only_decides_a_branch(source, cell)
    if branch:
        return branch
    lines = _hint_lines(cell)
    if lines:
        return Reason(_(
            "{target} does not depend on {source} along a differentiable path: the cell ({lines}). "
            "Values that pass through there are constants to the tape.", target=target, source=name, lines=lines,
        ), "integer_cast" if _casts(cell) else "cut")
    return Reason(_(
        "{target} does not depend on {source}: {source} is not used to compute {target}, or only "
        "through operations without a gradient (integer casts, argmax, rounding, assignment).",
        target=target, source=name,
    ), "not_connected")


def sparse_target(target: str, value: Any) -> str:
    """Why a target that is (or holds) a tf.SparseTensor has no derivatives, and what to take instead."""
    if isinstance(value, tf.SparseTensor):
        return _("the target {target} is a tf.SparseTensor, which TensorFlow's tapes do not differentiate (TensorFlow: "
                 "'Type SparseTensor is not supported as a gradient source or gradient target'). Make the target its "
                 "stored values, {target}.values, or its dense form, tf.sparse.to_dense({target}).", target=target)
    return _("the target {target} holds a tf.SparseTensor, which TensorFlow's tapes do not differentiate (TensorFlow: "
             "'Type SparseTensor is not supported as a gradient source or gradient target'). Put its stored values "
             "(s.values) or its dense form (tf.sparse.to_dense(s)) in {target} instead.", target=target)


def no_jacobian(target: str, value: Any) -> str | None:
    """Why TensorFlow cannot take a Jacobian of this target at all (a sentence shown beside the None
    Jacobian), or None when it can: tape.jacobian needs dense tensors, each of one shape."""
    parts = leaves(value)
    if parts is None:
        return None
    if holds_sparse(value):
        return sparse_target(target, value)
    if any(isinstance(part, tf.RaggedTensor) for part in parts):
        return _("the Jacobian of {target} was not computed: {target} is a tf.RaggedTensor, whose rows differ in "
                 "length, and tape.jacobian takes only a dense target of one shape. Make the target {target}.flat_values "
                 "(its entries, row after row) or {target}.to_tensor() (the rows padded with zeros).", target=target)
    return None


def _only_decides_a_branch(source: Source, cell: Cell | None) -> Reason | None:
    if cell is None or source.name not in cell.conditions:
        return None
    line = cell.conditions[source.name]
    return Reason(_(
        "{source} only decides a branch (line {line}: a Python condition): the tape records the operations "
        "of the branch taken, and {source} is not used in them, so the target does not depend on it "
        "along any recorded path. A condition is not differentiable.", source=source.name, line=line,
    ), "branch")


def _not_watched(spec: TapeSpec, source: Source) -> Reason:
    name = source.name
    if source.is_variable and not source.value.trainable:
        return Reason(_(
            "{source} is a tf.Variable with trainable=False, which tapes do not watch by themselves: "
            "name it as a source without --no-watch, or call tapemagic.watch({source}) in the cell.", source=name,
        ), "not_watched")
    if not spec.auto_watch:
        return Reason(_(
            "{source} was not watched: the tape was made with watch_accessed_variables=False "
            "(--no-auto-watch) and {source} was neither watched as a named source (--no-watch) nor "
            "passed to tapemagic.watch({source}) in the cell.", source=name,
        ), "not_watched")
    return Reason(_(
        "{source} was not watched: a tensor must be watched to be differentiated; "
        "name it as a source or call tapemagic.watch({source}).", source=name,
    ), "not_watched")


def _casts(cell: Cell | None) -> bool:
    """Whether one of the cell's lines (among those a reason names) casts to an integer type."""
    return cell is not None and any(kind_of(words) == "integer_cast" for _line, words in cell.hints[:3])


def _hint_lines(cell: Cell | None) -> str:
    """The cell's lines that take values out of TensorFlow's reach (at most three) as one clause,
    "line 3 calls .numpy(): ...; line 5 rounds, which has no gradient"; "" when there are none."""
    if cell is None or not cell.hints:
        return ""
    return joined(_("line {line} {words}", line=line, words=words) for line, words in cell.hints[:3])


def _rebound_line(source: Source, cell: Cell | None, namespace: dict[str, Any] | None) -> Reason | None:
    if cell is None or namespace is None or "." in source.name or "[" in source.name:
        return None
    line = cell.rebinds(source.name)
    if line is None or namespace.get(source.name) is source.value:
        return None
    return Reason(_(
        "line {line} rebinds {source}, so the name no longer refers to the source "
        "the tape watched; the gradient is taken with respect to the {source} the cell started with.",
        line=line, source=source.name,
    ), "rebound")


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
        now = (_("another tf.Variable") if isinstance(current, tf.Variable) else _("a Tensor") if tf.is_tensor(current)
               else _("a {kind}", kind=describe_type(current)))
        if source.is_variable:
            notes.append(_(
                "line {line} rebinds {source} (a tf.Variable) to {now}: derivatives are with respect to "
                "the {source} the cell started with. To update a variable in place, use {source}.assign(...).",
                line=line, source=source.name, now=now))
        else:
            notes.append(_(
                "line {line} rebinds {source} (a tensor) to {now}: derivatives are with respect to "
                "the {source} the cell started with. To differentiate with respect to the new value, give it another "
                "name or run another %%tape cell.", line=line, source=source.name, now=now))
    return notes


def frozen_notes(sources: list[Source], frozen: set[int]) -> list[str]:
    """A named source that Keras has frozen is differentiated (as a plain tape does); say what it means."""
    return [_("{source} belongs to a Keras layer with trainable=False: the tape differentiates it as a plain "
              "tf.GradientTape does, but model.trainable_variables leaves it out, so an optimizer would not update it.",
              source=source.name)
            for source in sources if id(source.value) in frozen]


def unavailable(spec: TapeSpec, record: Any, reasons: dict[str, str]) -> dict[str, str]:
    """Why an asked-for Jacobian or Hessian is None (or has a None block), in words."""
    out = {}
    because = record.missing.get("*") or next(iter(record.missing.values()), None)
    if because is None and reasons:
        source, reason = next(iter(reasons.items()))
        because = _("the first derivative with respect to {source} is None: {reason}", source=source, reason=reason)
    for kind, asked, value in (("jacobian", spec.jacobian, record.jacobian), ("hessian", spec.hessian, record.hessian)):
        missing = value is None or (kind == "jacobian" and any(block is None for block in value.values()))
        if asked and missing:
            out[kind] = because or _("TensorFlow returned no derivative")
    return out


def opaque(effects_seen: list[str]) -> str | None:
    """Why a higher derivative TensorFlow reports as unconnected is unknown rather than zero."""
    for words in effects_seen:
        if "py_function" in words or "numpy_function" in words:
            return _("unknown, not zero: the cell runs Python code in a tf.py_function or tf.numpy_function "
                     "({effect}), whose gradient TensorFlow cannot differentiate again", effect=words)
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
        return _("the target is not a floating-point tensor, so it has no second derivatives to show (see ∂/∂{source})",
                 source=name)
    hidden = opaque(effects_seen)
    if hidden:
        return hidden
    if cell is not None and cell.hints:
        line, words = cell.hints[0]
        return _("unknown, not zero: the first derivative with respect to {source} is None because line {line} {words}; "
                 "the second derivatives through that point are unknown", source=name, line=line, words=words)
    unwatched = [source.name for source in cut if not watched(source)]
    if unwatched:
        return _("unknown, not zero: {sources} was not watched, so its derivatives are unknown", sources=", ".join(unwatched))
    return None
