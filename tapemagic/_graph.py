"""The computation graph of one run, as ``--graph`` shows it: a typed record.

The engine (:mod:`tapemagic.engine.graph`) fills it from the ops TensorFlow really ran for
the cell (its op callbacks during the one real run) and from that run's tapes; the renderers
(:mod:`tapemagic.render.graph`) draw it. Nothing here runs TensorFlow: values are NumPy arrays.

Order matters and is kept: ``nodes`` are in the order TensorFlow ran them (sources and
constants first, then each op when it ran), so a forward pass steps through ``nodes`` in
order and a reverse pass steps through them backwards.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Iterator, Mapping

__all__ = ["GraphNode", "GraphEdge", "GraphGroup", "TapeGraph"]

# What a node is.
SOURCE = "source"        # a source of the cell (x, layer.kernel): a leaf, adjoint = the gradient
CONSTANT = "constant"    # a tensor the cell used that no recorded op produced (a tf.constant, a Python number)
OP = "op"                # one op TensorFlow ran (Square, MatMul, AddV2, a tf.function call)
KINDS = (SOURCE, CONSTANT, OP)


@dataclasses.dataclass(frozen=True)
class GraphNode:
    """One node: a source, a constant, or one op and its (first) output.

    ``value``: the forward value (NumPy), or None where there is none to show (a resource handle).
    An op with several outputs (``outputs`` > 1: a split, a tf.function call) shows its first output's
    value, adjoint and tangents; its edges say which output they carry (``GraphEdge.output``).
    ``adjoint``: ∂target/∂node, from the real run's tape (``tape.gradient(target, node_tensor)``),
    or None with ``adjoint_reason`` in words (does not reach the target, integer dtype, not recorded).
    ``tangents``: with ``--graph --forward``, the node's tangent for each source direction
    (source name → array), from one forward-mode pass per source.
    ``no_gradient``: for an op TensorFlow has no gradient for, why (the None explanation's words).
    """

    id: int
    kind: str
    op: str                                   # TensorFlow's op type ("Square"); for a source/constant, its kind of value
    name: str = ""                            # the user's own name for it where the cell gave one ("f", "x")
    value: Any = None
    shape: tuple[int, ...] = ()
    dtype: str = ""
    adjoint: Any = None
    adjoint_reason: str | None = None
    tangents: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    group: int | None = None                  # GraphGroup.id this node belongs to (innermost), or None
    no_gradient: str | None = None
    step: int = 0                             # 0 for leaves; 1, 2, ... the order in which the ops ran
    outputs: int = 1                          # how many outputs the op has (value, adjoint, tangents: output 0's)

    @property
    def label(self) -> str:
        """What a drawing calls it: the user's name, else the op type."""
        return self.name or self.op

    @property
    def scalar(self) -> bool:
        return self.shape == ()


@dataclasses.dataclass(frozen=True)
class GraphEdge:
    """Data flowing from ``source`` (a node id) into input ``index`` of op ``target``.

    ``local``: ∂target/∂source where both are scalars (the local derivative an edge label shows),
    else None. ``contribution``: the part of ``source``'s adjoint that comes through this edge
    (the op's vector-Jacobian product at the target's adjoint); a node's adjoint is the sum of
    the contributions of the edges leaving it (for an op with several outputs: of the edges leaving
    its first output). None where no gradient flows along the edge, and wherever ``source`` has no
    adjoint. A ``tf.custom_gradient`` call is differentiated by the tape as one op: the first edge
    from an outside node into its group carries that node's whole contribution (the custom
    gradient's), and the edges inside the group carry none.
    """

    source: int
    target: int
    index: int = 0
    local: Any = None
    contribution: Any = None
    output: int = 0                           # which output of ``source`` flows (ops with several outputs)


@dataclasses.dataclass(frozen=True)
class GraphGroup:
    """A Keras layer, a tf.function call or a custom gradient: nodes drawn as one box, folded or not."""

    id: int
    kind: str                                 # "layer", "function" or "custom_gradient"
    name: str                                 # the layer's name, the function's name
    parent: int | None = None                 # the enclosing group, for nested layers


@dataclasses.dataclass(frozen=True)
class TapeGraph:
    """The graph of one ``%%tape --graph`` run, for the target ``target``."""

    target: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    groups: tuple[GraphGroup, ...] = ()
    forward_sources: tuple[str, ...] = ()     # --graph --forward: the directions, one pass each
    notes: tuple[str, ...] = ()               # what was left out or could not be shown, in words
    left_out: int = 0                         # ops not drawn because of the size cap (a note says so)

    def node(self, node_id: int) -> GraphNode:
        return self.nodes[self._index[node_id]]

    # Built once per graph (the record is frozen): a drawing asks for nodes and edges by id many times.
    @functools.cached_property
    def _index(self) -> dict[int, int]:
        return {node.id: position for position, node in enumerate(self.nodes)}

    @functools.cached_property
    def _inputs(self) -> dict[int, list[GraphEdge]]:
        found: dict[int, list[GraphEdge]] = {}
        for edge in self.edges:
            found.setdefault(edge.target, []).append(edge)
        return {node_id: sorted(edges, key=lambda edge: edge.index) for node_id, edges in found.items()}

    @functools.cached_property
    def _users(self) -> dict[int, list[GraphEdge]]:
        found: dict[int, list[GraphEdge]] = {}
        for edge in self.edges:
            found.setdefault(edge.source, []).append(edge)
        return found

    def named(self, name: str) -> GraphNode:
        """The node the cell called ``name`` (KeyError if none)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"no node is named {name!r}; named nodes: {', '.join(n.name for n in self.nodes if n.name)}")

    def inputs(self, node_id: int) -> list[GraphEdge]:
        return list(self._inputs.get(node_id, ()))

    def users(self, node_id: int) -> list[GraphEdge]:
        return list(self._users.get(node_id, ()))

    def forward_order(self) -> Iterator[GraphNode]:
        return iter(self.nodes)

    def reverse_order(self) -> Iterator[GraphNode]:
        return reversed(self.nodes)
