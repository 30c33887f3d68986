"""Would running the code a second time leave a trace? The answer decides every replay.

Two kinds of evidence, both conservative (anything unknown counts as an effect):

- before the run, the Python code: the cell's own statements (``cell.effects``) and the
  helper functions it calls that were defined in the notebook, read from their bytecode;
- during the run, TensorFlow's own record of every op it executed (an op callback): a
  variable assigned or created, a stateful random draw, a ``tf.print``, a ``py_function``,
  also inside ``tf.function``s and Keras layers the cell calls.

A cell with no effect of either kind can be run again on a copy of its namespace and
changes nothing the user can see (its printed output is swallowed): that is what
:mod:`.replay` does.
"""
from __future__ import annotations

import contextlib
import dis
import types
from typing import Any, Iterator, Mapping

from .cell import MUTATORS, Cell

__all__ = ["before_run", "OpLog"]

_STORES = {"STORE_ATTR": "sets an attribute", "DELETE_ATTR": "deletes an attribute",
           "STORE_SUBSCR": "assigns an item", "DELETE_SUBSCR": "deletes an item",
           "STORE_GLOBAL": "assigns a global", "DELETE_GLOBAL": "deletes a global"}
_CALLED = {"open", "input", "display", "exec", "eval", "next", "setattr", "delattr", "print"}
MAX_DEPTH = 4


def before_run(cell: Cell | None, namespace: Mapping[str, Any] | None, function: Any = None) -> list[str]:
    """What a second run would repeat, as far as the Python code shows before anything runs."""
    found = list(cell.effects) if cell is not None else []
    seen: set[int] = set()
    if function is not None:
        found.extend(_callable_effects("the function", function, 0, seen, home=None))
    if cell is not None and namespace is not None:
        home = namespace.get("__name__", "__main__")
        for line, dotted in cell.calls:
            target = _lookup(dotted, namespace)
            if target is not None:
                found.extend(f"line {line}: {words}" for words in _callable_effects(dotted, target, 0, seen, home))
    return found


def _lookup(dotted: str, namespace: Mapping[str, Any]) -> Any:
    head, *rest = dotted.split(".")
    if head not in namespace:
        return None
    value = namespace[head]
    for name in rest:
        try:
            value = getattr(type(value), name, None) if not isinstance(value, types.ModuleType) else getattr(value, name, None)
        except Exception:  # an object that raises on inspection is looked into no further
            return None
        if value is None:
            return None
    return value


def _user_code(function: Any, home: str | None) -> bool:
    """Defined in the notebook (or, for the Python API, any plain Python function)."""
    if not isinstance(function, types.FunctionType):
        return False
    return home is None or function.__module__ in (home, "__main__", None)


def _callable_effects(label: str, target: Any, depth: int, seen: set[int], home: str | None) -> list[str]:
    if depth > MAX_DEPTH or id(target) in seen:
        return []
    seen.add(id(target))
    python = getattr(target, "python_function", None)  # a tf.function
    if python is not None:
        target = python
    if isinstance(target, types.MethodType):
        target = target.__func__
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    if _user_code(target, home):
        return _function_effects(label, target, depth, seen, home)
    kind = target if isinstance(target, type) else type(target)
    if kind.__module__ in ((home, "__main__") if home else ()):
        # An instance (or class) of a class the user wrote: what calling it runs.
        found = []
        for name in ("__call__", "call", "__init__" if isinstance(target, type) else "forward"):
            method = getattr(kind, name, None)
            if isinstance(method, types.FunctionType) and _user_code(method, home):
                found.extend(_function_effects(f"{label}.{name}", method, depth + 1, seen, home))
        return found
    return []


def _function_effects(label: str, function: types.FunctionType, depth: int, seen: set[int], home: str | None) -> list[str]:
    found = []
    code = function.__code__
    for inner in _codes(code):
        for instruction in dis.get_instructions(inner):
            name = instruction.opname
            if name in _STORES:
                found.append(f"{label}() {_STORES[name]} ({instruction.argval})")
            elif name in ("STORE_DEREF", "DELETE_DEREF") and inner is code and instruction.argval in code.co_freevars:
                found.append(f"{label}() assigns the enclosing name {instruction.argval} (nonlocal)")
            elif name in ("LOAD_ATTR", "LOAD_METHOD") and instruction.argval in MUTATORS:
                found.append(f"{label}() calls .{instruction.argval}(), which changes state")
            elif name in ("LOAD_ATTR", "LOAD_METHOD") and instruction.argval == "random":
                found.append(f"{label}() uses a random module (random draws change its state)")
            elif name in ("LOAD_GLOBAL", "LOAD_NAME") and instruction.argval in _CALLED - {"print"}:
                found.append(f"{label}() calls {instruction.argval}()")
    for name in code.co_names:
        value = function.__globals__.get(name)
        if value is not None and (isinstance(value, types.FunctionType) or hasattr(value, "python_function")):
            found.extend(_callable_effects(name, value, depth + 1, seen, home))
    for cell in function.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, types.FunctionType):
            found.extend(_callable_effects(value.__name__, value, depth + 1, seen, home))
    return found


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _codes(constant)


