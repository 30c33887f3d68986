"""Hessians five ways, timed in one process, checked to agree, with ratios.

    python benchmarks/hessian.py              # n = 100, 500, 2000 and a small MLP
    python benchmarks/hessian.py --sizes 50   # a quick run

f(x) = sum(sin(x) * x**2) + x^T A x, and a small MLP's loss with respect to its first
layer's kernel. Methods: tapemagic's --hessian (the Python API, the magic's engine,
traced and cached; and the same as a cell ``y = f(x)``, which also runs once for real), the same nested tapes and ``tape.jacobian`` in a bare XLA-compiled
``tf.function`` (what a TensorFlow user would write), a plain eager nested-tape loop (one
gradient per row), eager ``tape.jacobian`` of the gradient, and ``jax.jit(jax.hessian(f))``.
tapemagic, tf.function and JAX are called in turn, so drift falls on all three alike. The first call of
the traced methods (tapemagic, JAX) is reported separately as tracing/compiling; the
times are medians of repeats after it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``repeats`` calls (ms), and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        result = _ready(result)
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times), result


def interleaved(functions: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[float, Any]]:
    """Median ms of each function, calling them in turn (a, b, c, a, b, c, ...) so that the
    machine's drift over the run falls on all of them alike and their ratios stay fair."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, function in functions.items():
            started = time.perf_counter()
            results[name] = _ready(function())
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: (statistics.median(times[name]), results[name]) for name in functions}


def _ready(result: Any) -> Any:
    if hasattr(result, "block_until_ready"):
        return result.block_until_ready()
    return result


