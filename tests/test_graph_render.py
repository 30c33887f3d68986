"""--graph drawn: the SVG, the table under it, the text form, the layouts (Graphviz's dot and the pure-Python
fallback), the steps of the forward and reverse passes, and the step controls.

The graphs here are built by hand as TapeGraph records with the numbers TensorFlow gives (E17: x = 3, y = 4,
f = x**2 * y + y + 2; every adjoint and local derivative checked against tf.GradientTape in the first test), so the
drawing is tested apart from the engine that fills the record; the last tests run the real magic.
"""
from __future__ import annotations

import dataclasses
import os
import re
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from tapemagic._graph import GraphEdge, GraphGroup, GraphNode, TapeGraph
from tapemagic.render import graph as G
from tapemagic.render import layout, widget

from test_static_view import _Elements, _lab_core, _style_checks, sanitizer  # noqa: F401 - a fixture

SVG = "{http://www.w3.org/2000/svg}"
f32 = np.float32


def e17(forward: bool = False) -> TapeGraph:
    """E17 as TensorFlow runs it: x**2 is Square (9), times y is Mul (36), + y is AddV2 (40), + 2 is AddV2 (42)."""
    tangents = {  # --graph --forward: ∂node/∂x and ∂node/∂y, one forward-mode pass each (E21: 42 + 24ε)
        0: {"x": 1, "y": 0}, 1: {"x": 0, "y": 1}, 2: {"x": 6, "y": 0}, 3: {"x": 24, "y": 9}, 4: {"x": 24, "y": 10},
        5: {"x": 0, "y": 0}, 6: {"x": 24, "y": 10}} if forward else {}
    rows = [(0, "source", "ReadVariableOp", "x", 3, 24), (1, "source", "ReadVariableOp", "y", 4, 10),
            (2, "op", "Square", "", 9, 4), (3, "op", "Mul", "", 36, 1), (4, "op", "AddV2", "", 40, 1),
            (5, "constant", "Const", "", 2, None), (6, "op", "AddV2", "f", 42, 1)]
    nodes = tuple(GraphNode(i, kind, op, name, f32(value), (), "float32", None if adjoint is None else f32(adjoint),
                            "a constant: nothing is differentiated with respect to it" if adjoint is None else None,
                            {k: f32(v) for k, v in tangents.get(i, {}).items()}, step=i)
                  for i, kind, op, name, value, adjoint in rows)
    edges = tuple(GraphEdge(a, b, i, f32(local), None if c is None else f32(c)) for a, b, i, local, c in [
        (0, 2, 0, 6, 24), (2, 3, 0, 4, 4), (1, 3, 1, 9, 9), (3, 4, 0, 1, 1), (1, 4, 1, 1, 1), (4, 6, 0, 1, 1),
        (5, 6, 1, 1, None)])
    return TapeGraph("f", nodes, edges, forward_sources=("x", "y") if forward else ())


def test_the_hand_built_e17_record_holds_tensorflows_own_numbers():
    """The numbers the drawing tests rely on are TensorFlow's: each node's adjoint is tape.gradient(f, node)."""
    x, y = tf.Variable(3.0), tf.Variable(4.0)
    with tf.GradientTape(persistent=True) as tape:
        square = x ** 2
        product = square * y
        partial = product + y
        f = partial + 2
    graph = e17()
    for node_id, tensor in [(2, square), (3, product), (4, partial), (6, f)]:
        node = graph.node(node_id)
        assert float(node.value) == float(tensor) and float(node.adjoint) == float(tape.gradient(f, tensor))
    assert [float(graph.node(i).adjoint) for i in (0, 1)] == [float(g) for g in tape.gradient(f, [x, y])]
    # a node's adjoint is the sum of the contributions of the edges leaving it (y: 9 + 1)
    for node in graph.nodes:
        if node.adjoint is not None and graph.users(node.id):
            assert sum(float(e.contribution) for e in graph.users(node.id)) == float(node.adjoint)


def _parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def _node_boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    boxes = {}
    for group in root.iter(f"{SVG}g"):
        if "tm-g-node" in group.get("class", "").split():
            rect = group.find(f"{SVG}rect")
            x, y, w, h = (float(rect.get(k)) for k in ("x", "y", "width", "height"))
            boxes[group.get("data-node")] = (x, y, x + w, y + h)
    return boxes


def _node_texts(root: ET.Element) -> dict[str, list[str]]:
    out = {}
    for group in root.iter(f"{SVG}g"):
        if "tm-g-node" in group.get("class", "").split():
            out[group.get("data-node")] = [t.text or "" for t in group.iter(f"{SVG}tspan")]
    return out


def _edge_labels(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter(f"{SVG}text") if "tm-g-elabel" in t.get("class", "")]


