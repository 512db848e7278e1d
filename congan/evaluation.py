"""After training: reload a run, generate the metric samples ("GAN Metrics", spec §5) and the result grids.

Metric samples follow the notebook: a fresh shuffled pass over the training images (flip on, drop_last),
r = E(x) + repr_noise e (no image noise), G in eval mode, no image noise on the output; PNGs
``generated_samples/{idx:04d}.png`` with clamp to [-1, 1], (x + 1) / 2 * 255 + 0.5 floored. The count
check runs before each batch and stops only once idx > N, so ceil((N + 1) / B) * B images are written
(10,112 for N = 10,000, B = 128; spec §8.7); ``n_samples_mode="exact"`` writes N.

Scores go through :mod:`common.metrics` with the spec's definitions: FID with scipy's sqrtm route
(pytorch-fid), IS = exp(mean KL(p(y|x) || p(y))) with sbarratt's splits (N // splits each, rest dropped,
default 1 split so the std is 0). The feature network is pluggable (:func:`common.evaluate.make_extractor`):
the TF Inception graphs or the project's small classifier; the record names the network, and numbers from
anything but the torchvision / pytorch-fid Inception weights are not comparable to the README's.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from common import metrics as M
from common.config import CONFIG_FILE
from common.errors import UsageError
from common.images import encode_png
from common.training import restore
from congan import checkpoints, framework2
from congan.config import Framework1Config, Framework2Config
from congan.data import EpochBatches, to_signed
from congan.runs import simsiam_for, training_images


def read_run_config(run_dir: str | Path):
    """The resolved config of a run folder (Framework 1 or 2)."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise UsageError(f"--run_dir: {run_dir} has no {CONFIG_FILE}; expected a folder written by congan/train.py")
    raw = json.loads(path.read_text())
    cls = Framework2Config if raw.get("framework") == 2 else Framework1Config
    names = {f for f in cls.__dataclass_fields__}
    if isinstance(raw.get("betas"), list):
        raw["betas"] = tuple(raw["betas"])
    return cls(**{k: v for k, v in raw.items() if k in names})


def latest_checkpoint(run_dir: str | Path) -> tuple[str, int]:
    """Prefix and iteration of the newest ``model-<iteration>`` checkpoint of a run."""
    path = tf.train.latest_checkpoint(str(run_dir))
    if path is None:
        raise UsageError(f"--run_dir: {run_dir} holds no checkpoint (model-<iteration>.index)")
    return path, int(path.rsplit("-", 1)[1])


def load_framework2(run_dir: str | Path, load: str | None = None):
    """Networks of a Framework-2 run: the newest checkpoint, or the weight files of ``load`` (a folder).

    Returns ``(cfg, nets, iteration)``; iteration is -1 when weights come from ``load``.
    """
    cfg = read_run_config(run_dir)
    if cfg.framework != 2:
        raise UsageError(f"--run_dir: {run_dir} is a Framework-{cfg.framework} run; this needs Framework 2")
    simsiam = simsiam_for(cfg)
    nets = framework2.build_networks(cfg, simsiam.encoder, simsiam.dim)
    if load is not None:
        checkpoints.load_weights_folder(load, nets)
        return cfg, nets, -1
    prefix, iteration = latest_checkpoint(run_dir)
    restore(tf.train.Checkpoint(G=nets.G, D=nets.D, T=nets.T, Q=nets.Q, simsiam=simsiam), prefix, partial=True)
    return cfg, nets, iteration


def num_generated(num_samples: int, batch_size: int, mode: str = "original") -> int:
    """How many metric images the generation loop writes: ceil((N + 1) / B) * B, or N when exact."""
    if mode == "exact":
        return num_samples
    return math.ceil((num_samples + 1) / batch_size) * batch_size


def to_png_uint8(images) -> np.ndarray:
    """``save_image(normalize=True, range=(-1, 1))``: clamp, (x + 1) / 2 * 255 + 0.5, floor. -1 -> 0, 0 -> 128."""
    x = (np.clip(np.asarray(images, np.float32), -1.0, 1.0) + 1.0) / 2.0
    return np.floor(np.clip(x * 255.0 + 0.5, 0, 255)).astype(np.uint8)


