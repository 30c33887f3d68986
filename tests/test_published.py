"""What leaves the repository reads well: the committed notebooks in every viewer, the package's
metadata and README on PyPI.

No output of a committed notebook holds control characters (a progress bar's backspaces and
carriage returns become boxes in nbconvert HTML and garbage in Markdown), no stream output is a
wall of log lines, and no text line is wider than a terminal can show without wrapping a table.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but \t and \n
MAX_STREAM_LINES = 60
MAX_STREAM_BYTES = 8_000
MAX_TEXT_LINE = 160


def _outputs(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            yield index, output


def _texts(output: dict) -> dict[str, str]:
    found = {}
    if "text" in output:
        found["stream"] = "".join(output["text"]) if isinstance(output["text"], list) else output["text"]
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/"):
            found[mime] = "".join(value) if isinstance(value, list) else value
    if "traceback" in output:
        found["traceback"] = "\n".join(output["traceback"])
    return found


def test_there_are_notebooks_to_check():
    assert len(NOTEBOOKS) >= 5


def test_every_notebook_has_its_chinese_twin():
    """notebooks/zh/ holds each English notebook in Chinese, under the same file name."""
    english = {path.name for path in (ROOT / "notebooks").glob("*.ipynb")}
    chinese = {path.name for path in (ROOT / "notebooks" / "zh").glob("*.ipynb")}
    assert english and chinese == english, f"missing in notebooks/zh: {sorted(english - chinese)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_control_characters_in_any_output(path):
    for index, output in _outputs(path):
        for kind, text in _texts(output).items():
            match = CONTROL.search(text)
            assert match is None, f"cell {index}, {kind}: control character {match.group()!r} in {text[:80]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_stream_outputs_are_of_a_sane_size(path):
    streams: dict[int, list[str]] = {}
    for index, output in _outputs(path):
        if output.get("output_type") == "stream":
            streams.setdefault(index, []).append(_texts(output)["stream"])
    for index, parts in streams.items():
        text = "".join(parts)
        assert len(parts) <= MAX_STREAM_LINES, f"cell {index}: {len(parts)} stream outputs (a log written piece by piece)"
        assert text.count("\n") <= MAX_STREAM_LINES, f"cell {index}: {text.count(chr(10))} lines of stream output"
        assert len(text.encode()) <= MAX_STREAM_BYTES, f"cell {index}: {len(text.encode())} bytes of stream output"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_text_lines_fit_a_terminal(path):
    for index, output in _outputs(path):
        for kind, text in _texts(output).items():
            if kind in ("text/html", "traceback"):
                continue
            for line in text.splitlines():
                assert len(line) <= MAX_TEXT_LINE, f"cell {index}, {kind}: a line of {len(line)} characters: {line[:100]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_rich_output_has_a_readable_fallback(path):
    """Every rich output also carries text/plain, and no %%tape result lives only in a widget (which
    a reopened notebook, nbconvert or GitHub cannot show): its static HTML is in the same output."""
    for index, output in _outputs(path):
        data = output.get("data", {})
        if data:
            assert "text/plain" in data, f"cell {index}: no text/plain in {sorted(data)}"
        if "application/vnd.jupyter.widget-view+json" in data and "tape:" in "".join(data.get("text/plain", [])):
            assert "text/html" in data, f"cell {index}: a %%tape result in a widget without its static HTML"


def test_the_package_metadata_is_complete():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert any(c.startswith("Framework :: Jupyter") for c in project["classifiers"])
    assert {"Homepage", "Source", "Issues"} <= set(project["urls"])


def test_readme_links_and_images_work_on_pypi():
    """PyPI shows the README without the repository around it: a relative image or link breaks there."""
    for name in ("README.md", "README.zh-CN.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            assert target.startswith(("https://", "http://", "#", "mailto:")), f"{name}: relative link {target}"


def test_the_readmes_link_to_each_other():
    """README.md opens with a link to the Chinese README, which links back and opens the Chinese quickstart on Binder."""
    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "(https://github.com/tapemagic/tapemagic/blob/main/README.zh-CN.md)" in english.split("\n## ")[0]
    assert "(https://github.com/tapemagic/tapemagic/blob/main/README.md)" in chinese.split("\n## ")[0]
    assert "urlpath=lab/tree/notebooks/zh/quickstart.ipynb" in chinese
