"""Write and execute the bundled notebooks, so their saved outputs come from a real run.

    TAPEMAGIC_MNIST_DIR=../shared/data/mnist python notebooks/build.py [NAME ...]

NAME is an English notebook ("quickstart") or its Chinese twin ("zh/quickstart", made from the
English cells and the Chinese prose of ``cells_zh.py``); no NAME builds them all.

Each notebook is a list of cells below: ("md", text) or ("code", source), with an
optional third element, a list of tags (nbval's "raises-exception"). A code cell
whose source starts with ``# NBVAL_IGNORE_OUTPUT`` varies from run to run (training
logs, timings) and is followed by a cell that asserts what matters.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
SETUP = "%load_ext tapemagic\nimport tensorflow as tf"

QUICKSTART = [
    ("md", "# tapemagic quickstart\n\n`%%tape` runs a cell inside `tf.GradientTape`s and shows what the tape saw: the "
           "target's value, its gradients, higher orders, Jacobians, Hessians and the variables it watched. A `None` "
           "gradient is explained in words. Loading the extension does not import TensorFlow; the cell below does."),
    ("code", SETUP),
    ("md", "## A first gradient\n\nName the sources on the magic line; the target is what the cell's last line assigns."),
    ("code", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)"),
    ("code", "%%tape x y\nf = x**2 * y + y + 2"),
    ("md", "∂f/∂x = 2xy = 24 and ∂f/∂y = x² + 1 = 10. The cell's assignments stay in the namespace, as in any cell:"),
    ("code", "f"),
    ("md", "## See the computation graph\n\n`--graph` draws the cell's computation graph: each op TensorFlow ran is a "
           "node, shown with its value and its adjoint ∂f/∂node, what the reverse pass carried back to it. Look at y: "
           "it reaches f along two paths, through x²·y, which carries back x² = 9, and through `+ y`, which carries "
           "back 1; their sum, 9 + 1 = 10, is ∂f/∂y."),
    ("code", "%%tape x y --graph\nf = x**2 * y + y + 2"),
    ("md", "## Higher orders\n\n`-n 2` nests two tapes. ∂²f/∂y² is 0, not `None`: ∂f/∂y = x² + 1 no longer depends "
           "on y, which TensorFlow reports as `None`, but the derivative of a connected source is zero there."),
    ("code", "%%tape x y -n 2\nf = x**2 * y + y + 2"),
    ("md", "## Jacobian and Hessian\n\nFor a vector, `--jacobian` gives the full matrix of a vector target and "
           "`--hessian` all second partials of its sum, mixed ones included."),
    ("code", "v = tf.Variable([1.0, 2.0, 3.0])"),
    ("code", "%%tape v --jacobian --hessian\nz = tf.sin(v) * v**2"),
    ("md", "With two scalar sources the Hessian has the mixed partials ∂²f/∂x∂y = 2x off the diagonal:"),
    ("code", "%%tape x y --hessian\nf = x**2 * y + y + 2"),
    ("md", "## The variables the tape watched\n\nWith no source named, the sources are the trainable variables the "
           "cell touched, here a layer's kernel and bias."),
    ("code", "layer = tf.keras.layers.Dense(2, kernel_initializer='ones', bias_initializer='zeros')\n"
             "inputs = tf.constant([[1.0, 2.0, 3.0]])"),
    ("code", "%%tape\nloss = tf.reduce_sum(layer(inputs) ** 2)"),
    ("md", "## `None`, explained\n\nA tape made with `watch_accessed_variables=False` that watches nothing:"),
    ("code", "%%tape x --no-auto-watch --no-watch\nsquared = tf.square(x)"),
    ("md", "An integer tensor cannot have a gradient, and a computation that leaves TensorFlow for NumPy loses it:"),
    ("code", "n = tf.constant(2)"),
    ("code", "%%tape n x\nscaled = tf.cast(n, tf.float32) * x"),
    ("code", "import numpy as np"),
    ("code", "%%tape x\nvia_numpy = np.square(x.numpy())"),
    ("md", "## Checking a custom gradient\n\n`--check` compares the tape's gradient with central finite differences. "
           "This custom gradient is wrong on purpose (the derivative of x² is 2x, not x):"),
    ("code", "@tf.custom_gradient\ndef square(t):\n    return t * t, lambda upstream: upstream * t"),
    ("code", "%%tape x --check\nchecked = square(x)"),
    ("md", "## The result object and the Python API\n\n`-o r` keeps the result; `tapemagic.tape` does the same "
           "without IPython."),
    ("code", "%%tape x y -n 2 -o r --display none\nf = x**2 * y + y + 2"),
    ("code", "float(r.gradients['x']), float(r.derivatives[2]['y'])"),
    ("code", "import tapemagic\nr = tapemagic.tape(lambda x, y: x * 2.0, [3.0, 4.0])\nprint(r.why('y'))"),
    ("md", "One-liners use the line magic:"),
    ("code", "%tape x -- x**3 + 2*x**2 + 1"),
]

BASICS = [
    ("md", "# GradientTape basics\n\nSource: document 000 (`000_6bddf6e551af80d2.txt`), a Chinese tutorial on "
           "`tf.GradientTape`. Each example is shown as the document's TensorFlow code, then with `%%tape`, with the same numbers."),
    ("code", SETUP),
    ("md", "## E1: the derivative of y = x² at x = 3\n\n*Erratum:* the document's snippet uses `x` without defining "
           "it; it is `tf.Variable(3.)`."),
    ("code", "x = tf.Variable(3.)\nwith tf.GradientTape() as tape:\n    y = tf.square(x)\ndy_dx = tape.gradient(y, x)\nprint(y)\nprint(dy_dx)"),
    ("code", "%%tape x\ny = tf.square(x)"),
    ("md", "## E2: a non-persistent tape answers once\n\nAfter one `gradient` call its resources are freed, so a "
           "second call raises:"),
    ("code", "x = tf.Variable(3.)\nwith tf.GradientTape() as tape:\n    y = tf.square(x)\n    z = pow(x, 3)\n"
             "dy_dx = tape.gradient(y, x)\ndz_dx = tape.gradient(z, x)", ["raises-exception"]),
    ("md", "`%%tape` keeps its own tapes, so it gives each target its gradients:"),
    ("code", "%%tape x -t y -t z\ny = tf.square(x)\nz = pow(x, 3)"),
    ("md", "## E3: a persistent tape\n\n*Erratum:* the document calls `tape.gradient(y, z)` but its printout says 27, "
           "which is dz/dx. y does not depend on z, so `tape.gradient(y, z)` is `None`; the right call is "
           "`tape.gradient(z, x)`:"),
    ("code", "x = tf.Variable(3.)\nwith tf.GradientTape(persistent=True) as tape:\n    y = tf.square(x)\n    z = pow(x, 3)\n"
             "dy_dx = tape.gradient(y, x)\ndz_dx = tape.gradient(z, x)\nprint(y)\nprint(dy_dx)\nprint(z)\nprint(dz_dx)\n"
             "print(tape.gradient(y, z))  # the document's call\ndel tape"),
    ("code", "%%tape x -t y -t z -p -o r\ny = tf.square(x)\nz = pow(x, 3)"),
    ("md", "With `-p` the persistent tape is kept on the result, so more questions can be asked of it:"),
    ("code", "print(r.tape.gradient(r.values['z'], x))\nprint(r.tape.gradient(r.values['y'], r.values['z']))"),
    ("md", "## E4: `watch_accessed_variables=False`\n\nNothing is watched, so the gradient is `None`:"),
    ("code", "x = tf.Variable(3.)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    y = tf.square(x)\n"
             "dy_dx = tape.gradient(y, x)\nprint(y)\nprint(dy_dx)"),
    ("code", "%%tape x --no-auto-watch --no-watch\ny = tf.square(x)"),
    ("md", "## E5: watching by hand\n\nIn a `%%tape` cell, `tapemagic.watch(x)` is `tape.watch(x)`:"),
    ("code", "x = tf.Variable(3.)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(x)\n"
             "    y = tf.square(x)\ndy_dx = tape.gradient(y, x)\nprint(y)\nprint(dy_dx)"),
    ("code", "%%tape x --no-auto-watch --no-watch\nimport tapemagic\ntapemagic.watch(x)\ny = tf.square(x)"),
    ("md", "## E6: watching a constant\n\nA `tf.constant` is no variable, but it can be watched:"),
    ("code", "x = tf.constant(3.)\nwith tf.GradientTape(watch_accessed_variables=False) as tape:\n    tape.watch(x)\n"
             "    y = tf.square(x)\ndy_dx = tape.gradient(y, x)\nprint(y)\nprint(dy_dx)"),
    ("code", "%%tape x --no-auto-watch\ny = tf.square(x)"),
    ("md", "## E7 and E8: two variables\n\nf = x² + 2y² + 1 at (3, 4):"),
    ("code", "x = tf.Variable(3.)\ny = tf.Variable(4.)\nwith tf.GradientTape() as tape:\n    f = tf.square(x) + 2 * tf.square(y) + 1\n"
             "df_dx, df_dy = tape.gradient(f, [x, y])\nprint(f)\nprint(df_dx)\nprint(df_dy)"),
    ("code", "with tf.GradientTape() as tape:\n    f = tf.square(x) + 2 * tf.square(y) + 1\n"
             "first_grads = tape.gradient(f, [x, y])\nprint(first_grads)"),
    ("code", "%%tape x y\nf = tf.square(x) + 2 * tf.square(y) + 1"),
    ("md", "## E9: second derivatives with nested tapes"),
    ("code", "with tf.GradientTape(persistent=True) as tape2:\n    with tf.GradientTape(persistent=True) as tape1:\n"
             "        f = tf.square(x) + 2 * tf.square(y) + 1\n    first_grads = tape1.gradient(f, [x, y])\n"
             "second_grads = [tape2.gradient(first_grads, [x, y])]\nprint(first_grads)\nprint(second_grads)"),
    ("code", "%%tape x y -n 2\nf = tf.square(x) + 2 * tf.square(y) + 1"),
    ("md", "## E10: vectors\n\nThe same f element by element:"),
    ("code", "x = tf.Variable([1., 2., 3.])\ny = tf.Variable([4., 5., 6.])\nwith tf.GradientTape() as tape:\n"
             "    f = tf.square(x) + 2 * tf.square(y) + 1\ndf_dx, df_dy = tape.gradient(f, [x, y])\nprint(f)\nprint(df_dx)\nprint(df_dy)"),
    ("code", "%%tape x y\nf = tf.square(x) + 2 * tf.square(y) + 1"),
]

AUTODIFF = [
    ("md", "# How autodiff works\n\nSource: document 002 (`002_69bfc9bacbcef12f.txt`), a summary of a deep-learning "
           "book's Appendix B: manual differentiation, finite differences, forward mode and reverse mode, all on "
           "f(x, y) = x²y + y + 2 at (3, 4)."),
    ("code", SETUP + "\nimport numpy as np\nimport matplotlib.pyplot as plt"),
    ("md", "## E17: reverse mode with variables"),
    ("code", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)\nwith tf.GradientTape() as tape:\n    f = x**2 * y + y + 2\n"
             "df_dx, df_dy = tape.gradient(f, [x, y])\nprint(f'df/dx: {df_dx.numpy()}')\nprint(f'df/dy: {df_dy.numpy()}')"),
    ("code", "%%tape x y\nf = x**2 * y + y + 2"),
    ("md", "## E18: the same with watched constants"),
    ("code", "x = tf.constant(3.0)\ny = tf.constant(4.0)\nwith tf.GradientTape() as tape:\n    tape.watch(x)\n    tape.watch(y)\n"
             "    f = x**2 * y + y + 2\ndf_dx, df_dy = tape.gradient(f, [x, y])\nprint(f'df/dx: {df_dx.numpy()}')\nprint(f'df/dy: {df_dy.numpy()}')"),
    ("code", "%%tape x y\nf = x**2 * y + y + 2"),
    ("md", "## E19: manual differentiation\n\nBy the rules of calculus, ∂f/∂x = 2xy and ∂f/∂y = x² + 1:"),
    ("code", "def df_dx(x, y):\n    return 2 * x * y\n\ndef df_dy(x, y):\n    return x**2 + 1\n\nprint(df_dx(3.0, 4.0), df_dy(3.0, 4.0))"),
    ("md", "## E20: finite differences\n\n(f(x + ε, y) − f(x, y)) / ε approaches the derivative as ε shrinks, until "
           "rounding takes over: the error falls like ε (truncation), then grows like machine-epsilon/ε. Central "
           "differences, (f(x + ε) − f(x − ε)) / 2ε, fall like ε² and are what `%%tape --check` uses."),
    ("code", "def func(x, y):\n    return x**2 * y + y + 2\n\nfor eps in (1e-1, 1e-3, 1e-6):\n"
             "    print(f'eps={eps:g}: df/dx ~ {(func(3.0 + eps, 4.0) - func(3.0, 4.0)) / eps:.6f}, '\n"
             "          f'df/dy ~ {(func(3.0, 4.0 + eps) - func(3.0, 4.0)) / eps:.6f}')"),
    ("code", "eps = np.logspace(-15, 0, 61)\nforward64 = np.abs((func(3.0 + eps, 4.0) - func(3.0, 4.0)) / eps - 24.0)\n"
             "central64 = np.abs((func(3.0 + eps, 4.0) - func(3.0 - eps, 4.0)) / (2 * eps) - 24.0)\n"
             "x32, e32 = np.float32(3.0), eps.astype(np.float32)\n"
             "forward32 = np.abs((func(x32 + e32, np.float32(4.0)) - func(x32, np.float32(4.0))) / e32 - 24.0)\n"
             "plt.loglog(eps, forward64, label='forward difference, float64')\n"
             "plt.loglog(eps, central64, label='central difference, float64')\n"
             "plt.loglog(eps, forward32, label='forward difference, float32')\n"
             "plt.xlabel('ε'); plt.ylabel('|error| in ∂f/∂x'); plt.legend(); plt.title('Finite differences at (3, 4)')\n"
             "plt.show()"),
    ("code", "best = eps[np.nanargmin(np.where(forward64 > 0, forward64, np.nan))]\nprint(f'best forward-difference ε in float64: about {best:.0e}')"),
    ("md", "`%%tape --check` runs central differences with a step chosen for the dtype (the cube root of its "
           "machine epsilon) and compares:"),
    ("code", "x = tf.Variable(3.0, dtype=tf.float64)\ny = tf.Variable(4.0, dtype=tf.float64)"),
    ("code", "%%tape x y --check\nf = x**2 * y + y + 2"),
    ("md", "## E21: forward mode with dual numbers\n\nA dual number a + bε with ε² = 0 carries a value and a "
           "derivative through each operation. Seeding x with 3 + 1ε gives f(3 + ε, 4) = 42 + 24ε: one forward "
           "pass per input."),
    ("code", "class Dual:\n    \"\"\"a + b·ε with ε² = 0.\"\"\"\n\n    def __init__(self, a, b=0.0):\n        self.a, self.b = a, b\n\n"
             "    @staticmethod\n    def of(v):\n        return v if isinstance(v, Dual) else Dual(v)\n\n"
             "    def __add__(self, other):\n        other = Dual.of(other)\n        return Dual(self.a + other.a, self.b + other.b)\n\n"
             "    __radd__ = __add__\n\n    def __mul__(self, other):\n        other = Dual.of(other)\n"
             "        return Dual(self.a * other.a, self.a * other.b + self.b * other.a)\n\n    __rmul__ = __mul__\n\n"
             "    def __pow__(self, n):\n        return Dual(self.a**n, n * self.a ** (n - 1) * self.b)\n\n"
             "    def __repr__(self):\n        return f'{self.a:g} + {self.b:g}ε'\n\n"
             "print(func(Dual(3.0, 1.0), Dual(4.0)))   # seeds x: the ε part is df/dx\nprint(func(Dual(3.0), Dual(4.0, 1.0)))   # seeds y: the ε part is df/dy"),
    ("md", "TensorFlow's forward mode is `tf.autodiff.ForwardAccumulator`; `%%tape --forward` runs it once per "
           "source element and shows the passes each mode needed:"),
    ("code", "x = tf.Variable(3.0)\ny = tf.Variable(4.0)\nwith tf.autodiff.ForwardAccumulator(primals=x, tangents=tf.constant(1.0)) as acc:\n"
             "    f = x**2 * y + y + 2\nprint(f.numpy(), acc.jvp(f).numpy())"),
    ("code", "%%tape x y --forward\nf = x**2 * y + y + 2"),
    ("md", "`--graph --forward` draws those passes on the computation graph: for each source, the tangent each node "
           "carries forward, the ε part of its dual number. Seeded with x (tangent 1), x² gets 2x · 1 = 6, x²·y gets "
           "6 · 4 = 24, and f keeps 24: f(3 + ε, 4) = 42 + 24ε. Seeded with y, the tangents end at 10."),
    ("code", "%%tape x y --graph --forward\nf = x**2 * y + y + 2"),
    ("md", "## E22: reverse mode\n\nOne forward pass records the operations; one reverse pass from f gives every "
           "partial derivative at once: 24 and 10 together. With n inputs and one output, forward mode needs n "
           "passes and reverse mode one, which is why training a network with millions of weights and one loss "
           "uses reverse mode."),
    ("code", "%%tape x y -o r --display none\nf = x**2 * y + y + 2"),
    ("code", "print({name: float(g) for name, g in r.gradients.items()}, 'reverse passes:', r.passes['reverse'])"),
    ("md", "`--graph` draws that reverse pass: each node's adjoint ∂f/∂node, from f (adjoint 1) back to the sources. "
           "Look at y: it feeds two ops, so two contributions come back to it, x² = 9 through x²·y and 1 through "
           "`+ y`, and its adjoint is their sum, ∂f/∂y = 10 = x² + 1. x gets 2x · y = 24 through x²."),
    ("code", "%%tape x y --graph\nf = x**2 * y + y + 2"),
]

EAGER = [
    ("md", "# The eager-execution GradientTape tutorial\n\nSource: document 003 (`003_79e022ef0b8d3fa1.txt`), a "
           "TensorFlow 1.x-era tutorial.\n\n*Erratum:* it starts with `tf.enable_eager_execution()`, which is "
           "TensorFlow 1.x; in TensorFlow 2 eager execution is the default and the call no longer exists. The "
           "page's code also lost its capital letters when it was copied (`tf.gradienttape`, `tf.variable`, "
           "`persistent=true`): below they are `tf.GradientTape`, `tf.Variable` and `persistent=True`."),
    ("code", SETUP + "\nprint(tf.executing_eagerly())"),
    ("md", "## E23: the gradient with respect to an input\n\nz = (Σx)², so dz/dx = 2Σx = 8 for every element of a 2×2 matrix of ones:"),
    ("code", "x = tf.ones((2, 2))\nwith tf.GradientTape() as t:\n    t.watch(x)\n    y = tf.reduce_sum(x)\n    z = tf.multiply(y, y)\n"
             "dz_dx = t.gradient(z, x)\nfor i in [0, 1]:\n    for j in [0, 1]:\n        assert dz_dx[i][j].numpy() == 8.0\nprint(dz_dx)"),
    ("code", "%%tape x -t z\ny = tf.reduce_sum(x)\nz = tf.multiply(y, y)"),
    ("md", "## E24: the gradient with respect to an intermediate value"),
    ("code", "with tf.GradientTape() as t:\n    t.watch(x)\n    y = tf.reduce_sum(x)\n    z = tf.multiply(y, y)\n"
             "dz_dy = t.gradient(z, y)\nassert dz_dy.numpy() == 8.0\nprint(dz_dy)"),
    ("md", "y exists only inside the cell, so ask the kept persistent tape (`-p`) for it:"),
    ("code", "%%tape x -t z -p -o r\ny = tf.reduce_sum(x)\nz = tf.multiply(y, y)"),
    ("code", "print(r.tape.gradient(r.value, y))"),
    ("md", "`--graph` shows it without asking: every intermediate value on the graph carries its adjoint. y's is "
           "dz/dy = 8: y is both inputs of the multiplication y·y, and each carries back y = 4. Each element of x "
           "gets y's 8 through the sum."),
    ("code", "%%tape x -t z --graph\ny = tf.reduce_sum(x)\nz = tf.multiply(y, y)"),
    ("md", "## E25: a persistent tape, two gradients"),
    ("code", "x = tf.constant(3.0)\nwith tf.GradientTape(persistent=True) as t:\n    t.watch(x)\n    y = x * x\n    z = y * y\n"
             "dz_dx = t.gradient(z, x)  # 108.0 (4*x^3 at x = 3)\ndy_dx = t.gradient(y, x)  # 6.0\ndel t\nprint(dz_dx, dy_dx)"),
    ("code", "%%tape x -t z -t y\ny = x * x\nz = y * y"),
    ("md", "On the graph: z = y·y gives y the adjoint 2y = 18, and y = x·x passes it on to x through both of its "
           "inputs, 18 · 3 each time: 108 = 4x³."),
    ("code", "%%tape x -t z --graph\ny = x * x\nz = y * y"),
    ("md", "## E26: Python control flow is recorded as it runs"),
    ("code", "def f(x, y):\n    output = 1.0\n    for i in range(y):\n        if i > 1 and i < 5:\n            output = tf.multiply(output, x)\n"
             "    return output\n\ndef grad(x, y):\n    with tf.GradientTape() as t:\n        t.watch(x)\n        out = f(x, y)\n    return t.gradient(out, x)\n\n"
             "x = tf.convert_to_tensor(2.0)\nassert grad(x, 6).numpy() == 12.0\nassert grad(x, 5).numpy() == 12.0\nassert grad(x, 4).numpy() == 4.0\n"
             "print(grad(x, 6).numpy(), grad(x, 5).numpy(), grad(x, 4).numpy())"),
    ("code", "%tape x -- f(x, 6)"),
    ("code", "%tape x -- f(x, 4)"),
    ("md", "## E27: higher-order gradients with nested tapes"),
    ("code", "x = tf.Variable(1.0)\nwith tf.GradientTape() as t:\n    with tf.GradientTape() as t2:\n        y = x * x * x\n"
             "    dy_dx = t2.gradient(y, x)\nd2y_dx2 = t.gradient(dy_dx, x)\nassert dy_dx.numpy() == 3.0\nassert d2y_dx2.numpy() == 6.0\n"
             "print(dy_dx.numpy(), d2y_dx2.numpy())"),
    ("code", "%%tape x -n 2\ny = x * x * x"),
]

NOTEBOOKS = {
    "quickstart": QUICKSTART,
    "000_gradienttape_basics": BASICS,
    "002_how_autodiff_works": AUTODIFF,
    "003_eager_tutorial": EAGER,
}


def notebook(cells: list[tuple]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(cells):
        kind, source, *rest = cell
        made = nbformat.v4.new_markdown_cell(source) if kind == "md" else nbformat.v4.new_code_cell(source)
        made["id"] = f"c{index:03d}"
        if rest:
            made.metadata["tags"] = list(rest[0])
        nb.cells.append(made)
    return nb


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain(nb: nbformat.NotebookNode) -> None:
    """Tracebacks as plain text: IPython colours them with terminal escapes, which no notebook
    viewer needs and which are control characters in a committed file."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                output.traceback = [_ANSI.sub("", line) for line in output.traceback]


