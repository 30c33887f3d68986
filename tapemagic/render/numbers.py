"""Deterministic, one-line text for numbers and arrays (no ids, fixed formatting)."""
from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .._i18n import _

__all__ = ["as_array", "scalar", "array", "summary", "python_literal", "element", "SPARSE_DENSE_LIMIT"]

SPARSE_DENSE_LIMIT = 1 << 20  # elements: a larger tf.SparseTensor is shown by its shape, not made dense


def as_array(value: Any) -> np.ndarray:
    """A NumPy view of a tensor, variable, number or array; a tf.SparseTensor's dense form; a structure whose
    parts differ in shape (a tuple of tensors, a dict) as a 1-d object array of its parts, as NumPy holds a
    ragged tensor's rows (shown as nested lists; no copy as Python, no sum). A SparseTensor whose dense form
    would hold more than SPARSE_DENSE_LIMIT elements gives its stored values (a 100000 x 100000 one would take
    40 GB dense)."""
    if _is_sparse(value) or (type(value).__name__ == "IndexedSlices" and getattr(value, "dense_shape", None) is not None):
        return _densified(value)
    if hasattr(value, "numpy"):
        value = value.numpy()
    if isinstance(value, dict):  # a target that is a dict of tensors: its values, in order
        value = list(value.values())
    try:
        if isinstance(value, (list, tuple)) and any(_is_sparse(part) or isinstance(part, dict) for part in value):
            raise ValueError("parts NumPy cannot convert")
        return np.asarray(value)
    except ValueError:  # parts of different shapes
        parts = list(value)
        out = np.empty(len(parts), dtype=object)
        for index, part in enumerate(parts):
            out[index] = as_array(part)
        return out


def _is_sparse(value: Any) -> bool:
    """A tf.SparseTensor (by its type's name, so rendering needs no TensorFlow; not a tf.IndexedSlices, which
    has parts of the same names but one index per row)."""
    return type(value).__name__ in ("SparseTensor", "SparseTensorValue")


def _dense_shape(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in np.asarray(value.dense_shape))


def _densified(value: Any) -> np.ndarray:
    """The dense form of a SparseTensor (one index per element) or of tf.IndexedSlices (one per row, as a
    gathered variable's gradient holds them), repeated indices added up as TensorFlow adds them; its stored
    values where the dense form would pass SPARSE_DENSE_LIMIT elements."""
    indices, values = np.asarray(value.indices), np.asarray(value.values)
    dense_shape = _dense_shape(value)
    if math.prod(dense_shape) > SPARSE_DENSE_LIMIT:
        return values
    dense = np.zeros(dense_shape, dtype=values.dtype)
    np.add.at(dense, tuple(indices.T) if indices.ndim == 2 else indices, values)
    return dense


def scalar(value: Any, precision: int) -> str:
    """A number rounded to ``precision`` significant digits, trailing zeros dropped: 24, 0.3333, 1.5e-07."""
    if type(value) is float:  # the common case first (a heatmap formats thousands)
        return _float(value, precision)
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, complex):
        return f"{scalar(value.real, precision)}{'+' if value.imag >= 0 else '-'}{scalar(abs(value.imag), precision)}j"
    if isinstance(value, (bytes, np.bytes_)):
        return repr(value.decode("utf-8", "replace"))
    if not isinstance(value, float):
        return str(value)
    return _float(float(value), precision)


def _float(value: float, precision: int) -> str:
    if math.isnan(value):  # math's tests, not NumPy's: on a Python float they cost a tenth
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 10 ** max(precision, 6) or magnitude < 1e-4:
        return np.format_float_scientific(value, precision=max(precision - 1, 0), trim="-", exp_digits=2)
    text = np.format_float_positional(value, precision=precision, unique=True, fractional=False, trim="-")
    return text


