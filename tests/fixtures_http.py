"""A local HTTP server on 127.0.0.1 and small files in the official dataset formats, for offline tests.

Usage in a test module::

    from tests.fixtures_http import http_server_fixture  # noqa: F401  (registers the fixture "http_server")

    def test_x(http_server):
        http_server.add("/mnist/train-images-idx3-ubyte.gz", data, cut_after=100)  # first answer stops at 100 B
        url = http_server.url("/mnist/")
        ...
        assert http_server.requests[-1].range == "bytes=100-"

The server answers GET with the registered bytes (200), honours ``Range: bytes=N-`` (206, or 416 past the
end), answers 404 for unknown paths, can return a fixed error status, and can drop the connection after a
number of bytes for the first ``cuts`` requests of a path (an interrupted download). :func:`dead_url` gives a
URL where nothing listens. The ``make_*`` builders return bytes of tiny MNIST / CIFAR-10 / SVHN files in the
official formats, with known pixel values.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import io
import pickle
import socket
import tarfile
import threading

import numpy as np
import pytest


@dataclasses.dataclass
class Route:
    data: bytes
    status: int = 200
    cut_after: int | None = None  # drop the connection after this many body bytes ...
    cuts: int = 1  # ... for this many requests
    honor_range: bool = True
    stall_after: int | None = None  # send this many bytes, then hang until the server stops ...
    stalls: int = 1  # ... for this many requests


@dataclasses.dataclass(frozen=True)
class Request:
    path: str
    range: str | None


class LocalHTTPServer:
    """A threaded HTTP/1.0 server on an ephemeral 127.0.0.1 port; use as a context manager."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self._stop = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server._answer(self)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes, **route) -> str:
        """Serve ``data`` at ``path`` (options: the fields of :class:`Route`); returns its URL."""
        self.routes[path] = Route(data, **route)
        return self.url(path)

    def requested(self, suffix: str = "") -> list[Request]:
        return [r for r in self.requests if r.path.endswith(suffix)]

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        header = handler.headers.get("Range")
        self.requests.append(Request(path, header))
        route = self.routes.get(path)
        if route is None or route.status != 200:
            handler.send_error(404 if route is None else route.status)
            return
        data, start = route.data, 0
        if header and route.honor_range and header.startswith("bytes="):
            start = int(header[6:].split("-", 1)[0])
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if route.stall_after is not None and route.stalls > 0:
            route.stalls -= 1
            handler.wfile.write(body[: route.stall_after])
            handler.wfile.flush()
            self._stop.wait(30)  # a download in progress that never finishes (the client gets killed)
            handler.close_connection = True
            return
        if route.cut_after is not None and route.cuts > 0:
            route.cuts -= 1
            handler.wfile.write(body[: route.cut_after])
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)  # the client sees a short read
            handler.close_connection = True
            return
        handler.wfile.write(body)

    def __enter__(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(name="http_server")
def http_server_fixture():
    """A running :class:`LocalHTTPServer`, shut down after the test."""
    with LocalHTTPServer() as server:
        yield server


def dead_url(path: str = "/") -> str:
    """A 127.0.0.1 URL on a port where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# ------------------------------------------------------------------------------------ official-format files


def pattern_images(n: int, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """uint8 [n, *shape] with image i distinguishable: value (i + offset)·7 + 3·flat index, mod 256."""
    flat = np.arange(int(np.prod(shape)))
    return np.stack([((i + offset) * 7 + 3 * flat) % 256 for i in range(n)]).astype(np.uint8).reshape((n, *shape))


def make_idx(array: np.ndarray, gz: bool = True) -> bytes:
    """IDX bytes (magic 2051 for [n, 28, 28], 2049 for [n]), gzipped by default."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def make_mnist_files(n_train: int = 20, n_test: int = 10) -> dict[str, bytes]:
    """The four official MNIST file names -> gzipped IDX bytes; labels are i mod 10."""
    train, test = pattern_images(n_train, (28, 28)), pattern_images(n_test, (28, 28), offset=n_train)
    return {
        "train-images-idx3-ubyte.gz": make_idx(train),
        "train-labels-idx1-ubyte.gz": make_idx(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": make_idx(test),
        "t10k-labels-idx1-ubyte.gz": make_idx(np.arange(n_test) % 10),
    }


def cifar_rows(n: int, offset: int = 0) -> np.ndarray:
    """uint8 [n, 3072] CIFAR rows (CHW order) with distinguishable values."""
    return pattern_images(n, (3072,), offset)


def make_cifar10_tarball(per_batch: int = 4, n_test: int = 4, bytes_keys: bool = True) -> bytes:
    """``cifar-10-python.tar.gz`` bytes: ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
    ``batches.meta``; pickles of protocol 2 with bytes keys (as the real Python-2 files) or str keys.
    Labels of row j of the whole set are j mod 10."""

    def key(name):
        return name.encode() if bytes_keys else name

    members, start = {}, 0
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        batch = {key("batch_label"): key(name), key("labels"): [(start + j) % 10 for j in range(n)],
                 key("data"): cifar_rows(n, offset=start), key("filenames"): [key(f"{j}.png") for j in range(n)]}
        members[name] = pickle.dumps(batch, protocol=2)
        start += n
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    members["batches.meta"] = pickle.dumps({key("label_names"): [key(n) for n in names]}, protocol=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_svhn_mats(n_train: int = 6, n_test: int = 4) -> dict[str, bytes]:
    """``train_32x32.mat`` / ``test_32x32.mat`` bytes: ``X`` uint8 [32, 32, 3, n], ``y`` [n, 1] in 1..10
    (image j of the whole set has label j mod 10 + 1, so 10 = the digit 0 appears for j = 9)."""
    import scipy.io

    out = {}
    for name, n, offset in (("train_32x32.mat", n_train, 0), ("test_32x32.mat", n_test, n_train)):
        images = pattern_images(n, (32, 32, 3), offset)
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, {"X": np.transpose(images, (1, 2, 3, 0)),
                                  "y": ((np.arange(n) + offset) % 10 + 1).reshape(-1, 1).astype(np.uint8)})
        out[name] = buffer.getvalue()
    return out
