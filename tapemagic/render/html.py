"""Static HTML: the view every frontend shows (JupyterLab, Notebook 7, a reopened or untrusted notebook, nbconvert,
VS Code, GitHub). Plain HTML, no script: collapsible ``<details>`` sections, heatmaps as tables, every long value
copyable as Python. Every user string is escaped.

Hooks other code relies on (the browser test): the root ``div.tapemagic``, ``table.tm-values``, ``.tm-heatmap``,
``.tm-why`` (None explanations), ``.tm-note``, ``details.tm-section``, and ``svg.tm-plot`` for --explore.
"""
from __future__ import annotations

from html import escape
from typing import Any

from .._i18n import _
from . import flow, heatmap, numbers, table
from .style import STYLE

__all__ = ["render", "section", "copyable", "STYLE", "COPY_LIMIT"]

COPY_LIMIT = 10_000  # elements; a larger value is not embedded in the page (the result object has it)
_PRE = "white-space:pre;overflow:auto;max-height:18em;max-width:64em;margin:2px 0 4px 0"


def render(result: Any, plot: str | None = None, graph: str | None = None) -> str:
    """The whole result; ``plot`` is the --explore SVG, shown after the targets' tables; ``graph`` the --graph
    section's body at a step (the step controls' view), else the whole graph."""
    parts = [_header(result)]
    if getattr(result, "graph", None) is not None:  # --graph: the cell's computation graph comes first
        from . import graph as graph_view

        body = graph if graph is not None else graph_view.html(result.graph, result.precision, result.max_elements)
        parts.append(section(graph_view.section_title(), body))
    gradient_flow = flow.html(result) if getattr(result, "models", None) else ""
    if gradient_flow:  # for a Keras model, the first thing to see: where the gradients are small, None or huge
        parts.append(section(_("Gradient flow by layer"), gradient_flow))
    for target in result.targets:
        parts.extend(_target(result, target))
    if plot:
        parts.append(plot)
    parts.extend(_result_sections(result))
    body = "".join(parts)
    sheets = STYLE + (heatmap.STYLE if 'class="tm-heatmap"' in body else "")
    return f'{sheets}<div class="tapemagic">{body}</div>'


def section(title: str, body: str, open_: bool = True) -> str:
    """A collapsible section: plain ``<details>``, which needs no script and survives sanitizers."""
    return (f'<details class="tm-section"{" open" if open_ else ""}><summary>{escape(title)}</summary>'
            f"{body}</details>")


def _header(result: Any) -> str:
    values = _("tape: {values}", values=table.header(result))
    settings = _("({settings})", settings=table.settings(result))
    return f'<div class="tm-head">{escape(values)} <span class="tm-settings">{escape(settings)}</span></div>'


def _target(result: Any, target: Any) -> list[str]:
    heading = _("target {target}", target=target.name)
    parts = [f'<div class="tm-head">{escape(heading)}</div>'] if len(result.targets) > 1 else []
    parts.append(_values_table(result, target))
    parts.extend(f'<div class="tm-why">* {escape(line)}</div>' for line in table.reasons(result, target))
    parts.extend(f"<div>{escape(line)}</div>" for line in table.extras(result, target))
    if result.spec.order >= 2:  # at order 1 a chain would only repeat the first derivative
        parts.append(section(_("Higher orders"), _chains(result, target)))
    parts.extend(_matrix(result, matrix) for matrix in table.matrices(result, target))
    return parts


def _result_sections(result: Any) -> list[str]:
    """Sections about the whole result, in order (a model's gradient flow comes first, in :func:`render`)."""
    sections = [_watched(result)]
    if result.notes:
        notes = "".join('<div class="tm-note">' + escape(_("note: {note}", note=note)) + "</div>" for note in result.notes)
        sections.append(section(_("Notes ({count})", count=len(result.notes)), notes))
    return sections


