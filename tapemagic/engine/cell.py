"""A cell's code, compiled once, with what tapemagic needs to know about it.

Pure standard library (and tapemagic's message catalog). The code is registered with :mod:`linecache` under its own
file name, so a traceback through it shows the user's lines, as IPython's cells do.
"""
from __future__ import annotations

import ast
import collections
import dataclasses
import itertools
import linecache
import re
from types import CodeType
from typing import Any

from .. import _i18n
from .._i18n import _
from .._spec import SpecError
from .words import Reason

__all__ = ["Cell", "compile_cell"]

_COUNTER = itertools.count(1)
KEEP_LINES_OF = 256  # cells whose source stays in linecache for tracebacks
_RECENT: collections.deque[str] = collections.deque()
KEEP_COMPILED = 64  # cells kept compiled, by text
_COMPILED: collections.OrderedDict[tuple[str, str, str], "Cell"] = collections.OrderedDict()

# Calls whose result the tape cannot differentiate through: used to explain a None gradient.
# (Functions, so each is worded in the language current when the cell is compiled.)
_LEAVES_TF: dict[str, Any] = {
    "numpy": lambda: _("calls .numpy(): the value becomes a NumPy array, a constant to the tape"),
    "item": lambda: _("calls .item(): the value becomes a Python number, a constant to the tape"),
    "assign": lambda: _("assigns a variable: assignment is not differentiable"),
    "assign_add": lambda: _("assigns a variable: assignment is not differentiable"),
    "assign_sub": lambda: _("assigns a variable: assignment is not differentiable"),
    "argmax": lambda: _("uses argmax, whose result is an integer index with no gradient"),
    "argmin": lambda: _("uses argmin, whose result is an integer index with no gradient"),
    "round": lambda: _("rounds, which has no gradient"),
    "stop_gradient": lambda: _("calls stop_gradient, which blocks the gradient on purpose"),
    "numpy_function": lambda: _("calls tf.numpy_function: its NumPy code runs outside the tape, which has no gradient for it"),
}
_NUMPY_MODULES = {"np", "numpy"}


@dataclasses.dataclass(frozen=True)
class Cell:
    """A parsed and compiled cell body.

    Attributes
    ----------
    source : the code as the user wrote it.
    filename : the name its frames carry in tracebacks.
    body : code for every statement but a final expression.
    last : code for the final expression, or None if the cell ends in a statement.
    default_target : the name a final assignment binds, or None.
    stores : every plain name the cell assigns, with the first line that assigns it.
    hints : (line, words) for lines that take values out of TensorFlow's reach; the words are a
        :class:`.words.Reason` (kind "integer_cast" for a cast to an integer type, else "hint").
    """

    source: str
    filename: str
    body: CodeType
    last: CodeType | None
    default_target: str | None
    stores: dict[str, int]
    hints: tuple[tuple[int, str], ...]
    loads: frozenset[str] = frozenset()
    tree: ast.Module | None = dataclasses.field(default=None, repr=False, compare=False)
    last_text: str | None = None
    free: frozenset[str] = frozenset()
    conditions: dict[str, int] = dataclasses.field(default_factory=dict)
    calls: tuple[tuple[int, str], ...] = ()

    def run(self, namespace: dict[str, Any]) -> Any:
        """Execute in ``namespace``; return the final expression's value (or None)."""
        exec(self.body, namespace)  # noqa: S102 - the user's own cell, as IPython runs it
        if self.last is not None:
            return eval(self.last, namespace)  # noqa: S307 - the cell's last expression
        return None

    @property
    def assigned(self) -> frozenset[str]:
        """Every plain name the cell assigns anywhere."""
        return frozenset(self.stores)

    def rebinds(self, name: str) -> int | None:
        """The first line on which the cell assigns ``name``, or None."""
        return self.stores.get(name)


