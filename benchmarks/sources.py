"""A Hessian over K separate scalar variables against the same Hessian over one K-element vector.

    python benchmarks/sources.py [--sizes 100 500] [--repeats 3] [--eager]

A model with many small variables asks for the first kind. f(v) = sum(sin(v) v²) + vᵀAv, the
same function of K scalar tf.Variables stacked in the cell, or of one tf.Variable of K elements;
each through ``tapemagic.tape`` on code, as ``%%tape ... --hessian`` runs it, interleaved, first
call (trace) reported apart, then medians. Prints the ratio K-sources / one-vector.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="the eager path (as --eager, or a cell that changes state)")
    args = parser.parse_args()
    import tensorflow as tf

    import tapemagic

    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores, float32, {'eager' if args.eager else 'traced'} path")
    print(f"{'K':>5s} {'K sources first':>16s} {'one vector first':>17s} {'K sources':>10s} {'one vector':>11s}  ratio")
    for k in args.sizes:
        rng = np.random.default_rng(0)
        a = tf.constant(rng.normal(size=(k, k)) / k, tf.float32)
        x0 = rng.normal(size=k).astype(np.float32)
        many = {"tf": tf, "A": a, "vs": [tf.Variable(float(v)) for v in x0]}
        one = {"tf": tf, "A": a, "v": tf.Variable(x0)}
        code_many = "v = tf.stack(vs)\ny = tf.reduce_sum(tf.sin(v) * v ** 2) + tf.tensordot(v, tf.linalg.matvec(A, v), 1)"
        code_one = "y = tf.reduce_sum(tf.sin(v) * v ** 2) + tf.tensordot(v, tf.linalg.matvec(A, v), 1)"
        engines = {"many": tapemagic.Engine(), "one": tapemagic.Engine()}

        def call(which: str) -> object:
            if which == "many":
                return tapemagic.tape(code_many, ["vs"], namespace=many, hessian=True, eager=args.eager, engine=engines["many"]).hessian
            return tapemagic.tape(code_one, ["v"], namespace=one, hessian=True, eager=args.eager, engine=engines["one"]).hessian

        first = {}
        results = {}
        for which in ("many", "one"):
            started = time.perf_counter()
            results[which] = call(which)
            first[which] = time.perf_counter() - started
        np.testing.assert_allclose(results["many"].numpy(), results["one"].numpy(), rtol=1e-3, atol=1e-3)
        times: dict[str, list[float]] = {"many": [], "one": []}
        for _ in range(args.repeats):
            for which in ("many", "one"):
                started = time.perf_counter()
                call(which)
                times[which].append(time.perf_counter() - started)
        many_s, one_s = statistics.median(times["many"]), statistics.median(times["one"])
        print(f"{k:5d} {first['many']:15.2f}s {first['one']:16.2f}s {many_s * 1e3:8.1f}ms {one_s * 1e3:9.1f}ms  "
              f"{many_s / one_s:.2f}x", flush=True)
    print("K sources and one vector give the same Hessian (rtol 1e-3)")


if __name__ == "__main__":
    main()
