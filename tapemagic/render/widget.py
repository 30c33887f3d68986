"""The ipywidgets side, used only where the kernel is needed: the --explore sliders (and ``--display widget``).

The base view everywhere is the static HTML (``html.py``): JupyterLab shows "Error displaying widget: model not
found" for a widget in a reopened notebook and never falls back to the HTML beside it, and nbconvert picks the
widget view when widget state is saved. So a result's own output is text/plain + text/html, and --explore adds,
below it, a small widget with the sliders only. Moving a slider re-runs the cell and hands the new static output
(numbers and SVG plot) to a callback the magic supplies, which updates the displayed output in place: the last
position's result stays readable after the kernel is gone. Nothing here calls ``display()``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import time
from html import escape
from typing import Any, Callable

import numpy as np

from .. import _i18n
from .._i18n import _
from . import html, numbers, plot, table

__all__ = ["build", "bundle", "Explorer", "in_kernel", "nice_step"]


def in_kernel() -> bool:
    """True in a Jupyter kernel (where a frontend can render widgets), False in a terminal or script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def bundle(result: Any) -> dict[str, Any]:
    """The widget-view part of a MIME bundle (``--display widget``), or {} without ipywidgets."""
    try:
        view = build(result)
    except ImportError:
        return {}
    data = view._repr_mimebundle_()
    data.pop("text/plain", None)
    return data


def build(result: Any) -> Any:
    """The static view in an ipywidgets.HTML, in a VBox with the class ``tapemagic-view``."""
    import ipywidgets as w

    view = w.VBox([w.HTML(html.render(result))])
    view.add_class("tapemagic-view")
    return view