def compile_cell(source: str, prefix: str = "tape-cell") -> Cell:
    """Parse and compile a cell body; a syntax error becomes a SyntaxError as Python shows it.

    The same text compiled again (a cell re-run, a slider's re-run) is the same :class:`Cell`: parsing and
    reading a cell took a third of a warm re-run's own time. A Cell is immutable, and its hints are worded
    in the language current when it was compiled, so the language is part of the key."""
    key = (source, prefix, _i18n.current())
    cell = _COMPILED.get(key)
    if cell is not None:
        _COMPILED.move_to_end(key)
        if cell.filename not in linecache.cache:
            _remember(cell.filename, source)
        return cell
    filename = f"<{prefix}-{next(_COUNTER)}>"
    _remember(filename, source)
    tree = None
    try:
        tree = ast.parse(source, filename=filename, mode="exec")
        cell = _compiled(source, filename, tree)
    except SyntaxError as error:
        raise _explained(error, source, tree) from None
    _COMPILED[key] = cell
    while len(_COMPILED) > KEEP_COMPILED:
        _COMPILED.popitem(last=False)
    return cell


# A line IPython would have run as a magic, shell escape or help: %time x, %%timeit, !ls, y = !ls, x?
_IPYTHON_LINE = re.compile(r"^\s*(?:(?:[\w.,\s\[\]()*]+=\s*)?[%!]|\?|[\w.]+\?\??\s*$)")
_AWAIT_MESSAGES = ("'await' outside function", "'async for' outside async function",
                   "'async with' outside async function",
                   "asynchronous comprehension outside of an asynchronous function")


def _explained(error: SyntaxError, source: str, tree: ast.Module | None) -> SyntaxError:
    """The SyntaxError as Python raised it, plus one sentence when the line is IPython syntax
    (a magic, a shell escape) or a top-level await, which only IPython's own cells accept."""
    lines = source.splitlines()
    lineno = error.lineno
    text = error.text
    if text is None and lineno is not None and 0 < lineno <= len(lines):
        text = lines[lineno - 1] + "\n"
    line = lines[lineno - 1] if lineno is not None and 0 < lineno <= len(lines) else ""
    if error.msg in _AWAIT_MESSAGES and not _inside_function(tree, lineno):
        advice = _("the body of %%tape is plain Python (no %magics, no ! shell lines, no top-level await): "
                   "run the coroutine with asyncio.run(...) in the cell (or await it in a cell of its own)")
    elif _IPYTHON_LINE.match(line):
        advice = _("the body of %%tape is plain Python (no %magics, no ! shell lines, no top-level await): "
                   "run that line in a cell of its own, before or after this one")
    else:
        return error
    details = (error.filename, lineno, error.offset, text, error.end_lineno, error.end_offset)
    return SyntaxError(_("{message}: {advice}", message=error.msg, advice=advice), details)


def _inside_function(tree: ast.Module | None, lineno: int | None) -> bool:
    """Whether line ``lineno`` lies inside a def or lambda of the cell (its await is not top-level)."""
    if tree is None or lineno is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if node.lineno <= lineno <= (node.end_lineno or node.lineno):
                return True
    return False


def _compiled(source: str, filename: str, tree: ast.Module) -> Cell:
    statements = list(tree.body)
    last = None
    last_text = None
    default_target = None
    if statements and isinstance(statements[-1], ast.Expr) and not _shows(statements[-1]):
        last_text = ast.get_source_segment(source, statements[-1].value)
        expression = ast.Expression(statements.pop().value)
        last = compile(expression, filename, "eval")
    else:
        # A cell that ends by printing what it computed differentiates the last name it assigned.
        for statement in reversed(statements):
            if not _shows(statement):
                default_target = _assigned_name(statement)
                break
    body = compile(ast.Module(body=statements, type_ignores=[]), filename, "exec")
    return Cell(
        source=source,
        filename=filename,
        body=body,
        last=last,
        default_target=default_target,
        stores=_stores(tree),
        hints=tuple(_hints(tree)),
        loads=frozenset(node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)),
        tree=tree,
        last_text=last_text,
        free=_free(tree),
        conditions=_only_in_conditions(tree),
        calls=tuple(_calls(tree)),
    )


