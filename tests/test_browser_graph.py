"""``%%tape --graph`` (issue #14) and results in Chinese (issue #16), in a live JupyterLab 4 with a real Chromium.

The server, the browser, the notebook driver, the screenshots and the contrast measure are test_browser's; this
module starts its own server (module-scoped fixtures) and opens each notebook in a workspace of its own, so the
wait for every prompt sees only that notebook's cells.

- --graph on E17 (f = x²·y + y + 2 at x = 3, y = 4): the SVG shows every node's value (9, 36, 40, 42) and
  adjoint (24, 10, 4); the step controls, pressed with the keyboard and the Play button, light the values node
  by node in the order TensorFlow ran them, then reveal the adjoints from the target backwards; the SVG's text
  reads (WCAG AA) in the light and the dark theme; --graph --forward shows each source's tangents.
- TapeMagics.language = "zh": a plain E17 cell, an --explore cell and a --graph cell show Chinese headings,
  labels and step controls (each phrase looked up in the Chinese catalog and checked to be Chinese) with the same
  numbers, in a font that has the characters (not boxes); a slider step keeps the result Chinese; the Chinese
  drawing's lines stay inside their boxes.
- every drawing: no box outside the picture, no two boxes or edge labels over each other, no line past its box.

Screenshots (artifacts/, or docs/ with TAPEMAGIC_SCREENSHOTS=docs): lab-graph-mid-reverse (reverse step 4),
lab-graph (the end of the reverse pass), lab-graph-dark, lab-graph-tangents (--forward), lab-zh (the page), lab-zh-graph.
"""
from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from test_browser import (  # noqa: F401  (server and browser are fixtures, used by name)
    CONTRAST_JS, VIEWPORT, WCAG_AA, Server, browser, code_cells, open_and_run, screenshot, server,
    set_theme, tokens, write_cells,
)

SETUP = "%load_ext tapemagic\nimport tensorflow as tf\nx = tf.Variable(3.0)\ny = tf.Variable(4.0)"
E17 = "f = x**2 * y + y + 2"
# Hand formulas at x = 3, y = 4: x² = 9, x²·y = 36, + y = 40, + 2 = 42; df/dx = 2xy = 24, df/dy = x² + 1 = 10,
# df/d(x²) = y = 4, and 1 for each sum and for x²·y (the target's own adjoint is 1).
OP_VALUES = (9.0, 36.0, 40.0, 42.0)
ADJOINTS = {"x": 24.0, "y": 10.0, "x²": 4.0}
TANGENTS = {"x": {"x": 1.0, "y": 0.0, "f": 24.0}, "y": {"x": 0.0, "y": 1.0, "f": 10.0}}  # ∂node/∂source

TALL = {**VIEWPORT, "height": 1500}  # a --graph cell (graph, tables, step controls) fits on the page

# The boxes of the SVG as the page shows them: key, class list, and the text of each line (a <tspan>).
NODES_JS = """
(output) => {
  const svg = output.querySelector('svg.tm-graph');
  if (!svg) return null;
  return [...svg.querySelectorAll('g.tm-g-node')].map(g => ({
    key: g.getAttribute('data-node'), classes: g.getAttribute('class').split(' '),
    lines: [...g.querySelectorAll('tspan')].map(t => t.textContent),
    visible: g.getBoundingClientRect().width > 0,
  }));
}
"""


def _number(text: str) -> float | None:
    found = tokens(text)
    numbers = [float(t) for t in found if t != "None"]
    return numbers[0] if len(numbers) == 1 else None


def node_state(nodes: list[dict]) -> list[dict]:
    """Per box: its label (the first line, before any ' = Op'), value and adjoint or tangent as shown (None where
    '?' or absent), whether it is dim, and whether it is the node of this step."""
    state = []
    for node in nodes:
        lines = node["lines"]
        value = next((line for line in lines if line.startswith("value ")), "")
        quantity = next((line for line in lines if line.startswith(("adjoint ", "tangent "))), "")
        state.append({
            "label": lines[0].split(" = ")[0],
            "kind": next(c for c in node["classes"] if c in ("tm-g-source", "tm-g-const", "tm-g-op")),
            "value": _number(value.removeprefix("value ")),
            "value_hidden": value.strip().endswith("?"),
            "quantity": _number(quantity.split(" ", 1)[-1]) if quantity else None,
            "quantity_line": quantity,
            "quantity_hidden": quantity.strip().endswith("?"),
            "dim": "tm-g-dim" in node["classes"], "now": "tm-g-now" in node["classes"],
            "target": "tm-g-target" in node["classes"],
        })
    return state


