"""``gen.py``: grids of edited images, one PNG per latent sample (``colat/visualizer.py``).

For sample z the rows are the chosen directions and the columns the sorted ``alphas``: the negative
values (ascending), the original image (alpha = 0; zeros in ``alphas`` are dropped), then the positive
values. A cell is G(z + edit), where the edit walks away from z: non-iterative, z + alpha d_k(z);
iterative, Euler steps z_a = z_prev + (a - a_prev) d_k(z_prev) (identical for global directions, following
the direction field for conditional ones). With ``feed_layers`` the edited latent reaches only the listed
generator layers. The grid has 2-px white padding, a 50-px header with the alpha of every column and a
100-px left margin with the direction index, as the original draws them (FreeMono 30 pt when available).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from common.errors import UsageError
from common.fileio import atomic_write_bytes
from common.images import encode_png
from common.progress import Progress
from latentclr import build
from latentclr.checkpoints import load_directions

log = logging.getLogger(__name__)

FONT_CANDIDATES = ("Pillow/Tests/fonts/FreeMono.ttf", "/usr/share/fonts/truetype/freefont/FreeMono.ttf",
                   "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf", "/usr/share/fonts/TTF/DejaVuSansMono.ttf")


def split_alphas(alphas) -> tuple[list[float], list[float]]:
    """Sorted alphas -> (negatives ascending, the rest with one 0 dropped), as the original splits them."""
    values = sorted(float(a) for a in alphas)
    if not values or values[-1] < 0:
        raise UsageError(f"alphas must contain at least one value >= 0 (the original fails on {values}); "
                         "e.g. +alphas=[-2,-1,0,1,2]")
    i = 0
    while values[i] < 0:
        i += 1
    negative = values[:i]
    if values[i] == 0:
        i += 1
    if not negative and not values[i:]:
        raise UsageError(f"alphas={values}: nothing to show besides alpha = 0")
    return negative, values[i:]


def choose_directions(n_dirs, k: int) -> list[int]:
    """-1: all K; an int: that many distinct directions drawn with NumPy's global RNG; a list: those."""
    if isinstance(n_dirs, bool):
        raise UsageError(f"n_dirs must be -1, a count or a list of indices, got {n_dirs!r}")
    if isinstance(n_dirs, int):
        if n_dirs == -1:
            return list(range(k))
        if not 0 < n_dirs <= k:
            raise UsageError(f"n_dirs={n_dirs}: expected -1 or a count in 1..k={k}")
        return [int(d) for d in np.random.choice(k, n_dirs, replace=False)]
    dirs = [int(d) for d in n_dirs]
    bad = [d for d in dirs if not 0 <= d < k]
    if bad or not dirs:
        raise UsageError(f"n_dirs={dirs}: direction indices must be in 0..{k - 1}")
    return dirs


def load_samples(n_samples, generator) -> np.ndarray:
    """An int draws that many latents; a string is a ``.npy`` file of latents [N, S] (the original crashes on
    it; here it is converted to a tensor)."""
    if isinstance(n_samples, int) and not isinstance(n_samples, bool):
        if n_samples < 1:
            raise UsageError(f"n_samples must be >= 1, got {n_samples}")
        return generator.sample_latent(n_samples)
    path = Path(str(n_samples))
    if not path.is_file():
        raise UsageError(f"n_samples={n_samples}: expected a count or the path of a .npy file of latents")
    print(f"Loading input file {path}...")
    samples = np.asarray(np.load(path), np.float32)
    if samples.ndim == 1:
        samples = samples[None]
    if samples.ndim != 2 or samples.shape[1] != generator.latent_dim:
        raise UsageError(f"n_samples={path}: expected latents of shape [N, {generator.latent_dim}], "
                         f"got {samples.shape}")
    return samples


class Editor:
    """Applies directions to latents and renders them (model in inference mode, generator frozen)."""

    def __init__(self, generator, model, feed_layers=None):
        self.generator, self.model, self.feed_layers = generator, model, feed_layers

    def edit(self, z: tf.Tensor, alpha: float, dirs) -> tf.Tensor:
        """One row per direction: z [1, S] (shared) or [len(dirs), S] (one per direction)."""
        rows = []
        for i, k in enumerate(dirs):
            src = z[i: i + 1] if z.shape[0] > 1 else z[0:1]
            rows.append(self.model.forward_single(src, k, tf.constant(alpha, z.dtype), training=False))
        return tf.concat(rows, axis=0)

    def render(self, zs: tf.Tensor, z_orig: tf.Tensor | None = None) -> np.ndarray:
        """Images [N, H, W, C] in ~[0, 1]; with ``feed_layers`` the edit reaches only those layers."""
        if self.feed_layers is not None and z_orig is not None:
            base = tf.tile(z_orig, (zs.shape[0], 1))
            zs = [zs if i in self.feed_layers else base for i in range(self.generator.n_latent())]
        return np.asarray(self.generator(zs))

    def rows(self, z: np.ndarray, dirs, alphas, iterative: bool):
        """Cells [R, C, H, W, ch] (directions x columns) and the column titles, for one latent z [1, S]."""
        negative, positive = split_alphas(alphas)
        z = tf.constant(z, tf.float32)
        original = self.render(z)
        columns = []
        for side in (list(reversed(negative)), positive):
            current, previous, images = z, 0.0, []
            for alpha in side:
                source = current if iterative else z
                step = alpha - previous if iterative else alpha
                current = self.edit(source, step, dirs)
                images.append(self.render(current, z))
                previous = alpha
            columns += images[::-1] if side is not positive else images
        titles, cells, before = [], [], -1.0
        # The original column goes where the sign changes (so all-negative alphas get none, as the original).
        for alpha, images in zip(negative + positive, columns):
            if math.copysign(1, alpha) != before:
                cells.append(np.repeat(original, len(dirs), axis=0))
                titles.append("α=0")
                before = math.copysign(1, alpha)
            titles.append(f"α= {alpha:.3f}")
            cells.append(images)
        return np.stack(cells, axis=1), titles


