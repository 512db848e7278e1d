"""Image helpers: grids as PNG, training progress as GIF, and a small HTML page of grids."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from common.fileio import atomic_write_bytes, atomic_write_text


def to_uint8(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Map float images in ``value_range`` to uint8 (clipped); uint8 input is returned unchanged."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    low, high = value_range
    scaled = (images.astype(np.float32) - low) / (high - low)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def make_grid(
    images: np.ndarray,
    rows: int | None = None,
    cols: int | None = None,
    padding: int = 0,
    column_major: bool = False,
    pad_value: int = 0,
) -> np.ndarray:
    """Tile [N, H, W, C] images into one [rows*H, cols*W, C] image.

    Args:
        images: uint8 or float images; C is 1 or 3.
        rows, cols: grid shape; by default as square as possible.
        column_major: fill column by column (image k at column k // rows, row k % rows), the layout
            of the SLOGAN original's TensorBoard grids; row by row otherwise.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    n, h, w, c = images.shape
    if cols is None and rows is None:
        cols = int(np.ceil(np.sqrt(n)))
    if cols is None:
        cols = int(np.ceil(n / rows))
    if rows is None:
        rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, images.dtype)
    for k in range(min(n, rows * cols)):
        r, col = (k % rows, k // rows) if column_major else (k // cols, k % cols)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = images[k]
    return grid


def encode_png(image: np.ndarray) -> bytes:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a uint8 [H, W] / [H, W, 1|3|4] image atomically."""
    atomic_write_bytes(path, encode_png(to_uint8(image)))
    return Path(path)


def save_grid(path: str | Path, images: np.ndarray, value_range=(-1.0, 1.0), **grid_kwargs) -> Path:
    """Tile float images in ``value_range`` (or uint8) and write them as one PNG."""
    return save_png(path, make_grid(to_uint8(images, value_range), **grid_kwargs))


def save_gif(path: str | Path, frames: Sequence[str | Path | np.ndarray], seconds_per_frame: float = 0.5) -> Path:
    """Write frames (PNG paths or uint8 arrays of one size) as a looping GIF with imageio."""
    import imageio.v3 as iio

    arrays = []
    for frame in frames:
        array = np.asarray(Image.open(frame).convert("RGB")) if isinstance(frame, (str, Path)) else frame
        arrays.append(to_uint8(array))
    if not arrays:
        raise ValueError("save_gif needs at least one frame")
    size = arrays[0].shape[:2]
    arrays = [a if a.shape[:2] == size else np.asarray(Image.fromarray(a).resize(size[::-1])) for a in arrays]
    data = iio.imwrite("<bytes>", np.stack(arrays), extension=".gif", duration=int(seconds_per_frame * 1000), loop=0)
    atomic_write_bytes(path, data)
    return Path(path)


def write_html_page(path: str | Path, title: str, images: Sequence[tuple[str, str | Path]]) -> Path:
    """A static page showing each (caption, image path) pair; paths are made relative to the page."""
    path = Path(path)
    items = []
    for caption, image in images:
        try:
            rel = Path(image).resolve().relative_to(path.parent.resolve())
        except ValueError:
            rel = Path(image)
        items.append(
            f'<figure><img src="{html.escape(str(rel))}" loading="lazy">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:.5em;vertical-align:top}"
        "img{image-rendering:pixelated;max-width:512px;border:1px solid #ccc}figcaption{font-size:90%}"
        f"</style></head><body><h1>{html.escape(title)}</h1>{''.join(items)}</body></html>\n"
    )
    atomic_write_text(path, page)
    return path
