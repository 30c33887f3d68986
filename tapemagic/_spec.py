"""The magic line as a frozen specification.

Pure standard library: parsing a line never imports TensorFlow or IPython, so a
bad line is rejected before anything runs (and before TensorFlow loads).
"""
from __future__ import annotations

import argparse
import builtins
import dataclasses
import functools
import keyword
import re
import shlex
import unicodedata

from . import _i18n
from ._i18n import _
from .render import wrap

__all__ = ["TapeSpec", "SpecError", "parse_line", "split_line_magic", "HELP", "help_text"]

DISPLAYS = ("auto", "widget", "html", "text", "none")
MAX_ORDER = 8

_RANGE = re.compile(r"^([^=:]+)=([^:]+):([^:]+)$")


def _is_name(text: object) -> bool:
    """A name Python accepts as a variable: any identifier (``α``, ``résultat``), not a keyword."""
    return isinstance(text, str) and text.isidentifier() and not keyword.iskeyword(text)


def _is_dotted(text: object) -> bool:
    """``x``, ``layer.kernel``, ``model.trainable_variables``: names joined by dots."""
    return isinstance(text, str) and all(_is_name(part) for part in text.split("."))


def _normal(name: str) -> str:
    """A name as Python reads it in code: NFKC-normalized, so ``µ`` (micro sign) is ``μ``, as in the cell."""
    return unicodedata.normalize("NFKC", name)


def builtin_name(name: str) -> bool:
    """A name of Python's builtins (print, len, sum, ...), which a notebook name would shadow."""
    return not name.startswith("_") and hasattr(builtins, name)


def _check_out(out: str) -> None:
    if not _is_name(out):
        raise SpecError(_("-o needs a plain name to store the result in, not {name}: e.g. -o r", name=repr(out)))
    if out == "__builtins__" or out == "__builtin__":
        raise SpecError(_("-o {name} would shadow Python's builtins ({name}), and every later cell needs them: "
                          "store the result under another name, e.g. -o r", name=out))
    if out.startswith("__") and out.endswith("__"):
        raise SpecError(_("-o {name}: names with double underscores on both sides are Python's own "
                          "(__name__, __builtins__, ...): store the result under another name, e.g. -o r", name=out))
    if builtin_name(out):
        raise SpecError(_("-o {name} would shadow Python's builtin {name}, which later cells may need: "
                          "store the result under another name, e.g. -o r", name=out))


