"""Would running the code a second time leave a trace? The answer decides every replay.

Two kinds of evidence, both conservative (what cannot be inspected counts as an effect, except
library code, whose TensorFlow effects the op log sees):

- before the run, the Python code: the cell's own statements, and every function, method and
  property it reaches that is not library code (defined in the notebook or in the user's own
  modules), read from their bytecode; objects it reads that change when read (iterators,
  random generators);
- during the run, TensorFlow's own record of every op it executed (an op callback): a
  variable assigned or created, a stateful random draw, a ``tf.print``, a ``py_function``,
  also inside ``tf.function``s and Keras layers the cell calls.

One policy table below says what counts, for the cell's syntax tree and for bytecode alike.
A cell with no effect of either kind can be run again on a copy of its namespace and changes
nothing the user can see (its printed output is swallowed): :meth:`.body.CellBody.replay`.
"""
from __future__ import annotations

import ast
import contextlib
import dis
import functools
import os
import random as _random
import sysconfig
import types
from typing import Any, Iterator, Mapping

from .._i18n import _
from .cell import Cell

__all__ = ["before_run", "OpLog", "graph_effects", "prints"]

# -- the policy -------------------------------------------------------------------------------------
# Method names that change the object they are called on, or the world.
MUTATORS = frozenset({
    "append", "extend", "insert", "pop", "popitem", "popleft", "appendleft", "remove", "clear", "update",
    "setdefault", "add", "discard", "sort", "reverse", "fill", "put", "put_nowait", "send", "throw",
    "write", "writelines", "write_text", "write_bytes", "mkdir", "makedirs", "unlink", "rmdir", "touch",
    "rename", "save", "savez", "savetxt", "save_weights", "load_weights", "set_weights", "dump", "flush",
    "assign", "assign_add", "assign_sub", "scatter_update", "scatter_add", "scatter_nd_update",
    "apply_gradients", "apply", "minimize", "step", "fit", "train_on_batch", "update_state", "reset_state",
    "reset_states", "reset", "add_loss", "add_metric", "seed", "shuffle", "set_seed", "set_random_seed",
    "set_global_policy", "__setitem__", "__delitem__", "__next__", "__iadd__", "setattr", "delattr",
    "info", "warning", "warn", "debug", "error", "exception", "critical", "log",  # logging
    "system", "popen", "Popen", "check_call", "check_output", "call", "run", "spawnl", "startfile",  # processes
    "copyto", "putmask", "place", "itemset", "resize", "setflags",  # NumPy in place
})
# Builtins that act on the world (print only with file=, below), and what they do, in words
# (functions, so the words are in the language current when they are reported).
BUILTINS: dict[str, Any] = {
    "open": lambda: _("opens a file"), "input": lambda: _("asks for input"), "display": lambda: _("displays output"),
    "exec": lambda: _("runs code with exec"), "eval": lambda: _("runs code with eval"),
    "next": lambda: _("advances an iterator"), "setattr": lambda: _("sets an attribute"),
    "delattr": lambda: _("deletes an attribute"), "__import__": lambda: _("imports"),
}
# Calls into these modules are pure (tf.add, np.sort), except those that set global state.
PURE_MODULES = {"tf", "tensorflow", "np", "numpy", "math", "ops", "jnp", "K"}
GLOBAL_STATE = {"seed", "set_seed", "set_random_seed", "set_global_policy", "save", "savez", "savetxt",
                "copyto", "put", "place", "putmask", "Variable"}
RANDOM_MODULES = {"random"}  # np.random.*, numpy.random.*, random.*, tf.random.* (TensorFlow's also as ops)
_STORES: dict[str, Any] = {
    "STORE_ATTR": lambda: _("sets an attribute"), "DELETE_ATTR": lambda: _("deletes an attribute"),
    "STORE_SUBSCR": lambda: _("assigns an item"), "DELETE_SUBSCR": lambda: _("deletes an item"),
    "STORE_GLOBAL": lambda: _("assigns a global"), "DELETE_GLOBAL": lambda: _("deletes a global"),
}
MAX_DEPTH = 5


