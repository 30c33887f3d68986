"""Jacobians in a trace with the products against their identity seeds taken out (tapemagic/_seeds.py):
the products are gone from the graph, and the numbers are those of the eager path and of the formulas."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pytest

import tapemagic
from tapemagic.engine import seeds as _seeds

pytestmark = pytest.mark.usefixtures("trace_first_run")  # these test the traced path itself

N = 24


def live_ops(outputs) -> list[tf.Operation]:
    """The ops the outputs depend on (the rewrite leaves dead MatMuls behind; TensorFlow prunes them)."""
    seen, stack = {}, [t.op for t in tf.nest.flatten(outputs)]
    while stack:
        op = stack.pop()
        if op.name not in seen:
            seen[op.name] = op
            stack.extend(t.op for t in op.inputs)
    return list(seen.values())


def square_products(concrete) -> int:
    return sum(op.type == "MatMul" and all(t.shape.as_list() == [N, N] for t in op.inputs)
               for op in live_ops(concrete.outputs))


def hessian_function(eliminate: bool):
    a = tf.constant(np.random.default_rng(0).normal(size=(N, N)))

    def hessian(x):
        with tf.GradientTape(persistent=True) as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                y = tf.reduce_sum(tf.sin(x) * x**2) + tf.tensordot(x, tf.linalg.matvec(a, x), 1)
            gradient = inner.gradient(y, x)
        h = _seeds.jacobian(outer, gradient, x)
        return _seeds.eliminate(h) if eliminate else h

    return a.numpy(), tf.function(hessian, autograph=False).get_concrete_function(tf.TensorSpec([N], tf.float64))


def test_the_products_with_the_identity_seeds_leave_the_graph_and_the_hessian_stays_exact():
    a, kept = hessian_function(eliminate=False)
    _, taken_out = hessian_function(eliminate=True)
    # Without the rewrite, pfor computes A @ I and A^T @ I; with it, no N x N by N x N product is left.
    assert square_products(kept) == 2
    assert square_products(taken_out) == 0
    x = np.random.default_rng(1).normal(size=N)
    expected = np.diag(-np.sin(x) * x**2 + 4 * x * np.cos(x) + 2 * np.sin(x)) + a + a.T
    for function in (kept, taken_out):
        np.testing.assert_allclose(function(tf.constant(x)).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_a_product_that_is_needed_stays():
    # The Hessian of |Xw - b|^2 is 2 X^T X: one product with the seeds goes, X^T X stays.
    rng = np.random.default_rng(3)
    namespace = {"tf": tf, "X": tf.constant(rng.normal(size=(30, N))), "b": tf.constant(rng.normal(size=30)),
                 "w": tf.constant(rng.normal(size=N))}
    code = "loss = tf.reduce_sum((tf.linalg.matvec(X, w) - b) ** 2)"
    traced = tapemagic.tape(code, ["w"], namespace=namespace, hessian=True)
    assert traced.path == "traced"
    X = namespace["X"].numpy()
    np.testing.assert_allclose(traced.hessian.numpy(), 2 * X.T @ X, rtol=1e-12)


def test_matrix_targets_several_sources_and_an_unconnected_one_agree_with_the_eager_path():
    rng = np.random.default_rng(4)
    namespace = {"tf": tf, "A": tf.constant(rng.normal(size=(3, 4))), "M": tf.constant(rng.normal(size=(4, 5))),
                 "v": tf.constant(rng.normal(size=20)), "u": tf.constant(rng.normal(size=6))}
    code = "Y = tf.tanh(A @ M) * tf.reduce_sum(v)"  # Y is 3 x 5; u is not used
    traced = tapemagic.tape(code, ["M", "v", "u"], namespace=namespace, jacobian=True)
    eager = tapemagic.tape(code, ["M", "v", "u"], namespace=namespace, jacobian=True, eager=True)
    assert traced.path == "traced" and eager.path == "eager"
    for name in ("M", "v"):
        assert traced.jacobian[name].shape == eager.jacobian[name].shape
        np.testing.assert_allclose(traced.jacobian[name].numpy(), eager.jacobian[name].numpy(), rtol=1e-10, atol=1e-15)
    assert traced.jacobian["u"] is None and eager.jacobian["u"] is None


def test_a_small_mlp_hessian_agrees_with_the_eager_path():
    rng = np.random.default_rng(5)
    namespace = {"tf": tf, "inputs": tf.constant(rng.normal(size=(16, 6))),
                 "kernel": tf.constant(rng.normal(size=(6, 4))), "w2": tf.constant(rng.normal(size=(4, 3)))}
    code = "loss = tf.reduce_mean(tf.nn.softmax(tf.tanh(inputs @ kernel) @ w2) ** 2)"
    traced = tapemagic.tape(code, ["kernel"], namespace=namespace, hessian=True)
    eager = tapemagic.tape(code, ["kernel"], namespace=namespace, hessian=True, eager=True)
    assert traced.path == "traced"
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-10, atol=1e-14)


def test_the_jacobian_of_a_matrix_product_is_the_matrix_itself_even_with_an_inf():
    # A @ I would spread the Inf into NaNs (Inf * 0) across its column; without the product it stays put.
    a = np.random.default_rng(6).normal(size=(N, N))
    a[3, 4] = np.inf
    namespace = {"tf": tf, "A": tf.constant(a), "x": tf.constant(np.ones(N))}
    traced = tapemagic.tape("y = tf.linalg.matvec(A, x)", ["x"], namespace=namespace, jacobian=True)
    eager = tapemagic.tape("y = tf.linalg.matvec(A, x)", ["x"], namespace=namespace, jacobian=True, eager=True)
    assert traced.path == "traced"
    np.testing.assert_array_equal(traced.jacobian["x"].numpy(), a)
    assert np.isnan(eager.jacobian["x"].numpy()).sum() == N - 1  # TensorFlow's own pfor, for comparison


# Random compositions of the ops the rewrite follows or meets: matrix products on either side,
# transposed products, reshapes and transposes of the sources, element-wise functions, a tensordot.
STEPS = ("matvec", "matvec_t", "matmul_2d", "matmul_2d_left", "transpose_2d", "sin", "tanh", "square")


def composed(steps: list[str], seed: int):
    rng = np.random.default_rng(seed)
    matrices = [tf.constant(rng.normal(size=(N, N)) / np.sqrt(N)) for _ in steps]
    blocks = [tf.constant(rng.normal(size=(6, 6)) / 3) for _ in steps]

    def f(x):
        y = x
        for step, m, b in zip(steps, matrices, blocks):
            if step == "matvec":
                y = tf.linalg.matvec(m, y)
            elif step == "matvec_t":
                y = tf.linalg.matvec(m, y, transpose_a=True)
            elif step == "matmul_2d":
                y = tf.reshape(tf.reshape(y, (4, 6)) @ b, [-1])
            elif step == "matmul_2d_left":
                y = tf.reshape(tf.transpose(b) @ tf.reshape(y, (6, 4)), [-1])
            elif step == "transpose_2d":
                y = tf.reshape(tf.transpose(tf.reshape(y, (4, 6))), [-1])
            else:
                y = {"sin": tf.sin, "tanh": tf.tanh, "square": tf.square}[step](y)
        # The last term always meets the seeds head-on, so every example has products to take out.
        return (tf.tensordot(y, tf.linalg.matvec(matrices[0], y), 1) + tf.reduce_sum(tf.sin(x) * y)
                + tf.tensordot(x, tf.linalg.matvec(matrices[-1], x), 1))

    return f


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_traced_hessians_equal_eager_ones_for_random_compositions(steps, seed):
    assert N == 24  # the 2-D steps reshape the sources to 4 x 6
    f = composed(steps, seed)
    x = tf.constant(np.random.default_rng(seed + 1).normal(size=N))
    taken_out = []
    reroute = _seeds._reroute
    _seeds._reroute = lambda old, new: (taken_out.append(old), reroute(old, new))
    try:
        traced = tapemagic.tape(f, [x], hessian=True)
    finally:
        _seeds._reroute = reroute
    eager = tapemagic.tape(f, [x], hessian=True, eager=True)
    assert traced.path == "traced", traced.notes
    assert taken_out  # the rewrite did happen on this example
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-9, atol=1e-12)


def test_a_variable_read_through_gather_is_traced_and_agrees():
    # Its first derivative is an IndexedSlices, which the traced function returns beside the tensors.
    namespace = {"tf": tf, "v": tf.Variable(np.linspace(0.1, 2.0, N)), "idx": tf.constant([1, 3, 5, 3, N - 1])}
    code = "y = tf.reduce_sum(tf.gather(v, idx) ** 3) + tf.reduce_sum(v ** 2)"
    traced = tapemagic.tape(code, ["v"], namespace=namespace, hessian=True)
    eager = tapemagic.tape(code, ["v"], namespace=namespace, hessian=True, eager=True)
    assert traced.path == "traced", traced.notes
    np.testing.assert_allclose(traced.hessian.numpy(), eager.hessian.numpy(), rtol=1e-10)


# -- diagonal matrices grown from the seeds (_Diagonals) -------------------------------------------
def jacobian_function(f, eliminate: bool, n: int = N, dtype=tf.float64):
    def jacobian(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y = f(x)
        j = _seeds.jacobian(tape, y, x)
        return _seeds.eliminate(j) if eliminate else j

    return tf.function(jacobian, autograph=False).get_concrete_function(tf.TensorSpec([n], dtype))


def eager_jacobian(f, x):
    x = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = f(x)
    return tape.jacobian(y, x, experimental_use_pfor=False).numpy()  # row by row: no pfor, no rewrite


W = tf.constant(np.random.default_rng(5).normal(size=(N, N)) / np.sqrt(N))
B = tf.constant(np.random.default_rng(6).normal(size=N) * 0.1)
LAYERS = {
    # A dense layer's Jacobian diag(act'(z)) W: the backward pass of act meets the seeds first, then W.
    "tanh": lambda x: tf.tanh(tf.linalg.matvec(W, x) + B),
    "sigmoid": lambda x: tf.sigmoid(tf.linalg.matvec(W, x) + B),
    "relu": lambda x: tf.nn.relu(tf.linalg.matvec(W, x) + B),
    "relu6": lambda x: tf.nn.relu6(3 * tf.linalg.matvec(W, x)),
    "elu": lambda x: tf.nn.elu(tf.linalg.matvec(W, x) - B),
    "selu": lambda x: tf.nn.selu(tf.linalg.matvec(W, x)),
    "softplus": lambda x: tf.nn.softplus(tf.linalg.matvec(W, x)),
    "leaky_relu (not rewritten)": lambda x: tf.nn.leaky_relu(tf.linalg.matvec(W, x), 0.1),
    "W^T": lambda x: tf.tanh(tf.linalg.matvec(W, x, transpose_a=True)),
    "row vector": lambda x: tf.reshape(tf.matmul(tf.reshape(tf.tanh(x), [1, N]), W), [N]),
    "two layers": lambda x: tf.tanh(tf.linalg.matvec(W, tf.sigmoid(tf.linalg.matvec(W, x)))),
    # Element-wise chains: every op on the diagonal, nothing n x n but the answer.
    "sin(x) x": lambda x: tf.sin(x) * x,
    "sums and negation": lambda x: -(tf.sin(x) * x) + x * x - tf.cos(x) / 2.0,
    "reciprocal and rsqrt": lambda x: tf.math.reciprocal(x * x + 1.0) + tf.math.rsqrt(x * x + 2.0),
    "a cast": lambda x: tf.cast(tf.cast(x, tf.float32) * 2.0, tf.float64) * x,
    "broadcast against a matrix": lambda x: tf.reduce_sum(tf.tanh(x)[None, :] * W, axis=0),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_jacobians_through_diagonal_matrices_equal_the_eager_ones(name):
    f = LAYERS[name]
    x = np.random.default_rng(7).normal(size=N)
    kept, taken_out = jacobian_function(f, False), jacobian_function(f, True)
    expected = eager_jacobian(f, x)
    tolerance = 1e-6 if name == "a cast" else 1e-12
    for function in (kept, taken_out):
        np.testing.assert_allclose(function(tf.constant(x)).numpy(), expected, rtol=tolerance, atol=tolerance)
    # n x n by n x n products before and after: one per layer goes; the second layer's product with
    # the first's (dense) Jacobian is real work and stays; a leaky ReLU's gradient is not rewritten.
    before, after = {"two layers": (2, 1), "leaky_relu (not rewritten)": (1, 1)}.get(
        name, (0, 0) if name in ("sin(x) x", "sums and negation", "reciprocal and rsqrt", "a cast",
                                 "broadcast against a matrix") else (1, 0))
    assert (square_products(kept), square_products(taken_out)) == (before, after)


def test_a_dense_layer_jacobian_has_no_cubic_product_left_and_is_the_formula():
    f = LAYERS["tanh"]
    kept, taken_out = jacobian_function(f, False), jacobian_function(f, True)
    assert square_products(kept) == 1 and square_products(taken_out) == 0
    x = np.random.default_rng(8).normal(size=N)
    z = W.numpy() @ x + B.numpy()
    np.testing.assert_allclose(taken_out(tf.constant(x)).numpy(), (1 - np.tanh(z) ** 2)[:, None] * W.numpy(),
                               rtol=1e-12, atol=1e-15)


def test_a_keras_dense_layer_jacobian_through_the_magic_path_agrees():
    keras = pytest.importorskip("keras")
    layer = keras.layers.Dense(N, activation="tanh", dtype="float64")
    layer.build((1, N))
    namespace = {"tf": tf, "layer": layer, "x": tf.constant(np.random.default_rng(9).normal(size=(1, N)))}
    traced = tapemagic.tape("y = layer(x)", ["x"], namespace=namespace, jacobian=True)
    eager = tapemagic.tape("y = layer(x)", ["x"], namespace=namespace, jacobian=True, eager=True)
    assert traced.path == "traced" and eager.path == "eager"
    np.testing.assert_allclose(traced.jacobian["x"].numpy(), eager.jacobian["x"].numpy(), rtol=1e-12, atol=1e-15)


def test_a_hessian_through_a_diagonal_chain_agrees():
    # sum(softplus(W x)): its Hessian is W^T diag(sigmoid'(Wx)) W; the seeds meet W first, then the chain.
    namespace = {"tf": tf, "W": W, "x": tf.constant(np.random.default_rng(10).normal(size=N))}
    code = "y = tf.reduce_sum(tf.nn.softplus(tf.linalg.matvec(W, x))) + tf.reduce_sum(tf.sin(x) * x)"
    traced = tapemagic.tape(code, ["x"], namespace=namespace, hessian=True)
    assert traced.path == "traced"
    x, w = namespace["x"].numpy(), W.numpy()
    s = 1 / (1 + np.exp(-(w @ x)))
    expected = w.T @ np.diag(s * (1 - s)) @ w + np.diag(2 * np.cos(x) - x * np.sin(x))
    np.testing.assert_allclose(traced.hessian.numpy(), expected, rtol=1e-10, atol=1e-12)
