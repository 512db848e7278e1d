"""The evaler's tasks (spec §3.7-§3.8): reconstruct the test split, generate samples, interpolate codes.

Tasks run in that order when several are given. Every decode uses BatchNorm with the statistics of the batch
being decoded, as the original did, so results depend on the batch size and on what else is in the batch.
Generated and interpolated grids are 2048x2048 PNG files (``scipy.misc.imresize`` of the tiled grid:
byte-scaling over the whole grid, then PIL bilinear resizing) in the output folder (the working directory by
default, as in the original).
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from common.errors import UsageError
from common.fileio import append_jsonl, atomic_write_bytes
from common.images import encode_png, make_grid, to_uint8
from common.seeding import set_seed
from common.summaries import METRICS_FILE
from common.training import restore
from glo import data as glo_data
from glo.config import EvalConfig
from glo.log import log
from glo.losses import moment_loss, pixel_errors
from glo.models import Generator, build_generator

GRID_SIZE = 2048
INTERP_STEPS = 13  # decoded points between the two endpoints of a row
INTERP_ROWS = 15
INIT_SEED = 123  # the evaler's tf.set_random_seed(123): only TensorFlow's initialisation is seeded


class NoTaskError(UsageError, ValueError):
    """No task flag given (the original raised a ValueError; here also a usage error: exit status 2)."""


def resolve_checkpoint(cfg: EvalConfig) -> str | None:
    """``--checkpoint_path`` (alias ``--checkpoint``), else the newest checkpoint of ``--train_dir``, else None."""
    if cfg.checkpoint_path:
        return cfg.checkpoint_path
    if cfg.train_dir:
        if not Path(cfg.train_dir).is_dir():
            raise UsageError(f"--train_dir {cfg.train_dir}: no such folder (expected a run folder of trainer.py)")
        return tf.train.latest_checkpoint(cfg.train_dir)
    return None


def checkpoint_step(path: str) -> int | None:
    """g of a ``.../model-<g>`` checkpoint prefix."""
    match = re.search(r"-(\d+)$", path)
    return int(match.group(1)) if match else None


def make_decoder(generator: Generator):
    """z float32 [n, d] -> images float32 [n, h, w, c]; BN always uses the batch's statistics."""
    call = tf.function(lambda z: generator(z, training=True))
    return lambda z: call(tf.constant(np.asarray(z, np.float32))).numpy()


def reconstruction_errors(generator: Generator, source: glo_data.DataFile, ids, batch_size: int, batches: int,
                          rng: np.random.Generator) -> dict[str, float]:
    """Mean pixel MAE and MSE over ``batches`` random batches of ``ids``, decoded from their stored codes.

    Used by ``--eval_step`` in the trainer and for the metrics record of ``--reconstruct``.
    """
    decode = make_decoder(generator)
    ids = np.asarray(ids)
    maes, mses = [], []
    for _ in range(batches):
        chosen = ids[rng.integers(0, len(ids), size=batch_size)]
        errors = pixel_errors(tf.constant(source.images(chosen)), tf.constant(decode(source.codes(chosen))))
        maes.append(float(errors["mae"]))
        mses.append(float(errors["mse"]))
    return {"mae": float(np.mean(maes)), "mse": float(np.mean(mses))}


def image_grid(images: np.ndarray, rows: int, cols: int, size: int = GRID_SIZE) -> np.ndarray:
    """Tile float images row-major and resize like ``scipy.misc.imresize(grid, (size, size))``.

    imresize byte-scaled over the whole grid, ``(v - min) * 255 / (max - min)``, clipped, + 0.5, truncated, and
    resized the PIL image with BILINEAR.

    Args:
        images: [rows * cols, h, w, c] floats.
    Returns:
        uint8 [size, size] (c = 1) or [size, size, 3].
    """
    grid = make_grid(np.asarray(images, np.float64), rows=rows, cols=cols)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    low, high = float(grid.min()), float(grid.max())
    scale = 255.0 / (high - low) if high > low else 1.0
    scaled = (np.clip((grid - low) * scale, 0, 255) + 0.5).astype(np.uint8)
    return np.asarray(Image.fromarray(scaled).resize((size, size), Image.BILINEAR))


