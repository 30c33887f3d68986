"""The cell runs once: after a %%tape cell, with any option, the user's state is what one plain
run of the cell leaves, or the magic raised UsageError before anything ran and the state is
what it was before the cell.

A matrix of side effects x options x source sizes. Each side effect is a small setup and a cell
that computes a scalar float target ``y`` from a float source ``x``: a variable assigned in the cell
or in a helper it calls, a Keras BatchNormalization layer called with training=True, a Keras
optimizer step, a list append, a counter (top level and ``global`` in a helper), print (in the cell
and in a helper), draws from tf.random, a tf.random.Generator and np.random, and a file appended to
through pathlib. Sources of 20 elements make the engine trace -n 2, --jacobian and --hessian; the
scalar source covers the eager tapes and --explore.

Each test compares two runs of the same setup:

* the reference: the setup, then the cell run once by ``shell.run_cell`` (under nested
  GradientTapes that only record, to get the reference derivatives of that very run);
* the magic: the setup, then ``%%tape x OPTIONS`` on the same cell, then the result shown as a
  notebook shows it (text, HTML and, as JupyterLab shows it, the widget view, whose --explore
  sliders re-run the cell).

Compared: every name the setup and the cell define (variables, layers, optimizers, lists, counters,
generators, files by content), the next draw of each seeded random generator, the captured stdout,
and, where a result came back, its value and derivatives against those of the reference run
(so a gradient must come from the same random draw as the value). What an option adds (a forward
gradient, a finite-difference check, ...) may be left out when a note says why; where it is there,
it must be the plain run's. Two more lines must be refused with UsageError before the cell runs:
a bad --eps, and --hvp naming a vector that is not defined.
"""
from __future__ import annotations

import dataclasses
import pathlib
import types
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

N = 20  # >= 16 elements: -n 2, --jacobian and --hessian take the traced path for pure-TensorFlow cells


@dataclasses.dataclass(frozen=True)
class Effect:
    id: str
    setup: str  # run before the cell; TMP is replaced by the test's temporary directory
    cell: str  # computes the scalar target y from the source x
    probe: str | None = None  # an expression drawing the next random numbers, evaluated after the cell


EFFECTS = [
    Effect("variable", "w = tf.Variable(1.0)",
           "w.assign_add(1.0)\ny = tf.reduce_sum(tf.sin(x) * x) * w"),
    Effect("variable_in_helper",
           "w = tf.Variable(1.0)\n"
           "def bump():\n"
           "    w.assign_add(1.0)\n"
           "    return tf.identity(w)\n",
           "y = tf.reduce_sum(tf.sin(x) * x) * bump()"),
    Effect("keras_batchnorm",
           "import keras\nbn = keras.layers.BatchNormalization(momentum=0.5)\nbn.build((None, 1))",
           "h = bn(tf.reshape(x, [-1, 1]), training=True)\n"
           "y = tf.reduce_sum(tf.sin(x) * tf.reshape(h, tf.shape(x)) + x ** 2)"),
    Effect("keras_optimizer",
           "import keras\n"
           "model = keras.Sequential([keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(0.1))])\n"
           "model.build((1, int(tf.size(x))))\n"
           "opt = keras.optimizers.Adam(learning_rate=0.1)\n"
           "opt.build(model.trainable_variables)",
           "opt.apply_gradients(zip([tf.ones_like(t) for t in model.trainable_variables], model.trainable_variables))\n"
           "y = tf.reduce_sum(tf.tanh(model(tf.reshape(x, [1, -1]))) ** 2)"),
    Effect("keras_optimizer_apply",
           "import keras\n"
           "model = keras.Sequential([keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(0.1))])\n"
           "model.build((1, int(tf.size(x))))\n"
           "opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)\n"
           "opt.build(model.trainable_variables)",
           "opt.apply([tf.ones_like(t) for t in model.trainable_variables], model.trainable_variables)\n"
           "y = tf.reduce_sum(tf.tanh(model(tf.reshape(x, [1, -1]))) ** 2)"),
    Effect("list_append", "log = []",
           "log.append(tf.reduce_sum(x))\ny = tf.reduce_sum(x ** 2) * len(log)"),
    Effect("counter", "n = 0",
           "n += 1\ny = tf.reduce_sum(x ** 2) * n"),
    Effect("counter_global_in_helper",
           "n = 0\n"
           "def tick():\n"
           "    global n\n"
           "    n += 1\n"
           "    return n\n",
           "y = tf.reduce_sum(x ** 2) * tick()"),
    Effect("print", "",
           'y = tf.reduce_sum(x ** 2)\nprint("ran once:", y)'),
    Effect("print_in_helper",
           "def report(value):\n"
           '    print("ran once")\n'
           "    return value\n",
           "y = report(tf.reduce_sum(x ** 2))"),
    Effect("tf_random_normal", "tf.random.set_seed(7)",
           "r = tf.random.normal(tf.shape(x))\ny = tf.reduce_sum(r * x ** 3 + x ** 2)",
           probe="tf.random.normal([4])"),
    Effect("tf_random_generator", "gen = tf.random.Generator.from_seed(3)",
           "r = gen.normal(tf.shape(x))\ny = tf.reduce_sum(r * x ** 3 + x ** 2)",
           probe="gen.normal([4])"),
    Effect("numpy_random", "np.random.seed(5)",
           "r = tf.constant(np.random.normal(size=tuple(x.shape)), dtype=tf.float32)\ny = tf.reduce_sum(r * x ** 3 + x ** 2)",
           probe="np.random.normal(size=4)"),
    Effect("pathlib_file",
           'from pathlib import Path\nlog_file = Path(TMP) / "runs.txt"\nlog_file.write_text("")',
           'log_file.write_text(log_file.read_text() + "ran\\n")\n'
           "y = tf.reduce_sum(x ** 2) * len(log_file.read_text().splitlines())"),
]