class SpecError(ValueError):
    """A magic line or API call that cannot run; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class TapeSpec:
    """What to differentiate and how: the parsed form of a ``%%tape`` line.

    Every field has the meaning of the magic option of the same name
    (see ``HELP``); the Python API builds the same object from keyword arguments.
    """

    sources: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    order: int = 1
    jacobian: bool = False
    hessian: bool = False
    persistent: bool = False
    auto_watch: bool = True
    watch_sources: bool = True
    out: str | None = None
    display: str | None = None
    forward: bool = False
    check: bool = False
    eps: float | None = None
    hvp: str | None = None
    eager: bool = False
    explore: bool = False
    graph: bool = False
    ranges: tuple[tuple[str, float, float], ...] = ()

    def __post_init__(self) -> None:
        _check_int_order(self.order)
        for name in (*self.sources, *self.targets):
            words = [part for part in name.split(".") if keyword.iskeyword(part)] if isinstance(name, str) else []
            if words and words[0] == name:
                raise SpecError(_("{word} is a Python keyword, not a name: name a variable, as in %%tape x -t y",
                                  word=repr(words[0])))
            if words:
                raise SpecError(_("{word} (in {name}) is a Python keyword, not a name: name a variable, "
                                  "as in %%tape x -t y", word=repr(words[0]), name=repr(name)))
        for source in self.sources:
            if not _is_dotted(source):
                raise SpecError(_(
                    "{source} is not a name or a dotted path: write a source as "
                    "x, layer.kernel or model.trainable_variables", source=repr(source)))
        for target in self.targets:
            if not _is_name(target):
                raise SpecError(_(
                    "{target} is not a plain name: a target is a name the cell "
                    "assigns, as in %%tape x -t y", target=repr(target)))
        if len(set(self.targets)) != len(self.targets):
            raise SpecError(_("a target is named twice: give each -t NAME once"))
        if len(set(self.sources)) != len(self.sources):
            raise SpecError(_("a source is named twice: give each SOURCE once"))
        if self.out is not None:
            _check_out(self.out)
        if self.display is not None and self.display not in DISPLAYS:
            raise SpecError(_("--display must be one of {choices}, not {value}",
                              choices=", ".join(DISPLAYS), value=repr(self.display)))
        if self.eps is not None and not (self.eps > 0 and self.eps < 1):
            raise SpecError(_("--eps must be a small positive step such as 1e-3, not {value}", value=repr(self.eps)))
        if self.eps is not None and not self.check:
            raise SpecError(_("--eps sets the finite-difference step of --check: add --check"))
        if not self.watch_sources and self.auto_watch:
            raise SpecError(_(
                "--no-watch only makes sense with --no-auto-watch (otherwise the tape watches "
                "every variable it reads): %%tape x --no-auto-watch --no-watch"))
        if self.hvp is not None and not _is_dotted(self.hvp):
            raise SpecError(_("--hvp needs the name of a vector, not {value}: %%tape x --hvp v", value=repr(self.hvp)))
        if self.ranges and not self.explore:
            raise SpecError(_("--range sets a slider of --explore: add --explore"))
        if self.graph and self.explore:
            raise SpecError(_("--graph draws the operations of the one real run, and --explore runs the cell again at "
                              "each slider position: use one of them per cell (e.g. %%tape x --graph, then "
                              "%%tape x --explore in another cell)"))
        ranged = [name for name, _low, _high in self.ranges]
        for name, low, high in self.ranges:
            if not low < high:
                raise SpecError(_("--range {name}={low}:{high}: the low end must be below the high end",
                                  name=name, low=low, high=high))
            if self.sources and name not in self.sources:
                raise SpecError(_("--range names {name}, which is not a source of this cell", name=repr(name)))
        if len(set(ranged)) != len(ranged):
            raise SpecError(_("--range gives the same source twice"))

    @property
    def depth(self) -> int:
        """How many nested tapes the derivatives need."""
        return max(self.order, 2 if self.hessian else 1)


def _check_int_order(order: object) -> None:
    if isinstance(order, bool) or not isinstance(order, int):
        raise SpecError(_("order must be a whole number, not {value}: %%tape -n 2 x", value=repr(order)))
    if order < 1:
        raise SpecError(_("order must be 1 or more, not {value}: %%tape -n 2 x", value=order))
    if order > MAX_ORDER:
        raise SpecError(_(
            "order {order} is more than tapemagic computes ({most}): each order nests "
            "another tape and costs another backward pass; use -n 3 or so", order=order, most=MAX_ORDER))


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel, and speaks the current language."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SpecError(_("{message}. See %%tape? for the options.", message=_argparse_message(message)))

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise SpecError(message or _("see %%tape? for the options"))

    def format_help(self) -> str:
        text = super().format_help()
        if text.startswith("usage: "):  # argparse's own word, from its own (English) catalog
            text = _("usage: {usage}", usage=text[len("usage: "):])
        return text


class _Formatter(argparse.HelpFormatter):
    """Help wrapped by the columns it takes: argparse counts characters and breaks lines only at spaces, so a
    Chinese sentence (two columns a character, no spaces) would run on far past the terminal's edge."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        if not _wide(text):
            return super()._split_lines(text, width)
        return wrap.fill(" ".join(text.split()), width, indent="").splitlines()

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if not _wide(text):
            return super()._fill_text(text, width, indent)
        lines = wrap.fill(" ".join(text.split()), width - len(indent), indent="").splitlines()
        return "\n".join(indent + line for line in lines)


def _wide(text: str) -> bool:
    return wrap.width(text) != len(text)


def _argparse_message(message: str) -> str:
    """argparse's own error messages (English, from its gettext domain) in the current language."""
    if _i18n.current() == "en":
        return message
    match = re.fullmatch(r"unrecognized arguments: (.*)", message, re.S)
    if match:
        return _("unrecognized arguments: {arguments}", arguments=match[1])
    match = re.fullmatch(r"argument (\S+): (.*)", message, re.S)
    if not match:
        return message
    argument, detail = match.groups()
    choice = re.fullmatch(r"invalid choice: (.*) \(choose from (.*)\)", detail, re.S)
    ignored = re.fullmatch(r"ignored explicit argument (.*)", detail, re.S)
    if detail == "expected one argument":
        detail = _("expected one argument")
    elif choice:
        detail = _("invalid choice: {value} (choose from {choices})", value=choice[1], choices=choice[2])
    elif ignored:
        detail = _("ignored explicit argument {value} (this option takes no value)", value=ignored[1])
    return _("argument {argument}: {detail}", argument=argument, detail=detail)


def _order(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("order must be a whole number, not {value}", value=repr(text))) from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(_("not a number: {value}", value=repr(text))) from None


