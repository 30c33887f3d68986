"""The engine without IPython: derivatives of order 1-3, Jacobians and Hessians against
hand-derived formulas and against central finite differences (in float64)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from tapemagic.engine import methods as _methods


def central(fun, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """d fun / dx by central differences, element by element (fun maps an array to an array)."""
    x = np.asarray(x, dtype=np.float64)
    columns = []
    for i in range(x.size):
        step = np.zeros_like(x).reshape(-1)
        step[i] = h
        step = step.reshape(x.shape)
        columns.append((np.asarray(fun(x + step)) - np.asarray(fun(x - step))) / (2 * h))
    return np.stack(columns, axis=-1).reshape(np.shape(fun(x)) + x.shape)


def derivative_function(f, order: int):
    """x -> the engine's order-th derivative of f at x, as a float64 NumPy array."""
    def at(x):
        r = tapemagic.tape(f, [tf.constant(x, tf.float64)], order=order, eager=True)
        return r.derivatives[order]["x"].numpy()
    return at


CASES = [
    # f, first, second, third derivative (element-wise), x
    (lambda x: tf.reduce_sum(x**3), lambda x: 3 * x**2, lambda x: 6 * x, lambda x: 6 + 0 * x, [0.5, -1.5, 2.0]),
    (lambda x: tf.reduce_sum(tf.sin(x)), np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x), [0.1, 1.2, -2.3]),
    (lambda x: tf.reduce_sum(tf.exp(2 * x)), lambda x: 2 * np.exp(2 * x), lambda x: 4 * np.exp(2 * x),
     lambda x: 8 * np.exp(2 * x), [0.0, 0.3]),
]


@pytest.mark.parametrize(("f", "d1", "d2", "d3", "x"), CASES)
def test_orders_one_to_three_match_formulas_and_finite_differences(f, d1, d2, d3, x):
    x = np.array(x)
    r = tapemagic.tape(f, [tf.constant(x, tf.float64)], order=3)
    for k, formula in ((1, d1), (2, d2), (3, d3)):
        np.testing.assert_allclose(r.derivatives[k]["x"].numpy(), formula(x), rtol=1e-10, atol=1e-12)
    # Order k checked by differencing the engine's order k-1 (autograd's check_grads idea).
    for k in (2, 3):
        numeric = np.diagonal(central(derivative_function(f, k - 1), x)) if x.ndim else central(derivative_function(f, k - 1), x)
        np.testing.assert_allclose(r.derivatives[k]["x"].numpy(), numeric, rtol=1e-6, atol=1e-6)


def test_the_finite_difference_reference_catches_a_wrong_derivative():
    x = np.array([0.5, -1.5, 2.0])
    numeric = np.diagonal(central(lambda v: 3 * v**2, x))
    assert np.allclose(numeric, 6 * x, rtol=1e-6)
    assert not np.allclose(numeric, 5 * x, rtol=1e-3)  # a derivative off by 1/6 is caught


