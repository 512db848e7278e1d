"""Score generated images and append the result to ``<run_dir>/metrics.jsonl``.

Command line (works on any run folder, whichever paper wrote it)::

    python -m common.evaluate RUN_DIR --images FAKE.npz [--real REAL.npz] [--step N]
        [--metrics fid,is] [--features inception|inception_ttur|classifier] [--classifier FILE.keras]
        [--inception_path FILE] [--inception_url URL] [--inception_sha256 HEX] [--cache_dir DIR]
        [--fid_method tfgan|tfgan_svd|scipy] [--splits 1] [--is_classes N] [--batch_size N]
        [--pixel_range auto|0,255]

Protocol:

- An NPZ holds the images under ``images`` (else ``fake``, ``real`` or ``x``, else its only 4-D array),
  NHWC with 3 channels (1 for an MNIST classifier; [N, H, W] is read as one channel): uint8 0..255 or
  floats in [-1, 1]; floats in 0..255 (the Self-Conditioned GAN's sample files) need
  ``--pixel_range 0,255``. An optional scalar ``step`` array gives the step when ``--step`` is not passed.
- ``--real`` may instead hold precomputed statistics of the same feature extractor: ``mu`` and
  ``sigma`` (or TTUR's ``m`` and ``s``). KID needs real images.
- One JSON line is appended per call, e.g. ``{"step": 5000, "fid": 31.2, "is": 6.1, "is_std": 0.0,
  "features": "inception-tfgan", "num_images": 10000, "num_real": 10000}``. With ``--features
  classifier`` the metric names get the prefix ``classifier_`` (``classifier_fid``...), because those
  numbers are not comparable to published ones.

From Python, :func:`evaluate_run` takes arrays or a ``sample_fn(n) -> images`` callable and any
extractor with ``features(images)`` / ``logits(images)`` (e.g. a test stand-in).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from common import metrics as M
from common.errors import UsageError, exit_on_usage_error
from common.fileio import append_jsonl

METRICS_FILE = "metrics.jsonl"
METRIC_NAMES = ("fid", "is", "kid")
FEATURE_CHOICES = ("inception", "inception_ttur", "classifier")
IMAGE_KEYS = ("images", "fake", "real", "x")


# --------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------


def to_unit_range(images, *, pixel_range: str = "auto", flag: str = "--images") -> np.ndarray:
    """[N, H, W, C] images as float32 in [-1, 1].

    uint8 -> x / 127.5 - 1. Floats: ``"auto"`` requires [-1, 1]; ``"0,255"`` maps x / 127.5 - 1.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]  # grayscale [N, H, W] (e.g. Keras's mnist.npz)
    if images.ndim != 4:
        raise UsageError(f"{flag}: expected images [N, H, W, C] or [N, H, W], got shape {images.shape}")
    if images.dtype == np.uint8 or pixel_range == "0,255":
        return images.astype(np.float32) / 127.5 - 1.0
    if pixel_range != "auto":
        raise UsageError(f"--pixel_range must be 'auto' or '0,255', got {pixel_range!r}")
    images = images.astype(np.float32)
    if images.min() < -1.0 - 1e-5 or images.max() > 1.0 + 1e-5:
        raise UsageError(
            f"{flag}: float images range over [{images.min():g}, {images.max():g}], expected [-1, 1] "
            "(pass --pixel_range 0,255 for 0..255 floats)"
        )
    return images


