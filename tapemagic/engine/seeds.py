"""Jacobians inside a trace, with the products against their identity seeds taken out.

A Jacobian, and so a Hessian, is a batch of vector-Jacobian products, one per row, whose
cotangents are the rows of an identity matrix. pfor vectorizes the batch, so a backward
pass that meets a matrix ``A`` (``y = A @ x`` anywhere in the cell) computes ``A @ I``: a
full n x n x n matrix product whose answer is ``A``. Neither TensorFlow's graph optimizers
nor XLA know that the operand is the identity (XLA sees a constant), and JAX's
``jax.hessian`` computes the same product. Here the seeds are made by us, so we know which
tensor is the identity; after the trace, every ``MatMul`` with that identity as an operand
is replaced by the other operand (transposed where the MatMul said so). For the benchmark's
``sum(sin(x) x**2) + x^T A x`` this removes both of the Hessian's n^3 products.

The rewrite follows the identity through the ops that only move or relabel its elements
(reshapes, unit-dimension transposes, identities) and through products with a 1x1 one,
which is how ``tf.tensordot`` reaches it. Anything else is left exactly as traced.
The answer is the same to the last bit, except that an Inf or NaN in ``A`` now stays where
it is instead of spreading through ``A @ I`` (Inf * 0 is NaN) across its row or column.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["eliminate", "jacobian"]

_COLLECTION = "tapemagic_identity_seeds"
# Ops whose output holds the input's elements in the same row-major order.
_SAME_ORDER = frozenset({"Reshape", "ExpandDims", "Squeeze", "Identity", "Snapshot", "EnsureShape"})


def jacobian(tape: tf.GradientTape, target: Any, source: Any,
             unconnected_gradients: tf.UnconnectedGradients = tf.UnconnectedGradients.NONE) -> Any:
    """``tape.jacobian(target, source)`` inside a trace, vectorized over seeds we can recognise.

    Raises what pfor raises when it cannot vectorize an op, so the caller falls back to eager tapes.
    """
    size = target.shape.num_elements()
    seeds = tf.reshape(tf.eye(size, dtype=target.dtype), [size, *target.shape])
    tf.compat.v1.add_to_collection(_COLLECTION, (seeds, size))
    unconnected = []

    def row(seed: Any) -> Any:
        gradient = tape.gradient(target, source, output_gradients=seed, unconnected_gradients=unconnected_gradients)
        if gradient is None:
            unconnected.append(True)
            return tf.zeros_like(source)
        return tf.convert_to_tensor(gradient)

    rows = tf.vectorized_map(row, seeds, fallback_to_while_loop=False)
    return None if unconnected else tf.reshape(rows, [*target.shape, *source.shape])


def jacobian_flat(tape: tf.GradientTape, target: Any, sources: list[Any]) -> Any:
    """The Jacobian of a vector ``target`` with respect to several sources at once, as one
    [target size, total source size] matrix (zeros where unconnected): one vectorized pass over
    the seeds, not one per source (a Hessian over K small variables would otherwise cost K passes)."""
    size = target.shape.num_elements()
    seeds = tf.reshape(tf.eye(size, dtype=target.dtype), [size, *target.shape])
    tf.compat.v1.add_to_collection(_COLLECTION, (seeds, size))

    def row(seed: Any) -> Any:
        gradients = tape.gradient(target, sources, output_gradients=seed, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(tf.cast(tf.convert_to_tensor(g), target.dtype), [-1]) for g in gradients], axis=0)

    return tf.vectorized_map(row, seeds, fallback_to_while_loop=False)


def eliminate(outputs: Any) -> Any:
    """Replace every product with a recorded identity seed in the graph being traced; ``outputs``
    mapped through the replacements (in case one of them was such a product)."""
    graph = tf.compat.v1.get_default_graph()
    seeds = graph.get_collection(_COLLECTION)
    if not seeds:
        return outputs
    identity = {seed.ref(): size for seed, size in seeds}  # tensors holding eye(size)'s elements, in order
    replaced: dict[Any, Any] = {}
    try:
        for op in graph.get_operations():
            if not op.outputs:
                continue
            if op.type == "MatMul":
                new = _without_identity(op, identity)
                if new is not None:
                    _reroute(op.outputs[0], new)
                    replaced[op.outputs[0].ref()] = new
            elif op.inputs and op.inputs[0].ref() in identity and _keeps_order(op, identity[op.inputs[0].ref()]):
                identity[op.outputs[0].ref()] = identity[op.inputs[0].ref()]
    except (AttributeError, TypeError, ValueError):
        # A TensorFlow whose graph-editing primitive changed: each reroute done so far is
        # complete and exact on its own, so the graph stays right, only less of it is saved.
        pass
    graph.clear_collection(_COLLECTION)

    def swap(value: Any) -> Any:
        return replaced.get(value.ref(), value) if isinstance(value, tf.Tensor) else value  # not IndexedSlices

    return tf.nest.map_structure(swap, outputs)


def _keeps_order(op: tf.Operation, size: int) -> bool:
    """Does ``op`` hand on an identity's elements in the same order?"""
    if not op.outputs[0].shape.is_fully_defined():
        return False
    if op.type in _SAME_ORDER:
        return True
    return op.type == "Transpose" and _transpose_keeps_order(op.inputs[0], size)


def _transpose_keeps_order(tensor: Any, size: int) -> bool:
    # Moving unit dimensions keeps the order; so does swapping the two axes of an n x n identity.
    big = [d for d in tensor.shape.as_list() if d != 1]
    return big in ([size * size], [size, size])


def _without_identity(op: tf.Operation, identity: dict[Any, int]) -> Any:
    """The MatMul's value computed without the product, or None to leave it."""
    a, b = op.inputs
    transpose_a, transpose_b = op.get_attr("transpose_a"), op.get_attr("transpose_b")
    shape = op.outputs[0].shape
    if not shape.is_fully_defined():
        return None
    with tf.name_scope(op.name.split("/")[-1] + "_without_identity"):
        if _is_eye(b, identity):
            kept, transposed = a, transpose_a
            new = tf.transpose(a) if transpose_a else tf.identity(a)
        elif _is_eye(a, identity):
            kept, transposed = b, transpose_b
            new = tf.transpose(b) if transpose_b else tf.identity(b)
        elif a.ref() in identity and _is_one(b):
            kept, transposed = a, False
            new = tf.reshape(a, shape)  # (m, 1) @ [[1]]: a column vector moved, not computed
        elif b.ref() in identity and _is_one(a):
            kept, transposed = b, False
            new = tf.reshape(b, shape)
        else:
            return None
    size = identity.get(kept.ref())
    if size is not None and (not transposed or _transpose_keeps_order(kept, size)):
        identity[new.ref()] = size  # the product was the identity itself, passed on
    return new


def _is_eye(tensor: Any, identity: dict[Any, int]) -> bool:
    size = identity.get(tensor.ref())
    return size is not None and tensor.shape.as_list() == [size, size]


def _is_one(tensor: Any) -> bool:
    if tensor.shape.num_elements() != 1:
        return False
    while tensor.op.type in _SAME_ORDER:  # tf.get_static_value does not look through a Reshape
        tensor = tensor.op.inputs[0]
    value = tf.get_static_value(tensor)
    return value is not None and float(value.reshape(())) == 1.0


def _reroute(old: Any, new: Any) -> None:
    for consumer in list(old.consumers()):
        if consumer is new.op:
            continue
        for index, tensor in enumerate(consumer.inputs):
            if tensor is old:
                consumer._update_input(index, new)  # TensorFlow's own graph-editing primitive
