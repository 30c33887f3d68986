"""Warm re-runs (issue "Fast on the first run and on every re-run"): once a cell's trace has been verified
against a real run under tapes, a later run of the same cell, reading the same values, runs once as written
without tapes and takes its derivatives from the cached trace, after checking the trace's value against the
run's. These tests use the engine's default policy (no trace_first_run): run 1 eager, run 2 traced and
verified, run 3 on reuses the trace."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from conftest import CACHED, run
from tapemagic import _i18n
from tapemagic._spec import SpecError
from tapemagic.engine import guard
from tapemagic.engine.cell import compile_cell
from tapemagic.engine.trace import TraceCache

N = 20  # big enough that Hessians take the traced path
REUSED = CACHED
DROPPED = "the cached trace could not be used"


def three_runs(shell, line, cell):
    return [run(shell, line, cell) for _ in range(3)]


def test_the_third_run_reuses_the_verified_trace_and_the_cell_still_runs_once(shell):
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "print('ran')\nh = tf.sin(x)\ny = tf.reduce_sum(h * x ** 2)"
    runs = three_runs(shell, "x --hessian", cell)
    assert [r.path for r, _ in runs] == ["eager", "traced", "traced"]
    assert [out.stdout for _, out in runs] == ["ran\n"] * 3  # printed once per run, as a plain run prints
    third = runs[2][0]
    assert any(REUSED in note and "without tapes" in note for note in third.notes), third.notes  # all compared by content
    assert not any(REUSED in note for note in runs[1][0].notes)
    x = shell.user_ns["x"].numpy()
    np.testing.assert_allclose(shell.user_ns["h"].numpy(), np.sin(x), rtol=1e-6)  # the cell's own names, bound
    eager, _ = run(shell, "x --hessian --eager", cell)
    np.testing.assert_allclose(third.hessian.numpy(), eager.hessian.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(third.gradients["x"].numpy(), eager.gradients["x"].numpy(), rtol=1e-5)
    assert [w.name for w in third.watched] == [w.name for w in runs[1][0].watched] == ["x"]


def test_a_reused_trace_follows_a_variable_assigned_between_runs(shell):
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "y = tf.reduce_sum(tf.exp(x) * x)"
    three_runs(shell, "x --hessian", cell)
    shell.run_cell("x.assign(x * 2.0)")
    again, _ = run(shell, "x --hessian", cell)
    x = shell.user_ns["x"].numpy()
    assert any(REUSED in note for note in again.notes), again.notes
    np.testing.assert_allclose(np.diag(again.hessian.numpy()), np.exp(x) * (x + 2), rtol=1e-5)
    np.testing.assert_allclose(float(again.value), float(np.sum(np.exp(x) * x)), rtol=1e-5)


def test_a_keras_layer_changed_where_the_key_cannot_see_is_caught_by_the_value_check(shell):
    # The trace key holds a Keras layer by identity, trainable flags and variables, not its Python
    # attributes: a swapped activation is seen only because the trace's value disagrees with the run's.
    shell.run_cell("import keras\nlayer = keras.layers.Dense(1, activation='tanh')\n"
                   f"x = tf.Variable(tf.reshape(tf.linspace(-1.0, 1.0, {N}), [1, {N}]))\nlayer(tf.zeros([1, {N}]))")
    cell = "print('ran')\ny = tf.reduce_sum(layer(x))"
    runs = three_runs(shell, "x --hessian", cell)
    assert any(REUSED in note for note in runs[2][0].notes)
    shell.run_cell("layer.activation = keras.activations.sigmoid")
    changed, out = run(shell, "x --hessian", cell)
    assert out.stdout == "ran\n"  # the replay that answered printed nothing
    assert changed.path == "eager" and any(DROPPED in note for note in changed.notes), changed.notes
    eager, _ = run(shell, "x --hessian --eager", cell)
    assert float(changed.value) == pytest.approx(float(eager.value), rel=1e-6)
    np.testing.assert_allclose(changed.hessian.numpy(), eager.hessian.numpy(), rtol=1e-5, atol=1e-7)
    tanh, _ = runs[2]
    assert not np.allclose(tanh.hessian.numpy(), eager.hessian.numpy(), atol=1e-4)  # the change mattered


def test_a_file_the_cell_reads_changed_between_runs_gives_the_new_hessian(shell, tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.array([1.0], np.float32))
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))\npath = {str(path)!r}")
    cell = "c = np.load(path)[0]\ny = c * tf.reduce_sum(x ** 3)"
    runs = three_runs(shell, "x --hessian", cell)
    assert any(REUSED in note and "under one tape" in note for note in runs[2][0].notes)  # a file read: checked by gradient too
    np.save(path, np.array([5.0], np.float32))
    again, _ = run(shell, "x --hessian", cell)
    x = shell.user_ns["x"].numpy()
    np.testing.assert_allclose(np.diag(again.hessian.numpy()), 5 * 6 * x, rtol=1e-5)
    assert float(shell.user_ns["c"]) == 5.0
    later, _ = run(shell, "x --hessian", cell)  # traced again, and right
    np.testing.assert_allclose(np.diag(later.hessian.numpy()), 5 * 6 * x, rtol=1e-5)


def test_tapemagic_watch_inside_a_reused_cell(shell):
    shell.run_cell(f"import tapemagic\nx = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "tapemagic.watch(x)\ny = tf.reduce_sum(x ** 4)"
    runs = three_runs(shell, "x --hessian", cell)
    third = runs[2][0]
    assert any(REUSED in note for note in third.notes), third.notes
    x = shell.user_ns["x"].numpy()
    np.testing.assert_allclose(np.diag(third.hessian.numpy()), 12 * x ** 2, rtol=1e-5)


def test_a_reused_function_still_sees_a_global_it_reads_change():
    engine = tapemagic._api.new_engine()
    x = tf.constant(np.linspace(0.5, 1.5, N), tf.float32)
    scale = {"a": 1.0}

    def f(t):
        return scale["a"] * tf.reduce_sum(t ** 3)

    paths = [tapemagic.tape(f, [x], hessian=True, engine=engine, display="none").path for _ in range(3)]
    assert paths == ["eager", "traced", "traced"]
    scale["a"] = 5.0
    r = tapemagic.tape(f, [x], hessian=True, engine=engine, display="none")
    np.testing.assert_allclose(np.diag(r.hessian.numpy()), 5 * 6 * x.numpy(), rtol=1e-5)


def test_a_recompiled_cell_is_the_same_cell_in_the_same_language():
    first = compile_cell("y = x.numpy()\n")
    assert compile_cell("y = x.numpy()\n") is first
    with _i18n.language("zh"):
        chinese = compile_cell("y = x.numpy()\n")
    assert chinese is not first and chinese.hints[0][1] != first.hints[0][1]
    import linecache

    linecache.cache.pop(first.filename, None)  # evicted: a traceback through it still shows the user's line
    assert compile_cell("y = x.numpy()\n") is first and linecache.getline(first.filename, 1) == "y = x.numpy()\n"
    with pytest.raises(SyntaxError):
        compile_cell("y = (\n")
    with pytest.raises(SyntaxError):
        compile_cell("y = (\n")


def test_a_change_only_the_gradient_shows_is_caught_too(shell):
    # A gradient-reversal layer whose strength is a Python attribute (as in domain-adversarial training): the
    # value is the same at any strength, the gradient is not, and the key holds a layer by identity.
    shell.run_cell("import keras\n"
                   "class Reverse(keras.layers.Layer):\n"
                   "    def __init__(self, lam=1.0, **kw):\n"
                   "        super().__init__(**kw)\n"
                   "        self.lam = lam\n"
                   "    def call(self, t):\n"
                   "        lam = self.lam\n"
                   "        @tf.custom_gradient\n"
                   "        def f(u):\n"
                   "            return tf.identity(u), lambda dy: -lam * dy\n"
                   "        return f(t)\n"
                   f"reverse = Reverse(1.0)\nx = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "y = tf.reduce_sum(reverse(x) ** 3)"
    runs = three_runs(shell, "x --hessian", cell)
    # A Keras layer is held without its Python attributes: the reuse run is made under a tape, for the gradient.
    assert any(REUSED in note and "under one tape" in note for note in runs[2][0].notes), runs[2][0].notes
    shell.run_cell("reverse.lam = 10.0")
    changed, _ = run(shell, "x --hessian", cell)
    x = shell.user_ns["x"].numpy()
    assert any(DROPPED in note and "differs" in note for note in changed.notes), changed.notes
    np.testing.assert_allclose(changed.gradients["x"].numpy(), -10.0 * 3 * x ** 2, rtol=1e-5)


def test_an_environment_variable_that_stops_the_gradient_is_seen(shell, monkeypatch):
    monkeypatch.setenv("TAPEMAGIC_TEST_STOP", "0")
    shell.run_cell(f"import os\nx = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "h = tf.reduce_sum(x ** 3)\ny = tf.stop_gradient(h) if os.environ['TAPEMAGIC_TEST_STOP'] == '1' else h"
    three_runs(shell, "x --hessian", cell)
    monkeypatch.setenv("TAPEMAGIC_TEST_STOP", "1")
    stopped, _ = run(shell, "x --hessian", cell)
    assert stopped.gradients["x"] is None and "stop_gradient" in stopped.target.reasons["x"], stopped.target.reasons
    assert any(DROPPED in note for note in stopped.notes), stopped.notes  # the trace's Hessian of h is not shown
    eager, _ = run(shell, "x --hessian --eager", cell)
    assert (stopped.hessian is None) == (eager.hessian is None)


def test_a_trace_that_fails_when_reused_falls_back_to_a_replay(shell, monkeypatch):
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))")
    cell = "print('ran')\ny = tf.reduce_sum(x ** 4)"
    three_runs(shell, "x --hessian", cell)

    def fail(self, reuse, sources):
        raise tf.errors.ResourceExhaustedError(None, None, "out of memory while running the trace")

    monkeypatch.setattr(TraceCache, "call", fail)
    r, out = run(shell, "x --hessian", cell)
    assert out.stdout == "ran\n" and r.path == "eager"
    assert any(DROPPED in note and "ResourceExhaustedError" in note for note in r.notes), r.notes
    x = shell.user_ns["x"].numpy()
    np.testing.assert_allclose(np.diag(r.hessian.numpy()), 12 * x ** 2, rtol=1e-5)


def test_the_mixed_dtype_note_stays_on_reuse(shell):
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))\n"
                   f"z = tf.Variable(tf.cast(tf.linspace(0.5, 1.5, {N}), tf.float64))")
    cell = "y = tf.reduce_sum(x ** 2) + tf.cast(tf.reduce_sum(z ** 3), tf.float32)"
    runs = three_runs(shell, "x z --hessian", cell)
    for r, _ in runs:
        assert any("the Hessian is in float64" in note for note in r.notes), (r.path, r.notes)


def test_an_order_request_beyond_the_unchecked_size_is_checked(monkeypatch):
    monkeypatch.delenv(guard.ENV, raising=False)
    monkeypatch.setattr(guard, "available_bytes", lambda: 10 << 20)
    guard.check_order(1000, 4, 3)  # 48 kB: not even read
    with pytest.raises(SpecError, match="-n 3"):
        guard.check_order(1_000_000, 4, 3)  # 48 MB: more than 32 MiB, so the machine's memory is read


@pytest.mark.parametrize("option", ["--hessian", "--jacobian"])
def test_a_small_hessian_or_jacobian_is_traced_on_its_second_run_without_xla(shell, option):
    # Eager tape.jacobian makes a new tf.function per call (65 to 95 ms, even for 2 elements); a cached trace answers
    # in 1 to 2 ms, so a Jacobian or Hessian of any size is traced when its cell runs again. Below 16 elements the
    # trace is not compiled by XLA, which cost more than it saved there.
    shell.run_cell("a = tf.Variable(3.0)\nb = tf.Variable([4.0, 0.5])")
    cell = f"f_{option[2:]} = tf.stack([a ** 2 * b[0], tf.sin(b[1]) * a])"  # code of its own: not seen before
    runs = three_runs(shell, f"a b {option}", cell)
    assert [r.path for r, _ in runs] == ["eager", "traced", "traced"]
    assert not any("XLA" in note for r, _ in runs for note in r.notes), [r.notes for r, _ in runs]
    kind = option[2:]

    def matrix(r) -> np.ndarray:  # a Jacobian is per source (a: (2,), b: (2, 2)): side by side, columns a, b0, b1
        found = getattr(r.targets[0], kind)
        return np.asarray(found) if kind == "hessian" else np.column_stack([np.asarray(found["a"]), np.asarray(found["b"])])

    for r, _ in runs[1:]:
        np.testing.assert_allclose(matrix(r), matrix(runs[0][0]), rtol=1e-6)
    a, b = 3.0, (4.0, 0.5)
    if kind == "hessian":  # of the sum, a^2 b0 + sin(b1) a, over (a, b0, b1)
        expected = [[2 * b[0], 2 * a, np.cos(b[1])], [2 * a, 0, 0], [np.cos(b[1]), 0, -np.sin(b[1]) * a]]
    else:
        expected = [[2 * a * b[0], a ** 2, 0], [np.sin(b[1]), 0, np.cos(b[1]) * a]]
    np.testing.assert_allclose(matrix(runs[2][0]), expected, rtol=1e-5, atol=1e-6)


def test_higher_orders_alone_over_few_elements_stay_eager(shell):
    # -n alone: nested eager tapes answer in a few ms below 16 elements, so no trace is made.
    shell.run_cell("a = tf.Variable(3.0)")
    runs = three_runs(shell, "a -n 3", "f = a ** 4")
    assert [r.path for r, _ in runs] == ["eager"] * 3
    assert [float(r.targets[0].derivatives[3]["a"]) for r, _ in runs] == [72.0] * 3


def test_a_trace_that_failed_is_not_tried_again_while_the_code_and_its_reads_are_the_same(shell, monkeypatch):
    # .numpy() inside the cell cannot be traced: run 2 tries and says why; later runs do not run the cell's code a
    # second time for a trace that would fail the same way, and say so. New code (or new reads) is tried again.
    tries = []
    original = TraceCache._call
    monkeypatch.setattr(TraceCache, "_call", lambda self, *a, **k: tries.append(1) or original(self, *a, **k))
    shell.run_cell(f"x = tf.Variable(tf.linspace(0.5, 1.5, {N}))\nscale = 2.0")
    cell = "s = float(tf.reduce_sum(x).numpy() > 0)\ny = tf.reduce_sum(tf.sin(x) * x) * s * scale"
    runs = [run(shell, "x --hessian", cell)[0] for _ in range(4)]
    assert [r.path for r in runs] == ["eager"] * 4 and len(tries) == 1
    assert any("tracing the cell failed" in note for note in runs[1].notes), runs[1].notes
    for r in runs[2:]:
        assert any("failed on an earlier run" in note and "not traced again" in note for note in r.notes), r.notes
        np.testing.assert_allclose(r.targets[0].hessian.numpy(), runs[0].targets[0].hessian.numpy(), rtol=1e-6)
    shell.run_cell("scale = 3.0")  # what the cell reads changed: the trace is tried again (and fails again)
    assert run(shell, "x --hessian", cell)[0].path == "eager" and len(tries) == 2


def test_a_function_whose_trace_fails_says_so_once():
    # Before, the function path and then the cell path each tried the trace: two notes, on every call.
    def f(x):
        return tf.reduce_sum(tf.sin(x) * x) * float(x.numpy().sum() > 0)

    x = tf.constant(np.linspace(0.1, 1.0, N), tf.float32)
    results = [tapemagic.tape(f, [x], hessian=True) for _ in range(3)]
    failures = [[note for note in r.notes if "tracing" in note and "failed" in note] for r in results]
    assert failures[0] == [] and len(failures[1]) == 1 and "tracing the function failed" in failures[1][0]
    assert len(failures[2]) == 1 and "failed on an earlier run" in failures[2][0], failures