OPTIONS = {  # id: the line after the source
    "plain": "",
    "order2": "-n 2",
    "jacobian": "--jacobian",
    "hessian": "--hessian",
    "forward": "--forward",
    "check": "--check",
    "hvp": "--hvp v",
    "explore": "--explore",
    "eager": "--eager",
    # Lines the magic must refuse with UsageError before the cell runs:
    "bad_eps": "--check --eps 5",  # refused while parsing the line
    "hvp_undefined": "--hvp no_such_vector",  # the vector is not defined: nothing to run the cell for
}
REFUSED = {"bad_eps", "hvp_undefined"}

SOURCES = {  # id: the source x and a vector v of its shape for --hvp
    "scalar": "x = tf.Variable(0.7)\nv = tf.constant(0.5)",
    "vec20": f"x = tf.Variable(tf.linspace(0.1, 2.0, {N}))\nv = tf.linspace(1.0, -1.0, {N})",
}

CASES = [
    pytest.param(effect, option, size, id=f"{effect.id}-{option}-{size}")
    for effect in EFFECTS
    for option in OPTIONS
    for size in SOURCES
    if (option != "explore" or size == "scalar")  # --explore makes sliders for scalar sources
    and (option not in REFUSED or size == "vec20")
]

RTOL, ATOL = 1e-4, 1e-4  # derivatives: eager tapes against traced (XLA) ones
STATE_RTOL, STATE_ATOL = 1e-5, 1e-6


# -- running ---------------------------------------------------------------------------


def _reset(shell, baseline: set[str]) -> None:
    for name in set(shell.user_ns) - baseline:
        del shell.user_ns[name]


def _setup(shell, baseline: set[str], effect: Effect, size: str, tmp: pathlib.Path) -> None:
    _reset(shell, baseline)
    code = SOURCES[size] + "\n" + effect.setup.replace("TMP", repr(str(tmp)))
    shell.run_cell(code, store_history=False, silent=True).raise_error()


def _probe(shell, effect: Effect) -> Any:
    return None if effect.probe is None else _snap(eval(effect.probe, shell.user_ns))  # noqa: S307 - our own probe


@dataclasses.dataclass
class Reference:
    state: dict[str, Any]
    probe: Any
    stdout: str
    y: np.ndarray
    gradient: np.ndarray
    second: np.ndarray  # d/dx of the gradient, as nested tapes give it (column sums of the Hessian)
    hessian: np.ndarray  # (size, size)
    hvp: np.ndarray


