"""Every example E1–E12 and E17–E27 of shared/EXAMPLES.md, through %%tape in a real shell,
each checked against the same computation in plain TensorFlow."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError
import tensorflow as tf
from IPython.utils.capture import capture_output

from conftest import run, value


def test_e1_square(shell):
    shell.run_cell("x = tf.Variable(3.)")
    r, _ = run(shell, "x", "y = tf.square(x)")
    x = tf.Variable(3.)
    with tf.GradientTape() as tape:
        y = tf.square(x)
    assert value(r.value) == y.numpy() == 9.0
    assert value(r.gradients["x"]) == tape.gradient(y, x).numpy() == 6.0


def test_e2_non_persistent_tape_used_twice_raises(shell):
    shell.run_cell("x = tf.Variable(3.)")
    r, _ = run(shell, "x -t y -t z", "y = tf.square(x)\nz = pow(x, 3)")
    # %%tape gives each target its own gradients; plain TensorFlow's non-persistent tape refuses a second call.
    assert value(r.gradient("x", of="y")) == 6.0 and value(r.gradient("x", of="z")) == 27.0
    assert r.tape is None  # without -p the tape is not kept
    x = tf.Variable(3.)
    with tf.GradientTape() as tape:
        y = tf.square(x)
        z = pow(x, 3)
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="A non-persistent GradientTape can only be used to compute one set of gradients"):
        tape.gradient(z, x)


def test_e3_persistent_tape(shell):
    shell.run_cell("x = tf.Variable(3.)")
    r, _ = run(shell, "x -t y -t z -p", "y = tf.square(x)\nz = pow(x, 3)")
    assert value(r.values["y"]) == 9.0 and value(r.values["z"]) == 27.0
    assert value(r.gradient("x", of="y")) == 6.0
    assert value(r.gradient("x", of="z")) == 27.0
    # The kept persistent tape answers more questions, and the erratum's call is None.
    assert r.tape.gradient(r.values["z"], shell.user_ns["x"]).numpy() == 27.0
    assert r.tape.gradient(r.values["y"], r.values["z"]) is None


def test_e4_no_auto_watch_gives_none_with_reason(shell):
    shell.run_cell("x = tf.Variable(3.)")
    r, _ = run(shell, "x --no-auto-watch --no-watch", "y = tf.square(x)")
    x = tf.Variable(3.)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        y = tf.square(x)
    assert tape.gradient(y, x) is None
    assert value(r.value) == 9.0 and r.gradients["x"] is None
    assert "watch_accessed_variables=False" in r.why("x")
    assert "∂y/∂x is None: x was not watched" in r.to_text()


def test_e5_no_auto_watch_with_watch(shell):
    shell.run_cell("x = tf.Variable(3.)")
    r, _ = run(shell, "x --no-auto-watch", "y = tf.square(x)")
    assert value(r.gradients["x"]) == 6.0
    # The same with the watch written in the cell, as the document does.
    r, _ = run(shell, "x --no-auto-watch --no-watch", "import tapemagic\ntapemagic.watch(x)\ny = tf.square(x)")
    assert value(r.gradients["x"]) == 6.0


def test_e6_watched_constant(shell):
    shell.run_cell("x = tf.constant(3.)")
    r, _ = run(shell, "x --no-auto-watch", "y = tf.square(x)")
    assert value(r.gradients["x"]) == 6.0
    assert r.watched == ()  # a constant is watched, but it is no variable


@pytest.mark.parametrize("line", ["x y", ""])
def test_e7_e8_two_variables(shell, line):
    shell.run_cell("x = tf.Variable(3.)\ny = tf.Variable(4.)")
    r, _ = run(shell, line, "f = tf.square(x) + 2 * tf.square(y) + 1")
    x, y = tf.Variable(3.), tf.Variable(4.)
    with tf.GradientTape() as tape:
        f = tf.square(x) + 2 * tf.square(y) + 1
    df_dx, df_dy = tape.gradient(f, [x, y])
    assert value(r.value) == f.numpy() == 42.0
    assert [value(r.gradients["x"]), value(r.gradients["y"])] == [df_dx.numpy(), df_dy.numpy()] == [6.0, 16.0]
    assert [w.name for w in r.watched] == ["x", "y"]


def test_e9_nested_tapes_second_order(shell):
    shell.run_cell("x = tf.Variable(3.)\ny = tf.Variable(4.)")
    r, _ = run(shell, "x y -n 2", "f = tf.square(x) + 2 * tf.square(y) + 1")
    x, y = tf.Variable(3.), tf.Variable(4.)
    with tf.GradientTape(persistent=True) as tape2:
        with tf.GradientTape(persistent=True) as tape1:
            f = tf.square(x) + 2 * tf.square(y) + 1
        first = tape1.gradient(f, [x, y])
    second = tape2.gradient(first, [x, y])
    assert [value(r.derivatives[1]["x"]), value(r.derivatives[1]["y"])] == [g.numpy() for g in first] == [6, 16]
    assert [value(r.derivatives[2]["x"]), value(r.derivatives[2]["y"])] == [g.numpy() for g in second] == [2, 4]


def test_e10_vectors(shell):
    shell.run_cell("x = tf.Variable([1., 2., 3.])\ny = tf.Variable([4., 5., 6.])")
    r, _ = run(shell, "x y", "f = tf.square(x) + 2 * tf.square(y) + 1")
    assert value(r.value) == [34, 55, 82]
    assert value(r.gradients["x"]) == [2, 4, 6]
    assert value(r.gradients["y"]) == [16, 20, 24]
    assert "[34, 55, 82]" in r.to_text()


def test_e11_polynomial_of_constant(shell):
    shell.run_cell("def f(x):\n    return x**3 + 2*x**2 + 1\nx = tf.constant(4.0)")
    r, _ = run(shell, "x -- f(x)")
    x = tf.constant(4.0)
    with tf.GradientTape() as g:
        g.watch(x)
        y = x**3 + 2 * x**2 + 1
    assert value(r.gradients["x"]) == g.gradient(y, x).numpy() == 64.0


def test_e12_linear_regression_loss(shell):
    shell.run_cell(
        "x = tf.constant([[1., 2.]])\ny = tf.constant([[3.], [4.]])\n"
        "w = tf.Variable([[1.], [2.]])\nb = tf.Variable(1.)"
    )
    r, _ = run(shell, "w b", "pred = tf.matmul(x, w) + b\nloss = tf.reduce_sum(tf.square(pred - y))")
    assert value(r.value) == 13.0
    assert value(r.gradients["w"]) == [[10.0], [20.0]]
    assert value(r.gradients["b"]) == 10.0
    # No sources named: the trainable variables the cell touched, found by the tape.
    r, _ = run(shell, "", "pred = tf.matmul(x, w) + b\nloss = tf.reduce_sum(tf.square(pred - y))")
    assert [s.name for s in r.sources] == ["w", "b"]
    assert value(r.gradients["b"]) == 10.0


def test_e17_e19_variables_and_manual_derivative(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    r, _ = run(shell, "x y", "f = x**2 * y + y + 2")
    x, y = 3.0, 4.0
    assert value(r.gradients["x"]) == 2 * x * y == 24.0  # E19: df/dx = 2xy
    assert value(r.gradients["y"]) == x**2 + 1 == 10.0  # E19: df/dy = x² + 1


def test_e18_watched_constants(shell):
    shell.run_cell("x = tf.constant(3.0)\ny = tf.constant(4.0)")
    r, _ = run(shell, "x y", "f = x**2 * y + y + 2")
    assert [value(r.gradients["x"]), value(r.gradients["y"])] == [24.0, 10.0]


def test_e20_finite_differences_approach_the_gradient(shell):
    shell.run_cell("def f(x, y):\n    return x**2 * y + y + 2")
    shell.run_cell("x = tf.constant(3.0, tf.float64)\ny = tf.constant(4.0, tf.float64)")
    r, _ = run(shell, "x y --check", "z = f(x, y)")
    report = r.target.check
    assert report is not None and "x" in report and "ok" in report["x"]
    def fd(eps):
        return (f(3.0 + eps, 4.0) - f(3.0, 4.0)) / eps
    f = lambda x, y: x**2 * y + y + 2  # noqa: E731
    assert abs(fd(1e-6) - 24.0) < 1e-3
    assert abs(fd(1e-1) - 24.0) > abs(fd(1e-4) - 24.0)  # the truncation error shrinks with ε


def test_e21_forward_mode(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    r, _ = run(shell, "x y --forward", "f = x**2 * y + y + 2")
    assert value(r.target.forward["x"]) == 24.0 and value(r.target.forward["y"]) == 10.0
    assert r.passes["forward"] == 2 and r.passes["reverse"] == 1
    with tf.autodiff.ForwardAccumulator(primals=shell.user_ns["x"], tangents=tf.constant(1.0)) as acc:
        f = shell.user_ns["x"] ** 2 * shell.user_ns["y"] + shell.user_ns["y"] + 2
    assert acc.jvp(f).numpy() == 24.0 and f.numpy() == 42.0  # f(3 + ε, 4) = 42 + 24ε


def test_e22_reverse_mode_one_pass(shell):
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    r, _ = run(shell, "x y", "f = x**2 * y + y + 2")
    assert r.passes.get("reverse", 1) == 1
    assert [value(r.gradients["x"]), value(r.gradients["y"])] == [24.0, 10.0]


def test_e23_e24_ones_and_intermediate(shell):
    shell.run_cell("x = tf.ones((2, 2))")
    r, _ = run(shell, "x -t z", "y = tf.reduce_sum(x)\nz = tf.multiply(y, y)")
    assert value(r.gradients["x"]) == [[8.0, 8.0], [8.0, 8.0]]
    # E24: the gradient with respect to the intermediate y, from the kept tape.
    r, _ = run(shell, "x -t z -p", "y = tf.reduce_sum(x)\nz = tf.multiply(y, y)")
    assert r.tape.gradient(r.value, shell.user_ns["y"]).numpy() == 8.0


def test_e25_persistent_constant(shell):
    shell.run_cell("x = tf.constant(3.0)")
    r, _ = run(shell, "x -t z -t y -p", "y = x * x\nz = y * y")
    assert value(r.gradient("x", of="z")) == 108.0  # 4x³ at 3
    assert value(r.gradient("x", of="y")) == 6.0


@pytest.mark.parametrize(("n", "expected"), [(6, 12.0), (5, 12.0), (4, 4.0)])
def test_e26_control_flow(shell, n, expected):
    shell.run_cell(
        "def f(x, y):\n    output = 1.0\n    for i in range(y):\n        if i > 1 and i < 5:\n"
        "            output = tf.multiply(output, x)\n    return output\n"
        f"x = tf.convert_to_tensor(2.0)\nn = {n}"
    )
    r, _ = run(shell, "x", "out = f(x, n)")
    assert value(r.gradients["x"]) == expected


def test_e27_second_derivative_of_cube(shell):
    shell.run_cell("x = tf.Variable(1.0)")
    r, _ = run(shell, "x -n 2", "y = x * x * x")
    assert value(r.derivatives[1]["x"]) == 3.0
    assert value(r.derivatives[2]["x"]) == 6.0


def test_issue_example_order_two(shell):
    shell.run_cell("x = tf.Variable(3.0); y = tf.Variable(4.0)")
    r, captured = run(shell, "x y -n 2", "f = x**2 * y + y + 2")
    assert value(r.value) == 42
    assert [value(r.derivatives[1][s]) for s in "xy"] == [24, 10]
    assert [value(r.derivatives[2][s]) for s in "xy"] == [8, 0]  # 0, not None: x²+1 no longer depends on y
    assert shell.user_ns["f"] is r.value  # the cell's assignment stays in the namespace
    assert r.to_text().splitlines()[:4] == [
        "tape: f = 42  (order 2, non-persistent, auto-watch, eager)",
        "source  shape  dtype    value  ∂f/∂·  ∂²f/∂·²",
        "x       ()     float32  3      24     8",
        "y       ()     float32  4      10     0",
    ]


def test_result_is_the_cell_output_with_text_and_html(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    with capture_output() as captured:
        executed = shell.run_cell("%%tape x --display html\ny = x**2")
    assert "tape: y = 9" in captured.stdout  # the terminal's displayhook shows the text view
    result = executed.result  # what the displayhook showed (not `_`, which a test's own `_ = ...` freezes)
    bundle, _ = shell.display_formatter.format(result)  # what a kernel sends a frontend
    assert "tape: y = 9" in bundle["text/plain"]
    assert "<td>6</td>" in bundle["text/html"]


def test_config_sets_session_defaults(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0, 3.0, 4.0])")
    shell.run_line_magic("config", "TapeMagics.display = 'text'")
    shell.run_line_magic("config", "TapeMagics.precision = 2")
    shell.run_line_magic("config", "TapeMagics.max_elements = 3")
    r, _ = run(shell, "x", "y = tf.reduce_sum(x / 3)")
    assert r.display == "text" and set(r._repr_mimebundle_()) == {"text/plain"}
    assert "0.33" in r.to_text() and "0.333" not in r.to_text()
    assert "shape (4,) min 1 max 4" in r.to_text()  # more than 3 elements: summarized
    r, _ = run(shell, "x --display html", "y = tf.reduce_sum(x / 3)")
    assert r.display == "html"  # the line beats the session default
    shell.run_line_magic("config", "TapeMagics.display = 'fancy'")  # IPython reports the bad value ...
    r, _ = run(shell, "x", "y = tf.reduce_sum(x / 3)")
    assert r.display == "text"  # ... and keeps the last good one


def test_hvp_through_the_magic_matches_the_hessian(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0, 3.0], dtype=tf.float64)\nv = tf.constant([1.0, 0.0, -1.0], tf.float64)")
    r, _ = run(shell, "x --hvp v --hessian", "y = tf.reduce_sum(x ** 3) + x[0] * x[1]")
    expected = r.hessian.numpy() @ shell.user_ns["v"].numpy()  # [[6, 1, 0], [1, 12, 0], [0, 0, 18]] @ v
    assert expected.tolist() == [6.0, 1.0, -18.0]
    assert r.target.hvp["x"].numpy().tolist() == expected.tolist()
    assert "Hessian-vector product for x = [6, 1, -18]" in r.to_text()
    with pytest.raises(UsageError, match="the vector has 2 elements but the sources have 3"):
        shell.run_cell("w = tf.ones(2, tf.float64)")
        shell.run_cell_magic("tape", "x --hvp w", "y = tf.reduce_sum(x ** 3)")
