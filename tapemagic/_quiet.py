"""Keep TensorFlow's C++ start-up chatter out of notebook cells.

TensorFlow writes lines such as ``cudart_stub.cc:31] Could not find cuda drivers`` to
file descriptor 2 while its libraries load, before its own log level applies, with a
timestamp and a process id: noise for learners and a diff for nbval. ``%load_ext
tapemagic`` installs a one-shot import hook that silences descriptor 2 only while the
``tensorflow`` package itself is imported (by whatever cell imports it). Python
exceptions from that import still propagate; nothing else is silenced.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any, Iterator

__all__ = ["install"]


@contextlib.contextmanager
def _descriptor_silenced(fd: int = 2) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (some embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with _descriptor_silenced():
            self._loader.exec_module(module)
            # Devices are looked for on first use ("failed call to cuInit" on machines without a GPU):
            # look now, while descriptor 2 is silenced. TensorFlow would do the same on its first op.
            with contextlib.suppress(Exception):
                module.config.list_physical_devices()

    def __getattr__(self, name: str) -> Any:  # resources, get_data, is_package ... of the real loader
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        _remove()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _QuietTensorFlowFinder)]


def install() -> None:
    """Quiet the next import of TensorFlow and its later C++ INFO/WARNING logs (unless the user chose a level)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())
