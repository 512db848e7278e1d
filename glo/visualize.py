"""``visualize_training.py``: the dumps of a run as a GIF (and the last frame as PNG).

Each ``dump_result_<s>.hdf5`` of the run folder (``trainer.py --dump_result``) holds the reconstructed batch
``image`` float32 [B, h, w, c]. Every file becomes one frame: an n x n grid (n = floor(sqrt(B))), converted to
uint8 by min-max scaling of that frame, which is what imageio 2.x did with the original's float frames (modern
imageio refuses float and single-channel frames, spec §8 #18).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import h5py
import numpy as np

from common.errors import UsageError
from common.images import make_grid, save_gif, save_png

FRAME_SECONDS = 0.2  # fps 5


def frame_from_batch(images: np.ndarray) -> np.ndarray:
    """[B, h, w, c] floats -> uint8 [n*h, n*w] (c = 1) or [n*h, n*w, 3], min-max scaled per frame."""
    n = math.isqrt(len(images))
    grid = make_grid(np.asarray(images[: n * n], np.float64), rows=n, cols=n)
    low, high = float(grid.min()), float(grid.max())
    scaled = (grid - low) / (high - low) * 255.0 + 0.5 if high > low else np.zeros_like(grid)
    frame = np.clip(scaled, 0, 255).astype(np.uint8)
    return frame[..., 0] if frame.shape[-1] == 1 else frame


def _order(path: Path) -> tuple[float, int]:
    match = re.search(r"(\d+)", path.stem)
    return path.stat().st_mtime, int(match.group(1)) if match else 0


def build_training_gif(train_dir: str | None, output_file: str | None) -> tuple[Path, Path, int]:
    """Write ``<output_file>.gif`` (all dumps by modification time) and ``<output_file>.png`` (the last one).

    Returns:
        (gif path, png path, number of frames).
    """
    if not train_dir or not output_file:
        raise UsageError("--train_dir and --output_file are both required")
    files = sorted(Path(train_dir).glob("*.hdf5"), key=_order)
    if not files:
        raise UsageError(f"--train_dir {train_dir}: no *.hdf5 dumps (train with --dump_result)")
    frames = []
    for path in files:
        with h5py.File(path, "r") as dump:
            frames.append(frame_from_batch(dump["image"][()]))
    gif, png = Path(f"{output_file}.gif"), Path(f"{output_file}.png")
    save_gif(gif, frames, FRAME_SECONDS)
    save_png(png, frames[-1])
    return gif, png, len(frames)
