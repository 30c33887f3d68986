"""``%%tape`` and ``%tape``: parse the line, hand the cell to the engine, return the result.

The only module that imports IPython. Bad lines raise UsageError before anything
runs; a cell that raises shows the user's own traceback and stores nothing.
"""
from __future__ import annotations

import builtins
import io
import os
import tokenize
from types import TracebackType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Enum, Int, TraitError, Unicode, observe

from . import _i18n
from ._i18n import _
from ._spec import DISPLAYS, SpecError, builtin_name, help_text, parse_line, split_line_magic

__all__ = ["TapeMagics"]


class _Language(Unicode):  # type: ignore[type-arg]
    """A language setting: "auto", or a code of ``_i18n.LANGUAGES`` ("zh_CN" is kept as "zh"). Checked as it is
    set (also inside ``%config``, where a cross-validator would run only after the observers)."""

    def validate(self, obj: Any, value: Any) -> str:
        value = super().validate(obj, value)
        try:
            code = _i18n.resolve(value)
        except ValueError:
            with _i18n.language(obj.language if isinstance(obj, TapeMagics) else "auto"):  # the setting still held
                raise TraitError(_("TapeMagics.language must be one of {choices} (auto follows the locale), "
                                   "not {value}", choices=", ".join(_i18n.CHOICES), value=repr(value))) from None
        return "auto" if value.strip().lower() == "auto" else code

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@magics_class
class TapeMagics(Magics):
    """Differentiate notebook cells with tf.GradientTape."""

    display = Enum(list(DISPLAYS), default_value="auto",
                   help="How %%tape shows results: auto or html (static HTML and text, readable in every "
                        "frontend), widget (the same HTML in an ipywidget), text or none.").tag(config=True)
    precision = Int(4, help="Significant digits shown for numbers.").tag(config=True)
    max_elements = Int(12, help="Arrays with more elements than this are summarized.").tag(config=True)
    language = _Language("auto", help="The language of results, messages and %%tape? help: auto (follows the "
                                    "locale: LC_ALL, LC_MESSAGES, LANG), en or zh.").tag(config=True)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        shell.configurables.append(self)
        self._engine: Any = None
        _set_help_language(self.language)

    @observe("language")
    def _language_changed(self, change: Any) -> None:
        _set_help_language(change["new"])

    @no_var_expand  # IPython would otherwise evaluate {...} and $name in the line before we see it
    @line_cell_magic
    def tape(self, line: str, cell: str | None = None) -> Any:
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        # The line is read, the cell differentiated and the result rendered in the language set now.
        with _i18n.language(self.language) as code:
            return self._tape(line, cell, code)

    def _tape(self, line: str, cell: str | None, code: str) -> Any:
        __tracebackhide__ = True  # noqa: F841
        try:
            if cell is None:
                line, cell = split_line_magic(line)
            spec = parse_line(line)
        except SpecError as error:
            raise UsageError(str(error)) from None
        self._refuse_builtin_sources(spec)
        from . import _api  # TensorFlow loads here, on first use, not at %load_ext

        if self._engine is None:
            self._engine = _api.new_engine()
        try:
            result = _api.run_code(self._engine, spec, cell, self.shell.user_ns, prefix="tape-cell")
        except SpecError as error:
            raise UsageError(str(error)) from None
        except (Exception, KeyboardInterrupt) as error:
            # The user's own exception, as raised: its chain (raise A from B) stays; only our frames go.
            raise error.with_traceback(_user_frames(error.__traceback__))
        result = result.with_display(
            display=spec.display or self.display, precision=self.precision, max_elements=self.max_elements,
            language=code,
        )
        if spec.out:
            self.shell.user_ns[spec.out] = result
        if result.display == "none" or _ends_with_semicolon(cell):
            return None  # a trailing ';' hides the output, as in any IPython cell; -o still stored it
        if _explorable(result):
            return _show_explorer(result)
        if _steppable(result):
            return _show_stepper(result)
        return result

    def _refuse_builtin_sources(self, spec: Any) -> None:
        """A source (or --hvp vector) that names one of Python's builtins the notebook has not
        defined: say so, rather than suggest defining a variable that would shadow it."""
        namespace = self.shell.user_ns
        hidden = getattr(self.shell, "user_ns_hidden", {})
        for path in (*spec.sources, *([spec.hvp] if spec.hvp else [])):
            head = path.split(".")[0]
            if not builtin_name(head):
                continue
            if head in namespace:
                value = namespace[head]
                ours = value is getattr(builtins, head) or (head in hidden and value is hidden[head])
                if not ours:
                    continue  # the notebook defined a variable of that name: it is the source
            value = getattr(builtins, head, namespace.get(head))
            builtin = (_("Python's builtin type {name}", name=head) if isinstance(value, type) else
                       _("Python's builtin function {name}", name=head) if callable(value) else
                       _("Python's builtin name {name}", name=head))
            if path == spec.hvp and path not in spec.sources:
                raise UsageError(_(
                    "{name} is {builtin}, not a variable of this notebook, so it cannot be the --hvp vector: "
                    "name a variable defined in an earlier cell, e.g. v = tf.constant([1.0, 0.0]), then "
                    "%%tape x --hvp v", name=head, builtin=builtin))
            raise UsageError(_(
                "{name} is {builtin}, not a variable of this notebook, so it cannot be a source: name a variable "
                "defined in an earlier cell, e.g. x = tf.Variable(3.0), then %%tape x", name=head, builtin=builtin))