@pytest.mark.parametrize("engine", ["dot", "fallback"])
def test_e17_drawing_has_every_value_adjoint_and_local_derivative(engine):
    if engine == "dot" and not layout.dot_available():
        pytest.skip("Graphviz's dot is not on PATH")
    root = _parse(G.svg(e17(), engine=engine))
    texts = _node_texts(root)
    assert texts["n0"] == ["x", "source", "value 3", "adjoint 24"]
    assert texts["n1"] == ["y", "source", "value 4", "adjoint 10"]
    assert texts["n2"] == ["Square", "value 9", "adjoint 4"]
    assert texts["n3"] == ["Mul", "value 36", "adjoint 1"]
    assert texts["n5"] == ["Const", "constant", "value 2"]  # no adjoint line for a constant
    assert texts["n6"] == ["f = AddV2", "target", "value 42", "adjoint 1"]
    # ∂f/∂y = 10 is what flows back along y's two edges: ×9 into Mul and ×1 into the first AddV2
    assert sorted(_edge_labels(root)) == sorted(["×6 = 24", "×4 = 4", "×9 = 9", "×1 = 1", "×1 = 1", "×1 = 1", "×1"])
    classes = {g.get("data-node"): g.get("class").split() for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert "tm-g-source" in classes["n0"] and "tm-g-target" in classes["n6"] and "tm-g-const" in classes["n5"]
    titles = {g.get("data-node"): g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert "value = 3" in titles["n0"] and "adjoint ∂f/∂x = 24" in titles["n0"]


@pytest.mark.parametrize("engine", ["dot", "fallback"])
def test_node_boxes_never_overlap_and_lie_inside_the_drawing(engine):
    if engine == "dot" and not layout.dot_available():
        pytest.skip("Graphviz's dot is not on PATH")
    for graph in (e17(), _random_graph(60, seed=1), _random_graph(90, seed=2, groups=3)):
        root = _parse(G.svg(graph, engine=engine))
        boxes = list(_node_boxes(root).values())
        assert len(boxes) == len(graph.nodes)
        width, height = float(root.get("width")), float(root.get("height"))
        for i, a in enumerate(boxes):
            assert a[0] >= 0 and a[1] >= 0 and a[2] <= width + 0.5 and a[3] <= height + 0.5
            for b in boxes[i + 1:]:
                overlap = min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5
                assert not overlap, (a, b)


def test_data_flows_down_every_edge():
    """Every edge's head sits below its tail, in both layouts (top-down: data flows the way the page scrolls)."""
    graph = _random_graph(40, seed=3)
    for engine in ("dot", "fallback") if layout.dot_available() else ("fallback",):
        drawing = G.Drawing(graph, engine=engine)
        centres = drawing.placement.centres
        for tail, head, _ in drawing.edges:
            assert centres[head][1] > centres[tail][1], (engine, tail, head)


def test_without_dot_on_path_the_fallback_draws(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not layout.dot_available()
    drawing = G.Drawing(e17())
    assert drawing.placement.engine == "fallback" and drawing.placement.note == ""
    assert "value 42" in drawing.svg()


def test_a_failing_dot_falls_back_and_says_so(monkeypatch, tmp_path):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: broken' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(tmp_path))
    drawing = G.Drawing(e17(), engine="dot")
    assert drawing.placement.engine == "fallback"
    assert "dot failed (CalledProcessError)" in " ".join(G.notes(drawing))
    assert "value 42" in G.html(e17(), drawing=drawing)


def test_dot_sees_no_user_string():
    """The DOT text holds generated names and sizes only: nothing the cell names can reach Graphviz."""
    graph = _hostile_graph()
    drawing = G.Drawing(graph, engine="fallback")
    source, _ = layout._dot_source([layout.Box(k, *drawing.sizes[k]) for k in drawing.keys],
                                   [(a, b) for a, b, _ in drawing.edges], drawing._clusters())
    for word in ("script", "amp", "evil", "&", "'", "<b>"):
        assert word not in source


def _hostile_graph() -> TapeGraph:
    nodes = (GraphNode(0, "source", "ReadVariableOp", "<script>alert(1)</script>", f32(1.0), (), "float32", f32(2.0)),
             GraphNode(1, "op", "</svg><script>evil()</script>", "\"&'", f32(2.0), (), "float32", f32(1.0),
                       group=0, step=1),
             GraphNode(2, "op", "Identity", "]]><!--", f32(2.0), (), "float32", None, "<i>reason</i> & more", step=2))
    edges = (GraphEdge(0, 1, 0, f32(2.0), f32(2.0)), GraphEdge(1, 2, 0, None, None))
    return TapeGraph("\"&'", nodes, edges, groups=(GraphGroup(0, "layer", "<b>dense</b>"),),
                     notes=("<script>note()</script>",))


def test_every_user_string_is_escaped():
    graph = _hostile_graph()
    for engine in ("dot", "fallback") if layout.dot_available() else ("fallback",):
        picture = G.Drawing(graph, engine=engine).svg()
        root = _parse(picture)  # well-formed XML: nothing broke out of its element or attribute
        assert not [e for e in root.iter() if e.tag.endswith("script")]
        names = " ".join(t.text or "" for t in root.iter(f"{SVG}tspan"))
        assert "<script>alert(1)</script>" in names  # shown as text, once parsed
    page = G.html(graph)
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;note()&lt;/script&gt;" in page and "&lt;i&gt;reason&lt;/i&gt; &amp; more" in page
    found = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append(tag)

    Tags().feed(page)
    assert "script" not in found
    assert "\n".join(G.text(graph)).count("<script>alert(1)</script>") == 1  # text/plain is not HTML


def test_forward_steps_light_the_nodes_in_the_order_they_ran():
    drawing = G.Drawing(e17())
    assert drawing.steps("forward") == 6 and drawing.steps("reverse") == 7
    first = _node_texts(_parse(drawing.svg("forward", 0)))
    assert first["n0"][2] == "value 3" and first["n6"][2] == "value ?" and first["n2"][1] == "value ?"
    assert all("adjoint ?" in lines for key, lines in first.items() if key != "n5")
    root = _parse(drawing.svg("forward", 2))
    dim = {g.get("data-node") for g in root.iter(f"{SVG}g") if "tm-g-dim" in g.get("class", "")}
    now = {g.get("data-node") for g in root.iter(f"{SVG}g") if "tm-g-now" in g.get("class", "").split()
           and g.get("data-node")}
    assert dim == {"n3", "n4", "n5", "n6"} and now == {"n2"}
    assert _edge_labels(root) == []  # the forward pass carries values, not derivatives
    last = _node_texts(_parse(drawing.svg("forward", 99)))  # past the end: the last step
    assert last["n6"][2] == "value 42" and last["n0"][3] == "adjoint ?"


def test_reverse_steps_walk_back_from_the_target():
    drawing = G.Drawing(e17())
    start = _node_texts(_parse(drawing.svg("reverse", 0)))
    assert start["n6"][2:] == ["value 42", "adjoint ?"] and start["n0"][2:] == ["value 3", "adjoint ?"]
    one = _parse(drawing.svg("reverse", 1))
    assert _node_texts(one)["n6"][3] == "adjoint 1" and _node_texts(one)["n4"][2] == "adjoint ?"
    assert sorted(_edge_labels(one)) == ["×1", "×1 = 1"]  # what flows back from f to its two inputs
    five = _parse(drawing.svg("reverse", 5))  # Square's adjoint known: 4, and 6 × 4 = 24 flows to x
    texts = _node_texts(five)
    assert texts["n2"][2] == "adjoint 4" and texts["n1"][3] == "adjoint ?" and "×6 = 24" in _edge_labels(five)
    full = _node_texts(_parse(drawing.svg("reverse", 7)))
    assert full["n0"][3] == "adjoint 24" and full["n1"][3] == "adjoint 10"
    assert _node_texts(_parse(drawing.svg())) == full  # the last reverse step shows what the static view does
    with pytest.raises(ValueError, match="phase must be"):
        drawing.svg("sideways", 1)


def test_forward_mode_shows_tangents_for_the_chosen_source():
    graph = e17(forward=True)
    root = _parse(G.svg(graph, direction="x"))
    texts = _node_texts(root)
    assert texts["n0"][-1] == "tangent 1" and texts["n2"][-1] == "tangent 6" and texts["n6"][-1] == "tangent 24"
    assert "×6 = 6" in _edge_labels(root)  # Square's tangent: 2x × ẋ
    assert _node_texts(_parse(G.svg(graph, direction="y")))["n6"][-1] == "tangent 10"
    stepped = _node_texts(_parse(G.svg(graph, phase="forward", step=2, direction="x")))
    assert stepped["n2"][-1] == "tangent 6" and stepped["n3"][-1] == "tangent ?"
    with pytest.raises(ValueError, match="forward sources"):
        G.svg(graph, direction="z")
    # the box sizes do not change with the direction: stepping or switching never moves a box
    drawing = G.Drawing(graph)
    assert _node_boxes(_parse(drawing.svg(direction="x"))) == _node_boxes(_parse(drawing.svg()))


def test_nodes_apart_from_the_target_and_without_gradient_say_why():
    nodes = (GraphNode(0, "source", "ReadVariableOp", "x", f32(2.0), (), "float32", f32(1.0)),
             GraphNode(1, "source", "ReadVariableOp", "z", f32(5.0), (), "float32", None,
                       "y does not depend on z: no recorded op reads z"),
             GraphNode(2, "op", "Round", "", f32(2.0), (), "float32", None, None, no_gradient="Round has no gradient "
                       "registered in TensorFlow: the tape cannot go back through it", step=1),
             GraphNode(3, "op", "Sin", "", f32(np.sin(5.0)), (), "float32", None, step=2),
             GraphNode(4, "op", "AddV2", "y", f32(4.0), (), "float32", f32(1.0), step=3))
    edges = (GraphEdge(0, 2, 0, None, None), GraphEdge(1, 3, 0, f32(np.cos(5.0)), None),
             GraphEdge(0, 4, 0, f32(1.0), f32(1.0)), GraphEdge(2, 4, 1, f32(1.0), None))
    graph = TapeGraph("y", nodes, edges)
    root = _parse(G.svg(graph))
    classes = {g.get("data-node"): g.get("class").split() for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert "tm-g-apart" in classes["n1"] and "tm-g-apart" in classes["n3"] and "tm-g-apart" not in classes["n0"]
    assert "tm-g-nograd" in classes["n2"]
    texts = _node_texts(root)
    assert texts["n1"][1] == "source · does not reach y" and texts["n2"][1] == "no gradient"
    page = G.html(graph)
    assert "y does not depend on z: no recorded op reads z" in page
    assert "Round has no gradient registered in TensorFlow" in page
    assert "no path of ops leads from Sin to y, so its adjoint is None" in page
    lines = G.text(graph)
    assert any("Round(#0) [no gradient]" in line for line in lines)
    assert any("Sin(#1) [does not reach y]" in line for line in lines)


def test_tensor_nodes_show_shape_and_summary_and_everything_in_the_table():
    value = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    nodes = (GraphNode(0, "source", "ReadVariableOp", "w", value, (3, 4), "float32", 2 * value),
             GraphNode(1, "op", "Square", "", value ** 2, (3, 4), "float32", np.ones((3, 4), np.float32), step=1),
             GraphNode(2, "op", "Sum", "loss", f32((value ** 2).sum()), (), "float32", f32(1.0), step=2))
    edges = (GraphEdge(0, 1, 0, None, 2 * value), GraphEdge(1, 2, 0, None, np.ones((3, 4), np.float32)))
    graph = TapeGraph("loss", nodes, edges)
    root = _parse(G.svg(graph, max_elements=4))
    texts = _node_texts(root)
    assert texts["n0"][2] == "(3, 4) float32" and texts["n0"][3].startswith("value min 0 max 1.571 mean")
    assert all(len(line) <= G.LINE_CHARS for lines in texts.values() for line in lines)
    titles = {g.get("data-node"): g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("data-node")}
    assert "[[0, 0.1429, 0.2857, 0.4286], [0.5714" in titles["n0"]  # hover: every element (up to 64)
    page = G.html(graph, max_elements=4)
    literals = re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S)
    import html as html_lib

    values = [eval(html_lib.unescape(t), {"np": np}) for t in literals]  # noqa: S307 - our own output
    assert any(v.shape == (3, 4) and np.array_equal(v, value) for v in values)  # in full, without hover
    assert any(np.array_equal(v, 2 * value) for v in values)


def test_text_form_lines_fit_in_100_columns():
    assert G.text(e17()) == [
        "computation graph of f (7 nodes, in the order TensorFlow ran them):",
        "  node  computes                value  adjoint ∂f/∂·",
        "  #0 x  source                  3      24",
        "  #1 y  source                  4      10",
        "  #2    Square(#0)              9      4",
        "  #3    Mul(#2, #1)             36     1",
        "  #4    AddV2(#3, #1)           40     1",
        "  #5    constant                2      None",
        "  #6 f  AddV2(#4, #5) [target]  42     1",
    ]
    wide = _random_graph(30, seed=4, shape=(40, 40), long_names=True)
    lines = G.text(wide)
    assert len(lines) > 30 and max(len(line) for line in lines) <= 100
    assert not any(re.search(r"[\x00-\x08\x0b-\x1f\x7f]", line) for line in lines)


def test_large_graphs_fold_groups_and_say_so():
    graph = _random_graph(150, seed=5, groups=4)
    drawing = G.Drawing(graph, engine="fallback")
    assert drawing.folded and drawing.op_count > G.FOLD_ABOVE
    root = _parse(drawing.svg())
    folded = [g for g in root.iter(f"{SVG}g") if "tm-g-folded" in g.get("class", "")]
    assert len(folded) == 4
    assert "ops folded" in _node_texts(root)[folded[0].get("data-node")][1]
    page = G.html(graph, drawing=drawing)
    assert "each layer or function is drawn as one box (more than 120 ops)" in page
    assert page.count("<tr>") == len(graph.nodes) + 1  # the table still lists every node
    small = G.Drawing(_random_graph(60, seed=5, groups=4), engine="fallback")
    assert not small.folded and len(small.placement.clusters) == 4  # below the limit: groups are boxes around


def test_left_out_and_the_engines_notes_are_shown():
    graph = dataclasses.replace(e17(), left_out=321, notes=("the tf.function body is drawn as one node",))
    page = G.html(graph)
    assert "321 more ops ran but are not drawn (the size cap)" in page
    assert "the tf.function body is drawn as one node" in page
    assert "note: 321 more ops ran but are not drawn (the size cap)" in G.text(graph)


# -- in the static view and the text of a result ----------------------------------------------------------


def _result_with(graph: TapeGraph):
    r = tapemagic.tape(lambda x, y: x ** 2 * y + y + 2, [3.0, 4.0])
    return dataclasses.replace(r, graph=graph)


def test_the_static_view_shows_the_graph_first_and_the_text_lists_it():
    r = _result_with(e17())
    page = r.to_html()
    first = page.index("<details")
    assert page[first:].startswith('<details class="tm-section" open><summary>Computation graph</summary>')
    assert page.index('<svg class="tm-graph"') < page.index('<table class="tm-values">')
    assert "  #6 f  AddV2(#4, #5) [target]  42     1" in r.to_text().splitlines()
    plain = tapemagic.tape(lambda x: x ** 2, [3.0])
    assert "tm-graph" not in plain.to_html() and "computation graph" not in plain.to_text()


def test_the_graph_html_keeps_to_what_jupyterlabs_sanitizer_keeps(sanitizer):  # noqa: F811
    """Outside the SVG (which untrusted output loses, the table keeping its content) every tag, attribute and
    inline style is one JupyterLab's sanitizer keeps, with literal values."""
    tags, allowed_styles, allowed_attributes = sanitizer
    parser = _Elements()
    parser.feed(_result_with(_hostile_graph()).to_html() + _result_with(e17(forward=True)).to_html())
    assert set(parser.tags) - tags == {"style", "svg", "g", "title", "rect", "text", "tspan", "path", "polygon"}
    for prop, value in parser.styles:
        assert prop in allowed_styles and "var(" not in value, (prop, value)
    for tag, name in parser.attributes:
        assert name in allowed_attributes["*"] | allowed_attributes.get(tag, set()), (tag, name)


@pytest.mark.skipif(__import__("shutil").which("node") is None, reason="Node.js runs JupyterLab's own CSS patterns")
def test_the_graph_htmls_inline_styles_pass_jupyterlabs_own_patterns():
    parser = _Elements()
    parser.feed(G.html(e17()))
    declarations = sorted(set(parser.styles))
    assert declarations and all(_style_checks(_lab_core(), declarations))


# -- the step controls ------------------------------------------------------------------------------------


def test_stepper_redraws_the_graph_without_running_anything():
    r = _result_with(e17(forward=True))
    updates = []
    stepper = widget.GraphStepper(r, on_update=updates.append)
    assert stepper.phase.value == "all" and stepper.slider.disabled
    assert [option[1] for option in stepper.direction.options] == ["", "x", "y"]
    placement = stepper.drawing.placement
    stepper.phase.value = "forward"
    assert stepper.slider.max == 6 and not stepper.slider.disabled
    stepper.slider.value = 2
    page = updates[-1]["text/html"]
    assert "forward pass, step 2 of 6: Square has run" in page and "value ?" in page
    assert updates[-1]["text/plain"] == r.to_text()
    stepper.play.playing = True  # Play was running when the learner switched passes
    stepper.phase.value = "reverse"
    assert stepper.slider.max == 7 and stepper.slider.value == 0
    assert not stepper.play.playing  # the new pass waits at its first step
    stepper.slider.value = 7
    assert "adjoint 24" in updates[-1]["text/html"] and "adjoint ?" not in updates[-1]["text/html"]
    stepper.phase.value = "all"
    stepper.direction.value = "x"
    assert "tangent 24" in updates[-1]["text/html"]
    assert stepper.drawing.placement is placement  # laid out once
    stepper.phase.value = "all"
    stepper.direction.value = ""
    assert updates[-1]["text/html"] == r.to_html()  # "all": the static view itself


def test_no_graph_no_stepper_and_text_display_no_widget(shell):
    """Without a kernel (this shell) the magic returns the result; the static view is the same either way."""
    from tapemagic._magics import _steppable

    assert not _steppable(_result_with(e17()))  # no kernel
    assert not _steppable(tapemagic.tape(lambda x: x ** 2, [3.0]))


# -- helpers ----------------------------------------------------------------------------------------------


def _random_graph(ops: int, seed: int, groups: int = 0, shape: tuple[int, ...] = (),
                  long_names: bool = False) -> TapeGraph:
    """A random cell-like DAG: two sources, then ops each reading one or two earlier nodes."""
    rng = np.random.default_rng(seed)
    value = np.ones(shape, np.float32) if shape else f32(1.0)
    nodes = [GraphNode(0, "source", "ReadVariableOp", "a" * (40 if long_names else 1), value, shape, "float32", value),
             GraphNode(1, "source", "ReadVariableOp", "b", value, shape, "float32", value)]
    edges = []
    per_group = max(1, ops // groups) if groups else 0
    group_list = tuple(GraphGroup(g, "layer", f"dense_{g}") for g in range(groups))
    for i in range(2, ops + 2):
        group = min((i - 2) // per_group, groups - 1) if groups else None
        inputs = sorted(set(rng.integers(max(0, i - 6), i, size=int(rng.integers(1, 3))).tolist()))
        name = ("n" * 50 + str(i)) if long_names and i % 5 == 0 else ""
        nodes.append(GraphNode(i, "op", "Mul" if len(inputs) == 2 else "Sin", name, value, shape, "float32", value,
                               group=group, step=i - 1))
        edges.extend(GraphEdge(j, i, k, None if shape else f32(0.5), value) for k, j in enumerate(inputs))
    return TapeGraph(nodes[-1].name or "y", tuple(nodes), tuple(edges), groups=group_list)


# -- the real magic, with the engine's own graph -------------------------------------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_the_magic_draws_e17_from_what_tensorflow_ran(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    shown = shell.run_cell("%%tape x y --graph\nf = x**2 * y + y + 2")
    assert shown.success, shown.error_in_exec
    bundle = shown.result._repr_mimebundle_()
    page, plain = bundle["text/html"], bundle["text/plain"]
    svg = page[page.index('<svg class="tm-graph"'):page.index("</svg>") + len("</svg>")]
    texts = {lines[0]: lines[1:] for lines in _node_texts(_parse(svg)).values()}
    assert texts["x"] == ["source", "value 3", "adjoint 24"] and texts["y"] == ["source", "value 4", "adjoint 10"]
    assert texts["f = AddV2"] == ["target", "value 42", "adjoint 1"]
    assert texts["Mul"] == ["value 36", "adjoint 1"] and texts["Pow"] == ["value 9", "adjoint 4"]
    assert {"×6 = 24", "×4 = 4", "×9 = 9"} <= set(_edge_labels(_parse(svg)))
    assert "  #7 f  AddV2(#6, #3) [target]  42     1" in plain.splitlines()
    assert page.index("Computation graph") < page.index('<table class="tm-values">')


def test_the_magic_draws_forward_mode_tangents(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    r = shell.run_cell("%%tape x y --graph --forward\nf = x**2 * y + y + 2").result
    assert r.graph.forward_sources == ("x", "y")
    texts = {lines[0]: lines[-1] for lines in _node_texts(_parse(G.svg(r.graph, direction="x"))).values()}
    assert texts["f = AddV2"] == "tangent 24" and texts["Pow"] == "tangent 6"  # E21: f(3 + ε, 4) = 42 + 24ε
    texts = {lines[0]: lines[-1] for lines in _node_texts(_parse(G.svg(r.graph, direction="y"))).values()}
    assert texts["f = AddV2"] == "tangent 10"


def test_in_a_kernel_the_magic_adds_step_controls_that_redraw_in_place(shell, display_updates):
    from IPython.utils.capture import capture_output
    from ipywidgets import Widget

    updates = display_updates
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    with capture_output() as captured:
        returned = shell.run_cell_magic("tape", "x y --graph -o r", "f = x**2 * y + y + 2")
    assert returned is None
    static, controls = captured.outputs
    assert set(static.data) == {"text/plain", "text/html"} and "adjoint 24" in static.data["text/html"]
    assert WIDGET_VIEW in controls.data and "--graph step controls" in controls.data["text/plain"]
    box = Widget.widgets[controls.data[WIDGET_VIEW]["model_id"]]
    assert "tapemagic-graph-steps" in box._dom_classes
    phase, _direction, row = box.children
    slider = row.children[1]
    phase.value = "forward"
    slider.value = 1
    display_id, bundle = updates[-1]
    assert display_id and "forward pass, step 1 of 7: y is read" in bundle["text/html"]
    assert "adjoint 24" not in bundle["text/html"].split("</svg>")[0]
    phase.value = "reverse"
    slider.value = slider.max
    assert "adjoint 24" in updates[-1][1]["text/html"]
    assert float(shell.user_ns["x"].numpy()) == 3.0 and shell.user_ns["r"].value.numpy() == 42.0  # nothing re-ran


def test_with_display_text_there_are_no_controls(shell, monkeypatch):
    monkeypatch.setattr(widget, "in_kernel", lambda: True)
    shell.run_cell("x = tf.Variable(3.0)")
    r = shell.run_cell("%%tape x --graph --display text\nf = x * x").result
    bundle = r._repr_mimebundle_()
    assert set(bundle) == {"text/plain"} and "computation graph of f" in bundle["text/plain"]


def test_a_keras_dense_layer_is_a_box_around_its_ops():
    import keras

    layer = keras.layers.Dense(3, name="dense_graph")
    x = tf.constant([[1.0, 2.0]])
    layer(x)
    namespace = {"tf": tf, "layer": layer, "x": x}
    r = tapemagic.tape("y = tf.reduce_sum(layer(x))", ["layer.kernel", "layer.bias"], namespace=namespace, graph=True)
    assert any(g.kind == "layer" and g.name == "dense_graph" for g in r.graph.groups)
    drawing = G.Drawing(r.graph)
    root = _parse(drawing.svg())
    cluster_names = [t.text for t in root.iter(f"{SVG}text") if t.get("font-style") == "italic"]
    assert any(name.startswith("dense_graph") for name in cluster_names)
    assert len(drawing.placement.clusters) >= 1
    kernel = r.gradients["layer.kernel"].numpy()
    assert escape_free_number(G.html(r.graph), kernel)


def escape_free_number(page: str, array: np.ndarray) -> bool:
    """The array appears in full in the table under the drawing (its copyable Python)."""
    import html as html_lib

    literals = [eval(html_lib.unescape(t), {"np": np}) for t in re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S)]  # noqa: S307
    return any(isinstance(v, np.ndarray) and v.shape == array.shape and np.allclose(v, array) for v in literals)


def test_branch_loop_custom_gradient_and_no_gradient_draw():
    @tf.custom_gradient
    def clip_gradient(v):
        def grad(upstream):
            return tf.clip_by_value(upstream, -0.5, 0.5)
        return tf.identity(v), grad

    x = tf.Variable(2.0)
    cells = {
        "branch": "y = tf.cond(x > 1.0, lambda: x * x, lambda: x + 1.0)",
        "loop": "y = x\nfor _ in range(3):\n    y = y * x",
        "custom": "y = clip_gradient(x) * 3.0",
        "round": "y = tf.round(x) + x",
    }
    for name, code in cells.items():
        r = tapemagic.tape(code, ["x"], namespace={"tf": tf, "x": x, "clip_gradient": clip_gradient}, graph=True,
                           targets=["y"])
        root = _parse(G.svg(r.graph))
        assert len(_node_boxes(root)) == len(r.graph.nodes), name
        target = G.target_node(r.graph)
        assert target is not None and target.name == "y"
        x_node = next(n for n in r.graph.nodes if n.name == "x")
        assert np.allclose(x_node.adjoint, r.gradients["x"].numpy()), name  # the drawing's source = the tape's
        assert max(len(line) for line in G.text(r.graph)) <= 100
        if name == "round":
            nograd = [g for g in root.iter(f"{SVG}g") if "tm-g-nograd" in g.get("class", "")]
            assert nograd and "no gradient" in "".join(t.text or "" for t in nograd[0].iter(f"{SVG}tspan"))
        if name == "loop":
            assert r.gradients["x"].numpy() == 32.0  # 4x³ at 2


def test_graph_benchmark_runs_quick():
    """benchmarks/graph.py at tiny sizes: it runs and prints both layouts' figures (timings are not tested)."""
    import subprocess
    import sys
    from pathlib import Path

    if not layout.dot_available():
        pytest.skip("the benchmark compares with Graphviz's dot")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "graph.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12-op cell (recorded by the engine)" in done.stdout and "30-op cell" in done.stdout
    assert done.stdout.count("dot/fallback") == 6


def test_the_environment_can_pin_the_layout(monkeypatch):
    monkeypatch.setenv(layout.ENVIRONMENT, "fallback")
    assert G.Drawing(e17()).placement.engine == "fallback"
    assert G.Drawing(e17(), engine="dot").placement.engine == ("dot" if layout.dot_available() else "fallback")
    monkeypatch.setenv(layout.ENVIRONMENT, "neato")  # a bad value: the cell has run, so it is drawn anyway, with a note
    drawing = G.Drawing(e17())
    assert drawing.placement.engine == ("dot" if layout.dot_available() else "fallback")
    assert "TAPEMAGIC_GRAPH_LAYOUT is 'neato', which is not one of auto, dot, fallback" in drawing.placement.note
    assert "TAPEMAGIC_GRAPH_LAYOUT is &#x27;neato&#x27;" in G.html(e17())


def test_whatever_dot_does_wrong_the_graph_is_drawn_without_it(monkeypatch):
    def broken(*args, **kwargs):
        raise IndexError("a reply dot was not expected to give")

    monkeypatch.setattr(layout, "_dot", broken)
    monkeypatch.setattr(layout.shutil, "which", lambda name: "/usr/bin/dot")
    placement = layout.place([layout.Box("a", 40, 20), layout.Box("b", 40, 20)], [("a", "b")])
    assert placement.engine == "fallback" and "dot failed (IndexError)" in placement.note


def test_faded_nodes_keep_their_text_readable_in_both_themes():
    """Constants, nodes apart from the target and nodes not yet run are faded, never below WCAG AA (4.5:1):
    JupyterLab Light's text (black at .87) on white, and Dark's white on #111, each through the group's opacity."""
    from tapemagic.render import heatmap

    faded = {name: float(value) for name, value in re.findall(r"\.(tm-g-\w+)\{opacity:([\d.]+)\}", G.STYLE)}
    assert set(faded) == {"tm-g-const", "tm-g-apart", "tm-g-dim"}
    for opacity in faded.values():
        light_text = tuple(255 - opacity * (255 - 33) for _ in range(3))  # rgba(0,0,0,.87) on white is grey 33
        dark_text = tuple(17 + opacity * (255 - 17) for _ in range(3))
        assert heatmap.contrast(light_text, (255, 255, 255)) >= 4.5 and heatmap.contrast(dark_text, (17, 17, 17)) >= 4.5


def test_a_deep_keras_model_folds_into_its_layers_not_into_one_box():
    """Over 120 ops the groups fold; a Sequential around every layer holds all the ops, so it is opened and each
    Dense layer becomes one box, the chain of layers drawn straight down with its weights beside it."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,))] + [keras.layers.Dense(3, activation="tanh", name=f"d{i}")
                                                   for i in range(42)], name="deep")
    namespace = {"tf": tf, "model": model, "x": tf.ones((2, 3))}
    r = tapemagic.tape("loss = tf.reduce_sum(model(x))", [], namespace=namespace, graph=True)
    for engine in ("dot", "fallback") if layout.dot_available() else ("fallback",):
        drawing = G.Drawing(r.graph, engine=engine)
        assert drawing.folded
        folded = [drawing.groups[int(key[1:])].name for key in drawing.keys if key.startswith("g")]
        assert folded == [f"d{i}" for i in range(42)]
        centres = drawing.placement.centres
        layers = [key for key in drawing.keys if key.startswith("g")]
        assert all(centres[b][1] > centres[a][1] for a, b in zip(layers, layers[1:]))  # each below the one before
        # the chain pulls harder than the weights beside it: the layers in one column, not a diagonal
        assert max(centres[k][0] for k in layers) - min(centres[k][0] for k in layers) < 1.0, engine
        assert drawing.placement.width < 2000, engine
    assert "each layer or function is drawn as one box" in G.html(r.graph, drawing=drawing)


def test_in_chinese_boxes_fit_their_words_and_text_lines_fit_100_columns():
    """A Chinese character takes two columns: box widths, cuts and the text form's alignment count them so."""
    from tapemagic import _i18n
    from tapemagic.render import wrap

    graph = dataclasses.replace(_random_graph(12, seed=6, shape=(5, 5), long_names=True),
                                notes=("说明" * 80,), left_out=3)
    with _i18n.language("zh"):
        drawing = G.Drawing(graph, engine="fallback")
        lines = G.text(graph)
        root = _parse(drawing.svg())
    assert any(wrap.width(line) != len(line) for line in lines)  # the words are Chinese
    assert max(wrap.width(line) for line in lines) <= 100
    for key, texts in _node_texts(root).items():
        assert max(wrap.width(t) for t in texts) * G.CHAR_PX + 2 * G.PAD_X <= drawing.sizes[key][0] + 0.01
        assert all(wrap.width(t) <= G.LINE_CHARS for t in texts)


def test_a_folded_group_shows_its_output_once_its_last_op_has_run():
    graph = _random_graph(150, seed=7, groups=3)
    drawing = G.Drawing(graph, engine="fallback")
    first_group = [n for n in graph.nodes if n.group == 0]
    start, last = drawing.position[first_group[0].id], drawing.position[first_group[-1].id]
    during = _node_texts(_parse(drawing.svg("forward", start)))["g0"]
    after = _node_texts(_parse(drawing.svg("forward", last)))["g0"]
    assert "value ?" in during and "value ?" not in after
    root = _parse(drawing.svg("forward", start + 1))
    now = [g.get("data-node") for g in root.iter(f"{SVG}g") if "tm-g-now" in g.get("class", "").split()
           and g.get("data-node")]
    assert now == ["g0"]  # the step's op is inside the folded box: the box is lit


def test_a_tensor_box_in_chinese_shows_its_shape_once(shell):
    """A summarised tensor's box line has no second 'shape (20,)' (in Chinese 形状): it is on the line above."""
    magics = next(c for c in shell.configurables if type(c).__name__ == "TapeMagics")
    before = magics.language
    shell.run_cell("%config TapeMagics.language = 'zh'")
    try:
        shell.run_cell("v = tf.Variable(tf.linspace(0.0, 1.0, 20))")
        shell.run_cell_magic("tape", "v --graph -o r --display none", "f = tf.reduce_sum(tf.sin(v) * v)")
    finally:
        magics.language = before  # as the session had it (other tests rely on the default, "auto")
    svg = shell.user_ns["r"].to_html().split("</svg>")[0]
    lines = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", svg)
    assert sum("(20,) float32" in line for line in lines) >= 3  # v, Sin, Mul
    assert [line for line in lines if line.startswith(("值", "伴随值"))]
    assert not [line for line in lines if "形状" in line or "(20,)" in line and not line.endswith("float32")]
