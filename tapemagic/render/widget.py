"""The ipywidgets view (filled in by the widgets work); no widget bundle yet."""
from __future__ import annotations

from typing import Any


def bundle(result: Any, required: bool = False) -> dict[str, Any]:
    return {}
