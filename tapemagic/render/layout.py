"""Where the boxes of a drawn graph go: a layered top-down layout (data flows downwards).

Two engines give the same kind of answer (:class:`Placement`):

- Graphviz's ``dot`` (the layered layout torchviz and micrograd's ``draw_dot`` use), run as a subprocess with
  ``-Tjson0`` and a timeout. It sees only generated names (``n0``, ``e3``, ``c1``) and sizes: no user string ever
  reaches it, so nothing needs escaping and nothing the cell names can change the layout's meaning.
- a pure-Python layered layout (longest-path layers, dummy points on long edges, barycentre ordering, then
  positions pulled towards their neighbours), used when ``dot`` is not on PATH, fails or runs out of time, so a
  drawing never fails for want of Graphviz.

Top-down rather than left-to-right: a notebook's output is narrow and scrolls vertically, and a box holding a
value and an adjoint is wider than it is tall, so a deep chain of ops grows the way the page scrolls.

Which engine: ``dot`` where it is on PATH (it crosses fewer edges, draws smooth curves and keeps each group's
members, and only them, inside its box), else the fallback. ``TAPEMAGIC_GRAPH_LAYOUT=fallback`` (or ``dot``) in
the environment pins one: the fallback's output depends on nothing but this code, so a notebook's saved drawing is
the same on every machine, where dot's may move with Graphviz's version.

Units are SVG pixels (dot's points, 72 to the inch, are taken as pixels). ``y`` grows downwards.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import os
import shutil
import subprocess
from collections import defaultdict
from typing import Sequence

from .._i18n import _

__all__ = ["Box", "Cluster", "Route", "Placement", "place", "dot_available", "MARGIN", "DOT_TIMEOUT_S"]

MARGIN = 8.0            # around the whole drawing
NODE_GAP = 18.0         # between boxes in one layer
LAYER_GAP = 42.0        # between layers: room for an edge's label
CLUSTER_PAD = 8.0       # around a group's members
CLUSTER_LABEL = 16.0    # the height of a group's name above its members
DOT_TIMEOUT_S = 20.0    # after this, the fallback lays the graph out
ENGINES = ("auto", "dot", "fallback")
ENVIRONMENT = "TAPEMAGIC_GRAPH_LAYOUT"  # pins the engine "auto" stands for


@dataclasses.dataclass(frozen=True)
class Box:
    """A node to place: its key, size, and the innermost cluster it sits in (or None)."""

    key: str
    width: float
    height: float
    cluster: str | None = None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A group of boxes drawn inside one rectangle, its name written on top (``label_width`` pixels wide)."""

    key: str
    label_width: float = 0.0
    parent: str | None = None


@dataclasses.dataclass(frozen=True)
class Route:
    """An edge's path: ``points`` through which a polyline runs, or (``curved``) the control points of cubic
    Bézier segments (p0, c1, c2, p1, c1, c2, p2, ...), as dot gives them. The last point touches the head's box."""

    points: tuple[tuple[float, float], ...]
    curved: bool = False


@dataclasses.dataclass(frozen=True)
class Placement:
    """Box centres, one route per edge (in the order the edges were given), cluster rectangles, the size."""

    centres: dict[str, tuple[float, float]]
    routes: tuple[Route, ...]
    clusters: dict[str, tuple[float, float, float, float]]   # key -> (x0, y0, x1, y1)
    width: float
    height: float
    engine: str                                               # "dot" or "fallback"
    note: str = ""                                            # why the fallback ran where dot was asked for


def dot_available() -> bool:
    return shutil.which("dot") is not None


