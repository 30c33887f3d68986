"""Keras 3 (TensorFlow backend) through a real shell: layer and model weights as sources.

Keras 3's weights are ``keras.Variable``s, not tf.Variables (``.value`` is the tf.Variable
underneath); ``%%tape`` must take them as they are and give the numbers a plain
tf.GradientTape gives on the same layer and inputs. Every gradient here is compared with
such a plain computation, on the very objects the cell used where the cell changes nothing,
and on a twin built from the same seed where it does (optimizer steps, BatchNormalization's
moving statistics, Dropout's seed generator). The project's rule for a cell: either a
UsageError before anything ran, or a result with the state exactly as one plain run leaves it.
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from IPython.core.error import UsageError

from conftest import CACHED, run

RTOL, ATOL = 1e-5, 1e-6


# -- helpers -------------------------------------------------------------------
def setup(shell, code: str) -> None:
    """Run ordinary cells (no magic) in the shell, failing the test if they raise."""
    result = shell.run_cell("import keras\n" + code, store_history=False)
    result.raise_error()


def dense(value) -> np.ndarray:
    """A tensor, variable or IndexedSlices as a dense NumPy array."""
    if isinstance(value, tf.IndexedSlices):
        value = tf.convert_to_tensor(value)
    if hasattr(value, "numpy"):
        return np.asarray(value.numpy())
    return np.asarray(value)


def close(actual, expected, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert actual is not None, "expected a gradient, got None"
    assert expected is not None
    np.testing.assert_allclose(dense(actual), dense(expected), rtol=rtol, atol=atol)


def state(*objects) -> list[np.ndarray]:
    """Every variable of the given layers, models and optimizers, as arrays."""
    found = []
    for thing in objects:
        variables = thing.variables if isinstance(thing, keras.optimizers.Optimizer) else thing.weights
        found.extend(np.array(v.numpy()) for v in variables)
    return found


def same_state(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b):
        np.testing.assert_array_equal(left, right)


def list_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}[{i}]" for i in range(count)]


def renders(result):
    """Render the result in text and HTML: a Keras source must not break the display."""
    assert result.to_text()
    assert result.to_html()
    return result


@pytest.fixture
def mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


X23 = "x = tf.constant(np.arange(6, dtype='float32').reshape(2, 3) / 5 - 0.4)\n"
X25 = "x = tf.constant(np.linspace(-1, 1, 10, dtype='float32').reshape(2, 5))\n"
BUILD = "layer.build(x.shape)\n"


# -- a layer's own variables ------------------------------------------------------
def test_a_keras_variable_is_a_source_as_it_is(shell):
    setup(shell, "keras.utils.set_random_seed(1)\nlayer = keras.layers.Dense(2)\n" + X23 + BUILD)
    r, _ = run(shell, "layer.kernel", "loss = tf.reduce_sum(tf.tanh(layer(x)))")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.tanh(layer(x)))
    close(r.value, loss)
    close(r.gradients["layer.kernel"], tape.gradient(loss, layer.kernel))
    assert dense(r.gradients["layer.kernel"]).shape == (3, 2)
    renders(r)


def test_layer_trainable_variables_expand_in_order(shell):
    setup(shell, "keras.utils.set_random_seed(2)\nlayer = keras.layers.Dense(2, activation='tanh')\n" + X23 + BUILD)
    r, _ = run(shell, "layer.trainable_variables", "loss = tf.reduce_sum(layer(x) ** 2)")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x) ** 2)
    expected = tape.gradient(loss, layer.trainable_variables)
    names = list_names("layer.trainable_variables", 2)
    assert [s.name for s in r.sources] == names
    assert list(r.gradients) == names
    for name, grad in zip(names, expected):
        close(r.gradients[name], grad)
    shapes = {w.shape for w in r.watched}
    assert {(3, 2), (2,)} <= shapes
    assert all(w.trainable for w in r.watched)
    assert all(isinstance(w.name, str) and w.name for w in r.watched)
    renders(r)


def test_no_source_named_takes_the_trainable_variables_the_cell_touched(shell):
    setup(shell, "keras.utils.set_random_seed(3)\nlayer = keras.layers.Dense(2)\n" + X23 + BUILD)
    r, _ = run(shell, "", "loss = tf.reduce_sum(tf.sin(layer(x)))")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(layer(x)))
    expected = tape.gradient(loss, [layer.kernel, layer.bias])
    grads = list(r.gradients.values())
    assert len(grads) == 2, list(r.gradients)
    for got, want in zip(grads, expected):
        close(got, want)


@pytest.mark.parametrize(("units", "inputs"), [(2, 3), (4, 5)], ids=["6-elements-eager", "20-elements-traced"])
def test_kernel_jacobian(shell, units, inputs):
    x = X23 if inputs == 3 else X25
    setup(shell, f"keras.utils.set_random_seed(4)\nlayer = keras.layers.Dense({units}, activation='tanh')\n" + x + BUILD)
    r, _ = run(shell, "layer.kernel --jacobian", "y = layer(x)")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape(persistent=True) as tape:
        y = layer(x)
    close(r.value, y)
    close(r.gradients["layer.kernel"], tape.gradient(y, layer.kernel))
    jacobian = r.jacobian["layer.kernel"]
    assert tuple(dense(jacobian).shape) == (2, units, inputs, units)
    close(jacobian, tape.jacobian(y, layer.kernel.value))
    renders(r)


@pytest.mark.parametrize(("units", "inputs"), [(2, 3), (4, 5)], ids=["6-elements-eager", "20-elements-traced"])
def test_hessian_of_a_kernel_bound_to_a_name(shell, units, inputs):
    x = X23 if inputs == 3 else X25
    setup(shell, f"keras.utils.set_random_seed(5)\nlayer = keras.layers.Dense({units})\n{x}"
                 "layer.build(x.shape)\nk = layer.kernel\n")
    r, _ = run(shell, "k --hessian", "loss = tf.reduce_sum(tf.tanh(layer(x)))")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    n = units * inputs
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_sum(tf.tanh(layer(x)))
        grad = inner.gradient(loss, layer.kernel)
    hessian = tf.reshape(outer.jacobian(grad, layer.kernel.value), (n, n))
    close(r.value, loss)
    close(r.gradients["k"], grad)
    assert tuple(dense(r.hessian).shape) == (n, n)
    close(r.hessian, hessian)
    np.testing.assert_allclose(dense(r.hessian), dense(r.hessian).T, rtol=1e-5, atol=1e-6)
    assert np.abs(dense(hessian)).max() > 1e-3  # tanh makes it non-zero: the comparison means something
    renders(r)


def test_second_order_on_a_keras_variable(shell):
    setup(shell, "keras.utils.set_random_seed(6)\nlayer = keras.layers.Dense(2)\n" + X23 + BUILD)
    r, _ = run(shell, "layer.kernel layer.bias -n 2", "loss = tf.reduce_sum(tf.tanh(layer(x)))")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_sum(tf.tanh(layer(x)))
        first = inner.gradient(loss, [layer.kernel, layer.bias])
    second = [outer.gradient(g, v) for g, v in zip(first, [layer.kernel, layer.bias])]
    for name, g1, g2 in zip(["layer.kernel", "layer.bias"], first, second):
        close(r.derivatives[1][name], g1)
        close(r.derivatives[2][name], g2)
    assert np.abs(dense(second[0])).max() > 1e-3


# -- whole models -------------------------------------------------------------------
def _sequential():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])


def _functional():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    skip = keras.layers.Dense(1)(inputs)
    return keras.Model(inputs, keras.layers.Add()([keras.layers.Dense(1)(hidden), skip]))


@pytest.mark.parametrize("build", [_sequential, _functional], ids=["sequential", "functional"])
def test_model_trainable_variables(shell, build):
    keras.utils.set_random_seed(7)
    shell.user_ns["model"] = build()
    setup(shell, X23 + "target = tf.constant([[0.5], [-1.0]])\n")
    r, _ = run(shell, "model.trainable_variables", "loss = tf.reduce_mean(tf.square(model(x) - target))")
    model, x, target = (shell.user_ns[k] for k in ("model", "x", "target"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - target))
    expected = tape.gradient(loss, model.trainable_variables)
    names = list_names("model.trainable_variables", len(model.trainable_variables))
    assert [s.name for s in r.sources] == names
    close(r.value, loss)
    for name, grad in zip(names, expected):
        close(r.gradients[name], grad)
    renders(r)


def test_two_heads_where_one_feeds_the_loss(shell):
    keras.utils.set_random_seed(8)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, activation="tanh")(inputs)
    model = keras.Model(inputs, [keras.layers.Dense(1)(hidden), keras.layers.Dense(2)(hidden)])
    shell.user_ns["model"] = model
    setup(shell, X23)
    r, _ = run(shell, "model.trainable_variables", "used, unused = model(x)\nloss = tf.reduce_sum(used ** 2)")
    x = shell.user_ns["x"]
    with tf.GradientTape() as tape:
        used, unused = model(x)
        loss = tf.reduce_sum(used ** 2)
    expected = tape.gradient(loss, model.trainable_variables)
    names = list_names("model.trainable_variables", 6)
    assert [e is None for e in expected] == [False] * 4 + [True] * 2  # the second head's kernel and bias
    for name, grad in zip(names, expected):
        if grad is None:
            assert r.gradients[name] is None
            reason = r.why(name)
            assert reason and "is not None" not in reason
            assert "depend" in reason or "not used" in reason, reason
        else:
            close(r.gradients[name], grad)
    renders(r)


# -- cells that change state ------------------------------------------------------------
TRAIN_STEP = {
    "apply_gradients": "opt.apply_gradients(zip(grads, model.trainable_variables))",
    "apply": "opt.apply(grads, model.trainable_variables)",
}


def _train_cell(step: str) -> str:
    return ("with tf.GradientTape() as inner:\n"
            "    loss = tf.reduce_mean(tf.square(model(x) - target))\n"
            "grads = inner.gradient(loss, model.trainable_variables)\n"
            f"{TRAIN_STEP[step]}\n")


def _twins(shell) -> None:
    """model/opt in the shell and twin/twin_opt for the plain run, equal to the last bit."""
    for model_name, opt_name in (("model", "opt"), ("twin", "twin_opt")):
        keras.utils.set_random_seed(9)
        shell.user_ns[model_name] = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh"),
                                                      keras.layers.Dense(1)])
        shell.user_ns[opt_name] = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    setup(shell, "x = tf.constant(np.linspace(-1, 1, 8, dtype='float32').reshape(2, 4))\n"
                 "target = tf.constant([[0.3], [-0.7]])\n")
    same_state(state(shell.user_ns["model"]), state(shell.user_ns["twin"]))


@pytest.mark.parametrize(("step", "options"), [("apply_gradients", ""), ("apply", ""), ("apply_gradients", "-n 2")],
                         ids=["apply_gradients", "apply", "apply_gradients-order-2"])
def test_an_optimizer_step_in_the_cell_happens_once(shell, step, options):
    _twins(shell)
    model, opt, twin, twin_opt, x, target = (shell.user_ns[k] for k in ("model", "opt", "twin", "twin_opt", "x", "target"))
    before = state(model)
    # The plain run, on the twin.
    with tf.GradientTape() as inner:
        loss = tf.reduce_mean(tf.square(twin(x) - target))
    grads = inner.gradient(loss, twin.trainable_variables)
    if step == "apply":
        twin_opt.apply(grads, twin.trainable_variables)
    else:
        twin_opt.apply_gradients(zip(grads, twin.trainable_variables))
    assert int(twin_opt.iterations.numpy()) == 1

    try:
        r, _ = run(shell, f"model.trainable_variables -t loss {options}".strip(), _train_cell(step))
    except UsageError:
        if not options:
            raise
        # Refused: then before anything ran.
        same_state(state(model), before)
        assert int(opt.iterations.numpy()) == 0
        return
    assert int(opt.iterations.numpy()) == 1, "the optimizer stepped more than once (or not at all)"
    same_state(state(model), state(twin))
    same_state(state(opt), state(twin_opt))
    close(r.value, loss)
    names = list_names("model.trainable_variables", 4)
    for name, grad, user_grad in zip(names, grads, shell.user_ns["grads"]):
        close(r.gradients[name], grad)
        close(user_grad, grad)  # the cell's own tape saw the same numbers as the plain run's


@pytest.mark.parametrize("options", ["", "--hessian"], ids=["first-order", "hessian-16-elements"])
def test_batch_normalization_in_training_updates_its_statistics_once(shell, options):
    for name in ("bn", "twin"):
        shell.user_ns[name] = keras.layers.BatchNormalization()
    setup(shell, "x = tf.constant([[1.0, -2.0, 0.5, 2.0], [3.0, 0.0, 1.5, -1.0], [-1.0, 4.0, 2.5, 0.0]])\n"
                 "w = tf.constant([[1.0, 2.0, -1.0, 0.2], [0.5, -0.5, 1.0, 1.5], [2.0, 1.0, 0.0, -0.3]])\n"
                 "bn.build(x.shape)\ntwin.build(x.shape)\n")
    bn, twin, x, w = (shell.user_ns[k] for k in ("bn", "twin", "x", "w"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(twin(x, training=True) * w)
    expected = tape.gradient(loss, [twin.gamma, twin.beta])

    # Four sources of 4 elements: with --hessian, 16 elements, the traced path if the cell can be traced.
    r, _ = run(shell, f"bn.gamma bn.beta bn.moving_mean bn.moving_variance {options}".strip(),
               "loss = tf.reduce_sum(bn(x, training=True) * w)")
    # Updated exactly once: TensorFlow's guide value, momentum * 0 + (1 - momentum) * batch mean.
    same_state(state(bn), state(twin))
    np.testing.assert_allclose(bn.moving_mean.numpy(), (1 - bn.momentum) * x.numpy().mean(axis=0), rtol=1e-5, atol=1e-7)
    close(r.value, loss)
    close(r.gradients["bn.gamma"], expected[0])
    close(r.gradients["bn.beta"], expected[1])
    for stat in ("bn.moving_mean", "bn.moving_variance"):
        assert r.gradients[stat] is None
        reason = r.why(stat)
        assert reason and "is not None" not in reason
    if options:
        close(r.hessian, np.zeros((16, 16), "float32"))  # the loss is linear in gamma and beta
    renders(r)


@pytest.mark.parametrize("options", ["", "--jacobian"], ids=["first-order", "jacobian-20-elements"])
def test_dropout_gradient_agrees_with_the_value_of_the_same_run(shell, options):
    for layer_name, drop_name in (("layer", "drop"), ("twin", "twin_drop")):
        keras.utils.set_random_seed(10)
        shell.user_ns[layer_name] = keras.layers.Dense(4)
        shell.user_ns[drop_name] = keras.layers.Dropout(0.5)
    setup(shell, X25 + "layer.build(x.shape)\ntwin.build(x.shape)\n")
    layer, drop, twin, twin_drop, x = (shell.user_ns[k] for k in ("layer", "drop", "twin", "twin_drop", "x"))
    same_state(state(layer, drop), state(twin, twin_drop))
    with tf.GradientTape(persistent=True) as tape:
        y = twin_drop(twin(x), training=True)
    plain_gradient = tape.gradient(y, twin.kernel)
    plain_jacobian = tape.jacobian(y, twin.kernel.value)

    # With --jacobian over the 20 kernel elements: the traced path, if the cell can be traced.
    r, _ = run(shell, f"layer.kernel {options}".strip(), "y = drop(layer(x), training=True)")
    value = dense(r.value)
    np.testing.assert_array_equal(value, dense(shell.user_ns["y"]))  # the value the cell left behind
    # The seed generator advanced once, as in the plain run.
    same_state(state(layer, drop), state(twin, twin_drop))
    # Within the run: d(sum y)/d kernel = xᵀ (mask / keep), with the mask read off the value.
    scale = (value != 0).astype("float32") / 0.5
    close(r.gradients["layer.kernel"], x.numpy().T @ scale)
    if options:
        jacobian = np.einsum("ia,jb,ij->ijab", x.numpy(), np.eye(4, dtype="float32"), scale)
        close(r.jacobian["layer.kernel"], jacobian)
    # And against the plain run from the same seed: the same mask, the same numbers.
    close(r.value, y)
    close(r.gradients["layer.kernel"], plain_gradient)
    if options:
        close(r.jacobian["layer.kernel"], plain_jacobian)


def test_embedding_gradient_shows_dense_numbers(shell):
    setup(shell, "keras.utils.set_random_seed(11)\nemb = keras.layers.Embedding(5, 2)\n"
                 "ids = tf.constant([1, 3, 1])\nemb.build(ids.shape)\n"
                 "w = tf.constant([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])\n")
    r, _ = run(shell, "emb.embeddings", "loss = tf.reduce_sum(emb(ids) * w)")
    emb, ids, w = (shell.user_ns[k] for k in ("emb", "ids", "w"))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(ids) * w)
    plain = tape.gradient(loss, emb.embeddings)
    assert isinstance(plain, tf.IndexedSlices)
    expected = np.zeros((5, 2), "float32")
    np.add.at(expected, [1, 3, 1], w.numpy())  # row 1 twice: the slices summed
    np.testing.assert_allclose(dense(plain), expected)
    grad = r.gradients["emb.embeddings"]
    assert grad is not None
    assert tuple(dense(grad).shape) == (5, 2)
    close(grad, expected)
    text = renders(r).to_text()
    assert "IndexedSlices" not in text


# -- precision and placement ---------------------------------------------------------
def test_mixed_precision_float16_compute_float32_variables(shell, mixed_precision):
    setup(shell, "keras.utils.set_random_seed(12)\nlayer = keras.layers.Dense(2)\n" + X23 + "layer.build(x.shape)\n")
    layer, x = shell.user_ns["layer"], shell.user_ns["x"]
    assert layer.compute_dtype == "float16" and layer.kernel.dtype == "float32"
    r, _ = run(shell, "layer.kernel layer.bias", "loss = tf.reduce_sum(tf.cast(layer(x), tf.float32) ** 2)")
    with tf.GradientTape() as tape:
        out = layer(x)
        loss = tf.reduce_sum(tf.cast(out, tf.float32) ** 2)
    assert out.dtype == tf.float16
    expected = tape.gradient(loss, [layer.kernel, layer.bias])
    close(r.value, loss, rtol=1e-3, atol=1e-3)
    for name, grad in zip(["layer.kernel", "layer.bias"], expected):
        got = r.gradients[name]
        assert got is not None and tf.as_dtype(got.dtype) == tf.float32
        close(got, grad, rtol=1e-3, atol=1e-3)
    assert [s.dtype for s in r.sources] == ["float32", "float32"]
    renders(r)


def test_variables_made_under_mirrored_strategy(shell):
    strategy = tf.distribute.MirroredStrategy()
    assert strategy.num_replicas_in_sync == 1
    keras.utils.set_random_seed(13)
    with strategy.scope():
        layer = keras.layers.Dense(2)
        layer.build((None, 3))
    shell.user_ns["layer"] = layer
    setup(shell, X23)
    r, _ = run(shell, "layer.trainable_variables", "loss = tf.reduce_sum(tf.tanh(layer(x)) ** 2)")
    x = shell.user_ns["x"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.tanh(layer(x)) ** 2)
    expected = tape.gradient(loss, layer.trainable_variables)
    close(r.value, loss)
    for name, grad in zip(list_names("layer.trainable_variables", 2), expected):
        close(r.gradients[name], grad)
    renders(r)


# -- None, explained ---------------------------------------------------------------------
def test_a_frozen_layer_named_as_a_source_is_differentiated_as_a_plain_tape_does_and_said(shell):
    setup(shell, "keras.utils.set_random_seed(14)\nfrozen = keras.layers.Dense(3)\nhead = keras.layers.Dense(1)\n"
                 + X23 + "frozen.build(x.shape)\nhead.build((None, 3))\nfrozen.trainable = False\n")
    frozen, head, x = (shell.user_ns[k] for k in ("frozen", "head", "x"))
    assert not frozen.kernel.trainable
    r, _ = run(shell, "frozen.kernel head.kernel", "loss = tf.reduce_sum(head(frozen(x)) ** 2)")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(head(frozen(x)) ** 2)
    close(r.value, loss)
    close(r.gradients["head.kernel"], tape.gradient(loss, head.kernel))
    # Keras's trainable=False does not reach the tf.Variable: a plain tape differentiates it, and so does
    # the magic for a source named on purpose; the note says an optimizer would leave it out.
    with tf.GradientTape() as tape:
        tape.watch(frozen.kernel.value)
        loss = tf.reduce_sum(head(frozen(x)) ** 2)
    close(r.gradients["frozen.kernel"], tape.gradient(loss, frozen.kernel.value))
    assert any("frozen.kernel" in note and "trainable=False" in note for note in r.notes), r.notes
    renders(r)
    # With no source named, the sources are what Keras calls trainable: the frozen kernel is left out.
    r, _ = run(shell, "", "loss = tf.reduce_sum(head(frozen(x)) ** 2)")
    assert [source.name for source in r.sources] == ["head.kernel", "head.bias"] or \
        all("frozen" not in source.name for source in r.sources), [s.name for s in r.sources]


def test_a_whole_layer_as_a_source_is_refused_before_the_cell_runs(shell):
    setup(shell, "layer = keras.layers.Dense(2)\n" + X23)
    with pytest.raises(UsageError, match="trainable_variables"):
        run(shell, "layer", "ran = True\nloss = tf.reduce_sum(layer(x))")
    assert "ran" not in shell.user_ns


def test_a_models_trace_is_reused_and_made_again_when_a_layer_is_frozen(shell, trace_first_run):
    # A Keras model's Python attributes cannot be compared, so its trace used to be made again on
    # every run (2.4 s a run in benchmarks/heldout.py). It is now keyed by the model's identity, its
    # layers' trainable flags and its variables.
    setup(shell, "keras.utils.set_random_seed(1)\n"
                 "model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation='tanh'), keras.layers.Dense(1)])\n"
                 "x = tf.random.stateless_normal((32, 8), seed=(1, 2)); t = tf.random.stateless_normal((32, 1), seed=(3, 4))")
    cell = "loss = tf.reduce_mean((model(x) - t) ** 2)"
    first, _ = run(shell, "model.trainable_variables --hessian", cell)
    second, _ = run(shell, "model.trainable_variables --hessian", cell)
    assert any("traced: derivatives were computed" in note for note in first.notes), first.notes
    assert any(CACHED in note for note in second.notes), second.notes
    close(second.hessian, first.hessian)
    model = shell.user_ns["model"]
    model.layers[0].trainable = False
    frozen, _ = run(shell, "model.trainable_variables --hessian", cell)
    assert frozen.hessian.shape == (17, 17)  # the output layer's kernel (16) and bias (1) only
    assert not any(CACHED in note for note in frozen.notes), frozen.notes
    variables = model.trainable_variables
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            loss = tf.reduce_mean((model(shell.user_ns["x"]) - shell.user_ns["t"]) ** 2)
        flat = tf.concat([tf.reshape(g, [-1]) for g in inner.gradient(loss, variables)], 0)
    expected = tf.concat([tf.reshape(b, [17, -1]) for b in outer.jacobian(flat, variables)], 1)
    close(frozen.hessian, expected, rtol=1e-4, atol=1e-5)


def test_a_model_subclassed_in_the_notebook_reuses_its_trace(shell, trace_first_run):
    setup(shell, "keras.utils.set_random_seed(2)\n"
                 "class Tiny(keras.Model):\n"
                 "    def __init__(self):\n"
                 "        super().__init__()\n"
                 "        self.dense = keras.layers.Dense(4, activation='tanh')\n"
                 "    def call(self, inputs):\n"
                 "        return self.dense(inputs)\n"
                 "m = Tiny()\nx = tf.Variable(tf.random.stateless_normal((4, 4), seed=(5, 6)))\nbuilt = m(x)")
    first, _ = run(shell, "x --jacobian", "y = m(x)")
    second, _ = run(shell, "x --jacobian", "y = m(x)")
    assert any("traced: derivatives were computed" in note for note in first.notes), first.notes
    assert any(CACHED in note for note in second.notes), second.notes
    with tf.GradientTape() as tape:
        y = shell.user_ns["m"](shell.user_ns["x"])
    close(second.jacobian["x"], tape.jacobian(y, shell.user_ns["x"]), rtol=1e-4, atol=1e-6)
