"""At the edges (issue "At the edges"): many small sources, changing captured numbers, unknown
derivatives, mixed dtypes, unknown shapes, forward mode through a tf.function, empty sources,
and a matplotlib backend left alone. Each through a real IPython shell."""
from __future__ import annotations

import resource

import numpy as np
import pytest
import tensorflow as tf

from conftest import run


def engine_of(shell):
    return next(c for c in shell.configurables if type(c).__name__ == "TapeMagics")._engine


def test_a_hessian_over_many_small_sources_is_one_jacobian_and_equals_the_vector_one(shell):
    k = 60
    shell.run_cell(f"vs = [tf.Variable(0.1 * i + 0.5) for i in range({k})]\nflat = tf.Variable(tf.stack(vs))\n"
                   "A = tf.constant(np.random.default_rng(0).normal(size=" + f"({k}, {k})), tf.float32)")
    many, _ = run(shell, "vs --hessian", "v = tf.stack(vs)\ny = tf.reduce_sum(tf.sin(v) * v ** 2) + tf.tensordot(v, tf.linalg.matvec(A, v), 1)")
    one, _ = run(shell, "flat --hessian", "y = tf.reduce_sum(tf.sin(flat) * flat ** 2) + tf.tensordot(flat, tf.linalg.matvec(A, flat), 1)")
    assert many.hessian.shape == (k, k)
    np.testing.assert_allclose(many.hessian.numpy(), one.hessian.numpy(), rtol=1e-4, atol=1e-4)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def test_a_changing_captured_float_reuses_one_trace_and_memory_stays_flat(shell, trace_first_run):
    shell.run_cell("x = tf.Variable(tf.linspace(0.5, 1.5, 20))\nc = 1.0")
    cell = "y = c * tf.reduce_sum(x ** 3)"
    run(shell, "x --hessian --display none -o r", cell)
    before = len(engine_of(shell).traces._entries)
    for i in range(20):  # warm up what TensorFlow allocates once
        shell.user_ns["c"] = 1.0 + i / 7
        run(shell, "x --hessian --display none", cell)
    start = _rss_mb()
    for i in range(2000):
        shell.user_ns["c"] = 2.0 + i / 7
        run(shell, "x --hessian --display none -o r", cell)
    grown = _rss_mb() - start
    r = shell.user_ns["r"]
    print(f"memory over 2,000 runs with a changing float: {grown:+.1f} MB")
    assert len(engine_of(shell).traces._entries) == before  # no new trace per value
    np.testing.assert_allclose(np.diag(r.hessian.numpy()), shell.user_ns["c"] * 6 * shell.user_ns["x"].numpy(), rtol=1e-5)
    assert grown < 40, f"memory grew {grown:.0f} MB over 2,000 runs"


def test_a_float_needed_as_a_python_number_is_traced_with_it_baked_in(shell, trace_first_run):
    shell.run_cell("x = tf.Variable(tf.linspace(0.5, 1.5, 20))\nn = 3.0")
    r, _ = run(shell, "x --hessian", "y = tf.reduce_sum(x ** 3) * len(range(int(n)))")
    assert r.path == "traced"
    np.testing.assert_allclose(np.diag(r.hessian.numpy()), 3 * 6 * shell.user_ns["x"].numpy(), rtol=1e-5)
    shell.run_cell("n = 2.0")
    r, _ = run(shell, "x --hessian", "y = tf.reduce_sum(x ** 3) * len(range(int(n)))")
    np.testing.assert_allclose(np.diag(r.hessian.numpy()), 2 * 6 * shell.user_ns["x"].numpy(), rtol=1e-5)


CUT = {
    ".numpy() round trip": ("x", "y = tf.reduce_sum(tf.constant(x.numpy()) ** 2)", "line 1 calls .numpy()"),
    "tf.numpy_function": ("x", "y = tf.reduce_sum(tf.numpy_function(lambda t: t ** 2, [x], tf.float32))", "numpy_function"),
    "unwatched source": ("x --no-auto-watch --no-watch", "y = tf.reduce_sum(x ** 2)", "not watched"),
    "non-tensor target": ("x", "y = float(tf.reduce_sum(x ** 2))", "not a tensor"),
}


@pytest.mark.parametrize("case", list(CUT))
def test_an_unknown_first_derivative_gives_an_unknown_hessian_not_zeros(shell, case):
    line, cell, words = CUT[case]
    shell.run_cell("x = tf.Variable([1.0, 2.0])")
    r, _ = run(shell, f"{line} --hessian", cell)
    assert r.gradients["x"] is None
    assert r.hessian is None and words in r.target.unavailable["hessian"], r.target.unavailable
    assert "Hessian of" in r.to_text() and words in r.to_text()


def test_a_source_the_target_does_not_use_has_zero_second_derivatives(shell):
    # What TensorFlow's unconnected_gradients=ZERO says, and mathematically right: z does not depend on x.
    shell.run_cell("x = tf.Variable([2.0, 2.0])\ny = tf.Variable(3.0)")
    r, _ = run(shell, "x y --hessian", "z = y ** 2")
    assert r.hessian.numpy().tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 2]]