# -- what TensorFlow ran ------------------------------------------------------------------------
# Stateful ops that only read state (or only call functions, which are looked into).
_READS = frozenset({
    "ReadVariableOp", "ResourceGather", "ResourceGatherNd", "VarIsInitializedOp", "VariableShape",
    "_Arg", "_Retval", "StatefulPartitionedCall", "PartitionedCall", "If", "StatelessIf", "While",
    "StatelessWhile", "Case", "StatelessCase", "DisableCopyOnRead", "_ReadVariablesOp",
})
_WHAT = {
    "AssignVariableOp": "assigns a variable", "AssignAddVariableOp": "adds to a variable",
    "AssignSubVariableOp": "subtracts from a variable", "VarHandleOp": "creates a variable",
    "PrintV2": "prints with tf.print", "EagerPyFunc": "runs Python code in a tf.py_function",
    "PyFunc": "runs Python code in a tf.numpy_function", "PyFuncStateless": "runs Python code in a tf.numpy_function",
    "RngReadAndSkip": "draws from a tf.random.Generator", "RandomStandardNormal": "draws a random number",
    "RandomUniform": "draws a random number", "RandomUniformInt": "draws a random number",
    "TruncatedNormal": "draws a random number", "RandomShuffle": "shuffles at random",
    "Multinomial": "draws a random sample",
}
_FUNCTION_ATTRS = ("f", "then_branch", "else_branch", "cond", "body", "branches")


class OpLog:
    """Records the state-changing ops TensorFlow executes while active (eagerly, or inside the
    functions it calls). ``effects`` lists them in words, each op once."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self._seen: set[str] = set()

    @contextlib.contextmanager
    def active(self) -> Iterator["OpLog"]:
        from tensorflow.python.framework import op_callbacks  # TensorFlow's hook for every op it runs

        op_callbacks.add_op_callback(self._callback)
        try:
            yield self
        finally:
            op_callbacks.remove_op_callback(self._callback)

    def _callback(self, op_type: Any, inputs: Any, attrs: Any, outputs: Any, op_name: Any = None, graph: Any = None) -> None:
        if graph is not None:
            return None  # ops being added to a graph run later, as a function call that is seen then
        name = op_type.decode() if isinstance(op_type, bytes) else str(op_type)
        if name not in self._seen:
            self._seen.add(name)
            for words in _op_effects(name):
                if words not in self.effects:
                    self.effects.append(words)
        return None


_FUNCTION_VERDICTS: dict[str, tuple[str, ...]] = {}


def _op_effects(name: str, depth: int = 0) -> tuple[str, ...]:
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(name)
    if op_def is not None:
        if not op_def.is_stateful or name in _READS:
            return ()
        return (f"TensorFlow ran {name}, which {_WHAT.get(name, 'changes state')}",)
    return _function_effects_tf(name, depth)


def _function_effects_tf(name: str, depth: int) -> tuple[str, ...]:
    """A function TensorFlow called by name (a tf.function, a Keras layer compiled as one)."""
    if name in _FUNCTION_VERDICTS:
        return _FUNCTION_VERDICTS[name]
    if depth > 8:
        return ()
    from tensorflow.python.eager import context

    try:
        definition = context.context().get_function_def(name)
    except Exception:  # not a function either: an op we cannot look up counts as an effect
        return (f"TensorFlow ran {name}, which tapemagic cannot inspect",)
    found: list[str] = []
    for node in definition.node_def:
        for words in _op_effects(node.op, depth + 1) if node.op != name else ():
            if words not in found:
                found.append(words)
        for attr in _FUNCTION_ATTRS:
            if attr in node.attr:
                value = node.attr[attr]
                names = [value.func.name] if value.HasField("func") else [f.name for f in value.list.func]
                for inner in names:
                    for words in _function_effects_tf(inner, depth + 1):
                        if words not in found:
                            found.append(words)
    _FUNCTION_VERDICTS[name] = tuple(found)
    return _FUNCTION_VERDICTS[name]


def graph_effects(graph_def: Any) -> list[str]:
    """The state-changing ops in a traced graph and the functions in its library (nothing runs)."""
    from tensorflow.python.framework import op_def_registry

    found: list[str] = []
    library = {function.signature.name for function in graph_def.library.function}
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    for node in nodes:
        if node.op in library:
            continue  # a call of a function whose own nodes are scanned here too
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            words = f"the trace calls {node.op}, which tapemagic cannot inspect"
        elif not op_def.is_stateful or node.op in _READS:
            continue
        else:
            words = f"the trace holds {node.op}, which {_WHAT.get(node.op, 'changes state')}"
        if words not in found:
            found.append(words)
    return found


def prints(function: Any) -> bool:
    """Whether a plain Python function (or one it calls by global name) prints: its traced graph
    would print only while being traced, so such a function runs eagerly."""
    seen: set[int] = set()

    def walk(target: Any, depth: int) -> bool:
        target = getattr(target, "python_function", target)
        if not isinstance(target, types.FunctionType) or id(target) in seen or depth > MAX_DEPTH:
            return False
        seen.add(id(target))
        for code in _codes(target.__code__):
            if "print" in code.co_names:
                return True
            for name in code.co_names:
                if walk(target.__globals__.get(name), depth + 1):
                    return True
        return False

    return walk(function, 0)