def _explorable(result: Any) -> bool:
    """--explore shows sliders where a frontend can render widgets (a kernel) and the cell may run again."""
    from .render import widget

    return (bool(result.spec.explore) and result.rerun is not None and result.display != "text"
            and widget.in_kernel())


def _show_explorer(result: Any) -> None:
    """The static result with a display id and the slider widget below it; each slider move updates the static
    output in place, so the saved notebook holds the last position's numbers and plot (no widget needed to read
    them). Returns None: the result is shown here, not as the cell's value (-o stores it)."""
    from IPython.display import display

    from .render import widget

    try:
        explorer = widget.Explorer(result)
    except ImportError:  # no ipywidgets: the static result alone
        display(result)
        return None
    if not explorer.sliders:  # no scalar float source to slide
        display(result)
        return None
    handle = display(explorer.bundle(), raw=True, display_id=True)
    explorer.on_update = lambda bundle: handle.update(bundle, raw=True)
    sliders = explorer.box._repr_mimebundle_()
    # What a frontend without the widget shows (a terminal, an export without widget state): what they were.
    ranges = [_("{name} in [{low}, {high}]", name=name, low=f"{slider.min:g}", high=f"{slider.max:g}")
              for name, slider in explorer.sliders.items()]
    sliders["text/plain"] = _("--explore sliders (they move while the kernel runs): {sliders}", sliders=", ".join(ranges))
    display(sliders, raw=True)
    return None


def _steppable(result: Any) -> bool:
    """--graph shows step controls under the graph where a frontend can render widgets (a kernel)."""
    from .render import widget

    return getattr(result, "graph", None) is not None and result.display != "text" and widget.in_kernel()


def _show_stepper(result: Any) -> None:
    """The static result (the whole graph) with a display id and the step controls below it; each step redraws
    the graph in place, nothing runs again. Returns None: the result is shown here (-o stores it)."""
    from IPython.display import display

    from .render import widget

    try:
        stepper = widget.GraphStepper(result)
    except ImportError:  # no ipywidgets: the static result alone
        display(result)
        return None
    handle = display(stepper.bundle(), raw=True, display_id=True)
    stepper.on_update = lambda bundle: handle.update(bundle, raw=True)
    controls = stepper.box._repr_mimebundle_()
    # What a frontend without the widget shows (a terminal, an export without widget state): what they were.
    controls["text/plain"] = _("--graph step controls (they work while the kernel runs): forward pass 0 to "
                               "{forward}, reverse pass 0 to {reverse}", forward=stepper.drawing.steps("forward"),
                               reverse=stepper.drawing.steps("reverse"))
    display(controls, raw=True)
    return None


def _docstring(code: str) -> str:
    return "::\n\n  " + help_text(code).replace("\n", "\n  ")


_HELP_LANGUAGE = ["auto"]  # TapeMagics.language as set: what %%tape? speaks


def _set_help_language(setting: str) -> None:
    """%%tape? in the language set (its docstring follows ``TapeMagics.language``)."""
    _HELP_LANGUAGE[0] = setting
    TapeMagics.tape.__doc__ = _docstring(_i18n.resolve(setting))


def _current_docstring() -> str:
    """What IPython's ``?`` reads (it asks an object's ``getdoc()`` first): "auto" follows the locale now."""
    return _docstring(_i18n.resolve(_HELP_LANGUAGE[0]))


TapeMagics.tape.__doc__ = _docstring("en")
TapeMagics.tape.getdoc = _current_docstring  # type: ignore[attr-defined]


def _ends_with_semicolon(cell: str) -> bool:
    """Whether the cell's last line ends with ';' (comments aside), which IPython takes as
    "compute, but show nothing"."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(cell).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        lines = [line.split("#")[0].rstrip() for line in cell.splitlines() if line.split("#")[0].strip()]
        return bool(lines) and lines[-1].endswith(";")
    skip = (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    for token in reversed(tokens):
        if token.type not in skip:
            return token.type == tokenize.OP and token.string == ";"
    return False


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop tapemagic's own frames from the top of a traceback so the user's come first."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        first = first.tb_next
    return first or tb
