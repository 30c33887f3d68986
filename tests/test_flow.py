"""Gradient flow by layer (issue #15): ``r.layers`` and its text and HTML views, on real Keras 3 models.

Every norm is compared with a plain ``tf.GradientTape`` computation in the test, on the very
model the cell used (where the cell changes nothing) or on a twin built from the same seed
(where it does: optimizer steps, BatchNormalization's moving statistics). Most cells go through
a real IPython shell; the rows are named from the user's Keras models, whatever the nesting.
"""
from __future__ import annotations

import dataclasses
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from IPython.utils.capture import capture_output

from conftest import run
from tapemagic._result import LAYER_COLUMNS, LayerRow, LayerTable
from tapemagic.engine import flow as flow_engine
from tapemagic.render import flow as flow_view

RTOL = 1e-5


def setup(shell, code: str) -> None:
    shell.run_cell("import keras\n" + code, store_history=False).raise_error()


def tape(shell, line: str, cell: str):
    result, captured = run(shell, f"{line} -o r --display text", cell)
    assert result is shell.user_ns["r"]
    return result, captured


def plain_gradients(model, loss_of) -> list[np.ndarray | None]:
    """What a plain tape gives for every trainable variable of ``model``."""
    with tf.GradientTape() as plain:
        loss = loss_of()
    return [None if g is None else np.asarray(tf.convert_to_tensor(g), dtype=np.float64)
            for g in plain.gradient(loss, model.trainable_variables)]


def rows_by_path(table) -> dict[str, LayerRow]:
    return {f"{row.layer}/{row.variable}": row for row in table}


def row_of(table, variable) -> LayerRow:
    """The row of a Keras variable: its layer's name ends the row's path, its own name is the row's variable."""
    layer, name = variable.path.rsplit("/", 2)[-2:]
    (row,) = [r for r in table if r.variable == name and r.layer.rsplit("/", 1)[-1] == layer]
    return row


def check_against(table, model, gradients) -> None:
    """Each trainable variable's row holds the norm, max |g|, zero share and ratio of the plain gradient."""
    for variable, gradient in zip(model.trainable_variables, gradients):
        row = row_of(table, variable)
        if gradient is None:
            assert row.norm is None and row.flag.startswith("None")
            continue
        weights = np.asarray(variable.numpy(), dtype=np.float64)
        np.testing.assert_allclose(row.norm, np.linalg.norm(gradient), rtol=RTOL)
        np.testing.assert_allclose(row.max_abs, np.max(np.abs(gradient)), rtol=RTOL)
        assert row.zeros == pytest.approx(np.mean(gradient == 0))
        if np.any(weights):
            np.testing.assert_allclose(row.relative, np.linalg.norm(gradient) / np.linalg.norm(weights), rtol=RTOL)
        else:
            assert row.relative is None


MLP = """
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation='relu', name='dense'),
                          keras.layers.Dense(3, name='dense_1')], name='mlp')
x = tf.constant(np.random.default_rng(0).normal(size=(8, 6)), tf.float32)
y = tf.constant(np.random.default_rng(1).normal(size=(8, 3)), tf.float32)
"""
MSE = "loss = tf.reduce_mean((model(x) - y) ** 2)"


# -- Sequential and functional ---------------------------------------------------
def test_the_engine_finds_the_models_that_own_the_sources(shell):
    setup(shell, MLP + "other = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name='other')")
    r, _ = tape(shell, "model.trainable_variables", MSE)
    assert r.models == (shell.user_ns["model"],), (
        "the engine must hand the result the Keras models of its namespace: in engine/core.py's _result, "
        "TapeResult(..., models=flow.owners(namespace, [source.value for source in sources]))")


def test_sequential_rows_match_a_plain_tape(shell):
    setup(shell, MLP)
    r, _ = tape(shell, "model.trainable_variables", MSE)
    model, x, y = (shell.user_ns[k] for k in ("model", "x", "y"))
    assert [(row.layer, row.variable, row.shape) for row in r.layers] == [
        ("mlp/dense", "kernel", (6, 5)), ("mlp/dense", "bias", (5,)),
        ("mlp/dense_1", "kernel", (5, 3)), ("mlp/dense_1", "bias", (3,))]
    assert [row.source for row in r.layers] == [f"model.trainable_variables[{i}]" for i in range(4)]
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_mean((model(x) - y) ** 2)))
    assert r.layers[0] is r.layers[0]  # computed once
    assert r.layers["mlp/dense_1"][0].variable == "kernel"
    with pytest.raises(KeyError, match="the layers are mlp/dense, mlp/dense_1"):
        r.layers["dense_9"]
    with capture_output() as shown:  # what the notebook shows: the result's own text/plain
        shell.run_cell(f"%%tape model.trainable_variables --display text\n{MSE}").raise_error()
    text = shown.stdout  # the shell's displayhook prints the result's text/plain
    assert text.splitlines()[-5:] == flow_view.text(r)[-5:]
    assert "gradient flow by layer (∂loss/∂·, input layer first):" in text


