"""What %%tape costs over the plain TensorFlow it replaces, per example, in one IPython process.

    python benchmarks/overhead.py [--repeats 30]

Each example E1-E12 and E17-E27 of shared/EXAMPLES.md runs as the document's plain
TensorFlow cell and as its %%tape cell (display off, then text), interleaved, through
the same IPython shell. Prints the median time of each and the ratios magic/plain, the
median ratio over the examples, the ratio for a cell doing a 1000x1000 matmul, and
whether loading the extension imports TensorFlow.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SETUP = "import tensorflow as tf\nimport tapemagic"
# (name, setup, plain TensorFlow cell, %%tape line, %%tape body)
EXAMPLES = [
    ("E1", "x = tf.Variable(3.)", "with tf.GradientTape() as tape:\n    y = tf.square(x)\ng = tape.gradient(y, x)", "x", "y = tf.square(x)"),
    ("E2", "x = tf.Variable(3.)", "with tf.GradientTape() as tape:\n    y = tf.square(x)\n    z = pow(x, 3)\ng = tape.gradient(y, x)",
     "x -t y -t z", "y = tf.square(x)\nz = pow(x, 3)"),
    ("E3", "x = tf.Variable(3.)", "with tf.GradientTape(persistent=True) as tape:\n    y = tf.square(x)\n    z = pow(x, 3)\n"
     "g = tape.gradient(y, x)\nh = tape.gradient(z, x)\ndel tape", "x -t y -t z -p", "y = tf.square(x)\nz = pow(x, 3)"),
    ("E4", "x = tf.Variable(3.)", "with tf.GradientTape(watch_accessed_variables=False) as tape:\n    y = tf.square(x)\ng = tape.gradient(y, x)",
     "x --no-auto-watch --no-watch", "y = tf.square(x)"),
    ("E5", "x = tf.Variable(3.)", "with tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(x)\n    y = tf.square(x)\n"
     "g = tape.gradient(y, x)", "x --no-auto-watch", "y = tf.square(x)"),
    ("E6", "x = tf.constant(3.)", "with tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(x)\n    y = tf.square(x)\n"
     "g = tape.gradient(y, x)", "x --no-auto-watch", "y = tf.square(x)"),
    ("E7", "x = tf.Variable(3.)\ny = tf.Variable(4.)", "with tf.GradientTape() as tape:\n    f = tf.square(x) + 2 * tf.square(y) + 1\n"
     "gx, gy = tape.gradient(f, [x, y])", "x y", "f = tf.square(x) + 2 * tf.square(y) + 1"),
    ("E8", "x = tf.Variable(3.)\ny = tf.Variable(4.)", "with tf.GradientTape() as tape:\n    f = tf.square(x) + 2 * tf.square(y) + 1\n"
     "first = tape.gradient(f, [x, y])", "x y", "f = tf.square(x) + 2 * tf.square(y) + 1"),
    ("E9", "x = tf.Variable(3.)\ny = tf.Variable(4.)", "with tf.GradientTape(persistent=True) as t2:\n    with tf.GradientTape(persistent=True) as t1:\n"
     "        f = tf.square(x) + 2 * tf.square(y) + 1\n    first = t1.gradient(f, [x, y])\nsecond = [t2.gradient(first, [x, y])]",
     "x y -n 2", "f = tf.square(x) + 2 * tf.square(y) + 1"),
    ("E10", "x = tf.Variable([1., 2., 3.])\ny = tf.Variable([4., 5., 6.])", "with tf.GradientTape() as tape:\n"
     "    f = tf.square(x) + 2 * tf.square(y) + 1\ngx, gy = tape.gradient(f, [x, y])", "x y", "f = tf.square(x) + 2 * tf.square(y) + 1"),
    ("E11", "def f(x):\n    return x**3 + 2*x**2 + 1\nx = tf.constant(4.0)", "with tf.GradientTape() as g:\n    g.watch(x)\n    y = f(x)\n"
     "d = g.gradient(y, x)", "x", "y = f(x)"),
    ("E12", "x = tf.constant([[1., 2.]])\ny = tf.constant([[3.], [4.]])\nw = tf.Variable([[1.], [2.]])\nb = tf.Variable(1.)",
     "with tf.GradientTape() as tape:\n    pred = tf.matmul(x, w) + b\n    loss = tf.reduce_sum(tf.square(pred - y))\ngrads = tape.gradient(loss, [w, b])",
     "w b", "pred = tf.matmul(x, w) + b\nloss = tf.reduce_sum(tf.square(pred - y))"),
    ("E17", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "with tf.GradientTape() as tape:\n    f = x**2 * y + y + 2\ngx, gy = tape.gradient(f, [x, y])",
     "x y", "f = x**2 * y + y + 2"),
    ("E18", "x = tf.constant(3.0)\ny = tf.constant(4.0)", "with tf.GradientTape() as tape:\n    tape.watch(x)\n    tape.watch(y)\n"
     "    f = x**2 * y + y + 2\ngx, gy = tape.gradient(f, [x, y])", "x y", "f = x**2 * y + y + 2"),
    ("E19", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "gx, gy = 2 * x * y, x**2 + 1", "x y", "f = x**2 * y + y + 2"),
    ("E20", "x = tf.Variable(3.0, dtype=tf.float64)\ny = tf.Variable(4.0, dtype=tf.float64)\ndef fd(a, b):\n    return a**2 * b + b + 2",
     "e = 1e-6\ngx = (fd(x + e, y) - fd(x, y)) / e\ngy = (fd(x, y + e) - fd(x, y)) / e", "x y --check", "f = x**2 * y + y + 2"),
    ("E21", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "with tf.autodiff.ForwardAccumulator(primals=x, tangents=tf.constant(1.0)) as acc:\n"
     "    f = x**2 * y + y + 2\nd = acc.jvp(f)", "x y --forward", "f = x**2 * y + y + 2"),
    ("E22", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)", "with tf.GradientTape() as tape:\n    f = x**2 * y + y + 2\ngx, gy = tape.gradient(f, [x, y])",
     "x y", "f = x**2 * y + y + 2"),
    ("E23", "x = tf.ones((2, 2))", "with tf.GradientTape() as t:\n    t.watch(x)\n    y = tf.reduce_sum(x)\n    z = tf.multiply(y, y)\n"
     "d = t.gradient(z, x)", "x -t z", "y = tf.reduce_sum(x)\nz = tf.multiply(y, y)"),
    ("E24", "x = tf.ones((2, 2))", "with tf.GradientTape() as t:\n    t.watch(x)\n    y = tf.reduce_sum(x)\n    z = tf.multiply(y, y)\n"
     "d = t.gradient(z, y)", "x -t z -p", "y = tf.reduce_sum(x)\nz = tf.multiply(y, y)"),
    ("E25", "x = tf.constant(3.0)", "with tf.GradientTape(persistent=True) as t:\n    t.watch(x)\n    y = x * x\n    z = y * y\n"
     "a = t.gradient(z, x)\nb = t.gradient(y, x)\ndel t", "x -t z -t y", "y = x * x\nz = y * y"),
    ("E26", "def f(x, y):\n    output = 1.0\n    for i in range(y):\n        if i > 1 and i < 5:\n            output = tf.multiply(output, x)\n"
     "    return output\nx = tf.convert_to_tensor(2.0)", "with tf.GradientTape() as t:\n    t.watch(x)\n    out = f(x, 6)\nd = t.gradient(out, x)",
     "x", "out = f(x, 6)"),
    ("E27", "x = tf.Variable(1.0)", "with tf.GradientTape() as t:\n    with tf.GradientTape() as t2:\n        y = x * x * x\n"
     "    d1 = t2.gradient(y, x)\nd2 = t.gradient(d1, x)", "x -n 2", "y = x * x * x"),
]
MATMUL = ("matmul 1000x1000", "a = tf.Variable(tf.random.normal((1000, 1000), seed=1))\nb = tf.random.normal((1000, 1000), seed=2)",
          "with tf.GradientTape() as t:\n    y = tf.reduce_sum(tf.matmul(a, b))\ng = t.gradient(y, a)", "a", "y = tf.reduce_sum(tf.matmul(a, b))")


def run(shell, cell: str) -> float:
    started = time.perf_counter()
    result = shell.run_cell(cell, store_history=False, silent=True)
    elapsed = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"cell failed: {cell!r}: {result.error_in_exec or result.error_before_exec}")
    return elapsed


def measure(shell, example: tuple, repeats: int) -> tuple[float, float, float]:
    name, setup, plain, line, body = example
    run(shell, setup)
    cells = [plain, f"%%tape {line} --display none\n{body}", f"_r = get_ipython().run_cell_magic('tape', {line + ' --display text'!r}, {body!r}); _t = _r.to_text()"]
    for cell in cells:  # warm up: first-call costs (tracing, imports) are not what this measures
        run(shell, cell)
    times: list[list[float]] = [[], [], []]
    for _ in range(repeats):
        for index, cell in enumerate(cells):
            times[index].append(run(shell, cell))
    return tuple(statistics.median(t) * 1e3 for t in times)  # type: ignore[return-value]


def extension_imports_tensorflow() -> bool:
    code = ("import sys\nfrom IPython.core.interactiveshell import InteractiveShell\n"
            "InteractiveShell.instance().run_line_magic('load_ext', 'tapemagic')\nprint('tensorflow' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--only", nargs="*", help="example names to run (default: all)")
    args = parser.parse_args()
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "tapemagic")
    run(shell, SETUP)
    print(f"{'example':17s} {'plain ms':>9s} {'%%tape ms':>10s} {'text ms':>8s} {'ratio off':>10s} {'ratio text':>11s}")
    off, text = [], []
    for example in EXAMPLES:
        if args.only and example[0] not in args.only:
            continue
        plain, none, shown = measure(shell, example, args.repeats)
        off.append(none / plain)
        text.append(shown / plain)
        print(f"{example[0]:17s} {plain:9.3f} {none:10.3f} {shown:8.3f} {none / plain:10.2f} {shown / plain:11.2f}", flush=True)
    if off:
        print(f"{'median':17s} {'':9s} {'':10s} {'':8s} {statistics.median(off):10.2f} {statistics.median(text):11.2f}")
    plain, none, shown = measure(shell, MATMUL, max(5, args.repeats // 3))
    print(f"{MATMUL[0]:17s} {plain:9.3f} {none:10.3f} {shown:8.3f} {none / plain:10.2f} {shown / plain:11.2f}")
    print(f"loading the extension imports tensorflow: {extension_imports_tensorflow()}")


if __name__ == "__main__":
    main()