def test_a_py_function_second_derivative_is_unknown_not_zero(shell):
    shell.run_cell("x = tf.Variable([1.0, 2.0])")
    r, _ = run(shell, "x -n 2", "y = tf.reduce_sum(tf.py_function(lambda t: t ** 2, [x], tf.float32))")
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            y = tf.reduce_sum(tf.py_function(lambda t: t ** 2, [shell.user_ns["x"]], tf.float32))
        g = inner.gradient(y, shell.user_ns["x"])
    assert outer.gradient(g, shell.user_ns["x"]) is None  # what TensorFlow says
    assert r.gradients["x"].numpy().tolist() == [2.0, 4.0]
    assert r.derivatives[2]["x"] is None and "py_function" in " ".join(r.notes)


def test_mixed_float32_and_float64_sources_give_a_float64_hessian_and_say_so(shell):
    shell.run_cell("a = tf.Variable(1.0)\nb = tf.Variable(2.0, dtype=tf.float64)")
    r, _ = run(shell, "a b --hessian", "y = tf.cast(a, tf.float64) ** 2 * b")
    assert r.hessian.dtype == tf.float64 and r.hessian.numpy().tolist() == [[4.0, 2.0], [2.0, 0.0]]
    assert any("the Hessian is in float64" in note for note in r.notes)


def test_a_variable_of_unknown_shape_works_with_every_option(shell):
    shell.run_cell("u = tf.Variable([1.0, 2.0, 3.0], shape=tf.TensorShape(None))\nv = tf.ones(3)")
    r, _ = run(shell, "u --hessian --jacobian -n 2 --check --forward --hvp v", "y = tf.reduce_sum(u ** 3)")
    assert r.sources[0].shape == (3,)
    assert r.gradients["u"].numpy().tolist() == [3.0, 12.0, 27.0]
    assert np.diag(r.hessian.numpy()).tolist() == [6.0, 12.0, 18.0] and r.target.forward["u"].numpy().tolist() == [3.0, 12.0, 27.0]
    assert r.target.check["u"].ok and r.target.hvp["u"].numpy().tolist() == [6.0, 12.0, 18.0]
    assert "(3,)" in r.to_text()


def test_forward_mode_through_a_tf_function_is_explained_and_the_rest_kept(shell):
    shell.run_cell("w = tf.Variable([1.0, 2.0])\n@tf.function\ndef f(t):\n    return tf.reduce_sum(t ** 2)")
    r, _ = run(shell, "w --forward", "y = f(w)")
    assert r.gradients["w"].numpy().tolist() == [2.0, 4.0]
    if r.target.forward is None:
        assert any("forward mode (ForwardAccumulator) failed" in note for note in r.notes), r.notes
    else:
        assert r.target.forward["w"].numpy().tolist() == [2.0, 4.0]


def test_an_empty_source_has_an_empty_hessian(shell):
    shell.run_cell("e = tf.Variable(tf.zeros([0]))\nx = tf.Variable(2.0)")
    r, _ = run(shell, "e --hessian", "y = tf.reduce_sum(e)")
    assert r.hessian.shape == (0, 0)
    r, _ = run(shell, "e x --hessian", "y = tf.reduce_sum(e) + x ** 2")
    assert r.hessian.numpy().tolist() == [[2.0]]


def test_showing_an_explore_plot_leaves_matplotlib_backend_alone(shell):
    matplotlib = pytest.importorskip("matplotlib")
    previous = matplotlib.get_backend()
    try:
        matplotlib.use("svg")
        shell.run_cell("x = tf.Variable(1.0)")
        r, _ = run(shell, "x --explore --display none -o r", "y = x ** 3")
        from tapemagic.render import widget

        explorer = widget.Explorer(shell.user_ns["r"])
        explorer.sliders["x"].value = 2.0
        assert explorer.plot.startswith('<svg class="tm-plot"') and matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)


def test_a_jacobian_too_big_for_the_machine_is_none_with_its_size_and_the_rest_is_kept(shell, monkeypatch):
    monkeypatch.setenv("TAPEMAGIC_MEMORY_LIMIT", "64M")
    shell.run_cell("x = tf.Variable(tf.linspace(0.0, 1.0, 4000))")
    r, _ = run(shell, "x --jacobian", "y = tf.sin(x) * 2.0")
    assert r.jacobian is None and "was not computed" in r.target.unavailable["jacobian"]
    assert "4,000 × 4,000" in r.to_text()
    np.testing.assert_allclose(r.gradients["x"].numpy(), 2 * np.cos(np.linspace(0.0, 1.0, 4000)), rtol=1e-5, atol=1e-6)


def test_a_hessian_too_big_is_refused_before_the_cell_runs(shell, monkeypatch):
    from IPython.core.error import UsageError

    monkeypatch.setenv("TAPEMAGIC_MEMORY_LIMIT", "1G")
    shell.run_cell("x = tf.Variable(tf.zeros(100000))")
    shell.user_ns.pop("ran", None)
    with pytest.raises(UsageError, match=r"GiB.*--hvp"):
        run(shell, "x --hessian", "ran = True\ny = tf.reduce_sum(x ** 2)")
    assert "ran" not in shell.user_ns


def test_a_refused_line_puts_a_converted_number_back(shell):
    from IPython.core.error import UsageError

    shell.run_cell("v = 2.5\nlst = []")
    with pytest.raises(UsageError):
        run(shell, "v --check", "lst.append(1)\ny = v ** 2")
    assert shell.user_ns["v"] == 2.5 and type(shell.user_ns["v"]) is float and shell.user_ns["lst"] == []
