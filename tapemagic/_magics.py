"""``%%tape`` and ``%tape``: parse the line, hand the cell to the engine, return the result.

The only module that imports IPython. Bad lines raise UsageError before anything
runs; a cell that raises shows the user's own traceback and stores nothing.
"""
from __future__ import annotations

import os
from types import TracebackType
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from traitlets import Enum, Int

from ._spec import DISPLAYS, HELP, SpecError, parse_line, split_line_magic

__all__ = ["TapeMagics"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@magics_class
class TapeMagics(Magics):
    """Differentiate notebook cells with tf.GradientTape."""

    display = Enum(list(DISPLAYS), default_value="auto",
                   help="How %%tape shows results: auto (widget where it can, else HTML/text), "
                        "widget, html, text or none.").tag(config=True)
    precision = Int(4, help="Significant digits shown for numbers.").tag(config=True)
    max_elements = Int(12, help="Arrays with more elements than this are summarized.").tag(config=True)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        shell.configurables.append(self)
        self._engine: Any = None

    @no_var_expand  # IPython would otherwise evaluate {...} and $name in the line before we see it
    @line_cell_magic
    def tape(self, line: str, cell: str | None = None) -> Any:
        __tracebackhide__ = True  # noqa: F841 - IPython hides this frame in tracebacks
        try:
            if cell is None:
                line, cell = split_line_magic(line)
            spec = parse_line(line)
        except SpecError as error:
            raise UsageError(str(error)) from None
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
        )
        if spec.out:
            self.shell.user_ns[spec.out] = result
        return None if result.display == "none" else result


TapeMagics.tape.__doc__ = "::\n\n  " + HELP.replace("\n", "\n  ")


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """Drop tapemagic's own frames from the top of a traceback so the user's come first."""
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        first = first.tb_next
    return first or tb
