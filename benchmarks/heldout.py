"""A held-out suite: thirteen derivative problems the optimisations were not written for, five ways, cold and warm.

    python benchmarks/heldout.py                    # everything: cold and warm, three repeats (about 15 minutes)
    python benchmarks/heldout.py --quick            # tiny sizes, one repeat (the test runs this)
    python benchmarks/heldout.py --only mlp-hessian rosenbrock-500 --warm
    python benchmarks/heldout.py --profile order3 [--warm]       # cProfile of the cell's first run (3rd to 22nd)

Problems: the ten of issue 17 (Rosenbrock n = 100/500/2000 Hessian; logistic regression d = 200/1000 Hessian; a
10-32-1 tanh MLP's loss Hessian over its 4 parameter tensors; softmax cross-entropy over 32x10 logits Hessian; the
Jacobians of tanh(Wx + b) at n = 1000 and of sin(x)*x at n = 4000; ``-n 3`` of an element-wise function of 10,000
elements) and three more: a Keras Dense model's loss Hessian over its variables, a Python loop (an unrolled
recurrence) Hessian, and the Jacobian of a matrix function tanh(X @ X).

Methods, each on the same float32 numbers on the CPU:

- ``cell``: the ``%%tape ... --display none`` cell through a real IPython shell (``run_cell_magic``);
- ``api``: ``tapemagic.tape(f, values, ...)`` with one engine reused across calls (code and namespace for Keras);
- ``eager``: plain eager TensorFlow (nested ``GradientTape``s, ``tape.jacobian``);
- ``function`` and ``xla``: the same inside ``tf.function(jit_compile=False)`` and ``tf.function(jit_compile=True)``;
- ``jax``: ``jax.jit(jax.hessian(f))`` over the raveled parameters, ``jax.jit(jax.jacrev(f))``, or nested
  ``jax.grad`` of the sum for ``-n``.

Every method's answer is checked against eager TensorFlow's (``allclose``, rtol 2e-3, atol 2e-3 x the largest
entry) before anything is timed. Warm: after a first call, the methods are called round-robin (the machine is shared
and noisy) and the median of each is kept. Cold: each method's first call (trace and compile included) is timed in a
fresh process forked from one that has imported TensorFlow, Keras, JAX, IPython and tapemagic but run nothing, the
methods of a problem one after another; imports are not timed, the child's data set-up is not timed. Each ratio is
taken per repeat; the tables print its median over the repeats and the spread [min-max].
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import tensorflow as tf  # noqa: E402  (after the environment above: TensorFlow reads it on import)

METHODS = ("cell", "api", "eager", "function", "xla", "jax")
RESULT_NAME = "_heldout_result"
RTOL = 2e-3  # float32 derivatives through different graphs (XLA fuses, JAX reorders sums)


@dataclasses.dataclass
class Case:
    """One problem at one size, built in the process that times it."""

    name: str
    kind: str  # "hessian", "jacobian" or "order"
    order: int
    line: str  # the %%tape line's sources and options (without --display)
    body: str  # the cell's code; its last assignment is the target
    namespace: dict[str, Any]  # what the cell reads
    variables: list[Any]  # the TensorFlow sources (tf.Variables), in the line's order
    tf_function: Callable[..., Any]  # f(*variables) as TensorFlow
    jax_function: Callable[..., Any]  # f(*arrays) as JAX, same order
    api_call: Callable[[Any], Any]  # engine -> tapemagic result
    jax_values: list[np.ndarray] | None = None  # JAX's sources where they are not the variables' values (Keras)


def cell_body(function: Callable[..., Any]) -> str:
    """The statements of ``function`` without its ``def`` line and final ``return y``: the cell's code is the
    function's own, so the cell and the other methods cannot drift apart."""
    lines = textwrap.dedent(inspect.getsource(function)).splitlines()
    assert lines[-1].strip() == "return y", f"{function.__name__} must end with 'return y'"
    return textwrap.dedent("\n".join(lines[1:-1]))


