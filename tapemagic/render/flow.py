"""The gradient flow of a Keras model, by layer: text lines and static HTML (a table and an SVG chart).

Both read ``result.layers`` (:mod:`tapemagic.engine.flow`) and show nothing when it is empty.
Deterministic (nbval compares text/plain and text/html); every user string is escaped; the
chart is inline SVG coloured with JupyterLab's CSS variables and light-theme fallbacks.
"""
from __future__ import annotations

import dataclasses
import math
from html import escape
from typing import Any, Collection, Sequence

from .._i18n import _
from . import wrap

__all__ = ["text", "text_table", "html", "table_html", "chart", "decades", "flagged_layers",
           "TEXT", "MUTED", "BAR", "FLAGGED", "NONE", "GRID"]
# Colours: a JupyterLab variable and the fallback a plain HTML page (nbviewer, GitHub) gets.
# Each fallback has a contrast of at least 4.5:1 on white (tests/test_flow.py measures it).
TEXT = ("--jp-content-font-color1", "#1f1f1f")
MUTED = ("--jp-content-font-color2", "#555555")
BAR = ("--jp-brand-color1", "#1565c0")
FLAGGED = ("--jp-error-color1", "#c62828")
NONE = ("--jp-warn-color0", "#9a4a00")
GRID = ("--jp-border-color2", "#767676")

WIDTH = 100  # render.text.WIDTH: the text view's lines stay within it


def _titles() -> tuple[str, ...]:
    return (_("layer"), _("variable"), _("shape"), "||g||", "max|g|", _("zeros"), "||g||/||w||", _("flag"))

_ROW_HEIGHT = 20
_CHAR_WIDTH = 7  # an 11px monospace character, with room to spare
_MAX_LABEL = 32  # characters of a layer's path shown; the whole path is in the label's tooltip
_VALUE_WIDTH = 70


def _colour(pair: tuple[str, str]) -> str:
    return f"var({pair[0]}, {pair[1]})"


def _number(value: float | None) -> str:
    """Three significant digits, the same on every machine: 63.5, 0.0771, 9.46e-08, inf."""
    return "None" if value is None else f"{float(value):.3g}"


def _percent(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.3g}%"


def _cells(row: Any) -> list[str]:
    shape = "(" + ", ".join(str(d) for d in row.shape) + ("," if len(row.shape) == 1 else "") + ")"
    return [row.layer, row.variable, shape, _number(row.norm), "" if row.norm is None else _number(row.max_abs),
            _percent(row.zeros), "" if row.relative is None else _number(row.relative), row.flag]


# -- text -----------------------------------------------------------------------------------------

def text_table(table: Any) -> list[str]:
    """The table's rows as aligned lines (no heading); empty for an empty table. Where one line
    per row would be wider than WIDTH (long layer paths, long flags), one block per layer instead,
    each flag on its own line under its row, so no terminal or Markdown export wraps a row."""
    if not len(table):
        return []
    body = [_cells(row) for row in table]
    flat = _aligned([list(_titles()), *body])
    if max(wrap.width(line) for line in flat) <= WIDTH:
        return flat
    return _blocks(table)


