"""The static HTML view, checked against what JupyterLab really ships: the sanitizer of untrusted output and the
light and dark theme variables (read from the installed JupyterLab), and the numbers the view promises."""
from __future__ import annotations

import glob
import html as html_lib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tapemagic
from tapemagic.render import heatmap, html, numbers, style

LAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "share", "jupyter", "lab")
THEMES = {name: os.path.join(LAB, "themes", "@jupyterlab", f"theme-{name}-extension", "index.css")
          for name in ("light", "dark")}


# -- what JupyterLab's sanitizer keeps -------------------------------------------------------------------


def _lab_core() -> str:
    files = glob.glob(os.path.join(LAB, "static", "*.js"))
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        if 'allowedTags:["a","abbr"' in text:
            return text
    pytest.skip("JupyterLab's static files are not installed in .venv")


@pytest.fixture(scope="module")
def sanitizer() -> tuple[set[str], set[str], dict[str, set[str]]]:
    """JupyterLab's allowed tags, inline style properties and attributes (by tag, "*" for all), read from its
    installed JavaScript."""
    core = _lab_core()
    tags = set(re.findall(r'"([a-z0-9]+)"', re.search(r'allowedTags:\[("a","abbr"[^\]]*)\]', core).group(1)))
    styles_start = core.index('allowedStyles:{"*":{')
    styles = set(re.findall(r'(?:"([a-z-]+)"|([a-z]+)):\[ef\.', core[styles_start:styles_start + 12_000]))
    attributes_start = core.index('allowedAttributes:{"*":[')
    block = core[attributes_start:attributes_start + 6_000]
    attributes = {tag.strip('"'): set(re.findall(r'"([a-z-]+)"', names))
                  for tag, names in re.findall(r'("\*"|[a-z0-9]+):\[([^\]]*)\]', block)}
    return tags, {a or b for a, b in styles}, attributes


