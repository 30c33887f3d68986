"""Which language a call outside the magic speaks (``tapemagic.tape``, the MNIST loader).

The one asked for (``language=...``); else that of an enclosing ``with tapemagic._i18n.language(...)`` block;
else ``%config TapeMagics.language`` of the running IPython, where tapemagic is loaded; else "auto" (the locale).
"""
from __future__ import annotations

import contextvars
import sys

from . import _i18n
from ._i18n import _

__all__ = ["language_for"]


def language_for(language: str | None = None) -> str:
    """The language code ("en", "zh") for ``language`` (None: see the module's docstring). An unknown language
    raises ValueError naming the choices."""
    if language is None:
        if _i18n._CURRENT in contextvars.copy_context():
            return _i18n.current()
        language = _magic_setting() or "auto"
    try:
        return _i18n.resolve(language)
    except ValueError:
        raise ValueError(_("language must be one of {choices}, not {value}",
                           choices=", ".join(_i18n.CHOICES), value=repr(language))) from None


def _magic_setting() -> str | None:
    """``TapeMagics.language`` of the running IPython shell, if tapemagic is loaded there."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    for configurable in getattr(shell, "configurables", ()):
        if type(configurable).__name__ == "TapeMagics":
            return str(configurable.language)
    return None
