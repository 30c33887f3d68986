"""Heatmaps of Jacobians and Hessians as plain HTML tables an engineer can read.

Row and column indices, a colour bar with the scale, zeros visible on light and dark pages (a grey grid around
near-white cells), the element on hover (``title``), and on a down-sampled map the block a cell stands for
(rows a–b, cols c–d, mean, min, max). Numbers sit in the cells where they fit.

Colours are literal and inline: JupyterLab's sanitizer keeps inline literal colours in untrusted output but
drops ``var()`` and ``<style>``, and a cell sets its own text colour (black or white, whichever contrasts more
with its background), so the map reads the same in every theme.
"""
from __future__ import annotations

from html import escape
from typing import Any

import numpy as np

from .._i18n import _
from . import numbers

__all__ = ["render", "colour", "dark_colour", "level", "text_colour", "STYLE", "NEGATIVE", "ZERO", "POSITIVE",
           "NONFINITE", "DARK_PAGE", "LEVELS", "MAX_CELLS"]

MAX_CELLS = 40  # larger matrices are averaged in blocks down to at most this many rows and columns
FIT_WIDTH_PX = 760  # numbers go in the cells when a row of them fits in about this width
NEGATIVE, ZERO, POSITIVE = (33, 102, 172), (247, 247, 247), (178, 24, 43)  # ColorBrewer RdBu ends and middle
NONFINITE = (158, 158, 158)
GRID = "#9e9e9e"  # the cell borders: a mid grey, visible on a white page and on a dark one
BAR_STEPS = 11
LEVELS = 20  # colour steps each side of zero (5 % apart)
DARK_PAGE = (17, 17, 17)  # JupyterLab Dark's --jp-layout-color0: zero is the page itself, framed by the grid


