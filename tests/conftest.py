"""Shared fixtures: a real IPython shell with tapemagic loaded, and a clean namespace per test."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.environ.get("TAPEMAGIC_MNIST_DIR", os.path.join(REPO, "..", "shared", "data", "mnist"))


@pytest.fixture(scope="session")
def _shell() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("colors", "nocolor")  # tracebacks as plain text, so tests can read them
    shell.run_line_magic("load_ext", "tapemagic")
    return shell


@pytest.fixture
def shell(_shell: InteractiveShell) -> InteractiveShell:
    """The session's shell, with every name a test defines removed afterwards."""
    before = set(_shell.user_ns)
    _shell.run_cell("import tensorflow as tf\nimport numpy as np")
    yield _shell
    for name in set(_shell.user_ns) - before:
        del _shell.user_ns[name]
    for configurable in _shell.configurables:
        if type(configurable).__name__ == "TapeMagics":
            configurable.display = "auto"
            configurable.precision = 4
            configurable.max_elements = 12


def run(shell: InteractiveShell, line: str, cell: str | None = None):
    """Run %%tape (or %tape when cell is None) and return (result, captured outputs)."""
    with capture_output() as captured:
        if cell is None:
            result = shell.run_line_magic("tape", line)
        else:
            result = shell.run_cell_magic("tape", line, cell)
    return result, captured


def value(tensor) -> object:
    """A tensor as a plain Python number or nested list."""
    return tensor.numpy().tolist()