def build(name: str, cells: list[tuple]) -> None:
    nb = notebook(cells)
    path = HERE / f"{name}.ipynb"
    path.parent.mkdir(exist_ok=True)
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                   allow_errors=True).execute()
    for cell in nb.cells:
        if cell.cell_type == "code" and "raises-exception" not in cell.metadata.get("tags", []):
            errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
            if errors:
                raise RuntimeError(f"{name}: cell {cell.id} failed: {errors[0].ename}: {errors[0].evalue}")
    plain(nb)
    nbformat.write(nb, path)
    print(f"wrote {name}.ipynb")


def main(names: list[str]) -> None:
    sys.path.insert(0, str(HERE))
    from cells_zh import localize  # the Chinese notebooks' prose
    from mlp_cells import MLP  # the MNIST notebook's cells, kept beside this file

    english = {**NOTEBOOKS, "001_gradients_and_mlp": MLP}
    every = {**english, **{f"zh/{name}": localize(name, cells) for name, cells in english.items()}}
    for name in names or list(every):
        build(name, every[name])


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # --graph drawings laid out by tapemagic's own layout, not Graphviz's (whose positions move with its
    # version): the same on every machine, so nbval compares them (notebooks/conftest.py pins it there too)
    os.environ.setdefault("TAPEMAGIC_GRAPH_LAYOUT", "fallback")
    main(sys.argv[1:])
