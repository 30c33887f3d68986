"""Plain text: the text/plain of every result, deterministic for nbval and terminals."""
from __future__ import annotations

import textwrap
from typing import Any

from . import flow, table

__all__ = ["render", "WIDTH"]

WIDTH = 100  # prose wraps here, and a table wider than this is shown one source per block


def render(result: Any) -> str:
    """The whole result as aligned text: a header, a table per target, matrices, watched, notes."""
    lines = [f"tape: {table.header(result)}  ({table.settings(result)})"]
    for target in result.targets:
        if len(result.targets) > 1:
            lines.append(f"target {target.name}:")
        lines.extend(_grid(table.column_titles(result, target), [
            [row.source, row.shape, row.dtype, row.value, *row.derivatives] for row in table.rows(result, target)
        ]))
        for section in table.matrices(result, target):
            lines.append(f"{section.title}:")
            lines.extend(f"  {line}" for line in section.lines)
        lines.extend(_wrapped(line) for line in table.extras(result, target))
        lines.extend(_wrapped(f"* {line}") for line in table.reasons(result, target))
    watched = table.watched_rows(result)
    if watched:
        lines.append(_wrapped("watched: " + ", ".join(f"{name} {shape} {dtype}" + ("" if kind == "trainable" else f" ({kind})")
                                                      for name, shape, dtype, kind in watched)))
    else:
        lines.append("watched: no variables")
    lines.extend(_wrapped(f"note: {note}") for note in result.notes)
    lines.extend(flow.text(result))  # a Keras model's gradient flow by layer; nothing for other sources
    return "\n".join(lines)


def _grid(titles: list[str], body: list[list[str]]) -> list[str]:
    """Aligned columns; where they would be wider than WIDTH (a model's kernels summarised), one
    block per source instead, so a terminal or a Markdown export never wraps a table's rows."""
    if not body:
        return ["(no sources: name one, e.g. %%tape x)"]
    widths = [max(len(row[i]) for row in [titles, *body]) for i in range(len(titles))]
    if sum(widths) + 2 * (len(widths) - 1) <= WIDTH:
        return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [titles, *body]]
    lines = []
    label_width = max(len(title) for title in titles[3:])
    for row in body:
        lines.append(f"{row[0]}  {row[1]}  {row[2]}")
        lines.extend(f"  {title.ljust(label_width)}  {cell}" for title, cell in zip(titles[3:], row[3:]))
    return lines


def _wrapped(line: str) -> str:
    """A sentence wrapped at WIDTH, its continuation lines indented (never inside a word or a name)."""
    if len(line) <= WIDTH:
        return line
    return textwrap.fill(line, width=WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
