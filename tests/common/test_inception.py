"""Feature extractors and the evaluator, offline.

The Inception loader is exercised on tiny frozen GraphDefs with the real graphs' tensor names
(``Mul`` -> ``pool_3`` / ``logits`` for TF-GAN's graph; ``ExpandDims`` -> in-graph resize -> ``pool_3`` for
TTUR's), tarred and served by an HTTP server on 127.0.0.1. Also: legacy resize parity (slogan check 27),
checksum handling, the classifier-features trainer on tiny generated data, and ``common.evaluate``.
"""

import functools
import http.server
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import classifier_features as CF
from common import evaluate as E
from common import inception as I
from common import metrics as M
from common.downloads import RetryPolicy, file_digest
from common.errors import UsageError

F, C = 4, 5  # tiny graphs: feature and class counts
RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((3, F)).astype(np.float32)
W2 = RNG.standard_normal((F, C)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# tiny frozen graphs with the real graphs' interfaces, and their NumPy references
# ----------------------------------------------------------------------------------------------------


def _head(x):
    """1x1 conv + ReLU + spatial mean: batch-agnostic like Inception's convs; named pool_3."""
    h = tf.nn.relu(tf.nn.conv2d(x, tf.constant(W1[None, None]), 1, "VALID"))
    return tf.reduce_mean(h, axis=[1, 2], keepdims=True, name="pool_3")


def tfgan_like_graph_def():
    graph = tf.Graph()
    with graph.as_default():
        # Upstream of Mul (skipped by the input_map): a 0..1 image scaled to [-1, 1], batch 1 like the original.
        src = tf.compat.v1.placeholder(tf.float32, [1, 299, 299, 3], name="ResizeBilinear")
        mul = tf.multiply(tf.subtract(src, 0.5, name="Sub"), 2.0, name="Mul")
        pool = _head(mul)
        tf.matmul(tf.reshape(pool, [-1, F]), tf.constant(W2), name="logits")
    return graph.as_graph_def()


def ttur_like_graph_def():
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.float32, [None, None, 3], name="Cast")
        expand = tf.expand_dims(image, 0, name="ExpandDims")
        resized = tf.raw_ops.ResizeBilinear(images=expand, size=[299, 299], align_corners=False)
        pool = _head((resized - 128.0) / 128.0)
        tf.reshape(pool, [1, F], name="pool_3/_reshape")  # the real graph's batch-1 tail
    return graph.as_graph_def()


def reference_tfgan(images):
    x = tf.compat.v1.image.resize_bilinear(images, [299, 299]).numpy()
    pool = np.maximum(x @ W1, 0).mean(axis=(1, 2))
    return pool, pool @ W2


def reference_ttur(images):
    x = tf.compat.v1.image.resize_bilinear((images + 1.0) * 127.5, [299, 299]).numpy()
    return np.maximum(((x - 128.0) / 128.0) @ W1, 0).mean(axis=(1, 2))