def read_graph(output: Any) -> list[dict]:
    nodes = output.evaluate(NODES_JS)
    assert nodes, f"no svg.tm-graph with nodes in the output: {output.inner_text()[:300]!r}"
    return node_state(nodes)


def graph_key(output: Any) -> str:
    """A fingerprint of what the SVG shows now (it changes with every step)."""
    return repr(output.evaluate(NODES_JS))


def wait_for_change(page: Any, output: Any, before: str, what: str, timeout_ms: int = 30_000) -> None:
    """Until the graph differs from ``before`` (a step goes to the kernel and comes back as a display update)."""
    deadline = page.evaluate("performance.now()") + timeout_ms
    while page.evaluate("performance.now()") < deadline:
        if graph_key(output) != before:
            page.wait_for_timeout(150)  # the update is one replacement; let it settle before reading
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: the graph did not change in {timeout_ms / 1000:.0f} s")


def by_label(state: list[dict]) -> dict[str, dict]:
    return {node["label"]: node for node in state}


def ops(state: list[dict]) -> list[dict]:
    return [node for node in state if node["kind"] == "tm-g-op"]


# ----------------------------------------------------------------------------------------------
# The --graph notebook
# ----------------------------------------------------------------------------------------------

def workspace(server: Server, browser: Any, name: str, cells: list[str]) -> Iterator[Any]:
    """A notebook of ``cells`` written as NAME.ipynb and run in JupyterLab, in a workspace of its own; its
    kernels are shut down afterwards."""
    write_cells(server.root / f"{name}.ipynb", cells)
    page = browser.new_page(viewport=TALL)
    try:
        open_and_run(page, server.url(f"lab/workspaces/{name}/tree/{name}.ipynb"))
        yield page
    finally:
        page.close()
        for session in server.api("sessions"):
            server.api(f"sessions/{session['id']}", method="DELETE")


@pytest.fixture(scope="module")
def graph_lab(server: Server, browser: Any) -> Iterator[Any]:
    """E17 with --graph, and with --graph --forward, run in JupyterLab (a workspace of its own)."""
    yield from workspace(server, browser, "graph",
                         [SETUP, f"%%tape x y --graph\n{E17}", f"%%tape x y --graph --forward\n{E17}"])


def graph_cell(page: Any, index: int) -> tuple[Any, Any, Any]:
    """(the cell, the result's output, the step controls) of the --graph cell at ``index``."""
    cell = code_cells(page).nth(index)
    cell.scroll_into_view_if_needed()
    output = cell.locator(".jp-OutputArea-output", has=page.locator("svg.tm-graph")).first
    output.wait_for(timeout=60_000)
    controls = cell.locator(".tapemagic-graph-steps")
    controls.wait_for(timeout=60_000)
    return cell, output, controls


def choose(page: Any, controls: Any, output: Any, label: str) -> None:
    """Press one of the toggle buttons (what to show) and wait for the graph to follow."""
    button = controls.locator("button", has_text=re.compile(f"^{re.escape(label)}$")).first
    if "mod-active" in (button.get_attribute("class") or ""):
        return
    before = graph_key(output)
    button.click()
    wait_for_change(page, output, before, f"pressing {label!r}")


def step_right(page: Any, controls: Any, output: Any, what: str) -> None:
    """One step on the slider with the keyboard (its handle focused, the right arrow)."""
    before = graph_key(output)
    handle = controls.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    wait_for_change(page, output, before, what)


def shoot_cell(page: Any, cell: Any, output: Any, name: str) -> None:
    """A screenshot of the whole cell (code, graph, step controls) with the sections under the graph folded, as a
    reader would fold them: the node table and the watched variables repeat what the drawing shows."""
    summaries = output.locator("details.tm-section[open] > summary")
    for index in reversed(range(1, summaries.count())):  # the first is the graph's own section
        summaries.nth(index).click()
    cell.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    screenshot(cell, name)


# Boxes and edge labels where the page drew them: nothing drawn over anything else, nothing outside the picture.
GEOMETRY_JS = """
(o) => {
  const svg = o.querySelector('svg.tm-graph'), rect = e => { const b = e.getBoundingClientRect();
    return [b.left, b.top, b.right, b.bottom]; };
  return {svg: rect(svg), boxes: [...svg.querySelectorAll('g.tm-g-node .tm-g-box')].map(rect),
          lines: [...svg.querySelectorAll('g.tm-g-node')].map(g => ({box: rect(g.querySelector('.tm-g-box')),
            lines: [...g.querySelectorAll('tspan')].map(t => ({text: t.textContent, box: rect(t)}))})),
          labels: [...svg.querySelectorAll('text.tm-g-elabel')].map(t => ({text: t.textContent, box: rect(t)}))};
}
"""