def test_functional_with_no_source_named(shell):
    setup(shell, """
keras.utils.set_random_seed(1)
inputs = keras.Input((4,), name='pixels')
hidden = keras.layers.Dense(6, activation='tanh', name='hidden')(inputs)
outputs = keras.layers.Dense(2, name='logits')(hidden)
model = keras.Model(inputs, outputs, name='classifier')
x = tf.constant(np.random.default_rng(2).normal(size=(5, 4)), tf.float32)
""")
    r, _ = tape(shell, "", "loss = tf.reduce_sum(model(x) ** 2)")
    model, x = shell.user_ns["model"], shell.user_ns["x"]
    assert r.layers.layer_names() == ["classifier/hidden", "classifier/logits"]
    assert [row.source for row in r.layers] == [s.name for s in r.sources]
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_sum(model(x) ** 2)))
    norms = r.layers.layer_norms()
    expected = [np.sqrt(sum(row.norm ** 2 for row in r.layers[name])) for name in r.layers.layer_names()]
    np.testing.assert_allclose([n for _, _, n in norms], expected, rtol=RTOL)
    assert [kind for _, kind, _ in norms] == ["Dense", "Dense"]


def test_not_a_keras_model_shows_nothing_new(shell):
    setup(shell, "w = tf.Variable([1.0, 2.0])\nlayer = keras.layers.Dense(2)\nlayer.build((None, 2))")
    r, captured = tape(shell, "w", "f = tf.reduce_sum(w ** 2)")
    assert len(r.layers) == 0 and list(r.layers) == []
    assert "gradient flow" not in r.to_text() and flow_view.html(r) == "" and flow_view.text(r) == []
    r, _ = tape(shell, "", "f = tf.reduce_sum(layer(tf.ones((1, 2))))")  # a bare layer is not a model
    assert len(r.layers) == 0


# -- None with its reason --------------------------------------------------------
def test_frozen_layer(shell):
    setup(shell, MLP + "model.layers[0].trainable = False")
    r, _ = tape(shell, "", MSE)
    rows = rows_by_path(r.layers)
    assert [rows[f"mlp/dense/{v}"].flag for v in ("kernel", "bias")] == ["None: frozen layer (trainable=False)"] * 2
    assert "trainable=False" in rows["mlp/dense/kernel"].reason and rows["mlp/dense/kernel"].source is None
    model, x, y = (shell.user_ns[k] for k in ("model", "x", "y"))
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_mean((model(x) - y) ** 2)))
    assert rows["mlp/dense_1/kernel"].flag == ""


def test_frozen_layer_named_as_a_source_still_says_so(shell):
    setup(shell, MLP + "model.layers[0].trainable = False")
    r, _ = tape(shell, "model.weights", MSE)
    row = rows_by_path(r.layers)["mlp/dense/kernel"]
    assert row.norm is not None and row.flag == "frozen layer (trainable=False): an optimizer leaves it"


def test_batch_normalization_in_training_mode_updates_its_statistics_once(shell):
    code = """
keras.utils.set_random_seed(3)
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name='dense'),
                          keras.layers.BatchNormalization(name='batch_normalization'), keras.layers.ReLU(),
                          keras.layers.Dense(1, name='dense_1')], name='bn')
x = tf.constant(np.random.default_rng(4).normal(size=(16, 4)), tf.float32)
"""
    setup(shell, code)
    setup(shell, code.replace("model =", "twin =").replace("name='bn'", "name='twin'"))  # the same seed: a twin
    model, twin, x = (shell.user_ns[k] for k in ("model", "twin", "x"))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), twin.get_weights()))
    r, _ = tape(shell, "model.variables", "loss = tf.reduce_mean(model(x, training=True) ** 2)")
    expected = plain_gradients(twin, lambda: tf.reduce_mean(twin(x, training=True) ** 2))  # one plain run
    rows = rows_by_path(r.layers)
    for name in ("moving_mean", "moving_variance"):
        assert rows[f"bn/batch_normalization/{name}"].flag == "None: non-trainable statistics"
        assert "not from a gradient" in rows[f"bn/batch_normalization/{name}"].reason
    assert rows["bn/batch_normalization/gamma"].norm is not None
    for variable, gradient in zip(twin.trainable_variables, expected):
        row = rows[variable.path.replace("twin/", "bn/", 1)]
        np.testing.assert_allclose(row.norm, np.linalg.norm(gradient), rtol=RTOL)
    assert not np.allclose(model.layers[1].moving_variance.numpy(), 1.0)  # the statistics did move...
    for a, b in zip(model.get_weights(), twin.get_weights()):  # ...once, as in one plain run
        np.testing.assert_array_equal(a, b)


