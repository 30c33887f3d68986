"""``--graph``: the cell's computation graph drawn as inline SVG, listed as a table, and written as text.

Each box is a node of :class:`tapemagic._graph.TapeGraph`: a source, a constant, or one op TensorFlow ran, with the
user's name for it where the cell gave one, its value and its adjoint ∂target/∂node (with ``--forward``, its tangent
for a chosen source instead). Edges point the way data flows; with the reverse pass shown each carries its local
derivative and the part of the adjoint that flows back along it, so ∂f/∂y = 9 + 1 is on the page.

Steps: ``phase="forward"`` lights the nodes in the order TensorFlow ran them, ``phase="reverse"`` walks back from
the target revealing adjoints; ``phase=None`` shows everything. A :class:`Drawing` lays the graph out once (box sizes
do not depend on the step), so stepping only rewrites the SVG.

The SVG has no script; every string from the cell is escaped. JupyterLab drops ``<svg>`` from untrusted output, so
everything the drawing shows is also in the table under it (plain HTML that survives the sanitizer).
"""
from __future__ import annotations

from collections import deque
from html import escape
from typing import Any, Sequence

import numpy as np

from .._graph import CONSTANT, OP, SOURCE, GraphEdge, GraphGroup, GraphNode, TapeGraph
from .._i18n import _
from . import layout, numbers, table, wrap
from .style import variable

__all__ = ["Drawing", "svg", "html", "text", "section_title", "STYLE", "FOLD_ABOVE", "PHASES"]

FOLD_ABOVE = 120        # op nodes; above this, each outermost group (layer, function) is drawn as one box
REPEAT_FROM = 4         # users: a source or constant feeding this many boxes is drawn again beside each user
LINE_CHARS = 30         # characters of a line inside a box (the full text is in the title and the table)
EDGE_CHARS = 18         # characters of an edge's label
CHAR_PX, LINE_PX, PAD_X, PAD_Y = 6.7, 14.0, 8.0, 5.0
LABEL_CHAR_PX = 6.1     # an edge label's characters (10 px against the boxes' 11)
HOVER_ELEMENTS = 64     # elements a hover title shows before it summarises
TABLE_OPEN_UP_TO = 40   # nodes: the table under a larger graph starts folded
TEXT_WIDTH = 100
PHASES = (None, "forward", "reverse")


def _v(name: str, fallback: str) -> str:
    return variable(name, fallback)


_INK2 = _v("--jp-content-font-color2", "rgba(0,0,0,.54)")
STYLE = "<style>" + "".join([
    f".tapemagic svg.tm-graph .tm-g-box{{fill:{_v('--jp-layout-color0', '#fff')};stroke:{_INK2}}}",
    f".tapemagic svg.tm-graph .tm-g-source .tm-g-box{{stroke:{_v('--jp-brand-color1', '#1976d2')};stroke-width:2}}",
    f".tapemagic svg.tm-graph .tm-g-target .tm-g-box{{stroke:{_v('--jp-warn-color1', '#f57c00')};stroke-width:3}}",
    # Faded, never below 4.5:1 (WCAG AA): text at opacity .65 reads 5:1 on JupyterLab Light's white and on Dark's #111
    ".tapemagic svg.tm-graph .tm-g-const{opacity:.75}",
    f".tapemagic svg.tm-graph .tm-g-nograd .tm-g-box{{stroke:{_v('--jp-error-color1', '#d32f2f')};stroke-dasharray:4 3}}",
    ".tapemagic svg.tm-graph .tm-g-apart{opacity:.65}",
    ".tapemagic svg.tm-graph .tm-g-apart .tm-g-box{stroke-dasharray:2 3}",
    ".tapemagic svg.tm-graph .tm-g-dim{opacity:.65}",
    ".tapemagic svg.tm-graph .tm-g-dim .tm-g-box{stroke-dasharray:3 3}",
    # the step's node: the brand colour at a quarter over the page, light blue on white, dark blue on a dark theme
    f".tapemagic svg.tm-graph .tm-g-now .tm-g-box{{fill:{_v('--jp-brand-color1', '#1976d2')};fill-opacity:.25}}",
    f".tapemagic svg.tm-graph .tm-g-edge{{stroke:{_INK2};fill:none}}",
    f".tapemagic svg.tm-graph .tm-g-arrow{{fill:{_INK2};stroke:none}}",
    f".tapemagic svg.tm-graph .tm-g-edge.tm-g-now{{stroke:{_v('--jp-brand-color1', '#1976d2')};stroke-width:2.5}}",
    f".tapemagic svg.tm-graph .tm-g-arrow.tm-g-now{{fill:{_v('--jp-brand-color1', '#1976d2')}}}",
    f".tapemagic svg.tm-graph .tm-g-group{{fill:none;stroke:{_v('--jp-border-color1', '#bdbdbd')};stroke-dasharray:6 3}}",
    f".tapemagic svg.tm-graph .tm-g-elabel{{paint-order:stroke;stroke:{_v('--jp-layout-color0', '#fff')};"
    "stroke-width:3px;stroke-linejoin:round}",
    ".tapemagic .tm-graph-nodes td,.tapemagic .tm-graph-nodes th{padding:1px 8px;text-align:left;vertical-align:top}",
]) + "</style>"