def read_npz(path: str | os.PathLike, *, flag: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as err:
        raise UsageError(f"{flag} {path}: not a readable .npz ({err})") from err


def images_from_npz(arrays: dict, *, path, flag: str, pixel_range: str = "auto") -> np.ndarray:
    """The image array of an NPZ (see the protocol), in [-1, 1]."""
    for key in IMAGE_KEYS:
        if key in arrays:
            return to_unit_range(arrays[key], pixel_range=pixel_range, flag=f"{flag} {path}")
    candidates = [k for k, v in arrays.items() if v.ndim == 4]
    if len(candidates) != 1:
        raise UsageError(f"{flag} {path}: expected an array named one of {IMAGE_KEYS}, got {sorted(arrays)}")
    return to_unit_range(arrays[candidates[0]], pixel_range=pixel_range, flag=f"{flag} {path}")


def real_from_npz(arrays: dict, *, path, pixel_range: str = "auto"):
    """Real images in [-1, 1], or a (mu, sigma) tuple of precomputed statistics."""
    for mu_key, sigma_key in (("mu", "sigma"), ("m", "s")):
        if mu_key in arrays and sigma_key in arrays:
            return arrays[mu_key].astype(np.float64), arrays[sigma_key].astype(np.float64)
    return images_from_npz(arrays, path=path, flag="--real", pixel_range=pixel_range)


def collect_samples(sample_fn: Callable[[int], np.ndarray], num_samples: int, batch_size: int = 100) -> np.ndarray:
    """Call ``sample_fn(n)`` (returning [n, H, W, C] in [-1, 1]) until ``num_samples`` images exist."""
    chunks, have = [], 0
    while have < num_samples:
        chunk = np.asarray(sample_fn(min(batch_size, num_samples - have)))
        if len(chunk) == 0:
            raise ValueError("sample_fn returned no images")
        chunks.append(chunk)
        have += len(chunk)
    return np.concatenate(chunks)[:num_samples]


# --------------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------------


def make_extractor(
    features: str = "inception",
    *,
    classifier=None,
    inception_path=None,
    inception_url: str | None = None,
    inception_sha256: str | None = None,
    cache_dir=None,
    batch_size: int | None = None,
):
    """The feature extractor named by ``--features`` (loaded lazily for Inception)."""
    if features == "classifier":
        from common.classifier_features import load_classifier

        if classifier is None:
            raise UsageError("--features classifier needs --classifier FILE.keras")
        return load_classifier(classifier, batch_size=batch_size or 500)
    if features not in FEATURE_CHOICES:
        raise UsageError(f"--features must be one of {FEATURE_CHOICES}, got {features!r}")
    from common.inception import InceptionNet

    return InceptionNet(
        "tfgan" if features == "inception" else "ttur",
        path=inception_path,
        url=inception_url,
        sha256=inception_sha256,
        cache_dir=cache_dir,
        batch_size=batch_size,
    )


def _features_and_logits(extractor, images, need_logits: bool):
    if hasattr(extractor, "features_and_logits"):
        feats, logits = extractor.features_and_logits(images)
        return feats, (logits if need_logits else None)
    return extractor.features(images), (extractor.logits(images) if need_logits else None)


def compute_metrics(
    images,
    real=None,
    *,
    extractor,
    metrics: Sequence[str] = ("fid", "is"),
    fid_method: str = "tfgan",
    splits: int = 1,
    num_classes: int | None = None,
    kid_block_size: int = 1024,
) -> dict:
    """Score images [N, H, W, C] in [-1, 1] against ``real`` (images or (mu, sigma)).

    Args:
        extractor: anything with ``features(images) -> [N, F]`` and ``logits(images) -> [N, C]``; an
            optional ``metric_prefix`` attribute (e.g. ``"classifier_"``) and ``name``.
        metrics: subset of ``("fid", "is", "kid")``.
        fid_method, splits, num_classes, kid_block_size: see :mod:`common.metrics`.

    Returns:
        {"<prefix>fid": ..., "<prefix>is": ..., "<prefix>is_std": ..., "<prefix>kid": ...,
        "<prefix>kid_std": ..., "features": name, "num_images": N, "num_real": M or None}
    """
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise UsageError(f"--metrics: unknown {sorted(unknown)}; expected a subset of {METRIC_NAMES}")
    if ("fid" in metrics or "kid" in metrics) and real is None:
        raise UsageError("--metrics fid/kid need --real")
    real_is_stats = isinstance(real, tuple)
    if "kid" in metrics and real_is_stats:
        raise UsageError("--metrics kid needs real images, not precomputed mu/sigma")
    if "is" in metrics and not getattr(extractor, "has_logits", True):
        raise UsageError(f"--metrics is needs logits, which {getattr(extractor, 'name', 'the extractor')} lacks")
    prefix = getattr(extractor, "metric_prefix", "")
    feats, logits = _features_and_logits(extractor, images, need_logits="is" in metrics)
    out: dict = {}
    if real is not None and ("fid" in metrics or "kid" in metrics):
        if real_is_stats:
            mu_r, sigma_r = real
            real_feats = None
        else:
            real_feats = _features_and_logits(extractor, real, need_logits=False)[0]
            mu_r, sigma_r = M.activation_statistics(real_feats)
        if "fid" in metrics:
            mu_g, sigma_g = M.activation_statistics(feats)
            if np.shape(mu_r) != np.shape(mu_g):
                raise UsageError(f"--real: statistics have {np.shape(mu_r)} features, the extractor gives {mu_g.shape}")
            out[f"{prefix}fid"] = M.frechet_distance(mu_r, sigma_r, mu_g, sigma_g, method=fid_method)
        if "kid" in metrics:
            out[f"{prefix}kid"], out[f"{prefix}kid_std"] = M.kid_from_activations(
                real_feats, feats, max_block_size=kid_block_size
            )
    if "is" in metrics:
        out[f"{prefix}is"], out[f"{prefix}is_std"] = M.inception_score(logits, splits=splits, num_classes=num_classes)
    out["features"] = getattr(extractor, "name", type(extractor).__name__)
    out["num_images"] = int(len(feats))
    out["num_real"] = None if real is None or real_is_stats else int(len(real))
    return out


def append_metrics(run_dir: str | os.PathLike, step: int, scores: dict) -> dict:
    """Append ``{"step": step, **scores}`` as one line to ``<run_dir>/metrics.jsonl``; returns the record."""
    record = {"step": int(step), **scores}
    append_jsonl(Path(run_dir) / METRICS_FILE, record)
    return record


def evaluate_run(
    run_dir: str | os.PathLike,
    step: int,
    images,
    real=None,
    *,
    extractor,
    num_samples: int | None = None,
    sample_batch: int = 100,
    **metric_kwargs,
) -> dict:
    """Score ``images`` (an array, or ``sample_fn(n)`` with ``num_samples``) and append to metrics.jsonl.

    ``metric_kwargs`` go to :func:`compute_metrics`. Returns the appended record.
    """
    if callable(images):
        if not num_samples:
            raise ValueError("evaluate_run: a sample_fn needs num_samples")
        images = collect_samples(images, num_samples, sample_batch)
    scores = compute_metrics(images, real, extractor=extractor, **metric_kwargs)
    return append_metrics(run_dir, step, scores)


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.evaluate",
        description="Score generated images (NPZ) and append a line to RUN_DIR/metrics.jsonl.",
    )
    parser.add_argument("run_dir", help="run folder; metrics.jsonl is appended there")
    parser.add_argument("--images", required=True, help="NPZ of generated images (see the module docstring)")
    parser.add_argument("--real", default=None, help="NPZ of real images, or of their mu/sigma")
    parser.add_argument("--step", type=int, default=None, help="default: the images NPZ's 'step' array")
    parser.add_argument("--metrics", default="fid,is", help="comma-separated subset of fid,is,kid")
    parser.add_argument("--features", default="inception", choices=FEATURE_CHOICES)
    parser.add_argument("--classifier", default=None, help="classifier .keras file for --features classifier")
    parser.add_argument("--inception_path", default=None, help="local Inception archive or .pb (no download)")
    parser.add_argument("--inception_url", default=None, help="download from here instead of the official URL")
    parser.add_argument("--inception_sha256", default=None, help="expected SHA-256 of the Inception archive")
    parser.add_argument("--cache_dir", default=None, help="download cache (default: the original's location)")
    parser.add_argument("--fid_method", default="tfgan", choices=M.FID_METHODS)
    parser.add_argument("--splits", type=int, default=1, help="Inception Score splits")
    parser.add_argument("--is_classes", type=int, default=None, help="keep only the first N logits for IS")
    parser.add_argument("--kid_block_size", type=int, default=1024)
    parser.add_argument("--batch_size", type=int, default=None, help="images per forward pass")
    parser.add_argument("--pixel_range", default="auto", choices=("auto", "0,255"))
    return parser


