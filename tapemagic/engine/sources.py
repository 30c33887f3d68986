"""Find the sources a line names, by lookup (never eval), and make them differentiable.

A tf.Variable is used as it is; a tensor is watched; a Python number or NumPy array
becomes a float tf.constant rebound under its name (undone if the cell fails).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

import numpy as np
import tensorflow as tf

from .._i18n import _
from .._spec import SpecError

__all__ = ["Source", "resolve", "from_values", "is_float", "describe_type", "as_variable", "leaves",
           "is_differentiable_target", "holds_sparse", "concrete_shape"]


@dataclasses.dataclass(eq=False)
class Source:
    """One thing to differentiate with respect to.

    ``value`` is a tf.Variable or a tf.Tensor (for a Keras variable, the tf.Variable it
    holds); ``note`` says what tapemagic did to make it differentiable, if anything;
    ``undo`` puts the user's original back.
    """

    name: str
    value: Any
    note: str | None = None
    undo: Callable[[], None] | None = None
    keras: bool = False

    @property
    def differentiable(self) -> bool:
        return is_float(self.value.dtype)

    @property
    def is_variable(self) -> bool:
        return isinstance(self.value, tf.Variable)


def is_float(dtype: tf.DType) -> bool:
    return bool(dtype.is_floating or dtype.is_complex)


def leaves(value: Any) -> list[Any] | None:
    """The tensors of a target (a tensor, or a nested structure of them as tape.gradient takes),
    or None if any part of it is not a tensor."""
    try:
        parts = tf.nest.flatten(value)
    except Exception:  # a structure tf.nest cannot walk is no tensor target
        return None
    if not parts or not all(tf.is_tensor(part) for part in parts):
        return None
    return parts


def holds_sparse(value: Any) -> bool:
    """Whether a target is, or holds, a tf.SparseTensor, which TensorFlow's tapes refuse as a target."""
    return any(isinstance(part, tf.SparseTensor) for part in leaves(value) or ())


def is_differentiable_target(value: Any) -> bool:
    """A tensor (or structure of them) of floats that tape.gradient takes: not a tf.SparseTensor
    (why.explain says to take its values or its dense form)."""
    parts = leaves(value)
    return (parts is not None and not holds_sparse(value)
            and all(is_float(tf.as_dtype(part.dtype)) for part in parts))


def concrete_shape(value: Any) -> tuple[int, ...]:
    """A source's shape now, also for a variable made with ``shape=tf.TensorShape(None)``."""
    if value.shape.is_fully_defined():
        return tuple(value.shape.as_list())
    current = value.read_value() if isinstance(value, tf.Variable) else value
    return tuple(int(d) for d in tf.shape(current).numpy())


def describe_type(value: Any) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def resolve(paths: tuple[str, ...], namespace: dict[str, Any]) -> list[Source]:
    """Look up each dotted path in ``namespace`` and expand it into sources.

    Raises
    ------
    SpecError
        For a name that is not defined or a value that cannot be a source; the
        message says what to do. Nothing is rebound when it raises.
    """
    found: list[Source] = []
    try:
        for path in paths:
            value, rebind = _lookup(path, namespace)
            found.extend(_expand(path, value, rebind))
    except BaseException:
        for source in found:
            if source.undo:
                source.undo()
        raise
    return found


def from_values(names: list[str], values: list[Any]) -> list[Source]:
    """Sources for the Python API's callable form: values given directly."""
    return [source for name, value in zip(names, values) for source in _expand(name, value, None)]


_ANY = object()


def _lookup(path: str, namespace: dict[str, Any]) -> tuple[Any, Callable[[Any], None] | None]:
    head, *rest = path.split(".")
    if head not in namespace:
        raise SpecError(_(
            "name {quoted} is not defined: define it in an earlier cell "
            "(e.g. {name} = tf.Variable(3.0)) or check the spelling", quoted=repr(head), name=head,
        ))
    value = namespace[head]
    owner: Any = None
    for depth, attribute in enumerate(rest):
        owner = value
        so_far = ".".join([head, *rest[: depth + 1]])
        try:
            value = getattr(owner, attribute)
        except AttributeError:
            raise SpecError(_(
                "{path} does not exist: {owner} ({kind}) has no attribute {attribute}",
                path=repr(so_far), owner=".".join([head, *rest[:depth]]), kind=describe_type(owner),
                attribute=repr(attribute),
            )) from None
        except Exception as error:  # a property that raises is the user's object's fault, not ours
            raise SpecError(_("reading {path} raised {error}: {message}", path=so_far, error=type(error).__name__,
                              message=error)) from None
    if not rest:
        def rebind(new: Any, expected: Any = _ANY) -> None:
            if expected is _ANY or namespace.get(head) is expected:
                namespace[head] = new
        return value, rebind

    def rebind_attribute(new: Any, expected: Any = _ANY) -> None:
        if expected is _ANY or getattr(owner, rest[-1], None) is expected:
            setattr(owner, rest[-1], new)
    return value, rebind_attribute


def _expand(name: str, value: Any, rebind: Callable[[Any], None] | None) -> Iterator[Source]:
    try:
        yield from _expand_checked(name, value, rebind)
    except SpecError:
        raise
    except Exception as error:  # the user's object raised while being inspected: say so, never crash
        raise SpecError(_(
            "{name} (a {kind}) raised {error} when tapemagic looked at it: {message}. "
            "Name a tensor, variable, number or array as the source",
            name=name, kind=describe_type(value), error=type(error).__name__, message=error,
        )) from None