def _variables(values: dict[str, np.ndarray]) -> dict[str, Any]:
    return {name: tf.Variable(value, name=name) for name, value in values.items()}


def _case(name: str, kind: str, function: Callable[..., Any], jax_function: Callable[..., Any],
          sources: dict[str, np.ndarray], constants: dict[str, Any], order: int = 1) -> Case:
    """A case whose TensorFlow function takes its sources as arguments and reads ``constants`` from its closure
    (the same names the cell reads from the namespace)."""
    variables = _variables(sources)
    option = {"hessian": "--hessian", "jacobian": "--jacobian", "order": f"-n {order}"}[kind]
    values = [tf.constant(value) for value in sources.values()]

    def api_call(engine: Any) -> Any:
        import tapemagic

        return tapemagic.tape(function, values, hessian=kind == "hessian", jacobian=kind == "jacobian",
                              order=order, engine=engine, display="none")

    return Case(name, kind, order, " ".join(sources) + " " + option, cell_body(function),
                {"tf": tf, **constants, **variables}, list(variables.values()), function, jax_function, api_call)


# The problems. Each builder takes a size and a random generator and returns a Case; the TensorFlow function's body
# is the cell's code.

def rosenbrock(n: int, rng: np.random.Generator) -> Case:
    def f(x):
        y = tf.reduce_sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
        return y

    def f_jax(x):
        import jax.numpy as jnp

        return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    x0 = rng.uniform(-1.5, 1.5, size=n).astype(np.float32)
    return _case(f"rosenbrock-{n}", "hessian", f, f_jax, {"x": x0}, {})


def logistic(d: int, rng: np.random.Generator) -> Case:
    samples = 500
    features_np = (rng.normal(size=(samples, d)) / np.sqrt(d)).astype(np.float32)
    labels_np = rng.integers(0, 2, size=samples).astype(np.float32)
    features, labels = tf.constant(features_np), tf.constant(labels_np)

    def f(w):
        y = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=tf.linalg.matvec(features, w)))
        return y

    def f_jax(w):
        import jax
        import jax.numpy as jnp

        logits = features_np @ w
        return jnp.mean(jax.nn.softplus(logits) - labels_np * logits)

    w0 = (rng.normal(size=d) * 0.5).astype(np.float32)
    return _case(f"logistic-{d}", "hessian", f, f_jax, {"w": w0}, {"features": features, "labels": labels})


def mlp(hidden: int, rng: np.random.Generator) -> Case:
    """A 10-hidden-1 tanh MLP's squared error over 64 samples, Hessian over its four parameter tensors."""
    inputs_np = rng.normal(size=(64, 10)).astype(np.float32)
    targets_np = rng.normal(size=(64, 1)).astype(np.float32)
    inputs, targets = tf.constant(inputs_np), tf.constant(targets_np)

    def f(w1, b1, w2, b2):
        y = tf.reduce_mean(tf.square(tf.tanh(inputs @ w1 + b1) @ w2 + b2 - targets))
        return y

    def f_jax(w1, b1, w2, b2):
        import jax.numpy as jnp

        return jnp.mean((jnp.tanh(inputs_np @ w1 + b1) @ w2 + b2 - targets_np) ** 2)

    sources = {"w1": (rng.normal(size=(10, hidden)) / np.sqrt(10)).astype(np.float32),
               "b1": (rng.normal(size=hidden) * 0.1).astype(np.float32),
               "w2": (rng.normal(size=(hidden, 1)) / np.sqrt(hidden)).astype(np.float32),
               "b2": np.zeros(1, np.float32)}
    return _case(f"mlp-10-{hidden}-1-hessian", "hessian", f, f_jax, sources, {"inputs": inputs, "targets": targets})


def softmax(rows: int, rng: np.random.Generator) -> Case:
    onehot_np = np.eye(10, dtype=np.float32)[rng.integers(0, 10, size=rows)]
    onehot = tf.constant(onehot_np)

    def f(logits):
        y = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=logits))
        return y

    def f_jax(logits):
        import jax
        import jax.numpy as jnp

        return -jnp.mean(jnp.sum(onehot_np * jax.nn.log_softmax(logits), axis=1))

    return _case(f"softmax-{rows}x10-hessian", "hessian", f, f_jax, {"logits": rng.normal(size=(rows, 10)).astype(np.float32)},
                 {"onehot": onehot})


