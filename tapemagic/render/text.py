"""Plain text: the text/plain of every result, deterministic for nbval and terminals."""
from __future__ import annotations

from typing import Any

from .._i18n import _
from . import flow, table, wrap

__all__ = ["render", "WIDTH"]

WIDTH = 100  # prose wraps here, and a table wider than this is shown one source per block


def render(result: Any) -> str:
    """The whole result as aligned text: a header, a table per target, matrices, watched, notes."""
    lines = [_("tape: {values}  ({settings})", values=table.header(result), settings=table.settings(result))]
    for target in result.targets:
        if len(result.targets) > 1:
            lines.append(_("target {target}:", target=target.name))
        lines.extend(_grid(table.column_titles(result, target), [
            [row.source, row.shape, row.dtype, row.value, *row.derivatives] for row in table.rows(result, target)
        ]))
        for section in table.matrices(result, target):
            lines.append(_("{title}:", title=section.title))
            lines.extend(f"  {line}" for line in section.lines)
        lines.extend(_wrapped(line) for line in table.extras(result, target))
        lines.extend(_wrapped(f"* {line}") for line in table.reasons(result, target))
    if getattr(result, "graph", None) is not None:  # --graph: the nodes in the order they ran, value and adjoint
        from . import graph

        lines.extend(graph.text(result.graph, result.precision, result.max_elements))
    watched = table.watched_rows(result)
    if watched:
        lines.append(_wrapped(_("watched: {variables}", variables=", ".join(
            f"{name} {shape} {dtype}" + ("" if variable.trainable else f" ({kind})")
            for (name, shape, dtype, kind), variable in zip(watched, result.watched)))))
    else:
        lines.append(_("watched: no variables"))
    lines.extend(_wrapped(_("note: {note}", note=note)) for note in result.notes)
    lines.extend(flow.text(result))  # a Keras model's gradient flow by layer; nothing for other sources
    return "\n".join(lines)


def _grid(titles: list[str], body: list[list[str]]) -> list[str]:
    """Aligned columns; where they would be wider than WIDTH (a model's kernels summarised), one
    block per source instead, so a terminal or a Markdown export never wraps a table's rows."""
    if not body:
        return [_("(no sources: name one, e.g. %%tape x)")]
    widths = [max(wrap.width(row[i]) for row in [titles, *body]) for i in range(len(titles))]
    if sum(widths) + 2 * (len(widths) - 1) <= WIDTH:
        return ["  ".join(wrap.ljust(cell, width) for cell, width in zip(row, widths)).rstrip()
                for row in [titles, *body]]
    lines = []
    label_width = max(wrap.width(title) for title in titles[3:])
    for row in body:
        lines.append(f"{row[0]}  {row[1]}  {row[2]}")
        lines.extend(f"  {wrap.ljust(title, label_width)}  {cell}" for title, cell in zip(titles[3:], row[3:]))
    return lines


def _wrapped(line: str) -> str:
    """A sentence wrapped at WIDTH columns, its continuation lines indented (never inside a word or a name; a
    Chinese sentence between characters)."""
    return wrap.fill(line, WIDTH)
