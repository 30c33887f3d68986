"""Gradient flow by layer: a Keras model's gradients at a glance.

Built from a result the engine already produced (its sources and first-order gradients)
and the Keras models those sources belong to: one row per layer and variable, from the
input layer to the output, with the gradient's size and a flag in plain words where
something looks wrong. A flag is a :class:`.words.Reason`: its words are in the result's
language, its ``kind`` ("exploding", "vanishing", "dead", "zero", "frozen", "none", "not_source")
is what code compares. Nothing is differentiated again and the cell is not run again.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .._i18n import _
from .._result import LayerRow, LayerTable
from .sources import as_variable
from .words import Reason, kind_of

__all__ = ["owners", "analyse", "EXPLODING_RELATIVE", "EXPLODING_NORM",
           "VANISHING_RELATIVE", "VANISHING_SHARE"]

# The flags' thresholds. ||g||/||w|| above 10 means one plain gradient step with learning rate 0.1
# would move the weights by more than their own size.
EXPLODING_RELATIVE = 10.0
EXPLODING_NORM = 1e3  # for variables whose weights are all zero (a fresh bias), where no ratio exists
VANISHING_RELATIVE = 1e-5
VANISHING_SHARE = 1e-4  # a layer's norm below this share of the model's largest layer norm


# -- which models ---------------------------------------------------------------------------------

def owners(namespace: dict[str, Any] | None, variables: Sequence[Any]) -> tuple[Any, ...]:
    """The Keras models in ``namespace`` (or one level down, in a dict, list or tuple there) that
    own any of ``variables`` (tf.Variables, as the engine's sources hold them), outermost only: a
    model inside another found model is named through it. Namespace order; empty when Keras was
    never imported."""
    if not namespace or "keras" not in sys.modules:
        return ()
    import keras

    wanted = {id(variable) for variable in variables}
    found: list[Any] = []
    for value in _candidates(namespace):
        if not isinstance(value, keras.Model) or any(value is seen for seen in found):
            continue
        if wanted & {id(inner) for inner in _inner_variables(value)}:
            found.append(value)
    return tuple(model for model in found if not any(_contains(other, model) for other in found if other is not model))


_CONTAINER_LIMIT = 100  # a notebook's dict of a few models, not a dataset held in a list


def _candidates(namespace: dict[str, Any]) -> Iterator[Any]:
    for name, value in list(namespace.items()):
        if name.startswith("_"):
            continue
        yield value
        if isinstance(value, dict) and len(value) <= _CONTAINER_LIMIT:
            yield from list(value.values())
        elif isinstance(value, (list, tuple)) and len(value) <= _CONTAINER_LIMIT:
            yield from value


def _inner_variables(layer: Any) -> Iterator[Any]:
    try:
        variables = list(layer.variables)
    except Exception:  # a model that is not built, or raises on inspection, owns nothing we can name
        return
    for variable in variables:
        inner = as_variable(variable)
        if inner is not None:
            yield inner


def _contains(outer: Any, inner: Any) -> bool:
    return any(layer is inner for layer in _sublayers(outer, recursive=True))


def _sublayers(layer: Any, recursive: bool = False) -> list[Any]:
    flatten = getattr(layer, "_flatten_layers", None)
    if flatten is None:
        return list(getattr(layer, "layers", []))
    return list(flatten(include_self=False, recursive=recursive))


# -- the rows -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Owned:
    """A Keras variable where the walk met it: its layer's path, the layer, and the variable."""

    path: str
    layer: Any
    variable: Any
    frozen: bool


def analyse(result: Any) -> LayerTable:
    """The gradient flow of ``result``'s first target over the Keras models in ``result.models``."""
    models = getattr(result, "models", ())
    if not models or not result.targets:
        return LayerTable()
    target = result.target
    by_variable = {id(source.value): source.name for source in result.sources}
    gradients = target.gradients
    rows = []
    for owned in _walk_models(models):
        inner = as_variable(owned.variable)
        source = by_variable.get(id(inner))
        gradient = gradients.get(source) if source is not None else None
        if gradient is None:
            rows.append(_none_row(owned, source, target.reasons.get(source, "") if source else "", result))
        else:
            rows.append(_measured_row(owned, source, gradient))
    return LayerTable(target.name, _flag_vanishing(tuple(rows)))


def _walk_models(models: Sequence[Any]) -> list[_Owned]:
    seen: set[int] = set()
    out: list[_Owned] = []
    for model in models:
        _walk(model, model.name, False, seen, out)
    return out


def _walk(layer: Any, path: str, frozen_above: bool, seen: set[int], out: list[_Owned]) -> None:
    """Depth first, in the model's own layer order (input to output for Sequential and
    functional models); a variable met twice (a shared layer) keeps its first place."""
    frozen = frozen_above or not getattr(layer, "trainable", True)
    children = _sublayers(layer)
    below = {id(v) for child in children for v in _safe_weights(child)}
    for variable in _safe_weights(layer):
        if id(variable) in below or id(variable) in seen:
            continue
        seen.add(id(variable))
        out.append(_Owned(path, layer, variable, frozen))
    for child in children:
        _walk(child, f"{path}/{child.name}", frozen, seen, out)


def _safe_weights(layer: Any) -> list[Any]:
    try:
        return list(layer.weights)
    except Exception:  # not built yet: nothing to show
        return []


def _leaf_name(variable: Any) -> str:
    return str(getattr(variable, "path", variable.name)).rsplit("/", 1)[-1].split(":")[0]


def _shape(variable: Any) -> tuple[int, ...]:
    return tuple(int(d) if d is not None else -1 for d in variable.shape)


def _none_row(owned: _Owned, source: str | None, why: str, result: Any) -> LayerRow:
    flag, reason = _none_reason(owned, source, why, result)
    return LayerRow(owned.path, type(owned.layer).__name__, _leaf_name(owned.variable), _shape(owned.variable),
                    None, None, None, None, flag, source, reason)


def _none_reason(owned: _Owned, source: str | None, why: str, result: Any) -> tuple[str, str]:
    """A short flag and the long reason for a variable without a gradient."""
    if owned.frozen:
        return (Reason(_("None: frozen layer (trainable=False)"), "none"),
                _("{layer} has trainable=False: model.trainable_variables leaves its variables out, the tape "
                  "does not watch them by itself, and an optimizer does not update them. Set trainable=True to train it.",
                  layer=owned.path))
    if not getattr(owned.variable, "trainable", True):
        return (Reason(_("None: non-trainable statistics"), "none"),
                _("{variable} is a non-trainable variable (like BatchNormalization's moving mean "
                  "and variance): Keras updates it during the forward pass in training mode, not from a gradient. "
                  "Name model.trainable_variables, not model.variables, as the sources.",
                  variable=_leaf_name(owned.variable)))
    if source is None:
        path = f"{owned.path}/{_leaf_name(owned.variable)}"
        if result.spec.sources:
            return (Reason(_("not a source"), "not_source"),
                    _("{variable} is not among the named sources: name model.trainable_variables to see every layer.",
                      variable=path))
        return (Reason(_("None: not connected to the loss"), "none"),
                _("the cell never used {variable} to compute {target} (a head or branch the loss does not use), "
                  "so the tape did not see it.", variable=path, target=result.target.name))
    return _flag_from_why(why), why


def _flag_from_why(why: str) -> Reason:
    """The few words for a reason why.py gave in full (by its kind; a plain English string by its words)."""
    kind = kind_of(why) or _kind_from_words(why)
    if kind == "no_gradient":
        return Reason(_("None: an op without a gradient"), "none")
    if kind == "integer_cast":
        return Reason(_("None: an integer cast"), "none")
    if kind == "integer_target":
        return Reason(_("None: an integer target"), "none")
    if kind == "not_watched":
        return Reason(_("None: not watched"), "none")
    if kind == "left_tensorflow":
        return Reason(_("None: the computation left TensorFlow"), "none")
    if kind == "sparse_target":
        return Reason(_("None: a sparse target"), "none")
    return Reason(_("None: not connected to the loss"), "none")


def _kind_from_words(why: str) -> str:
    """The kind of a reason given as a plain English string (one not made by why.py)."""
    if "no gradient registered" in why:
        return "no_gradient"
    if "casts to an integer" in why:
        return "integer_cast"
    if "an integer or bool result" in why:
        return "integer_target"
    if "not watched" in why:
        return "not_watched"
    if "not a tensor" in why or "left TensorFlow" in why or "computation left" in why:
        return "left_tensorflow"
    return ""


def _measured_row(owned: _Owned, source: str, gradient: Any) -> LayerRow:
    g = _as_numpy(gradient)
    w = _as_numpy(owned.variable)
    finite = bool(np.all(np.isfinite(g)))
    norm = float(np.sqrt(np.sum(np.square(g)))) if finite else math.inf
    max_abs = float(np.max(np.abs(g))) if g.size else 0.0
    zeros = float(np.mean(g == 0)) if g.size else 0.0
    weight_norm = float(np.sqrt(np.sum(np.square(w))))
    relative = norm / weight_norm if weight_norm > 0 and finite else None
    flag = _size_flag(norm, relative, finite) or _zero_flag(owned, g, zeros) or (
        Reason(_("frozen layer (trainable=False): an optimizer leaves it"), "frozen") if owned.frozen else "")
    return LayerRow(owned.path, type(owned.layer).__name__, _leaf_name(owned.variable), _shape(owned.variable),
                    norm, max_abs if finite else math.inf, zeros, relative, flag, source, _measured_reason(flag))


def _measured_reason(flag: str) -> str:
    if kind_of(flag) == "dead":
        return _("a dead unit's ReLU gave 0 for every example in the batch, so its column of the kernel (and its "
                 "bias) gets no gradient and cannot recover; a LeakyReLU, a smaller learning rate or a different "
                 "initialisation keeps units alive")
    return ""


def _as_numpy(value: Any) -> np.ndarray:
    tensor = tf.convert_to_tensor(value.value if as_variable(value) is not None else value)  # IndexedSlices too
    return np.asarray(tensor.numpy(), dtype=np.float64)


def _size_flag(norm: float, relative: float | None, finite: bool) -> str:
    if not finite:
        return Reason(_("exploding: inf or nan in the gradient"), "exploding")
    if relative is not None and relative > EXPLODING_RELATIVE:
        return Reason(_("exploding: ||g|| is {ratio}x ||w||", ratio=f"{relative:.3g}"), "exploding")
    if relative is None and norm > EXPLODING_NORM:
        return Reason(_("exploding: ||g|| = {norm}", norm=f"{norm:.3g}"), "exploding")
    if relative is not None and 0 < relative < VANISHING_RELATIVE:
        return Reason(_("vanishing: ||g|| is {ratio} of ||w||", ratio=f"{relative:.2g}"), "vanishing")
    return ""


def _zero_flag(owned: _Owned, g: np.ndarray, zeros: float) -> str:
    dead = _dead_units(owned, g)
    if dead is not None and dead[0]:
        count, units = dead
        if count == units:
            return Reason(_("dead ReLU units: all {units}", units=units), "dead")
        return Reason(_("dead ReLU units: {count} of {units}", count=count, units=units), "dead")
    if g.size and zeros == 1.0:
        return Reason(_("zero: the gradient is exactly 0 everywhere"), "zero")
    return ""


def _dead_units(owned: _Owned, g: np.ndarray) -> tuple[int, int] | None:
    """(dead, units) for a Dense kernel with a ReLU activation: a unit whose kernel column has a
    zero gradient was 0 (inactive) for every example of the batch."""
    import keras

    if not isinstance(owned.layer, keras.layers.Dense) or _leaf_name(owned.variable) != "kernel" or g.ndim != 2:
        return None
    if getattr(getattr(owned.layer, "activation", None), "__name__", "") != "relu":
        return None
    dead = int(np.sum(np.all(g == 0, axis=0)))
    return dead, int(g.shape[1])


def _flag_vanishing(rows: tuple[LayerRow, ...]) -> tuple[LayerRow, ...]:
    """A layer whose gradient norm fell below VANISHING_SHARE of the largest layer's (the
    gradients shrink layer by layer towards the input) is flagged as vanishing."""
    norms = [row.norm for row in rows if row.norm is not None and math.isfinite(row.norm)]
    largest = max(norms, default=0.0)
    if largest == 0:
        return rows
    out = []
    for row in rows:
        if not row.flag and row.norm is not None and 0 < row.norm < VANISHING_SHARE * largest:
            row = dataclasses.replace(row, flag=Reason(_("vanishing: {share} of the largest layer's norm",
                                                         share=f"{row.norm / largest:.2g}"), "vanishing"))
        out.append(row)
    return tuple(out)
