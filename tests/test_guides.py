"""Every gradient example of TensorFlow's two autodiff guides, "Introduction to gradients and
automatic differentiation" (tensorflow.org/guide/autodiff) and "Advanced automatic differentiation"
(tensorflow.org/guide/advanced_autodiff).

Each test first runs the guide's example as the guide writes it, in plain TensorFlow, and checks
the guide's numbers; then runs it through ``%%tape`` in a real shell with the spelling a new user
would try first, and checks the same numbers. Where the magic's answer may differ from the guide's
by design (it watches the sources it is given), the test says so.

The contract every ``%%tape`` cell is held to here:

1. it either raises IPython's ``UsageError`` before anything ran, or returns a result and leaves
   the user's state exactly as one plain run of the cell would (variables assigned once, layers'
   moving statistics updated once, names rebound once);
2. a ``None`` gradient has a reason, ``r.why(name)``, that names the real cause;
3. a dict or nested structure of targets is differentiated as ``tape.gradient`` does: summed.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import tensorflow as tf
from IPython.core.error import UsageError

from conftest import run, value


def close(actual, expected, tol: float = 1e-5) -> None:
    """Element-wise equality of tensors, arrays or numbers up to float32 rounding."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=tol, atol=tol)


def run_or_refuse(shell, line: str, cell: str, untouched) -> object | None:
    """Contract (1): a UsageError before anything ran (``untouched()`` holds), or a result."""
    try:
        r, _ = run(shell, line, cell)
    except UsageError as error:
        assert str(error), "a UsageError must say how to fix the line"
        assert untouched(), f"%%tape {line} raised UsageError after the cell had run"
        return None
    assert r is not None
    return r


# ---------------------------------------------------------------------------------------------
# Introduction to gradients and automatic differentiation
# ---------------------------------------------------------------------------------------------


def test_gradient_tapes_scalar(shell):
    # Guide: x = tf.Variable(3.0); y = x**2; dy/dx = 2x = 6.0.
    x = tf.Variable(3.0)
    with tf.GradientTape() as tape:
        y = x**2
    assert tape.gradient(y, x).numpy() == 6.0

    shell.run_cell("x = tf.Variable(3.0)")
    r, _ = run(shell, "x", "y = x**2")
    assert value(r.value) == 9.0
    assert value(r.gradients["x"]) == 6.0
    # Naming nothing differentiates with respect to the trainable variables the cell read.
    r, _ = run(shell, "", "y = x**2")
    assert list(r.gradients) == ["x"] and value(r.gradients["x"]) == 6.0
    assert value(shell.user_ns["y"]) == 9.0


SETUP_W_B = (
    "tf.random.set_seed(1)\n"
    "w = tf.Variable(tf.random.normal((3, 2)), name='w')\n"
    "b = tf.Variable(tf.zeros(2, dtype=tf.float32), name='b')\n"
    "x = [[1., 2., 3.]]"
)
CELL_W_B = "y = x @ w + b\nloss = tf.reduce_mean(y**2)"


def _plain_w_b(shell):
    w, b, x = (shell.user_ns[name] for name in ("w", "b", "x"))
    with tf.GradientTape(persistent=True) as tape:
        y = x @ w + b
        loss = tf.reduce_mean(y**2)
    return tape, loss, w, b


def test_gradient_tapes_any_tensor_list_of_sources(shell):
    # Guide: y = x @ w + b, loss = mean(y**2); the gradient has each source's shape: (3, 2) and (2,).
    shell.run_cell(SETUP_W_B)
    tape, loss, w, b = _plain_w_b(shell)
    dl_dw, dl_db = tape.gradient(loss, [w, b])
    assert dl_dw.shape == w.shape == (3, 2) and dl_db.shape == (2,)
    # Analytically: dl/db = y (mean over 2 outputs of y**2), dl/dw = x^T y.
    y = np.array([[1., 2., 3.]]) @ w.numpy()
    close(dl_db, y[0])
    close(dl_dw, np.array([[1.], [2.], [3.]]) @ y)

    r, _ = run(shell, "w b", CELL_W_B)
    close(r.value, loss)
    assert list(r.gradients) == ["w", "b"]
    close(r.gradients["w"], dl_dw)
    close(r.gradients["b"], dl_db)


def test_gradient_tapes_dict_of_sources(shell):
    # Guide: tape.gradient(loss, {'w': w, 'b': b}) returns a dict with the same keys.
    shell.run_cell(SETUP_W_B)
    tape, loss, w, b = _plain_w_b(shell)
    grad = tape.gradient(loss, {"w": w, "b": b})
    assert set(grad) == {"w", "b"} and grad["b"].shape == (2,)

    shell.run_cell("my_vars = {'w': w, 'b': b}")
    r, _ = run(shell, "my_vars", CELL_W_B)
    assert set(r.gradients) == {"my_vars['w']", "my_vars['b']"}
    close(r.gradients["my_vars['w']"], grad["w"])
    close(r.gradients["my_vars['b']"], grad["b"])


MODEL_SETUP = (
    "tf.keras.utils.set_random_seed(2)\n"
    "layer = tf.keras.layers.Dense(2, activation='relu')\n"
    "x = tf.constant([[1., 2., 3.]])"
)
MODEL_CELL = "y = layer(x)\nloss = tf.reduce_mean(y**2)"


def _plain_model_gradients(layer, x):
    with tf.GradientTape() as tape:
        y = layer(x)
        loss = tf.reduce_mean(y**2)
    return loss, tape.gradient(loss, layer.trainable_variables)