class _Elements(HTMLParser):
    """Every tag, and every inline style declaration, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.styles: list[tuple[str, str]] = []
        self.attributes: list[tuple[str, str]] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if "svg" in self.stack or tag == "svg":  # the plot: an extra for trusted output, checked separately
            self.stack.append(tag)
            return
        self.stack.append(tag)
        for name, value in attrs:
            self.attributes.append((tag, name))
            if name == "style" and value:
                for declaration in filter(None, (d.strip() for d in value.split(";"))):
                    prop, _, val = declaration.partition(":")
                    self.styles.append((prop.strip(), val.strip()))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass


def _rich_result():
    namespace = {"tf": tf, "x": tf.Variable([1.0, -2.0, 3.0]), "z": tf.Variable(2.0)}
    return tapemagic.tape("y = tf.reduce_sum(x ** 3)", ["x", "z"], namespace=namespace, order=2, hessian=True,
                          jacobian=True)


def test_untrusted_output_keeps_the_view(sanitizer):
    """Under JupyterLab's sanitizer (an untrusted notebook) every tag but the <style> sheet survives, and every
    inline style is a property it allows with a literal value (var() fails its colour patterns)."""
    tags, allowed_styles, allowed_attributes = sanitizer
    assert {"details", "summary", "table", "td", "th", "pre", "span", "div"} <= tags
    assert "style" not in tags and "svg" not in tags  # so colours and the plot must not depend on them alone
    parser = _Elements()
    parser.feed(_rich_result().to_html())
    used = set(parser.tags)
    assert used - tags == {"style"}, used - tags
    for prop, value in parser.styles:
        assert prop in allowed_styles, prop
        assert "var(" not in value, (prop, value)
    assert {"class", "style", "title"} <= allowed_attributes["*"] and "open" in allowed_attributes["details"]
    for tag, name in parser.attributes:  # <details open> stays open, every title and class stays
        assert name in allowed_attributes["*"] | allowed_attributes.get(tag, set()), (tag, name)


def _style_checks(core: str, declarations: list[tuple[str, str]]) -> list[bool]:
    """Run JupyterLab's own CSS value patterns (its class of regular expressions, cut from the bundle) in Node."""
    start = core.index("class ef{static reg")
    last = [m.start() for m in re.finditer(r"ef\.[A-Z_0-9]+=ef\.reg\(", core[start:start + 60_000])][-1]
    definitions = core[start:core.index(";", start + last)]
    styles_start = core.index('allowedStyles:{"*":{')
    constants = {a or b: name for a, b, name in
                 re.findall(r'(?:"([a-z-]+)"|([a-z]+)):\[ef\.([A-Z_0-9]+)\]', core[styles_start:styles_start + 12_000])}
    pairs = [(constants[prop], value) for prop, value in declarations]
    script = (definitions + ";\nconst pairs = " + json.dumps(pairs) + ";\n"
              "console.log(JSON.stringify(pairs.map(([name, value]) => ef[name].test(value))));")
    done = subprocess.run([shutil.which("node"), "-e", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js runs JupyterLab's own CSS patterns")
def test_every_inline_style_passes_jupyterlabs_own_patterns():
    """What an untrusted notebook keeps is decided per declaration by JupyterLab's patterns: run them. Every
    colour, border and size the view puts inline survives, so heatmaps keep their colours and grid."""
    parser = _Elements()
    parser.feed(_rich_result().to_html())
    parser.feed(heatmap.render(np.array([[np.nan, 1.0], [0.0, -1.0]]), 4))
    declarations = sorted(set(parser.styles))
    results = _style_checks(_lab_core(), declarations)
    assert [d for d, kept in zip(declarations, results) if not kept] == []
    assert _style_checks(_lab_core(), [("color", "var(--jp-content-font-color1, #000)")]) == [False]  # why inline


# -- contrast in JupyterLab's light and dark themes ------------------------------------------------------


def _theme_variables(theme: str) -> dict[str, str]:
    with open(THEMES[theme], encoding="utf-8") as handle:
        css = handle.read()
    return dict(re.findall(r"(--[\w-]+):([^;}]+)", css))


def _resolve(value: str, variables: dict[str, str]) -> str:
    for _ in range(10):
        match = re.search(r"var\((--[\w-]+)(?:,\s*([^()]+))?\)", value)
        if not match:
            return value.strip()
        name, fallback = match.groups()
        value = value[:match.start()] + variables.get(name, fallback or "") + value[match.end():]
    raise AssertionError(f"unresolved: {value}")


def _rgba(colour: str) -> tuple[float, float, float, float]:
    colour = {"white": "#fff", "black": "#000"}.get(colour.strip(), colour.strip())
    if colour.startswith("#"):
        digits = colour[1:]
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16), 1.0
    parts = [float(p) for p in re.findall(r"[\d.]+", colour)]
    return parts[0], parts[1], parts[2], parts[3] if len(parts) > 3 else 1.0


def _over(top: tuple[float, ...], bottom: tuple[float, ...]) -> tuple[float, float, float]:
    alpha = top[3]
    return tuple(alpha * t + (1 - alpha) * b for t, b in zip(top[:3], bottom[:3]))  # type: ignore[return-value]


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_contrast_meets_wcag_aa_in_both_themes(theme):
    variables = _theme_variables(theme)
    page = _rgba(_resolve(variables["--jp-layout-color0"], variables))
    ratios = {}
    for what, text_variable, background_variable in style.TEXT_PAIRS:
        assert f"var({text_variable}," in style.STYLE and f"var({background_variable}," in style.STYLE
        background = _over(_rgba(_resolve(variables[background_variable], variables)), page)
        text = _over(_rgba(_resolve(variables[text_variable], variables)), background)
        ratios[what] = heatmap.contrast(text, background)
    assert min(ratios.values()) >= 4.5, ratios


def test_fallbacks_are_a_readable_light_pair():
    """Without JupyterLab's variables (VS Code, a bare page) the fallbacks apply: still at least 4.5:1."""
    fallbacks = dict(re.findall(r"var\((--[\w-]+), ([^)]+\)?)\)", style.STYLE))
    white = (255.0, 255.0, 255.0, 1.0)
    for what, text_variable, background_variable in style.TEXT_PAIRS:
        background = _over(_rgba(fallbacks[background_variable]), white)
        text = _over(_rgba(fallbacks[text_variable]), background)
        assert heatmap.contrast(text, background) >= 4.5, what


def test_heatmap_numbers_read_on_every_colour_of_the_scale():
    worst = min(heatmap.contrast(heatmap.text_colour(heatmap.colour(t, 1.0)), heatmap.colour(t, 1.0))
                for t in np.linspace(-1, 1, 401))
    assert worst >= 4.5
    # on a dark JupyterLab page the cells take the dark steps with white numbers: zero is the page, framed
    dark = [heatmap.dark_colour(step) for step in [None, *range(-heatmap.LEVELS, heatmap.LEVELS + 1)]]
    assert min(heatmap.contrast((255, 255, 255), background) for background in dark) >= 4.5
    assert heatmap.dark_colour(0) == heatmap.DARK_PAGE
    page = tapemagic.tape(lambda x: x ** 3, [tf.constant([1.0, -2.0])], jacobian=True).to_html()
    assert '[data-jp-theme-light="false"] .tapemagic .tm-h0{background:#111111!important;color:#fff!important}' in page
    assert '<td class="tm-hp20" title="J[1, 1] = 12.0"' in page and '<td class="tm-hp5" title="J[0, 0] = 3.0"' in page
    assert '<td class="tm-h0" title="J[0, 1] = 0.0"' in page  # 3x² on the diagonal: 3 is a quarter of 12
    # zero is not the page: near-white cells framed by a mid-grey grid that shows on white and on #111
    grid = _rgba(heatmap.GRID)
    assert heatmap.contrast(grid, (255, 255, 255)) >= 2.5 and heatmap.contrast(grid, (17, 17, 17)) >= 3


# -- what the view shows --------------------------------------------------------------------------------


def test_sections_and_hooks():
    page = _rich_result().to_html()
    assert page.startswith("<style>") and '<div class="tapemagic">' in page
    assert page.count('<table class="tm-values">') == 1 and page.count('class="tm-heatmap"') == 2
    assert '<details class="tm-section" open><summary>Higher orders</summary>' in page
    assert "<summary>Jacobian ∂y/∂x, shape (3,)</summary>" in page and "<summary>Hessian of y over (x, z)" in page
    assert '<div class="tm-why">* ∂y/∂z is None' in page
    noted = tapemagic.tape(lambda x: x ** 2, [3.0]).to_html()  # a Python number: a note says what ran
    assert '<summary>Notes (1)</summary><div class="tm-note">note: x was a Python number' in noted


def test_order_one_has_no_higher_orders_section():
    r = tapemagic.tape(lambda x: x ** 3, [2.0])
    assert "Higher orders" not in r.to_html()
    assert "Higher orders" in tapemagic.tape(lambda x: x ** 3, [2.0], order=2).to_html()


def test_every_element_is_copyable_at_full_precision():
    data = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    r = tapemagic.tape(lambda w: tf.reduce_sum(tf.sin(w)), [tf.constant(data)])
    page = r.to_html()
    literals = [html_lib.unescape(text) for text in re.findall(r"<pre[^>]*>(.*?)</pre>", page, re.S)]
    assert len(literals) == 2  # the value and its gradient, each all 150 elements
    value, gradient = (eval(text, {"np": np}) for text in literals)  # noqa: S307 - our own output
    assert value.dtype == np.float32 and np.array_equal(value, data)
    assert np.array_equal(gradient, r.gradients["w"].numpy())  # bit for bit, not rounded to 4 digits


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(st.sampled_from([np.float16, np.float32, np.float64, np.complex64]),
                  hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=40).filter(lambda s: np.prod(s) <= 3000),
                  elements={"allow_subnormal": True}))
