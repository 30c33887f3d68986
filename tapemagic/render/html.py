"""Static HTML: what nbconvert, GitHub and nbviewer show. Every string is escaped."""
from __future__ import annotations

from html import escape
from typing import Any

from . import table

__all__ = ["render", "STYLE"]

STYLE = (
    "<style>"
    ".tapemagic{font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.4}"
    ".tapemagic table{border-collapse:collapse;margin:4px 0}"
    ".tapemagic th,.tapemagic td{padding:2px 10px;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}"
    ".tapemagic th{font-weight:600;background:#f4f4f6}"
    ".tapemagic .none{color:#b35c00}.tapemagic .bad{background:#fde2e2}"
    ".tapemagic .head{font-weight:600}.tapemagic .settings{color:#666;font-weight:400}"
    ".tapemagic .why{color:#7a4a00}.tapemagic .note{color:#555}"
    ".tapemagic pre{margin:2px 0 6px 12px}"
    "</style>"
)


def render(result: Any) -> str:
    parts = [STYLE, '<div class="tapemagic">',
             f'<div class="head">{escape(table.header(result))} '
             f'<span class="settings">({escape(table.settings(result))})</span></div>']
    for target in result.targets:
        if len(result.targets) > 1:
            parts.append(f"<div>target <b>{escape(target.name)}</b></div>")
        parts.append(_table(result, target))
        for section in table.matrices(result, target):
            parts.append(f"<div>{escape(section.title)}</div><pre>{escape(chr(10).join(section.lines))}</pre>")
        parts.extend(f"<div>{escape(line)}</div>" for line in table.extras(result, target))
        parts.extend(f'<div class="why">* {escape(line)}</div>' for line in table.reasons(result, target))
    watched = table.watched_rows(result)
    parts.append("<div>watched: " + (escape(", ".join(f"{n} {s} {d}" for n, s, d, _ in watched)) or "no variables") + "</div>")
    parts.extend(f'<div class="note">note: {escape(note)}</div>' for note in result.notes)
    parts.append("</div>")
    return "".join(parts)


def _table(result: Any, target: Any) -> str:
    rows = table.rows(result, target)
    if not rows:
        return "<div>(no sources: name one, e.g. %%tape x)</div>"
    head = "".join(f"<th>{escape(title)}</th>" for title in table.column_titles(result, target))
    body = []
    for row in rows:
        cells = [row.source, row.shape, row.dtype, row.value, *row.derivatives]
        tds = []
        for index, cell in enumerate(cells):
            classes = []
            if cell.startswith("None"):
                classes.append("none")
            if row.nonfinite and index >= 3 and any(bad in cell for bad in ("nan", "inf")):
                classes.append("bad")
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            tds.append(f"<td{attribute}>{escape(cell)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