def _save(path: Path, image: np.ndarray) -> Path:
    atomic_write_bytes(path, encode_png(image))
    log.info("Saved %s", path)
    return path


# ------------------------------------------------------------------------------------------------- tasks


def reconstruct(cfg: EvalConfig, decode, source: glo_data.DataFile, output_dir: Path) -> dict:
    """Decode the test split from its stored codes; log the per-batch loss and the average pixel MAE.

    Runs floor(N_test / B) + 1 batches of a shuffled, wrapping stream over the test ids (or ``--data_id``);
    test ids are never trained, so these are their initial codes (spec §8 #3). Errors inside the loop are
    logged and end the loop, as the original's coordinator did, instead of being silently swallowed.

    Returns:
        ``losses`` (l per batch), ``maes``, ``mses`` (per batch), ``average_loss`` (mean MAE), ``batches``.
    """
    info = source.info
    ids = list(cfg.data_id) if cfg.data_id else list(info.test_ids)
    if cfg.data_id:
        missing = [i for i in ids if i not in source.file]
        if missing:
            raise UsageError(f"--data_id: {', '.join(missing[:5])} not in {info.path}")
    if not ids:
        raise UsageError(f"--reconstruct: the test split of {info.path} is empty (see --num_train)")
    steps = len(info.test_ids) // cfg.batch_size + 1
    stream = glo_data.BatchStream(len(ids), cfg.batch_size, np.random.randint(2**31 - 1))
    ids = np.asarray(ids)
    losses, maes, mses = [], [], []
    for s in range(steps):
        try:
            began = time.perf_counter()
            chosen = ids[stream.positions(s)]
            real = source.images(chosen)
            fake = decode(source.codes(chosen))
            loss = float(moment_loss(tf.constant(real), tf.constant(fake)))
            errors = pixel_errors(tf.constant(real), tf.constant(fake))
            sec = time.perf_counter() - began
        except Exception as err:  # noqa: BLE001 - the original stopped the loop on any error; we say so
            log.error("Reconstruction stopped at batch %d: %s: %s", s, type(err).__name__, err)
            break
        losses.append(loss)
        maes.append(float(errors["mae"]))
        mses.append(float(errors["mse"]))
        log.info(" [val   step %4d] Loss (test): %.5f (%.3f sec/batch, %.3f instances/sec) ", s, loss, sec,
                 cfg.batch_size / max(sec, 1e-9))
        if s == 0 and cfg.save_reconstruction:
            n = min(8, math.isqrt(cfg.batch_size))
            pair = [make_grid(to_uint8(x[: n * n]), rows=n, cols=n, padding=1, pad_value=255) for x in (real, fake)]
            gap = np.full((pair[0].shape[0], 4, pair[0].shape[2]), 255, np.uint8)
            _save(output_dir / f"reconstruct_{cfg.prefix}.png", np.concatenate([pair[0], gap, pair[1]], axis=1))
    average = float(np.mean(maes)) if maes else float("nan")
    log.info("Average loss : %.4f", average)
    return {"losses": losses, "maes": maes, "mses": mses, "average_loss": average, "batches": len(maes)}


