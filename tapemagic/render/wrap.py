"""Text by the columns a terminal gives it: a Chinese character takes two, and a Chinese sentence, which has no
spaces, may break between any two characters (never before a closing mark such as ，。：）, never inside an
ASCII word, name or number). English text wraps exactly as ``textwrap`` wraps it."""
from __future__ import annotations

import textwrap
import unicodedata

__all__ = ["width", "ljust", "fill"]

# No line starts with these (the Chinese rule of not beginning a line with closing punctuation).
_CLOSING = set("，。、：；！？）》」』】〕…,.:;!?)]}%")
_OPENING = set("（《「『【〔")  # and no line ends with these


def _wide(character: str) -> bool:
    return unicodedata.east_asian_width(character) in ("W", "F")


def width(text: str) -> int:
    """How many columns ``text`` takes in a terminal (a wide character two, a combining mark none)."""
    return sum(0 if unicodedata.combining(c) else 2 if _wide(c) else 1 for c in text)


def ljust(text: str, columns: int) -> str:
    """``text`` padded with spaces to ``columns`` terminal columns."""
    return text + " " * max(0, columns - width(text))


def fill(line: str, columns: int, indent: str = "  ") -> str:
    """``line`` wrapped at ``columns``, continuation lines indented by ``indent``."""
    if width(line) <= columns:
        return line
    if not any(_wide(c) for c in line):
        return textwrap.fill(line, width=columns, subsequent_indent=indent, break_long_words=False,
                             break_on_hyphens=False)
    tokens: list[str] = []
    for token in _tokens(line):
        if tokens and not token.isspace() and not tokens[-1].isspace() and (
                token[0] in _CLOSING or tokens[-1][-1] in _OPENING):
            tokens[-1] += token  # a closing mark stays with what it closes, an opening one with what it opens
        else:
            tokens.append(token)
    lines: list[str] = []
    current = ""
    for token in tokens:
        if token.isspace():
            if current.strip():
                current += token
            continue
        if current.strip() and width(current) + width(token) > columns:
            lines.append(current.rstrip())
            current = indent
        current += token
    if current.strip():
        lines.append(current.rstrip())
    return "\n".join(lines)


def _tokens(line: str) -> list[str]:
    """Runs of spaces, words of narrow characters (x, ∂f/∂x, 1e-3, --hessian), and wide characters one by one."""
    tokens: list[str] = []
    kinds: list[str] = []
    for character in line:
        kind = "space" if character.isspace() else "wide" if _wide(character) else "word"
        if tokens and kind != "wide" and kinds[-1] == kind:
            tokens[-1] += character
        else:
            tokens.append(character)
            kinds.append(kind)
    return tokens