def place(boxes: Sequence[Box], edges: Sequence[tuple[str, str]], clusters: Sequence[Cluster] = (),
          engine: str = "auto") -> Placement:
    """Lay out ``boxes`` joined by ``edges`` (tail key, head key). ``engine``: "auto" (dot when it is on PATH,
    else the fallback), "dot" (the fallback only if dot is absent or fails) or "fallback"."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    note = None
    if engine == "auto":
        engine = os.environ.get(ENVIRONMENT, "").strip().lower() or "auto"
        if engine not in ENGINES:  # the cell has run: draw it anyway, and say how to set the variable
            note = _("the environment variable {variable} is {value}, which is not one of {choices}: the graph is "
                     "laid out as if it were unset (set it to fallback or dot, or unset it)", variable=ENVIRONMENT,
                     value=repr(os.environ[ENVIRONMENT]), choices=", ".join(ENGINES))
            engine = "auto"
    if engine != "fallback" and boxes:
        executable = shutil.which("dot")
        if executable is not None:
            try:
                placed = _dot(executable, boxes, edges, clusters)
                return dataclasses.replace(placed, note=note) if note else placed
            except Exception as error:  # noqa: BLE001 - whatever dot did, the pure-Python layout draws the graph
                return dataclasses.replace(_fallback(boxes, edges, clusters), note=_(
                    "Graphviz's dot failed ({error}); the graph is laid out without it", error=type(error).__name__))
    placed = _fallback(boxes, edges, clusters)
    return dataclasses.replace(placed, note=note) if note else placed


# -- Graphviz ---------------------------------------------------------------------------------------------


def _dot_source(boxes: Sequence[Box], edges: Sequence[tuple[str, str]], clusters: Sequence[Cluster]) -> tuple[str, dict[str, str]]:
    """The DOT text: generated names only (n0, n1, ...; c0, ...), so no user string is ever in it."""
    names = {box.key: f"n{i}" for i, box in enumerate(boxes)}
    cluster_names = {cluster.key: f"c{i}" for i, cluster in enumerate(clusters)}
    members: dict[str | None, list[str]] = defaultdict(list)
    for box in boxes:
        members[box.cluster if box.cluster in cluster_names else None].append(names[box.key])
    children: dict[str | None, list[Cluster]] = defaultdict(list)
    for cluster in clusters:
        children[cluster.parent if cluster.parent in cluster_names else None].append(cluster)
    sizes = {names[box.key]: (box.width / 72.0, box.height / 72.0) for box in boxes}

    def body(parent: str | None, indent: str) -> list[str]:
        lines = [f'{indent}{name} [width={sizes[name][0]:.4f} height={sizes[name][1]:.4f}];' for name in members[parent]]
        for cluster in children[parent]:
            # The label reserves room for the group's name (drawn by us): underscores of about its width.
            label = "_" * max(1, min(80, round(cluster.label_width / 6.6)))
            lines.append(f'{indent}subgraph cluster_{cluster_names[cluster.key]} {{')
            lines.append(f'{indent}  label="{label}"; labeljust=l; fontname=Courier; fontsize=11; margin=8;')
            lines.extend(body(cluster.key, indent + "  "))
            lines.append(f"{indent}}}")
        return lines

    head = ["digraph G {", "  rankdir=TB; nodesep=0.25; ranksep=0.55; splines=spline; outputorder=edgesfirst;",
            '  node [shape=box fixedsize=true label=""];', "  edge [arrowhead=none];"]
    # An edge between two boxes that both have inputs (the chain of ops) weighs more than one from a leaf (a
    # source, a constant), so dot keeps the chain straight and puts the leaves beside it, not the other way round.
    fed = {head for _, head in edges}
    edge_lines = [f"  {names[tail]} -> {names[head]} [id=e{i}" + (" weight=8" if tail in fed else "") + "];"
                  for i, (tail, head) in enumerate(edges)]
    return "\n".join([*head, *body(None, "  "), *edge_lines, "}"]) + "\n", cluster_names


def _dot(executable: str, boxes: Sequence[Box], edges: Sequence[tuple[str, str]], clusters: Sequence[Cluster]) -> Placement:
    source, cluster_names = _dot_source(boxes, edges, clusters)
    done = subprocess.run([executable, "-Tjson0"], input=source, capture_output=True, text=True,
                          timeout=DOT_TIMEOUT_S, check=True)
    data = json.loads(done.stdout)
    _, _, width, height = (float(v) for v in data["bb"].split(","))
    by_name = {box_name: box.key for box_name, box in zip((f"n{i}" for i in range(len(boxes))), boxes)}

    def point(text: str) -> tuple[float, float]:
        x, y = text.split(",")[:2]
        return float(x) + MARGIN, height - float(y) + MARGIN

    centres: dict[str, tuple[float, float]] = {}
    cluster_boxes: dict[str, tuple[float, float, float, float]] = {}
    keys_of_clusters = {f"cluster_{name}": key for key, name in cluster_names.items()}
    for item in data.get("objects", []):
        name = item.get("name", "")
        if name in by_name:
            centres[by_name[name]] = point(item["pos"])
        elif name in keys_of_clusters and "bb" in item:
            x0, y0, x1, y1 = (float(v) for v in item["bb"].split(","))
            cluster_boxes[keys_of_clusters[name]] = (x0 + MARGIN, height - y1 + MARGIN, x1 + MARGIN, height - y0 + MARGIN)
    if len(centres) != len(boxes):
        raise ValueError("dot placed fewer nodes than it was given")
    routes: list[Route | None] = [None] * len(edges)
    for item in data.get("edges", []):
        index = int(str(item["id"])[1:])
        points = tuple(point(token) for token in item["pos"].split() if not token.startswith(("e,", "s,")))
        routes[index] = Route(points, curved=len(points) >= 4 and (len(points) - 1) % 3 == 0)
    for i, route in enumerate(routes):  # an edge dot did not route (none seen): a straight line
        if route is None:
            tail, head = edges[i]
            routes[i] = Route((centres[tail], centres[head]))
    return Placement(centres, tuple(routes), cluster_boxes, width + 2 * MARGIN, height + 2 * MARGIN, "dot")  # type: ignore[arg-type]


# -- the pure-Python layered layout ------------------------------------------------------------------------


def _layers(keys: list[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layering: a box one layer below the lowest of its inputs (Kahn's order; a cycle, which a
    recorded run cannot have, is broken by taking the remaining boxes in the order given)."""
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(keys, 0)
    for tail, head in edges:
        if tail != head:
            preds[head].append(tail)
            succs[tail].append(head)
            indegree[head] += 1
    layer: dict[str, int] = {}
    ready = [key for key in keys if indegree[key] == 0]
    order: list[str] = []
    while len(order) < len(keys):
        if not ready:  # a cycle: take the first box left
            ready = [next(key for key in keys if key not in layer and key not in order)]
        key = ready.pop(0)
        if key in layer:
            continue
        layer[key] = max((layer[p] + 1 for p in preds[key] if p in layer), default=0)
        order.append(key)
        for head in succs[key]:
            indegree[head] -= 1
            if indegree[head] == 0:
                ready.append(head)
    for key in keys:  # a leaf (a constant, a source) sits just above its first user, not at the very top
        if not preds[key] and succs[key]:
            layer[key] = max(0, min(layer[head] for head in succs[key]) - 1)
    return layer


