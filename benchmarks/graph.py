"""--graph: the time from a finished result to the HTML of its computation graph, Graphviz's dot against the
pure-Python layout, for cells of about 50 and 500 ops.

    python benchmarks/graph.py [--sizes 50 500] [--repeats 5] [--quick]

The cell: a chain of ``h = tf.sin(h) * w + b`` steps over a vector (three ops each), the kind of graph a loop in a
cell makes. Where the engine fills ``result.graph`` (``tapemagic.tape(..., graph=True)``) the graph is the one
TensorFlow really ran; otherwise a TapeGraph of the same shape is built by hand (printed as "hand-built"), so the
drawing is timed either way.

Timed, interleaved (dot, fallback, dot, fallback, ...) so that both see the same machine:

- ``html``: ``render.graph.html(graph, engine=...)``: layout, SVG, notes and the table of every node;
- ``layout``: the layout alone (``render.layout.place``);
- ``step``: one step of the step controls on a drawing already laid out (``Drawing.svg(phase, step)``).

Prints milliseconds (median, and the range over the repeats) and the ratio dot / fallback.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tapemagic._graph import GraphEdge, GraphNode, TapeGraph  # noqa: E402
from tapemagic.render import graph as graph_view  # noqa: E402
from tapemagic.render import layout  # noqa: E402

WIDTH = 8  # elements of the vector the cell works on


def cell(ops: int) -> str:
    steps = max(1, ops // 3)
    return f"h = x\nfor _ in range({steps}):\n    h = tf.sin(h) * w + b\ny = tf.reduce_sum(h)\n"


def real_graph(ops: int) -> TapeGraph | None:
    """The graph the engine records for the cell, or None where it does not fill one (yet)."""
    import tensorflow as tf

    import tapemagic

    namespace = {"tf": tf, "x": tf.Variable(np.linspace(0.1, 0.8, WIDTH, dtype=np.float32)),
                 "w": tf.Variable(np.full(WIDTH, 0.9, np.float32)), "b": tf.Variable(np.full(WIDTH, 0.1, np.float32))}
    try:
        result = tapemagic.tape(cell(ops), ["x", "w", "b"], namespace=namespace, graph=True)
    except TypeError:  # no graph= yet
        return None
    return result.graph


def hand_graph(ops: int) -> TapeGraph:
    """A TapeGraph of the cell's shape: three sources, then Sin, Mul, AddV2 per step, then Sum."""
    rng = np.random.default_rng(0)
    vector = lambda: rng.normal(size=WIDTH).astype(np.float32)  # noqa: E731
    nodes = [GraphNode(i, "source", "ReadVariableOp", name, vector(), (WIDTH,), "float32", vector())
             for i, name in enumerate("xwb")]
    edges: list[GraphEdge] = []
    h = 0
    for _ in range(max(1, ops // 3)):
        for op, inputs in (("Sin", [h]), ("Mul", [None, 1]), ("AddV2", [None, 2])):
            i = len(nodes)
            inputs = [i - 1 if j is None else j for j in inputs]
            nodes.append(GraphNode(i, "op", op, "", vector(), (WIDTH,), "float32", vector(), step=i - 2))
            edges.extend(GraphEdge(j, i, k, None, vector()) for k, j in enumerate(inputs))
        h = len(nodes) - 1
    i = len(nodes)
    nodes.append(GraphNode(i, "op", "Sum", "y", np.float32(1.0), (), "float32", np.float32(1.0), step=i - 2))
    edges.append(GraphEdge(h, i, 0, None, np.ones(WIDTH, np.float32)))
    return TapeGraph("y", tuple(nodes), tuple(edges))


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def report(label: str, samples: dict[str, list[float]]) -> None:
    parts = []
    for engine, values in samples.items():
        parts.append(f"{engine} {statistics.median(values):8.1f} ms ({min(values):.1f}-{max(values):.1f})")
    ratio = statistics.median(samples["dot"]) / statistics.median(samples["fallback"])
    print(f"  {label:<8} " + "   ".join(parts) + f"   dot/fallback {ratio:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500], help="ops in the cell")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (the test)")
    args = parser.parse_args()
    sizes, repeats = ([12, 30], 1) if args.quick else (args.sizes, args.repeats)
    if not layout.dot_available():
        raise SystemExit("Graphviz's dot is not on PATH: install graphviz (apt-get install graphviz) to compare")
    import subprocess

    version = subprocess.run(["dot", "-V"], capture_output=True, text=True).stderr.strip()
    print(f"--graph: finished result -> HTML of its computation graph; {repeats} repeats, interleaved; "
          f"{version}; {os.cpu_count()} CPU cores")
    for ops in sizes:
        graph = real_graph(ops)
        origin = "recorded by the engine"
        if graph is None:
            graph, origin = hand_graph(ops), "hand-built"
        drawn = graph_view.Drawing(graph, engine="fallback")
        boxes = [layout.Box(key, *drawn.sizes[key]) for key in drawn.keys]
        edges = [(tail, head) for tail, head, _ in drawn.edges]
        op_count = sum(node.kind == "op" for node in graph.nodes)
        print(f"{ops}-op cell ({origin}): {len(graph.nodes)} nodes, {op_count} ops, {len(graph.edges)} edges")
        html = {"dot": [], "fallback": []}
        place = {"dot": [], "fallback": []}
        for _ in range(repeats):
            for engine in ("dot", "fallback"):
                html[engine].append(timed(lambda: graph_view.html(graph, engine=engine)))
                place[engine].append(timed(lambda: layout.place(boxes, edges, engine=engine)))
        report("html", html)
        report("layout", place)
        step = {"dot": [], "fallback": []}
        drawings = {engine: graph_view.Drawing(graph, engine=engine) for engine in ("dot", "fallback")}
        assert drawings["dot"].placement.engine == "dot", drawings["dot"].placement.note
        for _ in range(repeats):
            for engine, drawing in drawings.items():
                step[engine].append(timed(lambda: drawing.svg("reverse", len(graph.nodes) // 2)))
        report("step", step)
        size = len(graph_view.html(graph, drawing=drawings["dot"]))
        print(f"  the section's HTML: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