def _random_generator(value: Any) -> bool:
    import numpy as np

    return isinstance(value, (_random.Random, np.random.Generator, np.random.RandomState, np.random.BitGenerator))


def _immutable(value: Any) -> bool:
    import tensorflow as tf

    if isinstance(value, (int, float, complex, str, bytes, bool, type(None), frozenset, range)):
        return True
    if isinstance(value, tuple):
        return all(_immutable(item) for item in value)
    return tf.is_tensor(value) and not isinstance(value, tf.Variable)


_LIBRARY_DIRS = tuple({os.path.realpath(path) for key in ("stdlib", "platstdlib", "purelib", "platlib")
                       if (path := sysconfig.get_paths().get(key))})
_OWN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=4096)
def _library(filename: str) -> bool:
    """Code installed as a library (the standard library, site-packages) or tapemagic's own. Cached: resolving
    the path's links was a tenth of a warm traced call's own time."""
    if not filename or filename.startswith("<"):
        return False  # a notebook cell, IPython input, exec'd code: the user's
    real = os.path.realpath(filename)
    return real.startswith(_LIBRARY_DIRS) or real.startswith(_OWN_DIR) or "site-packages" in real


def _user_function(value: Any) -> bool:
    return isinstance(value, types.FunctionType) and not _library(value.__code__.co_filename)


def _user_class(kind: type) -> bool:
    module = getattr(kind, "__module__", "") or ""
    if module in ("builtins", "__main__"):
        return module == "__main__"
    import sys

    file = getattr(sys.modules.get(module), "__file__", None)
    return file is None or not _library(file)


def _user_module(value: Any) -> bool:
    return isinstance(value, types.ModuleType) and getattr(value, "__file__", None) is not None and not _library(value.__file__)


# -- before the run: the code ---------------------------------------------------------------------
def before_run(cell: Cell | None, namespace: Mapping[str, Any] | None, function: Any = None) -> list[str]:
    """What a second run would repeat, as far as the Python code shows before anything runs."""
    found: list[str] = []
    seen: set[int] = set()
    if function is not None:
        found.extend(_callable_effects(_("the function"), function, 0, seen))
    if cell is not None and cell.tree is not None:
        found.extend(_syntax_effects(cell.tree, namespace or {}))
        namespace = namespace or {}
        for name in sorted(cell.free):
            value = namespace.get(name)
            if value is not None and _consumed_when_read(value):
                found.append(_("the cell reads {name}, a {kind} that changes as it is read",
                               name=name, kind=type(value).__name__))
        for line, dotted in cell.calls:
            target = _lookup(dotted, namespace)
            if target is not _MISSING:
                found.extend(_("line {line}: {words}", line=line, words=words)
                             for words in _callable_effects(dotted, target, 0, seen))
    return list(dict.fromkeys(found))


def _consumed_when_read(value: Any) -> bool:
    try:
        if _random_generator(value) or isinstance(value, types.GeneratorType):
            return True
    except ReferenceError:  # a weakref.proxy whose object is gone: nothing to read
        return False
    # An iterator (a file, a csv.reader, itertools.count): reading it advances it. Only a type with __next__
    # can be one; iter() is not called on others, since it copies a tf.Variable's value (5 ms for 10,000
    # elements, on every first run). A proxy or a mock has __next__ too: iter() decides for those.
    if not hasattr(type(value), "__next__"):
        return False
    try:
        return iter(value) is value
    except Exception:  # not iterable after all (a closed file, a proxy of a plain object), or raises when asked
        return False


