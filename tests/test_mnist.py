"""The offline MNIST loader: local IDX files, sha256 checks, atomic downloads from a mirror
(a real HTTP server on 127.0.0.1), and clear messages when a source is wrong."""
from __future__ import annotations

import http.server
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import MNIST_DIR
from tapemagic.datasets import mnist

SHARED = Path(MNIST_DIR)
pytestmark = pytest.mark.skipif(not (SHARED / "t10k-labels-idx1-ubyte.gz").is_file(), reason="shared MNIST files not found")


def copy_of_shared(tmp_path: Path) -> Path:
    directory = tmp_path / "idx"
    shutil.copytree(SHARED, directory, ignore=shutil.ignore_patterns("*.md", "SHA256SUMS"))
    return directory


class Mirror:
    """Serves the IDX files; ``mode`` makes it send them whole, truncated, corrupted or cut off mid-stream."""

    def __init__(self) -> None:
        self.mode = "whole"
        self.requests: list[str] = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                name = self.path.rsplit("/", 1)[-1]
                mirror.requests.append(name)
                data = (SHARED / name).read_bytes() if (SHARED / name).is_file() and name in mnist.FILES else None
                if data is None:
                    self.send_error(404)
                    return
                if mirror.mode == "truncated":
                    data = data[: len(data) // 2]
                elif mirror.mode == "corrupted":
                    data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mirror.mode == "interrupted":
                    self.wfile.write(data[: len(data) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # the connection drops mid-download
                    return
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    server = Mirror()
    yield server
    server.close()


def test_local_directory_gives_keras_shaped_arrays():
    (x_train, y_train), (x_test, y_test) = mnist.load_data(directory=SHARED, keras=False, mirrors=())
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert int(x_train.max()) == 255 and sorted(set(y_test.tolist())) == list(range(10))


def test_environment_variable_names_the_directory(monkeypatch):
    monkeypatch.setenv("TAPEMAGIC_MNIST_DIR", str(SHARED))
    (_, y_train), _ = mnist.load_data(keras=False, mirrors=())
    assert len(y_train) == 60000


def test_missing_directory_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("TAPEMAGIC_MNIST_DIR", raising=False)
    with pytest.raises(mnist.MnistError) as error:
        mnist.load_data(directory=tmp_path / "nowhere", keras=False, mirrors=())
    message = str(error.value)
    assert "nowhere is not a directory" in message and "To fix:" in message and "TAPEMAGIC_MNIST_DIR" in message


def test_corrupted_and_truncated_files_are_rejected_by_name(tmp_path):
    directory = copy_of_shared(tmp_path)
    labels = directory / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(labels.read_bytes())
    data[50] ^= 0xFF
    labels.write_bytes(bytes(data))
    with pytest.raises(mnist.MnistError, match=r"t10k-labels-idx1-ubyte.gz is corrupted: its sha256 is .*delete it and download it again"):
        mnist.load_data(directory=directory, keras=False, mirrors=())
    images = directory / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(mnist.MnistError, match=r"train-images-idx3-ubyte.gz is truncated \(1000 of 9912422 bytes\)"):
        mnist.load_data(directory=directory, keras=False, mirrors=())


def test_every_source_tried_is_listed(tmp_path, mirror):
    mirror.mode = "truncated"
    with pytest.raises(mnist.MnistError) as error:
        mnist.load_data(directory=tmp_path / "none", keras=False, mirrors=[mirror.url], cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "directory" in message and f"mirror {mirror.url}" in message and "truncated" in message


def test_mirror_download_matches_the_local_files(tmp_path, mirror, monkeypatch):
    monkeypatch.delenv("TAPEMAGIC_MNIST_DIR", raising=False)
    cache = tmp_path / "cache"
    arrays = mnist.load_data(directory=None, keras=False, mirrors=[mirror.url], cache_dir=cache)
    local = mnist.load_data(directory=SHARED, keras=False, mirrors=())
    for got, want in zip((a for pair in arrays for a in pair), (a for pair in local for a in pair)):
        np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in cache.iterdir()) == sorted(mnist.FILES)
    mirror.requests.clear()
    mnist.load_data(directory=None, keras=False, mirrors=[mirror.url], cache_dir=cache)
    assert mirror.requests == []  # verified cache files are reused


@pytest.mark.parametrize("mode", ["truncated", "corrupted", "interrupted"])
def test_bad_download_leaves_no_file_and_the_next_call_works(tmp_path, mirror, mode, monkeypatch):
    monkeypatch.delenv("TAPEMAGIC_MNIST_DIR", raising=False)
    cache = tmp_path / "cache"
    mirror.mode = mode
    with pytest.raises(mnist.MnistError) as error:
        mnist.load_data(keras=False, mirrors=[mirror.url], cache_dir=cache, timeout=10)
    assert mirror.url in str(error.value)
    assert [p.name for p in cache.iterdir()] == []  # no half file left, not even a .part
    mirror.mode = "whole"
    (_, y_train), _ = mnist.load_data(keras=False, mirrors=[mirror.url], cache_dir=cache)
    assert len(y_train) == 60000


def test_a_bad_file_in_the_cache_is_replaced(tmp_path, mirror, monkeypatch):
    monkeypatch.delenv("TAPEMAGIC_MNIST_DIR", raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    mnist.load_data(directory=None, keras=False, mirrors=[mirror.url], cache_dir=cache)
    assert mnist._sha256(cache / "t10k-labels-idx1-ubyte.gz") == mnist.FILES["t10k-labels-idx1-ubyte.gz"][0]


def test_unwritable_cache_directory_says_what_to_do(tmp_path, mirror, monkeypatch):
    monkeypatch.delenv("TAPEMAGIC_MNIST_DIR", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(mnist.MnistError, match="cannot create the cache directory .* pass cache_dir=... somewhere writable"):
        mnist.load_data(keras=False, mirrors=[mirror.url], cache_dir=blocker / "cache")
    # /proc exists and is a directory, but nobody, root included, can create files in it.
    with pytest.raises(mnist.MnistError, match="cannot write in /proc .* pass cache_dir=... somewhere writable"):
        mnist.load_data(keras=False, mirrors=[mirror.url], cache_dir="/proc")