def generate_metric_samples(cfg, nets, images: np.ndarray, num_samples: int, seed: int, mode: str = "original",
                            out_dir: str | Path | None = None) -> np.ndarray:
    """Generate the metric samples as uint8 [n, S, S, 3] (and write ``{idx:04d}.png`` into ``out_dir``)."""
    rng = tf.random.Generator.from_seed(seed, alg="philox")
    batches = EpochBatches(images, cfg.batch_size, seed)
    total = num_generated(num_samples, cfg.batch_size, mode)
    bn_batch = cfg.simsiam_bn_mode == "batch"

    @tf.function(autograph=False)
    def make(x_uint8):
        x = to_signed(x_uint8)
        r = nets.E(x, training=bn_batch)
        r = r + cfg.repr_noise * rng.normal(tf.shape(r))
        return nets.G(nets.T(r, rng.normal((tf.shape(r)[0], cfg.latent_noise_dim))), r, training=False)

    out = []
    done, epoch = 0, 0
    while done < total:
        for index in range(batches.num_batches):
            if done >= total:
                break
            fake = to_png_uint8(make(tf.constant(batches.batch(epoch, index))).numpy())
            out.append(fake[: total - done])
            done += len(out[-1])
        epoch += 1
    result = np.concatenate(out)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        for idx, image in enumerate(result):
            (out_dir / f"{idx:04d}.png").write_bytes(encode_png(image))
    return result


def score(fake_uint8: np.ndarray, real_uint8: np.ndarray, extractor, splits: int = 1) -> dict:
    """FID (scipy route) against the real images and IS (sbarratt splits) of the fakes, via ``extractor``."""
    def feats_logits(images):
        x = images.astype(np.float32) / 127.5 - 1.0
        if hasattr(extractor, "features_and_logits"):
            return extractor.features_and_logits(x)
        return extractor.features(x), extractor.logits(x)

    prefix = getattr(extractor, "metric_prefix", "")
    fake_feats, fake_logits = feats_logits(fake_uint8)
    real_feats, _ = feats_logits(real_uint8)
    out = {f"{prefix}fid": M.fid_from_activations(real_feats, fake_feats, method="scipy")}
    if fake_logits is not None:
        out[f"{prefix}is"], out[f"{prefix}is_std"] = M.inception_score(fake_logits, splits=splits, drop_remainder=True)
    out["features"] = getattr(extractor, "name", type(extractor).__name__)
    out["num_images"] = int(len(fake_uint8))
    out["num_real"] = int(len(real_uint8))
    return out