def problems(sizes: list[int], seed: int = 0) -> list[tuple[str, int, Callable, Callable | None, np.ndarray]]:
    """(name, n, TensorFlow f, JAX f, x0) for each problem."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    out = []
    for n in sizes:
        a = (rng.normal(size=(n, n)) / np.sqrt(n)).astype(np.float32)
        x0 = rng.normal(size=n).astype(np.float32)
        a_tf = tf.constant(a)

        def f_tf(x, a_tf=a_tf):
            return tf.reduce_sum(tf.sin(x) * x**2) + tf.tensordot(x, tf.linalg.matvec(a_tf, x), 1)

        def f_jax(x, a=a):
            import jax.numpy as jnp

            return jnp.sum(jnp.sin(x) * x**2) + x @ (a @ x)

        out.append(("sum(sin(x)x²) + xᵀAx", n, f_tf, f_jax, x0))
    # A small MLP (20 -> 16 -> 10, tanh), cross-entropy on 64 samples, with respect to the first kernel.
    inputs = rng.normal(size=(64, 20)).astype(np.float32)
    labels = rng.integers(0, 10, size=64)
    w2 = (rng.normal(size=(16, 10)) / 4).astype(np.float32)
    k0 = (rng.normal(size=(20, 16)) / np.sqrt(20)).astype(np.float32).reshape(-1)
    inputs_tf, w2_tf, onehot = tf.constant(inputs), tf.constant(w2), tf.one_hot(labels, 10)

    def mlp_tf(kernel):
        hidden = tf.tanh(inputs_tf @ tf.reshape(kernel, (20, 16)))
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(onehot, hidden @ w2_tf))

    def mlp_jax(kernel):
        import jax
        import jax.numpy as jnp

        hidden = jnp.tanh(inputs @ kernel.reshape(20, 16))
        logits = hidden @ w2
        return -jnp.mean(jnp.sum(jax.nn.one_hot(labels, 10) * jax.nn.log_softmax(logits), axis=1))

    out.append(("MLP loss wrt first kernel (20x16)", k0.size, mlp_tf, mlp_jax, k0))
    return out


def eager_loop(f: Callable, x: Any) -> Any:
    """The plain way: nested tapes, then one gradient call per row of the Hessian."""
    import tensorflow as tf

    with tf.GradientTape(persistent=True) as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = f(x)
        gradient = inner.gradient(y, x)
        rows = [gradient[i] for i in range(x.shape[0])]
    return tf.stack([outer.gradient(row, x) for row in rows])


def eager_jacobian(f: Callable, x: Any) -> Any:
    import tensorflow as tf

    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            y = f(x)
        gradient = inner.gradient(y, x)
    return outer.jacobian(gradient, x)


def bare_function(f: Callable, x: Any) -> Callable:
    """What a TensorFlow user would write: nested tapes and tape.jacobian in one XLA-compiled tf.function."""
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def hessian(x):
        return eager_jacobian(f, x)

    return hessian.get_concrete_function(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--loop-max", type=int, default=500, help="largest n for the slow eager per-row loop")
    args = parser.parse_args()

    import tensorflow as tf
    # Eager tape.jacobian (a baseline) makes a new pfor function per call; TensorFlow warns about it each time.
    tf.get_logger().setLevel("ERROR")

    import tapemagic

    try:
        import jax

        jax.config.update("jax_platforms", "cpu") if os.environ.get("JAX_PLATFORMS") is None else None
    except ImportError:
        jax = None
        print("jax is not installed (pip install 'tapemagic[bench]'): its column is skipped")
    print(f"tensorflow {tf.__version__}" + (f", jax {jax.__version__}" if jax else "") + f", {os.cpu_count()} CPU cores, float32")
    header = f"{'problem':34s} {'n':>5s} {'tapemagic':>10s} {'(trace)':>9s} {'as a cell':>10s} {'tf.function':>11s} {'eager loop':>11s} {'eager jac':>10s} {'jax jit':>9s} {'(compile)':>10s}  ratios"
    print(header)
    for name, n, f_tf, f_jax, x0 in problems(args.sizes):
        x = tf.constant(x0)
        engine = tapemagic.Engine()
        started = time.perf_counter()
        first = tapemagic.tape(f_tf, [x], hessian=True, engine=engine)
        trace_ms = (time.perf_counter() - started) * 1e3
        fast = {"tapemagic": lambda: tapemagic.tape(f_tf, [x], hessian=True, engine=engine).hessian}
        # The same through a cell, as %%tape x --hessian runs "y = f(x)": the cell runs once, for real,
        # eagerly (its first derivative from that run's tapes), and the Hessian comes from the trace.
        cell_engine, namespace = tapemagic.Engine(), {"f": f_tf, "x": x}
        tapemagic.tape("y = f(x)", ["x"], namespace=namespace, hessian=True, engine=cell_engine)
        fast["cell"] = lambda: tapemagic.tape("y = f(x)", ["x"], namespace=namespace, hessian=True, engine=cell_engine).hessian
        bare = bare_function(f_tf, x)
        bare(x)
        fast["function"] = lambda: bare(x)
        jax_ms = compile_ms = None
        if jax is not None:
            hessian = jax.jit(jax.hessian(f_jax))
            started = time.perf_counter()
            hessian(x0).block_until_ready()
            compile_ms = (time.perf_counter() - started) * 1e3
            fast["jax"] = lambda: hessian(x0)
        results = interleaved(fast, args.repeats)  # tapemagic, tf.function and JAX in turn: their ratios are what matter
        ours_ms, ours = results.pop("tapemagic")
        jax_ms = results["jax"][0] if "jax" in results else None
        reference = ours.numpy()
        if n <= args.loop_max:
            results["loop"] = timed(lambda: eager_loop(f_tf, x), 1 if n > 200 else 3)
        results["jacobian"] = timed(lambda: eager_jacobian(f_tf, x), max(1, args.repeats // 3))
        scale = max(1.0, float(np.max(np.abs(reference))))
        for key, (_, value) in results.items():
            np.testing.assert_allclose(np.asarray(value).reshape(reference.shape), reference, rtol=2e-3, atol=2e-3 * scale,
                                       err_msg=f"{key} disagrees with tapemagic for {name}, n={n}")

        def show(key: str) -> str:
            return f"{results[key][0]:.2f}" if key in results else "-"

        ratios = [f"tf.function/tapemagic {results['function'][0] / ours_ms:.1f}x"]
        if jax_ms:
            ratios.append(f"tapemagic/jax {ours_ms / jax_ms:.2f}x")
            ratios.append(f"cell/jax {results['cell'][0] / jax_ms:.2f}x")
        if "loop" in results:
            ratios.append(f"loop/tapemagic {results['loop'][0] / ours_ms:.0f}x")
        ratios.append(f"jac/tapemagic {results['jacobian'][0] / ours_ms:.1f}x")
        print(f"{name:34s} {n:5d} {ours_ms:10.2f} {trace_ms:9.0f} {show('cell'):>10s} {show('function'):>11s} {show('loop'):>11s} {show('jacobian'):>10s} "
              f"{(f'{jax_ms:.2f}' if jax_ms else '-'):>9s} {(f'{compile_ms:.0f}' if compile_ms else '-'):>10s}  {', '.join(ratios)}",
              flush=True)
        if first.path != "traced":
            print(f"  (tapemagic used its {first.path} path here: {'; '.join(first.notes)})")
    print("times in ms (median); all methods agree with tapemagic's Hessian (rtol 2e-3)")


if __name__ == "__main__":
    main()