def array(value: Any, precision: int, max_elements: int) -> str:
    """One line: a scalar, a small nested list, or a summary of a large array (a SparseTensor's dense form, said)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {array(part, precision, max_elements)}" for key, part in value.items()) + "}"
    if _is_sparse(value):
        dense_shape = _dense_shape(value)
        dense = (_("shape {shape}", shape=shape(dense_shape)) if math.prod(dense_shape) > SPARSE_DENSE_LIMIT
                 else array(as_array(value), precision, max_elements))
        return _("{dense} (a SparseTensor, {count} stored)", dense=dense, count=int(np.asarray(value.values).size))
    data = as_array(value)
    if data.ndim == 0:
        return scalar(data.item(), precision)
    if data.dtype == object and data.ndim == 1 and any(isinstance(part, np.ndarray) for part in data):
        # parts of different shapes (a ragged tensor's rows, a tuple's tensors): each part on its own terms
        parts = [array(part, precision, max_elements) for part in data[:max(1, max_elements)]]
        return "[" + ", ".join(parts + (["…"] if data.size > max(1, max_elements) else [])) + "]"
    if data.size > max_elements:
        return summary(data, precision, max_elements)
    return _nested(data, precision)


def _nested(data: Any, precision: int) -> str:
    if not isinstance(data, np.ndarray):  # an element of an object or bytes array
        return scalar(data.item() if isinstance(data, np.generic) else data, precision)
    if data.ndim == 0:
        return scalar(data.item(), precision)
    return "[" + ", ".join(_nested(row, precision) for row in data) + "]"


def summary(data: np.ndarray, precision: int, max_elements: int) -> str:
    """Shape, min/max/mean and the first elements of a large array."""
    flat = data.reshape(-1)
    head = ", ".join(scalar(item, precision) for item in flat[: max(1, min(6, max_elements))].tolist())
    parts = [_("shape {shape}", shape=shape(data.shape))]
    if data.dtype.kind in "biuf" and flat.size:
        finite = flat[np.isfinite(flat)] if data.dtype.kind == "f" else flat
        if finite.size:
            parts.append(_("min {min} max {max} mean {mean}", min=scalar(finite.min().item(), precision),
                           max=scalar(finite.max().item(), precision), mean=scalar(float(finite.mean()), precision)))
        bad = flat.size - finite.size
        if bad:
            parts.append(f"{bad} nan/inf")
    parts.append(f"[{head}, …]")
    return " ".join(parts)


def shape(dims: Any) -> str:
    """(), (3,), (2, 2): the shape as Python writes a tuple."""
    dims = tuple(int(d) if d is not None else None for d in dims)
    return str(dims)


def has_nonfinite(value: Any) -> bool:
    data = as_array(value)
    return data.dtype.kind in "fc" and not bool(np.all(np.isfinite(data)))


def python_literal(value: Any) -> str:
    """Every element at full precision as Python a user can paste: ``np.array([[1.5, 2.0]], dtype=np.float32)``.

    Each float is the shortest text that reads back to the same number of its dtype (NumPy's ``str``), so a float32
    copied from the view and read back as float32 is bit-for-bit the element shown."""
    data = as_array(value)
    if data.dtype.kind not in "biufc":
        return repr(data.tolist())
    dtype = f"np.{data.dtype.name}" if hasattr(np, data.dtype.name) else repr(data.dtype.name)
    if data.ndim == 0:
        return f"np.{data.dtype.name}({element(data[()])})" if hasattr(np, data.dtype.name) else element(data[()])
    if data.dtype.kind in "fc" and data.size:
        body = _float_literal(data)
    else:
        body = np.array2string(data, separator=", ", threshold=sys.maxsize, max_line_width=100,
                               formatter={"float_kind": element, "complex_kind": element})
    return f"np.array({body}, dtype={dtype})"


def _float_literal(data: np.ndarray, width: int = 100) -> str:
    """What ``np.array2string(data, separator=", ", threshold=sys.maxsize, max_line_width=width,
    formatter={"float_kind": element, "complex_kind": element})`` writes, byte for byte, for a non-empty array of
    floats or complex numbers, 3 to 5 times faster: NumPy calls the formatter and its line-wrapping code once
    per element through a recursive closure (29 ms for 10,000 float32s, most of a displayed re-run's time); here
    each element is one ``str`` and a row is wrapped in one loop (tests/test_static_view.py compares the two)."""
    flat = data.ravel()
    words = list(map(str, flat))
    if data.dtype.kind == "f":
        for i in np.flatnonzero(~np.isfinite(flat)).tolist():
            words[i] = element(flat[i])
    shape = data.shape

    def nested(start: int, axis: int, indent: str, room: int) -> tuple[str, int]:
        """The text of the sub-array from ``start`` along ``axis`` (NumPy's _formatArray: a hanging indent
        that grows by one space per bracket, rows wrapped before ``room`` less one for the separator)."""
        inner = indent + " "
        if axis == len(shape) - 1:
            limit, prefix = room - 1, len(indent)
            lines, line = [], indent
            end = start + shape[axis]
            for i in range(start, end):
                word = words[i]
                if len(line) + len(word) > limit and len(line) > prefix:
                    lines.append(line.rstrip())
                    line = indent
                line += word if i == end - 1 else word + ", "
            text = "\n".join([*lines, line])
            return "[" + text[len(indent):] + "]", end
        separator = "," + "\n" * (len(shape) - axis - 1)
        parts = []
        for _row in range(shape[axis]):
            part, start = nested(start, axis + 1, inner, room - 1)
            parts.append(indent + part)
        return "[" + separator.join(parts)[len(indent):] + "]", start

    return nested(0, 0, " ", width)[0]


def element(item: Any) -> str:
    """One element at full precision, as Python reads it back (np.nan, np.inf for the non-finite)."""
    if isinstance(item, (np.floating, float)) and not np.isfinite(item):
        return "np.nan" if np.isnan(item) else ("np.inf" if item > 0 else "-np.inf")
    return str(item)