def tanh_layer(n: int, rng: np.random.Generator) -> Case:
    kernel_np = (rng.normal(size=(n, n)) / np.sqrt(n)).astype(np.float32)
    bias_np = (rng.normal(size=n) * 0.1).astype(np.float32)
    kernel, bias = tf.constant(kernel_np), tf.constant(bias_np)

    def f(x):
        y = tf.tanh(tf.linalg.matvec(kernel, x) + bias)
        return y

    def f_jax(x):
        import jax.numpy as jnp

        return jnp.tanh(kernel_np @ x + bias_np)

    return _case(f"tanh-jacobian-{n}", "jacobian", f, f_jax, {"x": rng.normal(size=n).astype(np.float32)},
                 {"kernel": kernel, "bias": bias})


def sin_times_x(n: int, rng: np.random.Generator) -> Case:
    def f(x):
        y = tf.sin(x) * x
        return y

    def f_jax(x):
        import jax.numpy as jnp

        return jnp.sin(x) * x

    return _case(f"sinx-jacobian-{n}", "jacobian", f, f_jax, {"x": rng.normal(size=n).astype(np.float32)}, {})


def third_order(n: int, rng: np.random.Generator) -> Case:
    def f(x):
        y = tf.tanh(x) * x ** 2
        return y

    def f_jax(x):
        import jax.numpy as jnp

        return jnp.tanh(x) * x ** 2

    return _case(f"order3-elementwise-{n}", "order", f, f_jax, {"x": rng.normal(size=n).astype(np.float32)}, {}, order=3)


def recurrence(n: int, rng: np.random.Generator) -> Case:
    """A Python loop: eight unrolled steps of h = tanh(A h + x), Hessian of |h|^2 over x."""
    mixing_np = (rng.normal(size=(n, n)) / np.sqrt(n)).astype(np.float32)
    mixing = tf.constant(mixing_np)

    def f(x):
        h = x
        for _ in range(8):
            h = tf.tanh(tf.linalg.matvec(mixing, h) + x)
        y = tf.reduce_sum(h ** 2)
        return y

    def f_jax(x):
        import jax.numpy as jnp

        h = x
        for _ in range(8):
            h = jnp.tanh(mixing_np @ h + x)
        return jnp.sum(h ** 2)

    return _case(f"loop-hessian-{n}", "hessian", f, f_jax, {"x": rng.normal(size=n).astype(np.float32)}, {"mixing": mixing})


def matrix_function(size: int, rng: np.random.Generator) -> Case:
    def f(m):
        y = tf.tanh(m @ m)
        return y

    def f_jax(m):
        import jax.numpy as jnp

        return jnp.tanh(m @ m)

    return _case(f"matrix-jacobian-{size}x{size}", "jacobian", f, f_jax,
                 {"m": (rng.normal(size=(size, size)) / np.sqrt(size)).astype(np.float32)}, {})


def keras_dense(hidden: int, rng: np.random.Generator) -> Case:
    """A Keras Sequential 8-hidden-1 (tanh) model's squared error, Hessian over model.trainable_variables."""
    import keras

    inputs_np = rng.normal(size=(64, 8)).astype(np.float32)
    targets_np = rng.normal(size=(64, 1)).astype(np.float32)
    inputs, targets = tf.constant(inputs_np), tf.constant(targets_np)
    keras.utils.set_random_seed(int(rng.integers(1 << 30)))
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hidden, activation="tanh"), keras.layers.Dense(1)])
    weights = [np.asarray(v.numpy()) for v in model.trainable_variables]  # kernel, bias, kernel, bias

    def f(*_variables):
        y = tf.reduce_mean(tf.square(model(inputs) - targets))
        return y

    def f_jax(w1, b1, w2, b2):
        import jax.numpy as jnp

        return jnp.mean((jnp.tanh(inputs_np @ w1 + b1) @ w2 + b2 - targets_np) ** 2)

    namespace = {"tf": tf, "model": model, "inputs": inputs, "targets": targets}
    body = cell_body(f)

    def api_call(engine: Any) -> Any:
        import tapemagic

        return tapemagic.tape(body, ["model.trainable_variables"], namespace=namespace, hessian=True, engine=engine,
                              display="none")

    variables = [v.value for v in model.trainable_variables]  # the tf.Variables under Keras 3's variables
    return Case(f"keras-dense-8-{hidden}-1-hessian", "hessian", 1, "model.trainable_variables --hessian", body, namespace,
                variables, f, f_jax, api_call, jax_values=weights)


