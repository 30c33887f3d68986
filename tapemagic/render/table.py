"""The rows every view shows, computed once from a result: text, HTML and widgets share them."""
from __future__ import annotations

import dataclasses
from typing import Any

from .._i18n import _
from . import numbers

__all__ = ["Row", "Section", "header", "settings", "rows", "derivative_label", "matrices", "watched_rows"]

_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
MATRIX_LIMIT = 64


def power(k: int) -> str:
    return "" if k == 1 else str(k).translate(_SUPERSCRIPTS)


def derivative_label(of: str, wrt: str, k: int) -> str:
    """∂f/∂x, ∂²f/∂x², …; an expression target in parentheses: ∂(x**3 + 1)/∂x."""
    if not of.isidentifier():
        of = f"({of})"
    return f"∂{power(k)}{of}/∂{wrt}{power(k)}"


@dataclasses.dataclass(frozen=True)
class Row:
    """One source of one target: the cells of the values-and-gradients table."""

    source: str
    shape: str
    dtype: str
    value: str
    derivatives: tuple[str, ...]
    none: bool
    nonfinite: bool


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled matrix (Jacobian or Hessian block) as lines of text, or a summary. ``kind`` is "jacobian" or
    "hessian"; ``name`` the title without the shape (what a copy of its values is called)."""

    title: str
    lines: tuple[str, ...]
    data: Any
    kind: str = "jacobian"
    name: str = ""


def header(result: Any) -> str:
    """``f = 42``, or ``f = 42, z = 27`` for several targets."""
    return ", ".join(f"{t.name} = {numbers.array(t.value, result.precision, result.max_elements)}" for t in result.targets)


def settings(result: Any) -> str:
    """``order 1, non-persistent, auto-watch, eager``: how the result was computed."""
    spec = result.spec
    paths = {"eager": _("eager"), "traced": _("traced")}
    persistence = _("persistent") if spec.persistent else _("non-persistent")
    watching = _("auto-watch") if spec.auto_watch else _("no auto-watch")
    return _("order {order}, {persistence}, {watching}, {path}", order=spec.order, persistence=persistence,
             watching=watching, path=paths.get(result.path, result.path))


def rows(result: Any, target: Any) -> list[Row]:
    out = []
    p, m = result.precision, result.max_elements
    for source in result.sources:
        cells = []
        none = False
        nonfinite = numbers.has_nonfinite(source.value)
        for k in range(1, result.spec.order + 1):
            value = target.derivatives.get(k, {}).get(source.name)
            if value is None:
                cells.append("None*" if k == 1 else "None")
                none = True
            else:
                cells.append(numbers.array(value, p, m))
                nonfinite = nonfinite or numbers.has_nonfinite(value)
        out.append(Row(
            source=source.name,
            shape=numbers.shape(source.shape),
            dtype=source.dtype,
            value=numbers.array(source.value, p, m),
            derivatives=tuple(cells),
            none=none,
            nonfinite=nonfinite,
        ))
    return out


def column_titles(result: Any, target: Any) -> list[str]:
    titles = [_("source"), _("shape"), "dtype", _("value")]
    titles += [derivative_label(target.name, "·", k) for k in range(1, result.spec.order + 1)]
    return titles


def matrices(result: Any, target: Any) -> list[Section]:
    """The Jacobian blocks and the Hessian of a target, as text lines."""
    sections = []
    unavailable = getattr(target, "unavailable", {}) or {}
    if target.jacobian is not None:
        for name, block in target.jacobian.items():
            title = _("Jacobian {label}", label=f"∂{target.name}/∂{name}")
            sections.append(_matrix(title, block, result, unavailable.get("jacobian"), "jacobian"))
    elif result.spec.jacobian and "jacobian" in unavailable:
        sections.append(_matrix(_("Jacobian of {target}", target=target.name), None, result, unavailable["jacobian"],
                                "jacobian"))
    names = ", ".join(s.name for s in result.sources)
    if target.hessian is not None or (result.spec.hessian and "hessian" in unavailable):
        sections.append(_matrix(_("Hessian of {target} over ({sources})", target=target.name, sources=names),
                                target.hessian, result, unavailable.get("hessian"), "hessian"))
    return sections


def _matrix(title: str, value: Any, result: Any, reason: str | None, kind: str) -> Section:
    if value is None:
        why = reason or _("not computed")
        return Section(title, (_("None: {reason}", reason=why),), None, kind, title)
    data = numbers.as_array(value)
    full_title = _("{title}, shape {shape}", title=title, shape=numbers.shape(data.shape))
    if data.size > MATRIX_LIMIT or data.ndim > 2:
        return Section(full_title, (numbers.summary(data, result.precision, result.max_elements),), data, kind, title)
    if data.ndim < 2:
        return Section(full_title, (numbers.array(data, result.precision, MATRIX_LIMIT),), data, kind, title)
    cells = [[numbers.scalar(item, result.precision) for item in row] for row in data.tolist()]
    width = max((len(cell) for row in cells for cell in row), default=1)
    lines = tuple("[" + "  ".join(cell.rjust(width) for cell in row) + "]" for row in cells)
    return Section(full_title, lines, data, kind, title)


def watched_rows(result: Any) -> list[tuple[str, str, str, str]]:
    return [
        (w.name, numbers.shape(w.shape), w.dtype, _("trainable") if w.trainable else _("not trainable"))
        for w in result.watched
    ]


def reasons(result: Any, target: Any) -> list[str]:
    return [_("{label} is None: {why}", label=derivative_label(target.name, name, 1), why=why)
            for name, why in target.reasons.items()]


def extras(result: Any, target: Any) -> list[str]:
    """Forward-mode, finite-difference and HVP lines, when asked for."""
    lines = []
    p, m = result.precision, result.max_elements
    if target.forward is not None:
        for name, value in target.forward.items():
            lines.append(_("forward {label} = {value}", label=f"∂{target.name}/∂{name}",
                           value=numbers.array(value, p, m) if value is not None else "None"))
        passes = result.passes
        if passes:
            lines.append(_("passes: forward mode {forward}, reverse mode {reverse}",
                           forward=passes.get("forward", 0) + passes.get("graph_forward", 0), reverse=passes.get("reverse", 1)))
    if target.check is not None:
        lines.extend(str(report) for report in target.check.values())
    if target.hvp is not None:
        for name, value in target.hvp.items():
            lines.append(_("Hessian-vector product for {source} = {value}", source=name,
                           value=numbers.array(value, p, m) if value is not None else "None"))
    return lines