def _range(text: str) -> tuple[str, float, float]:
    match = _RANGE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(_("a range is written NAME=LOW:HIGH, as x=-3:3, not {value}",
                                           value=repr(text)))
    name, low, high = match.groups()
    if not _is_name(name):
        raise argparse.ArgumentTypeError(_("a range is written NAME=LOW:HIGH, as x=-3:3; {name} is not a name",
                                           name=repr(name)))
    name = _normal(name)
    try:
        return name, float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(_("a range is written NAME=LOW:HIGH with numbers, not {value}",
                                           value=repr(text))) from None


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="%%tape",
        formatter_class=_Formatter,
        add_help=False,
        allow_abbrev=False,
        description=_(
            "Run the cell inside nested tf.GradientTape()s and show the target's value, its "
            "gradients with respect to each SOURCE, higher orders, Jacobians and Hessians, and "
            "the variables the tape watched. As a line magic: %tape x -- x**3 + 2*x**2 + 1"
        ),
        epilog=_(
            "The target is the cell's last expression, or the name its last statement assigns. "
            "A non-scalar target is summed, as tape.gradient does. Python numbers and NumPy "
            "arrays named as sources become float tf.constants under the same name."
        ),
    )
    # argparse names these groups in its own (English) catalog
    parser._positionals.title = _("positional arguments")
    parser._optionals.title = _("options")
    add = parser.add_argument
    add("sources", nargs="*", metavar="SOURCE",
        help=_("names or dotted paths to differentiate with respect to; default: the trainable "
               "variables the cell touched"))
    add("-t", "--target", action="append", default=[], metavar="NAME",
        help=_("what to differentiate (repeatable); default: the cell's last expression or assignment"))
    add("-n", "--order", type=_order, default=1, metavar="N", help=_("derivatives of order 1..N (default 1)"))
    add("--jacobian", action="store_true", help=_("the full Jacobian of the target for each source"))
    add("--hessian", action="store_true", help=_("all second partial derivatives over the sources' elements"))
    add("-p", "--persistent", action="store_true", help=_("keep the persistent tape on the result as r.tape"))
    add("--no-auto-watch", action="store_true",
        help=_("watch_accessed_variables=False: only the named sources are watched"))
    add("--no-watch", action="store_true",
        help=_("with --no-auto-watch: do not watch the named sources either (the cell may call tapemagic.watch)"))
    add("-o", "--out", metavar="NAME", help=_("store the result object in the namespace under NAME"))
    add("--display", choices=DISPLAYS, help=_("how to show the result (default: %%config TapeMagics.display)"))
    add("--forward", action="store_true", help=_("also first derivatives in forward mode (ForwardAccumulator)"))
    add("--check", action="store_true", help=_("compare the gradients with central finite differences"))
    add("--eps", type=_float, metavar="STEP", help=_("finite-difference step for --check (default per dtype)"))
    add("--hvp", metavar="V", help=_("Hessian-vector product with the vector named V (forward-over-reverse)"))
    add("--eager", action="store_true", help=_("never trace the cell with tf.function; use eager tapes"))
    add("--explore", action="store_true", help=_("a slider per scalar source; a move re-runs the cell and redraws "
                                                 "the result in place (in a kernel)"))
    add("--graph", action="store_true",
        help=_("draw the cell's computation graph: each op with its value and adjoint (with --forward: its "
               "tangents)"))
    add("--range", action="append", default=[], type=_range, metavar="NAME=LOW:HIGH",
        help=_("slider range for --explore, e.g. --range x=-3:3"))
    return parser


_PARSERS: dict[str, _Parser] = {}


def _parser() -> _Parser:
    """The parser in the current language (its help and messages), built once per language."""
    code = _i18n.current()
    if code not in _PARSERS:
        _PARSERS[code] = _build_parser()
    return _PARSERS[code]


def help_text(language: str = "en") -> str:
    """What ``%%tape?`` shows, in ``language`` ("en", "zh" or "auto")."""
    with _i18n.language(language):
        return _parser().format_help()


HELP: str = help_text("en")


def parse_line(line: str) -> TapeSpec:
    """Parse the arguments of ``%%tape`` into a :class:`TapeSpec`.

    Raises
    ------
    SpecError
        With a message that says how to write the line instead.
    """
    return _parsed(line)


@functools.lru_cache(maxsize=256)
def _parsed(line: str) -> TapeSpec:
    """The spec of a line, kept: a re-run cell's line is parsed once (argparse and shlex took 0.2 ms of a
    4 ms warm run). The spec is frozen and the same in every language; errors are not kept."""
    try:
        words = shlex.split(line, posix=True)
    except ValueError as error:
        raise SpecError(_("cannot split the line ({error}): check its quotes", error=error)) from None
    namespace = _parser().parse_args(words)
    return TapeSpec(
        sources=tuple(_normal(source) for source in namespace.sources),
        targets=tuple(_normal(target) for target in namespace.target),
        order=namespace.order,
        jacobian=namespace.jacobian,
        hessian=namespace.hessian,
        persistent=namespace.persistent,
        auto_watch=not namespace.no_auto_watch,
        watch_sources=not namespace.no_watch,
        out=None if namespace.out is None else _normal(namespace.out),
        display=namespace.display,
        forward=namespace.forward,
        check=namespace.check,
        eps=namespace.eps,
        hvp=None if namespace.hvp is None else _normal(namespace.hvp),
        eager=namespace.eager,
        explore=namespace.explore,
        graph=namespace.graph,
        ranges=tuple(namespace.range),
    )


def split_line_magic(line: str) -> tuple[str, str]:
    """Split ``%tape x y -- EXPRESSION`` into its options and its expression."""
    options, sep, expression = line.partition(" -- ")
    if not sep and line.strip().startswith("-- "):
        options, expression = "", line.strip()[3:]
    elif not sep:
        raise SpecError(_(
            "the line magic needs an expression after ' -- ': %tape x -- x**3 + 2*x**2 + 1 "
            "(or use %%tape as a cell magic)"))
    if not expression.strip():
        raise SpecError(_("nothing to differentiate after ' -- ': %tape x -- x**3 + 2*x**2 + 1"))
    return options, expression.strip()