def copyable(value: Any, what: str) -> str:
    """Every element of a non-scalar value, as Python to paste (``np.array([...], dtype=...)``), folded away."""
    data = numbers.as_array(value)
    if data.size <= 1 or data.dtype.kind not in "biufc":
        return ""
    if data.size > COPY_LIMIT:
        message = _("{count} elements: more than {limit} are not embedded in the page; store the result (-o r) "
                    "and read {what} from it", count=data.size, limit=COPY_LIMIT, what=what)
        return f'<div class="tm-note">{escape(message)}</div>'
    summary = _("all {count} as Python", count=data.size)
    return (f'<details class="tm-copy"><summary>{escape(summary)}</summary>'
            f'<pre style="{_PRE}">{escape(numbers.python_literal(data))}</pre></details>')


def _values_table(result: Any, target: Any) -> str:
    rows = table.rows(result, target)
    if not rows:
        return '<div class="tm-note">' + escape(_("(no sources: name one, e.g. %%tape x)")) + "</div>"
    head = "".join(f"<th>{escape(title)}</th>" for title in table.column_titles(result, target))
    body = []
    for source, row in zip(result.sources, rows):
        raw = [source.value] + [target.derivatives.get(k, {}).get(source.name) for k in range(1, result.spec.order + 1)]
        labels = [_("the value of {source}", source=source.name)] + [table.derivative_label(target.name, source.name, k)
                                                    for k in range(1, result.spec.order + 1)]
        cells = [f"<td>{escape(text)}</td>" for text in (row.source, row.shape, row.dtype)]
        for text, value, label in zip((row.value, *row.derivatives), raw, labels):
            cells.append(_value_cell(text, value, label, row.nonfinite))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="tm-values"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _value_cell(text: str, value: Any, label: str, row_nonfinite: bool) -> str:
    classes = []
    if text.startswith("None"):
        classes.append("tm-none")
    elif row_nonfinite and numbers.has_nonfinite(value):
        classes.append("tm-bad")
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    extra = "" if value is None else copyable(value, label)
    return f"<td{attribute}>{escape(text)}{extra}</td>"


def _chains(result: Any, target: Any) -> str:
    """f = 42 → ∂f/∂x = 24 → ∂²f/∂x² = 8, one line per source."""
    lines = []
    p, m = result.precision, result.max_elements
    for source in result.sources:
        steps = [f"{escape(target.name)} = {escape(numbers.array(target.value, p, m))}"]
        for k in range(1, result.spec.order + 1):
            value = target.derivatives.get(k, {}).get(source.name)
            shown = "None" if value is None else numbers.array(value, p, m)
            steps.append(f"{escape(table.derivative_label(target.name, source.name, k))} = {escape(shown)}")
        lines.append("<div>" + " &rarr; ".join(steps) + "</div>")
    return "".join(lines) or '<div class="tm-note">' + escape(_("(no sources)")) + "</div>"


def _matrix(result: Any, matrix: Any) -> str:
    if matrix.data is None:
        body = "".join(f'<div class="tm-why">{escape(line)}</div>' for line in matrix.lines)
        return section(matrix.title, body)
    symbol = "H" if matrix.kind == "hessian" else "J"
    if matrix.data.ndim == 0:
        return section(matrix.title, f"<div>{escape(numbers.scalar(matrix.data.item(), result.precision))}</div>")
    return section(matrix.title, heatmap.render(matrix.data, result.precision, symbol)
                   + copyable(matrix.data, matrix.name or matrix.title))


def _watched(result: Any) -> str:
    watched = table.watched_rows(result)
    if not watched:
        return "<div>" + escape(_("watched: no variables")) + "</div>"
    names = ", ".join(row[0] for row in watched[:4])
    if len(watched) > 4:
        names = _("{names}, … ({count} in all)", names=names, count=len(watched))
    rows = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in watched)
    head = "".join(f"<th>{escape(title)}</th>" for title in (_("variable"), _("shape"), "dtype", _("trainable")))
    body = f'<table class="tm-watched"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return section(_("watched: {variables}", variables=names), body, open_=len(watched) <= 4)
