"""The Python API: the same engine as %%tape, without IPython."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import types
from typing import Any, Callable, Mapping, Sequence

from . import _i18n
from ._i18n import _
from ._result import TapeResult
from ._setting import language_for
from ._spec import SpecError, TapeSpec
from .engine import Engine
from .engine.body import CellBody, FunctionBody, ReplayLeftTrace, quiet_replay
from .engine.cell import compile_cell
from .engine.sources import from_values, resolve

__all__ = ["tape", "new_engine", "run_code", "default_engine"]

_DEFAULT: Engine | None = None


def new_engine() -> Engine:
    return Engine()


def default_engine() -> Engine:
    """The engine :func:`tape` uses when none is given, so a loop reuses its traces."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Engine()
    return _DEFAULT


def check_out_name(spec: TapeSpec, names: tuple[str, ...], namespace: dict[str, Any]) -> None:
    """``-o NAME`` must not write the result over a source, a target of the cell, or a module."""
    if spec.out is None:
        return
    if isinstance(namespace.get(spec.out), types.ModuleType):
        raise SpecError(_("-o {name} would write the result over the module {name}: store it under another "
                          "name, e.g. -o r", name=spec.out))
    heads = {source.split(".")[0] for source in spec.sources}
    if spec.out in heads:
        raise SpecError(_("-o {name} would write the result over the source {name}: store it under another "
                          "name, e.g. -o r", name=spec.out))
    if spec.out in names:
        raise SpecError(_("-o {name} would write the result over the target {name} that the cell assigns: "
                          "store it under another name, e.g. -o r", name=spec.out))


def run_code(engine: Engine, spec: TapeSpec, code: str, namespace: dict[str, Any], prefix: str = "tape") -> TapeResult:
    """Compile ``code`` and differentiate it in ``namespace`` (what the magic does)."""
    cell = compile_cell(code, prefix=prefix)
    body = CellBody(cell, namespace, spec.targets)
    names = body.target_names()  # a cell with no target is rejected before anything runs
    check_out_name(spec, names, namespace)
    sources = resolve(spec.sources, namespace)
    result = engine.run(spec, body, sources, namespace)
    if spec.explore and not result.replay_effects:
        result = dataclasses.replace(result, rerun=_rerun(engine, spec, cell.source, body.before(), result))
    return result


def _rerun(engine: Engine, spec: TapeSpec, code: str, before: dict[str, Any], result: TapeResult) -> Callable[[dict[str, float]], TapeResult]:
    """For --explore: run the cell at other source values, on a copy of the namespace as it was
    before the cell. Only made when the engine found that a second run changes no state; the
    rerun's printed output is swallowed. The cell is compiled once here."""
    language = _i18n.current()  # a slider's re-run speaks the language of the result it redraws
    quiet = dataclasses.replace(spec, explore=False, ranges=(), out=None, display="none", check=False, forward=False, hvp=None)
    dtypes = {source.name: source.value.dtype for source in result.sources}
    cell = compile_cell(code, prefix="tape-explore")

    stopped: list[ReplayLeftTrace] = []

    def rerun(values: dict[str, float]) -> TapeResult:
        import tensorflow as tf

        if stopped:  # one slider run changed state after all (code tapemagic could not read): no more runs
            raise stopped[0]
        copy = dict(before)
        for name, value in values.items():
            copy[name] = tf.constant(value, dtype=dtypes[name])
        body = CellBody(cell, copy, quiet.targets)
        try:
            with quiet_replay(), _i18n.language(language):
                return engine.run(quiet, body, resolve(quiet.sources, copy), copy)
        except ReplayLeftTrace as error:
            stopped.append(error)
            raise

    return rerun


def _speaking(function: Callable[..., TapeResult]) -> Callable[..., TapeResult]:
    """Run ``function`` (and render its result) in the language its ``language=`` argument asks for (None: an
    enclosing ``with tapemagic._i18n.language(...)`` block's, else ``%config TapeMagics.language``, else "auto")."""
    @functools.wraps(function)
    def speaking(*args: Any, language: str | None = None, **kwargs: Any) -> TapeResult:
        try:
            code = language_for(language)
        except ValueError as error:
            raise SpecError(str(error)) from None
        with _i18n.language(code):
            result = function(*args, language=code, **kwargs)
        # Made in that language already; a copy only if not (-o NAME stores this very object).
        return result if result.language == code else result.with_display(language=code)

    return speaking


