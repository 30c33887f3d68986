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
