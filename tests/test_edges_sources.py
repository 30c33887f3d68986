"""At the edges, item 2: a Hessian or Jacobian over many separate sources is traced with the
sources fed as one vector (tapemagic/engine/flat.py), and gives exactly what eager tapes give.

Every expected number here comes from plain eager ``tf.GradientTape``s in the test itself. The
cases where the one vector must NOT be used (an alias that reads a source another way, a None
first derivative, ``-n 2``) are checked to give the eager numbers too, never a slice of zeros.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import tapemagic
from conftest import CACHED

pytestmark = pytest.mark.usefixtures("trace_first_run")  # these test the traced path itself

K = 20  # -n alone is traced from 16 elements (trace.TRACE_MIN_ELEMENTS)
ONE_VECTOR = "sources went into the trace as one vector"


def _eager_hessian(function, variables):
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            y = function()
        grads = inner.gradient(y, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
    blocks = outer.jacobian(flat, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    total = int(flat.shape[0])
    return np.concatenate([np.reshape(b.numpy(), [total, -1]) for b in blocks], axis=1)


@pytest.fixture
def scalars():
    rng = np.random.default_rng(3)
    a = tf.constant(rng.normal(size=(K, K)).astype(np.float32) / K)
    vs = [tf.Variable(float(v)) for v in rng.normal(size=K).astype(np.float32)]
    return {"tf": tf, "A": a, "vs": vs}


CELL = "v = tf.stack(vs)\ny = tf.reduce_sum(tf.sin(v) * v ** 2) + tf.tensordot(v, tf.linalg.matvec(A, v), 1)"


def _f(ns):
    v = tf.stack(ns["vs"])
    return tf.reduce_sum(tf.sin(v) * v ** 2) + tf.tensordot(v, tf.linalg.matvec(ns["A"], v), 1)


def test_a_hessian_over_a_list_of_scalar_variables_is_one_vector_and_exact(scalars):
    engine = tapemagic.Engine(trace_first_run=True)
    result = tapemagic.tape(CELL, ["vs"], namespace=scalars, hessian=True, engine=engine)
    assert any(ONE_VECTOR in note for note in result.notes), result.notes
    expected = _eager_hessian(lambda: _f(scalars), scalars["vs"])
    np.testing.assert_allclose(result.hessian.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert result.hessian.shape == (K, K)
    # gradients per source, in the sources' own shapes, as the real run gave them
    assert [result.gradients[f"vs[{i}]"].shape for i in range(K)] == [()] * K
    # a second run reuses the trace, with new values read from the variables
    scalars["vs"][0].assign(2.0)
    again = tapemagic.tape(CELL, ["vs"], namespace=scalars, hessian=True, engine=engine)
    assert any(CACHED in note for note in again.notes), again.notes
    np.testing.assert_allclose(again.hessian.numpy(), _eager_hessian(lambda: _f(scalars), scalars["vs"]), rtol=1e-5, atol=1e-5)


def test_sources_of_several_shapes_in_a_dict_and_a_jacobian():
    rng = np.random.default_rng(4)
    params = {"w": tf.Variable(rng.normal(size=(3, 2)).astype(np.float32)), "b": tf.Variable(np.float32([0.5, -1.0])),
              "c": tf.Variable(np.float32(2.0)), "d": tf.Variable(rng.normal(size=(8,)).astype(np.float32))}
    x = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    ns = {"tf": tf, "params": params, "x": x}
    cell = ("h = tf.tanh(x @ params['w'] + params['b']) * params['c']\n"
            "z = tf.concat([tf.reshape(h, [-1]), params['d'] ** 2], 0)")
    result = tapemagic.tape(cell, ["params"], namespace=ns, jacobian=True, hessian=True)
    assert any(ONE_VECTOR in note for note in result.notes), result.notes
    variables = list(params.values())

    def z():
        h = tf.tanh(x @ params["w"] + params["b"]) * params["c"]
        return tf.concat([tf.reshape(h, [-1]), params["d"] ** 2], 0)

    with tf.GradientTape(persistent=True) as tape:
        value = z()
    for name, variable in params.items():
        np.testing.assert_allclose(result.jacobian[f"params[{name!r}]"].numpy(), tape.jacobian(value, variable).numpy(),
                                   rtol=1e-4, atol=1e-5)  # XLA's tanh differs in float32's last bits
    np.testing.assert_allclose(result.hessian.numpy(), _eager_hessian(lambda: tf.reduce_sum(z()), variables),
                               rtol=1e-4, atol=1e-5)


def test_an_alias_read_another_way_is_not_fed_as_one_vector_and_the_hessian_stays_exact(scalars):
    # w0 is vs[0] under another name: slices of one vector would miss the path through w0. At
    # vs[0] = 0 the first derivative through w0**2 is 0 either way, so only the graph check can see it.
    scalars["vs"][0].assign(0.0)
    scalars["w0"] = scalars["vs"][0]
    cell = "v = tf.stack(vs)\ny = tf.reduce_sum(tf.sin(v) * v ** 2) + w0 ** 2"
    result = tapemagic.tape(cell, ["vs"], namespace=scalars, hessian=True)
    assert not any(ONE_VECTOR in note for note in result.notes), result.notes

    def f():
        v = tf.stack(scalars["vs"])
        return tf.reduce_sum(tf.sin(v) * v ** 2) + scalars["w0"] ** 2

    expected = _eager_hessian(f, scalars["vs"])
    assert expected[0, 0] == pytest.approx(2.0, abs=1e-5)  # d²(w0²)/dw0² at 0, plus sin(v)v²'s 0 there
    np.testing.assert_allclose(result.hessian.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_a_source_the_target_does_not_use_stays_none_not_a_slice_of_zeros(scalars):
    cell = "v = tf.stack(vs[1:])\ny = tf.reduce_sum(v ** 3)"
    result = tapemagic.tape(cell, ["vs"], namespace=scalars, hessian=True)
    assert result.gradients["vs[0]"] is None  # TensorFlow's None for a source the target does not use
    assert not any(ONE_VECTOR in note for note in result.notes)
    expected = _eager_hessian(lambda: tf.reduce_sum(tf.stack(scalars["vs"][1:]) ** 3), scalars["vs"])
    np.testing.assert_allclose(result.hessian.numpy(), expected, rtol=1e-5, atol=1e-6)  # its row and column: zeros


def test_second_order_per_source_keeps_its_meaning(scalars):
    # -n 2 differentiates each source's own first derivative: over one vector it would add the mixed
    # partials in, so the one vector is not used for it.
    cell = "y = vs[0] ** 2 * vs[1] + vs[2] * vs[3] * vs[1]"
    result = tapemagic.tape(cell, ["vs"], namespace=scalars, order=2)
    assert not any(ONE_VECTOR in note for note in result.notes)
    vs = scalars["vs"]
    for i in range(4):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                y = vs[0] ** 2 * vs[1] + vs[2] * vs[3] * vs[1]
            g = inner.gradient(y, vs[i])
        expected = outer.gradient(g, vs[i])
        got = result.derivatives[2][f"vs[{i}]"]
        if expected is None:
            assert got is None or float(got) == 0.0
        else:
            assert float(got) == pytest.approx(float(expected), rel=1e-6, abs=1e-6)


def test_through_the_magic_with_a_tuple_of_variables(shell):
    shell.user_ns.update(tf=tf, ws=tuple(tf.Variable(float(i) / 3) for i in range(20)))
    result = shell.run_cell_magic("tape", "ws --hessian -o r --display none", "y = tf.reduce_sum(tf.stack(ws) ** 4)")
    assert result is None
    result = shell.user_ns["r"]
    assert any(ONE_VECTOR in note for note in result.notes), result.notes
    values = np.array([float(i) / 3 for i in range(20)])
    np.testing.assert_allclose(result.hessian.numpy(), np.diag(12 * values ** 2), rtol=1e-5, atol=1e-6)
    assert isinstance(shell.user_ns["ws"], tuple) and all(isinstance(w, tf.Variable) for w in shell.user_ns["ws"])


@pytest.mark.parametrize("count", [3, 4])  # per-source trace, and the one-vector plan first
def test_a_tensor_source_also_read_through_an_alias_is_not_traced(count):
    # A zero bias read a second time through a dict made before the cell: a trace would hold that read
    # as a constant, and at b0 = 0 its first derivative (2·b0) is 0 either way, so only the graph
    # check can see that the Hessian's 2 would be lost.
    names = [f"b{i}" for i in range(count)]
    namespace = {"tf": tf, "b0": tf.zeros(6), **{f"b{i}": tf.fill([6], float(i)) for i in range(1, count)}}
    namespace["p"] = {"b0": namespace["b0"]}
    product = "*".join(["tf.sin(b0)", *names[1:]])
    cell = f"y = tf.reduce_sum({product}) + tf.reduce_sum(p['b0'] ** 2)"
    engine = tapemagic.Engine(trace_first_run=True)
    for _ in range(2):  # the second run would have used a cached trace
        result = tapemagic.tape(cell, names, namespace=namespace, hessian=True, engine=engine)
        assert any("reads b0 under another name" in note for note in result.notes), result.notes
        assert result.hessian[0, 0].numpy() == pytest.approx(2.0)