def test_jacobian_matches_formula_and_differences():
    A = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    f = lambda x: tf.tanh(tf.linalg.matvec(tf.constant(A), x))  # noqa: E731
    x = np.array([0.2, -0.1, 0.4])
    r = tapemagic.tape(f, [tf.constant(x)], jacobian=True)
    expected = (1 - np.tanh(A @ x) ** 2)[:, None] * A  # diag(sech²(Ax)) A
    np.testing.assert_allclose(r.jacobian["x"].numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(r.jacobian["x"].numpy(), central(lambda v: np.tanh(A @ v), x), rtol=1e-6)


def test_hessian_with_mixed_partials():
    # f(x, y) = x² y + y³ x: H = [[2y, 2x + 3y²], [2x + 3y², 6xy]]
    r = tapemagic.tape(lambda x, y: x**2 * y + y**3 * x, [tf.constant(1.5, tf.float64), tf.constant(-2.0, tf.float64)], hessian=True)
    x, y = 1.5, -2.0
    np.testing.assert_allclose(r.hessian.numpy(), [[2 * y, 2 * x + 3 * y**2], [2 * x + 3 * y**2, 6 * x * y]])


def test_hessian_of_quadratic_form_and_sine_matches_differences():
    rng = np.random.default_rng(1)
    A = rng.normal(size=(5, 5))
    f = lambda x: tf.reduce_sum(tf.sin(x) * x**2) + tf.tensordot(x, tf.linalg.matvec(tf.constant(A), x), 1)  # noqa: E731
    x = rng.normal(size=5)
    r = tapemagic.tape(f, [tf.constant(x)], hessian=True)
    second = np.diag(2 * np.sin(x) + 4 * x * np.cos(x) - x**2 * np.sin(x))
    np.testing.assert_allclose(r.hessian.numpy(), second + A + A.T, rtol=1e-10)
    gradient = lambda v: (np.cos(v) * v**2 + 2 * v * np.sin(v) + (A + A.T) @ v)  # noqa: E731
    np.testing.assert_allclose(r.hessian.numpy(), central(gradient, x), rtol=1e-6, atol=1e-8)


def test_traced_and_eager_paths_agree(trace_first_run):
    rng = np.random.default_rng(2)
    A = tf.constant(rng.normal(size=(20, 20)))
    f = lambda x: tf.reduce_sum(tf.sin(x) * x**2) + tf.tensordot(x, tf.linalg.matvec(A, x), 1)  # noqa: E731
    x = tf.constant(rng.normal(size=20))
    engine = tapemagic.Engine(trace_first_run=True)
    traced = tapemagic.tape(f, [x], order=3, hessian=True, jacobian=True, engine=engine)
    eager = tapemagic.tape(f, [x], order=3, hessian=True, jacobian=True, eager=True)
    assert traced.path == "traced" and eager.path == "eager"
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-12)
    np.testing.assert_allclose(traced.jacobian["x"].numpy(), eager.jacobian["x"].numpy(), rtol=1e-12)
    for k in (1, 2, 3):
        np.testing.assert_allclose(traced.derivatives[k]["x"].numpy(), eager.derivatives[k]["x"].numpy(), rtol=1e-12)
    again = tapemagic.tape(f, [x], order=3, hessian=True, jacobian=True, engine=engine)
    assert "cached" in " ".join(again.notes)


def test_traced_and_eager_paths_agree_for_a_cell(trace_first_run):
    rng = np.random.default_rng(3)
    namespace = {"tf": tf, "x": tf.Variable(rng.normal(size=30)), "w": tf.constant(rng.normal(size=30))}
    code = "y = tf.reduce_sum(tf.tanh(w * x) ** 2)"
    traced = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True, order=2)
    eager = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True, order=2, eager=True)
    assert traced.path == "traced" and eager.path == "eager"
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-12)
    np.testing.assert_allclose(traced.derivatives[2]["x"].numpy(), eager.derivatives[2]["x"].numpy(), rtol=1e-12)


def test_a_cell_xla_cannot_compile_is_traced_without_xla_and_says_so(trace_first_run):
    # XLA has no string kernels; a plain tf.function runs them (here a debug label beside the math).
    namespace = {"tf": tf, "x": tf.Variable(np.linspace(0.1, 1.0, 20))}
    code = ("label = tf.strings.as_string(x[0])\n"
            "y = tf.reduce_sum(tf.boolean_mask(x, x > 0.5) ** 3) + 0 * tf.strings.to_number(label, tf.float64)")
    traced = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True, engine=tapemagic.Engine(trace_first_run=True))
    eager = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True, eager=True)
    assert traced.path == "traced" and eager.path == "eager"
    assert "traced without XLA: XLA could not compile the cell" in " ".join(traced.notes)
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-12)
    x = np.linspace(0.1, 1.0, 20)
    np.testing.assert_allclose(np.diag(eager.hessian.numpy()), np.where(x > 0.5, 6 * x, 0.0), rtol=1e-12)


def test_a_py_function_is_never_replayed_and_pfor_falls_back_row_by_row():
    # A py_function runs Python that TensorFlow cannot look into: tapemagic does not run it twice.
    namespace = {"tf": tf, "x": tf.Variable(np.linspace(0.1, 1.0, 20)), "calls": []}
    code = "y = tf.py_function(lambda a: calls.append(1) or a * 2.0, [x], tf.float64) * x"
    r = tapemagic.tape(code, ["x"], namespace=namespace, jacobian=True)
    notes = " ".join(r.notes)
    assert r.path == "eager" and len(namespace["calls"]) == 1
    assert "tf.py_function" in notes and "pfor could not vectorize the Jacobian" in notes
    expected = np.diag(4 * np.linspace(0.1, 1.0, 20))  # d(2x·x)/dx = 4x on the diagonal
    np.testing.assert_allclose(r.gradients["x"].numpy(), np.diag(expected), rtol=1e-12)
    if r.jacobian["x"] is not None:
        np.testing.assert_allclose(r.jacobian["x"].numpy(), expected, rtol=1e-12)
    else:
        assert "can be differentiated once but not twice" in notes