def _remember(filename: str, source: str) -> None:
    """Register the cell's lines for tracebacks; only the most recent cells are kept."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    _RECENT.append(filename)
    while len(_RECENT) > KEEP_LINES_OF:
        linecache.cache.pop(_RECENT.popleft(), None)


def _shows(statement: ast.stmt) -> bool:
    """A bare print(...) or display(...) call: output, not a value to differentiate."""
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call)
            and isinstance(statement.value.func, ast.Name) and statement.value.func.id in ("print", "display"))


def _assigned_name(statement: ast.stmt) -> str | None:
    if isinstance(statement, ast.Assign):
        target = statement.targets[0]
        if isinstance(target, ast.Name):
            return target.id
        raise SpecError(_(
            "the cell ends in an assignment to several names: say which one to differentiate, "
            "e.g. %%tape x -t y"
        ))
    if isinstance(statement, (ast.AugAssign, ast.AnnAssign)) and isinstance(statement.target, ast.Name):
        return statement.target.id
    return None


def _stores(tree: ast.AST) -> dict[str, int]:
    first: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            first[node.id] = min(node.lineno, first.get(node.id, node.lineno))
    return first


def _hints(tree: ast.AST) -> list[tuple[int, Reason]]:
    found: list[tuple[int, Reason]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Attribute):
            owner = function.value
            if isinstance(owner, ast.Name) and owner.id in _NUMPY_MODULES:
                found.append((node.lineno, Reason(_("calls {function}(): NumPy runs outside the tape",
                                                    function=f"{owner.id}.{function.attr}"), "hint")))
            elif function.attr in _LEAVES_TF:
                found.append((node.lineno, Reason(_LEAVES_TF[function.attr](), "hint")))
            elif function.attr == "cast" and _casts_to_integer(node):
                found.append((node.lineno, Reason(_("casts to an integer type, which has no gradient"), "integer_cast")))
        elif isinstance(function, ast.Name) and function.id in ("float", "int"):
            found.append((node.lineno, Reason(_("calls {function}(): the value becomes a Python number",
                                                function=function.id), "hint")))
    return sorted(set(found))


def _casts_to_integer(call: ast.Call) -> bool:
    arguments = list(call.args[1:]) + [keyword.value for keyword in call.keywords if keyword.arg == "dtype"]
    for argument in arguments:
        text = ast.unparse(argument)
        if "int" in text or "bool" in text:
            return True
    return False


def _calls(tree: ast.AST) -> list[tuple[int, str]]:
    """Dotted names the cell calls (``f``, ``obj.method``, ``layer``) or reads (``obj.attr``, which
    may be a property): code to look into."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            text = ast.unparse(node)
            if all(part.isidentifier() for part in text.split(".")):
                found.append((node.lineno, text))
        if isinstance(node, ast.Call):
            try:
                text = ast.unparse(node.func)
            except Exception:  # pragma: no cover - unparse handles every expression ast makes
                continue
            if all(part.isidentifier() for part in text.split(".")):
                found.append((node.lineno, text))
    return sorted(set(found))


def _free(tree: ast.AST) -> frozenset[str]:
    """Names the cell may read before it assigns them: the values it captures from the namespace.
    Only the cell's own top-level scope binds: a comprehension's, lambda's or inner function's
    names are their own, and a global of the same name read elsewhere still counts."""
    first_store: dict[str, tuple[int, int]] = {}
    loads: dict[str, tuple[int, int]] = {}

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Name):
            where = (node.lineno, node.col_offset)
            if isinstance(node.ctx, ast.Store):
                if top and (node.id not in first_store or where < first_store[node.id]):
                    first_store[node.id] = where
            elif node.id not in loads or where < loads[node.id]:
                loads[node.id] = where
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            where = (node.lineno, -1)  # x += 1 reads x first
            if node.target.id not in loads or where < loads[node.target.id]:
                loads[node.target.id] = where
        inner = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
                                  ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp))
        for child in ast.iter_child_nodes(node):
            visit(child, top and not inner)

    visit(tree, True)
    return frozenset(name for name, where in loads.items()
                     if name not in first_store or where[0] <= first_store[name][0])


def _only_in_conditions(tree: ast.AST) -> dict[str, int]:
    """Names read only in the test of an if, while or conditional expression, with the test's line."""
    in_tests: dict[str, int] = {}
    tests = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)):
            for part in ast.walk(node.test):
                tests.add(id(part))
                if isinstance(part, ast.Name) and isinstance(part.ctx, ast.Load):
                    in_tests.setdefault(part.id, node.test.lineno)
    elsewhere = {node.id for node in ast.walk(tree)
                 if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and id(node) not in tests}
    return {name: line for name, line in in_tests.items() if name not in elsewhere}
