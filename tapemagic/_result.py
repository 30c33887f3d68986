"""Frozen results that hold the numbers and render themselves in any frontend."""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Iterator, Mapping, Sequence, overload

from . import _i18n
from ._i18n import _
from ._spec import TapeSpec

__all__ = ["TapeResult", "TargetResult", "SourceInfo", "WatchedInfo", "CheckReport", "LayerRow", "LayerTable"]


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """How the tape's gradient compares with central finite differences for one source."""

    target: str
    source: str
    ok: bool
    max_abs: float
    max_rel: float
    step: float
    tolerance: float
    checked: int
    elements: int
    worst: tuple[int, ...] = ()
    tape_value: float = 0.0
    difference_value: float = 0.0
    problem: str | None = None
    tape_none: bool = False  # the tape's gradient was None (compared as zeros); the report says None, not 0

    def __str__(self) -> str:
        from .render.numbers import scalar

        label = f"∂{self.target}/∂{self.source}"
        if self.problem:
            return _("check {label}: not checked ({problem})", label=label, problem=self.problem)
        numbers = dict(label=label, abs=scalar(self.max_abs, 2), rel=scalar(self.max_rel, 2), step=scalar(self.step, 2))
        if self.checked == self.elements:
            how = _("central differences, step {step}, 2 runs per element", step=numbers["step"])
        else:
            how = _("central differences, step {step}, 2 runs per element, {checked} of {elements} elements sampled",
                    step=numbers["step"], checked=self.checked, elements=self.elements)
        if self.ok:
            return _("check {label}: ok, max abs error {abs}, max rel error {rel} ({how})", how=how, **numbers)
        tape = _("None (compared as 0)") if self.tape_none else scalar(self.tape_value, 6)
        return _("check {label}: MISMATCH, max abs error {abs}, max rel error {rel} at element {element}: the tape "
                 "says {tape}, finite differences say {differences} ({how}; tolerance {tolerance})", how=how,
                 element=self.worst, tape=tape, differences=scalar(self.difference_value, 6),
                 tolerance=scalar(self.tolerance, 2), **numbers)

    def __contains__(self, word: str) -> bool:  # so tests and users can write "ok" in report
        return word in str(self)


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """A source as the result shows it: name, value (the tensor or variable), shape, dtype."""

    name: str
    value: Any
    kind: str
    shape: tuple[int, ...]
    dtype: str
    note: str | None = None

    @classmethod
    def of(cls, source: Any, shape: tuple[int, ...]) -> "SourceInfo":
        value = source.value
        kind = ("keras.Variable" if getattr(source, "keras", False) else "Variable") if source.is_variable else (
            "converted" if source.note else "Tensor")
        return cls(source.name, value, kind, shape, value.dtype.name, source.note)


@dataclasses.dataclass(frozen=True)
class WatchedInfo:
    """A variable the tape watched."""

    name: str
    variable: Any
    shape: tuple[int, ...]
    dtype: str
    trainable: bool

    @classmethod
    def of(cls, variable: Any, name: str, shape: tuple[int, ...]) -> "WatchedInfo":
        return cls(name, variable, shape, variable.dtype.name, bool(variable.trainable))


@dataclasses.dataclass(frozen=True)
class TargetResult:
    """Everything computed for one target: value, derivatives of each order, Jacobian, Hessian."""

    name: str
    value: Any
    derivatives: Mapping[int, Mapping[str, Any]]
    jacobian: Mapping[str, Any] | None = None
    hessian: Any = None
    reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    forward: Mapping[str, Any] | None = None
    check: Mapping[str, Any] | None = None
    hvp: Mapping[str, Any] | None = None
    unavailable: Mapping[str, str] = dataclasses.field(default_factory=dict)  # "jacobian"/"hessian" -> why None

    @property
    def gradients(self) -> Mapping[str, Any]:
        """First derivatives by source name (a tensor, or None: see ``why``)."""
        return _by_source(self.derivatives.get(1, {}), self.reasons)


def _by_source(values: Mapping[str, Any], reasons: Mapping[str, str]) -> dict[str, Any]:
    names = list(values) + [name for name in reasons if name not in values]
    return {name: values.get(name) for name in names}


