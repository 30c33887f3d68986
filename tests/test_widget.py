"""The widget side (--display widget, the --explore sliders) and what the static view shows in its sections.

The view a user reads is the static HTML (the widget of --display widget holds the same HTML); its rendering in a
browser is test_browser.py.
"""
from __future__ import annotations

import asyncio
import time

import ipywidgets as w
import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from tapemagic._api import new_engine, run_code
from tapemagic._spec import parse_line
from tapemagic.render import heatmap, html, widget

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def view_html(result) -> str:
    """The HTML inside the widget view, which is the static view itself."""
    view = result.widget()
    assert isinstance(view, w.VBox) and "tapemagic-view" in view._dom_classes
    (inner,) = view.children
    assert isinstance(inner, w.HTML) and inner.value == html.render(result)
    return inner.value


def test_scalars():
    r = tapemagic.tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=2, hessian=True)
    page = view_html(r)
    assert "f = 42" in page and "order 2" in page
    assert "<td>24</td>" in page and "<td>8</td>" in page
    assert "f = 42 &rarr; ∂f/∂x = 24 &rarr; ∂²f/∂x² = 8" in page
    assert 'title="H[0, 1] = 6.0"' in page and "Hessian of f over (x, y)" in page
    assert "no variables" in page
    assert "the cell ran with it as a float32 tf.constant" in page


def test_vectors_matrices_and_watched_variables():
    kernel = tf.Variable(np.arange(6.0).reshape(2, 3), name="kernel")
    bias = tf.Variable(np.array([0.5, -0.5, 1.0]), name="bias")
    namespace = {"tf": tf, "kernel": kernel, "bias": bias, "x": tf.constant([[1.0, 2.0]], tf.float64)}
    r = tapemagic.tape("y = tf.reduce_sum(tf.matmul(x, kernel) + bias)", [], namespace=namespace, jacobian=True)
    page = view_html(r)
    assert "<td>kernel</td>" in page and "[[1, 1, 1], [2, 2, 2]]" in page
    assert "<td>kernel</td><td>(2, 3)</td><td>float64</td><td>trainable</td>" in page
    assert "<td>bias</td>" in page
    assert "Jacobian ∂y/∂kernel" in page


def test_none_gradient_reason_is_under_the_values():
    namespace = {"tf": tf, "x": tf.Variable(1.0), "z": tf.Variable(2.0)}
    r = tapemagic.tape("y = x * 2", ["x", "z"], namespace=namespace)
    page = view_html(r)
    values_end = page.index("</table>")
    assert "None*" in page[:values_end]
    assert page.index('<div class="tm-why">* ∂y/∂z is None: y does not depend on z') == values_end + len("</table>")


def test_nan_is_highlighted():
    r = tapemagic.tape(lambda x: tf.sqrt(x), [tf.constant([-1.0, 4.0])])
    page = view_html(r)
    assert 'class="tm-bad"' in page and "nan" in page


def test_large_tensor_is_summarized_and_heatmap_averaged():
    x = tf.constant(np.linspace(-1, 1, 200))
    r = tapemagic.tape(lambda x: tf.reduce_sum(x**3), [x], hessian=True)
    page = view_html(r)
    assert "shape (200,) min -1 max 1" in page
    assert "200×200 shown as 40×40 blocks of up to 5×5" in page
    grid = page[page.index('<table class="tm-heatmap"'):]
    assert grid[:grid.index("</table>")].count("<td ") == 40 * 40


def test_heatmap_is_zero_centred():
    page = heatmap.render(np.array([[-2.0, 0.0], [1.0, 2.0]]), 4)
    assert 'title="H[0, 1] = 0.0"' in page and "background:#f7f7f7" in page  # zero is near-white, framed grey
    assert 'title="H[0, 0] = -2.0"' in page and "background:#2166ac" in page  # the most negative is blue
    assert 'title="H[1, 1] = 2.0"' in page and "background:#b2182b" in page  # the most positive is red


def explore(code: str, line: str, namespace: dict):
    return run_code(new_engine(), parse_line(line), code, namespace)


def test_explore_sliders_rerun_and_errors_keep_the_view_alive():
    namespace = {"tf": tf, "x": tf.Variable(1.0)}
    code = "if float(x) > 2.5:\n    raise ValueError('too big')\ny = x ** 3"
    assert tapemagic.tape(code, ["x"], namespace=dict(namespace)).rerun is None  # only --explore can re-run
    r = explore(code, "x --explore --range x=-2:4", namespace)
    shown: list[dict] = []
    explorer = widget.Explorer(r, on_update=shown.append)
    slider = explorer.sliders["x"]
    assert (slider.min, slider.max, slider.value) == (-2.0, 4.0, 1.0)
    assert "x       ()     float32  1      3" in explorer.bundle()["text/plain"] and '<svg class="tm-plot"' in explorer.bundle()["text/html"]
    assert not shown  # the first output is the real run's result: nothing re-ran yet
    slider.value = 2.0
    assert "tape: y = 8" in shown[-1]["text/plain"] and "<td>12</td>" in shown[-1]["text/html"]
    slider.value = 3.0
    assert "too big" in explorer.error.value and len(shown) == 1  # the output keeps the last good result
    slider.value = -1.0
    assert explorer.error.value == "" and "<td>3</td>" in shown[-1]["text/html"] and "tape: y = -1" in shown[-1]["text/plain"]
    assert float(namespace["x"].numpy()) == 1.0  # the user's variable is untouched
    assert "tapemagic-explore" in explorer.box._dom_classes and list(explorer.box.children)[:1] == [slider]