def _fresh_images(cfg, images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` images (in [-1, 1]) from the start of a fresh shuffled pass (several batches if needed)."""
    batches = EpochBatches(images, cfg.batch_size, seed)
    need = math.ceil(count / cfg.batch_size)
    if need > batches.num_batches:
        raise UsageError(f"--num: needs {count} images, the dataset gives {batches.num_batches * cfg.batch_size}")
    return to_signed(np.concatenate([batches.batch(0, k) for k in range(need)])[:count]).numpy()


def _side_by_side(grids: list[np.ndarray], gap: int = 8) -> np.ndarray:
    height = max(g.shape[0] for g in grids)
    padded = [np.pad(g, ((0, height - g.shape[0]), (0, gap), (0, 0)), constant_values=255) for g in grids]
    return np.concatenate(padded, axis=1)[:, :-gap]


def _finite_for_grid(images: np.ndarray, method: str, fixed_slerp: bool) -> np.ndarray:
    """``images`` with non-finite pixels set to 0 (mid-grey), after one warning line on stderr if there are any.

    The notebook's slerp on unnormalised representations gives NaN representations and so NaN images
    (spec §8.1); the grid is still written so that the result is visible.
    """
    bad = ~np.isfinite(images)
    if bad.any():
        where = f"{int(bad.sum())} of {bad.size} pixel values of the {method} samples are not finite"
        if method == "slerp" and not fixed_slerp:
            why = ("the notebook's slerp of unnormalised representations gives NaN here (spec §8.1); "
                   "--fix_slerp fixes it")
        else:
            why = "the generator produced non-finite values"
        print(f"warning: {why}; {where} and are drawn as 0 (mid-grey) in {method}.png", file=sys.stderr)
    return np.where(bad, 0.0, images)


def framework2_sample_grids(cfg, nets, images: np.ndarray, methods, n: int = 16, seed: int = 0,
                            fix_slerp: bool | None = None) -> dict[str, np.ndarray]:
    """The "Training/Results" cells: uint8 grids (4 per row) per sampling method, G in eval mode.

    real: [x | G(E(x))]; slerp/lerp: [x1 | x2 | two draws of G(interp(E(x1), E(x2)))]; uniform/gaussian: G(r).
    ``fix_slerp`` None: the run's ``--fix_slerp``. Non-finite pixels are drawn as 0 with a warning.
    """
    from congan.runs import sample_grid
    from congan.sampling import generate, sample_representations

    rng = tf.random.Generator.from_seed(seed, alg="philox")
    x = tf.constant(_fresh_images(cfg, images, 2 * n, seed))
    fixed = cfg.fix_slerp if fix_slerp is None else fix_slerp
    repr_dim = nets.E.dim

    def encode(batch):
        return nets.E(batch, training=cfg.simsiam_bn_mode == "batch")

    def fake(method):
        r = sample_representations(method, n, rng=rng, repr_dim=repr_dim, encode=encode, images=x,
                                   repr_noise=cfg.repr_noise, fix_slerp=fixed)
        return generate(nets, r, rng, training=False, add_im_noise=True, im_noise=cfg.im_noise).numpy()

    grids = {}
    for method in methods:
        if method == "real":
            out = _finite_for_grid(fake(method), method, fixed)
            grids[method] = _side_by_side([sample_grid(x[:n].numpy()), sample_grid(out)])
        elif method in ("slerp", "lerp"):
            draws = _finite_for_grid(np.stack([fake(method), fake(method)]), method, fixed)
            grids[method] = _side_by_side([sample_grid(x[:n].numpy()), sample_grid(x[n:].numpy()),
                                           sample_grid(draws[0]), sample_grid(draws[1])])
        else:
            grids[method] = sample_grid(_finite_for_grid(fake(method), method, fixed))
    return grids


def load_framework1(run_dir: str | Path):
    """Framework-1 networks from the newest checkpoint; returns ``(cfg, state, iteration)``."""
    from common.seeding import make_generator
    from congan import framework1

    cfg = read_run_config(run_dir)
    simsiam = simsiam_for(cfg)
    state = framework1.build_state(cfg, simsiam.encoder, simsiam.dim, make_generator(0))
    prefix, iteration = latest_checkpoint(run_dir)
    restore(tf.train.Checkpoint(model=state.model, simsiam=simsiam, fixed_latent=state.fixed_latent), prefix,
            partial=True)
    return cfg, state, iteration


def framework1_sample_grid(cfg, state, images: np.ndarray, n: int = 16, seed: int = 0) -> np.ndarray:
    """The notebook's ``show_sample``: [x | decoder(proj(G(z), ctx_encoder(x)))] in eval mode (4 per row)."""
    from congan.data import to_imagenet
    from congan.runs import sample_grid

    rng = tf.random.Generator.from_seed(seed, alg="philox")
    batches = EpochBatches(images, cfg.batch_size, seed)
    raw = batches.batch(0, 0)[:n]
    m = state.model
    x = to_imagenet(tf.constant(raw))
    out = m.decoder(m.proj(m.G(rng.normal((len(raw), cfg.latent_dim)), training=False),
                           m.ctx_encoder(x, training=False)), training=False).numpy()
    return _side_by_side([sample_grid(to_signed(raw).numpy()), sample_grid(out)])


def run_evaluation(run_dir, *, load=None, num_samples=10000, n_samples_mode="original", extractor=None,
                   splits=1, reference_limit=0, samples_dir=None, write_pngs=True, seed=0) -> dict:
    """Generate the metric samples of a Framework-2 run, score them and append to ``metrics.jsonl``."""
    from common.evaluate import append_metrics

    cfg, nets, iteration = load_framework2(run_dir, load)
    images = training_images(cfg)
    out_dir = (Path(samples_dir) if samples_dir else Path(run_dir) / "generated_samples") if write_pngs else None
    fake = generate_metric_samples(cfg, nets, images, num_samples, seed, n_samples_mode, out_dir)
    real = images[:reference_limit] if reference_limit else images
    scores = score(fake, real, extractor, splits)
    return append_metrics(run_dir, iteration, {**scores, "n_samples_mode": n_samples_mode,
                                               "weights": str(load) if load else "checkpoint"})


def run_sampling(run_dir, *, methods, n=16, seed=0, out_dir=None, load=None,
                 fix_slerp: bool | None = None) -> dict[str, Path]:
    """Write the result grids of a run (Framework 2: one PNG per method; Framework 1: one PNG) + an HTML page."""
    from common.images import save_png, write_html_page

    cfg = read_run_config(run_dir)
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "results" / "samples"
    if cfg.framework == 2:
        cfg, nets, _ = load_framework2(run_dir, load)
        grids = framework2_sample_grids(cfg, nets, training_images(cfg), methods, n, seed, fix_slerp)
    else:
        cfg, state, _ = load_framework1(run_dir)
        grids = {"decoded": framework1_sample_grid(cfg, state, training_images(cfg), n, seed)}
    paths = {name: save_png(out_dir / f"{name}.png", grid) for name, grid in grids.items()}
    write_html_page(out_dir / "index.html", f"ConGAN samples: {run_dir}", [(k, p) for k, p in paths.items()])
    return paths