def test_gradients_with_respect_to_a_model_named_variables(shell):
    # Guide: grad = tape.gradient(loss, layer.trainable_variables): kernel (3, 2), bias (2,).
    shell.run_cell(MODEL_SETUP + "\n_ = layer(x)")  # built, so its variables can be named
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    loss, grad = _plain_model_gradients(layer, x)
    assert [g.shape for g in grad] == [(3, 2), (2,)]

    r, _ = run(shell, "layer.trainable_variables", MODEL_CELL)
    assert list(r.gradients) == ["layer.trainable_variables[0]", "layer.trainable_variables[1]"]
    close(r.value, loss)
    close(r.gradients["layer.trainable_variables[0]"], grad[0])
    close(r.gradients["layer.trainable_variables[1]"], grad[1])
    # One Keras 3 variable (a keras.Variable, not a tf.Variable) named by its dotted path.
    r, _ = run(shell, "layer.kernel", MODEL_CELL)
    close(r.gradients["layer.kernel"], grad[0])


def test_gradients_with_respect_to_a_model_by_default(shell):
    # The guide's cell makes the layer and calls it under the tape; with no sources named the
    # magic differentiates with respect to the trainable variables the cell read.
    shell.run_cell(MODEL_SETUP)
    r, _ = run(shell, "", MODEL_CELL)
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    assert layer.built and len(layer.trainable_variables) == 2
    loss, grad = _plain_model_gradients(layer, x)
    close(r.value, loss)
    assert len(r.gradients) == 2
    by_shape = {tuple(g.shape): g for g in r.gradients.values()}
    close(by_shape[(3, 2)], grad[0])
    close(by_shape[(2,)], grad[1])


def test_model_variables_named_before_the_layer_is_built(shell):
    # A new user names layer.trainable_variables before the layer has any: either a UsageError
    # before the cell ran (the layer is still unbuilt), or the gradients of the variables it made.
    shell.run_cell(MODEL_SETUP)
    layer = shell.user_ns["layer"]
    r = run_or_refuse(shell, "layer.trainable_variables", MODEL_CELL,
                      untouched=lambda: not layer.built and "loss" not in shell.user_ns)
    if r is not None:
        loss, grad = _plain_model_gradients(layer, shell.user_ns["x"])
        assert [tuple(g.shape) for g in r.gradients.values()] == [(3, 2), (2,)]
        close(list(r.gradients.values())[0], grad[0])


WATCH_SETUP = (
    "x0 = tf.Variable(3.0, name='x0')\n"
    "x1 = tf.Variable(3.0, name='x1', trainable=False)\n"
    "x2 = tf.Variable(2.0, name='x2') + 1.0\n"
    "x3 = tf.constant(3.0, name='x3')"
)
WATCH_CELL = "y = (x0**2) + (x1**2) + (x2**2)"


def test_controlling_what_the_tape_watches_defaults(shell):
    # Guide: only the trainable variable is watched: [6.0, None, None, None]; watched: ['x0:0'].
    x0 = tf.Variable(3.0, name="x0")
    x1 = tf.Variable(3.0, name="x1", trainable=False)
    x2 = tf.Variable(2.0, name="x2") + 1.0
    x3 = tf.constant(3.0, name="x3")
    with tf.GradientTape() as tape:
        y = (x0**2) + (x1**2) + (x2**2)
    grad = tape.gradient(y, [x0, x1, x2, x3])
    assert grad[0].numpy() == 6.0 and grad[1:] == [None, None, None]
    assert [var.name for var in tape.watched_variables()] == ["x0:0"]

    shell.run_cell(WATCH_SETUP)
    # Naming no source: what the tape watches by itself, the one trainable variable.
    r, _ = run(shell, "", WATCH_CELL)
    assert value(r.value) == 27.0
    assert list(r.gradients) == ["x0"] and value(r.gradients["x0"]) == 6.0
    assert [w.name for w in r.watched] == ["x0"]


def test_controlling_what_the_tape_watches_named_sources(shell):
    # By design the magic watches every source it is named (tape.watch), so the non-trainable
    # variable and the tensor get their gradients 2 * 3 = 6; x3 is unused and stays None.
    shell.run_cell(WATCH_SETUP)
    r, _ = run(shell, "x0 x1 x2 x3", WATCH_CELL)
    assert [value(r.gradients[n]) for n in ("x0", "x1", "x2")] == [6.0, 6.0, 6.0]
    assert r.gradients["x3"] is None
    assert re.search(r"not (used|depend)", r.why("x3")), r.why("x3")


def test_watch_a_constant(shell):
    # Guide: x = tf.constant(3.0); tape.watch(x); y = x**2 -> 6.0.
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x**2
    assert tape.gradient(y, x).numpy() == 6.0

    shell.run_cell("x = tf.constant(3.0)")
    r, _ = run(shell, "x", "y = x**2")
    assert value(r.gradients["x"]) == 6.0
    # Watching it in the cell, as the guide does, with the magic's own watching off.
    r, _ = run(shell, "x --no-auto-watch --no-watch", "import tapemagic\ntapemagic.watch(x)\ny = x**2")
    assert value(r.gradients["x"]) == 6.0


NO_AUTO_CELL = "y0 = tf.math.sin(x0)\ny1 = tf.nn.softplus(x1)\ny = y0 + y1\nys = tf.reduce_sum(y)"


def test_watch_accessed_variables_false(shell):
    # Guide: only x1 is watched: dy/dx0 None, dy/dx1 = sigmoid(10) = 0.9999546.
    x0 = tf.Variable(0.0)
    x1 = tf.Variable(10.0)
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(x1)
        y0 = tf.math.sin(x0)
        y1 = tf.nn.softplus(x1)
        y = y0 + y1
        ys = tf.reduce_sum(y)
    grad = tape.gradient(ys, {"x0": x0, "x1": x1})
    assert grad["x0"] is None
    close(grad["x1"], 0.9999546)

    shell.run_cell("x0 = tf.Variable(0.0)\nx1 = tf.Variable(10.0)")
    r, _ = run(shell, "x1 --no-auto-watch", NO_AUTO_CELL)
    close(r.value, 0.0 + np.log1p(np.exp(10.0)))
    close(r.gradients["x1"], 0.9999546)
    # The guide's exact setup: no automatic watching, x1 watched in the cell, x0 left alone.
    r, _ = run(shell, "x0 x1 --no-auto-watch --no-watch", "import tapemagic\ntapemagic.watch(x1)\n" + NO_AUTO_CELL)
    close(r.gradients["x1"], 0.9999546)
    assert r.gradients["x0"] is None
    assert "watch" in r.why("x0")


