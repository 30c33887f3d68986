"""Many sources as one vector inside a trace.

A Hessian (or Jacobian, or higher order) over K separate sources asks pfor to vectorize a
gradient with K outputs, and XLA to compile K of everything: a model with a hundred small
variables took seconds to trace where one hundred-element vector takes milliseconds. Inside
the traced function the sources are therefore fed as slices of one flat vector ``z``: the
cell reads them under their own names (a top-level name, or an element of a top-level list,
tuple or dict), the tapes watch ``z`` alone, and the derivatives with respect to ``z`` are
cut back into one piece per source afterwards. Element-wise orders, Jacobian columns and the
flattened Hessian come out exactly as they would per source.

Only what the cell reaches by those names is replaced. If the traced graph still reads a
source some other way (an alias made in an earlier cell, a Keras layer's own attribute),
the plan is dropped and the sources are traced one by one (:func:`reached_otherwise`).
"""
from __future__ import annotations

import ast
import dataclasses
from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from .sources import Source

__all__ = ["Plan", "plan", "FLAT_MIN_SOURCES", "FLAT_NAME"]

FLAT_MIN_SOURCES = 4  # below this, one Jacobian over the few sources costs no more
FLAT_NAME = "(sources as one vector)"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How each source is cut from the flat vector and where the cell reads it."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    heads: Mapping[str, Any]  # top-level name -> the list/tuple/dict the cell reads (or None: the source itself)
    places: tuple[tuple[str, Any], ...]  # per source: (top-level name, index or key, or None)

    @property
    def sizes(self) -> list[int]:
        return [_count(shape) for shape in self.shapes]

    def vector(self, sources: list[Source]) -> Any:
        """The sources' current values, flattened and joined in source order (in NumPy: a hundred
        small eager reshapes cost more than the whole traced Hessian)."""
        return tf.constant(np.concatenate([np.ravel(s.value.numpy()) for s in sources]), dtype=sources[0].value.dtype)

    def parts(self, z: Any) -> dict[str, Any]:
        """Each source's slice of ``z``, in its own shape (made under the tapes, so they reach ``z``)."""
        if all(shape == () for shape in self.shapes):
            return dict(zip(self.names, tf.unstack(z)))  # one op for K scalars, not 2K
        pieces = tf.split(z, self.sizes) if len(self.names) > 1 else [z]
        return {name: tf.reshape(piece, shape) for name, shape, piece in zip(self.names, self.shapes, pieces)}

    def overlay(self, parts: Mapping[str, Any]) -> dict[str, Any]:
        """The names to rebind for the replay: each source's slice where the cell reads it."""
        rebuilt: dict[str, Any] = {}
        for head, container in self.heads.items():
            if container is None:
                continue
            rebuilt[head] = dict(container) if isinstance(container, dict) else list(container)
        for name, (head, index) in zip(self.names, self.places):
            if index is None:
                rebuilt[head] = parts[name]
            else:
                rebuilt[head][index] = parts[name]
        for head, container in self.heads.items():
            if isinstance(container, tuple):
                rebuilt[head] = tuple(rebuilt[head])
        return rebuilt

    def split(self, out: dict[str, Any]) -> dict[str, Any]:
        """The traced outputs with every derivative with respect to ``z`` cut into its sources'."""
        sizes = self.sizes

        def per_source(value: Any, leading: int) -> dict[str, Any]:
            if value is None:
                return {name: None for name in self.names}
            pieces = tf.split(value, sizes, axis=leading) if len(sizes) > 1 else [value]
            outer = value.shape[:leading]
            return {name: tf.reshape(piece, [*outer, *shape]) for name, shape, piece in zip(self.names, self.shapes, pieces)}

        derivatives = {target: {k: per_source(by_source.get(FLAT_NAME), 0) for k, by_source in orders.items()}
                       for target, orders in out["derivatives"].items()}
        jacobians = {}
        for target, by_source in out["jacobians"].items():
            jacobian = by_source.get(FLAT_NAME) if by_source is not None else None
            leading = None if jacobian is None else jacobian.shape.rank - 1
            jacobians[target] = None if jacobian is None else per_source(jacobian, leading)
        return {**out, "derivatives": derivatives, "jacobians": jacobians}


def plan(spec: Any, body: Any, sources: list[Source], first: Mapping[str, Mapping[str, Any]]) -> Plan | None:
    """A plan to feed a cell's sources as one vector, or None where it would not help or cannot be
    made: few sources, mixed dtypes, an --hvp, unwatched sources, a source the cell reaches only
    through an attribute (``layer.kernel``), or a first derivative that the real run found None.

    Only for first order with Jacobians and Hessians: ``-n 2`` differentiates the sum of each
    source's own first derivatives, which over one vector would add the mixed partials in.
    ``first``: the real run's first derivatives by target and source (a None there must stay
    None, where over one vector it would be a slice of zeros)."""
    if len(sources) < FLAT_MIN_SOURCES or spec.hvp or not spec.watch_sources or spec.order != 1 or body.kind != "cell":
        return None
    if len({s.value.dtype for s in sources}) != 1 or not all(s.value.shape.is_fully_defined() for s in sources):
        return None
    if any(gradient is None for by_source in first.values() for gradient in by_source.values()):
        return None
    shapes = tuple(tuple(s.value.shape.as_list()) for s in sources)
    names = tuple(s.name for s in sources)
    before = body.before()
    heads: dict[str, Any] = {}
    places = []
    for source in sources:
        place = _place(source.name, before)
        if place is None:
            return None
        head, index = place
        container = None if index is None else before[head]
        if heads.get(head, container) is not container:
            return None  # one name read both as a source and as a container of sources
        heads[head] = container
        places.append(place)
    return Plan(names, shapes, heads, tuple(places))


def reached_otherwise(concrete: Any, sources: list[Source]) -> bool:
    """Whether the traced graph captured a source itself (its variable's handle, or the tensor)
    instead of reading its slice of the flat vector: then part of the function would not depend on
    ``z`` and its derivatives would be missing."""
    captured = {id(t) for t in concrete.captured_inputs}
    for source in sources:
        value = source.value
        if id(value) in captured or (isinstance(value, tf.Variable) and id(value.handle) in captured):
            return True
    return False


def _place(name: str, namespace: Mapping[str, Any]) -> tuple[str, Any] | None:
    """Where the cell reads a source: ``x`` -> ("x", None); ``vs[3]`` -> ("vs", 3);
    ``d['w']`` -> ("d", "w"); anything reached through an attribute -> None."""
    if "." in name.split("[")[0]:
        return None
    if "[" not in name:
        return (name, None) if name in namespace else None
    head, _, rest = name.partition("[")
    if not rest.endswith("]") or "[" in rest:
        return None
    try:
        index = ast.literal_eval(rest[:-1])
    except (ValueError, SyntaxError):
        return None
    container = namespace.get(head)
    if type(container) in (list, tuple) and isinstance(index, int) and 0 <= index < len(container):
        return head, index
    if type(container) is dict and index in container:
        return head, index
    return None


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for dimension in shape:
        total *= dimension
    return total
