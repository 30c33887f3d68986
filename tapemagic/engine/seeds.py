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

The identity is also followed where it stops being one but stays diagonal (:class:`_Diagonals`):
a Jacobian's seeds usually meet an element-wise chain first (the backward pass of tanh in
``tanh(W @ x + b)``, of ``sin(x) * x``), which makes ``diag(d)`` of them; the product with ``W``
that follows becomes a scaling of ``W``'s columns, and the element-wise ops run on ``d`` alone.
For a 1000-wide tanh layer's Jacobian that takes out a 1000^3 product that JAX's ``jacrev``
computes too.
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
    diagonal = _Diagonals(identity)
    replaced: dict[Any, Any] = {}
    try:
        for op in graph.get_operations():
            if not op.outputs:
                continue
            new = _without_identity(op, identity) if op.type == "MatMul" else None
            if new is None:
                new = diagonal.rewrite(op)
            if new is not None:
                _reroute(op.outputs[0], new)
                replaced[op.outputs[0].ref()] = new
            elif op.inputs and op.inputs[0].ref() in identity and _keeps_order(op, identity[op.inputs[0].ref()]):
                identity[op.outputs[0].ref()] = identity[op.inputs[0].ref()]
    except (AttributeError, TypeError, ValueError, tf.errors.OpError):
        # A TensorFlow whose graph-editing primitive changed: each reroute done so far is
        # complete and exact on its own, so the graph stays right, only less of it is saved.
        pass
    graph.clear_collection(_COLLECTION)

    def swap(value: Any) -> Any:
        return replaced.get(value.ref(), value) if isinstance(value, tf.Tensor) else value  # not IndexedSlices

    return tf.nest.map_structure(swap, outputs)


# Element-wise ops that keep a zero of the operand at this position a zero (for finite other operands):
# on a diagonal matrix they act on its diagonal alone. TanhGrad(y, dy) = dy (1 - y^2) and its kin are
# how the backward pass of an activation meets the seeds.
_ZERO_KEEPING = {"Mul": (0, 1), "TanhGrad": (1,), "SigmoidGrad": (1,), "ReluGrad": (0,), "Relu6Grad": (0,),
                 "EluGrad": (0,), "SeluGrad": (0,), "SoftplusGrad": (0,), "ReciprocalGrad": (1,), "RsqrtGrad": (1,)}
_SUMS = frozenset({"AddV2", "Add", "Sub", "AddN"})
_MOVES = _SAME_ORDER | {"Transpose"}