def test_unused_head_is_not_connected(shell):
    setup(shell, """
keras.utils.set_random_seed(5)
inputs = keras.Input((3,))
trunk = keras.layers.Dense(4, activation='tanh', name='trunk')(inputs)
model = keras.Model(inputs, [keras.layers.Dense(1, name='used')(trunk), keras.layers.Dense(2, name='unused')(trunk)],
                    name='two_heads')
x = tf.ones((2, 3))
""")
    for line in ("model.trainable_variables", ""):
        r, _ = tape(shell, line, "loss = tf.reduce_sum(model(x)[0])")
        rows = rows_by_path(r.layers)
        assert r.layers.layer_names() == ["two_heads/trunk", "two_heads/used", "two_heads/unused"]
        for variable in ("kernel", "bias"):
            row = rows[f"two_heads/unused/{variable}"]
            assert row.norm is None and row.flag == "None: not connected to the loss", line
            assert "loss" in row.reason
            assert rows[f"two_heads/used/{variable}"].norm is not None
    named, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(x)[0])")
    assert rows_by_path(named.layers)["two_heads/unused/kernel"].reason == named.why("model.trainable_variables[4]")


def test_integer_cast(shell):
    setup(shell, MLP)
    r, _ = tape(shell, "model.trainable_variables",
                "loss = tf.reduce_sum(tf.cast(tf.cast(model(x), tf.int32), tf.float32))")
    assert {row.flag for row in r.layers} == {"None: an integer cast"}
    assert "casts to an integer" in r.layers[0].reason
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(tf.cast(model(x), tf.int32))")
    assert {row.flag for row in r.layers} == {"None: an integer target"}


def test_op_without_a_registered_gradient(shell):
    setup(shell, MLP)
    # TensorFlow registers no gradient for MatrixLogarithm (tf.linalg.logm): tape.gradient raises LookupError
    r, _ = tape(shell, "model.trainable_variables",
                "loss = tf.math.real(tf.reduce_sum(tf.linalg.logm(tf.cast(model(x[:3]), tf.complex64))))")
    assert {row.flag for row in r.layers} == {"None: an op without a gradient"}
    assert "MatrixLogarithm" in r.layers[0].reason


# -- flags ---------------------------------------------------------------------------
def test_dead_relu_layer_is_flagged(shell):
    setup(shell, """
keras.utils.set_random_seed(6)
model = keras.Sequential([keras.Input((4,)),
                          keras.layers.Dense(8, activation='relu', bias_initializer=keras.initializers.Constant(-100.0),
                                             name='dense'),
                          keras.layers.Dense(1, name='dense_1')], name='dead')
x = tf.constant(np.random.default_rng(7).uniform(size=(32, 4)), tf.float32)
""")
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_mean(model(x) ** 2 + model(x))")
    model, x = shell.user_ns["model"], shell.user_ns["x"]
    gradients = plain_gradients(model, lambda: tf.reduce_mean(model(x) ** 2 + model(x)))
    assert not np.any(gradients[0])  # the plain tape agrees: every unit is dead
    kernel = rows_by_path(r.layers)["dead/dense/kernel"]
    assert kernel.flag == "dead ReLU units: all 8" and "0 for every example" in kernel.reason
    assert kernel.zeros == 1.0 and kernel.norm == 0.0
    check_against(r.layers, model, gradients)


def test_some_dead_units_are_counted():
    layer_kernel = np.ones((3, 4))
    layer_kernel[:, [1, 3]] = 0.0
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu")])
    owned = flow_engine._Owned("m/dense", model.layers[0], model.layers[0].kernel, False)
    assert flow_engine._dead_units(owned, layer_kernel) == (2, 4)
    assert flow_engine._zero_flag(owned, layer_kernel, 0.5) == "dead ReLU units: 2 of 4"