def section_title() -> str:
    """What the static view calls the graph's section."""
    return _("Computation graph")


# -- what a node is -------------------------------------------------------------------------------------------


def target_node(graph: TapeGraph) -> GraphNode | None:
    """The node of the target: the last node the cell gave the target's name, else the last op that ran."""
    named = [node for node in graph.nodes if node.name == graph.target]
    if named:
        return named[-1]
    ops = [node for node in graph.nodes if node.kind == OP]
    return ops[-1] if ops else (graph.nodes[-1] if graph.nodes else None)


def _reaching(graph: TapeGraph, target: GraphNode | None) -> set[int]:
    """Ids of the nodes from which a path of edges leads to the target (the target included)."""
    if target is None:
        return set()
    inputs: dict[int, list[int]] = {}
    for edge in graph.edges:
        inputs.setdefault(edge.target, []).append(edge.source)
    seen, queue = {target.id}, deque([target.id])
    while queue:
        for source in inputs.get(queue.popleft(), ()):
            if source not in seen:
                seen.add(source)
                queue.append(source)
    return seen


def _short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` columns (a Chinese character takes two), ending in … where it was cut."""
    if wrap.width(text) <= limit:
        return text
    kept, used = [], 0
    for character in text:
        used += wrap.width(character)
        if used > limit - 1:
            break
        kept.append(character)
    return "".join(kept) + "…"


def _number(value: Any, precision: int, max_elements: int) -> str:
    return "None" if value is None else numbers.array(value, precision, max_elements)


def _scalar(value: Any) -> float | None:
    """The value as one number, where it is one (a scalar, or an array of one element)."""
    if value is None:
        return None
    data = numbers.as_array(value)
    if data.size != 1 or data.dtype.kind not in "biuf":
        return None
    return float(data.reshape(-1)[0])


def _quantity(node: GraphNode, direction: str | None) -> Any:
    return node.tangents.get(direction) if direction else node.adjoint


def _shape_line(node: GraphNode) -> str:
    if node.scalar and node.dtype in ("", "float32"):
        return ""
    return f"{numbers.shape(node.shape)} {node.dtype}".strip()


class Drawing:
    """One graph, laid out once, drawn at any phase and step.

    ``precision`` and ``max_elements`` are the table's number formatting; ``engine`` the layout engine
    ("auto": Graphviz's dot where it is on PATH, else the pure-Python layout; "dot"; "fallback")."""

    def __init__(self, graph: TapeGraph, precision: int = 4, max_elements: int = 12, engine: str = "auto") -> None:
        self.graph = graph
        self.precision, self.max_elements = precision, max_elements
        self.position = {node.id: i for i, node in enumerate(graph.nodes)}
        self.target = target_node(graph)
        self.reach = _reaching(graph, self.target)
        self.groups = {group.id: group for group in graph.groups}
        self.op_count = sum(node.kind == OP for node in graph.nodes)
        self.folded = self.op_count > FOLD_ABOVE and bool(graph.groups)
        self._formatted: dict[tuple[int, int], str] = {}
        self._titles: dict[tuple[int, str | None], str] = {}
        self._items()
        self._place(engine)

    # -- the boxes and edges to draw ---------------------------------------------------------------------

    def _fold_set(self) -> set[int]:
        """The groups drawn as one box each: the outermost ones, except that a group holding more than half of
        the ops (a Sequential model around its layers) is opened into its inner groups, so a model folds into
        its layers, not into one box."""
        children: dict[int | None, list[int]] = {}
        for group in self.graph.groups:
            children.setdefault(group.parent if group.parent in self.groups else None, []).append(group.id)
        ops_in = dict.fromkeys(self.groups, 0)
        for node in self.graph.nodes:
            group_id, seen = node.group, 0
            while node.kind == OP and group_id in self.groups and seen < 100:
                ops_in[group_id] += 1
                group_id, seen = self.groups[group_id].parent, seen + 1
        fold = set(children.get(None, []))
        opened = True
        while opened:
            opened = False
            for group_id in sorted(fold):
                if ops_in[group_id] * 2 > self.op_count and children.get(group_id):
                    fold.remove(group_id)
                    fold.update(children[group_id])
                    opened = True
        return fold

    def _folded_into(self, group_id: int | None, fold: set[int]) -> GraphGroup | None:
        """The folded group a node of ``group_id`` is drawn in, or None (a box of its own)."""
        seen = 0
        while group_id is not None and group_id in self.groups and seen < 100:
            if group_id in fold:
                return self.groups[group_id]
            group_id, seen = self.groups[group_id].parent, seen + 1
        return None

    def _items(self) -> None:
        """Boxes (``n<id>`` per node, ``g<id>`` per folded group), the box of each node, the edges between boxes."""
        self.members: dict[str, list[GraphNode]] = {}
        self.box_of: dict[int, str] = {}
        fold = self._fold_set() if self.folded else set()
        for node in self.graph.nodes:
            outer = self._folded_into(node.group, fold) if self.folded else None
            key = f"g{outer.id}" if outer is not None else f"n{node.id}"
            self.members.setdefault(key, []).append(node)
            self.box_of[node.id] = key
        known = set(self.box_of)
        self.edges: list[tuple[str, str, list[GraphEdge]]] = []
        merged: dict[tuple[str, str], list[GraphEdge]] = {}
        for edge in self.graph.edges:
            if edge.source not in known or edge.target not in known:
                continue
            tail, head = self.box_of[edge.source], self.box_of[edge.target]
            if tail == head:
                continue  # inside a folded group
            if self.folded and (tail.startswith("g") or head.startswith("g")):
                if (tail, head) not in merged:
                    merged[(tail, head)] = []
                    self.edges.append((tail, head, merged[(tail, head)]))
                merged[(tail, head)].append(edge)
            else:
                self.edges.append((tail, head, [edge]))
        self._repeat_leaves()

    def _repeat_leaves(self) -> None:
        """A source or constant read by many ops (a weight used on every step of a loop) is drawn again, as a small
        reference box, beside each user after the first: one long edge per use would cross the whole drawing (and
        cost the layout most of its time), as TensorBoard's graph also draws such nodes as references."""
        users: dict[str, list[int]] = {}
        for i, (tail, _head, _edges) in enumerate(self.edges):
            users.setdefault(tail, []).append(i)
        self.references: dict[str, GraphNode] = {}
        for tail, indices in users.items():
            if not tail.startswith("n") or len(indices) < REPEAT_FROM or self.members[tail][0].kind == OP:
                continue
            node = self.members[tail][0]
            for i in indices[1:]:
                _tail, head, edges = self.edges[i]
                key = f"r{i}"
                self.references[key] = node
                self.members[key] = [node]
                self.edges[i] = (key, head, edges)
        self.keys = list(self.members)

    def _clusters(self) -> list[layout.Cluster]:
        if self.folded:
            return []
        used = {node.group for node in self.graph.nodes if node.group is not None}
        wanted: set[int] = set()
        for group_id in used:  # a group and every group around it
            seen = 0
            while group_id is not None and group_id in self.groups and group_id not in wanted and seen < 100:
                wanted.add(group_id)
                group_id, seen = self.groups[group_id].parent, seen + 1
        return [layout.Cluster(f"c{group.id}", wrap.width(_group_title(group)) * CHAR_PX,
                               f"c{group.parent}" if group.parent in wanted else None)
                for group in self.graph.groups if group.id in wanted]

    def _place(self, engine: str) -> None:
        sizes = {}
        for key in self.keys:
            # The widest the box ever is: every phase and every direction, so stepping never moves a box.
            candidates = [self._lines(key, True, True, None)] + [self._lines(key, True, True, d)
                                                               for d in self.graph.forward_sources]
            width = max(wrap.width(line) for lines in candidates for line in lines) * CHAR_PX + 2 * PAD_X
            height = max(len(lines) for lines in candidates) * LINE_PX + 2 * PAD_Y
            sizes[key] = (max(width, 48.0), height)
        boxes = []
        for key in self.keys:
            group = self.members[key][0].group
            cluster = f"c{group}" if (group is not None and not self.folded and key[0] == "n") else None
            boxes.append(layout.Box(key, *sizes[key], cluster=cluster))
        self.sizes = sizes
        self.placement = layout.place(boxes, [(tail, head) for tail, head, _edges in self.edges], self._clusters(), engine)

    # -- words ------------------------------------------------------------------------------------------------

    def roles(self, node: GraphNode) -> list[str]:
        words = []
        if node.kind == SOURCE:
            words.append(_("source"))
        if self.target is not None and node.id == self.target.id:
            words.append(_("target"))
        if node.kind == CONSTANT:
            words.append(_("constant"))
        if node.no_gradient:
            words.append(_("no gradient"))
        if node.id not in self.reach:
            words.append(_("does not reach {target}", target=self.graph.target))
        if node.outputs > 1:
            words.append(_("{count} outputs, the first shown", count=node.outputs))
        return words

    def why_none(self, node: GraphNode, direction: str | None) -> str:
        """Why a node has no adjoint (or tangent), in words."""
        if direction:
            return _("no tangent for the direction {source}", source=direction)
        if node.adjoint_reason:
            return node.adjoint_reason
        if node.no_gradient:
            return node.no_gradient
        if node.id not in self.reach:
            return _("no path of ops leads from {node} to {target}, so its adjoint is None",
                     node=node.label, target=self.graph.target)
        return _("the tape recorded no gradient for it")

    def _num(self, value: Any, limit: int | None = None) -> str:
        """A value as the table writes it (``limit`` elements before it summarises), formatted once per drawing."""
        if value is None:
            return "None"
        limit = self.max_elements if limit is None else limit
        key = (id(value), limit)
        if key not in self._formatted:
            text = numbers.array(value, self.precision, limit)
            if limit == self.max_elements:  # a summary in a box: its shape is on the line above
                text = text.removeprefix(_("shape {shape}", shape=numbers.shape(numbers.as_array(value).shape)) + " ")
            self._formatted[key] = text
        return self._formatted[key]

    def _quantity_line(self, value: Any, shown: bool, direction: str | None) -> str:
        text = "?" if not shown else self._num(value)
        if direction:
            return _short(_("tangent {value}", value=text), LINE_CHARS)
        return _short(_("adjoint {value}", value=text), LINE_CHARS)

    def _lines(self, key: str, value_shown: bool, quantity_shown: bool, direction: str | None) -> list[str]:
        nodes = self.members[key]
        if key.startswith("r"):  # a source or constant drawn again beside one more user
            node = nodes[0]
            return [_short(f"{node.label} #{self.position[node.id]}", LINE_CHARS)]
        if key.startswith("g"):
            group = self.groups[int(key[1:])]
            last = nodes[-1]
            lines = [_short(_group_title(group), LINE_CHARS),
                     _short(_("{count} ops folded", count=sum(n.kind == OP for n in nodes)), LINE_CHARS)]
            node = last
        else:
            node = nodes[0]
            head = node.label if not (node.name and node.kind == OP and node.op != node.name) else f"{node.name} = {node.op}"
            lines = [_short(head, LINE_CHARS)]
            roles = self.roles(node)
            if roles:
                lines.append(_short(" · ".join(roles), LINE_CHARS))
        shape = _shape_line(node)
        if shape:
            lines.append(_short(shape, LINE_CHARS))
        value = "?" if not value_shown else ("—" if node.value is None else self._num(node.value))
        lines.append(_short(_("value {value}", value=value), LINE_CHARS))
        if node.kind != CONSTANT or direction:
            lines.append(self._quantity_line(_quantity(node, direction), quantity_shown, direction))
        return lines

    def title(self, node: GraphNode, direction: str | None = None) -> str:
        """The hover text: everything about one node, in full (up to HOVER_ELEMENTS elements)."""
        if (node.id, direction) not in self._titles:
            self._titles[(node.id, direction)] = self._title(node, direction)
        return self._titles[(node.id, direction)]

    def _title(self, node: GraphNode, direction: str | None) -> str:
        parts = [f"#{self.position[node.id]} {node.label}" + (f" ({node.op})" if node.op != node.label else "")]
        roles = self.roles(node)
        if roles:
            # Translators: joins the roles of a node, e.g. "source, does not reach f".
            parts.append(_(", ").join(roles))
        parts.append(f"{numbers.shape(node.shape)} {node.dtype}".strip())
        value = "—" if node.value is None else self._num(node.value, HOVER_ELEMENTS)
        parts.append(_("value = {value}", value=value))
        label = _derivative(self.graph.target, node.label)
        if direction:
            tangent = _quantity(node, direction)
            parts.append(_("tangent ∂{node}/∂{source} = {value}", node=node.label, source=direction,
                           value=self._num(tangent, HOVER_ELEMENTS)))
        adjoint = node.adjoint
        parts.append(_("adjoint {label} = {value}", label=label,
                       value=self._num(adjoint, HOVER_ELEMENTS)))
        if adjoint is None and node.kind != CONSTANT:
            parts.append(self.why_none(node, None))
        if node.no_gradient and node.no_gradient != node.adjoint_reason:
            parts.append(node.no_gradient)
        return "\n".join(parts)

    # -- steps --------------------------------------------------------------------------------------------

    def steps(self, phase: str | None) -> int:
        """The last step of a phase: forward 0 .. n-1 (the node that just ran), reverse 0 .. n (adjoints known)."""
        n = len(self.graph.nodes)
        return {"forward": max(n - 1, 0), "reverse": n}.get(phase or "", 0)

    def _state(self, phase: str | None, step: int | None, direction: str | None) -> tuple[set[int], set[int], int | None]:
        """(nodes whose value is shown, nodes whose adjoint or tangent is shown, the node of this step)."""
        ids = [node.id for node in self.graph.nodes]
        if phase is None:
            return set(ids), set(ids), None
        if phase not in PHASES:
            raise ValueError(f"phase must be None, 'forward' or 'reverse', not {phase!r}")
        last = self.steps(phase)
        k = last if step is None else max(0, min(int(step), last))
        if phase == "forward":
            ran = set(ids[: k + 1])
            return ran, (ran if direction else set()), (ids[k] if ids else None)
        known = set(ids[len(ids) - k:]) if k else set()
        return set(ids), known, (ids[len(ids) - k] if k else None)

    # -- the SVG --------------------------------------------------------------------------------------------

    def svg(self, phase: str | None = None, step: int | None = None, direction: str | None = None) -> str:
        """The drawing at a phase and step (``phase=None``: everything). ``direction``: a source of
        ``graph.forward_sources`` whose tangents to show instead of adjoints (not in the reverse pass)."""
        if direction is not None and direction not in self.graph.forward_sources:
            raise ValueError(f"direction must be one of the forward sources ({', '.join(self.graph.forward_sources) or 'none'}), "
                             f"not {direction!r}")
        if phase == "reverse":
            direction = None  # the reverse pass carries adjoints
        values, quantities, now = self._state(phase, step, direction)
        placement = self.placement
        parts = [self._cluster_svg(key, rect) for key, rect in placement.clusters.items()]
        taken = _Grid()  # where boxes and edge labels already are: a label goes where it hides neither
        for key, (x, y) in placement.centres.items():
            width, height = self.sizes[key]
            taken.add((x - width / 2, y - height / 2, x + width / 2, y + height / 2))
        for (tail, head, edges), route in zip(self.edges, placement.routes):
            parts.append(self._edge_svg(tail, head, edges, route, phase, values, quantities, now, direction, taken))
        for key in self.keys:
            parts.append(self._node_svg(key, values, quantities, now, direction))
        target = self.graph.target
        what = (_("tangents for {source}", source=direction) if direction else _("adjoints"))
        label = _("computation graph of {target}: {count} nodes with values and {what}", target=target,
                  count=len(self.graph.nodes), what=what)
        width, height = placement.width, placement.height
        return (f'<svg class="tm-graph" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
                f'viewBox="0 0 {width:.0f} {height:.0f}" font-size="11" font-family="monospace" fill="currentColor" '
                f'role="img" aria-label="{escape(label)}">' + "".join(parts) + "</svg>")

    def _cluster_svg(self, key: str, rect: tuple[float, float, float, float]) -> str:
        group = self.groups[int(key[1:])]
        x0, y0, x1, y1 = rect
        return (f'<g class="tm-g-cluster"><title>{escape(_group_title(group))}</title>'
                f'<rect class="tm-g-group" x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
                f'rx="6" fill="none" stroke="currentColor" stroke-opacity=".35"/>'
                f'<text x="{x0 + 6:.1f}" y="{y0 + 12:.1f}" font-style="italic">{escape(_group_title(group))}</text></g>')

    def _node_svg(self, key: str, values: set[int], quantities: set[int], now: int | None, direction: str | None) -> str:
        if key.startswith("r"):
            return self._reference_svg(key, values)
        nodes = self.members[key]
        node = nodes[-1] if key.startswith("g") else nodes[0]
        value_shown = node.id in values  # a folded group shows its output's value once its last op has run
        quantity_shown = node.id in quantities
        lines = self._lines(key, value_shown, quantity_shown, direction)
        classes = ["tm-g-node", {SOURCE: "tm-g-source", CONSTANT: "tm-g-const"}.get(node.kind, "tm-g-op")]
        if self.target is not None and self.target.id in {n.id for n in nodes}:
            classes.append("tm-g-target")
        if any(n.no_gradient for n in nodes):
            classes.append("tm-g-nograd")
        if node.id not in self.reach:
            classes.append("tm-g-apart")
        if not value_shown:
            classes.append("tm-g-dim")
        if now is not None and now in {n.id for n in nodes}:
            classes.append("tm-g-now")
        if key.startswith("g"):
            classes.append("tm-g-folded")
        x, y = self.placement.centres[key]
        width, height = self.sizes[key]
        left, top = x - width / 2, y - height / 2
        if key.startswith("g"):
            group = self.groups[int(key[1:])]
            title = "\n".join([_group_title(group), _("{count} nodes folded into one box; the table lists each",
                                                       count=len(nodes)), "", self.title(node, direction)])
        else:
            title = self.title(node, direction)
        stroke = ' stroke-width="2"' if node.kind == SOURCE or "tm-g-target" in classes else ""
        text = "".join(f'<tspan x="{left + PAD_X:.1f}" y="{top + PAD_Y + LINE_PX * (i + 1) - 3:.1f}"'
                       + (' font-weight="bold"' if i == 0 else "") + f">{escape(line)}</tspan>"
                       for i, line in enumerate(lines))
        return (f'<g class="{" ".join(classes)}" data-node="{escape(key)}"><title>{escape(title)}</title>'
                f'<rect class="tm-g-box" x="{left:.1f}" y="{top:.1f}" width="{width:.1f}" height="{height:.1f}" rx="4" '
                f'fill="none" stroke="currentColor"{stroke}/><text>{text}</text></g>')

    def _reference_svg(self, key: str, values: set[int]) -> str:
        node = self.references[key]
        (x, y), (width, height) = self.placement.centres[key], self.sizes[key]
        classes = ["tm-g-ref", {SOURCE: "tm-g-source", CONSTANT: "tm-g-const"}.get(node.kind, "tm-g-op")]
        if node.id not in values:
            classes.append("tm-g-dim")
        uses = len(self.graph.users(node.id))
        title = _("{node} (node #{n}) again: it feeds {count} ops, so it is drawn beside each of them rather than "
                  "joined to each by one long edge", node=node.label, n=self.position[node.id], count=uses)
        line = self._lines(key, True, True, None)[0]
        return (f'<g class="{" ".join(classes)}" data-ref="{escape(key)}"><title>{escape(title)}</title>'
                f'<rect class="tm-g-box" x="{x - width / 2:.1f}" y="{y - height / 2:.1f}" width="{width:.1f}" '
                f'height="{height:.1f}" rx="9" fill="none" stroke="currentColor" stroke-dasharray="3 2"/>'
                f'<text x="{x:.1f}" y="{y + 4:.1f}" text-anchor="middle" font-style="italic">{escape(line)}</text></g>')

    def _edge_label(self, edges: list[GraphEdge], direction: str | None) -> tuple[str, str]:
        """(the label on an edge, its hover text)."""
        if len(edges) != 1:
            return "", _("{count} edges between these boxes", count=len(edges))
        edge = edges[0]
        tail, head = self.graph.node(edge.source), self.graph.node(edge.target)
        p = self.precision
        local = _scalar(edge.local)
        local_text = self._num(edge.local)
        if direction:
            tangent = _scalar(tail.tangents.get(direction))
            flow = None if (local is None or tangent is None) else local * tangent
            label = "" if local is None else "×" + numbers.scalar(local, p) + ("" if flow is None else " = " + numbers.scalar(flow, p))
            hover = _("{tail} → {head}: local derivative ∂{head}/∂{tail} = {local}; tangent carried: {flow}",
                      tail=tail.label, head=head.label, local=local_text,
                      flow="None" if flow is None else numbers.scalar(flow, p))
            return label, hover
        contribution = edge.contribution
        if local is not None:
            label = "×" + numbers.scalar(local, p)
            single = _scalar(contribution)
            if single is not None:
                label += " = " + numbers.scalar(single, p)
        elif contribution is not None:
            label = _short(self._num(contribution), EDGE_CHARS)
        else:
            label = ""
        hover = _("{tail} → {head}: local derivative ∂{head}/∂{tail} = {local}; adds {contribution} to the adjoint "
                  "of {tail}", tail=tail.label, head=head.label, local=local_text,
                  contribution=self._num(contribution, HOVER_ELEMENTS))
        return label, hover

    def _edge_svg(self, tail: str, head: str, edges: list[GraphEdge], route: layout.Route, phase: str | None,
                  values: set[int], quantities: set[int], now: int | None, direction: str | None, taken: "_Grid") -> str:
        heads = [edge.target for edge in edges]
        ran = any(h in values for h in heads)
        if phase is None:
            labelled = True
        elif phase == "forward":
            labelled = bool(direction) and ran
        else:
            labelled = any(h in quantities for h in heads)
        current = now is not None and now in heads
        classes = "tm-g-edge" + (" tm-g-now" if current else "")
        label, hover = self._edge_label(edges, direction)
        points = route.points
        if route.curved:
            d = f"M{points[0][0]:.1f},{points[0][1]:.1f}" + "".join(
                f" C{points[i][0]:.1f},{points[i][1]:.1f} {points[i + 1][0]:.1f},{points[i + 1][1]:.1f} "
                f"{points[i + 2][0]:.1f},{points[i + 2][1]:.1f}" for i in range(1, len(points) - 2, 3))
        else:
            d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        opacity = "" if ran else ' opacity=".28"'
        out = [f'<g{opacity}><title>{escape(hover)}</title>'
               f'<path class="{classes}" d="{d}" fill="none" stroke="currentColor" stroke-opacity=".6"/>'
               f'{_arrow(points, "tm-g-arrow" + (" tm-g-now" if current else ""))}']
        if labelled and label:
            x, y, anchor = taken.spot(*_middle(route), wrap.width(label) * LABEL_CHAR_PX)
            out.append(f'<text class="tm-g-elabel" x="{x:.1f}" y="{y:.1f}"' + ('' if anchor == "start" else ' text-anchor="end"')
                       + f' font-size="10">{escape(label)}</text>')
        out.append("</g>")
        return "".join(out)


class _Grid:
    """Rectangles already drawn, bucketed by position, and where a new label fits among them."""

    CELL = 64.0

    def __init__(self) -> None:
        self.cells: dict[tuple[int, int], list[tuple[float, float, float, float]]] = {}

    def _keys(self, box: tuple[float, float, float, float]) -> list[tuple[int, int]]:
        return [(i, j) for i in range(int(box[0] // self.CELL), int(box[2] // self.CELL) + 1)
                for j in range(int(box[1] // self.CELL), int(box[3] // self.CELL) + 1)]

    def add(self, box: tuple[float, float, float, float]) -> None:
        for key in self._keys(box):
            self.cells.setdefault(key, []).append(box)

    def free(self, box: tuple[float, float, float, float]) -> bool:
        return not any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3]
                       for key in self._keys(box) for o in self.cells.get(key, ()))

    def spot(self, x: float, y: float, width: float) -> tuple[float, float, str]:
        """A label's baseline and anchor beside the point (x, y): right of it, else left, else a line lower or
        higher; the first place that covers no box and no other label (else the first tried)."""
        tries = [(x + 4, y + 4, "start"), (x - 4, y + 4, "end"), (x + 4, y + 15, "start"), (x - 4, y + 15, "end"),
                 (x + 4, y - 7, "start"), (x - 4, y - 7, "end")]
        for cx, cy, anchor in tries:
            left = cx if anchor == "start" else cx - width
            box = (left - 4, cy - 9, left + width + 4, cy + 2)  # a little room either side
            if self.free(box):
                self.add(box)
                return cx, cy, anchor
        cx, cy, anchor = tries[0]
        self.add((cx, cy - 9, cx + width, cy + 2))
        return cx, cy, anchor


def _group_title(group: GraphGroup) -> str:
    kinds = {"layer": _("layer"), "function": "tf.function", "custom_gradient": _("custom gradient")}
    return f"{group.name} ({kinds.get(group.kind, group.kind)})"


def _derivative(target: str, of: str) -> str:
    """∂f/∂x as the table writes it; a node's label that is no name in parentheses, ∂f/∂(x²)."""
    return table.derivative_label(target, of if (of.isidentifier() or of == "·") else f"({of})", 1)


def _arrow(points: Sequence[tuple[float, float]], classes: str) -> str:
    """A small filled triangle at the route's end, pointing along its last stretch."""
    end = points[-1]
    before = next((p for p in reversed(points[:-1]) if (p[0] - end[0]) ** 2 + (p[1] - end[1]) ** 2 > 1e-6), None)
    if before is None:
        return ""
    dx, dy = end[0] - before[0], end[1] - before[1]
    norm = float(np.hypot(dx, dy))
    ux, uy = dx / norm, dy / norm
    length, half = 8.0, 3.5
    bx, by = end[0] - ux * length, end[1] - uy * length
    corners = [end, (bx - uy * half, by + ux * half), (bx + uy * half, by - ux * half)]
    return (f'<polygon class="{classes}" points="' + " ".join(f"{x:.1f},{y:.1f}" for x, y in corners)
            + '" fill="currentColor" fill-opacity=".6"/>')


def _middle(route: layout.Route) -> tuple[float, float]:
    """A point halfway along a route (on the curve for dot's Bézier segments)."""
    points = route.points
    if route.curved:
        segments = (len(points) - 1) // 3
        i = 3 * (segments // 2)
        p0, c1, c2, p1 = points[i], points[i + 1], points[i + 2], points[i + 3]
        t = 0.5 if segments % 2 else 0.0
        if t == 0.0:
            return p0
        return tuple(0.125 * a + 0.375 * b + 0.375 * c + 0.125 * e for a, b, c, e in zip(p0, c1, c2, p1))  # type: ignore[return-value]
    a, b = points[(len(points) - 1) // 2], points[(len(points) - 1) // 2 + 1] if len(points) > 1 else points[0]
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


# -- the functions the views call ---------------------------------------------------------------------------


def svg(graph: TapeGraph, precision: int = 4, phase: str | None = None, step: int | None = None,
        direction: str | None = None, max_elements: int = 12, engine: str = "auto") -> str:
    """The graph as inline SVG at one phase and step (``phase=None``: all values and adjoints)."""
    return Drawing(graph, precision, max_elements, engine).svg(phase, step, direction)


def html(graph: TapeGraph, precision: int = 4, max_elements: int = 12, phase: str | None = None,
         step: int | None = None, direction: str | None = None, drawing: Drawing | None = None,
         engine: str = "auto") -> str:
    """The graph section's body: a legend, the SVG (scrolls when wide), notes, and every node in a table.
    ``drawing``: one already laid out (the step controls keep theirs); else one is made with ``engine``."""
    drawing = drawing or Drawing(graph, precision, max_elements, engine)
    picture = drawing.svg(phase, step, direction)
    parts = [STYLE, f'<div class="tm-note">{escape(_legend(drawing, phase, step, direction))}</div>',
             f'<div class="tm-graph-view" style="overflow:auto;max-width:100%">{picture}</div>']
    parts.extend(f'<div class="tm-note">{escape(line)}</div>' for line in notes(drawing))
    parts.append(_table(drawing))
    return "".join(parts)


def _legend(drawing: Drawing, phase: str | None, step: int | None, direction: str | None) -> str:
    graph = drawing.graph
    if phase == "forward":
        k = drawing.steps("forward") if step is None else max(0, min(step, drawing.steps("forward")))
        node = graph.nodes[k] if graph.nodes else None
        if node is not None and node.kind != OP:  # sources and constants come first: read, not computed
            return _("forward pass, step {step} of {last}: {node} is read; the nodes after it are dim",
                     step=k, last=drawing.steps("forward"), node=node.label)
        return _("forward pass, step {step} of {last}: {node} has run; the nodes after it are dim",
                 step=k, last=drawing.steps("forward"), node="—" if node is None else node.label)
    if phase == "reverse":
        k = drawing.steps("reverse") if step is None else max(0, min(step, drawing.steps("reverse")))
        if k == 0:
            return _("reverse pass, step 0 of {last}: every value is known; no adjoint yet", last=drawing.steps("reverse"))
        node = graph.nodes[len(graph.nodes) - k]
        return _("reverse pass, step {step} of {last}: the adjoint of {node} is the sum of what flows back along the "
                 "edges to its users", step=k, last=drawing.steps("reverse"), node=node.label)
    if direction:
        return _("forward mode for {source}: each node's value and its tangent ∂node/∂{source}; each edge: local "
                 "derivative × the tangent it carries", source=direction)
    return _("data flows down; each node: its value and its adjoint ∂{target}/∂node; each edge: × its local "
             "derivative = what it adds to its input's adjoint", target=graph.target)


def notes(drawing: Drawing) -> list[str]:
    """What the drawing leaves out or how it was made, in words."""
    graph = drawing.graph
    lines = []
    if drawing.folded:
        lines.append(_("{ops} ops: each layer or function is drawn as one box (more than {limit} ops); the table "
                       "below lists every node", ops=drawing.op_count, limit=FOLD_ABOVE))
    if graph.left_out:
        lines.append(_("{count} more ops ran but are not drawn (the size cap)", count=graph.left_out))
    lines.extend(graph.notes)
    if drawing.placement.note:
        lines.append(drawing.placement.note)
    return lines


def _table(drawing: Drawing) -> str:
    """Every node's value and adjoint (and tangents) in full, without hover: what an untrusted view still shows."""
    from . import html as html_view

    graph = drawing.graph
    heads = ["#", _("node"), _("op"), _("inputs"), _("shape"), _("dtype"), _("value"),
             _("adjoint {label}", label=_derivative(graph.target, "·"))]
    heads += [_("tangent for {source}", source=source) for source in graph.forward_sources]
    heads.append(_("note"))
    rows = []
    for node in graph.nodes:
        inputs = ", ".join(f"#{drawing.position[edge.source]}" for edge in graph.inputs(node.id)
                           if edge.source in drawing.position)
        cells = [str(drawing.position[node.id]), node.label, node.op, inputs, numbers.shape(node.shape), node.dtype]
        out = "".join(f"<td>{escape(cell)}</td>" for cell in cells)
        quantities = [(node.value, _("the value of node #{n}", n=drawing.position[node.id]))]
        quantities.append((node.adjoint, _("the adjoint of node #{n}", n=drawing.position[node.id])))
        quantities += [(node.tangents.get(source), _("the tangent of node #{n}", n=drawing.position[node.id]))
                       for source in graph.forward_sources]
        for value, what in quantities:
            if value is None:
                out += '<td class="tm-none">None</td>'
            else:
                out += f"<td>{escape(drawing._num(value))}{html_view.copyable(value, what)}</td>"
        remarks = drawing.roles(node)
        if node.adjoint is None and node.kind != CONSTANT:
            remarks.append(drawing.why_none(node, None))
        remarked = _("; ").join(remarks)
        out += f"<td>{escape(remarked)}</td>"
        rows.append(f"<tr>{out}</tr>")
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    body = (f'<table class="tm-values tm-graph-nodes"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    title = _("every node's value and adjoint ({count} nodes, in the order TensorFlow ran them)", count=len(graph.nodes))
    opened = " open" if len(graph.nodes) <= TABLE_OPEN_UP_TO else ""
    return f'<details class="tm-section"{opened}><summary>{escape(title)}</summary>{body}</details>'


def text(graph: TapeGraph, precision: int = 4, max_elements: int = 12) -> list[str]:
    """The nodes in the order TensorFlow ran them, one per line: what each computes from which, value, adjoint."""
    position = {node.id: i for i, node in enumerate(graph.nodes)}
    target = target_node(graph)
    reach = _reaching(graph, target)
    titles = [_("node"), _("computes"), _("value"), _("adjoint {label}", label=_derivative(graph.target, "·"))]
    titles += [_("tangent for {source}", source=source) for source in graph.forward_sources]
    rows = []
    for node in graph.nodes:
        if node.kind == OP:
            inputs = ", ".join(f"#{position[e.source]}" for e in graph.inputs(node.id) if e.source in position)
            computes = f"{node.op}({inputs})"
        else:
            computes = _("source") if node.kind == SOURCE else _("constant")
        marks = []
        if target is not None and node.id == target.id:
            marks.append(_("target"))
        if node.no_gradient:
            marks.append(_("no gradient"))
        if node.id not in reach and node.kind != CONSTANT:
            marks.append(_("does not reach {target}", target=graph.target))
        if marks:
            computes += " [" + ", ".join(marks) + "]"
        name = f"#{position[node.id]}" + (f" {node.name}" if node.name else "")
        if not node.scalar:
            name += f" {numbers.shape(node.shape)}"
        value = "—" if node.value is None else _number(node.value, precision, max_elements)
        row = [name, computes, value, _number(node.adjoint, precision, max_elements)]
        row += [_number(node.tangents.get(source), precision, max_elements) for source in graph.forward_sources]
        rows.append(row)
    lines = [_("computation graph of {target} ({count} nodes, in the order TensorFlow ran them):",
               target=graph.target, count=len(graph.nodes))]
    widths = [max(wrap.width(row[i]) for row in [titles, *rows]) for i in range(len(titles))]
    if sum(widths) + 2 * (len(widths) - 1) + 2 <= TEXT_WIDTH:
        lines.extend(("  " + "  ".join(wrap.ljust(cell, w) for cell, w in zip(row, widths))).rstrip() for row in [titles, *rows])
    else:  # too wide for one line each: a block per node, every line cut at the width
        for row in rows:
            lines.append(_short(f"  {row[0]}  {row[1]}", TEXT_WIDTH))
            lines.extend(_short(f"    {title}: {cell}", TEXT_WIDTH) for title, cell in zip(titles[2:], row[2:]))
    drawing_notes = []
    if graph.left_out:
        drawing_notes.append(_("{count} more ops ran but are not drawn (the size cap)", count=graph.left_out))
    drawing_notes.extend(graph.notes)
    for note in drawing_notes:
        # wrapped between words (or Chinese characters); a single word longer than a line is cut
        lines.extend(_short(line, TEXT_WIDTH) for line in wrap.fill(_("note: {note}", note=note), TEXT_WIDTH).split("\n"))
    return lines
