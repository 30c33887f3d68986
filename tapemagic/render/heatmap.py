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
    """A heatmap of a matrix (a vector is one row; more dimensions are flattened after the first)."""
    original = numbers.as_array(data)
    if original.size == 0:  # a Jacobian of an empty target, say: (0, 3) cannot be reshaped with -1
        empty = _("(empty: shape {shape})", shape=str(tuple(original.shape)))
        return f'<div class="tm-note">{escape(empty)}</div>'
    matrix = original.reshape(original.shape[0], -1) if original.ndim >= 2 else original.reshape(1, -1)
    values = matrix.astype(np.float64)
    row_blocks, col_blocks = _blocks(matrix.shape[0]), _blocks(matrix.shape[1])
    sampled = len(row_blocks) < matrix.shape[0] or len(col_blocks) < matrix.shape[1]
    # What each cell shows: the element, or its block's mean; the colour scale is that of what is shown.
    shown = np.array([[_block_mean(values[np.ix_(r, c)]) for c in col_blocks] for r in row_blocks])
    finite = shown[np.isfinite(shown)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    texts = None if sampled else [[numbers.scalar(item, precision) for item in row] for row in matrix.tolist()]
    width = max((len(t) for row in texts for t in row), default=1) * 7 + 8 if texts else 0
    show_numbers = texts is not None and matrix.shape[1] * width <= FIT_WIDTH_PX
    label_every = 1 if len(col_blocks) <= 20 else 5
    head = "".join(_index_cell(block, j, label_every) for j, block in enumerate(col_blocks))
    rows = [f'<tr><th style="{_INDEX}"></th>{head}</tr>']
    for i, rows_in in enumerate(row_blocks):
        cells = []
        for j, cols_in in enumerate(col_blocks):
            r, c = int(rows_in[0]), int(cols_in[0])
            title = (_block_title(rows_in, cols_in, values[np.ix_(rows_in, cols_in)], precision) if sampled
                     else f"{symbol}[{r}, {c}] = {numbers.element(matrix[r, c])}")
            cells.append(_cell(float(shown[i, j]), scale, title, texts[r][c] if show_numbers else "",
                               width if show_numbers else 0))
        rows.append(f'<tr>{_index_cell(rows_in, i, 1 if len(row_blocks) <= 20 else 5)}{"".join(cells)}</tr>')
    table = f'<table class="tm-heatmap" style="border-collapse:collapse;margin:4px 0">{"".join(rows)}</table>'
    return f'<div style="overflow-x:auto">{table}{_colour_bar(scale, precision, values, matrix.shape, row_blocks, col_blocks)}</div>'


_INDEX = "font-size:10px;font-weight:400;padding:0 3px;text-align:right;border:0;background:none;opacity:.8"


def _index_cell(block: np.ndarray, position: int, every: int) -> str:
    """A row or column index: the element's, or the first of its block's (all of it on hover)."""
    first, last = int(block[0]), int(block[-1])
    label = str(first) if position % every == 0 else ""
    title = f' title="{first}–{last}"' if last > first else ""
    return f'<th style="{_INDEX}"{title}>{label}</th>'


def _cell(value: float, scale: float, title: str, text: str, width: int) -> str:
    step = level(value, scale)
    background = colour(value, scale)
    style = f"border:1px solid {GRID};background:{_hex(background)}"
    if text:
        style = (f"min-width:{width}px;height:20px;padding:0 3px;font-size:11px;text-align:center;{style};"
                 f"color:{_hex(text_colour(background))}")
    else:  # no number: a small square (its colour, and its title on hover) is all it needs
        style = f"width:12px;height:12px;padding:0;{style}"
    return f'<td class="{_class(step)}" title="{escape(title)}" style="{style}">{escape(text)}</td>'


def _block_mean(block: np.ndarray) -> float:
    return float(np.mean(block)) if np.all(np.isfinite(block)) else float("nan")


def _block_title(rows: np.ndarray, cols: np.ndarray, block: np.ndarray, precision: int) -> str:
    def span(index: np.ndarray) -> str:
        return f"{int(index[0])}–{int(index[-1])}" if len(index) > 1 else str(int(index[0]))

    finite = block[np.isfinite(block)]
    where = dict(rows=span(rows), cols=span(cols), count=block.size)
    if not finite.size:
        return _("rows {rows}, cols {cols} ({count} elements): all nan/inf", **where)
    stats = dict(mean=numbers.scalar(float(finite.mean()), precision), min=numbers.scalar(float(finite.min()), precision),
                 max=numbers.scalar(float(finite.max()), precision))
    bad = block.size - finite.size
    if bad:
        return _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}, {bad} nan/inf",
                 bad=bad, **where, **stats)
    return _("rows {rows}, cols {cols} ({count} elements): mean {mean}, min {min}, max {max}", **where, **stats)


def _swatch(value: float, scale: float, title: str) -> str:
    step = level(value, scale)
    return (f'<span class="{_class(step)}" title="{escape(title)}" style="display:inline-block;width:16px;height:10px;'
            f'border:1px solid {GRID};background:{_hex(colour(value, scale))}"></span>')


def _colour_bar(scale: float, precision: int, values: np.ndarray, shape: tuple[int, ...],
                row_blocks: list[np.ndarray], col_blocks: list[np.ndarray]) -> str:
    """The legend: the scale's ends, its colours, what a grey cell and a block mean."""
    steps = np.linspace(-scale, scale, BAR_STEPS) if scale else np.zeros(1)
    swatches = "".join(_swatch(float(v), scale, numbers.scalar(float(v), precision)) for v in steps)
    limit = numbers.scalar(scale, precision)
    legend = _("blue < 0 < red")
    parts = [f'<span>{"-" + limit if scale else "0"}</span>', f'<span style="display:inline-flex">{swatches}</span>',
             f"<span>{'+' + limit if scale else ''}</span>", f"<span>{escape(legend)}</span>"]
    if not np.all(np.isfinite(values)):
        parts.append(f"<span>{_swatch(float('nan'), scale, 'nan/inf')} nan/inf</span>")
    if len(row_blocks) < shape[0] or len(col_blocks) < shape[1]:
        rows_per, cols_per = -(-shape[0] // len(row_blocks)), -(-shape[1] // len(col_blocks))
        blocks = _("{shape} shown as {blocks} blocks of up to {size}, coloured by their mean; hover a cell for its "
                   "rows, cols, mean, min and max", shape=f"{shape[0]}×{shape[1]}",
                   blocks=f"{len(row_blocks)}×{len(col_blocks)}", size=f"{rows_per}×{cols_per}")
        parts.append(f"<span>{escape(blocks)}</span>")
    return ('<div class="tm-colourbar" style="display:flex;flex-wrap:wrap;align-items:center;gap:6px;font-size:11px">'
            + "".join(parts) + "</div>")
