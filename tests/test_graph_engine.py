"""The engine of ``--graph`` (#14): the graph TensorFlow really ran for a cell, through a real IPython
shell and the Python API.

Every adjoint is checked against an independent persistent tape's ``tape.gradient(f, intermediate)`` on
the same code, and every node against the invariant that the contributions on the edges leaving it add
up to its adjoint. Numbers come from TensorFlow itself, never from the test.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

import tapemagic
from tapemagic._graph import CONSTANT, OP, SOURCE, TapeGraph
from tapemagic.engine import graph as graph_engine

from conftest import define_trusted_bump, run


def graph_of(shell, line: str, cell: str):
    """Run ``%%tape LINE --graph`` and return (result, graph)."""
    run(shell, f"{line} --graph -o r_graph --display none", cell)
    result = shell.user_ns.pop("r_graph")
    assert isinstance(result.graph, TapeGraph)
    return result, result.graph


def independent(code: str, namespace: dict, watch: list[str], names: list[str], target: str = "f") -> dict:
    """tape.gradient(target, name) for each name, from a plain persistent tape over the same code run in a
    copy of the namespace (the graph's numbers are never compared with themselves)."""
    scope = dict(namespace)
    with tf.GradientTape(persistent=True) as tape:
        for name in watch:
            tape.watch(scope[name])
        exec(code, scope)  # noqa: S102 - the test's own code
    found = {}
    for name in names:
        gradient = tape.gradient(scope[target], scope[name])
        found[name] = None if gradient is None else tf.convert_to_tensor(gradient).numpy()
    del tape
    return found


def contributions_add_up(graph: TapeGraph, minimum: int = 1) -> int:
    """For every node with an adjoint and users (but the target, whose adjoint is the seed), the
    contributions on the edges leaving its first output add up to the adjoint. Returns how many were checked,
    at least ``minimum`` (a graph with no adjoints at all would check nothing)."""
    target = next((node.id for node in graph.nodes if node.name == graph.target and node.kind == OP), None)
    checked = 0
    for node in graph.nodes:
        users = [edge for edge in graph.users(node.id) if edge.output == 0]
        if node.adjoint is None:
            assert all(edge.contribution is None for edge in users), node
            continue
        if node.id == target or not users:
            continue
        total = sum((np.asarray(edge.contribution, dtype=np.float64) for edge in users if edge.contribution is not None),
                    np.zeros(node.shape))
        np.testing.assert_allclose(total, node.adjoint, rtol=1e-4, atol=1e-5,
                                   err_msg=f"node {node.id} {node.label}: contributions {[e.contribution for e in users]}")
        checked += 1
    assert checked >= minimum, f"only {checked} nodes had an adjoint and users to check"
    return checked


def ops(graph: TapeGraph) -> list[str]:
    return [node.op for node in graph.nodes if node.kind == OP]


# -- E17 --------------------------------------------------------------------------------------------
def test_e17_nodes_values_and_adjoints(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    result, graph = graph_of(shell, "x y", "f = x**2 * y + y + 2")
    assert [node.kind for node in graph.nodes[:2]] == [SOURCE, SOURCE]
    assert [node.name for node in graph.nodes[:2]] == ["x", "y"]
    assert graph.target == "f"
    steps = [node for node in graph.nodes if node.kind == OP]
    assert ops(graph)[0] in ("Pow", "Square") and ops(graph)[1:] == ["Mul", "AddV2", "AddV2"]
    assert [float(node.value) for node in steps] == [9.0, 36.0, 40.0, 42.0]
    assert [node.step for node in steps] == [1, 2, 3, 4]
    assert graph.named("f").id == steps[-1].id
    assert all(node.kind == CONSTANT for node in graph.nodes if node.kind not in (SOURCE, OP))
    x, y = graph.named("x"), graph.named("y")
    assert float(x.adjoint) == float(result.gradients["x"]) == 24.0
    assert float(y.adjoint) == float(result.gradients["y"]) == 10.0
    assert float(steps[0].adjoint) == 4.0  # ∂f/∂(x²) = y
    # ∂f/∂y = 10 comes by two paths: x² = 9 through the Mul, 1 through the AddV2.
    paths = sorted(float(edge.contribution) for edge in graph.users(y.id))
    assert paths == [1.0, 9.0]
    assert [float(edge.local) for edge in graph.inputs(steps[1].id)] == [4.0, 9.0]  # ∂(x²·y)/∂(x²) = y, ∂/∂y = x²
    assert contributions_add_up(graph) >= 5
    assert result.path == "eager"


def test_e17_with_named_intermediates_matches_an_independent_tape(shell):
    code = "a = x**2\nb = a * y\nc = b + y\nf = c + 2"
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    _result, graph = graph_of(shell, "x y", code)
    expected = independent(code, shell.user_ns, [], ["a", "b", "c", "x", "y"])
    for name in ("a", "b", "c", "x", "y"):
        assert float(graph.named(name).adjoint) == pytest.approx(float(expected[name])), name
    assert {name: float(graph.named(name).value) for name in "abcf"} == {"a": 9.0, "b": 36.0, "c": 40.0, "f": 42.0}
    contributions_add_up(graph)


def test_e21_forward_tangents_are_the_dual_numbers(shell):
    shell.run_cell("x = tf.constant(3.0)\ny = tf.constant(4.0)")
    result, graph = graph_of(shell, "x y --forward", "f = x**2 * y + y + 2")
    assert graph.forward_sources == ("x", "y")
    f = graph.named("f")
    assert float(f.tangents["x"]) == 24.0 and float(f.tangents["y"]) == 10.0  # f(3 + ε, 4) = 42 + 24ε
    square = next(node for node in graph.nodes if node.op in ("Pow", "Square"))
    assert float(square.tangents["x"]) == 6.0 and float(square.tangents["y"]) == 0.0
    assert float(graph.named("x").tangents["x"]) == 1.0 and float(graph.named("x").tangents["y"]) == 0.0
    assert result.passes["graph_forward"] == 2
    # --forward's own two passes and the graph's two: the result counts all four runs of the cell in forward mode
    assert "passes: forward mode 4, reverse mode 1" in result.to_text()
    assert any("dual numbers" in note for note in graph.notes)
    assert any("--graph --forward ran the cell's code 2 more times" in note for note in result.notes)


def test_forward_tangents_of_a_tensor_source_follow_all_ones(shell):
    shell.run_cell("v = tf.constant([1.0, 2.0, 3.0])")
    _result, graph = graph_of(shell, "v --forward", "s = tf.reduce_sum(v * v)")
    # Along all ones, d(Σ v²) = Σ 2v = 12.
    assert float(graph.named("s").tangents["v"]) == 12.0
    assert any("all ones" in note for note in graph.notes)


# -- random cells -----------------------------------------------------------------------------------
SCALAR, VECTOR, ROW = "s", "v", "r"


@st.composite
def cells(draw):
    """A small cell over x (a variable), y (a tensor) and v (a vector), one op per named line."""
    names = {SCALAR: ["x", "y"], VECTOR: ["v"], ROW: []}
    lines = []
    for index in range(draw(st.integers(2, 7))):
        kinds = [kind for kind in (SCALAR, VECTOR, ROW) if names[kind]]
        kind = draw(st.sampled_from(kinds))
        a = draw(st.sampled_from(names[kind]))
        choice = draw(st.sampled_from(["add", "sub", "mul", "div", "sin", "exp", "square", "sum", "matmul", "mix"]))
        name = f"t{index}"
        if choice in ("add", "sub", "mul"):
            b = draw(st.sampled_from(names[kind]))
            expression, out = f"{a} {dict(add='+', sub='-', mul='*')[choice]} {b}", kind
        elif choice == "div":
            b = draw(st.sampled_from(names[kind]))
            expression, out = f"{a} / (2.0 + tf.square({b}))", kind
        elif choice in ("sin", "square"):
            expression, out = f"tf.{choice}({a})", kind
        elif choice == "exp":
            expression, out = f"tf.exp(tf.sin({a}))", kind
        elif choice == "sum":
            expression, out = f"tf.reduce_sum({a})", SCALAR
        elif choice == "matmul" and kind == VECTOR:
            expression, out = f"tf.matmul(tf.reshape({a}, [1, 3]), M)", ROW
        elif choice == "matmul" and kind == ROW:
            expression, out = f"tf.matmul({a}, M)", ROW
        else:  # a scalar times a vector (broadcasting), or a vector and a scalar
            other = draw(st.sampled_from(names[SCALAR]))
            expression, out = (f"{other} * {a}", kind) if kind != SCALAR else (f"{a} * v", VECTOR)
        lines.append(f"{name} = {expression}")
        names[out].append(name)
    last = lines[-1].split(" = ")[0]
    lines.append(f"f = tf.reduce_sum({last})")
    return "\n".join(lines), [line.split(" = ")[0] for line in lines[:-1]]


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(cells())
def test_random_cells_adjoints_equal_an_independent_tape(cell):
    code, named = cell
    namespace = {"tf": tf, "x": tf.Variable(0.7), "y": tf.constant(-1.3), "v": tf.constant([0.5, -0.25, 1.5]),
                 "M": tf.constant([[0.5, -1.0, 0.25], [1.0, 0.3, -0.7], [-0.2, 0.8, 1.1]])}
    result = tapemagic.tape(code, ["x", "y", "v"], namespace=namespace, graph=True, display="none")
    graph = result.graph
    expected = independent(code, {**namespace, **{n: namespace[n] for n in ("x", "y", "v")}}, ["y", "v"],
                           named + ["x", "y", "v"])
    for name in named + ["x", "y", "v"]:
        node = graph.named(name)
        if expected[name] is None:
            assert node.adjoint is None and node.adjoint_reason, (code, name)
        else:
            np.testing.assert_allclose(node.adjoint, expected[name], rtol=1e-5, atol=1e-6, err_msg=f"{code}\n{name}")
    contributions_add_up(graph)
    assert [node.step for node in graph.nodes if node.kind == OP] == list(range(1, len(ops(graph)) + 1))


# -- control flow, layers, functions, custom gradients --------------------------------------------
def test_tf_cond_shows_the_branch_taken(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    code = "f = tf.cond(x > 2.0, lambda: x**2, lambda: x * 3.0)"
    _result, graph = graph_of(shell, "x", code)
    assert "Mul" not in ops(graph)  # the other branch never ran
    assert ops(graph)[0] == "Greater" and graph.nodes[[n.op for n in graph.nodes].index("Greater")].no_gradient
    assert float(graph.named("f").value) == 9.0
    assert float(graph.named("x").adjoint) == float(independent(code, shell.user_ns, [], ["x"])["x"]) == 6.0
    contributions_add_up(graph)


E26 = """
def f(x, y):
    output = 1.0
    for i in range(y):
        if i > 1 and i < 5:
            output = tf.multiply(output, x)
    return output
"""


def test_e26_python_loop_unrolls_into_the_ops_that_ran(shell):
    shell.run_cell(E26 + "x = tf.convert_to_tensor(2.0)")
    result, graph = graph_of(shell, "x", "r6 = f(x, 6)")
    assert ops(graph) == ["Mul", "Mul", "Mul"]  # i = 2, 3, 4
    assert [float(node.value) for node in graph.nodes if node.kind == OP] == [2.0, 4.0, 8.0]
    x = graph.named("x")
    assert float(x.adjoint) == float(result.gradients["x"]) == 12.0
    assert [float(edge.contribution) for edge in graph.users(x.id)] == [4.0, 4.0, 4.0]  # x² at each step
    contributions_add_up(graph)


def test_keras_dense_is_a_group_with_its_kernel_as_a_source(shell):
    shell.run_cell("import keras\nlayer = keras.layers.Dense(2, name='dense_g')\ninp = tf.constant([[1.0, -2.0, 0.5]])\n"
                   "layer(inp)\nlayer.kernel.assign([[0.1, 0.2], [0.3, -0.4], [0.5, 0.6]])")
    code = "out = layer(inp)\nloss = tf.reduce_sum(out * out)"
    result, graph = graph_of(shell, "layer.kernel", code)
    groups = [group for group in graph.groups if group.kind == "layer"]
    assert [group.name for group in groups] == ["dense_g"]
    inside = [node.op for node in graph.nodes if node.group == groups[0].id]
    assert "MatMul" in inside and "BiasAdd" in inside
    kernel = graph.named("layer.kernel")
    assert kernel.kind == SOURCE and kernel.shape == (3, 2)
    np.testing.assert_allclose(kernel.adjoint, result.gradients["layer.kernel"].numpy(), rtol=1e-6)
    expected = independent(code, shell.user_ns, [], ["out"], target="loss")
    np.testing.assert_allclose(graph.named("out").adjoint, expected["out"], rtol=1e-6)
    assert graph.named("layer.bias").kind == CONSTANT  # read, not named as a source
    contributions_add_up(graph)


def test_nested_keras_layers_nest_groups(shell):
    shell.run_cell("import keras\nmodel = keras.Sequential([keras.layers.Dense(3, activation='tanh', name='hidden'), "
                   "keras.layers.Dense(1, name='head')], name='net')\ninp = tf.constant([[1.0, 2.0]])\nmodel(inp)")
    _result, graph = graph_of(shell, "", "loss = tf.reduce_sum(model(inp))")
    by_name = {group.name: group for group in graph.groups}
    assert by_name["net"].parent is None
    assert by_name["hidden"].parent == by_name["net"].id and by_name["head"].parent == by_name["net"].id
    assert "Tanh" in [node.op for node in graph.nodes if node.group == by_name["hidden"].id]
    assert sum(node.kind == SOURCE for node in graph.nodes) == 4  # the variables the cell read, by default
    contributions_add_up(graph)


def test_a_tf_function_called_in_the_cell_is_one_node_in_a_function_group(shell):
    shell.run_cell("@tf.function\ndef scaled_sine(a, b):\n    return tf.sin(a) * b\nx = tf.Variable(0.5)\n"
                   "scaled_sine(tf.constant(1.0), tf.constant(2.0))")
    code = "u = scaled_sine(x * 2.0, x)\nf = u * u"
    result, graph = graph_of(shell, "x", code)
    calls = [node for node in graph.nodes if node.op == "scaled_sine"]
    assert len(calls) == 1 and calls[0].name == "u"
    group = graph.groups[calls[0].group]
    assert (group.kind, group.name) == ("function", "scaled_sine")
    assert [node.id for node in graph.nodes if node.group == group.id] == [calls[0].id]
    expected = independent(code, shell.user_ns, [], ["u", "x"])
    assert float(calls[0].adjoint) == pytest.approx(float(expected["u"]))
    assert float(graph.named("x").adjoint) == pytest.approx(float(result.gradients["x"]))
    contributions_add_up(graph)


def test_a_custom_gradient_is_a_group_whose_contribution_is_the_custom_one(shell):
    shell.run_cell("@tf.custom_gradient\ndef halved(z):\n    e = tf.exp(z)\n    def grad(upstream):\n"
                   "        return upstream * 0.5\n    return e * 2.0, grad\nx = tf.Variable(1.0)")
    code = "h = halved(x)\nf = h * 3.0 + x"
    result, graph = graph_of(shell, "x", code)
    group = next(group for group in graph.groups if group.kind == "custom_gradient")
    assert group.name == "halved"
    members = [node for node in graph.nodes if node.group == group.id]
    inner = [node for node in members if node.op == "Exp"]
    assert inner and inner[0].adjoint is None and "custom_gradient" in inner[0].adjoint_reason
    assert float(graph.named("h").adjoint) == 3.0
    x = graph.named("x")
    assert float(x.adjoint) == float(result.gradients["x"]) == 2.5  # 3 · 0.5 by the custom gradient, + 1
    into = [edge for edge in graph.users(x.id) if graph.node(edge.target).group == group.id]
    assert float(into[0].contribution) == 1.5
    contributions_add_up(graph)


def test_ops_without_a_gradient_are_marked(shell):
    shell.run_cell("x = tf.Variable(2.6)\nz = tf.Variable(1.4)\nv = tf.constant([0.3, 2.0, -1.0])")
    code = "k = tf.argmax(v * x)\nc = tf.cast(x, tf.int32)\nf = tf.round(z) * x + tf.cast(k, tf.float32)"
    result, graph = graph_of(shell, "x z", code)
    by_op = {node.op: node for node in graph.nodes if node.kind == OP}
    assert by_op["Round"].no_gradient and "None" in by_op["Round"].no_gradient
    assert by_op["ArgMax"].no_gradient and "int64" in by_op["ArgMax"].no_gradient
    assert graph.named("c").no_gradient and "int32" in graph.named("c").no_gradient
    z = graph.named("z")
    assert z.adjoint is None and z.adjoint_reason == result.targets[0].reasons["z"]
    assert float(graph.named("x").adjoint) == float(result.gradients["x"]) == 1.0
    assert graph.named("k").adjoint is None and "int64" in graph.named("k").adjoint_reason
    contributions_add_up(graph)


def test_a_source_that_does_not_reach_the_target_says_why(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    result, graph = graph_of(shell, "x y", "unused = y * 5.0\nf = x * 2.0")
    y = graph.named("y")
    assert y.kind == SOURCE and y.adjoint is None
    assert y.adjoint_reason == result.targets[0].reasons["y"] and "does not depend on y" in y.adjoint_reason
    unused = graph.named("unused")
    assert unused.adjoint is None and "does not reach the target f" in unused.adjoint_reason
    assert all(edge.contribution is None for edge in graph.users(y.id))


def test_an_op_computed_from_constants_only_is_not_on_the_tape(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    _result, graph = graph_of(shell, "x", "ones = tf.ones([2]) * 2.0\nf = tf.reduce_sum(ones * x)")
    ones = graph.named("ones")
    assert ones.adjoint is None and "does not watch" in ones.adjoint_reason
    assert float(graph.named("x").adjoint) == 4.0
    contributions_add_up(graph)


def test_the_python_api_draws_a_function(shell):
    result = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], graph=True, display="none")
    graph = result.graph
    assert [node.name for node in graph.nodes if node.kind == SOURCE] == ["x", "y"]
    assert graph.target == "f" and float(graph.named("f").value) == 42.0
    assert (float(graph.named("x").adjoint), float(graph.named("y").adjoint)) == (24.0, 10.0)
    contributions_add_up(graph)


def test_several_targets_draw_the_first(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    result, graph = graph_of(shell, "x -t a -t b", "a = x * x\nb = a + x")
    assert graph.target == "a" and float(graph.named("a").adjoint) == 1.0
    assert float(graph.named("x").adjoint) == 6.0
    assert any("first target, a" in note for note in graph.notes)
    assert float(result.targets[1].gradients["x"]) == 7.0


def test_higher_orders_come_with_the_graph(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    result, graph = graph_of(shell, "x -n 2 --hessian", "f = x**3")
    assert float(graph.named("x").adjoint) == 27.0
    assert float(result.derivatives[2]["x"]) == 18.0 and result.path == "eager"


# -- the rule of the engine: the cell runs once ---------------------------------------------------
def test_the_cell_runs_once_under_graph(shell):
    shell.run_cell("v = tf.Variable(1.0)\nx = tf.Variable(2.0)")
    result, graph = graph_of(shell, "x", "v.assign_add(1.0)\nf = x * v")
    assert float(shell.user_ns["v"].numpy()) == 2.0
    assert float(graph.named("f").value) == 4.0 and float(graph.named("x").adjoint) == 2.0
    assert "AssignAddVariableOp" in ops(graph)


def test_graph_forward_is_refused_when_the_cell_changes_state(shell):
    shell.run_cell("v = tf.Variable(1.0)\nx = tf.Variable(2.0)")
    with pytest.raises(UsageError, match="--forward would run the cell again"):
        run(shell, "x --graph --forward", "v.assign_add(1.0)\nf = x * v")
    assert float(shell.user_ns["v"].numpy()) == 1.0  # refused before anything ran


def test_graph_forward_skips_tangents_when_only_the_run_shows_an_effect(shell):
    # Keras is library code: only TensorFlow's op log sees BatchNormalization update its moving mean.
    shell.run_cell("import keras\nbn = keras.layers.BatchNormalization(momentum=0.5)\nbn.build((None, 1))\n"
                   "x = tf.constant([[1.0], [2.0]])")
    result, graph = graph_of(shell, "x --forward", "f = tf.reduce_sum(bn(x, training=True) * x)")
    np.testing.assert_allclose(shell.user_ns["bn"].moving_mean.numpy(), [0.75])  # updated once: 0.5 · 1.5
    assert graph.forward_sources == () and all(not node.tangents for node in graph.nodes)
    assert any("--graph --forward: no tangents" in note for note in graph.notes)
    assert "graph_forward" not in result.passes
    assert graph.named("x").adjoint is not None
    contributions_add_up(graph)


def test_graph_with_explore_is_refused(shell):
    shell.run_cell("x = tf.Variable(2.0)")
    with pytest.raises(UsageError, match="--graph draws the operations of the one real run"):
        run(shell, "x --graph --explore", "f = x * x")


# -- size ---------------------------------------------------------------------------------------------
def test_a_500_op_cell_builds(shell):
    shell.run_cell("x = tf.Variable(0.5)")
    code = "a = x\nfor i in range(250):\n    a = tf.sin(a) + x\nf = a"
    started = time.perf_counter()
    result, graph = graph_of(shell, "x", code)
    seconds = time.perf_counter() - started
    print(f"500-op cell: the run with --graph took {seconds:.2f} s")
    assert len(ops(graph)) == 500 and graph.left_out == 0
    assert float(graph.named("x").adjoint) == pytest.approx(float(result.gradients["x"]), rel=1e-5)
    assert contributions_add_up(graph) > 400


def test_beyond_the_cap_ops_are_left_out_with_a_note(shell, monkeypatch):
    monkeypatch.setattr(graph_engine, "MAX_OPS", 40)
    shell.run_cell("x = tf.Variable(0.5)")
    result, graph = graph_of(shell, "x", "a = x\nfor i in range(30):\n    a = tf.sin(a) + x\nf = a")
    assert len(ops(graph)) == 40 and graph.left_out == 20
    assert any("20 more were left out" in note for note in graph.notes)
    assert any("no output of an operation the graph shows" in note for note in graph.notes)
    assert float(result.gradients["x"]) != 0.0  # the derivatives themselves are whole


# -- code from TensorFlow's autodiff guide, and other ops -------------------------------------------
def test_guide_stateful_assign_add_cuts_the_path(shell):
    # From the autodiff guide ("Getting a gradient of None"): x1.assign_add(x0) is not differentiable.
    shell.run_cell("x0 = tf.Variable(3.0)\nx1 = tf.Variable(0.0)")
    result, graph = graph_of(shell, "x0", "x1.assign_add(x0)\ny = x1**2")
    assert ops(graph)[0] == "AssignAddVariableOp" and float(graph.named("y").value) == 9.0
    x0 = graph.named("x0")
    assert x0.adjoint is None and x0.adjoint_reason == result.targets[0].reasons["x0"]
    assert float(shell.user_ns["x1"].numpy()) == 3.0  # ran once


def test_a_variable_the_tape_does_not_watch_is_named_and_explained(shell):
    shell.run_cell("x = tf.Variable(2.0)\nw = tf.Variable(5.0, trainable=False)")
    _result, graph = graph_of(shell, "x", "f = x * w")
    w = graph.named("w")
    assert w.kind == CONSTANT and float(w.value) == 5.0
    assert w.adjoint is None and "not watched" in w.adjoint_reason
    assert float(graph.named("x").adjoint) == 5.0


def test_a_gather_contributes_its_indexed_slices_densely(shell):
    shell.run_cell("emb = tf.Variable(tf.reshape(tf.range(12, dtype=tf.float32), [4, 3]))")
    code = "rows = tf.gather(emb, [0, 2, 2])\nf = tf.reduce_sum(rows * rows)"
    result, graph = graph_of(shell, "emb", code)
    assert "ResourceGather" in ops(graph)
    np.testing.assert_allclose(graph.named("emb").adjoint, tf.convert_to_tensor(result.gradients["emb"]).numpy())
    (edge,) = graph.users(graph.named("emb").id)
    assert edge.contribution.shape == (4, 3)
    contributions_add_up(graph)


def test_an_op_with_several_outputs_says_which_output_each_edge_carries(shell):
    shell.run_cell("v = tf.constant([1.0, 2.0, 3.0])")
    code = "a, b, c = tf.unstack(v)\nf = a * b + c * c"
    _result, graph = graph_of(shell, "v", code)
    unpack = next(node for node in graph.nodes if node.op == "Unpack")
    assert unpack.outputs == 3 and float(unpack.value) == 1.0 and unpack.name == "a"
    assert sorted(edge.output for edge in graph.users(unpack.id)) == [0, 1, 2, 2]
    np.testing.assert_allclose(graph.named("v").adjoint, [2.0, 1.0, 6.0])
    contributions_add_up(graph)


def test_a_py_function_differentiated_once_says_so(shell):
    shell.run_cell("x = tf.Variable(2.0)")
    result, graph = graph_of(shell, "x", "y = tf.py_function(lambda a: a * a, [x], tf.float32)\nf = y + x")
    assert float(graph.named("x").adjoint) == float(result.gradients["x"]) == 5.0  # the result's own gradient
    assert graph.named("y").adjoint is None and "twice" in graph.named("y").adjoint_reason
    inside = next(node for node in graph.nodes if node.op == "Mul")  # a * a, run by the py_function's Python
    assert graph.groups[inside.group].kind == "function" and graph.groups[inside.group].name == "<lambda>"
    assert "py_function" in inside.adjoint_reason


def test_a_keras_model_from_the_guides_matches_the_result_everywhere(shell):
    shell.run_cell("import keras\nmodel = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation='relu'), "
                   "keras.layers.Dropout(0.5), keras.layers.Dense(3)])\n"
                   "xb = tf.random.stateless_normal((5, 4), seed=(1, 2))\nyb = tf.constant([0, 1, 2, 1, 0])")
    code = ("logits = model(xb, training=False)\n"
            "loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(yb, logits, from_logits=True))")
    result, graph = graph_of(shell, "model.trainable_variables", code)
    sources = [node for node in graph.nodes if node.kind == SOURCE]
    assert [node.name for node in sources] == [f"model.trainable_variables[{i}]" for i in range(4)]
    for node in sources:
        np.testing.assert_allclose(node.adjoint, result.gradients[node.name].numpy(), rtol=1e-6)
    expected = independent(code, shell.user_ns, [], ["logits"], target="loss")
    np.testing.assert_allclose(graph.named("logits").adjoint, expected["logits"], rtol=1e-5)
    model = shell.user_ns["model"]
    nested = [group.name for group in graph.groups if group.parent is not None]
    assert nested == [model.layers[0].name, model.layers[2].name]  # Dropout at inference runs no op
    contributions_add_up(graph)


def test_a_graph_that_cannot_be_drawn_never_costs_the_result(shell, monkeypatch):
    def broken(self):
        raise RuntimeError("drawing failed here")

    monkeypatch.setattr(graph_engine._Builder, "edges", broken)
    shell.run_cell("x = tf.Variable(3.0)")
    run(shell, "x --graph -o r_graph --display none", "f = x * x")
    result = shell.user_ns.pop("r_graph")
    assert result.graph is None and float(result.gradients["x"]) == 6.0
    assert any("--graph could not draw this cell (RuntimeError: drawing failed here)" in note for note in result.notes)


def test_graph_never_traces_and_says_why(shell, trace_first_run):
    # A Hessian over 16 elements would be traced (on its first run too, here); the graph needs the real run's ops.
    shell.run_cell("w = tf.Variable(tf.linspace(0.1, 1.6, 16))")
    result, graph = graph_of(shell, "w --hessian", "f = tf.reduce_sum(w ** 3)")
    assert result.path == "eager" and any("--graph draws the operations TensorFlow ran" in n for n in result.notes)
    np.testing.assert_allclose(graph.named("w").adjoint, result.gradients["w"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.diag(result.targets[0].hessian.numpy()), 6 * shell.user_ns["w"].numpy(), rtol=1e-5)


def test_no_auto_watch_variables_are_named_and_not_watched(shell):
    shell.run_cell("x = tf.Variable(2.0)\ny = tf.Variable(3.0)")
    result, graph = graph_of(shell, "x --no-auto-watch", "f = x * y")
    assert float(graph.named("x").adjoint) == 3.0
    y = graph.named("y")
    assert y.kind == CONSTANT and y.adjoint is None and "not watched" in y.adjoint_reason


def test_no_graph_replay_after_a_check_replay_was_caught_changing_state(shell):
    # --check's runs at x ± step take a branch that assigns, in library code the analysis trusts (a function
    # compiled under a site-packages file name): TensorFlow's op log catches it, and then no further run may
    # be made, the graph's forward-mode passes included.
    define_trusted_bump(shell, 2.0, "float(t) != 2.0")
    result, graph = graph_of(shell, "x --forward --check", "y = x ** 2 + 0.0 * bump(x)")
    assert float(shell.user_ns["v"]) == 1.0  # the one --check run that was caught, and no other
    assert "graph_forward" not in result.passes and graph.forward_sources == ()
    assert any("no further run was made" in note for note in result.notes)
    assert float(graph.named("x").adjoint) == 4.0  # the reverse pass comes from the one real run


def test_a_custom_gradient_that_calls_a_tf_function_sends_its_gradient_along_the_edge_in(shell):
    # The op the input feeds sits in the tf.function's group, inside the custom gradient's: the edge into it
    # still carries the custom gradient (3 per element), so the input's contributions add up to its adjoint.
    shell.run_cell("@tf.function\ndef inner(t):\n    return tf.sin(t) * 2.0\n\n"
                   "@tf.custom_gradient\ndef scaled(t):\n    return inner(t), lambda upstream: upstream * 3.0\n\n"
                   "x = tf.Variable([1.0, 2.0])")
    result, graph = graph_of(shell, "x", "out = tf.reduce_sum(scaled(x))")
    np.testing.assert_allclose(graph.named("x").adjoint, [3.0, 3.0])
    np.testing.assert_allclose(result.gradients["x"], [3.0, 3.0])
    into = [edge for edge in graph.users(graph.named("x").id)]
    assert into and any(edge.contribution is not None for edge in into)
    contributions_add_up(graph)