def test_exploding_weights_are_flagged(shell):
    setup(shell, MLP + "for v in model.trainable_variables:\n    v.assign(v * 1e4)")
    r, _ = tape(shell, "model.trainable_variables", MSE)
    model, x, y = (shell.user_ns[k] for k in ("model", "x", "y"))
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_mean((model(x) - y) ** 2)))
    kernels = [row for row in r.layers if row.variable == "kernel"]
    assert all(row.flag.startswith("exploding: ||g|| is") for row in kernels), [row.flag for row in kernels]
    assert all(row.relative > flow_engine.EXPLODING_RELATIVE for row in kernels)


def test_vanishing_gradients_are_flagged(shell):
    setup(shell, """
keras.utils.set_random_seed(8)
model = keras.Sequential([keras.Input((4,))] + [keras.layers.Dense(4, activation='sigmoid', name=f'dense_{i}') for i in range(8)]
                         + [keras.layers.Dense(1, name='dense_8')], name='deep')
for v in model.trainable_variables[:-2]:
    v.assign(v * 0.05)
x = tf.ones((4, 4))
""")
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(x))")
    first, last = r.layers["deep/dense_0"][0], r.layers.layer_norms()[-1][2]
    assert first.norm < flow_engine.VANISHING_SHARE * last
    assert first.flag.startswith("vanishing:"), first.flag
    assert r.layers.layer_norms()[-1][0] == "deep/dense_8" and r.layers["deep/dense_8"][0].flag == ""


# -- names: nesting and sharing ------------------------------------------------------
def test_nested_model_is_named_through_its_parent(shell):
    setup(shell, """
keras.utils.set_random_seed(9)
encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name='squeeze')], name='encoder')
inputs = keras.Input((4,))
model = keras.Model(inputs, keras.layers.Dense(2, name='head')(encoder(inputs)), name='outer')
x = tf.ones((2, 4))
""")
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(x) ** 2)")
    assert r.layers.layer_names() == ["outer/encoder/squeeze", "outer/head"]  # encoder is found inside model
    model, x = shell.user_ns["model"], shell.user_ns["x"]
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_sum(model(x) ** 2)))
    r, _ = tape(shell, "encoder.trainable_variables", "loss = tf.reduce_sum(encoder(x))")
    assert r.layers.layer_names() == ["outer/encoder/squeeze", "outer/head"]
    assert r.layers["outer/head"][0].flag == "not a source"


def test_shared_layer_has_one_row_per_variable(shell):
    setup(shell, """
keras.utils.set_random_seed(10)
shared = keras.layers.Dense(3, activation='tanh', name='shared')
inputs = keras.Input((3,))
model = keras.Model(inputs, keras.layers.Dense(1, name='out')(shared(shared(inputs))), name='siamese')
x = tf.constant([[0.1, -0.2, 0.3]])
""")
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(x))")
    assert [(row.layer, row.variable) for row in r.layers] == [
        ("siamese/shared", "kernel"), ("siamese/shared", "bias"), ("siamese/out", "kernel"), ("siamese/out", "bias")]
    model, x = shell.user_ns["model"], shell.user_ns["x"]
    check_against(r.layers, model, plain_gradients(model, lambda: tf.reduce_sum(model(x))))  # both uses summed


# -- the cell runs once ----------------------------------------------------------------
def test_a_training_step_in_the_cell_leaves_the_state_of_one_plain_run(shell):
    build = """
keras.utils.set_random_seed(11)
{name} = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name='{name}_dense'),
                           keras.layers.BatchNormalization(name='{name}_bn'), keras.layers.Dense(1, name='{name}_out')],
                          name='{name}')
{name}_opt = keras.optimizers.Adam(1e-2)
{name}_opt.build({name}.trainable_variables)
"""
    step = """
with tf.GradientTape() as inner:
    loss = tf.reduce_mean({name}({x}, training=True) ** 2)
grads = inner.gradient(loss, {name}.trainable_variables)
{name}_opt.apply_gradients(zip(grads, {name}.trainable_variables))
"""
    setup(shell, build.format(name="model") + build.format(name="twin")
          + "x = tf.constant(np.random.default_rng(12).normal(size=(8, 4)), tf.float32)")
    model, twin = shell.user_ns["model"], shell.user_ns["twin"]
    for a, b in zip(model.weights, twin.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())  # the same seed: the same model
    r, _ = tape(shell, "model.trainable_variables -t loss", step.format(name="model", x="x"))
    assert r.layers.target == "loss"
    setup(shell, step.format(name="twin", x="x"))  # one plain run of the same cell on the twin
    assert int(shell.user_ns["model_opt"].iterations.numpy()) == 1
    for a, b in zip(model.weights + model_opt_vars(shell, "model"), twin.weights + model_opt_vars(shell, "twin")):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))  # weights, BN statistics, slots
    rows = rows_by_path(r.layers)
    for variable, gradient in zip(twin.trainable_variables, shell.user_ns["grads"]):  # the twin's plain gradients
        np.testing.assert_allclose(rows[variable.path.replace("twin", "model")].norm, np.linalg.norm(gradient.numpy()),
                                   rtol=RTOL)


