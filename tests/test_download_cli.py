"""download.py as a process: killed in the middle of a download, the same command finishes the job."""

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py

import download
from common import datasets, downloads
from tests.fixtures_http import http_server_fixture, make_mnist_files  # noqa: F401 (registers "http_server")

REPO = Path(__file__).resolve().parents[1]
# The child process runs download.main with the fixture files' MD5s as the official ones.
CHILD = """
import dataclasses, json, sys
from common import datasets
md5 = json.loads(sys.argv[1])
spec = datasets.OFFICIAL["MNIST"]
datasets.OFFICIAL["MNIST"] = dataclasses.replace(spec, resources=tuple(
    dataclasses.replace(r, md5=md5[r.filename]) for r in spec.resources))
import download
download.main(sys.argv[2:])
"""


def test_killed_download_resumes_on_the_next_run(http_server, in_tmp, monkeypatch):
    files = make_mnist_files(20, 10)
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    for name, data in files.items():
        http_server.add(f"/m/{name}", data, **({"stall_after": 400} if name.startswith("train-images") else {}))
    argv = ["--datasets", "MNIST", "--dimension", "4", "--mirror", http_server.url("/m/"), "--no_progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(datasets.CACHE_ENV, None)
    child = subprocess.Popen([sys.executable, "-c", CHILD, __import__("json").dumps(md5), *argv], cwd=in_tmp, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    part = in_tmp / "datasets" / ".cache" / "mnist" / "train-images-idx3-ubyte.gz.part"
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size == 400):
        assert child.poll() is None and time.monotonic() < deadline, child.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # no chance to clean up
    child.wait(timeout=10)
    assert not (in_tmp / "datasets" / "mnist").exists()

    spec = datasets.OFFICIAL["MNIST"]
    patched = dataclasses.replace(spec, resources=tuple(dataclasses.replace(r, md5=md5[r.filename])
                                                        for r in spec.resources))
    monkeypatch.setitem(datasets.OFFICIAL, "MNIST", patched)
    monkeypatch.setattr(downloads, "DEFAULT_POLICY", downloads.RetryPolicy(attempts=2, backoff=0.01, timeout=3))
    monkeypatch.delenv(datasets.CACHE_ENV, raising=False)
    download.main(argv)
    assert http_server.requested("train-images-idx3-ubyte.gz")[-1].range == "bytes=400-"
    assert (part.parent / "train-images-idx3-ubyte.gz").read_bytes() == files["train-images-idx3-ubyte.gz"]
    with h5py.File(in_tmp / "datasets" / "mnist" / "data.hdf5", "r") as h5:
        assert len(h5) == 30 and h5["29"]["code"].shape == (4,)
    assert not list(in_tmp.rglob("*.part"))
