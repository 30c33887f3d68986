"""Shared fixtures: a real IPython shell with tapemagic loaded, and a clean namespace per test."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# In the notes of a run whose derivatives came from a trace verified on an earlier run of the same cell.
CACHED = "its cached trace"
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


@pytest.fixture
def trace_first_run(_shell: InteractiveShell):
    """Trace on a code's first run too (tests of the traced path itself; by default a first run
    takes its derivatives from the real run's tapes, and the trace is made when the code runs again)."""
    import tapemagic._api as api

    magics = next(c for c in _shell.configurables if type(c).__name__ == "TapeMagics")
    if magics._engine is None:
        magics._engine = api.new_engine()
    engines = [api.default_engine(), magics._engine]
    before = [engine.trace_first_run for engine in engines]
    for engine in engines:
        engine.trace_first_run = True
    yield
    for engine, flag in zip(engines, before):
        engine.trace_first_run = flag


@pytest.fixture
def display_updates(monkeypatch) -> list:
    """What the magic redraws in place, as (display_id, bundle), in a frontend that renders widgets: the
    --explore sliders and the --graph step buttons update the static output through its display handle."""
    import IPython.display

    from tapemagic.render import widget

    monkeypatch.setattr(widget, "in_kernel", lambda: True)
    updates: list = []
    original_update = IPython.display.DisplayHandle.update

    def record(handle, obj, **kwargs):
        updates.append((handle.display_id, obj))
        return original_update(handle, obj, **kwargs)

    monkeypatch.setattr(IPython.display.DisplayHandle, "update", record)
    return updates


def define_trusted_bump(shell: InteractiveShell, x: float, condition: str) -> None:
    """x = tf.Variable(x), v = tf.Variable(0.0), and bump(t), which adds 1 to v when ``condition`` (about
    float(t)) holds: library code the analysis trusts (compiled under a site-packages file name), so only
    TensorFlow's op log sees the assignment, during a replay at another value."""
    import sysconfig

    shell.user_ns["library_file"] = os.path.join(sysconfig.get_paths()["purelib"], "a_library_tapemagic_trusts.py")
    shell.run_cell(f"x = tf.Variable({x!r})\nv = tf.Variable(0.0)\nspace = {{'tf': tf, 'v': v}}\n"
                   f"exec(compile('def bump(t):\\n    if {condition}:\\n        v.assign_add(1.0)\\n    return t', "
                   "library_file, 'exec'), space)\nbump = space['bump']")
