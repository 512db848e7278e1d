"""Run-folder helpers shared by the ConGAN entry points: seeds, data, SimSiam, progress grids."""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path

import numpy as np

from common.config import CONFIG_FILE
from common.errors import UsageError
from common.images import make_grid, save_gif, save_png, to_uint8


def resolve_seed(cfg):
    """A config with a concrete seed: the given one, the one saved in the run folder, or a fresh one.

    The notebooks default to ``seed=None`` (unseeded). Here an unseeded run draws one seed at its first
    start and stores it in ``config.json``; running the same command again resumes with that seed.
    """
    if cfg.seed is not None:
        return cfg
    saved = Path(cfg.run_dir) / CONFIG_FILE
    if saved.exists():
        seed = json.loads(saved.read_text()).get("seed")
        if seed is not None:
            return dataclasses.replace(cfg, seed=int(seed))
    return dataclasses.replace(cfg, seed=secrets.randbelow(2**31 - 1))


def training_images(cfg, images: np.ndarray | None = None) -> np.ndarray:
    """uint8 [N, S, S, 3] training images: the given array (tests) or the configured dataset."""
    from congan.data import load_images, resize_images, subset_indices

    if images is None:
        return load_images(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.subset, cfg.workers)
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UsageError("images: expected uint8 [N, H, W, 3]")
    images = images[subset_indices(len(images), cfg.subset)]
    return resize_images(images, cfg.image_size)


def simsiam_for(cfg):
    """The SimSiam model of a GAN run (``--simsiam_path`` / ``--simsiam_arch`` / ``--dim`` / ``--pred_dim``)."""
    from congan.simsiam import load_simsiam

    model = load_simsiam(cfg.simsiam_path, cfg.simsiam_arch, cfg.dim, cfg.pred_dim, cfg.image_size)
    if cfg.repr_dim is not None and cfg.repr_dim != model.dim:
        raise UsageError(f"--repr_dim: {cfg.repr_dim} differs from the SimSiam output size {model.dim}")
    return model


def progress_grid(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """The notebook's progress grid: real images then fakes, 8 per row, padding 2, [-1, 1] -> uint8."""
    images = np.concatenate([np.asarray(real), np.asarray(fake)])
    images = np.where(np.isfinite(images), images, 0.0)  # a diverged (NaN) generator shows as mid-grey
    rows = int(np.ceil(len(images) / 8))
    return make_grid(to_uint8(np.clip(images, -1, 1)), rows=rows, cols=8, padding=2)


def sample_grid(images: np.ndarray, per_row: int = 4) -> np.ndarray:
    """A results-cell grid (nrow=4, padding 2) of [-1, 1] images as uint8."""
    images = np.asarray(images)
    images = np.where(np.isfinite(images), images, 0.0)
    return make_grid(to_uint8(np.clip(images, -1, 1)), cols=per_row, padding=2)


class ProgressFrames:
    """Progress snapshots streamed to ``<dir>/frames/*.png`` and rendered to a GIF on demand.

    Replaces the notebook's in-memory ``GENERATED_GRIDS`` list and matplotlib mp4 (spec §8.15; ffmpeg is not
    assumed: the animation is a GIF).
    """

    def __init__(self, directory: str | Path, interval: int):
        self.directory = Path(directory)
        self.frames_dir = self.directory / "frames"
        self.gif_path = self.directory / f"grids_per_{interval}_iters.gif"

    def add(self, iteration: int, grid: np.ndarray) -> Path:
        return save_png(self.frames_dir / f"frame_{iteration:08d}.png", grid)

    def render(self) -> Path | None:
        frames = sorted(self.frames_dir.glob("frame_*.png"))
        if not frames:
            return None
        return save_gif(self.gif_path, frames, seconds_per_frame=0.2)