def test_explore_plot_axes_stay_fixed_and_the_curve_is_computed_once():
    namespace = {"tf": tf, "x": tf.Variable(1.0)}
    r = explore("y = x ** 3", "x --explore --range x=-2:2", namespace)
    calls = []
    rerun = r.rerun

    def counting(values):
        calls.append(values)
        return rerun(values)

    explorer = widget.Explorer(r)
    explorer.rerun = counting
    before = explorer.plot
    explorer.sliders["x"].value = 1.5
    assert len(calls) == 1  # one re-run per move: the curve over the range is not recomputed
    frame = before[:before.index("<polyline")]  # the axes' frame and range labels
    assert explorer.plot.startswith(frame) and explorer.plot != before


def test_explore_throttle_runs_the_latest_value_and_always_the_last():
    namespace = {"tf": tf, "x": tf.Variable(1.0)}
    r = explore("y = x ** 2", "x --explore --range x=-3:3", namespace)
    shown: list[dict] = []
    explorer = widget.Explorer(r, on_update=shown.append)

    async def drag() -> None:
        slider = explorer.sliders["x"]
        for value in np.linspace(-3, 3, 60):
            slider.value = float(np.round(value, 2))
            await asyncio.sleep(0.004)  # far faster than the throttle's interval
        await asyncio.sleep(explorer.INTERVAL_SECONDS * 4)

    started = time.perf_counter()
    asyncio.run(drag())
    elapsed = time.perf_counter() - started
    assert 1 <= len(shown) <= elapsed / explorer.INTERVAL_SECONDS + 2  # throttled: not one run per move
    assert "tape: y = 9" in shown[-1]["text/plain"] and "<td>6</td>" in shown[-1]["text/html"]  # the last value ran


def test_slider_steps_are_round():
    assert widget.nice_step(6.0) == 0.05 and widget.nice_step(1.0) == 0.01 and widget.nice_step(20.0) == 0.2


def test_no_widget_view_unless_asked(monkeypatch):
    r = tapemagic.tape(lambda x: x * x, [2.0])
    monkeypatch.setattr(widget, "in_kernel", lambda: True)  # even in a kernel, a plain result is static
    assert set(r._repr_mimebundle_()) == {"text/plain", "text/html"}
    bundle = r.with_display(display="widget")._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", WIDGET_VIEW}


def test_without_ipywidgets_the_bundle_falls_back_to_html_and_text(monkeypatch):
    import sys

    r = tapemagic.tape(lambda x: x * x, [2.0]).with_display(display="widget")
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # as if ipywidgets were not installed
    bundle = r._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    assert "tape: f = 4" in bundle["text/plain"] and "<td>4</td>" in bundle["text/html"]


@pytest.mark.parametrize("display", ["auto", "html", "widget"])
def test_the_magic_shows_explore_as_a_static_output_updated_in_place(shell, display_updates, display):
    from IPython.utils.capture import capture_output

    updates = display_updates
    shell.run_cell("x = tf.Variable(3.0)\ny = tf.Variable(4.0)")
    with capture_output() as captured:
        returned = shell.run_cell_magic("tape", f"x y --explore --display {display} -o r", "f = x**2 * y + y + 2")
    assert returned is None  # shown by the magic (static output, then sliders), not again as Out[]
    static, sliders = captured.outputs
    assert set(static.data) == {"text/plain", "text/html"} and "tape: f = 42" in static.data["text/plain"]
    assert '<svg class="tm-plot"' in static.data["text/html"] and '<table class="tm-values">' in static.data["text/html"]
    assert WIDGET_VIEW in sliders.data
    r = shell.user_ns["r"]
    from ipywidgets import Widget

    box = Widget.widgets[sliders.data[WIDGET_VIEW]["model_id"]]
    assert "tapemagic-explore" in box._dom_classes
    box.children[0].value = 2.0  # x
    (display_id, bundle), = updates
    assert "tape: f = 22" in bundle["text/plain"] and "<td>16</td>" in bundle["text/html"]  # 2xy at x = 2
    assert display_id and "watched: x () float32, y () float32" in bundle["text/plain"]  # as the cell watches them
    assert float(shell.user_ns["x"].numpy()) == 3.0 and r.value.numpy() == 42.0  # the user's state is untouched