def model_opt_vars(shell, name: str) -> list:
    return list(shell.user_ns[f"{name}_opt"].variables)


# -- the table object --------------------------------------------------------------------
def test_table_indexes_and_becomes_a_dataframe(shell):
    pandas = pytest.importorskip("pandas")
    setup(shell, MLP)
    r, _ = tape(shell, "model.trainable_variables", MSE)
    frame = r.layers.to_pandas()
    assert list(frame.columns) == list(LAYER_COLUMNS) and len(frame) == 4
    assert frame["norm"].tolist() == [row.norm for row in r.layers]
    constructed = pandas.DataFrame(r.layers)
    assert constructed["layer"].tolist() == [row.layer for row in r.layers]
    assert r.layers[1:3] == r.layers.rows[1:3] and len(r.layers) == 4
    assert repr(r.layers).splitlines()[0].split() == ["layer", "variable", "shape", "||g||", "max|g|", "zeros",
                                                      "||g||/||w||", "flag"]
    assert repr(LayerTable()) == "LayerTable(no Keras model among the sources)"


# -- the views ---------------------------------------------------------------------------
SMALL = """
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, kernel_initializer='ones', name='d')], name='m')
inputs = tf.constant([[1.0, 2.0, 3.0]])
"""


def test_text_exact(shell):
    setup(shell, SMALL)
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(inputs) ** 2)")
    # out = [6, 6]; ∂loss/∂out = 12; ∂loss/∂kernel = [[12, 12], [24, 24], [36, 36]], ∂loss/∂bias = [12, 12]
    assert flow_view.text(r) == [
        "gradient flow by layer (∂loss/∂·, input layer first):",
        "layer  variable  shape   ||g||  max|g|  zeros  ||g||/||w||  flag",
        "m/d    kernel    (3, 2)  63.5   36      0%     25.9         exploding: ||g|| is 25.9x ||w||",
        "m/d    bias      (2,)    17     12      0%",
    ]
    assert r.to_text().endswith("\n".join(flow_view.text(r)))


def test_html_escapes_and_draws_a_log_chart(shell):
    setup(shell, SMALL.replace("name='d'", "name='d<b>&'"))
    r, _ = tape(shell, "model.trainable_variables", "loss = tf.reduce_sum(model(inputs) ** 2)")
    page = flow_view.html(r)
    assert "d<b>" not in page and "m/d&lt;b&gt;&amp;" in page
    assert "<script" not in page and page.count("<svg") == 1 and page.count("<rect") == 1
    assert flow_view.html(r) == page  # deterministic
    assert re.findall(r">1e(-?\d+)</text>", page) == ["1", "2"]  # 63.5 lies between 1e1 and 1e2
    assert f"fill:var({flow_view.FLAGGED[0]}, {flow_view.FLAGGED[1]})" in page  # its kernel explodes: a red bar
    assert f"fill:var({flow_view.TEXT[0]}, {flow_view.TEXT[1]})" in page


def test_chart_marks_layers_without_gradient_and_orders_input_first():
    svg = flow_view.chart([("m/a", "Dense", 1e-3), ("m/b", "BatchNormalization", None), ("m/c", "Dense", 2.0)])
    labels = re.findall(r"</title>([^<]+)</text>", svg)
    assert labels == ["m/a", "m/b", "m/c"]
    assert ">None</text>" in svg and svg.count("<rect") == 2
    widths = [float(w) for w in re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)"', svg)]
    assert widths[0] < widths[1]  # 1e-3 is shorter than 2 on the log scale
    assert re.findall(r">1e(-?\d+)</text>", svg) == ["-3", "-2", "-1", "0", "1"]


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


@pytest.mark.parametrize("pair", [flow_view.TEXT, flow_view.MUTED, flow_view.BAR, flow_view.FLAGGED, flow_view.NONE,
                                  flow_view.GRID])