LAYER_COLUMNS = ("layer", "kind", "variable", "shape", "norm", "max_abs", "zeros", "relative", "flag", "source", "reason")


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One variable of one layer and its gradient.

    ``norm`` is the gradient's L2 norm, ``max_abs`` its largest |g|, ``zeros`` the share
    of its elements that are exactly 0, ``relative`` = ||g|| / ||w|| (None where the weights
    are all zero); all None where there is no gradient. ``flag`` says in a few words what
    looks wrong ("" when nothing does), ``reason`` the long form for a None gradient, and
    ``source`` the name the result gives the variable (None when it was not a source).
    """

    layer: str
    kind: str
    variable: str
    shape: tuple[int, ...]
    norm: float | None
    max_abs: float | None
    zeros: float | None
    relative: float | None
    flag: str
    source: str | None
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class LayerTable(Sequence[LayerRow]):
    """The rows of a model's gradient flow, input layer first. Index it by position
    (``table[0]``) or by a layer's path (``table["sequential/dense"]``: that layer's rows);
    ``table.to_pandas()`` (or ``pandas.DataFrame(table)``) gives a DataFrame."""

    target: str = ""
    rows: tuple[LayerRow, ...] = ()
    language: str = dataclasses.field(default_factory=_i18n.current, compare=False)  # its flags' and titles'

    @overload
    def __getitem__(self, index: int) -> LayerRow: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[LayerRow, ...]: ...
    @overload
    def __getitem__(self, index: str) -> tuple[LayerRow, ...]: ...

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            found = tuple(row for row in self.rows if row.layer == index)
            if not found:
                with _i18n.language(self.language):
                    layers = ", ".join(self.layer_names()) or _("none")
                    raise KeyError(_("no layer {layer}: the layers are {layers}", layer=repr(index), layers=layers))
            return found
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def layer_names(self) -> list[str]:
        """Each layer's path once, input layer first."""
        return list(dict.fromkeys(row.layer for row in self.rows))

    def layer_norms(self) -> list[tuple[str, str, float | None]]:
        """(layer, kind, norm) per layer: the norm of all its variables' gradients together,
        None when none of them has a gradient."""
        out = []
        for name in self.layer_names():
            rows = self[name]
            norms = [row.norm for row in rows if row.norm is not None]
            out.append((name, rows[0].kind, math.sqrt(sum(n * n for n in norms)) if norms else None))
        return out

    def flagged(self) -> tuple[LayerRow, ...]:
        """The rows whose flag says something looks wrong."""
        return tuple(row for row in self.rows if row.flag)

    def to_pandas(self) -> Any:
        """The table as a pandas DataFrame (pandas is optional: ``pip install pandas``)."""
        try:
            import pandas
        except ImportError:
            with _i18n.language(self.language):
                raise ImportError(_("to_pandas needs pandas, which tapemagic does not install: pip install pandas")) from None
        return pandas.DataFrame([dataclasses.asdict(row) for row in self.rows], columns=list(LAYER_COLUMNS))

    def __repr__(self) -> str:
        from .render import flow

        with _i18n.language(self.language):
            return "\n".join(flow.text_table(self)) or _("LayerTable(no Keras model among the sources)")

    def _repr_html_(self) -> str:
        from .render import flow

        with _i18n.language(self.language):
            return flow.table_html(self)


