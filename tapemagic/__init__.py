"""tapemagic: see TensorFlow's automatic differentiation in notebooks.

``%load_ext tapemagic`` registers ``%%tape`` and ``%tape``. Nothing here imports
TensorFlow or IPython: they load on first use, so loading the extension stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["tape", "watch", "Engine", "load_ipython_extension", "__version__"]


def load_ipython_extension(ipython: Any) -> None:
    from . import _quiet
    from ._magics import TapeMagics

    _quiet.install()
    ipython.register_magics(TapeMagics)


def __getattr__(name: str) -> Any:
    if name == "tape":
        from ._api import tape

        return tape
    if name == "watch":
        from .engine import watch

        return watch
    if name == "Engine":
        from .engine import Engine

        return Engine
    raise AttributeError(f"module 'tapemagic' has no attribute {name!r}")