def _syntax_effects(tree: ast.AST, namespace: Mapping[str, Any]) -> list[str]:
    """The cell's own statements. Names it binds at the top level are not effects: a second run
    works on a copy of the namespace. Names it changes in place (``lst += [1]``) are."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            found.append(_("line {line} declares {keyword} {names}", line=line, keyword=type(node).__name__.lower(),
                           names=", ".join(node.names)))
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                for part in ast.walk(target):
                    if isinstance(part, (ast.Attribute, ast.Subscript)) and isinstance(part.ctx, (ast.Store, ast.Del)):
                        if isinstance(node, ast.Delete):
                            found.append(_("line {line} deletes {target}", line=line, target=ast.unparse(part)))
                        else:
                            found.append(_("line {line} assigns to {target}", line=line, target=ast.unparse(part)))
            if (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
                    and node.target.id in namespace and not _immutable(namespace[node.target.id])):
                kind = type(namespace[node.target.id]).__name__
                found.append(_("line {line} changes {name} (a {kind}) in place with {operator}", line=line,
                               name=node.target.id, kind=kind, operator=ast.unparse(node).split(" ", 2)[1]))
        elif isinstance(node, ast.Call):
            found.extend(_call_effect(node, line))
    return found


def _call_effect(node: ast.Call, line: int) -> list[str]:
    function = node.func
    keywords = {keyword.arg for keyword in node.keywords}
    if "out" in keywords:
        return [_("line {line} writes into an array in place ({function}(..., out=...))", line=line,
                  function=ast.unparse(function))]
    if isinstance(function, ast.Name):
        if function.id in BUILTINS:
            return [_("line {line} calls {function}(), which {does}", line=line, function=function.id,
                      does=BUILTINS[function.id]())]
        if function.id == "print" and "file" in keywords:
            return [_("line {line} prints to a file (print(..., file=...))", line=line)]
        return []
    if not isinstance(function, ast.Attribute):
        return []
    root = function.value
    while isinstance(root, ast.Attribute):
        root = root.value
    dotted = ast.unparse(function)
    parts = dotted.split(".")
    if parts[0] in ("keras", "tf") and "keras" in parts and parts[-1][:1].isupper():
        return [_("line {line} creates a Keras object ({function}): Keras numbers each new layer, so a second run "
                  "would too", line=line, function=dotted)]
    if _draws_random(function.value):
        return [_("line {line} draws from a random generator ({function})", line=line, function=dotted)]
    pure = isinstance(root, ast.Name) and root.id in PURE_MODULES and function.attr not in GLOBAL_STATE
    if function.attr in MUTATORS and not pure:
        return [_("line {line} calls {function}(), which changes state", line=line, function=dotted)]
    return []


def _draws_random(owner: ast.expr) -> bool:
    """``random.x``, ``np.random.x``, ``numpy.random.x``."""
    if isinstance(owner, ast.Name):
        return owner.id in RANDOM_MODULES
    return (isinstance(owner, ast.Attribute) and owner.attr in RANDOM_MODULES
            and isinstance(owner.value, ast.Name) and owner.value.id in ("np", "numpy"))


_MISSING = object()


def _lookup(dotted: str, namespace: Mapping[str, Any]) -> Any:
    """What a dotted name refers to, without running a property: a module's attribute, or the class
    attribute of an instance (a method, or the property object itself)."""
    head, *rest = dotted.split(".")
    if head not in namespace:
        return _MISSING
    value = namespace[head]
    for name in rest:
        try:
            if isinstance(value, types.ModuleType):
                value = getattr(value, name, _MISSING)
            else:
                bound = value
                value = getattr(type(value), name, _MISSING)
                if value is _MISSING:
                    value = vars(bound).get(name, _MISSING) if hasattr(bound, "__dict__") else _MISSING
        except Exception:  # an object that raises on inspection is looked into no further
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _callable_effects(label: str, target: Any, depth: int, seen: set[int]) -> list[str]:
    """Effects of calling (or, for a property, reading) ``target``."""
    if depth > MAX_DEPTH or id(target) in seen:
        return []
    seen.add(id(target))
    if isinstance(target, property):
        return (_callable_effects(_("{label} (a property)", label=label), target.fget, depth + 1, seen)
                if target.fget else [])
    if isinstance(target, functools.partial):
        return _callable_effects(label, target.func, depth + 1, seen)
    python = getattr(target, "python_function", None)  # a tf.function
    if isinstance(python, types.FunctionType):
        target = python
    if isinstance(target, (staticmethod, classmethod)):
        target = target.__func__
    owner = getattr(target, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType) and _random_generator(owner):
        return [_("{label}() draws from a random generator", label=label)]
    if isinstance(target, types.MethodType):
        target = target.__func__
    if _user_function(target):
        return _function_effects(label, target, depth, seen)
    if isinstance(target, type):
        init = target.__dict__.get("__init__")
        return _callable_effects(f"{label}.__init__", init, depth + 1, seen) if _user_class(target) and init else []
    kind = type(target)
    if not isinstance(target, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType)) and _user_class(kind):
        found = []
        for name in ("__call__", "call", "forward"):
            method = getattr(kind, name, None)
            if _user_function(method):
                found.extend(_function_effects(f"{label}.{name}", method, depth + 1, seen))
        return found
    return []


def _function_effects(label: str, function: types.FunctionType, depth: int, seen: set[int]) -> list[str]:
    found = []
    code = function.__code__
    attributes: set[str] = set()
    for inner in _codes(code):
        for instruction in dis.get_instructions(inner):
            name, argument = instruction.opname, instruction.argval
            if name in _STORES:
                found.append(_("{label}() {does} ({name})", label=label, does=_STORES[name](), name=argument))
            elif name in ("STORE_DEREF", "DELETE_DEREF") and inner is code and argument in code.co_freevars:
                found.append(_("{label}() assigns the enclosing name {name} (nonlocal)", label=label, name=argument))
            elif name in ("LOAD_ATTR", "LOAD_METHOD"):
                attributes.add(argument)
                if argument in MUTATORS:
                    found.append(_("{label}() calls .{method}(), which changes state", label=label, method=argument))
                elif argument in RANDOM_MODULES:
                    found.append(_("{label}() uses a random module (random draws change its state)", label=label))
            elif name in ("LOAD_GLOBAL", "LOAD_NAME") and argument in BUILTINS:
                found.append(_("{label}() calls {function}(), which {does}", label=label, function=argument,
                               does=BUILTINS[argument]()))
            elif name == "KW_NAMES" and isinstance(argument, tuple) and ({"file", "out"} & set(argument)):
                found.append(_("{label}() passes {keywords}=, writing somewhere", label=label,
                               keywords="/".join(sorted({"file", "out"} & set(argument)))))
    referenced = [function.__globals__.get(name, _MISSING) for name in code.co_names]
    referenced += [cell.cell_contents for cell in function.__closure__ or () if filled(cell)]
    for value in referenced:
        if value is _MISSING:
            continue
        if _random_generator(value):
            found.append(_("{label}() uses a random generator", label=label))
        elif _user_module(value):
            for attribute in attributes | set(code.co_names):
                member = getattr(value, attribute, None)
                if _user_function(member):
                    found.extend(_callable_effects(f"{value.__name__}.{attribute}", member, depth + 1, seen))
        elif isinstance(value, (types.FunctionType, functools.partial)) or hasattr(value, "python_function"):
            found.extend(_callable_effects(getattr(value, "__name__", label), value, depth + 1, seen))
        elif not isinstance(value, (type, types.ModuleType)) and _user_class(type(value)):
            # An instance of the user's class: the methods and properties this function reaches on it.
            for attribute in attributes:
                member = getattr(type(value), attribute, None)
                if isinstance(member, property) or _user_function(member):
                    found.extend(_callable_effects(f"{type(value).__name__}.{attribute}", member, depth + 1, seen))
    return found


def filled(cell: Any) -> bool:
    """Whether a closure cell holds a value yet."""
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


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
# What a stateful op does, in words (functions: worded in the language current when reported).
_WHAT: dict[str, Any] = {
    "AssignVariableOp": lambda: _("assigns a variable"), "AssignAddVariableOp": lambda: _("adds to a variable"),
    "AssignSubVariableOp": lambda: _("subtracts from a variable"), "VarHandleOp": lambda: _("creates a variable"),
    "PrintV2": lambda: _("prints with tf.print"), "EagerPyFunc": lambda: _("runs Python code in a tf.py_function"),
    "PyFunc": lambda: _("runs Python code in a tf.numpy_function"),
    "PyFuncStateless": lambda: _("runs Python code in a tf.numpy_function"),
    "RngReadAndSkip": lambda: _("draws from a tf.random.Generator"),
    "RandomStandardNormal": lambda: _("draws a random number"), "RandomUniform": lambda: _("draws a random number"),
    "RandomUniformInt": lambda: _("draws a random number"), "TruncatedNormal": lambda: _("draws a random number"),
    "RandomShuffle": lambda: _("shuffles at random"), "Multinomial": lambda: _("draws a random sample"),
}


def _does(op: str) -> str:
    """What a stateful op does, in words."""
    return _WHAT[op]() if op in _WHAT else _("changes state")


def _ran(op: str, inspectable: bool = True) -> str:
    """An op (or a function TensorFlow called by name) that TensorFlow ran, as an effect in words."""
    if not inspectable:
        return _("TensorFlow ran {op}, which tapemagic cannot inspect", op=op)
    return _("TensorFlow ran {op}, which {does}", op=op, does=_does(op))
_OPAQUE = {"EagerPyFunc", "PyFunc", "PyFuncStateless"}
_FUNCTION_ATTRS = ("f", "then_branch", "else_branch", "cond", "body", "branches")


class OpLog:
    """Records the state-changing ops TensorFlow executes while active (eagerly, or inside the
    functions it calls). ``effects`` lists them in words, each op once."""

    def __init__(self) -> None:
        self.effects: list[str] = []
        self.opaque: list[str] = []  # ops running Python that TensorFlow differentiates once, if at all
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
            if name in _OPAQUE:
                self.opaque.append(_ran(name))
            for op, inspectable in _op_effects(name):
                words = _ran(op, inspectable)
                if words not in self.effects:
                    self.effects.append(words)
        return None


# Verdicts by function name: the state-changing ops (op name, and whether tapemagic could inspect it),
# kept as names, not words, so a verdict made in one language is reported in another.
_FUNCTION_VERDICTS: dict[str, tuple[tuple[str, bool], ...]] = {}


def _op_effects(name: str, depth: int = 0) -> tuple[tuple[str, bool], ...]:
    """The state-changing ops that running op (or function) ``name`` runs: (op, inspectable) pairs."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(name)
    if op_def is not None:
        if not op_def.is_stateful or name in _READS:
            return ()
        return ((name, True),)
    return _function_effects_tf(name, depth)


def _function_effects_tf(name: str, depth: int) -> tuple[tuple[str, bool], ...]:
    """A function TensorFlow called by name (a tf.function, a Keras layer compiled as one)."""
    if name in _FUNCTION_VERDICTS:
        return _FUNCTION_VERDICTS[name]
    if depth > 8:
        return ()
    from tensorflow.python.eager import context

    try:
        definition = context.context().get_function_def(name)
    except Exception:  # not a function either: an op we cannot look up counts as an effect
        return ((name, False),)
    found: list[tuple[str, bool]] = []
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
            words = _("the trace calls {op}, which tapemagic cannot inspect", op=node.op)
        elif not op_def.is_stateful or node.op in _READS:
            continue
        else:
            words = _("the trace holds {op}, which {does}", op=node.op, does=_does(node.op))
        if words not in found:
            found.append(words)
    return found


def prints(function: Any) -> bool:
    """Whether a plain Python function (or one it calls by global name) prints: its traced graph
    would print only while being traced, so such a function runs eagerly."""
    seen: set[int] = set()

    def walk(target: Any, depth: int) -> bool:
        target = getattr(target, "python_function", target)
        if not _user_function(target) or id(target) in seen or depth > MAX_DEPTH:
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
