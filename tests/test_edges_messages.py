"""At the edges: non-ASCII names, Python's builtins as sources or -o, a trailing ';', IPython syntax in
the body, complex sources. Every test goes through a real IPython shell."""
from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from conftest import run, value


# 1. Every valid Python identifier is a name on the magic line.

def test_non_ascii_source_target_and_out(shell):
    shell.run_cell("α = tf.Variable(3.0)")
    result, _ = run(shell, "α -t résultat -o ρ --display none", "résultat = α**2\nautre = résultat + 1")
    stored = shell.user_ns["ρ"]
    assert value(stored.value) == 9.0
    assert value(stored.gradients["α"]) == 6.0
    assert result is None  # --display none


def test_non_ascii_dotted_path_and_hvp(shell):
    shell.run_cell("import types\nmodèle = types.SimpleNamespace(poids=tf.Variable(2.0))\nν = tf.constant(1.0)")
    result, _ = run(shell, "modèle.poids --hvp ν", "y = modèle.poids**3")
    assert value(result.gradients["modèle.poids"]) == 12.0
    assert value(result.target.hvp["modèle.poids"]) == 12.0  # d²y/dp² · ν = 6p · 1


def test_non_ascii_range_under_explore(shell):
    shell.run_cell("θ = tf.Variable(1.0)")
    result, _ = run(shell, "θ --explore --range θ=-2:2 -o r --display none", "y = θ**2")
    assert value(shell.user_ns["r"].gradients["θ"]) == 2.0


def test_name_as_python_reads_it(shell):
    # Python reads the micro sign µ (U+00B5) in code as the Greek μ (U+03BC): so must the magic line.
    shell.run_cell("\u00b5 = tf.Variable(2.0)")
    assert "\u03bc" in shell.user_ns
    run(shell, "\u00b5 -o r --display none", "y = \u00b5 * 5")
    assert value(shell.user_ns["r"].gradients["\u03bc"]) == 5.0


@pytest.mark.parametrize("line", ["if", "x -t None", "x.class", "x --hvp lambda"])
def test_keywords_are_not_names(shell, line):
    shell.run_cell("x = tf.Variable(1.0)")
    with pytest.raises(UsageError, match="keyword, not a name|--hvp needs the name of a vector"):
        run(shell, line, "y = x * 2")


# 2. Python's builtins are not sources, and -o does not shadow them.

@pytest.mark.parametrize("name", ["print", "len", "sum"])
def test_builtin_as_source(shell, name):
    with pytest.raises(UsageError, match=rf"{name} is Python's builtin function {name}, not a variable") as info:
        run(shell, name, "y = 2.0 * 3.0")
    assert f"e.g. {name} =" not in str(info.value)  # no advice to shadow the builtin


def test_builtin_as_hvp_vector(shell):
    shell.run_cell("x = tf.Variable(1.0)")
    with pytest.raises(UsageError, match="sum is Python's builtin function sum"):
        run(shell, "x --hvp sum", "y = x**2")


def test_builtin_name_the_notebook_defined_is_a_source(shell):
    shell.run_cell("sum = tf.Variable(2.0)")
    run(shell, "sum -o r --display none", "y = sum**2")
    assert value(shell.user_ns["r"].gradients["sum"]) == 4.0


@pytest.mark.parametrize("name", ["print", "len", "__builtins__", "__name__"])
def test_out_would_shadow_builtins(shell, name):
    shell.run_cell("x = tf.Variable(1.0)")
    before = shell.user_ns.get(name, "absent")
    with pytest.raises(UsageError, match="would shadow Python's builtin|Python's own"):
        run(shell, f"x -o {name}", "y = x * 2")
    assert shell.user_ns.get(name, "absent") is before
    assert shell.run_cell("len([print])").result == 1


# 3. A trailing ';' hides the output, as in any IPython cell.

def test_semicolon_hides_the_output(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    with capture_output() as captured:
        shell.run_cell("%%tape x -o r\nprint('ran')\ny = x * 2;\n\n")
    assert captured.stdout == "ran\n" and not captured.outputs
    assert value(shell.user_ns["r"].gradients["x"]) == 2.0  # computed and stored all the same
    result, _ = run(shell, "x --display text", "x**2;  # comment")
    assert result is None


def test_semicolon_hides_the_line_magic(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    with capture_output() as captured:
        shell.run_cell("%tape x -o r -- x**3;")
    assert not captured.stdout and not captured.outputs
    assert value(shell.user_ns["r"].gradients["x"]) == 27.0


def test_no_semicolon_still_shows(shell):
    shell.run_cell("x = tf.Variable(3.0)")
    result, _ = run(shell, "x --display text", "y = x * 2  # a;b;")
    assert result is not None and value(result.gradients["x"]) == 2.0
    with capture_output() as captured:
        shell.run_cell("%%tape x --display text\ny = x * 2\n")
    assert "tape: y = 6" in captured.stdout


# 4. IPython syntax in the body: the SyntaxError says the body is plain Python.

@pytest.mark.parametrize(("cell", "line"), [
    ("%time y = x * 2", 1),
    ("%%timeit\ny = x * 2", 1),
    ("z = 1.0\n!ls\ny = x * 2", 2),
    ("files = !ls\ny = x * 2", 1),
    ("y = x * 2\nx?", 2),
])
def test_magics_in_the_body(shell, cell, line):
    shell.run_cell("x = tf.Variable(1.0)")
    with pytest.raises(SyntaxError) as info:
        run(shell, "x", cell)
    error = info.value
    assert "the body of %%tape is plain Python" in error.msg and "no %magics, no ! shell lines" in error.msg
    assert "in a cell of its own" in error.msg
    assert error.lineno == line and error.filename.startswith("<tape-cell-")
    assert error.text.strip() == cell.splitlines()[line - 1]


def test_top_level_await(shell):
    shell.run_cell("x = tf.Variable(1.0)")
    cell = "async def scale(v):\n    return v * 2\ny = await scale(x)"
    with pytest.raises(SyntaxError) as info:
        run(shell, "x", cell)
    error = info.value
    assert error.msg.startswith("'await' outside function: the body of %%tape is plain Python")
    assert "asyncio.run(" in error.msg
    assert error.lineno == 3 and error.filename.startswith("<tape-cell-") and "await scale(x)" in error.text


def test_magic_through_run_cell_keeps_the_users_line(shell):
    shell.run_cell("x = tf.Variable(1.0)")
    with capture_output():
        outcome = shell.run_cell("%%tape x\ny = x * 2\n%time z = y")
    error = outcome.error_in_exec
    assert isinstance(error, SyntaxError) and "plain Python" in error.msg and error.lineno == 2


def test_other_syntax_errors_stay_as_python_says(shell):
    shell.run_cell("x = tf.Variable(1.0)")
    with pytest.raises(SyntaxError) as info:
        run(shell, "x", "y = x +")
    assert "plain Python" not in info.value.msg and info.value.lineno == 1
    with pytest.raises(SyntaxError) as info:  # await in a plain def is the function's error, not IPython's
        run(shell, "x", "def g():\n    await h()\ny = x")
    assert "plain Python" not in info.value.msg


# 5. Complex sources: not supported, and how to get there anyway.

@pytest.mark.parametrize("code", ["z = 1 + 2j", "z = np.complex128(1 + 2j)", "z = np.array([1 + 2j, 3j])"])
def test_complex_source(shell, code):
    shell.run_cell(code)
    with pytest.raises(UsageError) as info:
        run(shell, "z", "y = z * 2")
    message = str(info.value)
    assert "complex" in message and "not supported" in message
    assert "real and imaginary parts" in message and "tf.complex" in message

