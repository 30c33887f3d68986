"""Plain text: the text/plain of every result, deterministic for nbval and terminals."""
from __future__ import annotations

from typing import Any

from . import flow, table

__all__ = ["render"]


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
        lines.extend(table.extras(result, target))
        lines.extend(f"* {line}" for line in table.reasons(result, target))
    watched = table.watched_rows(result)
    if watched:
        lines.append("watched: " + ", ".join(f"{name} {shape} {dtype}" + ("" if kind == "trainable" else f" ({kind})")
                                             for name, shape, dtype, kind in watched))
    else:
        lines.append("watched: no variables")
    lines.extend(f"note: {note}" for note in result.notes)
    lines.extend(flow.text(result))  # a Keras model's gradient flow by layer; nothing for other sources
    return "\n".join(lines)


def _grid(titles: list[str], body: list[list[str]]) -> list[str]:
    if not body:
        return ["(no sources: name one, e.g. %%tape x)"]
    widths = [max(len(row[i]) for row in [titles, *body]) for i in range(len(titles))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [titles, *body]]