def _hex(rgb: tuple[int, ...]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def level(value: float, scale: float) -> int | None:
    """The colour step of a value: -LEVELS (most negative) .. 0 .. LEVELS (most positive); None for NaN/Inf."""
    if not np.isfinite(value):
        return None
    t = 0.0 if scale == 0 else max(-1.0, min(1.0, value / scale))
    return int(round(t * LEVELS))


def _mix(step: int | None, middle: tuple[int, int, int], nonfinite: tuple[int, int, int]) -> tuple[int, int, int]:
    if step is None:
        return nonfinite
    end, s = (POSITIVE if step >= 0 else NEGATIVE), abs(step) / LEVELS
    return tuple(round(m + s * (e - m)) for m, e in zip(middle, end))  # type: ignore[return-value]


def colour(value: float, scale: float) -> tuple[int, int, int]:
    """Diverging and zero-centred on a light page: blue below zero, near-white at zero, red above; grey for NaN/Inf."""
    return _mix(level(value, scale), ZERO, NONFINITE)


def dark_colour(step: int | None) -> tuple[int, int, int]:
    """The same step on a dark page: from the page's own colour at zero to the same blue and red ends."""
    return _mix(step, DARK_PAGE, (97, 97, 97))


def _class(step: int | None) -> str:
    return "tm-hnan" if step is None else f"tm-h{'p' if step > 0 else 'n' if step < 0 else ''}{abs(step)}"


# A dark JupyterLab, Notebook 7 or nbconvert --theme dark marks its body data-jp-theme-light="false": there the
# cells take the dark steps and white numbers (the inline literal colours, for every other page, are overridden).
STYLE = "<style>" + "".join(
    f'[data-jp-theme-light="false"] .tapemagic .{_class(step)}{{background:{_hex(dark_colour(step))}!important;'
    "color:#fff!important}"
    for step in [None, *range(-LEVELS, LEVELS + 1)]) + "</style>"


def luminance(rgb: tuple[float, ...]) -> float:
    """WCAG relative luminance of an sRGB colour given as 0..255 channels."""
    def linear(channel: float) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (linear(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on the background."""
    black, white = (0, 0, 0), (255, 255, 255)
    return black if contrast(black, background) >= contrast(white, background) else white


def _blocks(size: int) -> list[np.ndarray]:
    """Index ranges, at most MAX_CELLS of them, covering 0..size-1 in order."""
    return np.array_split(np.arange(size), min(MAX_CELLS, size)) if size else []


def render(data: Any, precision: int, symbol: str = "H") -> str:
    """A heatmap of a matrix (a vector is one row; more dimensions are flattened after the first).

    Vectorised: each block's mean, min, max and count of finite elements come from NumPy reductions over the
    blocks, and each colour step's class and colours are made once; the loop over the (at most 40 × 40) cells
    only joins strings. Per cell, NumPy calls had cost 50 to 170 ms a map, far more than the derivatives."""
    original = numbers.as_array(data)
    if original.size == 0:  # a Jacobian of an empty target, say: (0, 3) cannot be reshaped with -1
        empty = _("(empty: shape {shape})", shape=str(tuple(original.shape)))
        return f'<div class="tm-note">{escape(empty)}</div>'
    matrix = original.reshape(original.shape[0], -1) if original.ndim >= 2 else original.reshape(1, -1)
    # float32 and float64 as they are (the reductions sum in float64); anything else as float64
    values = matrix if matrix.dtype in (np.float32, np.float64) else matrix.astype(np.float64)
    row_blocks, col_blocks = _blocks(matrix.shape[0]), _blocks(matrix.shape[1])
    sampled = len(row_blocks) < matrix.shape[0] or len(col_blocks) < matrix.shape[1]
    # What each cell shows: the element, or its block's mean; the colour scale is that of what is shown.
    stats = _BlockStats(values, row_blocks, col_blocks)
    shown = stats.shown
    finite = shown[np.isfinite(shown)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    text_of = _Formatter(precision)
    texts = None if sampled else [[text_of(item) for item in row] for row in matrix.tolist()]
    width = max((len(t) for row in texts for t in row), default=1) * 7 + 8 if texts else 0
    show_numbers = texts is not None and matrix.shape[1] * width <= FIT_WIDTH_PX
    titles = stats.titles(text_of) if sampled else None
    label_every = 1 if len(col_blocks) <= 20 else 5
    head = "".join(_index_cell(block, j, label_every) for j, block in enumerate(col_blocks))
    rows = [f'<tr><th style="{_INDEX}"></th>{head}</tr>']
    steps = _levels(shown, scale)
    opening = {}  # (step, text shown) -> the cell's tag up to its title
    for i, rows_in in enumerate(row_blocks):
        cells = []
        r = int(rows_in[0])
        for j, cols_in in enumerate(col_blocks):
            c = int(cols_in[0])
            title = titles[i][j] if titles is not None else f"{symbol}[{r}, {c}] = {numbers.element(matrix[r, c])}"
            text = texts[r][c] if show_numbers else ""
            step = int(steps[i, j])
            key = (step, bool(text))
            if key not in opening:
                opening[key] = _opening(None if step == _NONFINITE_STEP else step, bool(text), width)
            before, after = opening[key]
            cells.append(f'{before}{escape(title)}{after}{escape(text)}</td>')
        rows.append(f'<tr>{_index_cell(rows_in, i, 1 if len(row_blocks) <= 20 else 5)}{"".join(cells)}</tr>')
    table = f'<table class="tm-heatmap" style="border-collapse:collapse;margin:4px 0">{"".join(rows)}</table>'
    return f'<div style="overflow-x:auto">{table}{_colour_bar(scale, precision, stats.finite, matrix.shape, row_blocks, col_blocks)}</div>'


_NONFINITE_STEP = 2 * LEVELS + 1  # stands for level()'s None in an integer array


def _levels(shown: np.ndarray, scale: float) -> np.ndarray:
    """level() of every cell at once (NumPy rounds half to even, as round() does); _NONFINITE_STEP for NaN/Inf."""
    finite = np.isfinite(shown)
    if scale == 0:
        t = np.zeros_like(shown)
    else:
        with np.errstate(invalid="ignore", over="ignore"):
            t = np.clip(np.where(finite, shown, 0.0) / scale, -1.0, 1.0)
    return np.where(finite, np.round(t * LEVELS), _NONFINITE_STEP).astype(np.int64)


def _opening(step: int | None, text: bool, width: int) -> tuple[str, str]:
    """A cell's tag around its title, for a colour step, with or without a number in it."""
    background = _mix(step, ZERO, NONFINITE)
    style = f"border:1px solid {GRID};background:{_hex(background)}"
    if text:
        style = (f"min-width:{width}px;height:20px;padding:0 3px;font-size:11px;text-align:center;{style};"
                 f"color:{_hex(text_colour(background))}")
    else:  # no number: a small square (its colour, and its title on hover) is all it needs
        style = f"width:12px;height:12px;padding:0;{style}"
    return f'<td class="{_class(step)}" title="', f'" style="{style}">'


class _Formatter:
    """numbers.scalar at one precision, each distinct value formatted once (a map repeats its zeros)."""

    def __init__(self, precision: int) -> None:
        self.precision = precision
        self._done: dict[float, str] = {}

    def __call__(self, value: Any) -> str:
        try:
            return self._done[value]
        except KeyError:
            text = self._done[value] = numbers.scalar(value, self.precision)
            return text
        except TypeError:  # not hashable
            return numbers.scalar(value, self.precision)


class _BlockStats:
    """Per block of a matrix: the mean (NaN where any element is NaN/Inf), and over its finite elements the
    mean, min and max, with the count of the others. Blocks are consecutive ranges (np.array_split), so each
    statistic is one reduceat along the rows and one along the columns."""

    def __init__(self, values: np.ndarray, row_blocks: list[np.ndarray], col_blocks: list[np.ndarray]) -> None:
        self.row_blocks, self.col_blocks = row_blocks, col_blocks
        rows, cols = [int(b[0]) for b in row_blocks], [int(b[0]) for b in col_blocks]

        def reduce(ufunc: Any, array: np.ndarray) -> np.ndarray:
            # along the rows' contiguous memory first: 2 to 4 times faster than the other order
            return ufunc.reduceat(ufunc.reduceat(array, cols, axis=1, dtype=np.float64), rows, axis=0)

        self.sizes = np.outer([len(b) for b in row_blocks], [len(b) for b in col_blocks])
        finite = np.isfinite(values)
        self.finite = bool(finite.all())
        if self.finite:  # the usual case: no masking
            self.counts = self.sizes
            self.sums = reduce(np.add, values)
            self.mins, self.maxs = reduce(np.minimum, values), reduce(np.maximum, values)
        else:
            self.counts = reduce(np.add, finite).astype(np.int64)
            self.sums = reduce(np.add, np.where(finite, values, 0.0))
            self.mins = reduce(np.minimum, np.where(finite, values, np.inf))
            self.maxs = reduce(np.maximum, np.where(finite, values, -np.inf))
        with np.errstate(invalid="ignore", divide="ignore"):
            self.finite_means = self.sums / self.counts
        self.shown = np.where(self.counts == self.sizes, self.sums / self.sizes, np.nan)

    def titles(self, text_of: "_Formatter") -> list[list[str]]:
        """What hovering a block says: its rows, cols and element count, and its mean, min and max."""
        def span(index: np.ndarray) -> str:
            return f"{int(index[0])}–{int(index[-1])}" if len(index) > 1 else str(int(index[0]))

        rows, cols = [span(b) for b in self.row_blocks], [span(b) for b in self.col_blocks]
        plain = _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}")
        some_bad = _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}, {bad} nan/inf")
        all_bad = _("rows {rows}, cols {cols} ({count} elements): all nan/inf")
        out = []
        for i, row in enumerate(rows):
            line = []
            for j, col in enumerate(cols):
                count, finite = int(self.sizes[i, j]), int(self.counts[i, j])
                if not finite:
                    line.append(all_bad.format(rows=row, cols=col, count=count))
                    continue
                stats = dict(rows=row, cols=col, count=count, mean=text_of(float(self.finite_means[i, j])),
                             min=text_of(float(self.mins[i, j])), max=text_of(float(self.maxs[i, j])))
                line.append(some_bad.format(bad=count - finite, **stats) if finite < count else plain.format(**stats))
            out.append(line)
        return out


_INDEX = "font-size:10px;font-weight:400;padding:0 3px;text-align:right;border:0;background:none;opacity:.8"


def _index_cell(block: np.ndarray, position: int, every: int) -> str:
    """A row or column index: the element's, or the first of its block's (all of it on hover)."""
    first, last = int(block[0]), int(block[-1])
    label = str(first) if position % every == 0 else ""
    title = f' title="{first}–{last}"' if last > first else ""
    return f'<th style="{_INDEX}"{title}>{label}</th>'


def _swatch(value: float, scale: float, title: str) -> str:
    step = level(value, scale)
    return (f'<span class="{_class(step)}" title="{escape(title)}" style="display:inline-block;width:16px;height:10px;'
            f'border:1px solid {GRID};background:{_hex(colour(value, scale))}"></span>')


def _colour_bar(scale: float, precision: int, finite: bool, shape: tuple[int, ...],
                row_blocks: list[np.ndarray], col_blocks: list[np.ndarray]) -> str:
    """The legend: the scale's ends, its colours, what a grey cell and a block mean."""
    steps = np.linspace(-scale, scale, BAR_STEPS) if scale else np.zeros(1)
    swatches = "".join(_swatch(float(v), scale, numbers.scalar(float(v), precision)) for v in steps)
    limit = numbers.scalar(scale, precision)
    legend = _("blue < 0 < red")
    parts = [f'<span>{"-" + limit if scale else "0"}</span>', f'<span style="display:inline-flex">{swatches}</span>',
             f"<span>{'+' + limit if scale else ''}</span>", f"<span>{escape(legend)}</span>"]
    if not finite:
        parts.append(f"<span>{_swatch(float('nan'), scale, 'nan/inf')} nan/inf</span>")
    if len(row_blocks) < shape[0] or len(col_blocks) < shape[1]:
        rows_per, cols_per = -(-shape[0] // len(row_blocks)), -(-shape[1] // len(col_blocks))
        blocks = _("{shape} shown as {blocks} blocks of up to {size}, coloured by their mean; hover a cell for its "
                   "rows, cols, mean, min and max", shape=f"{shape[0]}×{shape[1]}",
                   blocks=f"{len(row_blocks)}×{len(col_blocks)}", size=f"{rows_per}×{cols_per}")
        parts.append(f"<span>{escape(blocks)}</span>")
    return ('<div class="tm-colourbar" style="display:flex;flex-wrap:wrap;align-items:center;gap:6px;font-size:11px">'
            + "".join(parts) + "</div>")