# (builder, full size, quick size)
PROBLEMS: list[tuple[Callable[[int, np.random.Generator], Case], int, int]] = [
    (rosenbrock, 100, 10), (rosenbrock, 500, 20), (rosenbrock, 2000, 40),
    (logistic, 200, 10), (logistic, 1000, 20),
    (mlp, 32, 4), (softmax, 32, 4),
    (tanh_layer, 1000, 20), (sin_times_x, 4000, 40), (third_order, 10000, 100),
    (keras_dense, 16, 4), (recurrence, 200, 10), (matrix_function, 32, 4),
]


def build(builder: Callable[[int, np.random.Generator], Case], size: int) -> Case:
    return builder(size, np.random.default_rng(size * 7919 + len(builder.__name__)))


def jax_sources(case: Case) -> list[np.ndarray]:
    return case.jax_values or [np.asarray(v.numpy()) for v in case.variables]


# The derivatives each method computes, returned in one canonical NumPy layout: a Hessian (N, N) over the flattened
# sources in order, a Jacobian (target size, source size), or -n's orders stacked (order, n).

def canonical(case: Case, value: Any) -> np.ndarray:
    if case.kind == "order":
        return np.stack([np.asarray(v).reshape(-1) for v in value])
    array = np.asarray(value)
    if case.kind == "jacobian":
        source_size = int(np.prod(case.variables[0].shape))
        return array.reshape(-1, source_size)
    total = sum(int(np.prod(v.shape)) for v in case.variables)
    return array.reshape(total, total)


def tapemagic_value(case: Case, result: Any) -> Any:
    if case.kind == "hessian":
        return result.hessian
    if case.kind == "jacobian":
        return next(iter(result.jacobian.values()))
    return [next(iter(result.derivatives[k].values())) for k in range(1, case.order + 1)]


def tf_derivatives(case: Case) -> Callable[[], Any]:
    """The plain TensorFlow code for the case's derivatives (what a TensorFlow user writes)."""
    variables, function = case.variables, case.tf_function

    def hessian() -> Any:
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                y = function(*variables)
            gradients = inner.gradient(y, variables)
            # One Jacobian of all first derivatives, flattened into one vector (tape.jacobian takes one target).
            flat = tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0)
        columns = outer.jacobian(flat, variables)  # per source: (N,) + the source's shape
        return tf.concat([tf.reshape(block, (flat.shape[0], -1)) for block in columns], axis=1)

    def jacobian() -> Any:
        with tf.GradientTape() as tape:
            y = function(*variables)
        return tape.jacobian(y, variables[0])

    def orders() -> Any:
        x = variables[0]
        tapes = [tf.GradientTape(persistent=True) for _ in range(case.order)]
        for tape in tapes:
            tape.__enter__()
        derivative = function(x)
        results = []
        for tape in reversed(tapes):  # the innermost tape first: d1, then d2 of d1, ...
            tape.__exit__(None, None, None)
            derivative = tape.gradient(derivative, x)
            results.append(derivative)
        return results

    return {"hessian": hessian, "jacobian": jacobian, "order": orders}[case.kind]