def sample_codes(mode: str, batch_size: int, latent_dim: int, train_codes: np.ndarray | None = None) -> np.ndarray:
    """Codes for ``--generate`` (NumPy's global RNG, as the original).

    - ``column_norm`` (original, spec §8 #4): z ~ N(0, I) [B, d], then each *column* divided by its norm over
      the B samples, so a row has norm ~sqrt(d / B), not 1.
    - ``row_norm``: each sample normalised onto the unit sphere.
    - ``full_cov`` (the paper): a full-covariance Gaussian fitted to the training codes [N, d].

    Returns:
        float32 [B, d].
    """
    if mode == "full_cov":
        mean, cov = train_codes.mean(axis=0), np.cov(train_codes, rowvar=False)
        return np.random.multivariate_normal(mean, np.atleast_2d(cov), size=batch_size).astype(np.float32)
    z = np.random.randn(batch_size, latent_dim)
    axis = 0 if mode == "column_norm" else 1
    return (z / np.linalg.norm(z, axis=axis, keepdims=True)).astype(np.float32)


def generate(cfg: EvalConfig, decode, source: glo_data.DataFile, output_dir: Path) -> dict:
    """Decode ``--batch_size`` sampled codes; save the first floor(sqrt(B))^2 as ``generate_<prefix>.png``."""
    train_codes = source.codes(source.info.train_ids) if cfg.sample_mode == "full_cov" else None
    z = sample_codes(cfg.sample_mode, cfg.batch_size, source.latent_dim, train_codes)
    images = decode(z)
    n = math.isqrt(cfg.batch_size)
    path = _save(output_dir / f"generate_{cfg.prefix}.png", image_grid(images[: n * n], n, n))
    return {"z": z, "images": images, "path": path}


def interpolation_batch(z1: np.ndarray, z2: np.ndarray, batch_size: int, padding: np.ndarray | None) -> np.ndarray:
    """The 13 unit-norm points z1 + (z2 - z1)(j + 1) / 14, j = 0..12, then padding up to ``batch_size`` rows.

    Args:
        z1, z2: float32 [d].
        padding: [batch_size - 13, d] rows to append, or None for zeros (the original, spec §8 #5).
    Returns:
        float32 [batch_size, d].
    """
    weights = (np.arange(INTERP_STEPS, dtype=np.float32) + 1) / (INTERP_STEPS + 1)
    points = z1[None] + (z2 - z1)[None] * weights[:, None]
    points = points / np.linalg.norm(points, axis=1, keepdims=True)
    if padding is None:
        padding = np.zeros((batch_size - len(points), z1.shape[0]), np.float32)
    return np.concatenate([points, padding]).astype(np.float32)


def interpolate(cfg: EvalConfig, decode, source: glo_data.DataFile, output_dir: Path) -> dict:
    """15 rows of [x1, 13 decoded interpolations, x2] between consecutive shuffled train ids.

    Returns:
        ``rows`` (list of [15, h, w, c]), ``pairs`` (the id pairs), ``codes`` (the 15 decoded batches).
    """
    decoded_ends = cfg.interp_endpoints == "decoded"
    needed = INTERP_STEPS + (2 if decoded_ends else 0)
    if cfg.batch_size < needed:
        raise UsageError(f"--batch_size {cfg.batch_size}: --interpolate needs at least {needed} (one batch per row)")
    ids = source.info.train_ids
    if len(ids) < 2:
        raise UsageError("--interpolate: the train split needs at least two ids")
    rows, pairs, batches = [], [], []
    for _ in range(INTERP_ROWS):
        idx = np.random.randint(len(ids) - 1)
        pair = [ids[idx], ids[idx + 1]]
        (x1, x2), (z1, z2) = source.images(pair), source.codes(pair)
        extra = cfg.batch_size - needed
        padding = None
        if cfg.interp_padding == "train_codes":
            padding = source.codes([ids[k] for k in np.random.randint(len(ids), size=extra)]).reshape(extra, -1)
        if decoded_ends:
            padding = np.concatenate([np.stack([z1, z2]), np.zeros((extra, z1.shape[0]), np.float32)
                                      if padding is None else padding])
        batch = interpolation_batch(z1, z2, cfg.batch_size, padding)
        images = decode(batch)
        ends = (images[INTERP_STEPS], images[INTERP_STEPS + 1]) if decoded_ends else (x1, x2)
        rows.append(np.concatenate([ends[0][None], images[:INTERP_STEPS], ends[1][None]]))
        pairs.append(pair)
        batches.append(batch)
    grid = image_grid(np.concatenate(rows), INTERP_ROWS, INTERP_STEPS + 2)
    path = _save(output_dir / f"interpolate_{cfg.prefix}.png", grid)
    return {"rows": rows, "pairs": pairs, "codes": batches, "path": path}