def _fallback(boxes: Sequence[Box], edges: Sequence[tuple[str, str]], clusters: Sequence[Cluster]) -> Placement:
    if not boxes:
        return Placement({}, (), {}, 2 * MARGIN, 2 * MARGIN, "fallback")
    size = {box.key: (box.width, box.height) for box in boxes}
    keys = [box.key for box in boxes]
    layer = _layers(keys, edges)
    top_cluster = _top_clusters(boxes, clusters)
    # Long edges pass through a dummy point on every layer between their ends.
    chains: list[list[str]] = []
    for i, (tail, head) in enumerate(edges):
        chain = [tail]
        lo, hi = sorted((layer[tail], layer[head]))
        for depth in range(lo + 1, hi):
            dummy = f"\0{i}:{depth}"
            layer[dummy] = depth
            size[dummy] = (0.0, 0.0)
            chain.append(dummy)
        chains.append([*chain, head])
    rows: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for key in list(layer):
        rows[layer[key]].append(key)
    up: dict[str, list[str]] = defaultdict(list)
    down: dict[str, list[str]] = defaultdict(list)
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            if layer[a] > layer[b]:
                a, b = b, a
            down[a].append(b)
            up[b].append(a)
    _order(rows, up, down, top_cluster)
    xs = _positions(rows, up, down, size)
    ys, y = {}, MARGIN
    for row in rows:
        tallest = max((size[key][1] for key in row), default=0.0)
        for key in row:
            ys[key] = y + tallest / 2
        y += tallest + LAYER_GAP
    left = min(xs[key] - size[key][0] / 2 for key in xs)
    shift = MARGIN - left + CLUSTER_PAD * _depth(clusters)
    centres = {key: (xs[key] + shift, ys[key]) for key in keys}
    # Where edges meet a box: spread along its top (and bottom) in the order their other ends lie, not one point.
    ends: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    for i, chain in enumerate(chains):
        before, after = chain[1] if len(chain) > 2 else chain[0], chain[-2] if len(chain) > 2 else chain[-1]
        ends[(chain[-1], 0)].append((xs[before], i))
        ends[(chain[0], 1)].append((xs[after], i))
    offset: dict[tuple[int, int], float] = {}
    for (key, side), items in ends.items():
        items.sort()
        span = size[key][0] * 0.6
        for j, (_x, i) in enumerate(items):
            offset[(i, side)] = 0.0 if len(items) == 1 else -span / 2 + span * j / (len(items) - 1)
    routes = []
    for i, chain in enumerate(chains):
        tail, head = chain[0], chain[-1]
        (tx, ty), (hx, hy) = centres[tail], centres[head]
        tx, hx = tx + offset[(i, 1)], hx + offset[(i, 0)]
        start = (tx, ty + size[tail][1] / 2) if ys[head] >= ys[tail] else (tx, ty - size[tail][1] / 2)
        end = (hx, hy - size[head][1] / 2) if ys[head] >= ys[tail] else (hx, hy + size[head][1] / 2)
        middle = [(xs[key] + shift, ys[key]) for key in chain[1:-1]]
        if ys[head] < ys[tail]:
            middle.reverse()
        routes.append(Route((start, *middle, end)))
    cluster_boxes = _cluster_boxes(boxes, clusters, centres)
    right = max([centres[key][0] + size[key][0] / 2 for key in keys] + [box[2] for box in cluster_boxes.values()])
    bottom = max([centres[key][1] + size[key][1] / 2 for key in keys] + [box[3] for box in cluster_boxes.values()])
    top = min([MARGIN] + [box[1] for box in cluster_boxes.values()])
    if top < MARGIN:  # a cluster's name above the first layer: move everything down
        dy = MARGIN - top
        centres = {key: (x, y + dy) for key, (x, y) in centres.items()}
        routes = [Route(tuple((x, y + dy) for x, y in route.points)) for route in routes]
        cluster_boxes = {key: (a, b + dy, c, d + dy) for key, (a, b, c, d) in cluster_boxes.items()}
        bottom += dy
    return Placement(centres, tuple(routes), cluster_boxes, right + MARGIN, bottom + MARGIN, "fallback")


