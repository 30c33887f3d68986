"""The static view's stylesheet: colours from JupyterLab's theme variables, so light and dark themes both read well.

Every colour is ``var(--jp-..., light fallback)``. Wherever a rule sets a background it also sets the text colour
(the root sets both), so a frontend without JupyterLab's variables (VS Code, a bare HTML page) gets a consistent
light pair rather than dark text on its dark page.

What survives where: JupyterLab's sanitizer (untrusted output) drops ``<style>`` elements, ``<svg>`` and any inline
``style`` colour that is not a literal (``var()`` fails its colour pattern), but keeps ``<details>``/``<summary>``,
``title`` and ``class`` attributes and inline sizes, overflow and literal colours. So this sheet carries only what an
untrusted view can do without (theme colours, spacing); what the view needs everywhere (heatmap colours, the sizes
that keep long values scrollable) is inline, with literal colours (``heatmap.py``).
"""
from __future__ import annotations

__all__ = ["STYLE", "TEXT_PAIRS", "variable"]


def variable(name: str, fallback: str) -> str:
    """A theme variable with its light-theme fallback: ``var(--jp-layout-color0, #fff)``."""
    return f"var({name}, {fallback})"


# Every text colour on every background this sheet puts together: (what, text variable, background variable).
# tests/test_static_view.py computes each pair's contrast from JupyterLab's light and dark theme files (WCAG AA).
TEXT_PAIRS: tuple[tuple[str, str, str], ...] = (
    ("text, None explanations, section titles", "--jp-content-font-color1", "--jp-layout-color0"),
    ("table headers", "--jp-content-font-color1", "--jp-layout-color2"),
    ("notes and settings", "--jp-content-font-color2", "--jp-layout-color0"),
)

_FALLBACKS = {
    "--jp-content-font-color1": "rgba(0,0,0,.87)",
    "--jp-content-font-color2": "rgba(0,0,0,.54)",
    "--jp-layout-color0": "#fff",
    "--jp-layout-color2": "#eee",
    "--jp-border-color2": "#e0e0e0",
    "--jp-warn-color1": "#f57c00",
    "--jp-error-color1": "#d32f2f",
    "--jp-brand-color1": "#1976d2",
    "--jp-code-font-family": "monospace",
}


def _v(name: str) -> str:
    return variable(name, _FALLBACKS[name])


STYLE = "<style>" + "".join([
    f".tapemagic{{font-family:{_v('--jp-code-font-family')};font-size:12px;line-height:1.45;"
    f"color:{_v('--jp-content-font-color1')};background:{_v('--jp-layout-color0')}}}",
    ".tapemagic table{border-collapse:collapse;margin:4px 0}",
    f".tapemagic .tm-values th,.tapemagic .tm-values td,.tapemagic .tm-watched td,.tapemagic .tm-watched th"
    f"{{padding:2px 10px;text-align:left;vertical-align:top;border-bottom:1px solid {_v('--jp-border-color2')}}}",
    f".tapemagic .tm-values th,.tapemagic .tm-watched th{{font-weight:600;color:{_v('--jp-content-font-color1')};background:{_v('--jp-layout-color2')}}}",
    ".tapemagic .tm-none{font-style:italic}",
    f".tapemagic .tm-bad{{font-weight:600;box-shadow:inset 3px 0 0 {_v('--jp-error-color1')}}}",
    ".tapemagic .tm-head{font-weight:600}",
    f".tapemagic .tm-settings,.tapemagic .tm-note{{color:{_v('--jp-content-font-color2')};font-weight:400}}",
    f".tapemagic .tm-why{{border-left:3px solid {_v('--jp-warn-color1')};padding-left:6px;margin:2px 0}}",
    ".tapemagic details.tm-section{margin:4px 0}",
    ".tapemagic details.tm-section>summary{cursor:pointer;font-weight:600}",
    ".tapemagic details.tm-copy>summary{cursor:pointer}",
    f".tapemagic .tm-plot .tm-curve{{stroke:{_v('--jp-brand-color1')}}}",
    f".tapemagic .tm-plot .tm-tangent{{stroke:{_v('--jp-warn-color1')}}}",
    f".tapemagic .tm-plot .tm-point{{fill:{_v('--jp-warn-color1')}}}",
]) + "</style>"
