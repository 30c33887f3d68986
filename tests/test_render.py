"""Renderers: exact text, escaped HTML, number formatting, summaries of big tensors."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

import tapemagic
from tapemagic.render import numbers


def test_numbers_are_deterministic_and_rounded():
    assert numbers.scalar(24.0, 4) == "24"
    assert numbers.scalar(np.float32(0.1).item(), 4) == "0.1"
    assert numbers.scalar(1 / 3, 4) == "0.3333"
    assert numbers.scalar(1.5e-7, 4) == "1.5e-07"
    assert numbers.scalar(2.5e9, 4) == "2.5e+09"
    assert numbers.scalar(float("nan"), 4) == "nan" and numbers.scalar(float("-inf"), 4) == "-inf"
    assert numbers.array(np.array([[1.0, 2.0], [3.0, 4.0]]), 4, 12) == "[[1, 2], [3, 4]]"


def test_big_tensors_are_summarized_on_one_line():
    text = numbers.array(np.arange(1000, dtype=np.float32), 4, 12)
    assert text == "shape (1000,) min 0 max 999 mean 499.5 [0, 1, 2, 3, 4, 5, …]"


def test_text_view_exact():
    r = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=2, hessian=True)
    assert r.to_text() == "\n".join([
        "tape: f = 42  (order 2, non-persistent, auto-watch, eager)",
        "source  shape  dtype    value  ∂f/∂·  ∂²f/∂·²",
        "x       ()     float32  3      24     8",
        "y       ()     float32  4      10     0",
        "Hessian of f over (x, y), shape (2, 2):",
        "  [8  6]",
        "  [6  0]",
        "watched: no variables",
        "note: x was a Python number; the cell ran with it as a float32 tf.constant",
        "note: y was a Python number; the cell ran with it as a float32 tf.constant",
        "note: eager tapes: the first run of this code, so the derivatives come from the real run's tapes; a",
        "  compiled trace pays for itself only when code runs again, so it is made if this runs again",
    ])
    assert "0x" not in r.to_text() and "at 0x" not in repr(r)


def test_text_view_with_none_and_watched():
    x = tf.Variable(3.0, name="x")
    z = tf.Variable(1.0, name="z")
    r = tapemagic.tape("y = x * x", ["x", "z"], namespace={"x": x, "z": z})
    assert r.to_text().splitlines() == [
        "tape: y = 9  (order 1, non-persistent, auto-watch, eager)",
        "source  shape  dtype    value  ∂y/∂·",
        "x       ()     float32  3      6",
        "z       ()     float32  1      None*",
        "* ∂y/∂z is None: y does not depend on z: z is not used to compute y, or only through operations",
        "  without a gradient (integer casts, argmax, rounding, assignment).",
        "watched: x () float32, z () float32",
    ]


def test_text_view_of_a_model_is_one_block_per_source_and_fits_a_terminal():
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu", name="hidden"),
                              keras.layers.Dense(10, name="out")], name="mlp")
    x = tf.random.stateless_normal((8, 784), seed=(1, 2))
    namespace = {"model": model, "x": x, "tf": tf}
    text = tapemagic.tape("loss = tf.reduce_mean(model(x) ** 2)", [], namespace=namespace).to_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 160, text
    kernel = lines.index("mlp/hidden/kernel  (784, 128)  float32")
    assert lines[kernel + 1].startswith("  value     shape (784, 128) min ")
    assert lines[kernel + 2].startswith("  ∂loss/∂·  shape (784, 128) min ")


def test_html_escapes_every_user_string():
    namespace = {"tf": tf, "x": tf.Variable(2.0)}
    r = tapemagic.tape("y = x * 3", ["x"], namespace=namespace)
    r = r.with_display(display="html")
    bad = r.__class__(spec=r.spec, targets=r.targets, sources=r.sources, watched=r.watched,
                      notes=("<img src=x onerror=alert(1)>", "<script>alert(1)</script>"))
    html = bad.to_html()
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;" in html


def test_display_modes_pick_the_mime_types():
    r = tapemagic.tape(lambda x: x * x, [2.0])
    assert set(r.with_display(display="text")._repr_mimebundle_()) == {"text/plain"}
    assert set(r.with_display(display="html")._repr_mimebundle_()) == {"text/plain", "text/html"}
    assert r.with_display(display="none")._repr_mimebundle_() == {"text/plain": ""}


def test_html_view_exact_header_and_values_table():
    r = tapemagic.tape(lambda x: x * x, [2.0])
    page = r.to_html()
    assert page.startswith('<style>') and '</style><div class="tapemagic"><div class="tm-head">tape: f = 4 ' \
        '<span class="tm-settings">(order 1, non-persistent, auto-watch, eager)</span></div>' in page
    assert ('<table class="tm-values"><thead><tr><th>source</th><th>shape</th><th>dtype</th><th>value</th>'
            '<th>∂f/∂·</th></tr></thead><tbody><tr><td>x</td><td>()</td><td>float32</td><td>2</td><td>4</td></tr>'
            '</tbody></table>') in page
    assert page.endswith('<div>watched: no variables</div><details class="tm-section" open><summary>Notes (1)</summary>'
                         '<div class="tm-note">note: x was a Python number; the cell ran with it as a float32 '
                         'tf.constant</div></details></div>')


def test_vectors_in_the_html_view_carry_every_element_to_copy():
    r = tapemagic.tape(lambda v: tf.reduce_sum(v * v), [tf.constant([0.1, 0.2])])
    assert ('<td>[0.1, 0.2]<details class="tm-copy"><summary>all 2 as Python</summary><pre style="') in r.to_html()
    assert "np.array([0.1, 0.2], dtype=np.float32)</pre>" in r.to_html()


def test_an_empty_jacobian_renders_in_every_view():
    e = tf.Variable([1.0, 2.0, 3.0])
    r = tapemagic.tape("y = e[:0] * 2", ["e"], namespace={"e": e}, jacobian=True)
    assert tuple(r.jacobian["e"].shape) == (0, 3)
    html = r.with_display(display="html").to_html()
    assert "(empty: shape (0, 3))" in html
    assert "tape: y" in r.to_text()