def _top_clusters(boxes: Sequence[Box], clusters: Sequence[Cluster]) -> dict[str, str | None]:
    """Each box's outermost cluster: boxes of one cluster are kept side by side in their layers."""
    parent = {cluster.key: cluster.parent for cluster in clusters}
    out: dict[str, str | None] = {}
    for box in boxes:
        key, seen = box.cluster, 0
        while key is not None and parent.get(key) is not None and seen < 100:
            key, seen = parent[key], seen + 1
        out[box.key] = key if key in parent else None
    return out


def _depth(clusters: Sequence[Cluster]) -> int:
    parent = {cluster.key: cluster.parent for cluster in clusters}
    deepest = 0
    for cluster in clusters:
        depth, key = 1, cluster.parent
        while key is not None and key in parent and depth < 100:
            depth, key = depth + 1, parent[key]
        deepest = max(deepest, depth)
    return deepest


def _order(rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]],
           top_cluster: dict[str, str | None], sweeps: int = 4) -> None:
    """Barycentre ordering: each layer sorted by the mean position of its neighbours in the layer just swept,
    down and up a few times; boxes of one cluster stay together (sorted by their cluster's mean)."""
    def sort(row: list[str], neighbours: dict[str, list[str]], position: dict[str, int]) -> None:
        current = {key: i for i, key in enumerate(row)}
        centre = {}
        for key in row:
            around = [position[n] for n in neighbours[key] if n in position]
            centre[key] = sum(around) / len(around) if around else float(current[key])
        by_cluster: dict[str | None, list[float]] = defaultdict(list)
        for key in row:
            by_cluster[top_cluster.get(key)].append(centre[key])
        cluster_centre = {c: sum(v) / len(v) for c, v in by_cluster.items() if c is not None}
        row.sort(key=lambda key: (cluster_centre.get(top_cluster.get(key), centre[key]), centre[key], current[key]))

    for _sweep in range(sweeps):
        for i in range(1, len(rows)):
            sort(rows[i], up, {key: j for j, key in enumerate(rows[i - 1])})
        for i in range(len(rows) - 2, -1, -1):
            sort(rows[i], down, {key: j for j, key in enumerate(rows[i + 1])})