def _overlap(a: list[float], b: list[float]) -> bool:
    return not (a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1])


def assert_nothing_overlaps(output: Any) -> None:
    geometry = output.evaluate(GEOMETRY_JS)
    left, top, right, bottom = geometry["svg"]
    problems = [f"box {box} outside the picture {geometry['svg']}" for box in geometry["boxes"]
                if not (left - 1 <= box[0] and box[2] <= right + 1 and top - 1 <= box[1] and box[3] <= bottom + 1)]
    boxes, labels = geometry["boxes"], geometry["labels"]
    problems += [f"boxes overlap: {a} {b}" for i, a in enumerate(boxes) for b in boxes[i + 1:] if _overlap(a, b)]
    problems += [f"{line['text']!r} runs out of its box ({line['box'][2] - node['box'][2]:.0f} px past its right edge)"
                 for node in geometry["lines"] for line in node["lines"] if line["box"][2] > node["box"][2] + 0.5]
    problems += [f"edge label {label['text']!r} over a box" for label in labels for box in boxes
                 if _overlap(label["box"], box)]
    problems += [f"edge labels {a['text']!r} and {b['text']!r} overlap" for i, a in enumerate(labels)
                 for b in labels[i + 1:] if _overlap(a["box"], b["box"])]
    assert not problems, "\n".join(problems)


def test_graph_shows_values_and_adjoints(graph_lab: Any) -> None:
    _, output, controls = graph_cell(graph_lab, 1)
    state = read_graph(output)
    labels = by_label(state)
    assert [node["value"] for node in ops(state)] == list(OP_VALUES), state
    assert labels["f"]["target"] and labels["f"]["value"] == 42.0, labels.get("f")
    for name, adjoint in (("x", 24.0), ("y", 10.0)):
        assert labels[name]["kind"] == "tm-g-source" and labels[name]["quantity"] == adjoint, labels[name]
    square = next(node for node in ops(state) if node["value"] == 9.0)
    assert square["quantity"] == ADJOINTS["x²"], square
    assert all(node["quantity"] == 1.0 for node in ops(state) if node["value"] in (36.0, 40.0, 42.0)), ops(state)
    assert not any(node["dim"] or node["value_hidden"] or node["quantity_hidden"] for node in state), state
    constants = [node for node in state if node["kind"] == "tm-g-const"]
    assert [node["value"] for node in constants] == [2.0, 2.0] and not any(node["quantity_line"] for node in constants)
    assert_nothing_overlaps(output)
    buttons = controls.locator("button").all_inner_texts()
    assert {"all", "forward pass", "reverse pass"} <= {b.strip() for b in buttons}, buttons
    print(f"--graph: {len(state)} boxes, op values {[n['value'] for n in ops(state)]}, "
          f"adjoints x {labels['x']['quantity']}, y {labels['y']['quantity']}, x² {square['quantity']}; controls {buttons}")


def test_graph_forward_pass_lights_node_by_node(graph_lab: Any) -> None:
    page = graph_lab
    _, output, controls = graph_cell(page, 1)
    choose(page, controls, output, "forward pass")
    state = read_graph(output)
    lit = [not node["dim"] for node in state]
    counts, order = [sum(lit)], [next(node for node in state if node["now"])["value"]]
    assert counts == [1] and all(node["quantity_hidden"] or not node["quantity_line"] for node in state), state
    for step in range(1, len(state)):
        step_right(page, controls, output, f"forward step {step}")
        state = read_graph(output)
        shown = [not node["dim"] for node in state]
        assert all(shown[i] for i in range(len(state)) if lit[i]), f"step {step}: a value went dark again"
        lit = shown
        counts.append(sum(lit))
        order.append(next(node for node in state if node["now"])["value"])
        assert all((node["value"] is not None) == (not node["dim"]) for node in state), state  # '?' while dim
        if step == 3:  # the boxes not yet run are faded, and still read (JupyterLab Light)
            low = [m for m in measure_graph_contrast(page, "forward step 3") if m["ratio"] < WCAG_AA]
            assert not low, f"forward step 3: {low[:10]}"
    print(f"forward pass: lit boxes per step {counts}, the value of each step's node {order}")
    assert counts == list(range(1, len(state) + 1)), counts
    assert [v for v in order if v in OP_VALUES] == list(OP_VALUES), order  # x², x²·y, + y, + 2: as TensorFlow ran them
    assert order.index(3.0) < order.index(9.0) and order.index(4.0) < order.index(36.0), order

    # Play from the start: the steps run by themselves to the last node
    handle = controls.locator(".noUi-handle").first
    handle.focus()
    before = graph_key(output)
    page.keyboard.press("Home")
    wait_for_change(page, output, before, "back to step 0")
    assert sum(not node["dim"] for node in read_graph(output)) == 1
    controls.locator(".widget-play button").first.click()
    page.wait_for_function(
        "(o) => { const g = [...o.querySelectorAll('svg.tm-graph g.tm-g-node')];"
        " return g.length > 0 && g.every(n => !n.classList.contains('tm-g-dim')); }",
        arg=output.element_handle(), timeout=60_000)
    assert all(node["value"] is not None for node in read_graph(output))
    # Play pauses itself one interval after the last step (its icon turns back from pause to play)
    controls.locator(".widget-play button i.fa-play").first.wait_for(timeout=10_000)