def jax_derivatives(case: Case) -> Callable[[], Any]:
    """The JAX equivalent, jitted: jax.hessian over the raveled parameters, jax.jacrev, or nested grad of the sum."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    arrays = [jnp.asarray(a) for a in jax_sources(case)]
    if case.kind == "hessian":
        flat, unravel = ravel_pytree(arrays)
        compiled = jax.jit(jax.hessian(lambda v: case.jax_function(*unravel(v))))
        return lambda: compiled(flat)
    if case.kind == "jacobian":
        compiled = jax.jit(jax.jacrev(case.jax_function))
        return lambda: compiled(arrays[0])

    def orders(x: Any) -> list[Any]:
        derivatives, current = [], case.jax_function
        for _ in range(case.order):
            current = jax.grad(lambda v, g=current: jnp.sum(g(v)))
            derivatives.append(current(x))
        return derivatives

    compiled = jax.jit(orders)
    return lambda: compiled(arrays[0])


def methods(case: Case, shell: Any) -> dict[str, Callable[[], Any]]:
    """Each method as a call that returns its derivatives (unconverted); every call after the first is warm."""
    import tapemagic

    engine = tapemagic.Engine()
    plain = tf_derivatives(case)
    graph, compiled = tf.function(plain, jit_compile=False), tf.function(plain, jit_compile=True)
    jax_call = jax_derivatives(case)

    def cell() -> Any:
        return tapemagic_value(case, run_cell(shell, case))

    return {"cell": cell, "api": lambda: tapemagic_value(case, case.api_call(engine)), "eager": plain,
            "function": graph, "xla": compiled, "jax": jax_call}


def blocked(value: Any) -> Any:
    """Wait for asynchronous results (JAX dispatches before it computes)."""
    for leaf in value if isinstance(value, (list, tuple)) else [value]:
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
        elif hasattr(leaf, "numpy"):
            leaf.numpy()
    return value


def new_shell() -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    if "tape" not in shell.magics_manager.magics["cell"]:
        shell.run_line_magic("load_ext", "tapemagic")
    return shell


def run_cell(shell: Any, case: Case) -> Any:
    """The %%tape cell with the display off; -o keeps the result (the magic returns None when nothing shows)."""
    shell.run_cell_magic("tape", f"{case.line} --display none -o {RESULT_NAME}", case.body)
    return shell.user_ns[RESULT_NAME]


def check_agreement(case: Case, results: dict[str, Any]) -> float:
    """Every method against eager TensorFlow; returns the largest relative difference seen."""
    reference = canonical(case, results["eager"])
    scale = max(1.0, float(np.max(np.abs(reference))))
    worst = 0.0
    for name, value in results.items():
        array = canonical(case, value)
        np.testing.assert_allclose(array, reference, rtol=RTOL, atol=RTOL * scale,
                                   err_msg=f"{name} disagrees with eager TensorFlow on {case.name}")
        worst = max(worst, float(np.max(np.abs(array - reference))) / scale)
    return worst


# Warm timing, in this process.

def warm(case: Case, shell: Any, repeats: int, budget_s: float, least_rounds: int = 3) -> tuple[list[dict[str, float]], float, str]:
    """Per repeat, each method's median ms over interleaved rounds; also the worst disagreement and tapemagic's path."""
    calls = methods(case, shell)
    first = {name: blocked(call()) for name, call in calls.items()}  # warm-up: traces, compiles, caches
    run_cell(shell, case)  # the cell's second run: traced, and the trace checked against the run's tapes
    reused = run_cell(shell, case)  # the third: what the timed rounds run
    note = next((note for note in reused.notes if "its cached trace" in note), "")
    path = reused.path + (" (reused: one run without tapes, derivatives from the cached trace)" if "without tapes" in note
                          else " (reused: one run under one tape for the value and gradient, the rest from the cached trace)"
                          if note else "")
    worst = check_agreement(case, {**first, "cell, reused": tapemagic_value(case, reused)})
    started = time.perf_counter()
    for call in calls.values():
        blocked(call())
    rounds = max(least_rounds, min(40, int(budget_s / max(time.perf_counter() - started, 1e-3))))
    medians = []
    for repeat in range(repeats):
        times: dict[str, list[float]] = {name: [] for name in calls}
        for round_ in range(rounds):
            order = list(calls)[(round_ + repeat) % len(calls):] + list(calls)[:(round_ + repeat) % len(calls)]
            for name in order:  # round-robin, starting one further each round, so no method always follows another
                started = time.perf_counter()
                blocked(calls[name]())
                times[name].append((time.perf_counter() - started) * 1e3)
        medians.append({name: statistics.median(values) for name, values in times.items()})
    return medians, worst, path


# Cold timing: each first call in a process of its own.

def cold_child(builder_name: str, size: int, method: str) -> dict[str, Any]:
    """In a fresh process: build the case (not timed), then time the method's first call."""
    builder = {b.__name__: b for b, _, _ in PROBLEMS}[builder_name]
    case = build(builder, size)
    shell = new_shell() if method == "cell" else None
    path = ""
    if method == "cell":
        shell.user_ns.update(case.namespace)
        started = time.perf_counter()
        result = run_cell(shell, case)
        blocked(tapemagic_value(case, result))
        path = result.path
    elif method == "api":
        import tapemagic

        engine = tapemagic.Engine()
        started = time.perf_counter()
        result = case.api_call(engine)
        blocked(tapemagic_value(case, result))
        path = result.path
    elif method == "jax":
        import jax.numpy as jnp

        jnp.zeros(1).block_until_ready()  # JAX's backend starts on first use, as TensorFlow's context did in set-up
        call = jax_derivatives(case)
        started = time.perf_counter()
        blocked(call())
    else:
        plain = tf_derivatives(case)
        call = {"eager": plain, "function": tf.function(plain, jit_compile=False),
                "xla": tf.function(plain, jit_compile=True)}[method]
        started = time.perf_counter()
        blocked(call())
    return {"ms": (time.perf_counter() - started) * 1e3, "path": path}


