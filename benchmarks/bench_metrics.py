"""FID and IS over 10 000 samples with the project's metric code, and the metric math at Inception size.

    python benchmarks/bench_metrics.py [--n 10000] [--classifier clf_cifar.keras] [--dim 2048]
        [--routes tfgan,tfgan_svd,scipy]

Two records (``kind: task``, seconds of wall time and of process CPU time):

- ``metrics/fid_is_<n>``: :func:`common.evaluate.compute_metrics` (FID with TF-GAN's route and IS with 10
  splits) on ``n`` generated-image stand-ins against ``n`` real CIFAR-10 images: features and logits of both
  sets, their statistics, the Fréchet distance, the score. The Inception graphs are not available on this
  machine, so the features are those of :mod:`common.classifier_features`' CIFAR-10 classifier: the trained
  file given with ``--classifier``, else the same network with random weights (same cost, meaningless scores;
  the record's ``features`` says which). Real images: the CIFAR-10 test split from the dataset cache when it is
  there, else random pixels; the "generated" images are the real ones with noise (only the time matters).
- ``metrics/math_<dim>``: the NumPy/SciPy part alone at Inception's sizes: statistics of two [n, dim]
  activation sets (pool_3: dim 2048), the Fréchet distance per route of ``common.metrics.frechet_distance``
  given in ``--routes`` (default ``tfgan``, the default route; ``tfgan_svd`` and the scipy ``sqrtm`` route are
  several times slower at 2048), IS on [50000, 1008] logits in 10 splits, KID with 1024-row blocks.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.harness import emit, machine, peak_rss_mb, reset_peak_rss, time_once  # noqa: E402
from common import metrics as M  # noqa: E402


def _timed(fn, out: dict, key: str):
    """Run ``fn``; store its wall seconds under ``<key>_s`` and its process CPU seconds under ``<key>_cpu_s``."""
    value, wall, cpu = time_once(fn)
    out[f"{key}_s"] = round(wall, 3)
    out[f"{key}_cpu_s"] = round(cpu, 3)
    return value


def real_images(n: int) -> tuple[np.ndarray, str]:
    """``n`` CIFAR-10 test images (uint8 [n, 32, 32, 3]) from the dataset cache, else random pixels."""
    from common.datasets import load_cifar10
    from common.errors import UsageError

    try:
        _, (x_test, _) = load_cifar10()
    except UsageError:
        x_test = np.zeros((0, 32, 32, 3), np.uint8)
    if len(x_test) >= n:
        return x_test[:n], "CIFAR-10 test images (dataset cache)"
    pixels = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return pixels, "random pixels (CIFAR-10 is not in the dataset cache)"


def extractor(classifier: str | None):
    """The classifier-feature extractor and a sentence naming it."""
    from common.classifier_features import ClassifierFeatures, build_classifier, load_classifier

    if classifier:
        return load_classifier(classifier), f"common.classifier_features CIFAR-10 classifier {classifier}"
    from common.seeding import set_seed

    set_seed(0)
    model = build_classifier("cifar10")
    return (ClassifierFeatures(model, name="classifier-cifar10-untrained"),
            "common.classifier_features CIFAR-10 network with random weights (no trained file given: same cost, "
            "meaningless scores; Inception weights are not available here)")


def fid_is_record(n: int, classifier: str | None) -> dict:
    from common.evaluate import compute_metrics, to_unit_range

    reset_peak_rss()
    pixels, source = real_images(n)
    real = to_unit_range(pixels)
    noise = np.random.default_rng(1).uniform(-0.1, 0.1, real.shape).astype(np.float32)
    fake = np.clip(real + noise, -1.0, 1.0)
    net, features = extractor(classifier)
    net.features_and_logits(fake[:net.batch_size])  # trace the feature function outside the timing
    out = {"bench": f"metrics/fid_is_{n}", "kind": "task", "mode": "tf.function + numpy", "num_fake": n,
           "num_real": n}
    scores = _timed(lambda: compute_metrics(fake, real, extractor=net, metrics=("fid", "is"), fid_method="tfgan",
                                            splits=10), out, "fid_is")
    # The same work split into its parts: features of one set, then the statistics + distance, then IS.
    feats, logits = _timed(lambda: net.features_and_logits(fake), out, "features_one_set")
    real_feats = net.features(real)
    _timed(lambda: M.fid_from_activations(real_feats, feats, method="tfgan"), out, "fid_math")
    _timed(lambda: M.inception_score(logits, splits=10), out, "is_math")
    out.update(feature_dim=int(feats.shape[1]), classifier_fid=round(scores["classifier_fid"], 4),
               classifier_is=round(scores["classifier_is"], 4), features=features, real=source,
               peak_rss_mb=round(peak_rss_mb(), 1),
               note=f"common.evaluate.compute_metrics: FID (TF-GAN route) + IS (10 splits) of {n} generated vs {n} "
                    f"real images; features: {net.name}" + ("" if classifier else " (random weights)"))
    return out


def math_record(n: int, dim: int, routes: list[str]) -> dict:
    reset_peak_rss()
    rng = np.random.default_rng(0)
    # Correlated, ReLU-like activations, like pool_3 features.
    mix = rng.standard_normal((dim, dim)).astype(np.float32) / np.sqrt(dim)
    real = np.maximum(rng.standard_normal((n, dim)).astype(np.float32) @ mix, 0)
    fake = np.maximum(rng.standard_normal((n, dim)).astype(np.float32) @ mix + 0.05, 0)
    # OpenBLAS threads that compete with other processes can be several times slower than
    # OPENBLAS_NUM_THREADS=1; the record keeps the setting.
    out = {"bench": f"metrics/math_{dim}", "kind": "task", "mode": "numpy", "n": n, "dim": dim,
           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS")}
    stats_r, stats_g = _timed(lambda: (M.activation_statistics(real), M.activation_statistics(fake)), out, "stats")
    for method in routes:
        _timed(lambda m=method: M.frechet_distance(*stats_r, *stats_g, method=m), out, f"fid_{method}")
    logits = rng.standard_normal((50000, 1008)).astype(np.float32) * 3
    _timed(lambda: M.inception_score(logits, splits=10), out, "is_50000x1008_10splits")
    _timed(lambda: M.kid_from_activations(real, fake), out, "kid")
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["note"] = "random activations at Inception sizes (pool_3 2048, logits 1008)"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="generated and real images (10000 in the papers)")
    parser.add_argument("--classifier", help="a classifier trained by common.classifier_features (.keras)")
    parser.add_argument("--dim", type=int, default=2048, help="activation size of the math record")
    parser.add_argument("--routes", default="tfgan", help=f"comma-separated subset of {','.join(M.FID_METHODS)}")
    args = parser.parse_args()
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    if not routes or set(routes) - set(M.FID_METHODS):
        parser.error(f"--routes {args.routes!r}: expected a subset of {','.join(M.FID_METHODS)}")
    if args.n < 20:
        parser.error(f"--n {args.n}: need at least 20 images (10 IS splits of 2 or more)")
    info = machine()
    emit({**fid_is_record(args.n, args.classifier), "machine": info})
    emit({**math_record(args.n, args.dim, routes), "machine": info})


if __name__ == "__main__":
    main()