def _aligned(rows: list[list[str]], indent: str = "") -> list[str]:
    widths = [max(wrap.width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [(indent + "  ".join(wrap.ljust(cell, width) for cell, width in zip(row, widths))).rstrip()
            for row in rows]


def _blocks(table: Any) -> list[str]:
    numbers_of = {id(row): _cells(row)[1:7] for row in table}
    aligned = iter(_aligned([list(_titles()[1:7]), *numbers_of.values()], indent="  "))
    lines = [next(aligned)]
    for name in table.layer_names():
        rows = table[name]
        lines.append(f"{name} ({rows[0].kind})")
        for row in rows:
            lines.append(next(aligned))
            if row.flag:
                lines.append(f"    -> {row.flag}")
    return lines


def text(result: Any) -> list[str]:
    """The lines the text view appends for a Keras model: a heading and the table."""
    table = result.layers
    if not len(table):
        return []
    return [_("gradient flow by layer ({label}, input layer first):", label=f"∂{table.target}/∂·"), *text_table(table)]


# -- HTML -----------------------------------------------------------------------------------------

_STYLE = (
    "<style>"
    ".tapemagic-flow{font-family:var(--jp-code-font-family,monospace);font-size:12px;"
    f"color:{_colour(TEXT)}}}"
    ".tapemagic-flow table{border-collapse:collapse;margin:4px 0}"
    ".tapemagic-flow th,.tapemagic-flow td{padding:2px 8px;text-align:left;"
    f"border-bottom:1px solid {_colour(GRID)}}}"
    ".tapemagic-flow td{white-space:nowrap}.tapemagic-flow td.number{text-align:right}"
    f".tapemagic-flow .flag{{color:{_colour(FLAGGED)};white-space:normal}}"
    f".tapemagic-flow .none{{color:{_colour(NONE)}}}"
    "</style>"
)


def html(result: Any) -> str:
    """A heading, the chart of per-layer norms, and the table; "" when ``result.layers`` is empty."""
    return table_html(result.layers)


def table_html(table: Any) -> str:
    """:func:`html` for a :class:`~tapemagic.LayerTable` itself (what ``r.layers`` shows in a notebook)."""
    if not len(table):
        return ""
    heading = _("gradient flow by layer ({label}, input layer first)", label=f"∂{table.target}/∂·")
    return (f'{_STYLE}<div class="tapemagic-flow"><div><b>{escape(heading)}</b></div>'
            f"{chart(table.layer_norms(), flagged=flagged_layers(table))}{_html_table(table)}</div>")


def flagged_layers(table: Any) -> set[str]:
    """Layers whose bar is red: one of its gradients explodes, or every gradient it has is flagged
    (a layer is not red for a small bias beside a healthy kernel)."""
    red = set()
    for name in table.layer_names():
        measured = [row for row in table[name] if row.norm is not None]
        if any(_exploding(row) for row in measured) or (
                measured and all(row.flag and not _frozen(row) for row in measured)):
            red.add(name)
    return red


def _kind(flag: str) -> str:
    """What a flag says, in any language: the engine's flags carry a ``kind`` (``engine/words.py``); a plain
    English flag (a table built by hand) is read by its first word."""
    kind = getattr(flag, "kind", "")
    if kind or not flag:
        return kind
    return "none" if flag.startswith("None") else flag.split(":")[0].split()[0]


def _exploding(row: Any) -> bool:
    return _kind(row.flag) == "exploding"


def _frozen(row: Any) -> bool:
    return _kind(row.flag) == "frozen"


def _html_table(table: Any) -> str:
    head = "".join(f"<th>{escape(title)}</th>" for title in _titles())
    body = []
    for row in table:
        cells = _cells(row)
        tds = []
        for index, cell in enumerate(cells):
            classes = (["number"] if 3 <= index <= 6 else []) + (
                ["none"] if cell == "None" or (index == 7 and _kind(row.flag) == "none") else
                ["flag"] if index == 7 and cell else [])
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f"<td{attribute}>{escape(cell)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def decades(norms: Sequence[float | None]) -> tuple[int, int]:
    """A log10 range of whole decades around every finite, positive norm (charts that share
    one range can be compared side by side)."""
    positive = [n for n in norms if n is not None and math.isfinite(n) and n > 0]
    if not positive:
        return -1, 0
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return low, max(high, low + 1)


@dataclasses.dataclass(frozen=True)
class _Frame:
    """Where a chart draws: the label column's width, the bars' width, the log10 range."""

    label_width: int
    bar_width: int
    low: int
    high: int

    def x(self, norm: float) -> float:
        position = (math.log10(norm) - self.low) / (self.high - self.low)
        return self.label_width + self.bar_width * min(max(position, 0.0), 1.0)


def chart(layer_norms: Sequence[tuple[str, str, float | None]], span: tuple[int, int] | None = None,
          flagged: Collection[str] = (), bar_width: int = 300) -> str:
    """Horizontal bars, one per layer (input layer at the top), their length the gradient norm on a
    log scale over ``span`` (decades; default: around these norms); a layer without any gradient
    is written "None" in place of a bar, a ``flagged`` layer's bar is red."""
    low, high = span or decades([norm for _, _, norm in layer_norms])
    longest = max((min(len(name), _MAX_LABEL) for name, _, _ in layer_norms), default=8)
    frame = _Frame(12 + _CHAR_WIDTH * longest, bar_width, low, high)
    top = 22
    height = top + _ROW_HEIGHT * len(layer_norms) + 6
    width = frame.label_width + bar_width + _VALUE_WIDTH
    label = _("gradient norm per layer, log scale, input layer first")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape(label)}" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" style="font-family:var(--jp-code-font-family,'
             f'monospace);font-size:11px"><title>{escape(label)}</title>']
    parts.extend(_axis(frame, height, top))
    for index, (name, kind, norm) in enumerate(layer_norms):
        parts.extend(_bar(frame, index, top, name, kind, norm, name in flagged))
    parts.append("</svg>")
    return "".join(parts)


def _axis(frame: _Frame, height: int, top: int) -> list[str]:
    parts = []
    for decade in range(frame.low, frame.high + 1):
        x = frame.x(10.0 ** decade)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}" '
                     f'style="stroke:{_colour(GRID)};stroke-width:0.5"/>')
        parts.append(f'<text x="{x:.1f}" y="{top - 8}" text-anchor="middle" '
                     f'style="fill:{_colour(MUTED)}">1e{decade}</text>')
    return parts


def _bar(frame: _Frame, index: int, top: int, name: str, kind: str, norm: float | None, flagged: bool) -> list[str]:
    y = top + index * _ROW_HEIGHT
    middle = y + _ROW_HEIGHT / 2 + 4
    shown = name if len(name) <= _MAX_LABEL else "…" + name[-(_MAX_LABEL - 1):]
    parts = [f'<text x="{frame.label_width - 6}" y="{middle:.1f}" text-anchor="end" style="fill:{_colour(TEXT)}">'
             f"<title>{escape(f'{name} ({kind})')}</title>{escape(shown)}</text>"]
    if norm is None or norm == 0:
        words = "None" if norm is None else "0"
        parts.append(f'<text x="{frame.label_width + 4}" y="{middle:.1f}" style="fill:{_colour(NONE)}">{words}</text>')
        return parts
    finite = math.isfinite(norm)
    end = frame.x(norm) if finite else frame.label_width + frame.bar_width
    colour = _colour(FLAGGED if flagged or not finite else BAR)
    parts.append(f'<rect x="{frame.label_width}" y="{y + 3}" width="{max(end - frame.label_width, 1.0):.1f}" '
                 f'height="{_ROW_HEIGHT - 6}" style="fill:{colour}"/>')
    parts.append(f'<text x="{end + 4:.1f}" y="{middle:.1f}" style="fill:{_colour(TEXT)}">'
                 f"{escape(_number(norm))}</text>")
    return parts