def _positions(rows: list[list[str]], up: dict[str, list[str]], down: dict[str, list[str]],
               size: dict[str, tuple[float, float]], sweeps: int = 4) -> dict[str, float]:
    """x of every box: packed in order, then, layer by layer down and up, each box moved towards the weighted mean
    of its neighbours in the layer just placed, in order of priority (the priority method of Sugiyama et al.):
    boxes on the chain of ops first, leaves (sources, constants) last, each as near its wish as the boxes already
    placed allow, never reordered and never overlapping."""
    xs: dict[str, float] = {}
    for row in rows:
        x = 0.0
        for key in row:
            xs[key] = x + size[key][0] / 2
            x += size[key][0] + NODE_GAP
    for sweep in range(sweeps * 2):
        order = range(1, len(rows)) if sweep % 2 == 0 else range(len(rows) - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down
        for i in order:
            row = rows[i]
            wish, priority = [], []
            for key in row:
                # the chain of ops pulls harder than a leaf (a source, a constant) beside it, as in dot
                around = [(xs[n], 8.0 if up[n] else 1.0) for n in neighbours[key]]
                total = sum(weight for _, weight in around)
                wish.append(sum(x * weight for x, weight in around) / total if around else xs[key])
                priority.append((8.0 if up[key] else 1.0) * (1 + len(up[key]) + len(down[key])))
            for key, x in zip(row, _place_row(row, wish, priority, size)):
                xs[key] = x
    return xs


def _place_row(row: list[str], wish: list[float], priority: list[float],
               size: dict[str, tuple[float, float]]) -> list[float]:
    """Positions for one layer's boxes in their order: by falling priority, each at its wish, clamped between the
    boxes already placed on either side (with room for every box between them)."""
    offsets = [0.0]  # the least distance from the first box to each box, all packed tight
    for a, b in zip(row, row[1:]):
        offsets.append(offsets[-1] + (size[a][0] + size[b][0]) / 2 + _gap(a, b))
    placed: list[int] = []  # indices already placed, in order
    x = [0.0] * len(row)
    for j in sorted(range(len(row)), key=lambda j: (-priority[j], j)):
        at = bisect.bisect(placed, j)
        low = x[placed[at - 1]] + offsets[j] - offsets[placed[at - 1]] if at > 0 else -float("inf")
        high = x[placed[at]] - (offsets[placed[at]] - offsets[j]) if at < len(placed) else float("inf")
        x[j] = min(max(wish[j], low), high)
        placed.insert(at, j)
    return x


def _gap(a: str, b: str) -> float:
    """Dummy points (long edges) need less room than boxes."""
    return NODE_GAP / 2 if a.startswith("\0") or b.startswith("\0") else NODE_GAP + 2 * CLUSTER_PAD


def _cluster_boxes(boxes: Sequence[Box], clusters: Sequence[Cluster],
                   centres: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float, float, float]]:
    """A cluster's rectangle: around its members' boxes and its inner clusters, its name on top."""
    size = {box.key: (box.width, box.height) for box in boxes}
    members: dict[str, list[str]] = defaultdict(list)
    for box in boxes:
        if box.cluster is not None:
            members[box.cluster].append(box.key)
    out: dict[str, tuple[float, float, float, float]] = {}
    children: dict[str, list[str]] = defaultdict(list)
    for cluster in clusters:
        if cluster.parent is not None:
            children[cluster.parent].append(cluster.key)

    def rect(key: str, seen: int = 0) -> tuple[float, float, float, float] | None:
        if key in out:
            return out[key]
        parts = []
        for member in members[key]:
            (x, y), (w, h) = centres[member], size[member]
            parts.append((x - w / 2, y - h / 2, x + w / 2, y + h / 2))
        for child in children[key]:
            inner = rect(child, seen + 1) if seen < 100 else None
            if inner is not None:
                parts.append(inner)
        if not parts:
            return None
        label = next((c.label_width for c in clusters if c.key == key), 0.0)
        x0, y0 = min(p[0] for p in parts) - CLUSTER_PAD, min(p[1] for p in parts) - CLUSTER_PAD - CLUSTER_LABEL
        x1, y1 = max(p[2] for p in parts) + CLUSTER_PAD, max(p[3] for p in parts) + CLUSTER_PAD
        out[key] = (x0, y0, max(x1, x0 + label + 2 * CLUSTER_PAD), y1)
        return out[key]

    for cluster in clusters:
        rect(cluster.key)
    return out