@dataclasses.dataclass(frozen=True)
class TapeResult:
    """The result of a ``%%tape`` cell or a :func:`tapemagic.tape` call.

    The first target's numbers are at the top level (``value``, ``gradients``,
    ``derivatives``, ``jacobian``, ``hessian``); every target's are in ``targets``.
    """

    spec: TapeSpec
    targets: tuple[TargetResult, ...]
    sources: tuple[SourceInfo, ...]
    watched: tuple[WatchedInfo, ...]
    notes: tuple[str, ...] = ()
    tape: Any = None
    path: str = "eager"
    display: str = "auto"
    precision: int = 4
    max_elements: int = 12
    passes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    rerun: Any = dataclasses.field(default=None, repr=False, compare=False)
    replay_effects: tuple[str, ...] = ()  # what a second run would change; empty: replays leave no trace
    # The Keras models (in the user's namespace) that own a source: what ``layers`` names its rows by.
    models: tuple[Any, ...] = dataclasses.field(default=(), repr=False, compare=False)
    # --graph: the computation graph TensorFlow ran, with values and adjoints (tapemagic._graph).
    graph: Any = dataclasses.field(default=None, repr=False, compare=False)
    # The language the result was made in ("en", "zh"): its notes are in it, and it renders in it.
    language: str = dataclasses.field(default_factory=_i18n.current)

    # -- numbers --------------------------------------------------------------
    @property
    def target(self) -> TargetResult:
        return self.targets[0]

    @property
    def value(self) -> Any:
        """The (first) target's value."""
        return self.target.value

    @property
    def values(self) -> dict[str, Any]:
        """Every target's value by name."""
        return {target.name: target.value for target in self.targets}

    @property
    def gradients(self) -> dict[str, Any]:
        """First derivatives of the (first) target by source name."""
        return dict(self.target.gradients)

    @property
    def derivatives(self) -> dict[int, dict[str, Any]]:
        """``derivatives[k][source]``: the k-th derivative, k = 1..order."""
        return {k: _by_source(values, self.target.reasons if k == 1 else {}) for k, values in self.target.derivatives.items()}

    @property
    def jacobian(self) -> dict[str, Any] | None:
        return None if self.target.jacobian is None else dict(self.target.jacobian)

    @property
    def hessian(self) -> Any:
        """All second partials over the flattened sources, in source order."""
        return self.target.hessian

    @functools.cached_property
    def layers(self) -> LayerTable:
        """The gradient flow by layer of the Keras model(s) the sources belong to: a
        :class:`LayerTable`, one row per layer and variable, input
        layer first (empty when no source is a Keras model's variable). Computed once, from
        the gradients above: nothing runs again."""
        from .engine import flow

        with _i18n.language(self.language):  # its flags in the result's language
            return flow.analyse(self)

    def of(self, target: str) -> TargetResult:
        """The numbers for one target by name."""
        for candidate in self.targets:
            if candidate.name == target:
                return candidate
        with _i18n.language(self.language):
            raise KeyError(_("no target {target}: the targets are {targets}", target=repr(target),
                             targets=", ".join(t.name for t in self.targets)))

    def gradient(self, wrt: str, of: str | None = None, order: int = 1) -> Any:
        """The ``order``-th derivative of target ``of`` (default: the first) with respect to ``wrt``."""
        target = self.of(of) if of else self.target
        self._check_source(wrt)
        return target.derivatives.get(order, {}).get(wrt)

    def why(self, wrt: str, of: str | None = None) -> str:
        """In words: why the gradient with respect to ``wrt`` is None (or that it is not)."""
        target = self.of(of) if of else self.target
        self._check_source(wrt)
        if wrt in target.reasons:
            return target.reasons[wrt]
        with _i18n.language(self.language):
            return _("the gradient of {target} with respect to {source} is not None.", target=target.name, source=wrt)

    def _check_source(self, wrt: str) -> None:
        if wrt not in {source.name for source in self.sources}:
            with _i18n.language(self.language):
                names = ", ".join(source.name for source in self.sources) or _("none")
                raise KeyError(_("{source} is not a source of this result (the sources are: {sources})",
                                 source=repr(wrt), sources=names))

    # -- display --------------------------------------------------------------
    def with_display(self, **settings: Any) -> "TapeResult":
        """A copy with other display settings (display, precision, max_elements, language)."""
        if "language" in settings:
            settings["language"] = _i18n.resolve(settings["language"])
        return dataclasses.replace(self, **settings)

    def widget(self) -> Any:
        """The static view in an ipywidgets box (what ``--display widget`` shows)."""
        from .render import widget

        with _i18n.language(self.language):
            return widget.build(self)

    def to_text(self) -> str:
        from .render import text

        with _i18n.language(self.language):
            return text.render(self)

    def to_html(self) -> str:
        from .render import html

        with _i18n.language(self.language):
            return html.render(self)

    def __repr__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_text())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """text/plain and static text/html: readable in every frontend, with or without a kernel, trusted or
        not, exported or not. Only ``--display widget`` adds a widget view (its content the same HTML)."""
        if self.display == "none":
            return {"text/plain": ""}
        bundle: dict[str, Any] = {"text/plain": self.to_text()}
        if self.display == "text":
            return bundle
        bundle["text/html"] = self.to_html()
        if self.display == "widget":
            from .render import widget

            with _i18n.language(self.language):
                bundle.update(widget.bundle(self))
        return bundle
