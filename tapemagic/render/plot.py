"""The --explore plot as inline SVG in the static view: the target over a slider's range, the point, the tangent
near the point, and the derivative below. No matplotlib, no PNG: it follows the theme (``currentColor`` and the
stylesheet's variables) and lives in the saved output, so a reopened notebook still shows it.

The axes are fixed by the curves over the whole range (computed once per position of the other sliders), so
nothing rescales while a slider moves.
"""
from __future__ import annotations

import dataclasses
from html import escape
from typing import Sequence

import numpy as np

from .._i18n import _
from . import numbers

__all__ = ["Curve", "svg", "tangent_segment"]

WIDTH, LEFT, RIGHT = 460, 56, 12
TOP_PANEL, BOTTOM_PANEL, GAP, FOOT = (8, 170), (200, 300), 30, 322
TANGENT_HALF_PX = 45  # the tangent is drawn this far either side of the point, whatever its slope


@dataclasses.dataclass(frozen=True)
class Curve:
    """The target and its derivative sampled over one slider's range (NaN where the cell failed)."""

    source: str
    grid: np.ndarray
    values: np.ndarray
    slopes: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Axes:
    """Maps data to pixels inside one panel."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    top: float
    bottom: float
    extremes: tuple[float, float]  # the curve's own lowest and highest values, labelled on the axis

    def x(self, value: float) -> float:
        low, high = self.x_range
        return LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return self.bottom - (value - low) / (high - low) * (self.bottom - self.top)


def _axes(x_range: tuple[float, float], values: Sequence[float], panel: tuple[int, int]) -> _Axes:
    """A panel's axes: y over the values' range with a little room, so the curve never touches the frame."""
    finite = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    pad = (high - low) * 0.06 or max(abs(low), 1.0) * 0.1
    return _Axes(x_range, (low - pad, high + pad), panel[0], panel[1], (low, high))


def tangent_segment(axes: _Axes, x0: float, y0: float, slope: float) -> tuple[float, float, float, float]:
    """Pixel end points of the tangent, the same length on screen whatever the slope, cut at the panel's edges."""
    px, py = axes.x(x0), axes.y(y0)
    (xl, xh), (yl, yh) = axes.x_range, axes.y_range
    dx = (WIDTH - LEFT - RIGHT) / (xh - xl)
    dy = -slope * (axes.bottom - axes.top) / (yh - yl)
    norm = float(np.hypot(dx, dy)) or 1.0
    ux, uy = dx / norm, dy / norm
    reach = TANGENT_HALF_PX
    for edge, direction in ((axes.top, uy), (axes.bottom, uy)):
        if direction:
            for sign in (1, -1):
                t = (edge - py) / (sign * direction)
                if 0 < t < reach:
                    reach = t
    return px - reach * ux, py - reach * uy, px + reach * ux, py + reach * uy


def _polylines(axes: _Axes, xs: np.ndarray, ys: np.ndarray, css: str) -> str:
    """One polyline per run of finite points (a failed run leaves a gap, not a line to zero)."""
    out, run = [], []
    for x, y in zip(xs.tolist(), ys.tolist()):
        if np.isfinite(y):
            run.append(f"{axes.x(x):.1f},{axes.y(y):.1f}")
        elif run:
            out.append(run)
            run = []
    if run:
        out.append(run)
    return "".join(f'<polyline class="{css}" points="{" ".join(points)}" fill="none" stroke="currentColor" stroke-width="1.8"/>'
                   for points in out if len(points) > 1)


def _frame(axes: _Axes, label: str) -> str:
    (yl, yh) = axes.y_range
    parts = [f'<rect x="{LEFT}" y="{axes.top}" width="{WIDTH - LEFT - RIGHT}" height="{axes.bottom - axes.top}" '
             'fill="none" stroke="currentColor" stroke-opacity="0.4"/>']
    if yl < 0 < yh:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{axes.y(0):.1f}" y2="{axes.y(0):.1f}" '
                     'stroke="currentColor" stroke-opacity="0.3" stroke-dasharray="3 3"/>')
    for value in sorted(set(axes.extremes)):
        parts.append(f'<text x="{LEFT - 4}" y="{axes.y(value) + 4:.1f}" text-anchor="end">'
                     f'{escape(numbers.scalar(value, 3))}</text>')
    parts.append(f'<text x="{LEFT + 4}" y="{axes.top + 12}">{escape(label)}</text>')
    return "".join(parts)


def svg(curve: Curve, x0: float, y0: float, slope: float | None, target_label: str, derivative_label: str) -> str:
    """The two panels: target with point and tangent; derivative with the point's slope."""
    x_range = (float(curve.grid[0]), float(curve.grid[-1]))
    # From the curves alone, so the axes stay put while the point moves (the point alone only if no curve).
    upper = _axes(x_range, curve.values.tolist() if np.isfinite(curve.values).any() else [y0], TOP_PANEL)
    lower = _axes(x_range, curve.slopes.tolist() if np.isfinite(curve.slopes).any() else [slope], BOTTOM_PANEL)
    parts = [_frame(upper, target_label), _polylines(upper, curve.grid, curve.values, "tm-curve")]
    if slope is not None and np.isfinite(slope):
        x1, y1, x2, y2 = tangent_segment(upper, x0, y0, slope)
        parts.append(f'<line class="tm-tangent" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                     'stroke="currentColor" stroke-width="2.5" stroke-linecap="round"/>')
    if np.isfinite(y0):
        parts.append(f'<circle class="tm-point" cx="{upper.x(x0):.1f}" cy="{upper.y(y0):.1f}" r="4"/>')
    parts += [_frame(lower, derivative_label), _polylines(lower, curve.grid, curve.slopes, "tm-curve")]
    if slope is not None and np.isfinite(slope):
        parts.append(f'<circle class="tm-point" cx="{lower.x(x0):.1f}" cy="{lower.y(slope):.1f}" r="4"/>')
    parts.append(f'<line x1="{lower.x(x0):.1f}" x2="{lower.x(x0):.1f}" y1="{upper.top}" y2="{lower.bottom}" '
                 'stroke="currentColor" stroke-opacity="0.25"/>')
    for value, anchor in ((x_range[0], "start"), (x_range[1], "end")):
        parts.append(f'<text x="{lower.x(value):.1f}" y="{FOOT - 6}" text-anchor="{anchor}">'
                     f'{escape(numbers.scalar(value, 3))}</text>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{FOOT - 6}" text-anchor="middle">'
                 f'{escape(curve.source)} = {escape(numbers.scalar(x0, 4))}</text>')
    label = _("{target} and {derivative} over {source}", target=target_label, derivative=derivative_label,
              source=curve.source)
    return (f'<svg class="tm-plot" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{FOOT}" '
            f'viewBox="0 0 {WIDTH} {FOOT}" font-size="11" fill="currentColor" role="img" '
            f'aria-label="{escape(label)}">'
            + "".join(parts) + "</svg>")