# --------------------------------------------------------------------------------------------------- run


def run(cfg: EvalConfig) -> dict:
    """Evaluate as ``glo/evaler.py`` does; return each task's results (for tests and scripts)."""
    if cfg.seed is not None:
        set_seed(cfg.seed)
    else:
        keras.utils.set_random_seed(INIT_SEED)  # TF-side initialisation only, as tf.set_random_seed(123) ...
        np.random.seed(None)  # ... while NumPy (samples, interpolation pairs) stays unseeded
    info = glo_data.describe(cfg.dataset, cfg.num_train)
    source = glo_data.DataFile(info, writable=False, upright_cifar=cfg.fix_cifar_transpose)
    try:
        path = resolve_checkpoint(cfg)
        generator = load_generator(source, path)
        if not (cfg.reconstruct or cfg.generate or cfg.interpolate):
            raise NoTaskError("Please specify at least one task by indicating --reconstruct, --generate, "
                              "or --interpolate.")
        output_dir = Path(cfg.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        decode = make_decoder(generator)
        results = {"checkpoint": path}
        if cfg.reconstruct:
            results["reconstruct"] = reconstruct(cfg, decode, source, output_dir)
            if path is not None and not cfg.data_id:
                results["metrics"] = _record_metrics(cfg, generator, source, path, results["reconstruct"])
        if cfg.generate:
            results["generate"] = generate(cfg, decode, source, output_dir)
        if cfg.interpolate:
            results["interpolate"] = interpolate(cfg, decode, source, output_dir)
        return results
    finally:
        source.close()


def load_generator(source: glo_data.DataFile, path: str | None) -> Generator:
    """The dataset's generator with the weights of checkpoint ``path`` (random initialisation when None).

    Only the generator is read: optimizer state and codes in the file are ignored; every generator weight
    (BN moving statistics included) must be there.
    """
    generator = build_generator(source.latent_dim, source.image_shape, source.info.named)
    if path is None:
        log.warning("No checkpoint is given. Just random initialization :-)")
    else:
        restore(tf.train.Checkpoint(generator=generator), path)
        log.info("Loaded the parameters from %s", path)
    return generator


def _record_metrics(cfg: EvalConfig, generator, source, path: str, recon: dict) -> dict:
    """Append test and train reconstruction MAE/MSE of this checkpoint to ``<run folder>/metrics.jsonl``.

    The test numbers are those of the reconstruction just run; the train numbers decode as many batches of the
    train split from their learned codes.
    """
    train = reconstruction_errors(generator, source, source.info.train_ids, cfg.batch_size, recon["batches"],
                                  np.random.default_rng())
    record = {"step": checkpoint_step(path), "eval/checkpoint": Path(path).name,
              "eval/test_loss": float(np.mean(recon["losses"])) if recon["losses"] else None,
              "eval/test_mae": recon["average_loss"], "eval/test_mse": float(np.mean(recon["mses"])),
              "eval/train_mae": train["mae"], "eval/train_mse": train["mse"],
              "eval/batch_size": cfg.batch_size, "eval/batches": recon["batches"]}
    log.info("Train reconstruction (learned codes): MAE %.4f MSE %.4f; test: MAE %.4f MSE %.4f",
             train["mae"], train["mse"], record["eval/test_mae"], record["eval/test_mse"])
    append_jsonl(Path(path).parent / METRICS_FILE, record)
    return record
