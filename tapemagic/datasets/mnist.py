"""MNIST with Keras's signature, made to work offline and where Google's storage is out of reach.

``load_data()`` is ``tf.keras.datasets.mnist.load_data()`` that tries, in order:

1. a local directory with the four original IDX files (``directory=``, else the
   environment variable ``TAPEMAGIC_MNIST_DIR``);
2. Keras's own cache and download (``~/.keras/datasets/mnist.npz``);
3. public mirrors of the IDX files, downloaded into ``cache_dir``.

Every IDX file is checked against its published sha256 before it is used; a download
is written to a temporary file and renamed into place only once its hash is right,
so no half file is ever left where a later call would read it. The arrays are the
same whichever source served them: uint8 images (N, 28, 28) and uint8 labels (N,).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import _i18n
from .._i18n import _
from .._setting import language_for

__all__ = ["load_data", "MnistError", "FILES", "MIRRORS"]

# name -> (sha256 as published, size in bytes)
FILES = {
    "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
ENVIRONMENT_VARIABLE = "TAPEMAGIC_MNIST_DIR"
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


class MnistError(OSError):
    """MNIST could not be loaded; the message lists every source tried and what to do."""


def load_data(path: str = "mnist.npz", *, directory: str | os.PathLike[str] | None = None,
              keras: bool = True, mirrors: Sequence[str] = MIRRORS,
              cache_dir: str | os.PathLike[str] | None = None, timeout: float = 30.0,
              language: str | None = None) -> Arrays:
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, as Keras does.

    Parameters
    ----------
    path
        Keras's cache file name (used by the Keras source only).
    directory
        A directory holding the four IDX files (``.gz``); default ``$TAPEMAGIC_MNIST_DIR``.
    keras
        Whether to try Keras's cache and download.
    mirrors
        Base URLs of IDX mirrors to try, in order (``()`` for none).
    cache_dir
        Where mirror downloads are kept (default ``~/.cache/tapemagic/mnist``).
    timeout
        Seconds to wait on each network connection.
    language
        The language of the error message: "en", "zh" or "auto"; by default ``%config TapeMagics.language``
        where the extension is loaded, else "auto" (the locale).

    Raises
    ------
    MnistError
        When no source worked, with what was tried and why each failed.
    """
    with _i18n.language(language_for(language)):
        return _load(path, directory, keras, mirrors, cache_dir, timeout)


def _load(path: str, directory: str | os.PathLike[str] | None, keras: bool, mirrors: Sequence[str],
          cache_dir: str | os.PathLike[str] | None, timeout: float) -> Arrays:
    tried: list[str] = []
    directory = directory if directory is not None else os.environ.get(ENVIRONMENT_VARIABLE)
    if directory:
        found = _attempt(tried, _("directory {directory}", directory=directory),
                         lambda: _from_directory(Path(directory)))
        if found is not None:
            return found
    else:
        tried.append(_("directory: none given (pass directory=... or set {variable})", variable=ENVIRONMENT_VARIABLE))
    if keras:
        found = _attempt(tried, _("Keras's cache and download"), lambda: _from_keras(path))
        if found is not None:
            return found
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "tapemagic" / "mnist"
    for mirror in mirrors:
        found = _attempt(tried, _("mirror {url}", url=mirror), lambda mirror=mirror: _from_mirror(mirror, cache, timeout))
        if found is not None:
            return found
    raise MnistError(_(
        "could not load MNIST. Tried:\n{tried}\nTo fix: download the four IDX files (see FILES in {module}) into a "
        "directory and pass directory=... or set {variable}.", tried="\n".join(f"  - {line}" for line in tried),
        module=__name__, variable=ENVIRONMENT_VARIABLE))


def _attempt(tried: list[str], what: str, load: Callable[[], Arrays]) -> Arrays | None:
    try:
        return load()
    except KeyboardInterrupt:
        raise
    except Exception as error:  # each source may fail in its own way; all are reported at the end
        tried.append(_("{what}: {error}", what=what, error=error))
        return None


def _from_directory(directory: Path) -> Arrays:
    if not directory.is_dir():
        raise MnistError(_("{directory} is not a directory", directory=directory))
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise MnistError(_("missing {files} in {directory}", files=", ".join(missing), directory=directory))
    for name in FILES:
        _verify(directory / name)
    return _arrays(directory)


def _verify(file: Path, name: str | None = None) -> None:
    """Check ``file`` against the published sha256 of ``name`` (default: the file's own name)."""
    expected, size = FILES[name or file.name]
    actual_size = file.stat().st_size
    digest = _sha256(file)
    if digest != expected and actual_size < size:
        raise MnistError(_(
            "{file} is truncated ({size} of {expected_size} bytes): its sha256 is {digest}..., the published one is "
            "{expected}...; delete it and download it again", file=file, size=actual_size, expected_size=size,
            digest=digest[:16], expected=expected[:16]))
    if digest != expected:
        raise MnistError(_(
            "{file} is corrupted: its sha256 is {digest}..., the published one is {expected}...; delete it and "
            "download it again", file=file, digest=digest[:16], expected=expected[:16]))


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _arrays(directory: Path) -> Arrays:
    x_train = _idx(directory / "train-images-idx3-ubyte.gz", "images")
    y_train = _idx(directory / "train-labels-idx1-ubyte.gz", "labels")
    x_test = _idx(directory / "t10k-images-idx3-ubyte.gz", "images")
    y_test = _idx(directory / "t10k-labels-idx1-ubyte.gz", "labels")
    return (x_train, y_train), (x_test, y_test)


def _idx(file: Path, kind: str) -> np.ndarray:
    with gzip.open(file, "rb") as stream:
        data = stream.read()
    magic = int.from_bytes(data[:4], "big")
    if magic != _MAGIC[kind]:
        raise MnistError(_("{file} is not an IDX {kind} file (magic {magic})", file=file, kind=kind,
                           magic=f"{magic:#010x}"))
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def _from_keras(path: str) -> Arrays:
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data(path)
    return (x_train, y_train), (x_test, y_test)


def _from_mirror(mirror: str, cache: Path, timeout: float) -> Arrays:
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MnistError(_("cannot create the cache directory {directory} ({error}); pass cache_dir=... somewhere "
                           "writable", directory=cache, error=error)) from None
    for name in FILES:
        target = cache / name
        if target.is_file():
            try:
                _verify(target)
                continue
            except MnistError:
                target.unlink()  # a bad file in our own cache is replaced, never used
        _download(mirror.rstrip("/") + "/" + name, target, timeout)
    return _arrays(cache)


def _download(url: str, target: Path, timeout: float) -> None:
    """Download to a temporary file beside ``target``; rename it into place only once its sha256 is right."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as error:
        raise MnistError(_("cannot write in {directory} ({error}); pass cache_dir=... somewhere writable",
                           directory=target.parent, error=error)) from None
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
        _verify(Path(temporary), target.name)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)