_REFERENCES: dict[tuple[str, str], Reference] = {}


def _reference(shell, baseline: set[str], effect: Effect, size: str, tmp: pathlib.Path) -> Reference:
    """The setup and one plain run of the cell; the tapes around it only record."""
    key = (effect.id, size)
    if key in _REFERENCES:
        return _REFERENCES[key]
    (tmp / "reference").mkdir(exist_ok=True)
    _setup(shell, baseline, effect, size, tmp / "reference")
    ns = shell.user_ns
    x = ns["x"]
    with capture_output() as captured:
        with tf.GradientTape(persistent=True) as outer:
            with tf.GradientTape(persistent=True) as inner:
                shell.run_cell(effect.cell, store_history=False).raise_error()
            y = ns["y"]
            gradient = inner.gradient(y, x)
        second = outer.gradient(gradient, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        hessian = outer.jacobian(gradient, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    size_ = int(tf.size(x))
    hessian = np.reshape(hessian.numpy(), (size_, size_))
    hvp = hessian @ np.reshape(ns["v"].numpy(), (-1,))
    reference = Reference(
        state=_state(shell, baseline), probe=_probe(shell, effect), stdout=captured.stdout,
        y=y.numpy(), gradient=gradient.numpy(), second=second.numpy(), hessian=hessian,
        hvp=np.reshape(hvp, x.shape),
    )
    _REFERENCES[key] = reference
    return reference


def _show(result: Any) -> None:
    """What a notebook does with the result: its MIME bundle, and the widget view JupyterLab shows."""
    if result is None:
        return
    result._repr_mimebundle_()
    repr(result)
    result.widget()


# -- state -----------------------------------------------------------------------------


def _snap(value: Any) -> Any:
    """A comparable picture of a value: numbers by value, containers item by item, files by content."""
    if isinstance(value, tf.random.Generator):
        return ("Generator", value.state.numpy().copy())
    if isinstance(value, (types.ModuleType, type)):
        return (type(value).__name__, getattr(value, "__name__", "?"))
    if isinstance(value, types.FunctionType):
        return ("function", value.__name__)
    if isinstance(value, pathlib.Path):
        return ("file", value.read_text() if value.exists() else None)
    if hasattr(value, "iterations") and hasattr(value, "variables"):  # a Keras optimizer
        return (type(value).__name__, [_snap(v) for v in value.variables])
    if hasattr(value, "weights") and hasattr(value, "trainable"):  # a Keras layer or model
        return (type(value).__name__, [_snap(v) for v in value.weights])
    if isinstance(value, np.ndarray):
        return ("ndarray", value.copy())
    if isinstance(value, np.generic):
        return ("ndarray", np.asarray(value))
    if tf.is_tensor(value) or isinstance(value, tf.Variable) or type(value).__name__ == "Variable":
        try:
            return (type(value).__name__, np.asarray(value.numpy()).copy())
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            return ("symbolic tensor", str(value))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_snap(item) for item in value])
    if isinstance(value, dict):
        return ("dict", {key: _snap(item) for key, item in value.items()})
    if isinstance(value, (int, float, str, bytes, bool, type(None))):
        return value
    return ("object", type(value).__name__)


def _state(shell, baseline: set[str]) -> dict[str, Any]:
    return {name: _snap(value) for name, value in shell.user_ns.items()
            if name not in baseline and not name.startswith("_")}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape:
            return False
        if a.dtype.kind in "fc" or b.dtype.kind in "fc":
            return bool(np.allclose(a, b, rtol=STATE_RTOL, atol=STATE_ATOL, equal_nan=True))
        return bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(p, q) for p, q in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 200 else text[:200] + "..."


def _state_problems(expected: dict[str, Any], got: dict[str, Any], when: str) -> list[str]:
    problems = []
    for name in sorted(expected.keys() | got.keys()):
        if name not in got:
            problems.append(f"{when}: {name} is gone (expected {_short(expected[name])})")
        elif name not in expected:
            problems.append(f"{when}: {name} is new: {_short(got[name])}")
        elif not _same(expected[name], got[name]):
            problems.append(f"{when}: {name} is {_short(got[name])}, expected {_short(expected[name])}")
    return problems