class _Diagonals:
    """Diagonal matrices grown from an identity seed, each kept as its diagonal vector.

    A Jacobian's seeds meet an element-wise chain first (the backward pass of tanh, of sin(x)·x): the
    pfor'd result is an n x n matrix that is zero off its diagonal, and a product with it (the
    backward pass of W @ x) is an n x n x n MatMul. Followed through element-wise ops, sums, negation,
    transposes and reshapes, such a matrix is diag(d); a MatMul with it becomes a scaling of the other
    operand's columns or rows (n^2 instead of n^3), and each element-wise op runs on the n diagonal
    elements. Each rewritten matrix is still materialized for any consumer left as traced (XLA drops
    it where none is). Exact but for an Inf or NaN off the diagonal of the other operand, which no
    longer turns the zeros there into NaN, as in :func:`eliminate`.
    """

    def __init__(self, identity: dict[Any, int]) -> None:
        self.identity = identity
        self.found: dict[Any, Any] = {}  # square [n, n] tensor -> its diagonal, a [n] tensor

    def of(self, tensor: Any) -> Any:
        """The diagonal of ``tensor`` where it is known to be a diagonal [n, n] matrix (or one with unit
        dimensions added, such as [n, n, 1]), else None. An identity seed's is ones."""
        found = self.found.get(tensor.ref())
        size = self.identity.get(tensor.ref())
        if found is None and size is not None and [d for d in tensor.shape.as_list() if d != 1] == [size, size]:
            found = self.found[tensor.ref()] = tf.ones([size], dtype=tensor.dtype)
        return found

    def rewrite(self, op: tf.Operation) -> Any:
        """``op``'s output computed from diagonals, or None to leave the op as traced (after noting,
        for an op that only moves elements, that its output is the same diagonal matrix)."""
        out = op.outputs[0]
        if len(op.outputs) != 1 or not out.shape.is_fully_defined() or not op.inputs:
            return None
        if op.type in _MOVES:
            self._moved(op)
            return None
        if op.type == "MatMul":
            diagonals = [self.of(tensor) if _square(tensor) else None for tensor in op.inputs]
            if diagonals == [None, None]:
                return None
            with tf.name_scope(op.name.split("/")[-1] + "_on_diagonal"):
                return self._product(op, diagonals)
        if not _square(out):
            return None
        n = int(out.shape[0])
        diagonals = [self.of(tensor) if tensor.shape.as_list() == [n, n] else None for tensor in op.inputs]
        if all(d is None for d in diagonals):
            return None
        with tf.name_scope(op.name.split("/")[-1] + "_on_diagonal"):
            if op.type in _ZERO_KEEPING and len(op.inputs) == 2:
                at = next((i for i in _ZERO_KEEPING[op.type] if diagonals[i] is not None), None)
                if at is None:
                    return None
                other = _along_diagonal(op.inputs[1 - at], n)
                if other is None:
                    return None
                vectors = [diagonals[at], other] if at == 0 else [other, diagonals[at]]
                return self._made(op, vectors)
            if op.type in _SUMS or op.type in ("Neg", "Cast"):
                if any(d is None for d in diagonals) or (op.type == "Cast" and op.get_attr("Truncate")):
                    return None
                return self._made(op, diagonals)
        return None

    def _made(self, op: tf.Operation, vectors: list[Any]) -> Any:
        """The same op run on diagonal vectors, as a diagonal matrix again."""
        node = op.node_def
        attrs = {key: node.attr[key] for key in node.attr}
        vector = op.graph.create_op(op.type, vectors, [op.outputs[0].dtype], attrs=attrs).outputs[0]
        vector.set_shape([op.outputs[0].shape[0]])
        return self._matrix(vector)

    def _product(self, op: tf.Operation, diagonals: list[Any]) -> Any:
        a, b = op.inputs
        if diagonals[0] is not None and diagonals[1] is not None:
            return self._matrix(diagonals[0] * diagonals[1])
        transpose_a, transpose_b = op.get_attr("transpose_a"), op.get_attr("transpose_b")
        if diagonals[1] is not None:  # op(a) @ diag(d) scales op(a)'s columns
            return (tf.transpose(a) if transpose_a else a) * diagonals[1][tf.newaxis, :]
        return diagonals[0][:, tf.newaxis] * (tf.transpose(b) if transpose_b else b)  # diag(d) @ op(b): its rows

    def _matrix(self, vector: Any) -> Any:
        """diag(vector), for the consumers left as traced, known by its vector to the others."""
        matrix = tf.linalg.diag(vector)
        self.found[matrix.ref()] = vector
        return matrix

    def _moved(self, op: tf.Operation) -> None:
        """A reshape or transpose of a diagonal matrix whose only dimensions over 1 are [n, n] is the same
        matrix (a diagonal matrix is its own transpose)."""
        source, out = op.inputs[0], op.outputs[0]
        if not source.shape.is_fully_defined():
            return
        big_in = [d for d in source.shape.as_list() if d != 1]
        big_out = [d for d in out.shape.as_list() if d != 1]
        if len(big_in) != 2 or big_in != big_out or big_in[0] != big_in[1]:
            return
        known = self.of(source)  # shapes such as [n, n, 1] are kept too, for the reshape back to [n, n]
        if known is not None:
            self.found[out.ref()] = known


def _square(tensor: Any) -> bool:
    shape = tensor.shape
    return shape.rank == 2 and shape.is_fully_defined() and shape[0] == shape[1]


def _along_diagonal(tensor: Any, n: int) -> Any:
    """The values an element-wise op meets on the diagonal of an [n, n] operand, from a ``tensor``
    broadcast against it; None where its shape is not one of the broadcasts handled."""
    shape = tensor.shape.as_list()
    if shape == [n, n]:
        return tf.linalg.diag_part(tensor)
    if tensor.shape.num_elements() == 1 and len(shape) <= 2:
        return tf.fill([n], tf.reshape(tensor, []))
    if shape in ([n], [1, n], [n, 1]):
        return tf.reshape(tensor, [n])
    return None


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