def _tar_gz(path: Path, member: str, graph_def) -> Path:
    data = graph_def.SerializeToString()
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Both archives under their official names, served over HTTP on 127.0.0.1 (bounded: shut down after)."""
    root = tmp_path_factory.mktemp("www")
    _tar_gz(root / I.TFGAN_INCEPTION.archive_name, I.TFGAN_INCEPTION.member, tfgan_like_graph_def())
    _tar_gz(root / I.TTUR_INCEPTION.archive_name, I.TTUR_INCEPTION.member, ttur_like_graph_def())

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _images(n, size=8, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# resize parity (slogan check 27)
# ----------------------------------------------------------------------------------------------------


def test_legacy_resize_matches_tf1_and_differs_from_tf2_resize():
    board = (np.indices((4, 4)).sum(axis=0) % 2).astype(np.float32)[None, :, :, None]
    ours = I.legacy_resize_bilinear(board, (7, 7)).numpy()
    np.testing.assert_array_equal(ours, tf.compat.v1.image.resize_bilinear(board, [7, 7]).numpy())
    gap = np.abs(ours - tf.image.resize(board, [7, 7], method="bilinear").numpy()).max()
    assert 0.25 < gap < 0.3


# ----------------------------------------------------------------------------------------------------
# graph loading, download, cache, checksum
# ----------------------------------------------------------------------------------------------------


def test_tfgan_graph_from_url_matches_reference_and_is_cached(served, tmp_path):
    root, base = served
    cache = tmp_path / "cache"
    url = f"{base}/{I.TFGAN_INCEPTION.archive_name}"
    net = I.load_inception("tfgan", url=url, cache_dir=cache, batch_size=2)
    assert not cache.exists()  # lazy: nothing fetched before the first call
    images = _images(5)
    feats, logits = net.features_and_logits(images)  # batches 2, 2, 1: the batch size is dynamic
    ref_feats, ref_logits = reference_tfgan(images)
    assert feats.shape == (5, F) and logits.shape == (5, C)
    np.testing.assert_allclose(feats, ref_feats, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-5)
    archive = cache / I.TFGAN_INCEPTION.archive_name
    recorded = (cache / (archive.name + ".sha256")).read_text().split()[0]
    assert recorded == file_digest(root / archive.name, "sha256")
    # A second extractor reads the cache: the URL is dead now and nothing is downloaded.
    again = I.load_inception("tfgan", url=f"{base}/missing.tar.gz", cache_dir=cache, batch_size=3)
    np.testing.assert_allclose(again.features(images[:2]), ref_feats[:2], rtol=1e-5, atol=1e-6)
    assert sorted(p.name for p in cache.iterdir()) == [archive.name, archive.name + ".sha256"]


def test_ttur_graph_feeds_0_255_and_drops_the_last_partial_batch(served, tmp_path):
    _, base = served
    net = I.load_inception("ttur", url=f"{base}/{I.TTUR_INCEPTION.archive_name}", cache_dir=tmp_path, batch_size=2)
    assert net.drop_remainder and not net.has_logits
    images = _images(5, size=6)
    feats = net.features(images)
    assert feats.shape == (4, F)
    np.testing.assert_allclose(feats, reference_ttur(images[:4]), rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="logits"):
        net.logits(images)


def test_checksum_mismatch_caches_nothing(served, tmp_path):
    _, base = served
    net = I.load_inception("tfgan", url=f"{base}/{I.TFGAN_INCEPTION.archive_name}", cache_dir=tmp_path, sha256="0" * 64)
    with pytest.raises(UsageError, match=r"checksum mismatch \(sha256 \w+ != expected 0+\).*nothing was cached"):
        net.features(_images(1))
    assert list(tmp_path.iterdir()) == []


def test_tampered_cache_and_offline_errors(served, tmp_path):
    root, base = served
    name = I.TFGAN_INCEPTION.archive_name
    I.resolve_graph_file(I.TFGAN_INCEPTION, url=f"{base}/{name}", cache_dir=tmp_path)
    with open(tmp_path / name, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(UsageError, match="delete it to download again"):
        I.resolve_graph_file(I.TFGAN_INCEPTION, cache_dir=tmp_path)
    offline = tmp_path / "offline"
    with pytest.raises(UsageError, match="HTTP 404.*--inception_path"):
        I.resolve_graph_file(I.TFGAN_INCEPTION, url=f"{base}/nothing-here.tgz", cache_dir=offline)
    with socket.socket() as sock:  # a port on 127.0.0.1 where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/{name}"
    with pytest.raises(UsageError, match="nothing was cached.*--inception_path"):
        I.resolve_graph_file(I.TFGAN_INCEPTION, url=dead, cache_dir=offline, policy=RetryPolicy(attempts=1))
    assert not offline.exists() or list(offline.iterdir()) == []


def test_explicit_pb_path_and_missing_path(tmp_path):
    pb = tmp_path / "graph.pb"
    pb.write_bytes(tfgan_like_graph_def().SerializeToString())
    net = I.InceptionNet("tfgan", path=pb)
    images = _images(3)
    np.testing.assert_allclose(net.logits(images), reference_tfgan(images)[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError, match="--inception_path"):
        I.InceptionNet("tfgan", path=tmp_path / "absent.tar.gz").features(images)
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff" * 10)
    with pytest.raises(UsageError, match="bad.pb"):
        I.InceptionNet("tfgan", path=bad).features(images)
    with pytest.raises(UsageError, match=r"\[N, H, W, 3\]"):
        net.features(images[..., :1])


def _real_inception_file():
    candidate = os.environ.get("INCEPTION_TFGAN_PATH") or I.TFGAN_INCEPTION.archive_name
    return candidate if os.path.isfile(candidate) else None


@pytest.mark.skipif(_real_inception_file() is None, reason="real Inception archive not present locally")
def test_real_tfgan_inception_if_present():
    net = I.InceptionNet("tfgan", path=_real_inception_file())
    feats, logits = net.features_and_logits(_images(2, size=32))
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert np.isfinite(feats).all() and np.isfinite(logits).all()


# ----------------------------------------------------------------------------------------------------
# classifier features
# ----------------------------------------------------------------------------------------------------


def _digits_npz(path, n=48, seed=2):
    """MNIST-like uint8 [N, 28, 28] with labels 0..3, each class a bright square at its own place."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 4 + 5 * label : 10 + 5 * label, 8:20] = 250
    np.savez(path, x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    return x, y


@pytest.fixture(scope="module")
def trained_classifier(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clf")
    _digits_npz(folder / "digits.npz")
    out = folder / "clf.keras"
    meta = CF.main(
        [
            "--dataset",
            "mnist",
            "--source",
            str(folder / "digits.npz"),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--batch_size",
            "16",
        ]
    )
    return out, meta


def test_classifier_training_writes_model_and_meta(trained_classifier):
    out, meta = trained_classifier
    assert meta["num_train"] == 48 and meta["dataset"] == "mnist" and "not comparable" in meta["note"]
    assert json.loads(Path(str(out) + ".json").read_text())["test_accuracy"] == meta["test_accuracy"]
    clf = CF.load_classifier(out, batch_size=5)
    images = np.random.default_rng(3).uniform(-1, 1, (7, 28, 28, 1)).astype(np.float32)
    feats, logits = clf.features_and_logits(images)
    assert feats.shape == (7, 128) and logits.shape == (7, 10)
    assert feats.min() >= 0 and np.isfinite(logits).all()  # ReLU features
    # Other sizes are resized to 28x28; the batching does not change the result.
    np.testing.assert_allclose(clf.logits(np.repeat(images, 2, axis=0)[:, ::1])[::2], logits, rtol=1e-5, atol=1e-5)
    assert clf.features(np.zeros((2, 32, 32, 1), np.float32)).shape == (2, 128)
    with pytest.raises(UsageError, match=r"\[N, H, W, 1\]"):
        clf.features(np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(SystemExit) as exc:
        CF.main(["--dataset", "mnist", "--source", "x.npz", "--out", str(out)])
    assert exc.value.code == 2  # exists, no --overwrite


def test_classifier_sources(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (6, 32, 32, 3)).astype(np.uint8)
    labels = [0, 1, 2, 0, 1, 2]
    # CIFAR-10 python batches: uint8 rows of 3072 in CHW order.
    batches = tmp_path / "cifar-10-batches-py"
    batches.mkdir()
    rows = images.transpose(0, 3, 1, 2).reshape(6, -1)
    for name, part in (("data_batch_1", slice(0, 4)), ("test_batch", slice(4, 6))):
        with open(batches / name, "wb") as handle:
            pickle.dump({b"data": rows[part], b"labels": labels[part]}, handle)
    (x, y), (xt, yt) = CF.load_source(batches, "cifar10")
    np.testing.assert_allclose(x, images[:4] / 127.5 - 1, atol=1e-6)
    assert y.tolist() == labels[:4] and yt.tolist() == labels[4:]
    # Image folder train/<class>/ and a tar archive of it.
    folder = tmp_path / "jpg"
    for i, (img, label) in enumerate(zip(images, labels)):
        (folder / "train" / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / "train" / f"class{label}" / f"{i}.png")
    (x, y), test = CF.load_source(folder, "cifar10")
    assert test is None and sorted(y.tolist()) == sorted(labels) and x.shape == (6, 32, 32, 3)
    with tarfile.open(tmp_path / "jpg.tar.gz", "w:gz") as archive:
        archive.add(folder / "train", arcname="cifar/train")
    (xa, ya), _ = CF.load_source(tmp_path / "jpg.tar.gz", "cifar10")
    assert sorted(ya.tolist()) == sorted(labels) and np.isclose(np.sort(xa.ravel()), np.sort(x.ravel())).all()
    with pytest.raises(UsageError, match=r"\(28, 28, 1\)"):
        CF.load_source(batches, "mnist")


def test_classifier_source_defaults_to_the_download_cache(monkeypatch):
    from common import datasets

    digits = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28) % 251
    labels = np.array([[7], [1], [0]], dtype=np.uint8)  # keras-style [n, 1] labels
    monkeypatch.setattr(datasets, "load_mnist", lambda: ((digits, labels), (digits[:1], labels[:1])))
    (x, y), (xt, yt) = CF.load_source(None, "mnist")
    assert x.shape == (3, 28, 28, 1) and y.tolist() == [7, 1, 0] and yt.tolist() == [7]
    np.testing.assert_allclose(x[..., 0], digits / 127.5 - 1, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# the evaluator
# ----------------------------------------------------------------------------------------------------


def test_evaluate_cli_with_classifier_features(trained_classifier, tmp_path):
    out, _ = trained_classifier
    x, _ = _digits_npz(tmp_path / "real_raw.npz", n=20, seed=5)
    np.savez(tmp_path / "real.npz", images=x[..., None])
    fake = np.random.default_rng(6).uniform(-1, 1, (16, 28, 28, 1)).astype(np.float32)
    np.savez(tmp_path / "fake.npz", images=fake, step=np.array(1200))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = [
        str(run_dir),
        "--images",
        str(tmp_path / "fake.npz"),
        "--real",
        str(tmp_path / "real.npz"),
        "--features",
        "classifier",
        "--classifier",
        str(out),
        "--metrics",
        "fid,is,kid",
        "--splits",
        "2",
    ]
    record = E.main(args)
    clf = CF.load_classifier(out)
    real_feats = clf.features(x[..., None].astype(np.float32) / 127.5 - 1)
    fake_feats, fake_logits = clf.features_and_logits(fake)
    assert record["step"] == 1200 and record["features"] == "classifier-mnist"
    assert record["num_images"] == 16 and record["num_real"] == 20
    np.testing.assert_allclose(record["classifier_fid"], M.fid_from_activations(real_feats, fake_feats), rtol=1e-4)
    np.testing.assert_allclose(record["classifier_is"], M.inception_score(fake_logits, splits=2)[0], rtol=1e-5)
    np.testing.assert_allclose(record["classifier_kid"], M.kid_from_activations(real_feats, fake_feats)[0], rtol=1e-4)
    E.main(args + ["--step", "1300", "--metrics", "is"])
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1200, 1300] and "classifier_fid" not in lines[1]


def test_evaluate_cli_with_served_inception_and_precomputed_stats(served, tmp_path):
    _, base = served
    fake, real = _images(6, seed=7), _images(9, seed=8)
    ref_real, _ = reference_tfgan(real)
    ref_fake, ref_logits = reference_tfgan(fake)
    mu, sigma = M.activation_statistics(ref_real)
    np.savez(tmp_path / "fake.npz", fake=((fake + 1) * 127.5).astype(np.float32))  # 0..255 floats
    np.savez(tmp_path / "stats.npz", m=mu, s=sigma)
    record = E.main(
        [
            str(tmp_path),
            "--images",
            str(tmp_path / "fake.npz"),
            "--real",
            str(tmp_path / "stats.npz"),
            "--step",
            "7",
            "--pixel_range",
            "0,255",
            "--cache_dir",
            str(tmp_path / "cache"),
            "--inception_url",
            f"{base}/{I.TFGAN_INCEPTION.archive_name}",
            "--fid_method",
            "scipy",
        ]
    )
    assert record["features"] == "inception-tfgan" and record["num_real"] is None
    np.testing.assert_allclose(record["fid"], M.fid_from_activations(ref_real, ref_fake, method="scipy"), rtol=1e-3)
    np.testing.assert_allclose(record["is"], M.inception_score(ref_logits)[0], rtol=1e-4)


def test_evaluate_run_with_sample_fn_and_stand_in(tmp_path):
    projection = np.random.default_rng(9).standard_normal((4 * 4 * 3, 6))

    class StandIn:
        name = "stand-in"

        def features(self, images):
            return np.asarray(images).reshape(len(images), -1) @ projection

        def logits(self, images):
            return self.features(images)[:, :3]

    calls = []

    def sample_fn(n):
        calls.append(n)
        return _images(n, size=4, seed=len(calls))

    real = _images(30, size=4, seed=10)
    record = E.evaluate_run(
        tmp_path, 3, sample_fn, real, extractor=StandIn(), num_samples=25, sample_batch=10, metrics=("fid", "is")
    )
    assert calls == [10, 10, 5] and record["num_images"] == 25 and record["features"] == "stand-in"
    fake = np.concatenate([_images(n, size=4, seed=i + 1) for i, n in enumerate(calls)])
    expected = M.fid_from_activations(StandIn().features(real), StandIn().features(fake))
    np.testing.assert_allclose(record["fid"], expected, rtol=1e-10)
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 3


def test_evaluate_usage_errors(tmp_path):
    np.savez(tmp_path / "wide.npz", images=np.full((4, 8, 8, 3), 3.0, np.float32))
    with pytest.raises(UsageError, match=r"--pixel_range 0,255"):
        E.run(E.build_parser().parse_args([str(tmp_path), "--images", str(tmp_path / "wide.npz"), "--step", "1"]))
    with pytest.raises(UsageError, match="--step"):
        E.run(E.build_parser().parse_args([str(tmp_path), "--images", str(tmp_path / "wide.npz")]))
    with pytest.raises(UsageError, match="need --real"):
        E.compute_metrics(_images(4), extractor=object(), metrics=("fid",))
    with pytest.raises(UsageError, match="lacks"):
        E.compute_metrics(_images(4), extractor=I.InceptionNet("ttur"), metrics=("is",))
    # One subprocess for the exit status: bad input is reported before TensorFlow is imported.
    proc = subprocess.run(
        [sys.executable, "-m", "common.evaluate", str(tmp_path / "no-run"), "--images", "x.npz", "--step", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: RUN_DIR {tmp_path / 'no-run'}: not a directory"]