def test_intermediate_results(shell):
    # Guide: y = x * x, z = y * y at x = 3: dz/dy = 2y = 18.
    x = tf.constant(3.0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    assert tape.gradient(z, y).numpy() == 18.0

    # With y from an earlier cell, it is a source like any other.
    shell.run_cell("x = tf.constant(3.0)\ny = x * x")
    r, _ = run(shell, "y", "z = y * y")
    assert value(r.value) == 81.0 and value(r.gradients["y"]) == 18.0
    # With the persistent tape kept, the guide's own call works on the cell's tensors.
    r, _ = run(shell, "x -p", "y = x * x\nz = y * y")
    assert value(r.gradients["x"]) == 108.0  # 4 x**3
    assert r.tape.gradient(shell.user_ns["z"], shell.user_ns["y"]).numpy() == 18.0


def test_intermediate_named_as_source_before_it_exists(shell):
    # A new user names the intermediate y, which the cell only creates: a UsageError before
    # anything ran, or the gradient with respect to the intermediate, 18.
    shell.run_cell("x = tf.constant(3.0)")
    r = run_or_refuse(shell, "y", "y = x * x\nz = y * y", untouched=lambda: "z" not in shell.user_ns)
    if r is not None:
        assert value(r.gradients["y"]) == 18.0


def test_persistent_tape_two_gradients(shell):
    # Guide: x = [1, 3]: dz/dx = 4x**3 = [4, 108], dy/dx = 2x = [2, 6].
    x = tf.constant([1, 3.0])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = x * x
        z = y * y
    assert tape.gradient(z, x).numpy().tolist() == [4.0, 108.0]
    assert tape.gradient(y, x).numpy().tolist() == [2.0, 6.0]
    del tape

    shell.run_cell("x = tf.constant([1, 3.0])")
    r, _ = run(shell, "x -t z -t y", "y = x * x\nz = y * y")
    assert value(r.gradient("x", of="z")) == [4.0, 108.0]
    assert value(r.gradient("x", of="y")) == [2.0, 6.0]
    assert value(r.values["z"]) == [1.0, 81.0]


def test_non_scalar_targets_each_separately(shell):
    # Guide: x = 2: d(x**2)/dx = 4.0, d(1/x)/dx = -0.25.
    x = tf.Variable(2.0)
    with tf.GradientTape(persistent=True) as tape:
        y0 = x**2
        y1 = 1 / x
    assert tape.gradient(y0, x).numpy() == 4.0
    assert tape.gradient(y1, x).numpy() == -0.25

    shell.run_cell("x = tf.Variable(2.0)")
    r, _ = run(shell, "x -t y0 -t y1", "y0 = x**2\ny1 = 1 / x")
    assert value(r.gradient("x", of="y0")) == 4.0
    assert value(r.gradient("x", of="y1")) == -0.25


def test_non_scalar_targets_dict_is_summed(shell):
    # Guide: tape.gradient({'y0': y0, 'y1': y1}, x) = 4 - 0.25 = 3.75.
    x = tf.Variable(2.0)
    with tf.GradientTape() as tape:
        y0 = x**2
        y1 = 1 / x
    assert tape.gradient({"y0": y0, "y1": y1}, x).numpy() == 3.75

    shell.run_cell("x = tf.Variable(2.0)")
    # A cell that ends in the dict, as the guide passes it.
    r, _ = run(shell, "x", "y0 = x**2\ny1 = 1 / x\n{'y0': y0, 'y1': y1}")
    assert r.gradients["x"] is not None, r.why("x")
    assert value(r.gradients["x"]) == 3.75


def test_non_scalar_targets_dict_named_with_t(shell):
    shell.run_cell("x = tf.Variable(2.0)")
    r, _ = run(shell, "x -t ys", "ys = {'y0': x**2, 'y1': 1 / x}")
    assert r.gradients["x"] is not None, r.why("x")
    assert value(r.gradients["x"]) == 3.75
    # A nested structure is flattened and summed too: 4 - 0.25 + 3 * 4 = 15.75.
    r, _ = run(shell, "x -t ys", "ys = {'a': [x**2, 1 / x], 'b': (x**2 * 3,)}")
    assert r.gradients["x"] is not None, r.why("x")
    assert value(r.gradients["x"]) == 15.75


def test_non_scalar_target_tensor_is_summed(shell):
    # Guide: y = x * [3., 4.]: the gradient of the sum, 7.0.
    x = tf.Variable(2.)
    with tf.GradientTape() as tape:
        y = x * [3., 4.]
    assert tape.gradient(y, x).numpy() == 7.0

    shell.run_cell("x = tf.Variable(2.)")
    r, _ = run(shell, "x", "y = x * [3., 4.]")
    assert value(r.value) == [6.0, 8.0]
    assert value(r.gradients["x"]) == 7.0


def test_element_wise_gradient_of_sigmoid(shell):
    # Guide: x = linspace(-10, 10, 201); dy/dx of sigmoid is sigmoid(x)(1 - sigmoid(x)), 0.25 at 0.
    x = tf.linspace(-10.0, 10.0, 200 + 1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.nn.sigmoid(x)
    dy_dx = tape.gradient(y, x)
    s = tf.nn.sigmoid(x).numpy()
    close(dy_dx, s * (1 - s))
    close(dy_dx[100], 0.25)

    shell.run_cell("x = tf.linspace(-10.0, 10.0, 200+1)")
    r, _ = run(shell, "x", "y = tf.nn.sigmoid(x)")
    assert r.gradients["x"].shape == (201,)
    close(r.gradients["x"], dy_dx)
    close(r.value, s)


CONTROL_SETUP = "x = tf.constant(1.0)\nv0 = tf.Variable(2.0)\nv1 = tf.Variable(2.0)"
CONTROL_CELL = "if x > 0.0:\n    result = v0\nelse:\n    result = v1**2"


def test_control_flow(shell):
    # Guide: the taken branch uses v0: dv0 = 1.0, dv1 = None; dx is always None.
    x = tf.constant(1.0)
    v0 = tf.Variable(2.0)
    v1 = tf.Variable(2.0)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        if x > 0.0:
            result = v0
        else:
            result = v1**2
    dv0, dv1 = tape.gradient(result, [v0, v1])
    assert dv0.numpy() == 1.0 and dv1 is None
    assert tape.gradient(result, x) is None

    shell.run_cell(CONTROL_SETUP)
    r, _ = run(shell, "v0 v1 x -t result", CONTROL_CELL)
    assert value(r.value) == 2.0
    assert value(r.gradients["v0"]) == 1.0
    assert r.gradients["v1"] is None and r.gradients["x"] is None
    # x only decided which branch ran: the reason must say so, not that x went unused.
    assert re.search(r"branch|condition|control flow", r.why("x"), re.I), r.why("x")
    assert re.search(r"branch|not used|not depend", r.why("v1")), r.why("v1")


def test_control_flow_without_naming_the_target(shell):
    # The cell ends in an if statement: a UsageError before it ran, or the target it assigns.
    shell.run_cell(CONTROL_SETUP)
    r = run_or_refuse(shell, "v0 v1 x", CONTROL_CELL, untouched=lambda: "result" not in shell.user_ns)
    if r is not None:
        assert value(r.gradients["v0"]) == 1.0


def test_none_when_target_not_connected(shell):
    # Guide: z = y * y says nothing of x: gradient None.
    x = tf.Variable(2.)
    y = tf.Variable(3.)
    with tf.GradientTape() as tape:
        z = y * y
    assert tape.gradient(z, x) is None

    shell.run_cell("x = tf.Variable(2.)\ny = tf.Variable(3.)")
    r, _ = run(shell, "x y", "z = y * y")
    assert r.gradients["x"] is None and value(r.gradients["y"]) == 6.0
    assert re.search(r"not (used|depend)", r.why("x")), r.why("x")


def test_none_replaced_a_variable_with_a_tensor(shell):
    # Guide: the second epoch's x is a tensor, so its gradient is None.
    x = tf.Variable(2.0)
    seen = []
    for epoch in range(2):
        with tf.GradientTape() as tape:
            y = x + 1
        grad = tape.gradient(y, x)
        seen.append((type(x).__name__, None if grad is None else grad.numpy()))
        x = x + 1  # the guide's mistake: this should be x.assign_add(1)
    assert seen == [("ResourceVariable", 1.0), ("EagerTensor", None)]

    # The same loop in one %%tape cell: one tape spans both epochs, so the final y = x + 2 is
    # connected to the x the cell started with; the rebinding must be pointed out.
    shell.run_cell("x = tf.Variable(2.0)")
    r, _ = run(shell, "x -t y", "for epoch in range(2):\n    y = x + 1\n    x = x + 1\n")
    assert value(r.value) == 4.0 and value(r.gradients["x"]) == 1.0
    after = shell.user_ns["x"]
    assert not isinstance(after, tf.Variable) and value(after) == 4.0  # as one plain run leaves it
    notes = "\n".join(r.notes)
    assert re.search(r"rebind|rebound|replac", notes), notes
    assert "assign" in notes


def test_replaced_variable_fixed_with_assign_add(shell):
    # The guide's fix, x.assign_add(1): each epoch's y is connected; the cell runs once, x ends at 4.
    shell.run_cell("x = tf.Variable(2.0)")
    r, _ = run(shell, "x -t y", "for epoch in range(2):\n    y = x + 1\n    x.assign_add(1)\n")
    assert value(r.value) == 4.0 and value(r.gradients["x"]) == 1.0
    assert isinstance(shell.user_ns["x"], tf.Variable) and value(shell.user_ns["x"]) == 4.0


OUTSIDE_CELL = "x2 = x**2\ny = np.mean(x2, axis=0)\ny = tf.reduce_mean(y, axis=0)"


def test_none_calculations_outside_tensorflow(shell):
    # Guide: np.mean leaves TensorFlow: gradient None (the value is still mean(1, 4, 9, 16) = 7.5).
    x = tf.Variable([[1.0, 2.0], [3.0, 4.0]], dtype=tf.float32)
    with tf.GradientTape() as tape:
        x2 = x**2
        y = np.mean(x2, axis=0)
        y = tf.reduce_mean(y, axis=0)
    assert tape.gradient(y, x) is None and y.numpy() == 7.5

    shell.run_cell("x = tf.Variable([[1.0, 2.0], [3.0, 4.0]], dtype=tf.float32)")
    r, _ = run(shell, "x", OUTSIDE_CELL)
    assert value(r.value) == 7.5
    assert r.gradients["x"] is None
    assert re.search(r"np\.mean|NumPy", r.why("x")), r.why("x")


def test_none_gradient_through_an_integer(shell):
    # Guide: x = tf.constant(10) is int32: no gradient (TensorFlow only warns on the watch).
    x = tf.constant(10)
    with tf.GradientTape() as g:
        g.watch(x)
        y = x * x
    assert g.gradient(y, x) is None

    shell.run_cell("x = tf.constant(10)")
    r, _ = run(shell, "x", "y = x * x")
    assert value(r.value) == 100
    assert r.gradients["x"] is None
    assert "int" in r.why("x"), r.why("x")


STATEFUL_SETUP = "x0 = tf.Variable(3.0)\nx1 = tf.Variable(0.0)"
STATEFUL_CELL = "x1.assign_add(x0)\ny = x1**2"


def test_none_gradient_through_a_stateful_object(shell):
    # Guide: x1.assign_add(x0) cuts the path to x0: gradient None, though y = (x1 + x0)**2 = 9.
    x0 = tf.Variable(3.0)
    x1 = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        x1.assign_add(x0)
        y = x1**2
    assert tape.gradient(y, x0) is None and y.numpy() == 9.0

    shell.run_cell(STATEFUL_SETUP)
    r, _ = run(shell, "x0 x1", STATEFUL_CELL)
    assert value(r.value) == 9.0
    assert r.gradients["x0"] is None and value(r.gradients["x1"]) == 6.0
    assert "assign" in r.why("x0"), r.why("x0")
    assert value(shell.user_ns["x1"]) == 3.0


@pytest.mark.parametrize("line", ["x0", "x0 -n 2", "x0 x1 --jacobian", "x0 x1 --hessian", "x0 x1 -n 3 -p"])
def test_stateful_cell_runs_once(shell, line):
    # Contract (1): whatever the options, the variable is assigned once, as one plain run does.
    shell.run_cell(STATEFUL_SETUP)
    r, _ = run(shell, line, STATEFUL_CELL)
    assert value(r.value) == 9.0
    assert value(shell.user_ns["x1"]) == 3.0, f"%%tape {line} ran the assign_add more than once"
    assert value(shell.user_ns["x0"]) == 3.0


def test_no_gradient_registered(shell):
    # Guide: tf.image.adjust_contrast (AdjustContrastv2) has no gradient: LookupError.
    image = tf.Variable([[[0.5, 0.0, 0.0]]])
    delta = tf.Variable(0.1)
    with tf.GradientTape() as tape:
        new_image = tf.image.adjust_contrast(image, delta)
    with pytest.raises(LookupError):
        tape.gradient(new_image, [image, delta])

    shell.run_cell("image = tf.Variable([[[0.5, 0.0, 0.0]]])\ndelta = tf.Variable(0.1)")
    r, _ = run(shell, "image delta", "new_image = tf.image.adjust_contrast(image, delta)")
    close(r.value, new_image)
    assert r.gradients["image"] is None and r.gradients["delta"] is None
    assert "AdjustContrast" in r.why("delta") and "gradient" in r.why("delta")


def test_zeros_instead_of_none(shell):
    # Guide: unconnected_gradients=ZERO gives [0., 0.] for the unused x.
    x = tf.Variable([2., 2.])
    y = tf.Variable(3.)
    with tf.GradientTape() as tape:
        z = y**2
    assert tape.gradient(z, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy().tolist() == [0.0, 0.0]

    shell.run_cell("x = tf.Variable([2., 2.])\ny = tf.Variable(3.)")
    r, _ = run(shell, "x y", "z = y**2")
    assert r.gradients["x"] is None and value(r.gradients["y"]) == 6.0
    assert re.search(r"not (used|depend)", r.why("x")), r.why("x")
    # The Hessian over (x, y) is all second partials: zeros where x is not connected, 2 at (y, y).
    r, _ = run(shell, "x y --hessian", "z = y**2")
    assert value(r.hessian) == [[0, 0, 0], [0, 0, 0], [0, 0, 2]]


# ---------------------------------------------------------------------------------------------
# Advanced automatic differentiation
# ---------------------------------------------------------------------------------------------


XY_SETUP = "x = tf.Variable(2.0)\ny = tf.Variable(3.0)"


def test_stop_recording(shell):
    # Guide: y * y under t.stop_recording(): dz/dx = 2x = 4, dz/dy = None.
    x = tf.Variable(2.0)
    y = tf.Variable(3.0)
    with tf.GradientTape() as t:
        x_sq = x * x
        with t.stop_recording():
            y_sq = y * y
        z = x_sq + y_sq
    grad = t.gradient(z, {"x": x, "y": y})
    assert grad["x"].numpy() == 4.0 and grad["y"] is None

    # The guide's block pasted into the cell: stop_recording pauses the cell's own tape t only
    # (TensorFlow pops that one tape), so t answers as in the guide while the magic's tapes,
    # which were never paused, saw y * y.
    shell.run_cell(XY_SETUP)
    cell = ("with tf.GradientTape() as t:\n    x_sq = x * x\n    with t.stop_recording():\n"
            "        y_sq = y * y\n    z = x_sq + y_sq\n\ngrad = t.gradient(z, {'x': x, 'y': y})\n")
    r, _ = run(shell, "x y -t z", cell)
    user_grad = shell.user_ns["grad"]
    assert user_grad["x"].numpy() == 4.0 and user_grad["y"] is None
    assert value(r.value) == 13.0
    assert value(r.gradients["x"]) == 4.0 and value(r.gradients["y"]) == 6.0


def test_reset(shell):
    # Guide: t.reset() throws away y * y: dz/dx = 4, dz/dy = None.
    x = tf.Variable(2.0)
    y = tf.Variable(3.0)
    reset = True
    with tf.GradientTape() as t:
        y_sq = y * y
        if reset:
            t.reset()
        z = x * x + y_sq
    grad = t.gradient(z, {"x": x, "y": y})
    assert grad["x"].numpy() == 4.0 and grad["y"] is None

    # Pasted into %%tape, the cell's reset clears the cell's tape only: the user's grad dict is
    # the guide's, and the magic's own tapes saw y * y (dz/dy = 6).
    shell.run_cell(XY_SETUP + "\nreset = True")
    cell = ("with tf.GradientTape() as t:\n    y_sq = y * y\n    if reset:\n        t.reset()\n"
            "    z = x * x + y_sq\n\ngrad = t.gradient(z, {'x': x, 'y': y})\n")
    r, _ = run(shell, "x y -t z", cell)
    user_grad = shell.user_ns["grad"]
    assert user_grad["x"].numpy() == 4.0 and user_grad["y"] is None
    assert value(r.value) == 13.0
    assert value(r.gradients["x"]) == 4.0 and value(r.gradients["y"]) == 6.0


def test_stop_gradient(shell):
    # Guide: z = x**2 + stop_gradient(y**2): dz/dx = 4, dz/dy = None.
    x = tf.Variable(2.0)
    y = tf.Variable(3.0)
    with tf.GradientTape() as t:
        y_sq = y**2
        z = x**2 + tf.stop_gradient(y_sq)
    grad = t.gradient(z, {"x": x, "y": y})
    assert grad["x"].numpy() == 4.0 and grad["y"] is None

    shell.run_cell(XY_SETUP)
    r, _ = run(shell, "x y", "y_sq = y**2\nz = x**2 + tf.stop_gradient(y_sq)")
    assert value(r.value) == 13.0
    assert value(r.gradients["x"]) == 4.0
    assert r.gradients["y"] is None
    assert "stop_gradient" in r.why("y"), r.why("y")


CLIP_DEF = (
    "@tf.custom_gradient\n"
    "def clip_gradients(y):\n"
    "    def backward(dy):\n"
    "        return tf.clip_by_norm(dy, 0.5)\n"
    "    return y, backward\n"
)


def _clip_gradients():
    @tf.custom_gradient
    def clip_gradients(y):
        def backward(dy):
            return tf.clip_by_norm(dy, 0.5)
        return y, backward
    return clip_gradients


def test_custom_gradient(shell):
    # Guide: the backward pass clips dy to norm 0.5, so d(v*v)/dv = 2v * 0.5 = 2.0 instead of 4.
    clip_gradients = _clip_gradients()
    v = tf.Variable(2.0)
    with tf.GradientTape() as t:
        output = clip_gradients(v * v)
    assert t.gradient(output, v).numpy() == 2.0

    shell.run_cell(CLIP_DEF + "v = tf.Variable(2.0)")
    r, _ = run(shell, "v", "output = clip_gradients(v * v)")
    assert value(r.value) == 4.0
    assert value(r.gradients["v"]) == 2.0


def test_custom_gradient_in_saved_model(shell, tmp_path):
    # Guide: saved with experimental_custom_gradients=True, the loaded function still clips: 2.0.
    clip_gradients = _clip_gradients()

    class MyModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(None)])
        def call_custom_grad(self, x):
            return clip_gradients(x)

    path = str(tmp_path / "saved_model")
    tf.saved_model.save(MyModule(), path, options=tf.saved_model.SaveOptions(experimental_custom_gradients=True))
    v = tf.Variable(2.0)
    loaded = tf.saved_model.load(path)
    with tf.GradientTape() as t:
        output = loaded.call_custom_grad(v * v)
    assert t.gradient(output, v).numpy() == 2.0

    shell.user_ns["loaded"] = loaded
    shell.run_cell("v = tf.Variable(2.0)")
    r, _ = run(shell, "v", "output = loaded.call_custom_grad(v * v)")
    assert value(r.value) == 4.0
    assert value(r.gradients["v"]) == 2.0


MULTI_CELL = "y0 = tf.math.sin(x0)\ny1 = tf.nn.sigmoid(x1)\ny = y0 + y1\nys = tf.reduce_sum(y)"


def test_multiple_tapes(shell):
    # Guide: tape0 watches x0, tape1 watches x1: cos(0) = 1.0, sigmoid'(0) = 0.25.
    x0 = tf.constant(0.0)
    x1 = tf.constant(0.0)
    with tf.GradientTape() as tape0, tf.GradientTape() as tape1:
        tape0.watch(x0)
        tape1.watch(x1)
        y0 = tf.math.sin(x0)
        y1 = tf.nn.sigmoid(x1)
        y = y0 + y1
        ys = tf.reduce_sum(y)
    assert tape0.gradient(ys, x0).numpy() == 1.0
    assert tape1.gradient(ys, x1).numpy() == 0.25

    shell.run_cell("x0 = tf.constant(0.0)\nx1 = tf.constant(0.0)")
    r, _ = run(shell, "x0 x1", MULTI_CELL)
    assert value(r.value) == 0.5
    assert value(r.gradients["x0"]) == 1.0
    assert value(r.gradients["x1"]) == 0.25


def test_higher_order_gradients(shell):
    # Guide: y = x**3 at x = 1: dy/dx = 3.0, d2y/dx2 = 6.0.
    x = tf.Variable(1.0)
    with tf.GradientTape() as t2:
        with tf.GradientTape() as t1:
            y = x * x * x
        dy_dx = t1.gradient(y, x)
    d2y_dx2 = t2.gradient(dy_dx, x)
    assert dy_dx.numpy() == 3.0 and d2y_dx2.numpy() == 6.0

    shell.run_cell("x = tf.Variable(1.0)")
    r, _ = run(shell, "x -n 2", "y = x * x * x")
    assert value(r.derivatives[1]["x"]) == 3.0
    assert value(r.derivatives[2]["x"]) == 6.0
    r, _ = run(shell, "x -n 3", "y = x * x * x")
    assert [value(r.derivatives[k]["x"]) for k in (1, 2, 3)] == [3.0, 6.0, 6.0]


REG_SETUP = (
    "tf.keras.utils.set_random_seed(3)\n"
    "x = tf.random.normal([7, 5])\n"
    "layer = tf.keras.layers.Dense(10, activation=tf.nn.relu)\n"
)
REG_CELL = (
    "with tf.GradientTape(watch_accessed_variables=False) as t1:\n"
    "    t1.watch(x)\n"
    "    y = layer(x)\n"
    "    out = tf.reduce_sum(layer(x)**2)\n"
    "g1 = t1.gradient(out, x)\n"
    "g1_mag = tf.norm(g1)\n"
)


def _plain_regularization(layer, x):
    with tf.GradientTape() as t2:
        with tf.GradientTape(watch_accessed_variables=False) as t1:
            t1.watch(x)
            out = tf.reduce_sum(layer(x)**2)
        g1 = t1.gradient(out, x)
        g1_mag = tf.norm(g1)
    return g1_mag, t2.gradient(g1_mag, layer.trainable_variables)


def test_input_gradient_regularization(shell):
    # Guide: the outer tape differentiates the input gradient's norm: shapes (5, 10) and (10,).
    shell.run_cell(REG_SETUP + "_ = layer(x)")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    g1_mag, dg1_mag = _plain_regularization(layer, x)
    assert [var.shape for var in dg1_mag] == [(5, 10), (10,)]

    # The inner tape stays in the cell; %%tape is the outer tape, its target the last assignment.
    r, _ = run(shell, "layer.trainable_variables", REG_CELL)
    close(r.value, g1_mag, 1e-4)
    close(r.gradients["layer.trainable_variables[0]"], dg1_mag[0], 1e-4)
    close(r.gradients["layer.trainable_variables[1]"], dg1_mag[1], 1e-4)


def test_input_gradient_regularization_by_default(shell):
    # The guide's unbuilt layer, no source named: the trainable variables the cell read.
    shell.run_cell(REG_SETUP)
    r, _ = run(shell, "", REG_CELL)
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    g1_mag, dg1_mag = _plain_regularization(layer, x)
    close(r.value, g1_mag, 1e-4)
    by_shape = {tuple(g.shape): g for g in r.gradients.values()}
    assert set(by_shape) == {(5, 10), (10,)}
    close(by_shape[(5, 10)], dg1_mag[0], 1e-4)
    close(by_shape[(10,)], dg1_mag[1], 1e-4)


def test_jacobian_scalar_source(shell):
    # Guide: y = sigmoid(x + delta), delta = 0: the Jacobian has the target's shape (201,).
    x = tf.linspace(-10.0, 10.0, 200 + 1)
    delta = tf.Variable(0.0)
    with tf.GradientTape() as tape:
        y = tf.nn.sigmoid(x + delta)
    dy_dx = tape.jacobian(y, delta)
    assert y.shape == dy_dx.shape == (201,)
    s = tf.nn.sigmoid(x).numpy()
    close(dy_dx, s * (1 - s))

    shell.run_cell("x = tf.linspace(-10.0, 10.0, 200+1)\ndelta = tf.Variable(0.0)")
    r, _ = run(shell, "delta --jacobian", "y = tf.nn.sigmoid(x+delta)")
    assert r.jacobian["delta"].shape == (201,)
    close(r.jacobian["delta"], dy_dx)
    close(r.jacobian["delta"][100], 0.25)
    close(r.gradients["delta"], tf.reduce_sum(dy_dx), 1e-4)


def test_jacobian_tensor_source(shell):
    # Guide: y = layer(x) is (7, 10), the kernel (5, 10): the Jacobian is (7, 10, 5, 10), and its
    # sum over the target's axes is the gradient.
    shell.run_cell("tf.keras.utils.set_random_seed(4)\nx = tf.random.normal([7, 5])\n"
                   "layer = tf.keras.layers.Dense(10, activation=tf.nn.relu)\n_ = layer(x)")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape(persistent=True) as tape:
        y = layer(x)
    assert y.shape == (7, 10) and layer.kernel.shape == (5, 10)
    j = tape.jacobian(y, layer.kernel)
    assert j.shape == (7, 10, 5, 10)
    g = tape.gradient(y, layer.kernel)
    assert tf.reduce_max(abs(g - tf.reduce_sum(j, axis=[0, 1]))).numpy() < 1e-3

    r, _ = run(shell, "layer.kernel --jacobian", "y = layer(x)")
    assert r.jacobian["layer.kernel"].shape == (7, 10, 5, 10)
    close(r.jacobian["layer.kernel"], j, 1e-4)
    close(r.gradients["layer.kernel"], g, 1e-4)
    close(tf.reduce_sum(r.jacobian["layer.kernel"], axis=[0, 1]), r.gradients["layer.kernel"], 1e-3)


HESSIAN_SETUP = (
    "tf.keras.utils.set_random_seed(5)\n"
    "x = tf.random.normal([7, 5])\n"
    "layer1 = tf.keras.layers.Dense(8, activation=tf.nn.relu)\n"
    "layer2 = tf.keras.layers.Dense(6, activation=tf.nn.relu)\n"
    "_ = layer2(layer1(x))\n"
)
# The guide's cell, rebinding x as it goes.
HESSIAN_CELL = "x = layer1(x)\nx = layer2(x)\nloss = tf.reduce_mean(x**2)"


def test_hessian_and_newton_step(shell):
    # Guide: g = dloss/dkernel (5, 8); h = jacobian(g, kernel) is (5, 8, 5, 8), flattened (40, 40),
    # symmetric; a Newton step solves (h + 1e-3 I) u = g and subtracts u from the kernel.
    shell.run_cell(HESSIAN_SETUP)
    layer1, layer2, x0 = (shell.user_ns[name] for name in ("layer1", "layer2", "x"))
    x = x0
    with tf.GradientTape() as t2:
        with tf.GradientTape() as t1:
            x = layer1(x)
            x = layer2(x)
            loss = tf.reduce_mean(x**2)
        g = t1.gradient(loss, layer1.kernel)
    h = t2.jacobian(g, layer1.kernel)
    assert layer1.kernel.shape == (5, 8) and h.shape == (5, 8, 5, 8)
    n_params = tf.reduce_prod(layer1.kernel.shape)
    g_vec = tf.reshape(g, [n_params, 1])
    h_mat = tf.reshape(h, [n_params, n_params])
    close(h_mat, tf.transpose(h_mat), 1e-5)
    eye_eps = tf.eye(h_mat.shape[0]) * 1e-3
    update = tf.linalg.solve(h_mat + eye_eps, g_vec)

    r, _ = run(shell, "layer1.kernel --hessian", HESSIAN_CELL)
    close(r.value, loss, 1e-5)
    close(r.gradients["layer1.kernel"], g, 1e-5)
    assert r.hessian.shape == (40, 40)
    close(r.hessian, h_mat, 1e-4)
    close(r.hessian, tf.transpose(r.hessian), 1e-5)
    # Contract (1): x is rebound once, to layer2(layer1(x)), as one plain run leaves it.
    assert shell.user_ns["x"].shape == (7, 6)
    close(shell.user_ns["x"], x, 1e-6)

    # The Newton step from the magic's numbers, applied as the guide applies it.
    g_vec_r = tf.reshape(r.gradients["layer1.kernel"], [40, 1])
    update_r = tf.linalg.solve(r.hessian + eye_eps, g_vec_r)
    scale = float(tf.reduce_max(tf.abs(update)))
    assert float(tf.reduce_max(tf.abs(update_r - update))) <= 1e-2 * max(scale, 1.0)
    before = layer1.kernel.numpy()
    layer1.kernel.assign_sub(tf.reshape(update_r, layer1.kernel.shape))
    close(layer1.kernel, before - tf.reshape(update, (5, 8)).numpy(), 1e-2 * max(scale, 1.0))


BATCH_SETUP = (
    "tf.keras.utils.set_random_seed(6)\n"
    "x = tf.random.normal([7, 5])\n"
    "layer1 = tf.keras.layers.Dense(8, activation=tf.nn.elu)\n"
    "layer2 = tf.keras.layers.Dense(6, activation=tf.nn.elu)\n"
)


def test_batch_jacobian(shell):
    # Guide: y is (7, 6); jacobian(y, x) is (7, 6, 7, 5) with diagonal (batch, batch) slices;
    # summing the duplicate batch axis, or einsum('bxby->bxy'), gives batch_jacobian's (7, 6, 5).
    shell.run_cell(BATCH_SETUP)
    layer1, layer2, x = (shell.user_ns[name] for name in ("layer1", "layer2", "x"))
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(x)
        y = layer1(x)
        y = layer2(y)
    assert y.shape == (7, 6)
    j = tape.jacobian(y, x)
    assert j.shape == (7, 6, 7, 5)
    off_diagonal = j.numpy() * (1 - np.eye(7))[:, None, :, None]
    assert np.abs(off_diagonal).max() == 0
    j_sum = tf.reduce_sum(j, axis=2)
    j_select = tf.einsum("bxby->bxy", j)
    assert j_sum.shape == j_select.shape == (7, 6, 5)
    jb = tape.batch_jacobian(y, x)
    assert jb.shape == (7, 6, 5)
    assert tf.reduce_max(abs(jb - j_sum)).numpy() < 1e-3

    r, _ = run(shell, "x --jacobian", "y = layer1(x)\ny = layer2(y)")
    assert r.jacobian["x"].shape == (7, 6, 7, 5)
    close(r.jacobian["x"], j, 1e-4)
    close(tf.einsum("bxby->bxy", r.jacobian["x"]), jb, 1e-4)
    close(r.value, y, 1e-6)
    # The guide's tape watched only x: the same through the magic.
    r, _ = run(shell, "x --no-auto-watch --jacobian", "y = layer1(x)\ny = layer2(y)")
    close(tf.reduce_sum(r.jacobian["x"], axis=2), jb, 1e-4)


def test_batch_jacobian_with_batch_normalization(shell):
    # Guide: BatchNormalization(training=True) mixes the batch: the (batch, batch) slices are no
    # longer diagonal, and batch_jacobian still returns (7, 6, 5).
    shell.run_cell(BATCH_SETUP + "bn = tf.keras.layers.BatchNormalization()\n_ = layer2(bn(layer1(x)))")
    layer1, layer2, bn, x = (shell.user_ns[name] for name in ("layer1", "layer2", "bn", "x"))
    mean0, var0 = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(x)
        y = layer1(x)
        y = bn(y, training=True)
        y = layer2(y)
    j = tape.jacobian(y, x)
    assert j.shape == (7, 6, 7, 5)
    off_diagonal = j.numpy() * (1 - np.eye(7))[:, None, :, None]
    assert np.abs(off_diagonal).max() > 1e-4
    assert tape.batch_jacobian(y, x).shape == (7, 6, 5)
    # Put the moving statistics back, so that the magic's run starts where the plain one did.
    bn.moving_mean.assign(mean0)
    bn.moving_variance.assign(var0)

    r, _ = run(shell, "x --jacobian", "y = layer1(x)\ny = bn(y, training=True)\ny = layer2(y)")
    assert r.jacobian["x"].shape == (7, 6, 7, 5)
    close(r.jacobian["x"], j, 1e-4)
    # Contract (1): one plain run moves the statistics once, momentum 0.99 towards the batch's.
    h = layer1(x)
    batch_mean, batch_var = tf.nn.moments(h, axes=[0])
    close(bn.moving_mean, 0.99 * mean0 + 0.01 * batch_mean.numpy(), 1e-5)
    close(bn.moving_variance, 0.99 * var0 + 0.01 * batch_var.numpy(), 1e-5)
