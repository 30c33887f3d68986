"""The engine: run a body once, for real, and collect every derivative asked for.

Knows nothing of IPython or of the renderers: the magic and the Python API hand it a body
(a cell or a function, :mod:`.body`), a :class:`TapeSpec` and the sources, and get a
:class:`TapeResult`. The rule it keeps: the body runs once, as written. Every derivative
comes from the tapes of that run, unless a second run provably leaves no trace
(:mod:`.effects`); then a compiled trace may answer faster (:mod:`.trace`), and forward mode
and --check may run it again (:mod:`.methods`). The notes say which path ran and why.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Iterator

import tensorflow as tf

from .._i18n import _
from .._result import SourceInfo, TapeResult, TargetResult, WatchedInfo
from .._spec import SpecError, TapeSpec
from . import effects as effects_, flow, guard, methods, why, words
from . import graph as graph_
from .derive import Derivatives, Recorder, untaped, widest
from .sources import Source, as_variable, concrete_shape, holds_sparse, leaves
from .trace import Reuse, TraceCache, disagreement_of, first_line, wanted

__all__ = ["Engine", "needs_replays"]


def needs_replays(spec: TapeSpec) -> list[str]:
    """The options that only work by running the code again."""
    return [option for option, on in (("--forward", spec.forward), ("--check", spec.check), ("--explore", spec.explore)) if on]


@contextlib.contextmanager
def _tensorflow_warnings(notes: list[str]) -> Iterator[None]:
    """Turn TensorFlow's Python warnings into notes on the result instead of stderr."""
    logger = logging.getLogger("tensorflow")

    def keep(record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            message = record.getMessage().strip()
            if "retracing" in message:
                return False  # TensorFlow's own pfor functions retrace: nothing the user did or can do
            first = (message.splitlines() or [""])[0][:240]  # not pfor's dumps of whole ops
            said = _("TensorFlow said: {message}", message=first)
            if first and said not in notes:
                notes.append(said)
            return False
        return True

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


class Engine:
    """Differentiates bodies; one per shell (the magic) or a shared default (the Python API)."""

    def __init__(self, trace_first_run: bool = False) -> None:
        """``trace_first_run``: trace a cell or function on its first run too. By default a first
        run takes its derivatives from the real run's tapes, which answer a one-off cell sooner than
        tracing and compiling would (benchmarks/heldout.py), and the trace is made when the same
        code runs again (or at once for --explore, whose sliders re-run it)."""
        self.traces = TraceCache()
        self.trace_first_run = trace_first_run

    def run(self, spec: TapeSpec, body: Any, sources: list[Source], namespace: dict[str, Any] | None = None,
            hvp_vector: Any = None) -> TapeResult:
        """Differentiate ``body`` as ``spec`` asks and build the result.

        Options that need a second run (--forward, --check, --explore) are refused with a
        SpecError before anything runs when the code shows that a second run would change
        state; when only the run itself shows it (TensorFlow assigned a variable, drew a
        random number), they are skipped and the notes say why. On any exception the
        conversions of sources are undone and every tape is closed, then it propagates.
        """
        try:
            return self._run(spec, body, sources, namespace, hvp_vector)
        finally:
            # Numbers and arrays named as sources ran as tf.constants: afterwards (or after a refusal) the
            # user's own values are back.
            _undo_conversions(sources)

    def _run(self, spec: TapeSpec, body: Any, sources: list[Source], namespace: dict[str, Any] | None,
             hvp_vector: Any, carried: list[str] | None = None) -> TapeResult:
        """``carried``: the notes of a reuse whose trace disagreed; ``body`` is then replayed under the tapes
        (:class:`_Replayed`), not traced."""
        body.check_targets()
        names = body.target_names()
        notes: list[str] = carried if carried is not None else [source.note for source in sources if source.note]
        replays = needs_replays(spec)
        tracing = wanted(spec, sources) and carried is None
        if tracing and spec.graph:  # the graph is read from the ops of the real run and its tapes
            tracing = False
            notes.append(_("eager tapes: --graph draws the operations TensorFlow ran for the cell, with adjoints from the "
                           "real run's tapes, so the cell is not traced"))
        if body.kind == "function" and tracing and not replays and spec.hvp is None and sources:
            _check_sizes(spec, sources)
            with _tensorflow_warnings(notes):
                derived = self.traces.function_reused(spec, body, sources, notes)
            if derived is not None:
                self.traces.saw(body)
                return self._function_result(spec, body, sources, derived, notes)
        if tracing and not replays and not spec.persistent and spec.hvp is None:
            reuse = self.traces.reusable(spec, body, sources)
            if reuse is not None:
                _check_sizes(spec, sources)
                self.traces.saw(body)
                return self._reused(spec, body, sources, namespace, names, notes, reuse)
        static = body.effects() if (replays or tracing) else []
        first_sight = tracing and not (self.trace_first_run or spec.explore or self.traces.seen(body))
        self.traces.saw(body)
        if first_sight:
            tracing = False
            if not static:  # code that changes state is never traced: no trace to promise
                notes.append(_("eager tapes: the first run of this code, so the derivatives come from the real run's "
                               "tapes; a compiled trace pays for itself only when code runs again, so it is made if this "
                               "runs again"))
        if static and replays:
            raise SpecError(_(
                "{options} would run the cell again, and a second run would change state: {effects}. Run it without "
                "{options}, or move what changes state into another cell (the derivatives themselves need only the "
                "one run).", options=words.options(replays), effects=words.joined(static[:3])))
        _check_sizes(spec, sources)
        tangents = methods.tangents_for(spec, body, sources, namespace, hvp_vector)
        if (body.kind == "function" and tracing and not static and tangents is None and not replays and sources
                and not effects_.prints(body.function)):
            traced = self._function_traced(spec, body, sources, notes)
            if traced is not None:
                return traced
        log = effects_.OpLog()
        with _tensorflow_warnings(notes), Recorder(spec, sources, tangents) as recorder:
            with log.active(), graph_.recording(spec.graph, namespace, spec.auto_watch) as ops_run:
                recorder.run(lambda: body.run(sources))
            naming = _VariableNames(namespace)
            recorder.first_order(naming, naming.frozen)
            seen = static + log.effects
            refused = _jacobians_refused(spec, recorder) if spec.jacobian else {}
            # a target the trace could not differentiate either: the eager result says why, once
            tracing = tracing and not refused and not any(holds_sparse(value) for value in recorder.values.values())
            derived = None
            if tracing and seen:
                notes.append(_("eager tapes: not traced, because tracing runs the cell's code again and a second run "
                               "could change state ({effects}); the derivatives come from the tapes of the one real run",
                               effects=words.joined(seen[:3])))
            elif tracing:
                with recorder.paused():
                    derived = self.traces.derive(spec, body, recorder.sources, recorder, notes)
            path = "eager" if derived is None else "traced"
            if derived is None:
                derived = recorder.rest(why.opaque(log.opaque), skip_jacobian=set(refused))
            extra, method_notes, passes, caught = methods.replayed(spec, body, recorder.sources, recorder.first, names,
                                                                   seen)
            seen = seen + [effect for effect in caught if effect not in seen]  # a replay was caught: no further run
        notes.extend(method_notes)
        if spec.explore and seen:
            notes.append(_("--explore has no sliders: each slider move runs the cell again, and a second run "
                           "would change state ({effects})", effects=words.joined(seen[:3])))
        if recorder.hvp is not None:
            notes.append(_("--hvp: reverse-over-reverse, the gradient of ∇f·v taken from the tapes of the one real run"))
        result = self._result(spec, body, names, recorder, derived, extra, notes, namespace, path, passes, seen, naming,
                              log.opaque, refused)
        if spec.graph:  # after every tape has stopped: the graph's own reverse pass records nothing
            graph, graph_notes, graph_passes = graph_.build(
                ops_run, target_name=names[0], target=recorder.values.get(names[0]), tape=recorder.stack.tapes[0],
                sources=recorder.sources, namespace=namespace, naming=naming, watched=recorder.watched,
                reasons=dict(result.targets[0].reasons), body=body, forward=spec.forward, effects=seen, targets=names,
                gradients=dict(result.targets[0].derivatives.get(1, {})))
            result = dataclasses.replace(result, graph=graph, notes=tuple(dict.fromkeys((*result.notes, *graph_notes))),
                                         passes={**result.passes, **graph_passes})
        return result

    def _reused(self, spec: TapeSpec, body: Any, sources: list[Source], namespace: dict[str, Any] | None,
                names: tuple[str, ...], notes: list[str], reuse: Reuse) -> TapeResult:
        """A cell whose verified trace is cached under the same key: the cell runs once, as written, in the
        user's namespace, and its derivatives come from the trace, whose value must agree with the run's.
        Where the key holds something without its content (a Keras layer's Python attributes, a library
        module such as os, whose environment and files it cannot compare: ``reuse.blind``), the run is made
        under one tape and the trace's gradient must agree too; else the run needs no tape, since everything
        the cell reads from outside was compared by content. If the trace disagrees or fails, it is dropped
        and the derivatives come from eager tapes on a replay of the cell on a copy of the namespace as it
        was (a trace is made only for code whose second run leaves no trace)."""
        log = effects_.OpLog()
        checked = bool(reuse.blind)
        if checked:
            with _tensorflow_warnings(notes), Recorder(dataclasses.replace(spec, order=1, hessian=False), sources) as recorder:
                with log.active():
                    recorder.run(lambda: body.run(sources))
                naming = _VariableNames(namespace)
                recorder.first_order(naming, naming.frozen)
        else:
            recorder = Recorder(spec, sources)  # never entered: no tape records the run
            with _tensorflow_warnings(notes), log.active(), untaped() as manual:
                recorder.values = body.run(sources)
            recorder.watched, recorder.manual = list(reuse.watched), manual
            naming = _VariableNames(namespace)
        problem = None
        try:
            with _tensorflow_warnings(notes):
                out = self.traces.call(reuse, sources)
        except Exception as error:  # noqa: BLE001 - the trace ran out of memory, or XLA failed at run time
            problem = first_line(error)
        else:
            problem = disagreement_of(out, recorder.values, recorder.first)
        if problem is None:
            if checked:
                notes.append(_("traced: the cell ran once, as written, under one tape for its value and gradient; the "
                               "other derivatives came from its cached trace compiled by XLA, whose value and gradient "
                               "agreed with this run (nothing the cell reads has changed, but for the sources and Python "
                               "floats, which it takes as arguments)") if reuse.entry.xla else
                             _("traced: the cell ran once, as written, under one tape for its value and gradient; the "
                               "other derivatives came from its cached trace, whose value and gradient agreed with this "
                               "run (nothing the cell reads has changed, but for the sources and Python floats, which it "
                               "takes as arguments)"))
            else:
                notes.append(_("traced: the cell ran once, as written, without tapes; its derivatives came from its cached "
                               "trace compiled by XLA, whose value agreed with this run (everything the cell reads from "
                               "outside was compared by content and has not changed, but for the sources and Python "
                               "floats, which it takes as arguments)") if reuse.entry.xla else
                             _("traced: the cell ran once, as written, without tapes; its derivatives came from its cached "
                               "trace, whose value agreed with this run (everything the cell reads from outside was "
                               "compared by content and has not changed, but for the sources and Python floats, which it "
                               "takes as arguments)"))
            if reuse.layout is not None:
                notes.append(_("traced: the {count} sources went into the trace as one vector, so the Hessian is one pass "
                               "over all of them", count=len(sources)) if spec.hessian else
                             _("traced: the {count} sources went into the trace as one vector, so the Jacobian is one pass "
                               "over all of them", count=len(sources)))
            derived = {name: Derivatives(
                value=value, orders={**out["derivatives"][name], **({1: recorder.first[name]} if checked else {})},
                jacobian=out["jacobians"].get(name), hessian=out["hessians"].get(name), missing={})
                for name, value in recorder.values.items()}
            return self._result(spec, body, names, recorder, derived, {}, notes, namespace, "traced", {}, log.effects,
                                naming, log.opaque)
        self.traces.forget(reuse)
        if log.effects:  # cannot happen while the key holds (the trace holds no state-changing op); no replay then
            raise RuntimeError(_("the cell changed state ({effects}) and its cached trace disagreed with it "
                                 "({disagreement}); run it again: its trace has been dropped",
                                 effects=words.joined(log.effects[:3]), disagreement=problem))
        notes.append(_("eager tapes: the cached trace could not be used ({problem}), so it was dropped; the derivatives "
                       "come from eager tapes on a replay of the cell on a copy of the namespace as it was before it (the "
                       "cell changes no state, so the replay left no trace)", problem=problem))
        result = self._run(spec, _Replayed(body), sources, namespace, None, carried=notes)
        differs = disagreement_of({"values": {t.name: t.value for t in result.targets}}, recorder.values, {})
        if differs:  # the same code, on the same values, gave another value: something outside the namespace changed
            result = dataclasses.replace(result, notes=(*result.notes, _(
                "the replay's value differs from this run's ({disagreement}): the cell reads something that changed "
                "between the two (a clock, a file, another process), so the derivatives shown are the replay's",
                disagreement=differs)))
        return result

    def _function_traced(self, spec: TapeSpec, body: Any, sources: list[Source], notes: list[str]) -> TapeResult | None:
        """A function that provably changes nothing runs once, as its traced graph."""
        with _tensorflow_warnings(notes):
            derived = self.traces.function_run(spec, body, sources, notes)
        if derived is None:
            return None
        return self._function_result(spec, body, sources, derived, notes)

    def _function_result(self, spec: TapeSpec, body: Any, sources: list[Source], derived: dict[str, Derivatives],
                         notes: list[str]) -> TapeResult:
        variables = [s.value for s in sources if s.is_variable]
        recorder = Recorder(spec, sources)
        recorder.values = {name: d.value for name, d in derived.items()}
        recorder.watched = variables
        return self._result(spec, body, body.target_names(), recorder, derived, {}, notes, None, "traced", {}, [],
                            _VariableNames(None))

    def _result(self, spec: TapeSpec, body: Any, names: tuple[str, ...], recorder: Recorder,
                derived: dict[str, Derivatives], extra: dict[str, dict[str, Any]], notes: list[str],
                namespace: dict[str, Any] | None, path: str, passes: dict[str, int], seen: list[str],
                naming: "_VariableNames", opaque: list[str] = (), refused: dict[str, str] | None = None) -> TapeResult:
        sources = recorder.sources
        watched_ids = {id(variable) for variable in recorder.watched}
        cell = getattr(body, "cell", None)

        def watched(source: Source) -> bool:
            return spec.watch_sources or id(source.value) in watched_ids or id(source.value) in recorder.manual

        targets = []
        for name in names:
            record = derived[name]
            unknown = (why.hessian_unknown(record, sources, cell, opaque, watched)
                       if spec.hessian and record.hessian is not None else None)
            if unknown:
                record = dataclasses.replace(record, hessian=None, missing={**record.missing, "*": unknown})
            first = record.orders.get(1, {})
            reasons = {}
            for source in sources:
                if first.get(source.name) is not None:
                    continue
                if source.name in record.missing:
                    reasons[source.name] = record.missing[source.name]
                else:
                    reasons[source.name] = why.explain(spec, name, record.value, source, cell, namespace, watched=watched(source))
            for source_name, reason in record.missing.items():
                if source_name == "*" or first.get(source_name) is not None:
                    notes.append(why.missing_note(name, reason))
            unavailable = why.unavailable(spec, record, reasons)
            if refused and name in refused:
                unavailable["jacobian"] = refused[name]
            targets.append(TargetResult(
                name=name, value=record.value, derivatives=record.orders, jacobian=record.jacobian,
                hessian=record.hessian, reasons=reasons,
                forward=extra.get("forward", {}).get(name), check=extra.get("check", {}).get(name),
                hvp=(recorder.hvp or {}).get(name) if recorder.hvp is not None else None,
                unavailable=unavailable,
            ))
        if spec.hessian and len({s.value.dtype for s in recorder.float_sources}) > 1:
            notes.append(_("the Hessian is in {dtype}: the sources mix {dtypes}", dtype=widest(recorder.float_sources).name,
                           dtypes=", ".join(sorted({s.value.dtype.name for s in recorder.float_sources}))))
        notes.extend(why.rebinding_notes(sources, cell, namespace))
        notes.extend(why.frozen_notes(sources, naming.frozen))
        return TapeResult(
            spec=spec,
            targets=tuple(targets),
            sources=tuple(SourceInfo.of(source, concrete_shape(source.value)) for source in sources),
            watched=tuple(WatchedInfo.of(variable, naming(variable, sources), concrete_shape(variable))
                          for variable in recorder.watched),
            notes=tuple(dict.fromkeys(notes)),
            tape=recorder.stack.tapes[0] if spec.persistent else None,
            path=path,
            passes={"reverse": 1, **passes},
            replay_effects=tuple(seen),
            models=flow.owners(namespace, [source.value for source in sources]),
        )


class _Replayed:
    """A cell body whose real run has happened: its run for the tapes is a replay on a copy of the namespace as
    it was before the real run, and it is not traced again."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._body, name)

    def run(self, sources: Any) -> dict[str, Any]:
        return self._body.replay(sources)

    def key(self) -> Any:
        return ("replayed", self._body.key())


class _VariableNames:
    """Names for variables: the user's name in the namespace (``x``, ``layer.kernel``), a Keras
    variable's path, or TensorFlow's own name; and which variables Keras has frozen."""

    def __init__(self, namespace: dict[str, Any] | None) -> None:
        self.names: dict[int, str] = {}
        self.frozen: set[int] = set()
        for name, value in (namespace or {}).items():
            if name.startswith("_"):
                continue
            if isinstance(value, tf.Variable):
                self.names.setdefault(id(value), name)
            elif as_variable(value) is not None:
                self.names.setdefault(id(as_variable(value)), name)
            elif type(value).__module__.startswith("keras") and hasattr(value, "variables"):
                self._keras(name, value)

    def _keras(self, name: str, owner: Any) -> None:
        try:
            variables = list(owner.variables)
        except Exception:  # a model that is not built yet, or raises on inspection
            return
        for variable in variables:
            inner = as_variable(variable)
            if inner is None:
                continue
            leaf = str(getattr(variable, "path", variable.name)).rsplit("/", 1)[-1]
            direct = getattr(owner, leaf, None) is variable if leaf.isidentifier() else False
            self.names.setdefault(id(inner), f"{name}.{leaf}" if direct else str(getattr(variable, "path", variable.name)))
            if not getattr(variable, "trainable", True):
                self.frozen.add(id(inner))

    def __call__(self, variable: Any, sources: Any = ()) -> str:
        for source in sources:
            if source.value is variable:
                return source.name
        return self.names.get(id(variable), variable.name.split(":")[0])


def _check_sizes(spec: TapeSpec, sources: list[Source]) -> None:
    """A Hessian or -n that cannot fit is refused before anything runs: a kernel must not die."""
    if spec.hessian:
        guard.check_sources(sources)
    if spec.order > 1:
        floats = [s for s in sources if s.differentiable]
        if floats:
            guard.check_order(sum(int(s.value.shape.num_elements() or 0) for s in floats),
                              max(int(s.value.dtype.size) for s in floats), spec.order)


def _jacobians_refused(spec: TapeSpec, recorder: Recorder) -> dict[str, str]:
    """Targets whose Jacobian is not computed, with the reason shown beside the None Jacobian: a sparse or
    ragged target, which tape.jacobian does not take, or one whose Jacobian would not fit in memory."""
    refused = {name: reason for name, value in recorder.values.items() if (reason := why.no_jacobian(name, value))}
    dense = {name: value for name, value in recorder.values.items() if name not in refused}
    return {**_jacobians_too_big(dense, recorder.float_sources), **refused}


def _jacobians_too_big(values: dict[str, Any], floats: list[Source]) -> dict[str, str]:
    """Targets whose Jacobian would not fit in memory, with the reason (known only after the run,
    so it is not computed and shows None with that reason; the rest of the result stays)."""
    if not floats:
        return {}
    elements = sum(int(s.value.shape.num_elements() or 0) for s in floats)
    itemsize = max(int(s.value.dtype.size) for s in floats)
    refused = {}
    for name, value in values.items():
        parts = leaves(value)
        if parts is None:
            continue
        size = sum(int(tf.size(part)) for part in parts)
        reason = guard.check_jacobian(size, elements, itemsize, target=name, source=floats[0].name if len(floats) == 1 else None)
        if reason:
            refused[name] = reason
    return refused


def _undo_conversions(sources: list[Source]) -> None:
    """Python numbers and arrays named as sources ran as tf.constants; afterwards the user's value
    is back (unless the cell itself bound the name to something else)."""
    for source in sources:
        if source.undo is not None:
            source.undo()