def test_graph_reverse_pass_from_the_target_back(graph_lab: Any) -> None:
    page = graph_lab
    cell, output, controls = graph_cell(page, 1)
    choose(page, controls, output, "reverse pass")
    state = read_graph(output)
    assert all(node["value"] is not None and not node["dim"] for node in state), "the reverse pass starts with every value"
    assert all(node["quantity_hidden"] for node in state if node["quantity_line"]), "an adjoint before the first step"
    steps = len(state)
    known, order, now_values = set(), [], []
    for step in range(1, steps + 1):
        step_right(page, controls, output, f"reverse step {step}")
        state = read_graph(output)
        now = [node for node in state if node["now"]]
        assert len(now) == 1, f"step {step}: {len(now)} nodes marked as this step's"
        now_values.append(now[0]["value"])
        revealed = {node["label"] + "#" + str(node["value"]) for node in state
                    if node["quantity_line"] and not node["quantity_hidden"]}
        assert known <= revealed, f"step {step}: an adjoint was hidden again"
        order += sorted(revealed - known)
        known = revealed
        if step == steps // 2:
            assert_nothing_overlaps(output)  # the edges' labels now carry contributions too
            shoot_cell(page, cell, output, "lab-graph-mid-reverse")
    print(f"reverse pass: the node of each step has value {now_values}; adjoints revealed in the order {order}")
    assert now_values[0] == 42.0, "the reverse pass does not start at the target"
    assert [v for v in now_values if v in OP_VALUES] == list(reversed(OP_VALUES)), now_values
    assert order[-2:] == ["y#4.0", "x#3.0"], order  # the sources last: their adjoints need every path back
    final = by_label(state)
    assert final["x"]["quantity"] == 24.0 and final["y"]["quantity"] == 10.0, (final["x"], final["y"])
    shoot_cell(page, cell, output, "lab-graph")


def measure_graph_contrast(page: Any, theme: str) -> list[dict]:
    """CONTRAST_JS on the drawing's text (SVG fill over the box under it, the box's group opacity applied), each
    measurement with the classes of the box it sits in."""
    measured = page.evaluate(CONTRAST_JS, ".tapemagic svg.tm-graph")
    groups = page.evaluate("""() => [...document.querySelectorAll('.tapemagic svg.tm-graph')].flatMap(svg =>
        [svg, ...svg.querySelectorAll('*')].filter(e => e.getClientRects().length > 0
          && getComputedStyle(e).visibility !== 'hidden' && Number(getComputedStyle(e).opacity) > 0
          && [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim()))
          .map(e => { const g = e.closest('g.tm-g-node'); return g ? g.getAttribute('class') : ''; }))""")
    # the same elements as CONTRAST_JS measures (shown, with text of their own), in the same order
    assert len(groups) == len(measured), (len(groups), len(measured))
    for m, group in zip(measured, groups):
        m["group"] = group
    worst = sorted(measured, key=lambda m: m["ratio"])
    print(f"{theme}: {len(measured)} SVG text elements of the graph measured; lowest contrast "
          + ", ".join(f"{m['ratio']} ({m['text']!r} in {m['group'] or 'an edge'})" for m in worst[:3]))
    return measured


def assert_graph_contrast(measured: list[dict], theme: str) -> None:
    texts = " ".join(m["text"] for m in measured)
    assert "value 42" in texts and "adjoint 24" in texts, f"{theme}: the boxes' labels were not measured: {texts[:300]}"
    low = [m for m in measured if m["ratio"] < WCAG_AA]
    assert not low, f"{theme}: {len(low)} of {len(measured)} SVG labels below {WCAG_AA}:1: {low[:10]}"


def test_graph_text_contrast_light_and_dark(graph_lab: Any) -> None:
    page = graph_lab
    cell, output, controls = graph_cell(page, 1)
    choose(page, controls, output, "all")
    set_theme(page, "JupyterLab Light")
    assert_graph_contrast(measure_graph_contrast(page, "JupyterLab Light"), "JupyterLab Light")
    set_theme(page, "JupyterLab Dark")
    try:
        measured = measure_graph_contrast(page, "JupyterLab Dark")
        shoot_cell(page, cell, output, "lab-graph-dark")
        assert_graph_contrast(measured, "JupyterLab Dark")
        # mid reverse pass: every value still reads, and so does the step's box on its highlight
        choose(page, controls, output, "reverse pass")
        for step in range(1, 5):
            step_right(page, controls, output, f"reverse step {step}, dark")
        measured = measure_graph_contrast(page, "JupyterLab Dark, reverse step 4")
        now = [m for m in measured if "tm-g-now" in m["group"]]
        assert now, "the step's box was not measured"
        low = [m for m in measured if m["ratio"] < WCAG_AA]
        assert not low, f"JupyterLab Dark, reverse step 4: {low[:10]}"
    finally:
        choose(page, controls, output, "all")
        set_theme(page, "JupyterLab Light")


def test_graph_forward_mode_shows_tangents(graph_lab: Any) -> None:
    page = graph_lab
    cell, output, controls = graph_cell(page, 2)
    state = by_label(read_graph(output))
    assert state["x"]["quantity_line"].startswith("adjoint"), "by default the boxes carry adjoints"
    for source, expected in TANGENTS.items():
        choose(page, controls, output, f"tangents for {source}")
        shown = by_label(read_graph(output))
        got = {name: shown[name]["quantity"] for name in expected}
        assert all(shown[name]["quantity_line"].startswith("tangent") for name in expected), shown
        assert got == expected, f"tangents for {source}: {got}, expected {expected}"
        print(f"--graph --forward, tangents for {source}: {got}")
        if source == "x":
            shoot_cell(page, cell, output, "lab-graph-tangents")


# ----------------------------------------------------------------------------------------------
# Chinese (TapeMagics.language = "zh")
# ----------------------------------------------------------------------------------------------

ZH_SETUP = SETUP.replace("%load_ext tapemagic\n", '%load_ext tapemagic\n%config TapeMagics.language = "zh"\n')
ZH_CELLS = (f"%%tape x y\n{E17}", "%%tape x --explore --range x=-3:3\ng = x**3", f"%%tape x y --graph\n{E17}")
CJK = re.compile(r"[\u4e00-\u9fff]")


def zh(message: str, **fields: Any) -> str:
    """A message as the Chinese catalog has it (what the page must show), checked to be Chinese at all."""
    from tapemagic import _i18n

    with _i18n.language("zh"):
        text = _i18n._(message, **fields)
    if not CJK.search(text):
        raise LookupError(f"the Chinese catalog has no translation of {message!r}")
    return text


@pytest.fixture(scope="module")
def zh_lab(server: Server, browser: Any) -> Iterator[Any]:
    """E17 plain, an --explore cell and E17 with --graph, after %config TapeMagics.language = "zh"."""
    yield from workspace(server, browser, "zh", [ZH_SETUP, *ZH_CELLS])


# Two different characters drawn in the page's font: with no font for them both come out as the same empty box.
GLYPHS_JS = """
([element, a, b]) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 48;
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const style = getComputedStyle(element);
  context.font = `24px ${style.fontFamily}`;
  const draw = (character) => {
    context.clearRect(0, 0, 48, 48);
    context.fillText(character, 4, 36);
    return context.getImageData(0, 0, 48, 48).data.join(',');
  };
  return draw(a) !== draw(b);
}
"""


def result_text(cell: Any) -> str:
    result = cell.locator(".jp-OutputArea-output .tapemagic").first
    result.wait_for(timeout=60_000)
    return result.inner_text()