def test_the_copyable_literal_is_what_numpy_writes_byte_for_byte(data):
    # numbers._float_literal replaces np.array2string (five times slower) for floats: the same text, nan and inf as
    # np.nan and np.inf, long rows wrapped at 100 columns under their bracket, for any shape and magnitude.
    expected = np.array2string(data, separator=", ", threshold=sys.maxsize, max_line_width=100,
                               formatter={"float_kind": numbers.element, "complex_kind": numbers.element})
    assert numbers.python_literal(data) == f"np.array({expected}, dtype=np.{data.dtype.name})"


def test_too_many_elements_are_not_embedded_but_say_where_they_are():
    r = tapemagic.tape(lambda w: tf.reduce_sum(w), [tf.zeros(html.COPY_LIMIT + 1)])
    page = r.to_html()
    assert "<pre" not in page and f"{html.COPY_LIMIT + 1} elements: more than {html.COPY_LIMIT}" in page


def test_heatmap_titles_give_the_true_element_or_the_block():
    matrix = np.arange(100 * 100, dtype=np.float64).reshape(100, 100) - 5000.0
    page = heatmap.render(matrix, 4)
    block = matrix[0:3, 0:3]  # 100 rows in 40 blocks: the first blocks hold 3 rows
    expected = (f'title="rows 0–2, cols 0–2 (9 elements): mean {numbers.scalar(block.mean(), 4)}, '
                f'min {numbers.scalar(block.min(), 4)}, max {numbers.scalar(block.max(), 4)}"')
    assert expected in page and "100×100 shown as 40×40 blocks of up to 3×3" in page
    small = heatmap.render(np.array([[5.15, 2.0], [-1.0, 0.0]], dtype=np.float32), 4)
    assert 'title="H[0, 0] = 5.15"' in small and ">5.15</td>" in small  # the element itself, and in its cell
    assert re.search(r"<th [^>]*>0</th><th [^>]*>1</th></tr>", small)  # column indices


def test_numbers_appear_in_cells_when_they_fit():
    wide = heatmap.render(np.ones((2, 30)), 4)  # 30 one-digit columns fit
    assert ">1</td>" in wide
    crowded = heatmap.render(np.full((2, 30), 1.234567), 4)  # 30 columns of 6 characters do not
    assert ">1.235</td>" not in crowded and 'title="H[0, 0] = 1.234567"' in crowded


def test_text_plain_has_no_control_characters():
    text = _rich_result().to_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text)