@_speaking
def tape(body: str | Callable[..., Any], sources: Sequence[Any] | Mapping[str, Any] | None = None, *,
         namespace: dict[str, Any] | None = None, targets: Sequence[str] = (), order: int = 1,
         jacobian: bool = False, hessian: bool = False, persistent: bool = False,
         auto_watch: bool = True, watch: bool = True, forward: bool = False, check: bool = False,
         eps: float | None = None, hvp: Any = None, eager: bool = False, display: str = "auto",
         explore: bool = False, ranges: Sequence[tuple[str, float, float]] = (), out: str | None = None,
         engine: Engine | None = None, language: str | None = None, graph: bool = False) -> TapeResult:
    """Differentiate code or a function, as ``%%tape`` does.

    Parameters
    ----------
    body
        Code (a string, run once in ``namespace``) or a callable of the sources.
    sources
        For code: names or dotted paths in ``namespace``. For a callable: the values
        to call it with, a list (named after its parameters) or a dict by name.
    namespace
        Where code runs and names are looked up (default: a new empty dict).
    targets, order, jacobian, hessian, persistent, auto_watch, watch, forward, check, eps, eager, display, explore, ranges, graph
        As the magic's options of the same names (``watch=False`` is ``--no-watch``;
        ``ranges`` is a list of ``(name, low, high)``, as ``--range name=low:high``).
    hvp
        The vector for a Hessian-vector product (a tensor for a callable; a name for code).
    out
        For code: also store the result in ``namespace`` under this name (``-o``).
    engine
        An :class:`Engine` to use; by default one shared engine, so traces are reused across calls.
    language
        The language of the result's words and of error messages: "en", "zh", or "auto" (the locale:
        LC_ALL, LC_MESSAGES, LANG); by default the language of an enclosing
        ``with tapemagic._i18n.language(...)`` block, else ``%config TapeMagics.language`` where the
        extension is loaded, else "auto".

    Returns
    -------
    TapeResult

    Examples
    --------
    >>> r = tape(lambda x, y: x**2 * y + y + 2, [3.0, 4.0], order=2)
    >>> float(r.gradients["x"]), float(r.derivatives[2]["y"])
    (24.0, 0.0)
    """
    engine = engine or default_engine()
    common = dict(targets=tuple(targets), order=order, jacobian=jacobian, hessian=hessian, persistent=persistent,
                  auto_watch=auto_watch, watch_sources=watch, forward=forward, check=check, eps=eps,
                  eager=eager, display=display, explore=explore, ranges=tuple(tuple(r) for r in ranges),
                  graph=graph)
    if isinstance(body, str):
        names = tuple(sources or ())
        if any(not isinstance(name, str) for name in names):
            raise SpecError(_("with code, sources are names in the namespace: tape('y = x**2', ['x'], namespace=ns)"))
        spec = TapeSpec(sources=names, hvp=hvp, out=out, **common)
        namespace = {} if namespace is None else namespace
        result = run_code(engine, spec, body, namespace).with_display(display=display)
        if out:
            namespace[out] = result
        return result
    if not callable(body):
        raise SpecError(_("tape() takes code (a string) or a callable, not a {kind}", kind=type(body).__name__))
    if explore or out:
        raise SpecError(_("explore= and out= work with code (a string) run in a namespace; call the function "
                          "yourself at other values, and keep the returned result"))
    names, values = _named(body, sources)
    spec = TapeSpec(sources=tuple(names), **common)
    result = engine.run(spec, FunctionBody(body, spec.targets), from_values(names, values), None, hvp_vector=hvp)
    return result.with_display(display=display)


def _named(function: Callable[..., Any], sources: Any) -> tuple[list[str], list[Any]]:
    if sources is None:
        raise SpecError(_("a callable needs its source values: tape(f, [3.0, 4.0]) or tape(f, {'x': 3.0})"))
    if isinstance(sources, Mapping):
        return [str(name) for name in sources], list(sources.values())
    values = list(sources)
    parameters = _positional_parameters(function)
    names = parameters[: len(values)]
    names += [f"x{i}" for i in range(len(names), len(values))]
    return names, values


def _positional_parameters(function: Callable[..., Any]) -> list[str]:
    code = getattr(function, "__code__", None)
    if isinstance(function, types.FunctionType) and code is not None and not hasattr(function, "__wrapped__"):
        # What inspect.signature would say, read straight from the code object: a traced
        # Hessian is called in about a millisecond, and signature() cost a tenth of that.
        return list(code.co_varnames[: code.co_argcount])
    try:
        return [p.name for p in inspect.signature(function).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []
