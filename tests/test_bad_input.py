"""Bad input through a real shell: a UsageError that says how to fix it, nothing executed,
nothing lost; a failing cell shows the user's traceback, keeps earlier assignments, stores
no result and leaves no tape recording."""
from __future__ import annotations

import pytest
import tensorflow as tf
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from tensorflow.python.eager import record

from conftest import run

SETUP = "x = tf.Variable(3.0)\nname = 'text'\nnothing = None\nmodel = tf.keras.Sequential([tf.keras.layers.Dense(2)])\n" \
        "ints = tf.constant([1, 2])\nrag = tf.ragged.constant([[1.0], [2.0, 3.0]])\nsp = tf.sparse.from_dense([[0.0, 1.0]])\n" \
        "gen = (i for i in range(3))\nempty = []\nclass Boom:\n    @property\n    def prop(self):\n        raise ValueError('no')\nboom = Boom()\n"

BAD = [
    ("missing", "y = x", "name 'missing' is not defined"),
    ("x.nope", "y = x", "'x.nope' does not exist"),
    ("boom.prop", "y = x", "reading boom.prop raised ValueError"),
    ("name", "y = x", "name is a str, not a number"),
    ("nothing", "y = x", "nothing is a NoneType"),
    ("gen", "y = x", "generator"),
    ("model", "y = x", "name its variables instead, as model.trainable_variables"),
    ("rag", "y = x", "ragged tensor"),
    ("sp", "y = x", "sparse tensor"),
    ("empty", "y = x", "empty"),
    ("x -t missing_target", "y = x", "target 'missing_target' is neither assigned"),
    ("x -n 0", "y = x", "order must be 1 or more"),
    ("x --no-watch", "y = x", "--no-watch only makes sense with --no-auto-watch"),
    ("x", "for i in range(2):\n    pass", "cannot tell what to differentiate"),
    ("x", "a, b = x, x", "assignment to several names"),
]


@pytest.mark.parametrize(("line", "cell", "message"), BAD)
def test_bad_input_is_a_usage_error_and_nothing_runs(shell, line, cell, message):
    shell.run_cell(SETUP)
    before = dict(shell.user_ns)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        shell.run_cell_magic("tape", line, "ran = True\n" + cell)
    assert "ran" not in shell.user_ns  # nothing executed
    assert {k: v for k, v in shell.user_ns.items() if k in before} == before  # nothing lost or rebound
    assert not record.could_possibly_record()


def test_line_magic_without_expression_is_a_usage_error(shell):
    with pytest.raises(UsageError, match="needs an expression after ' -- '"):
        shell.run_line_magic("tape", "x")


def test_usage_error_in_a_cell_shows_no_traceback(shell):
    with capture_output() as captured:
        result = shell.run_cell("%%tape missing\ny = 1")
    assert not result.success
    assert "UsageError: name 'missing' is not defined" in captured.stdout + captured.stderr
    assert "Traceback" not in captured.stdout + captured.stderr


def test_failing_cell_keeps_earlier_assignments_and_shows_user_traceback(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    with capture_output() as captured:
        result = shell.run_cell("%%tape x -o r\nkept = x * 2\nraise ValueError('boom in the cell')\ny = kept")
    assert not result.success and isinstance(result.error_in_exec, ValueError)
    text = captured.stdout + captured.stderr
    assert "<tape-cell-" in text and "raise ValueError('boom in the cell')" in text and "----> 2 raise ValueError" in text
    assert "_engine.py" not in text  # tapemagic's own frames are not the user's business
    assert float(shell.user_ns["kept"]) == 6.0  # assignments before the error stay
    assert "r" not in shell.user_ns  # no result stored
    assert not record.could_possibly_record()  # no tape left recording
    r, _ = run(shell, "x", "y = x * x")  # and the next %%tape cell works
    assert r.gradients["x"].numpy() == 6.0


def test_failed_cell_restores_a_converted_source(shell):
    shell.run_cell("v = 2.5")
    shell.run_cell("%%tape v\nraise RuntimeError('x')\nw = v")
    assert shell.user_ns["v"] == 2.5 and type(shell.user_ns["v"]) is float


def test_a_converted_source_is_the_users_number_again_after_the_cell(shell):
    # The cell runs with v as a tensor (so it can be differentiated), and afterwards v is what
    # a plain run leaves: the Python number.
    shell.run_cell("v = 2.5")
    r, _ = run(shell, "v -t w", "w = v ** 2\nseen = type(v).__name__")
    assert shell.user_ns["v"] == 2.5 and type(shell.user_ns["v"]) is float
    assert r.gradients["v"].numpy() == 5.0 and shell.user_ns["seen"] == "EagerTensor"
    assert ("v was a Python number; the cell ran with it as a float32 tf.constant, and v is the Python number "
            "again after the cell") in " ".join(r.to_text().split())  # the text view wraps long notes


def test_a_cell_that_rebinds_a_converted_source_keeps_its_own_value(shell):
    shell.run_cell("v = 2.5")
    run(shell, "v", "w = v ** 2\nv = 'mine'")
    assert shell.user_ns["v"] == "mine"


def test_keyboard_interrupt_stops_the_cell_cleanly(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    with capture_output():
        result = shell.run_cell("%%tape x -o r\nbefore = 1\nraise KeyboardInterrupt\ny = x")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert shell.user_ns["before"] == 1 and "r" not in shell.user_ns
    assert not record.could_possibly_record()


def test_error_in_custom_gradient_backward(shell):
    shell.run_cell(
        "x = tf.Variable(3.0)\n@tf.custom_gradient\ndef bad(v):\n    def grad(upstream):\n"
        "        raise ArithmeticError('backward failed')\n    return v * v, grad"
    )
    with capture_output() as captured:
        result = shell.run_cell("%%tape x -o r\ny = bad(x)")
    assert isinstance(result.error_in_exec, ArithmeticError)
    assert "backward failed" in captured.stdout + captured.stderr
    assert float(shell.user_ns["y"]) == 9.0 and "r" not in shell.user_ns
    assert not record.could_possibly_record()


def test_no_gradient_registered_is_shown(shell):
    shell.run_cell(
        "x = tf.Variable([3.0])\n"
        "@tf.function\ndef opaque(v):\n    return tf.raw_ops.StopGradient(input=v) * 0 + tf.py_function(lambda a: a * 2, [v], tf.float32)"
    )
    with capture_output():
        result = shell.run_cell("%%tape x -o r\ny = tf.reduce_sum(opaque(x))")
    # py_function has a gradient in eager mode; either a number or an explained None is fine, never a crash.
    assert result.success or isinstance(result.error_in_exec, LookupError)
    assert not record.could_possibly_record()


def test_nan_and_inf_are_shown_not_hidden(shell):
    shell.run_cell("x = tf.Variable([0.0, -1.0, 4.0])")
    r, _ = run(shell, "x --display text", "y = tf.sqrt(x)")
    text = r.to_text()
    assert "nan" in text and "inf" in text
