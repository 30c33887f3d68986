"""The widget view in a real JupyterLab, driven by a real headless Chromium (Debian's, through Playwright).

Starts JupyterLab on localhost (temporary directory, token, free port), opens a notebook,
runs it, and checks in the page that the widget rendered, that its tabs switch, and that
moving an --explore slider changes the gradient shown. Saves a screenshot under artifacts/.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

CELLS = [
    "%load_ext tapemagic\nimport tensorflow as tf\nx = tf.Variable(3.0)\ny = tf.Variable(4.0)",
    "%%tape x y -n 2\nf = x**2 * y + y + 2",
    "%%tape x --explore --range x=-3:3\ng = x**3",
]


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8], "metadata": {},
              "outputs": [], "source": source} for source in CELLS]
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    _notebook(root / "widget.ipynb")
    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JUPYTER_CONFIG_DIR=str(root / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(root / ".runtime"))
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--ServerApp.disable_check_xsrf=True", "--allow-root", "--LabApp.news_url=", "--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError((root / "lab.log").read_text())
            time.sleep(0.5)
    else:
        server.kill()
        raise RuntimeError("JupyterLab did not start in 90 s:\n" + (root / "lab.log").read_text())
    yield base, token, root
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def _start_session(base: str, token: str, path: str) -> None:
    """Start the notebook's kernel through the REST API, so the page opens without a kernel dialog."""
    body = json.dumps({"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}}).encode()
    request = urllib.request.Request(f"{base}/api/sessions?token={token}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).read()


def test_widget_renders_switches_tabs_and_explores(lab):
    from playwright.sync_api import expect, sync_playwright

    base, token, root = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        try:
            _start_session(base, token, "widget.ipynb")
            page.goto(f"{base}/lab/tree/widget.ipynb?token={token}")
            page.locator(".jp-Notebook").wait_for(timeout=60_000)
            select = page.locator(".jp-Dialog button", has_text="Select")
            try:
                select.wait_for(timeout=5_000)
                select.click()
            except Exception:
                pass  # the session already had its kernel: no dialog
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            news = page.locator(".jp-Notification-Toast button", has_text="No")
            if news.count():
                news.first.click()  # JupyterLab's news question, not ours
            view = page.locator(".tapemagic-view").first
            view.wait_for(timeout=180_000)
            assert page.locator("text=Error displaying widget").count() == 0
            expect(view).to_contain_text("f = 42")
            expect(view).to_contain_text("∂²f/∂·²")
            table_text = view.locator("table").first.inner_text()
            assert "24" in table_text and "10" in table_text and "8" in table_text

            view.locator(".lm-TabBar-tab", has_text="Watched variables").click()
            watched = view.locator(".widget-tab-contents .tapemagic", has_text="float32").last
            expect(watched).to_be_visible()
            assert "x" in watched.inner_text() and "y" in watched.inner_text()

            explorer = page.locator(".tapemagic-explore").first
            explorer.wait_for(timeout=120_000)
            numbers = explorer.locator(".explore-numbers")
            expect(numbers).to_contain_text("∂g/∂x = 27")  # 3x² at x = 3
            readout = explorer.locator(".widget-readout").first
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("1")
            page.keyboard.press("Enter")
            expect(numbers).to_contain_text("∂g/∂x = 3", timeout=30_000)  # 3x² at x = 1
            expect(numbers).not_to_contain_text("= 27")
            expect(page.locator(".tapemagic-view").nth(1).locator("table").first).to_contain_text("3")  # the tabs follow
            expect(page.locator(".tapemagic-view").nth(1)).to_contain_text("g = 1")
            page.wait_for_timeout(500)
        finally:
            page.screenshot(path=str(ARTIFACTS / "browser-widget.png"), full_page=True)
            browser.close()
