"""The words tapemagic shows, in the user's language: gettext catalogs.

Every user-facing message is written in English in the code as ``_("... {name} ...", name=value)``
and looked up in ``tapemagic/locale/<LANG>/LC_MESSAGES/tapemagic.po``, the gettext catalog
translators edit (Poedit, Weblate, a text editor). A message missing from a catalog shows in
English. Adding a language is adding one catalog and one line to ``LANGUAGES``.

The catalogs are read with polib, a small well-kept library that parses ``.po`` files directly,
so there is no compiled ``.mo`` to keep in step with its source.

The language is a context: the engine runs, and the renderers render, inside
``with language(code):``, so the words of a result follow the language asked for when it was
made (``%config TapeMagics.language``, ``tapemagic.tape(..., language=...)``), and switching it in
a running kernel changes the next result's words.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import string
from pathlib import Path
from typing import Any, Iterator

__all__ = ["_", "LANGUAGES", "language", "current", "resolve", "catalog", "placeholders"]

# code → (catalog directory under locale/, what the language is called in itself)
LANGUAGES: dict[str, tuple[str | None, str]] = {
    "en": (None, "English"),          # the messages as written in the code
    "zh": ("zh_CN", "简体中文"),
}
CHOICES = ("auto", *LANGUAGES)
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "tapemagic"

_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("tapemagic_language", default="en")
_CATALOGS: dict[str, dict[str, str]] = {}


def resolve(code: str | None, environ: Any = None) -> str:
    """The language for ``code``: "en", "zh", or "auto" (also None), which follows the locale
    (``LANGUAGE``, then ``LC_ALL``, ``LC_MESSAGES`` and ``LANG``, in the order Python's gettext reads
    them; the first one set decides): any Chinese locale
    (zh_CN, zh_SG, zh_TW, zh_HK, ...) gives "zh" (Simplified Chinese: there is no Traditional
    catalog yet), anything else English. An unknown code raises ValueError saying the choices."""
    if code is None or code == "auto":
        environ = os.environ if environ is None else environ
        for variable in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
            value = environ.get(variable, "")
            if value:
                head = value.split(":")[0].split(".")[0].split("@")[0].replace("-", "_").lower()
                if head in ("c", "posix"):
                    return "en"
                base = head.split("_")[0]
                return base if base in LANGUAGES else "en"
        return "en"
    normal = str(code).strip().lower().replace("-", "_")
    if normal in LANGUAGES:
        return normal
    if normal.split("_")[0] in LANGUAGES:  # zh_CN, zh-Hans, en_US
        return normal.split("_")[0]
    raise ValueError(f"language must be one of {', '.join(CHOICES)}, not {code!r}")


def current() -> str:
    """The language messages are made in now."""
    return _CURRENT.get()


@contextlib.contextmanager
def language(code: str | None) -> Iterator[str]:
    """Make and render messages in ``code`` ("auto" follows the locale) inside the block."""
    token = _CURRENT.set(resolve(code))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def catalog(code: str) -> dict[str, str]:
    """The translations of language ``code``: English message → translated (only translated ones)."""
    if code not in _CATALOGS:
        directory = LANGUAGES[code][0]
        table: dict[str, str] = {}
        path = LOCALE_DIR / directory / "LC_MESSAGES" / f"{DOMAIN}.po" if directory else None
        if path is not None and path.exists():
            import polib

            for entry in polib.pofile(str(path)):
                if entry.msgstr and not entry.obsolete and "fuzzy" not in entry.flags:
                    table[entry.msgid] = entry.msgstr
        _CATALOGS[code] = table
    return _CATALOGS[code]


def _(message: str, /, **fields: Any) -> str:
    """``message`` in the current language, with ``{name}`` placeholders filled from ``fields``.

    Write the English message as a literal (the catalog tools find it by that), never an f-string:
    ``_("{source} is not a source of this cell", source=name)``.
    """
    code = _CURRENT.get()
    text = catalog(code).get(message, message) if code != "en" else message
    return text.format(**fields) if fields else text


def placeholders(message: str) -> set[str]:
    """The ``{name}`` fields of a message (what a translation must keep, no more, no fewer)."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(message) if field is not None}
    except ValueError:
        return {"<unbalanced braces>"}