def test_chinese_result_and_widgets(zh_lab: Any) -> None:
    page = zh_lab
    cells = code_cells(page)
    problems = []

    # E17, plain: the header, the table's heads and the watched section in Chinese, the same numbers
    plain = cells.nth(1)
    plain.scroll_into_view_if_needed()
    text = result_text(plain)
    for expected in (zh("tape: {values}", values="f = 42"), zh("source"), zh("value")):
        if expected not in text:
            problems.append(f"plain cell: {expected!r} not in {text[:300]!r}")
    result = plain.locator(".tapemagic").first.element_handle()
    assert page.evaluate(GLYPHS_JS, [result, "梯", "度"]), (
        "the browser has no font for Chinese: every character shows as the same box (Debian: fonts-noto-cjk)")
    if not {"42", "24", "10"} <= tokens(text):
        problems.append(f"plain cell: the numbers 42, 24, 10 not all in {text[:300]!r}")
    heads = plain.locator(".tapemagic th, .tapemagic summary").all_inner_texts()
    english = [head for head in heads if re.fullmatch(r"[A-Za-z ,:()]+", head.strip()) and head.strip() not in ("dtype",)]
    if english:
        problems.append(f"plain cell: headings left in English: {english}")

    # --explore: the result in Chinese with its slider; a step of the slider re-runs it, still in Chinese
    explore = cells.nth(2)
    explore.scroll_into_view_if_needed()
    sliders = explore.locator(".tapemagic-explore")
    sliders.wait_for(timeout=60_000)
    before = result_text(explore)
    if zh("tape: {values}", values="g = 27") not in before:
        problems.append(f"--explore: no Chinese header for g = 27 in {before[:200]!r}")
    plot = explore.locator("svg.tm-plot").first
    plot_label = zh("{target} and {derivative} over {source}", target="g(x)", derivative="∂g/∂x", source="x")
    if plot.get_attribute("aria-label") != plot_label:
        problems.append(f"--explore: the plot is labelled {plot.get_attribute('aria-label')!r}, not {plot_label!r}")
    handle = sliders.locator(".noUi-handle").first
    handle.focus()
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("(c) => !c.querySelector('.tapemagic').innerText.includes('g = 27')",
                           arg=explore.element_handle(), timeout=30_000)
    page.wait_for_timeout(500)
    x = float(sliders.locator(".widget-readout").first.inner_text().replace("\u2212", "-"))
    after = result_text(explore)
    if zh("tape: {values}", values=f"g = {x**3:.4g}") not in after:
        problems.append(f"--explore after a step to x = {x}: {after[:200]!r}")
    if f"{3 * x**2:.4g}" not in tokens(after):
        problems.append(f"--explore after a step to x = {x}: dg/dx = {3 * x**2:.4g} not shown")
    if plot.get_attribute("aria-label") != plot_label:
        problems.append(f"--explore after a step: the plot is labelled {plot.get_attribute('aria-label')!r}")
    print(f"zh --explore: one key press moved x from 3 to {x}; the result reads {after.splitlines()[0]!r}")

    # --graph: the step controls' labels and the boxes' lines in Chinese
    graph = cells.nth(3)
    graph.scroll_into_view_if_needed()
    controls = graph.locator(".tapemagic-graph-steps")
    controls.wait_for(timeout=60_000)
    buttons = [b.strip() for b in controls.locator("button").all_inner_texts() if b.strip()]
    expected_buttons = []
    for message in ("all", "forward pass", "reverse pass"):
        try:
            expected_buttons.append(zh(message))
        except LookupError as missing:
            problems.append(f"--graph controls: {missing}")
    if not set(expected_buttons) <= set(buttons):
        problems.append(f"--graph controls: buttons {buttons}, expected {expected_buttons}")
    svg_text = graph.locator("svg.tm-graph").first.text_content() if graph.locator("svg.tm-graph").count() else ""
    try:
        for message, fields in (("value {value}", {"value": "42"}), ("adjoint {value}", {"value": "24"})):
            if zh(message, **fields) not in svg_text:
                problems.append(f"--graph: no {zh(message, **fields)!r} in the drawing")
    except LookupError as missing:
        problems.append(f"--graph drawing: {missing}")
    try:
        assert_nothing_overlaps(graph.locator(".jp-OutputArea-output", has=page.locator("svg.tm-graph")).first)
    except AssertionError as overlap:
        problems.append(f"--graph drawing in Chinese: {overlap}")

    shoot_cell(page, graph, graph.locator(".jp-OutputArea-output", has=page.locator("svg.tm-graph")).first, "lab-zh-graph")
    plain.scroll_into_view_if_needed()
    screenshot(page, "lab-zh")
    assert not problems, "\n".join(problems)