def test_fallback_colours_contrast_on_white(pair):
    contrast = (1.0 + 0.05) / (_luminance(pair[1]) + 0.05)
    assert contrast >= 4.5, (pair, contrast)
    assert _luminance("#ffffff") == pytest.approx(1.0)
    assert (1.05 / (_luminance("#aaaaaa") + 0.05)) < 4.5  # the check can fail: a light grey does not pass


def test_no_keras_model_is_looked_for_without_a_namespace():
    assert flow_engine.owners(None, []) == ()
    assert flow_engine.owners({"w": tf.Variable(1.0)}, []) == ()
    empty = dataclasses.replace(LayerTable(), target="f")
    assert len(empty) == 0


def test_charts_share_a_span_and_flagged_layers_are_red():
    norms = [("m/a", "Dense", 0.5), ("m/b", "Dense", 5.0)]
    own, shared = flow_view.chart(norms), flow_view.chart(norms, span=(-4, 4), flagged={"m/b"})
    assert re.findall(r">1e(-?\d+)</text>", own) == ["-1", "0", "1"]
    assert re.findall(r">1e(-?\d+)</text>", shared) == [str(d) for d in range(-4, 5)]
    assert f"fill:var({flow_view.FLAGGED[0]}, {flow_view.FLAGGED[1]})" in shared
    assert f"fill:var({flow_view.FLAGGED[0]}" not in own
    assert flow_view.decades([0.5, None, 5.0, float("inf")]) == (-1, 1)


def test_the_table_shows_itself_in_a_notebook(shell):
    setup(shell, MLP)
    r, _ = tape(shell, "model.trainable_variables", MSE)
    assert r.layers._repr_html_() == flow_view.html(r) and "<svg" in r.layers._repr_html_()
    assert repr(r.layers).splitlines() == flow_view.text(r)[1:]
    assert LayerTable()._repr_html_() == ""


def test_a_layer_is_red_when_it_explodes_or_all_its_gradients_are_flagged():
    def row(layer, variable, norm, flag=""):
        return LayerRow(layer, "Dense", variable, (2,), norm, norm, 0.0, None, flag, None)
    table = LayerTable("loss", (
        row("m/healthy", "kernel", 1.0), row("m/healthy", "bias", 1e-9, "vanishing: ||g|| is 1e-09 of ||w||"),
        row("m/explodes", "kernel", 1e6, "exploding: ||g|| is 1e+05x ||w||"), row("m/explodes", "bias", 1.0),
        row("m/dead", "kernel", 0.0, "dead ReLU units: all 2"), row("m/dead", "bias", 0.0, "zero: the gradient is exactly 0 everywhere"),
        row("m/frozen", "kernel", None, "None: frozen layer (trainable=False)")))
    assert flow_view.flagged_layers(table) == {"m/explodes", "m/dead"}


def test_a_model_kept_in_a_dict_is_found(shell):
    setup(shell, MLP + "models = {'mlp': model}\ndel model")
    r, _ = tape(shell, "", "loss = tf.reduce_mean((models['mlp'](x) - y) ** 2)")
    assert r.layers.layer_names() == ["mlp/dense", "mlp/dense_1"]
    assert flow_engine.owners({"models": list(range(200)) + [shell.user_ns["models"]["mlp"]]},
                              [s.value for s in r.sources]) == ()  # not inside long lists


def test_a_wide_table_is_shown_one_block_per_layer():
    from tapemagic.render import text as text_view

    def row(layer, variable, norm, flag=""):
        return LayerRow(layer, "Dense", variable, (784, 128), norm, norm, 0.25, 0.5, flag, None)
    long = "a_model_with_a_long_name/an_inner_model_with_a_long_name/dense_layer"
    table = LayerTable("loss", (row(long, "kernel", 1.5), row(long, "bias", 1e-9, "vanishing: 1e-09 of the largest "
                                                                                  "layer's norm")))
    assert flow_view.WIDTH == text_view.WIDTH
    assert flow_view.text_table(table) == [
        "  variable  shape       ||g||  max|g|  zeros  ||g||/||w||",
        f"{long} (Dense)",
        "  kernel    (784, 128)  1.5    1.5     25%    0.5",
        "  bias      (784, 128)  1e-09  1e-09   25%    0.5",
        "    -> vanishing: 1e-09 of the largest layer's norm",
    ]
    short = LayerTable("loss", (row("m/d", "kernel", 1.5),))
    assert len(flow_view.text_table(short)) == 2 and flow_view.text_table(short)[1].startswith("m/d")