def forked(function: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``function`` in a forked child (a fresh process with this one's imports) and return what it returns."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        try:
            payload = json.dumps(function())
        except BaseException as error:  # report it to the parent rather than die silently
            payload = json.dumps({"error": f"{type(error).__name__}: {error}"})
        with os.fdopen(write, "w") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(payload) if payload else {"error": "the child died without an answer"}
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer


def preload() -> None:
    """Import, without running any TensorFlow op, what the children use: imports are not what cold timing measures."""
    import IPython.core.interactiveshell  # noqa: F401
    import jax
    import jax.numpy  # noqa: F401
    import keras  # noqa: F401

    import tapemagic
    import tapemagic._api  # noqa: F401
    import tapemagic._magics  # noqa: F401
    import tapemagic.engine  # noqa: F401

    jax.config.update("jax_platforms", "cpu")
    del tapemagic


def cold(selected: list[tuple[Callable, int]], repeats: int) -> tuple[dict[str, list[dict[str, float]]], dict[str, str]]:
    """Per problem, per repeat, each method's first-call ms (the methods of a problem follow each other, starting one
    further along each repeat); and the path tapemagic took on each first call."""
    out: dict[str, list[dict[str, float]]] = {}
    paths: dict[str, str] = {}
    for repeat in range(repeats):
        for builder, size in selected:
            order = list(METHODS[repeat % len(METHODS):] + METHODS[:repeat % len(METHODS)])
            times = {}
            for method in order:
                answer = forked(lambda: cold_child(builder.__name__, size, method))
                times[method] = answer["ms"]
                if answer["path"]:
                    paths[f"{builder.__name__}-{size}-{method}"] = answer["path"]
            out.setdefault(f"{builder.__name__}:{size}", []).append(times)
            print(f"  cold repeat {repeat + 1}: {builder.__name__} {size}: "
                  + ", ".join(f"{m} {times[m]:.0f}" for m in METHODS) + " ms", flush=True)
    return out, paths


# Reporting.

def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def ratios(per_repeat: list[dict[str, float]], numerator: str, denominator: str) -> list[float]:
    return [times[numerator] / times[denominator] for times in per_repeat]


def table(title: str, names: list[str], per_problem: list[list[dict[str, float]]], columns: list[tuple[str, str]]) -> dict:
    """Print each method's median ms and the ratios (median over repeats [min-max]); return the ratios' medians."""
    print(f"\n{title}")
    header = f"{'problem':30s} " + " ".join(f"{m:>9s}" for m in METHODS) + "".join(f"{a + '/' + b:>23s}" for a, b in columns)
    print(header)
    summary: dict[tuple[str, str], list[tuple[float, str]]] = {column: [] for column in columns}
    for name, repeats in zip(names, per_problem):
        cells = " ".join(f"{statistics.median([r[m] for r in repeats]):9.2f}" for m in METHODS)
        parts = []
        for a, b in columns:
            values = ratios(repeats, a, b)
            summary[(a, b)].append((statistics.median(values), name))
            parts.append(f"{spread(values):>23s}")
        print(f"{name:30s} {cells}" + "".join(parts), flush=True)
    print("times: ms, median over the repeats; ratios: median over the repeats [min-max]")
    return summary


def summary_table(cold_summary: dict | None, warm_summary: dict | None) -> None:
    print("\nSummary: median over problems, and the worst problem")
    print(f"{'ratio':44s} {'median':>8s} {'worst':>8s}  worst problem")
    rows = []
    if cold_summary:
        rows += [("cold: cell first run / eager TF first call", cold_summary[("cell", "eager")]),
                 ("cold: api first call / eager TF first call", cold_summary[("api", "eager")]),
                 ("cold: cell first run / JAX jit first call", cold_summary[("cell", "jax")])]
    if warm_summary:
        rows += [("warm: cell / JAX jit", warm_summary[("cell", "jax")]),
                 ("warm: api / JAX jit", warm_summary[("api", "jax")]),
                 ("warm: cell / eager TF", warm_summary[("cell", "eager")]),
                 ("warm: tf.function(jit_compile=True) / JAX", warm_summary[("xla", "jax")])]
    for label, values in rows:
        worst, worst_name = max(values)
        print(f"{label:44s} {statistics.median(v for v, _ in values):7.2f}x {worst:7.2f}x  {worst_name}")


def profile_cell(builder: Callable, size: int, warm_run: bool, lines: int = 60) -> None:
    """cProfile of the cell's first run in a fresh process, or with ``warm_run`` of 20 runs after the first two (the
    reused trace's runs): where the time goes."""
    def child() -> dict[str, Any]:
        import cProfile
        import io
        import pstats

        case = build(builder, size)
        shell = new_shell()
        shell.user_ns.update(case.namespace)
        runs = 20 if warm_run else 1
        for _ in range(2 if warm_run else 0):
            blocked(tapemagic_value(case, run_cell(shell, case)))
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            result = run_cell(shell, case)
            blocked(tapemagic_value(case, result))
        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(lines)
        return {"ms": 0.0, "path": result.path, "text": text.getvalue()}

    answer = forked(child)
    print(f"\ncProfile of the {'third to 22nd' if warm_run else 'first'} %%tape runs of {build_name(builder, size)} "
          f"(path: {answer['path']}):")
    print(answer["text"])


def code_state() -> str:
    """Which tapemagic was measured: the commit, and whether tapemagic/ differs from it (others may be editing)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "tapemagic"], cwd=root, capture_output=True,
                                 text=True).stdout.split()
    except OSError:
        return "tapemagic: not a git checkout"
    edits = [path for path in changed if path.startswith("tapemagic/")]
    return f"tapemagic at {head or '?'}" + (f", with uncommitted changes in {', '.join(edits)}" if edits else ", clean")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat, few rounds (for the test)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="problems whose name contains NAME (e.g. rosenbrock-500, mlp)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--cold", action="store_true", help="first calls only (agreement is still checked)")
    which.add_argument("--warm", action="store_true", help="warm calls only")
    parser.add_argument("--repeats", type=int, help="default 3 (1 with --quick)")
    parser.add_argument("--budget", type=float, help="seconds of warm calls per problem and repeat (default 4; 0.3 quick)")
    parser.add_argument("--profile", metavar="NAME", help="print a cProfile of the cell's first run of this problem (with --warm, of its 3rd to 22nd runs) and stop")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)
    budget = args.budget if args.budget is not None else (0.3 if args.quick else 4.0)
    tf.get_logger().setLevel("ERROR")  # eager tape.jacobian makes a new pfor function per call and warns each time
    preload()
    import jax

    selected = []
    for builder, full, quick in PROBLEMS:
        size = quick if args.quick else full
        name = build_name(builder, size)
        if not args.only or any(word in name for word in args.only):
            selected.append((builder, size))
    if not selected:
        parser.error(f"--only {' '.join(args.only)} matches no problem; names: "
                     + ", ".join(build_name(b, f) for b, f, _ in PROBLEMS))
    if args.profile:
        matches = [(b, s) for b, s in selected if args.profile in build_name(b, s)]
        if not matches:
            parser.error(f"--profile {args.profile} matches no problem")
        profile_cell(*matches[0], warm_run=args.warm)
        return
    print(f"tensorflow {tf.__version__}, jax {jax.__version__}, {os.cpu_count()} CPU cores, float32 on the CPU; "
          f"{repeats} repeat(s); methods: cell = %%tape through IPython, api = tapemagic.tape with a reused engine, "
          "eager = plain TF tapes, function = tf.function(jit_compile=False), xla = tf.function(jit_compile=True), "
          "jax = jax.jit(hessian/jacrev/grad)", flush=True)
    print(code_state(), flush=True)
    cold_times, paths = cold(selected, repeats) if not args.warm else (None, {})  # forks first: no op has run yet
    shell = new_shell()
    names, warm_times = [], []
    for builder, size in selected:
        case = build(builder, size)
        shell.user_ns.update(case.namespace)
        if args.cold:
            calls = methods(case, shell)
            worst = check_agreement(case, {name: blocked(call()) for name, call in calls.items()})
            print(f"  {case.name}: all methods agree (largest difference {worst:.1e} of the largest entry)", flush=True)
        else:
            medians, worst, path = warm(case, shell, repeats, budget, least_rounds=1 if args.quick else 3)
            warm_times.append(medians)
            print(f"  {case.name}: all methods agree (largest difference {worst:.1e} of the largest entry); "
                  f"tapemagic's cell path when warm: {path}", flush=True)
        names.append(case.name)
    cold_summary = warm_summary = None
    if cold_times is not None:
        print("\ntapemagic's path on first runs: " + ", ".join(
            f"{build_name(b, s)} {paths.get(f'{b.__name__}-{s}-cell', '?')}" for b, s in selected))
        cold_summary = table("Cold: first call in a fresh process (trace and compile included)", names,
                             [cold_times[f"{b.__name__}:{s}"] for b, s in selected],
                             [("cell", "eager"), ("api", "eager"), ("cell", "jax"), ("xla", "eager")])
    if warm_times:
        warm_summary = table("Warm: interleaved calls after the first", names, warm_times,
                             [("cell", "eager"), ("cell", "jax"), ("api", "jax"), ("xla", "jax")])
    summary_table(cold_summary, warm_summary)
    print(f"\nall methods agree with eager TensorFlow (rtol {RTOL}, atol {RTOL} x the largest entry)")


def build_name(builder: Callable, size: int) -> str:
    """The problem's name without building it (building makes tensors, which must wait until after the forks)."""
    return {"rosenbrock": f"rosenbrock-{size}", "logistic": f"logistic-{size}", "mlp": f"mlp-10-{size}-1-hessian",
            "softmax": f"softmax-{size}x10-hessian", "tanh_layer": f"tanh-jacobian-{size}",
            "sin_times_x": f"sinx-jacobian-{size}", "third_order": f"order3-elementwise-{size}",
            "keras_dense": f"keras-dense-8-{size}-1-hessian", "recurrence": f"loop-hessian-{size}",
            "matrix_function": f"matrix-jacobian-{size}x{size}"}[builder.__name__]


if __name__ == "__main__":
    main()