def resize_shorter(images: np.ndarray, size) -> np.ndarray:
    """torchvision ``Resize(size)`` on a batch: the shorter side to ``size`` (bilinear); a pair: exact."""
    if not size:
        return images
    h, w = images.shape[1:3]
    if isinstance(size, (list, tuple)):
        new = (int(size[0]), int(size[1]))
    elif h <= w:
        new = (int(size), int(size * w / h))
    else:
        new = (int(size * h / w), int(size))
    if new == (h, w):
        return images
    return tf.image.resize(images, new, method="bilinear", antialias=False).numpy()


def to_uint8(images: np.ndarray) -> np.ndarray:
    """torchvision ``save_image``'s conversion: floor(x * 255 + 0.5) clamped to [0, 255]."""
    return np.clip(np.floor(np.asarray(images, np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def load_font(size: int = 30):
    for candidate in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def compose_sample(cells: np.ndarray, titles, dirs, image_size) -> np.ndarray:
    """The original's PNG: grid with padding 2 (white), 50-px header of titles, 100-px margin of k labels."""
    rows, cols = cells.shape[:2]
    flat = resize_shorter(cells.reshape((rows * cols,) + cells.shape[2:]), image_size)
    if flat.shape[-1] == 1:
        flat = np.repeat(flat, 3, axis=-1)
    h, w = flat.shape[1:3]
    grid = np.ones((rows * (h + 2) + 2, cols * (w + 2) + 2, 3), np.float64)
    for index, image in enumerate(flat):
        r, c = divmod(index, cols)
        grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = image
    font = load_font(30)
    header = Image.new("RGB", (grid.shape[1], 50), (255, 255, 255))
    draw = ImageDraw.Draw(header)
    for index, text in enumerate(titles):
        # the original spaces the titles by the image height and the labels by the width
        draw.multiline_text((40 + index * (h + 2), 10), text, font=font, fill=(0, 0, 0))
    margin = Image.new("RGB", (100, grid.shape[0] + 50), (255, 255, 255))
    draw = ImageDraw.Draw(margin)
    for index, k in enumerate(dirs):
        draw.multiline_text((10, 100 + index * (w + 2)), f"k={k}", font=font, fill=(0, 0, 0))
    body = np.concatenate([np.asarray(header), to_uint8(grid)], axis=0)
    return np.concatenate([np.asarray(margin), body], axis=1)


def run(cfg, run_dir: str | Path) -> list[Path]:
    """Build the generator and directions from ``cfg``, load ``checkpoint``, write ``sample_{i}.png``."""
    from latentclr.cli import require_checkpoint
    from latentclr.trainer import seed_everything

    cfg = build.to_dict(cfg)
    run_dir = Path(run_dir)
    checkpoint = require_checkpoint(cfg)
    alphas = cfg.get("alphas", [-0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3])
    split_alphas(alphas)  # bad alphas fail before anything is built
    seed_everything(cfg)
    generator = build.build_generator(cfg)
    model = build.build_model(cfg, generator.latent_dim)
    feature_shape = generator.feature_shape()
    projector = build.build_projector(cfg, int(np.prod(feature_shape)))
    load_directions(checkpoint, model, projector, feature_shape)
    feed = build.feed_layers(cfg, generator)
    samples = load_samples(cfg.get("n_samples", 10), generator)
    dirs = choose_directions(cfg.get("n_dirs", 10), model.k)
    editor = Editor(generator, model, feed)
    written = []
    bar = Progress(total=len(samples), desc="Generating... ")
    for i in range(len(samples)):
        cells, titles = editor.rows(samples[i: i + 1], dirs, alphas, bool(cfg.get("iterative", True)))
        image = compose_sample(cells, titles, dirs, cfg.get("image_size", 256))
        path = run_dir / f"sample_{i}.png"
        atomic_write_bytes(path, encode_png(image))
        written.append(path)
        bar.update(i + 1)
    bar.close()
    log.info("Wrote %d grids to %s", len(written), run_dir)
    return written
