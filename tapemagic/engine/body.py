"""What the engine runs: a compiled cell in a namespace, or a function of the sources.

Both have the same small interface: ``target_names()``, ``run()`` (the one real run),
``replay(values)`` (a run that leaves no trace, made only when :mod:`.effects` finds none),
``effects()`` (what a second run would repeat, as far as the code shows) and ``captured()``
(the values from outside that a trace would bake in).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any, Callable, Mapping, Sequence

from .._i18n import _
from .._spec import SpecError
from . import effects
from .cell import Cell
from .sources import Source

__all__ = ["CellBody", "FunctionBody", "MAX_EXPRESSION_NAME", "quiet_replay", "ReplayLeftTrace"]

MAX_EXPRESSION_NAME = 24


class ReplayLeftTrace(RuntimeError):
    """A replay ran a state-changing TensorFlow op that the real run had not run (another branch)."""

    def __init__(self, effects_seen: list[str]) -> None:
        super().__init__("; ".join(effects_seen))
        self.effects = effects_seen


@contextlib.contextmanager
def quiet_replay() -> Any:
    """A replay prints nothing (the user saw the real run's output), and, run eagerly, is watched by
    TensorFlow's op log: if it changes state after all (it took a branch the real run did not, in
    code tapemagic could not read), it raises so that no further replay is made."""
    import tensorflow as tf

    sink = io.StringIO()
    log = effects.OpLog()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        if not tf.executing_eagerly():
            yield
            return
        with log.active():
            yield
    if log.effects:
        raise ReplayLeftTrace(log.effects)


class CellBody:
    """A cell: runs for real in the user's namespace; replays run on a copy of the namespace as it
    was before the real run, so names the cell binds or rebinds are as they were."""

    kind = "cell"

    def __init__(self, cell: Cell, namespace: dict[str, Any], targets: tuple[str, ...] = ()) -> None:
        self.cell = cell
        self.namespace = namespace
        self.targets = targets
        self._before: dict[str, Any] | None = None

    def target_names(self) -> tuple[str, ...]:
        if self.targets:
            return self.targets
        if self.cell.last is not None:
            # A short final expression names itself (f(x, 6) = 8); a long one is called f.
            text = " ".join((self.cell.last_text or "").split())
            return (text if 0 < len(text) <= MAX_EXPRESSION_NAME else "f",)
        if self.cell.default_target is not None:
            return (self.cell.default_target,)
        raise SpecError(_(
            "cannot tell what to differentiate: end the cell with an expression or an "
            "assignment (y = ...), or name the target with -t NAME"
        ))

    def check_targets(self) -> None:
        """Reject a named target that the cell never assigns, before anything runs."""
        for name in self.targets:
            if name not in self.cell.assigned and name not in self.namespace:
                raise SpecError(_(
                    "target {target} is neither assigned by the cell nor defined: "
                    "check its spelling, or assign it in the cell (e.g. y = x**2)", target=repr(name),
                ))

    def effects(self) -> list[str]:
        return effects.before_run(self.cell, self.namespace)

    def run(self, sources: Sequence[Source]) -> dict[str, Any]:
        """The one real run, in the user's namespace. The namespace as it was is kept for replays."""
        self._before = dict(self.namespace)
        return self._collect(self.cell.run(self.namespace), self.namespace)

    def replay(self, sources: Sequence[Source], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run again on a copy of the namespace as it was before the real run; ``values`` replaces
        sources by name (only top-level names: see :meth:`can_replace`)."""
        namespace = dict(self._before if self._before is not None else self.namespace)
        namespace.update(values or {})
        with quiet_replay():
            last = self.cell.run(namespace)
        return self._collect(last, namespace)

    def can_replace(self, source: Source) -> bool:
        return "." not in source.name and "[" not in source.name

    def before(self) -> dict[str, Any]:
        """A copy of the namespace as it was before the real run."""
        return dict(self._before if self._before is not None else self.namespace)

    def captured(self) -> dict[str, Any]:
        """The names the cell reads before assigning them, as they were before the real run."""
        namespace = self._before if self._before is not None else self.namespace
        return {name: namespace[name] for name in sorted(self.cell.free) if name in namespace}

    def key(self) -> Any:
        return ("cell", self.cell.source)

    def _collect(self, last: Any, namespace: Mapping[str, Any]) -> dict[str, Any]:
        names = self.target_names()
        if not self.targets and self.cell.last is not None:
            return {names[0]: last}
        values = {}
        for name in names:
            if name not in namespace:
                raise SpecError(_("the cell ran but did not assign the target {target}: assign it, or choose another -t",
                                  target=repr(name)))
            values[name] = namespace[name]
        return values


class FunctionBody:
    """A callable of the sources (the Python API). A returned dict is one target (tape.gradient sums
    a structure), unless ``targets`` picks entries of it by key."""

    kind = "function"

    def __init__(self, function: Callable[..., Any], targets: tuple[str, ...] = ()) -> None:
        self.function = function
        self.targets = targets
        self.cell = None

    def target_names(self) -> tuple[str, ...]:
        return self.targets or ("f",)

    def check_targets(self) -> None:
        return None

    def effects(self) -> list[str]:
        return effects.before_run(None, None, function=self.function)

    def run(self, sources: Sequence[Source]) -> dict[str, Any]:
        return self._returned(self.function(*[source.value for source in sources]))

    def replay(self, sources: Sequence[Source], values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        values = values or {}
        with quiet_replay():
            returned = self.function(*[values.get(s.name, s.value) for s in sources])
        return self._returned(returned)

    def can_replace(self, source: Source) -> bool:
        return True

    def captured(self) -> dict[str, Any]:
        return {"": self.function}

    def key(self) -> Any:
        return ("function", self.function)

    def _returned(self, returned: Any) -> dict[str, Any]:
        if not self.targets:
            return {"f": returned}
        if not isinstance(returned, Mapping):
            if len(self.targets) == 1:
                return {self.targets[0]: returned}
            raise SpecError(_("targets {targets} were asked for, but the function returned a {kind}, not a dict "
                              "with those keys", targets=", ".join(self.targets), kind=type(returned).__name__))
        missing = [name for name in self.targets if name not in returned]
        if missing:
            raise SpecError(_("the function returned no {missing}: its keys are {keys}",
                              missing=", ".join(map(repr, missing)), keys=", ".join(map(repr, returned))))
        return {name: returned[name] for name in self.targets}
