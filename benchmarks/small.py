"""Small Jacobians and Hessians, run again: the traced path against the eager tapes it replaced.

    python benchmarks/small.py [--repeats 15]

Below 16 source elements a ``--hessian`` or ``--jacobian`` cell used to take its derivatives from eager tapes on
every run. Eager ``tape.jacobian`` vectorises with pfor inside a tf.function it builds anew on each call, so
even a 2x2 Hessian cost tens of milliseconds, run after run. Now such a cell is traced when its code runs again
(without XLA below 16 elements). For small problems of kinds the change was not written for, through a real
IPython shell with ``--display none``, interleaved in one process:

- ``run 2``: the second run of a new cell (code never seen before), which now traces, against the same second
  run with ``--eager`` (what it did before);
- ``warm``: the fourth and later runs, which reuse the trace, against ``--eager``.

Each traced result is checked against the eager one before anything is timed. Prints milliseconds (median over
the rounds) and the ratios with their spread.
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (name, setup, line, body): sources of 1 to 12 elements
PROBLEMS = [
    ("quadratic 2x2 Hessian", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "x y --hessian", "f = x**2 * y + y + 2"),
    ("rosenbrock n=4 Hessian", "r = tf.Variable([-1.2, 1.0, 0.5, 0.8])", "r --hessian",
     "f = tf.reduce_sum(100.0 * (r[1:] - r[:-1] ** 2) ** 2 + (1.0 - r[:-1]) ** 2)"),
    ("logistic d=6 Hessian", "w = tf.Variable(tf.linspace(-0.5, 0.5, 6))\n"
     "X = tf.random.stateless_normal((20, 6), seed=(1, 2))\nt = tf.cast(tf.range(20) % 2, tf.float32)", "w --hessian",
     "loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=t, logits=tf.linalg.matvec(X, w)))"),
    ("softmax 2x3 Jacobian", "z = tf.Variable([[0.1, 0.2, 0.7], [1.0, -1.0, 0.0]])", "z --jacobian", "p = tf.nn.softmax(z)"),
    ("polar 2->2 Jacobian", "q = tf.Variable([2.0, 0.3])", "q --jacobian",
     "xy = tf.stack([q[0] * tf.cos(q[1]), q[0] * tf.sin(q[1])])"),
    ("3x3 inverse Jacobian", "m = tf.Variable([[2.0, 0.5, 0.1], [0.3, 3.0, 0.2], [0.1, 0.4, 1.5]])", "m --jacobian",
     "inv = tf.linalg.inv(m)"),
    ("jacobian + hessian of sin(v)v^2", "v = tf.Variable([1.0, 2.0, 3.0])", "v --jacobian --hessian",
     "z = tf.sin(v) * v**2"),
]


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x [{min(values):.2f}-{max(values):.2f}]"


def matrices(result) -> list[np.ndarray]:
    target = result.targets[0]
    found = []
    for kind in ("jacobian", "hessian"):
        value = getattr(target, kind)
        if isinstance(value, dict):
            found.extend(np.asarray(v) for v in value.values())
        elif value is not None:
            found.append(np.asarray(value))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per problem (default 15)")
    args = parser.parse_args()

    import tensorflow as tf
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("import tensorflow as tf")
    shell.run_line_magic("load_ext", "tapemagic")
    fresh = itertools.count()
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores; {args.repeats} interleaved rounds per problem")
    print(f"{'problem':<34}{'run 2':>8}{'eager':>8}{'warm':>8}{'eager':>8}{'run 2 / eager':>22}{'warm / eager':>22}")
    seconds, warm = [], []
    for name, setup, line, body in PROBLEMS:
        shell.run_cell(setup)

        def cell(options: str, code: str):
            shell.run_cell_magic("tape", f"{line} {options} --display none -o bench_r", code)
            return shell.user_ns["bench_r"]

        def new_code() -> str:  # code this engine has not seen: its run 2 traces
            return f"{body}  # {next(fresh)}"

        def second_run(options: str) -> float:
            code = new_code()
            cell(options, code)
            return timed(lambda: cell(options, code))

        code = new_code()
        runs = [cell("", code) for _ in range(4)]
        eager = cell("--eager", code)
        if [r.path for r in runs] != ["eager", "traced", "traced", "traced"]:
            raise SystemExit(f"{name}: paths {[r.path for r in runs]}, not eager then traced")
        for r in runs[1:]:
            for got, want in zip(matrices(r), matrices(eager), strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        times: dict[str, list[float]] = {"run 2": [], "run 2, eager": [], "warm": [], "warm, eager": []}
        for _ in range(args.repeats):
            times["run 2"].append(second_run(""))
            times["run 2, eager"].append(second_run("--eager"))
            times["warm"].append(timed(lambda: cell("", code)))
            times["warm, eager"].append(timed(lambda: cell("--eager", code)))
        ms = {key: 1e3 * statistics.median(values) for key, values in times.items()}
        first = [a / b for a, b in zip(times["run 2"], times["run 2, eager"])]
        later = [a / b for a, b in zip(times["warm"], times["warm, eager"])]
        seconds.append(statistics.median(first))
        warm.append(statistics.median(later))
        print(f"{name:<34}{ms['run 2']:8.1f}{ms['run 2, eager']:8.1f}{ms['warm']:8.1f}{ms['warm, eager']:8.1f}"
              f"{spread(first):>22}{spread(later):>22}")
    print("times: ms, median over the rounds; ratios: median over the rounds [min-max]; every traced Jacobian and "
          "Hessian agreed with the eager one")
    print(f"median over problems: run 2 (tracing) / eager {statistics.median(seconds):.2f}x (worst {max(seconds):.2f}x); "
          f"warm / eager {statistics.median(warm):.2f}x (worst {max(warm):.2f}x)")


if __name__ == "__main__":
    main()
