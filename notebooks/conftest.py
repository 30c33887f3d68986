"""nbval runs the committed notebooks in kernels that inherit this process's environment.

A ``--graph`` drawing is laid out by Graphviz's ``dot`` where it is installed and by tapemagic's own
pure-Python layout otherwise; dot's positions may move with its version, the fallback's depend on
nothing but tapemagic. ``build.py`` saves the notebooks with the fallback, so the kernels nbval
starts use it too (unless ``TAPEMAGIC_GRAPH_LAYOUT`` is set): the saved drawings then compare equal on
every machine, with or without Graphviz. Only while a notebook's kernel starts: tests elsewhere see
the environment as it was.
"""
from __future__ import annotations

import os

import pytest

LAYOUT = "TAPEMAGIC_GRAPH_LAYOUT"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    before = os.environ.get(LAYOUT)
    os.environ.setdefault(LAYOUT, "fallback")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(LAYOUT, None)
        else:
            os.environ[LAYOUT] = before
