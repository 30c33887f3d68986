"""The benchmarks run at a tiny size and their answers agree (their timings are not tested)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MNIST_DIR

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_hessian_benchmark_runs_and_all_methods_agree():
    out = run(str(BENCHMARKS / "hessian.py"), "--sizes", "20", "--repeats", "2", "--loop-max", "400")
    assert "all methods agree" in out  # it asserts agreement (rtol 2e-3) before printing this
    assert "MLP loss wrt first kernel" in out and "loop/tapemagic" in out


def test_overhead_benchmark_runs():
    out = run(str(BENCHMARKS / "overhead.py"), "--repeats", "1", "--only", "E1", "E9", "E21")
    assert "median" in out and "matmul 1000x1000" in out
    assert "loading the extension imports tensorflow: False" in out


def test_mlp_benchmark_runs():
    out = run(str(BENCHMARKS / "mlp_train.py"), "--mnist-dir", MNIST_DIR, "--limit", "2000", "--epochs", "1", "--fast-epochs", "2")
    assert "document" in out and "fast" in out and "ratio fast/document" in out


def test_sources_benchmark_runs_and_agrees():
    out = run(str(BENCHMARKS / "sources.py"), "--sizes", "20", "--repeats", "1")
    assert "same Hessian" in out and "ratio" in out


def test_heldout_benchmark_quick_checks_agreement_and_prints_the_tables():
    # One problem of each kind (Hessian, Jacobian, -n 3), cold in forked processes and warm; the script asserts that
    # every method agrees with eager TensorFlow before it times anything.
    out = run(str(BENCHMARKS / "heldout.py"), "--quick", "--only", "rosenbrock-20", "sinx", "order3")
    for name in ("rosenbrock-20", "sinx-jacobian-40", "order3-elementwise-100"):
        assert f"{name}: all methods agree" in out
    assert "Cold: first call in a fresh process" in out and "Warm: interleaved calls" in out
    assert "cold: cell first run / eager TF first call" in out and "warm: api / JAX jit" in out
    assert "all methods agree with eager TensorFlow" in out


def test_heldout_benchmark_refuses_an_unknown_problem_and_says_which_exist():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "heldout.py"), "--only", "no-such-problem"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 2 and "matches no problem" in done.stderr and "rosenbrock-100" in done.stderr


def test_explore_benchmark_quick_updates_agree_with_the_derivatives_by_hand():
    out = run(str(BENCHMARKS / "explore.py"), "--quick")
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["E17"], ["E27"])}
    assert set(lines) == {"E17", "E27"} and "updates/s" in out
    assert "every updated result agrees with the derivatives by hand" in out  # checked after every move


def test_display_benchmark_quick_draws_the_same_heatmap_and_literal_both_ways():
    # It stops with "the heatmaps differ" ("the literals differ") unless the vectorised heatmap and the per-cell
    # baseline give the same HTML (numbers._float_literal and np.array2string the same text).
    out = run(str(BENCHMARKS / "display.py"), "--quick", "--repeats", "1")
    assert "the heatmaps gave the same HTML, and the literals the same text, on every problem" in out
    assert "rosenbrock" in out and "median over problems: a displayed warm cell now / as before" in out


def test_small_benchmark_traces_run_two_and_agrees_with_the_eager_tapes():
    # It stops unless each cell's runs are eager then traced and every traced Jacobian and Hessian agrees.
    out = run(str(BENCHMARKS / "small.py"), "--repeats", "1")
    assert "every traced Jacobian and Hessian agreed with the eager one" in out
    assert "quadratic 2x2 Hessian" in out and "3x3 inverse Jacobian" in out and "warm / eager" in out
