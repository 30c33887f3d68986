"""The widget view's structure and contents (its rendering in a browser is test_browser.py)."""
from __future__ import annotations

import ipywidgets as w
import numpy as np
import tensorflow as tf

import tapemagic
from tapemagic.render import widget


def tabs_of(view):
    header, tabs = view.children[:2]
    assert isinstance(header, w.HTML) and isinstance(tabs, w.Tab)
    assert tuple(tabs.titles) == widget.TAB_TITLES
    return header.value, [child.value for child in tabs.children]


def test_scalars():
    r = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=2, hessian=True)
    header, (values, chains, matrices, watched, notes) = tabs_of(r.widget())
    assert "f = 42" in header and "order 2" in header
    assert "<td>24</td>" in values and "<td>8</td>" in values
    assert "f = 42 &rarr; ∂f/∂x = 24 &rarr; ∂²f/∂x² = 8" in chains
    assert 'title="[0, 1] = 6"' in matrices and "Hessian of f over (x, y)" in matrices
    assert "no variables" in watched
    assert "the cell ran with it as a float32 tf.constant" in notes


def test_vectors_matrices_and_watched_variables():
    kernel = tf.Variable(np.arange(6.0).reshape(2, 3), name="kernel")
    bias = tf.Variable(np.array([0.5, -0.5, 1.0]), name="bias")
    namespace = {"tf": tf, "kernel": kernel, "bias": bias, "x": tf.constant([[1.0, 2.0]], tf.float64)}
    r = tapemagic.tape("y = tf.reduce_sum(tf.matmul(x, kernel) + bias)", [], namespace=namespace, jacobian=True)
    _, (values, _, matrices, watched, _) = tabs_of(r.widget())
    assert "<td>kernel</td>" in values and "[[1, 1, 1], [2, 2, 2]]" in values
    assert "<td>kernel</td><td>(2, 3)</td><td>float64</td><td>trainable</td>" in watched
    assert "<td>bias</td>" in watched
    assert "Jacobian ∂y/∂kernel" in matrices


def test_none_gradient_reason_is_in_values_and_notes():
    namespace = {"tf": tf, "x": tf.Variable(1.0), "z": tf.Variable(2.0)}
    r = tapemagic.tape("y = x * 2", ["x", "z"], namespace=namespace)
    _, (values, _, _, _, notes) = tabs_of(r.widget())
    assert "None*" in values and "∂y/∂z is None: y does not depend on z" in values
    assert "∂y/∂z is None" in notes


def test_nan_is_highlighted():
    r = tapemagic.tape(lambda x: tf.sqrt(x), [tf.constant([-1.0, 4.0])])
    _, (values, *_) = tabs_of(r.widget())
    assert 'class="bad"' in values and "nan" in values


def test_large_tensor_is_summarized_and_heatmap_averaged():
    x = tf.constant(np.linspace(-1, 1, 200))
    r = tapemagic.tape(lambda x: tf.reduce_sum(x**3), [x], hessian=True)
    _, (values, _, matrices, _, _) = tabs_of(r.widget())
    assert "shape (200,) min -1 max 1" in values
    assert "200×200 averaged in blocks to 40×40" in matrices
    assert matrices.count("<td ") == 40 * 40


def test_heatmap_is_zero_centred():
    html = widget.heatmap(np.array([[-2.0, 0.0], [1.0, 2.0]]), 4)
    assert "background:#ffffff" in html  # zero is white
    assert 'title="[0, 0] = -2" style="min-width:34px;height:22px;background:#3272ff' in html  # the most negative is blue
    assert 'title="[1, 1] = 2" style="min-width:34px;height:22px;background:#ff3f32' in html  # the most positive is red
    assert 'title="[1, 1] = 2"' in html


def test_explore_sliders_rerun_and_errors_keep_the_view_alive():
    namespace = {"tf": tf, "x": tf.Variable(1.0)}
    r = tapemagic.tape("if float(x) > 2.5:\n    raise ValueError('too big')\ny = x ** 3", ["x"], namespace=namespace)
    assert r.rerun is None  # only --explore keeps a way to re-run
    from tapemagic._api import new_engine, run_code
    from tapemagic._spec import parse_line

    r = run_code(new_engine(), parse_line("x --explore --range x=-2:4"), "if float(x) > 2.5:\n    raise ValueError('too big')\ny = x ** 3", namespace)
    explorer = widget.Explorer(r)
    slider = explorer.sliders["x"]
    assert (slider.min, slider.max, slider.value) == (-2.0, 4.0, 1.0)
    assert "∂y/∂x = 3" in explorer.numbers.value and explorer.plot.value[:4] == b"\x89PNG"
    slider.value = 2.0
    assert "∂y/∂x = 12" in explorer.numbers.value
    slider.value = 3.0
    assert "too big" in explorer.error.value and "∂y/∂x = 12" in explorer.numbers.value
    slider.value = -1.0
    assert explorer.error.value == "" and "∂y/∂x = 3" in explorer.numbers.value
    assert float(namespace["x"].numpy()) == 1.0  # the user's variable is untouched
    view = widget.build(r)
    assert isinstance(view.children[-1], w.VBox) and "tapemagic-explore" in view.children[-1]._dom_classes
    slider = view.children[-1].children[0]
    slider.value = 2.0  # the tabs follow the slider, not only the numbers under it
    assert "y = 8" in view.children[0].value and "<td>12</td>" in view.children[1].children[0].value


def test_slider_steps_are_round():
    assert widget.nice_step(6.0) == 0.05 and widget.nice_step(1.0) == 0.01 and widget.nice_step(20.0) == 0.2


def test_widget_bundle_only_in_a_kernel_unless_asked():
    r = tapemagic.tape(lambda x: x * x, [2.0])
    assert widget.bundle(r) == {}  # no kernel here: text and HTML only
    data = widget.bundle(r, required=True)
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "application/vnd.jupyter.widget-view+json" in r.with_display(display="widget")._repr_mimebundle_()


def test_without_ipywidgets_the_bundle_falls_back_to_html_and_text(monkeypatch):
    import sys

    r = tapemagic.tape(lambda x: x * x, [2.0]).with_display(display="widget")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if ipywidgets were not installed
    bundle = r._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "tape: f = 4" in bundle["text/plain"] and "<td>4</td>" in bundle["text/html"]
