"""The ipywidgets view: a header and tabs, heatmaps, and --explore sliders.

Built from the same rows as the text and HTML views (``table``), so the three never
disagree. Every string shown goes through ``html.escape`` (HTML widgets render markup).
Returns widgets; never calls ``display()``.
"""
from __future__ import annotations

import asyncio
import io
from html import escape
from typing import Any, Callable

import numpy as np

from . import numbers, table
from .html import STYLE

__all__ = ["build", "bundle", "heatmap", "Explorer", "in_kernel"]

TAB_TITLES = ("Values and gradients", "Higher order", "Jacobian / Hessian", "Watched variables", "Notes")
HEATMAP_CELLS = 40  # larger matrices are averaged down to this many rows and columns
NUMBERS_IN_CELLS = 12  # matrices up to this size print their numbers in the cells


def in_kernel() -> bool:
    """True in a Jupyter kernel (where a frontend can render widgets), False in a terminal or script."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def bundle(result: Any, required: bool = False) -> dict[str, Any]:
    """The widget-view part of a MIME bundle, or {} where widgets cannot show."""
    if not (required or in_kernel()):
        return {}
    try:
        view = build(result)
    except ImportError:
        return {}
    data = view._repr_mimebundle_()
    data.pop("text/plain", None)
    return data


def build(result: Any, explorer: "Explorer | None" = None) -> Any:
    """The whole view as an ipywidgets.VBox."""
    import ipywidgets as w

    tabs = w.Tab(children=[w.HTML(_wrap(body)) for body in _tab_bodies(result)])
    tabs.titles = TAB_TITLES
    header = w.HTML(_header(result))
    children = [header, tabs]
    if result.spec.explore and explorer is None and getattr(result, "rerun", None) is not None:
        explorer = Explorer(result)
    if explorer is not None:
        explorer.follow(header, tabs)
        children.append(explorer.box)
    view = w.VBox(children)
    view.add_class("tapemagic-view")
    return view


def _header(result: Any) -> str:
    return _wrap(f'<div class="head">{escape(table.header(result))} '
                 f'<span class="settings">({escape(table.settings(result))})</span></div>')


def _wrap(body: str) -> str:
    return f'{STYLE}<div class="tapemagic">{body}</div>'


def _tab_bodies(result: Any) -> list[str]:
    from .html import _table

    values, chains, matrices = [], [], []
    for target in result.targets:
        title = f"<div>target <b>{escape(target.name)}</b></div>" if len(result.targets) > 1 else ""
        values.append(title + _table(result, target))
        values.extend(f'<div class="why">* {escape(line)}</div>' for line in table.reasons(result, target))
        values.extend(f"<div>{escape(line)}</div>" for line in table.extras(result, target))
        chains.append(title + _chains(result, target))
        for section in table.matrices(result, target):
            matrices.append(f"<div><b>{escape(section.title)}</b></div>")
            matrices.append(heatmap(section.data, result.precision) if section.data is not None and section.data.ndim >= 1
                            else f"<pre>{escape(chr(10).join(section.lines))}</pre>")
    if not matrices:
        matrices.append("<div>No Jacobian or Hessian: run the cell with --jacobian or --hessian.</div>")
    watched = table.watched_rows(result)
    watched_html = ("<table><thead><tr><th>variable</th><th>shape</th><th>dtype</th><th></th></tr></thead><tbody>"
                    + "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in watched)
                    + "</tbody></table>") if watched else "<div>The tape watched no variables.</div>"
    notes = [f'<div class="why">* {escape(line)}</div>' for target in result.targets for line in table.reasons(result, target)]
    notes += [f'<div class="note">{escape(note)}</div>' for note in result.notes]
    return ["".join(values), "".join(chains), "".join(matrices), watched_html,
            "".join(notes) or "<div>Nothing to note: every source was used as it was.</div>"]


def _chains(result: Any, target: Any) -> str:
    """y -> dy/dx -> d²y/dx² ... for each source."""
    rows = []
    p, m = result.precision, result.max_elements
    for source in result.sources:
        steps = [f"{escape(target.name)} = {escape(numbers.array(target.value, p, m))}"]
        for k in range(1, result.spec.order + 1):
            value = target.derivatives.get(k, {}).get(source.name)
            shown = "None" if value is None else numbers.array(value, p, m)
            steps.append(f"{escape(table.derivative_label(target.name, source.name, k))} = {escape(shown)}")
        rows.append("<div>" + " &rarr; ".join(steps) + "</div>")
    return "".join(rows) or "<div>(no sources)</div>"


def _colour(value: float, scale: float) -> str:
    """Diverging and zero-centred: blue below zero, white at zero, red above; grey for NaN/Inf."""
    if not np.isfinite(value):
        return "#bbbbbb"
    t = 0.0 if scale == 0 else max(-1.0, min(1.0, value / scale))
    if t >= 0:
        r, g, b = 255, int(255 * (1 - 0.75 * t)), int(255 * (1 - 0.8 * t))
    else:
        r, g, b = int(255 * (1 + 0.8 * t)), int(255 * (1 + 0.55 * t)), 255
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(data: np.ndarray, precision: int) -> str:
    """An HTML heatmap of a matrix: numbers in the cells when small, on hover always."""
    matrix = np.asarray(data, dtype=np.float64)
    matrix = matrix.reshape(matrix.shape[0], -1) if matrix.ndim >= 2 else matrix.reshape(1, -1)
    note = ""
    if max(matrix.shape) > HEATMAP_CELLS:
        matrix, note = _averaged(matrix)
    finite = matrix[np.isfinite(matrix)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    show_numbers = max(matrix.shape) <= NUMBERS_IN_CELLS
    size = "min-width:34px;height:22px;" if show_numbers else "width:8px;height:8px;padding:0;"
    rows = []
    for i, row in enumerate(matrix):
        cells = []
        for j, item in enumerate(row):
            text = numbers.scalar(float(item), precision)
            label = escape(text) if show_numbers else ""
            cells.append(f'<td title="[{i}, {j}] = {escape(text)}" style="{size}background:{_colour(float(item), scale)};'
                         f'text-align:center;border:1px solid #fff">{label}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    legend = (f'<div class="note">colour: blue &lt; 0 &lt; red, scale ±{escape(numbers.scalar(scale, precision))}; '
              f"grey: NaN/Inf{escape(note)}</div>")
    return f'<table class="heatmap">{"".join(rows)}</table>{legend}'


def _averaged(matrix: np.ndarray) -> tuple[np.ndarray, str]:
    rows = np.array_split(np.arange(matrix.shape[0]), min(HEATMAP_CELLS, matrix.shape[0]))
    cols = np.array_split(np.arange(matrix.shape[1]), min(HEATMAP_CELLS, matrix.shape[1]))
    small = np.array([[np.mean(matrix[np.ix_(r, c)]) for c in cols] for r in rows])
    return small, f"; {matrix.shape[0]}×{matrix.shape[1]} averaged in blocks to {small.shape[0]}×{small.shape[1]}"


class Explorer:
    """Sliders for scalar sources; moving one re-runs the cell and updates numbers and plot.

    ``result.rerun(values)`` returns a new result for the given source values; it never
    touches the user's namespace. Re-runs are debounced so a drag does not queue one per pixel.
    """

    DEBOUNCE_SECONDS = 0.15
    POINTS = 41

    def __init__(self, result: Any) -> None:
        import ipywidgets as w

        self.result = result
        self.rerun: Callable[[dict[str, float]], Any] = result.rerun
        scalars = [s for s in result.sources if s.shape == () and s.dtype.startswith(("float", "bfloat"))]
        ranges = {name: (low, high) for name, low, high in result.spec.ranges}
        self.sliders = {}
        for source in scalars:
            current = float(numbers.as_array(source.value))
            low, high = ranges.get(source.name, (current - 3.0, current + 3.0))
            slider = w.FloatSlider(value=min(max(current, low), high), min=low, max=high, step=nice_step(high - low),
                                   description=source.name, continuous_update=True, readout_format=".3g")
            slider.observe(self._moved, names="value")
            self.sliders[source.name] = slider
        self.numbers = w.HTML()
        self.error = w.HTML()
        self.plot = w.Image(format="png", layout=w.Layout(width="440px"))
        self._views: list[tuple[Any, Any]] = []
        self.box = w.VBox([*self.sliders.values(), self.error, self.numbers, self.plot])
        self.box.add_class("tapemagic-explore")
        self._pending: Any = None
        self.update()

    def follow(self, header: Any, tabs: Any) -> None:
        """Keep a view's header and tabs showing the numbers at the sliders' values."""
        self._views.append((header, tabs))

    def _moved(self, change: dict[str, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or not loop.is_running():
            self.update()
            return
        if self._pending is not None:
            self._pending.cancel()
        self._pending = loop.call_later(self.DEBOUNCE_SECONDS, self.update)

    def values(self) -> dict[str, float]:
        return {name: slider.value for name, slider in self.sliders.items()}

    def update(self) -> None:
        """Re-run at the sliders' values; show the error in the view if the re-run fails."""
        self._pending = None
        try:
            result = self.rerun(self.values())
        except Exception as error:  # the view stays alive for the next value
            self.error.value = _wrap(f'<div class="why">re-running the cell at {escape(_describe(self.values()))} failed: '
                                     f"{escape(type(error).__name__)}: {escape(str(error))}</div>")
            return
        self.error.value = ""
        self.result = result
        self.numbers.value = _wrap(_explore_numbers(result))
        for header, tabs in self._views:
            header.value = _header(result)
            for child, body in zip(tabs.children, _tab_bodies(result)):
                child.value = _wrap(body)
        if self.sliders:
            try:
                self.plot.value = self._figure(result)
            except Exception as error:
                self.error.value = _wrap(f'<div class="why">plotting failed: {escape(type(error).__name__)}: {escape(str(error))}</div>')

    def _figure(self, result: Any) -> bytes:
        # A Figure of its own, drawn by the Agg canvas directly: pyplot's backend (the user's
        # %matplotlib inline, say) is never touched.
        from matplotlib.figure import Figure

        name = next(iter(self.sliders))
        slider = self.sliders[name]
        grid = np.linspace(slider.min, slider.max, self.POINTS)
        values, slopes = [], []
        for point in grid:
            try:
                r = self.rerun({**self.values(), name: float(point)})
                values.append(float(np.sum(numbers.as_array(r.value))))
                g = r.gradients.get(name)
                slopes.append(np.nan if g is None else float(numbers.as_array(g)))
            except Exception:
                values.append(np.nan)
                slopes.append(np.nan)
        x0 = slider.value
        y0 = float(np.sum(numbers.as_array(result.value)))
        g0 = result.gradients.get(name)
        figure = Figure(figsize=(5.5, 4.4), dpi=100)
        top, bottom = figure.subplots(2, 1, sharex=True)
        top.plot(grid, values, label=f"{result.target.name}({name})")
        if g0 is not None:
            slope = float(numbers.as_array(g0))
            top.plot(grid, y0 + slope * (grid - x0), "--", label=f"tangent, slope {numbers.scalar(slope, 4)}")
        top.plot([x0], [y0], "o")
        top.legend(loc="best", fontsize=8)
        bottom.plot(grid, slopes, color="tab:green", label=table.derivative_label(result.target.name, name, 1))
        bottom.axvline(x0, color="grey", lw=0.8)
        bottom.legend(loc="best", fontsize=8)
        bottom.set_xlabel(name)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return buffer.getvalue()


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


def _explore_numbers(result: Any) -> str:
    p, m = result.precision, result.max_elements
    parts = [f"{escape(table.header(result))}"]
    for source in result.sources:
        g = result.gradients.get(source.name)
        parts.append(f"{escape(table.derivative_label(result.target.name, source.name, 1))} = "
                     f"{escape('None' if g is None else numbers.array(g, p, m))}")
    return '<div class="explore-numbers">' + ", ".join(parts) + "</div>"