class Explorer:
    """Sliders for scalar float sources; moving one re-runs the cell and updates the static output.

    ``result.rerun(values)`` returns a new result for the given source values; it never touches the user's
    namespace. ``on_update(bundle)`` receives each new static output (text/plain and text/html with the plot).
    In a running event loop (a kernel) moves are throttled: the latest value runs at most every
    ``INTERVAL_SECONDS``, and the last move always runs.
    """

    INTERVAL_SECONDS = 0.05
    POINTS = 25  # the curve over the range: smooth at the plot's width, and one re-run each when another slider moves

    def __init__(self, result: Any, on_update: Callable[[dict[str, str]], None] | None = None) -> None:
        import ipywidgets as w

        self.result = result
        self.rerun: Callable[[dict[str, float]], Any] = result.rerun
        self.on_update = on_update
        self.sliders = {source.name: self._slider(w, source, result) for source in result.sources
                        if source.shape == () and source.dtype.startswith(("float", "bfloat"))}
        for slider in self.sliders.values():
            slider.observe(self._moved, names="value")
        self.error = w.HTML()
        self.box = w.VBox([*self.sliders.values(), self.error])
        self.box.add_class("tapemagic-explore")
        self.plot = ""  # the SVG of the last update
        self._curve: tuple[tuple[float, ...], plot.Curve] | None = None  # keyed by the other sliders' values
        self._scheduled: Any = None
        self._last_run = 0.0
        starts = {s.name: float(numbers.as_array(s.value)) for s in result.sources if s.name in self.sliders}
        if self.values() == starts:
            self.plot = self._plot(result) if self.sliders else ""  # the real run's own result, notes and all
        else:
            self.update()  # a value outside its --range: the slider starts at the nearest end

    @staticmethod
    def _slider(w: Any, source: Any, result: Any) -> Any:
        current = float(numbers.as_array(source.value))
        ranges = {name: (low, high) for name, low, high in result.spec.ranges}
        low, high = ranges.get(source.name, (current - 3.0, current + 3.0))
        return w.FloatSlider(value=min(max(current, low), high), min=low, max=high, step=nice_step(high - low),
                             description=source.name, continuous_update=True, readout_format=".3g")

    def values(self) -> dict[str, float]:
        return {name: slider.value for name, slider in self.sliders.items()}

    def bundle(self) -> dict[str, str]:
        """The static output at the sliders' values: what the magic displays and updates."""
        with _i18n.language(self.result.language):
            return {"text/plain": self.result.to_text(), "text/html": html.render(self.result, plot=self.plot)}

    def _moved(self, change: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not loop.is_running():
            self.update()
            return
        if self._scheduled is not None:
            return  # the run already scheduled reads the sliders when it runs, so it takes this move too
        wait = max(0.0, self._last_run + self.INTERVAL_SECONDS - time.perf_counter())
        self._scheduled = loop.call_later(wait, self._run_scheduled)

    def _run_scheduled(self) -> None:
        self._scheduled = None
        self._last_run = time.perf_counter()
        self.update()

    def update(self) -> None:
        """Re-run at the sliders' values; show the error under the sliders if the re-run fails."""
        values = self.values()
        try:
            result = self.rerun(values)
        except Exception as error:  # the view stays alive for the next value
            with _i18n.language(self.result.language):
                message = _("re-running the cell at {values} failed: {error}", values=_describe(values),
                            error=f"{type(error).__name__}: {error}")
            self.error.value = f'<div class="tapemagic"><div class="tm-why">{escape(message)}</div></div>'
            return
        self.error.value = ""
        # The re-run's numbers with the first result's display settings, and the variables the cell itself
        # watches (a re-run runs on constants at the sliders' values, so its own tape watched none of them).
        self.result = dataclasses.replace(result, display=self.result.display, precision=self.result.precision,
                                          max_elements=self.result.max_elements, watched=self.result.watched,
                                          language=self.result.language)
        self.plot = self._plot(result) if self.sliders else ""
        if self.on_update is not None:
            self.on_update(self.bundle())

    def _plot(self, result: Any) -> str:
        name = next(iter(self.sliders))
        g = result.gradients.get(name)
        slope = None if g is None else float(numbers.as_array(g))
        with _i18n.language(self.result.language):  # a slider's move comes outside the magic's language block
            return plot.svg(self._curve_for(name), float(self.sliders[name].value), _total(result.value), slope,
                            f"{result.target.name}({name})", table.derivative_label(result.target.name, name, 1))

    def _curve_for(self, name: str) -> plot.Curve:
        """The target and its derivative over the first slider's range: computed once, and again only when
        another slider has moved."""
        others = tuple(value for other, value in self.values().items() if other != name)
        if self._curve is not None and self._curve[0] == others:
            return self._curve[1]
        slider = self.sliders[name]
        grid = np.linspace(slider.min, slider.max, self.POINTS)
        values, slopes = np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
        for i, point in enumerate(grid.tolist()):
            try:
                r = self.rerun({**self.values(), name: point})
            except Exception:  # a point where the cell fails is a gap in the curve
                continue
            values[i] = _total(r.value)
            g = r.gradients.get(name)
            slopes[i] = np.nan if g is None else float(numbers.as_array(g))
        curve = plot.Curve(name, grid, values, slopes)
        self._curve = (others, curve)
        return curve


def _total(value: Any) -> float:
    """A target's value as one number (a structure of tensors is summed part by part, as the tape does; a
    SparseTensor, its stored values)."""
    data = numbers.as_array(value)
    if data.dtype == object:  # parts of different shapes (a tuple's tensors, a ragged tensor's rows)
        return float(sum(_total(part) for part in data.reshape(-1)))
    return float(np.sum(data))


def nice_step(span: float) -> float:
    """A slider step of 1, 2 or 5 times a power of ten, about a hundredth of the span, so round values lie on it."""
    raw = span / 100
    power = 10.0 ** np.floor(np.log10(raw))
    for factor in (5, 2, 1):
        if factor * power <= raw:
            return float(factor * power)
    return float(power)


def _describe(values: dict[str, float]) -> str:
    return ", ".join(f"{name} = {numbers.scalar(value, 4)}" for name, value in values.items())


class GraphStepper:
    """Step controls for ``--graph``: a choice of what to show (everything, the forward pass, the reverse pass;
    with ``--graph --forward`` also each source's tangents), a Play button and a step slider.

    Nothing runs again: the graph is laid out once (:class:`tapemagic.render.graph.Drawing`) and each step only
    redraws its SVG. ``on_update(bundle)`` receives each new static output (text/plain and text/html), exactly as
    for :class:`Explorer`; the magic updates the displayed output in place, so the saved notebook holds the view
    shown last (choose "all" to keep every value and adjoint there).
    """

    INTERVAL_MS = 900  # Play: one step every this many milliseconds

    def __init__(self, result: Any, on_update: Callable[[dict[str, str]], None] | None = None) -> None:
        import ipywidgets as w

        from . import graph as graph_view

        self.result = result
        self.on_update = on_update
        with _i18n.language(result.language):
            self.drawing = graph_view.Drawing(result.graph, result.precision, result.max_elements)
            self._controls(w, result)

    def _controls(self, w: Any, result: Any) -> None:
        self.phase = w.ToggleButtons(options=[(_("all"), "all"), (_("forward pass"), "forward"),
                                              (_("reverse pass"), "reverse")], value="all")
        sources = result.graph.forward_sources
        self.direction = w.ToggleButtons(options=[(_("adjoints"), "")] + [(_("tangents for {source}", source=s), s)
                                                                          for s in sources], value="")
        self.direction.layout.display = "" if sources else "none"
        self.play = w.Play(value=0, min=0, max=0, step=1, interval=self.INTERVAL_MS, disabled=True)
        self.slider = w.IntSlider(value=0, min=0, max=0, description=_("step"), disabled=True,
                                  continuous_update=True)
        w.jslink((self.play, "value"), (self.slider, "value"))
        self.phase.observe(self._phase_changed, names="value")
        self.direction.observe(lambda change: self.update(), names="value")
        self.slider.observe(lambda change: self.update(), names="value")
        self.box = w.VBox([self.phase, self.direction, w.HBox([self.play, self.slider])])
        self.box.add_class("tapemagic-graph-steps")

    def _phase_changed(self, change: dict[str, Any]) -> None:
        phase = change["new"]
        stepping = phase != "all"
        last = self.drawing.steps(phase) if stepping else 0
        self.play.playing = False  # a new phase starts paused at its first step, not playing on by itself
        with self.slider.hold_trait_notifications():
            self.slider.value = 0
            self.slider.max = last
            self.play.max = last
        self.slider.disabled = self.play.disabled = not stepping
        self.update()

    def view(self) -> tuple[str | None, int | None, str | None]:
        """(phase, step, direction) as the controls stand."""
        phase = None if self.phase.value == "all" else self.phase.value
        return phase, (None if phase is None else int(self.slider.value)), (self.direction.value or None)

    def graph_html(self) -> str:
        from . import graph as graph_view

        phase, step, direction = self.view()
        return graph_view.html(self.result.graph, self.result.precision, self.result.max_elements, phase, step,
                               direction if phase != "reverse" else None, drawing=self.drawing)

    def bundle(self) -> dict[str, str]:
        """The static output with the graph as the controls show it."""
        with _i18n.language(self.result.language):  # a step comes outside the magic's language block
            return {"text/plain": self.result.to_text(), "text/html": html.render(self.result, graph=self.graph_html())}

    def update(self) -> None:
        if self.on_update is not None:
            self.on_update(self.bundle())