def _close(got: Any, expected: np.ndarray, what: str) -> list[str]:
    if got is None:
        return [f"{what} is None, expected {_short(expected)}"]
    got = np.asarray(got.numpy() if hasattr(got, "numpy") else got, dtype=np.float64)
    if got.size != np.size(expected):
        return [f"{what} has shape {got.shape}, expected {np.shape(expected)}"]
    if not np.allclose(got.reshape(-1), np.reshape(expected, (-1,)), rtol=RTOL, atol=ATOL):
        return [f"{what} is {_short(got)}, the plain run's is {_short(np.asarray(expected))}"]
    return []


def _result_problems(result: Any, option: str, ref: Reference) -> list[str]:
    """The value and gradient must be the plain run's. What an option adds may be left out, with a
    note saying why (a second run would change state, say); where it came back, it must be the
    plain run's too (a gradient from the same random draw as the value)."""
    problems = _close(result.value, ref.y, "value")
    problems += _close(result.gradients.get("x"), ref.gradient, "gradient")
    extra = {
        "order2": ("second derivative", lambda: result.derivatives.get(2, {}).get("x"), ref.second),
        "jacobian": ("Jacobian", lambda: (result.jacobian or {}).get("x"), ref.gradient),
        "hessian": ("Hessian", lambda: result.hessian, ref.hessian),
        "forward": ("forward-mode gradient", lambda: (result.target.forward or {}).get("x"), ref.gradient),
        "hvp": ("Hessian-vector product", lambda: (result.target.hvp or {}).get("x"), ref.hvp),
    }
    if option in extra:
        what, get, expected = extra[option]
        got = get()
        if got is None and not result.notes:
            problems.append(f"{what} is missing and no note says why")
        elif got is not None:
            problems += _close(got, expected, what)
    if option == "check":
        report = (result.target.check or {}).get("x")
        if report is None and not result.notes:
            problems.append("--check made no report and no note says why")
        elif report is not None and report.problem is None and not report.ok:
            problems.append(f"--check: {report}")
    return problems


# -- the matrix ------------------------------------------------------------------------


@pytest.mark.parametrize(("effect", "option", "size"), CASES)
def test_the_cell_runs_once(shell, tmp_path, effect, option, size):
    baseline = set(shell.user_ns)
    ref = _reference(shell, baseline, effect, size, tmp_path)

    _setup(shell, baseline, effect, size, tmp_path)
    before = _state(shell, baseline)
    line = f"x {OPTIONS[option]}".strip()
    problems: list[str] = []
    with capture_output() as captured:
        try:
            result = shell.run_cell_magic("tape", line, effect.cell)
        except UsageError as error:
            result = error
        after_magic = _state(shell, baseline)
        if not isinstance(result, UsageError):
            _show(result)
    after = _state(shell, baseline)
    probe = _probe(shell, effect)

    if option in REFUSED and not isinstance(result, UsageError):
        problems.append(f"the magic did not raise UsageError for %%tape {line}")
    if isinstance(result, UsageError):
        # Refused before anything ran: the state, the generators and stdout are as before the cell.
        problems += _state_problems(before, after, "after a UsageError")
        if captured.stdout:
            problems.append(f"after a UsageError, stdout is {captured.stdout!r}")
        if effect.probe is not None:
            _setup(shell, baseline, effect, size, tmp_path)
            untouched = _probe(shell, effect)
            if not _same(untouched, probe):
                problems.append(f"after a UsageError, the next draw is {_short(probe)}, expected {_short(untouched)}")
    else:
        problems += _state_problems(ref.state, after_magic, "after the magic")
        if not problems:
            problems += _state_problems(ref.state, after, "after showing the result")
        if effect.probe is not None and not _same(ref.probe, probe):
            problems.append(f"the next draw ({effect.probe}) is {_short(probe)}, after a plain run {_short(ref.probe)}")
        if captured.stdout != ref.stdout:
            problems.append(f"stdout is {captured.stdout!r}, a plain run prints {ref.stdout!r}")
        problems += _result_problems(result, option, ref)
    assert not problems, f"%%tape {line} on\n{effect.cell}\n" + "\n".join(f"- {p}" for p in problems)