def run(args: argparse.Namespace) -> dict:
    """Validate everything that needs no TensorFlow first, then score and append."""
    if not Path(args.run_dir).is_dir():
        raise UsageError(f"RUN_DIR {args.run_dir}: not a directory")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    if not metrics or set(metrics) - set(METRIC_NAMES):
        raise UsageError(f"--metrics {args.metrics!r}: expected a comma-separated subset of {','.join(METRIC_NAMES)}")
    if args.splits < 1:
        raise UsageError(f"--splits must be >= 1, got {args.splits}")
    arrays = read_npz(args.images, flag="--images")
    step = args.step
    if step is None:
        if "step" not in arrays or arrays["step"].size != 1:
            raise UsageError(f"--step: not given, and {args.images} has no scalar 'step' array")
        step = int(arrays["step"].reshape(()))
    images = images_from_npz(arrays, path=args.images, flag="--images", pixel_range=args.pixel_range)
    real = None
    if args.real is not None:
        real = real_from_npz(read_npz(args.real, flag="--real"), path=args.real, pixel_range=args.pixel_range)
    if "is" in metrics and args.splits > len(images):
        raise UsageError(f"--splits {args.splits}: more splits than the {len(images)} images")
    extractor = make_extractor(
        args.features,
        classifier=args.classifier,
        inception_path=args.inception_path,
        inception_url=args.inception_url,
        inception_sha256=args.inception_sha256,
        cache_dir=args.cache_dir,
        batch_size=args.batch_size,
    )
    scores = compute_metrics(
        images,
        real,
        extractor=extractor,
        metrics=metrics,
        fid_method=args.fid_method,
        splits=args.splits,
        num_classes=args.is_classes,
        kid_block_size=args.kid_block_size,
    )
    record = append_metrics(args.run_dir, step, scores)
    print(json.dumps(record))
    return record


@exit_on_usage_error
def main(argv: list[str] | None = None) -> dict:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