def as_variable(value: Any) -> Any:
    """The tf.Variable behind a Keras 3 variable (``keras.Variable`` on the TensorFlow backend is
    no tf.Variable, and reports its dtype as a string); None for anything else."""
    if isinstance(value, tf.Variable) or not type(value).__module__.startswith("keras"):
        return None
    try:
        inner = value.value  # outside a layer call no autocast applies: the float32 variable itself
    except Exception:
        return None
    return inner if isinstance(inner, tf.Variable) else None


def _expand_checked(name: str, value: Any, rebind: Callable[[Any], None] | None) -> Iterator[Source]:
    inner = as_variable(value)
    if inner is not None:
        yield Source(name, inner, keras=True)
    elif isinstance(value, tf.Variable):
        yield Source(name, value)
    elif isinstance(value, (tf.RaggedTensor, tf.SparseTensor)):
        if isinstance(value, tf.RaggedTensor):
            raise SpecError(_(
                "{name} is a ragged tensor: name a dense tensor as the source instead "
                "(e.g. {name}_dense = {name}.to_tensor() or tf.sparse.to_dense({name}))", name=name,
            ))
        raise SpecError(_(
            "{name} is a sparse tensor: name a dense tensor as the source instead "
            "(e.g. {name}_dense = {name}.to_tensor() or tf.sparse.to_dense({name}))", name=name,
        ))
    elif tf.is_tensor(value):
        yield Source(name, value)
    elif isinstance(value, (bool, np.bool_)):
        raise SpecError(_("{name} is a bool, which has no derivative: name a float source", name=name))
    elif isinstance(value, (complex, np.complexfloating)) or (isinstance(value, np.ndarray) and value.dtype.kind == "c"):
        if isinstance(value, np.ndarray):
            raise SpecError(_(
                "{name} is a complex NumPy array: complex sources are not supported by tapemagic's views; pass the "
                "real and imaginary parts as float sources ({name}_re = {name}.real; {name}_im = {name}.imag; "
                "%%tape {name}_re {name}_im) and build the value in the cell with tf.complex({name}_re, {name}_im)",
                name=name,
            ))
        raise SpecError(_(
            "{name} is a complex number: complex sources are not supported by tapemagic's views; pass the "
            "real and imaginary parts as float sources ({name}_re = {name}.real; {name}_im = {name}.imag; "
            "%%tape {name}_re {name}_im) and build the value in the cell with tf.complex({name}_re, {name}_im)",
            name=name,
        ))
    elif isinstance(value, (int, float, np.integer, np.floating, np.ndarray)):
        yield _converted(name, value, rebind)
    elif isinstance(value, (list, tuple)):
        if not value:
            raise SpecError(_("{name} is empty: there is nothing in it to differentiate (build the model first?)",
                              name=name))
        for index, item in enumerate(value):
            yield from _expand_item(f"{name}[{index}]", item)
    elif isinstance(value, dict):
        if not value:
            raise SpecError(_("{name} is an empty dict: there is nothing in it to differentiate", name=name))
        for key, item in value.items():
            yield from _expand_item(f"{name}[{key!r}]", item)
    elif hasattr(value, "trainable_variables") and hasattr(value, "weights"):
        raise SpecError(_(
            "{name} is a whole {kind}: name its variables instead, "
            "as {name}.trainable_variables (or one of them, e.g. {name}.kernel)", name=name, kind=type(value).__name__,
        ))
    else:
        raise SpecError(_(
            "{name} is a {kind}, not a number, array, tensor or variable: "
            "a source must be something the target can be differentiated with respect to",
            name=name, kind=describe_type(value),
        ))


def _expand_item(name: str, item: Any) -> Iterator[Source]:
    inner = as_variable(item)
    if inner is not None:
        yield Source(name, inner, keras=True)
    elif isinstance(item, tf.Variable) or (tf.is_tensor(item) and not isinstance(item, (tf.RaggedTensor, tf.SparseTensor))):
        yield Source(name, item)
    else:
        raise SpecError(_(
            "{name} is a {kind}: inside a list, tuple or dict, tapemagic takes only "
            "tf.Variables and tensors (convert it first with tf.constant)", name=name, kind=describe_type(item),
        ))


def _converted(name: str, value: Any, rebind: Callable[[Any], None] | None) -> Source:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise SpecError(_("{name} is a NumPy array of {dtype}, not numbers: name a numeric source",
                          name=name, dtype=array.dtype))
    dtype = tf.as_dtype(array.dtype) if array.dtype.kind == "f" and isinstance(value, (np.ndarray, np.floating)) else tf.float32
    constant = tf.constant(array, dtype=dtype)
    python = isinstance(value, (int, float))
    undo = None
    if rebind is None and python:
        note = _("{name} was a Python number; the cell ran with it as a {dtype} tf.constant", name=name, dtype=dtype.name)
    elif rebind is None:
        note = _("{name} was a NumPy {kind}; the cell ran with it as a {dtype} tf.constant",
                 name=name, kind=array.dtype, dtype=dtype.name)
    elif python:
        note = _("{name} was a Python number; the cell ran with it as a {dtype} tf.constant, "
                 "and {name} is the Python number again after the cell", name=name, dtype=dtype.name)
    else:
        note = _("{name} was a NumPy {kind}; the cell ran with it as a {dtype} tf.constant, "
                 "and {name} is the NumPy {kind} again after the cell", name=name, kind=array.dtype, dtype=dtype.name)
    if rebind is not None:
        rebind(constant)
        # Put back unless the cell itself bound the name to something else meanwhile.
        undo = lambda: rebind(value, constant)  # noqa: E731 - a closure over the original is the point
    return Source(name, constant, note=note, undo=undo)