def test_a_second_derivative_tensorflow_cannot_take_is_explained():
    namespace = {"tf": tf, "x": tf.Variable(np.linspace(0.1, 1.0, 4))}
    code = "y = tf.reduce_sum(tf.py_function(lambda a: a * 2.0, [x], tf.float64) * x ** 2)"
    r = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True, eager=True)
    np.testing.assert_allclose(r.gradients["x"].numpy(), 6 * np.linspace(0.1, 1.0, 4) ** 2)
    assert r.hessian is None
    assert any("can be differentiated once but not twice" in note for note in r.notes), r.notes


def test_a_cell_that_prints_is_traced_and_prints_once(capsys, trace_first_run):
    namespace = {"tf": tf, "np": np, "x": tf.Variable(np.linspace(0, 1, 20))}
    r = tapemagic.tape("y = tf.reduce_sum(x * np.float64(2.0) * x)\nprint('printed')", ["x"], namespace=namespace,
                       hessian=True, engine=tapemagic.Engine(trace_first_run=True))
    assert r.path == "traced" and capsys.readouterr().out == "printed\n"
    np.testing.assert_allclose(r.hessian.numpy(), 4 * np.eye(20))


def test_a_cell_that_changes_state_is_not_traced_and_says_why(trace_first_run):
    namespace = {"tf": tf, "x": tf.Variable(np.linspace(0, 1, 20)), "n": tf.Variable(0.0, dtype=tf.float64)}
    r = tapemagic.tape("n.assign_add(1.0)\ny = tf.reduce_sum(x * x * n)", ["x"], namespace=namespace, hessian=True)
    assert r.path == "eager" and float(namespace["n"]) == 1.0
    assert any("calls n.assign_add()" in note and "not traced" in note for note in r.notes), r.notes
    np.testing.assert_allclose(r.hessian.numpy(), 2 * np.eye(20))


def test_hvp_matches_full_hessian():
    rng = np.random.default_rng(4)
    A = tf.constant(rng.normal(size=(12, 12)))
    f = lambda x: tf.reduce_sum(tf.cos(x) * x) + tf.tensordot(x, tf.linalg.matvec(A, x), 1)  # noqa: E731
    x = tf.constant(rng.normal(size=12))
    v = tf.constant(rng.normal(size=12))
    full = tapemagic.tape(f, [x], hessian=True).hessian.numpy()
    r = tapemagic.tape(f, [x], hvp=v)
    np.testing.assert_allclose(r.target.hvp["x"].numpy(), full @ v.numpy(), rtol=1e-10)


def test_forward_mode_matches_reverse_mode_and_counts_passes():
    x = tf.constant([0.5, 1.0, 2.0], tf.float64)
    y = tf.constant(3.0, tf.float64)
    r = tapemagic.tape(lambda x, y: tf.reduce_sum(x**2) * y, [x, y], forward=True)
    np.testing.assert_allclose(r.target.forward["x"].numpy(), r.gradients["x"].numpy())
    np.testing.assert_allclose(r.target.forward["y"].numpy(), r.gradients["y"].numpy())
    assert r.passes == {"reverse": 1, "forward": 4}  # one forward pass per element, one reverse pass in all


def test_check_passes_a_right_gradient_and_catches_a_wrong_custom_gradient():
    @tf.custom_gradient
    def wrong_square(x):
        return x * x, lambda upstream: upstream * x  # the right gradient is 2x

    @tf.custom_gradient
    def right_square(x):
        return x * x, lambda upstream: upstream * 2 * x

    x = tf.Variable([1.0, -2.0, 3.0])
    good = tapemagic.tape(lambda x: tf.reduce_sum(right_square(x)), [x], check=True)
    bad = tapemagic.tape(lambda x: tf.reduce_sum(wrong_square(x)), [x], check=True)
    assert good.target.check["x"].ok, str(good.target.check["x"])
    report = bad.target.check["x"]
    assert not report.ok and "MISMATCH" in str(report)
    assert report.worst == (2,) and report.tape_value == pytest.approx(3.0) and report.difference_value == pytest.approx(6.0, rel=1e-2)
    assert "MISMATCH" in bad.to_text()
    np.testing.assert_array_equal(x.numpy(), [1.0, -2.0, 3.0])  # perturbed variables are restored


