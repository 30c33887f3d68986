"""Words with a kind: a message in the user's language that code can still sort.

The engine's reasons (why a gradient is None, what a line of the cell does) and the gradient
flow's flags are shown as text in whatever language the result was made in (:mod:`.._i18n`),
so code that needs to tell them apart must not read the words. A :class:`Reason` is the text
itself (a ``str``, shown, compared and stored as one) with a ``kind`` beside it.
"""
from __future__ import annotations

from typing import Any

from .._i18n import _

__all__ = ["Reason", "kind_of", "joined", "options"]


class Reason(str):
    """A message in words (a ``str``) and what kind of message it is (``kind``, a fixed English tag
    such as "not_watched" or "exploding" that code compares)."""

    kind: str

    def __new__(cls, text: str, kind: str) -> "Reason":
        made = super().__new__(cls, text)
        made.kind = kind
        return made

    def __reduce__(self) -> Any:
        return (Reason, (str(self), self.kind))


def kind_of(text: Any) -> str:
    """The ``kind`` of a :class:`Reason`; "" for a plain string."""
    return getattr(text, "kind", "")


def joined(parts: Any) -> str:
    """Items of a list (effects, code lines) joined as the current language joins them ("; ")."""
    # Translators: joins the items of a list of effects or code lines, e.g. "line 2 calls .numpy(); line 3 rounds".
    return _("; ").join(parts)


def options(parts: Any) -> str:
    """Option names joined as the current language says "--forward and --check"."""
    # Translators: joins option names, e.g. "--forward and --check".
    return _(" and ").join(parts)