def test_check_says_none_where_the_tape_gave_none_not_zero():
    # A sparse target: the tape gives None (and says why), finite differences see the values change. The report used
    # to say "the tape says 0", which reads as a wrong gradient rather than no gradient.
    x = tf.Variable([1.0, 2.0, 3.0])
    r = tapemagic.tape("y = tf.sparse.from_dense(x * x)", ["x"], namespace={"x": x, "tf": tf}, check=True)
    report = r.target.check["x"]
    assert not report.ok and report.tape_none
    assert "the tape says None (compared as 0), finite differences say 6" in str(report), str(report)
    assert "tape says 0" not in r.to_text() + r.to_html()
    connected = tapemagic.tape(lambda x: tf.reduce_sum(x * 0.0), [x], check=True).target.check["x"]
    assert connected.ok and not connected.tape_none  # a true zero gradient is a number, as before


def test_check_step_depends_on_dtype():
    assert _methods.default_step(tf.float64) == pytest.approx(6.06e-6, rel=1e-2)
    assert _methods.default_step(tf.float32) == pytest.approx(4.92e-3, rel=1e-2)
    r = tapemagic.tape(lambda x: x**3, [tf.constant(2.0, tf.float64)], check=True, eps=1e-4)
    assert r.target.check["x"].step == 1e-4 and r.target.check["x"].max_abs < 1e-6


def test_unconnected_higher_order_is_zero_but_first_order_none_is_explained():
    r = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=3)
    assert r.derivatives[2]["y"].numpy() == 0 and r.derivatives[3]["x"].numpy() == 0
    r = tapemagic.tape(lambda x, y: x * 2.0, [3.0, 4.0])
    assert r.gradients["y"] is None
    assert "does not depend on y" in r.why("y")
    assert "is not None" in r.why("x")
    with pytest.raises(KeyError, match="not a source"):
        r.why("z")


def test_integer_source_is_explained_and_no_tensorflow_warning_is_printed(capfd):
    r = tapemagic.tape(lambda n, x: tf.cast(n, tf.float32) * x, [tf.constant(2), tf.constant(1.5)])
    assert r.gradients["n"] is None and "int32" in r.why("n")
    assert r.gradients["x"].numpy() == 2.0
    assert "must be floating" not in capfd.readouterr().err


def test_loading_the_package_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, tapemagic; tapemagic.load_ipython_extension; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_first_run_takes_the_real_runs_tapes_and_the_second_is_traced():
    # What a notebook user waits for is mostly a first run: tracing and compiling then costs more than
    # the eager tapes (benchmarks/heldout.py), so the trace is made when the same code runs again.
    engine = tapemagic.Engine()
    namespace = {"tf": tf, "x": tf.Variable(tf.linspace(0.0, 1.0, 20))}
    cell = "y = tf.reduce_sum(tf.sin(x) * x ** 3)"
    first = tapemagic.tape(cell, ["x"], namespace=namespace, hessian=True, engine=engine)
    assert any("the first run of this code" in note for note in first.notes), first.notes
    assert not any(note.startswith("traced") for note in first.notes)
    second = tapemagic.tape(cell, ["x"], namespace=namespace, hessian=True, engine=engine)
    assert any(note.startswith("traced: derivatives were computed") for note in second.notes), second.notes
    np.testing.assert_allclose(second.hessian.numpy(), first.hessian.numpy(), rtol=1e-5, atol=1e-6)
    # --explore re-runs the cell for every slider move: its first run is traced at once
    explored = tapemagic.tape("z = tf.reduce_sum(tf.sin(x) * x ** 4)", ["x"], namespace=namespace, hessian=True,
                              explore=True, engine=engine)
    assert any(note.startswith("traced") for note in explored.notes), explored.notes
    # and an engine made to trace first runs does
    eager_first = tapemagic.Engine(trace_first_run=True)
    traced = tapemagic.tape(cell, ["x"], namespace=namespace, hessian=True, engine=eager_first)
    assert any(note.startswith("traced") for note in traced.notes), traced.notes
