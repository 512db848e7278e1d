"""Tiny GLO datasets for tests and benchmarks, written in the layout ``download.py`` produces (spec §2.5).

``datasets/<name>/data.hdf5`` holds one group per id ("0", "1", ...) with ``image`` uint8 [h, w, c] and
``code`` float64 [d]; ``id.txt`` lists the ids in order.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def shape_images(n: int, size: int = 28, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Binary images of one filled rectangle or disk each (0 background, 255 shape).

    Returns:
        uint8 [n, size, size, channels]; colour images give every channel its own random on/off.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size, channels), np.uint8)
    for i in range(n):
        if i % 2 == 0:
            h, w = rng.integers(size // 5, size // 2, size=2)
            top, left = rng.integers(0, size - h), rng.integers(0, size - w)
            mask = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)
        else:
            r = rng.integers(size // 8, size // 3)
            cy, cx = rng.integers(r, size - r, size=2)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        on = rng.integers(0, 2, size=channels) if channels > 1 else np.ones(1, int)
        on[rng.integers(channels)] = 1
        images[i][mask] = (255 * on).astype(np.uint8)
    return images


def pca_codes(images: np.ndarray, dim: int) -> np.ndarray:
    """download.py's PCA codes: centred (not whitened) PCA of images / 255, each score row scaled to unit norm.

    Returns:
        float64 [n, dim] (component signs may differ from scikit-learn's; the spec allows that).
    """
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    scores = u[:, :dim] * s[:dim]
    return scores / np.linalg.norm(scores, axis=1, keepdims=True)


def write_glo_dataset(folder: str | Path, images: np.ndarray, codes: np.ndarray, file_name: str = "data.hdf5",
                      ids: list[str] | None = None) -> Path:
    """Write ``images`` [n, h, w, c] uint8 and ``codes`` [n, d] as a GLO dataset folder; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = ids if ids is not None else [str(i) for i in range(len(images))]
    with h5py.File(folder / file_name, "w") as handle:
        for data_id, image, code in zip(ids, images, codes):
            group = handle.create_group(data_id)
            group.create_dataset("image", data=np.asarray(image, np.uint8))
            group.create_dataset("code", data=np.asarray(code, np.float64))
    (folder / "id.txt").write_text("".join(f"{i}\n" for i in ids))
    return folder


def make_dataset(folder: str | Path, n: int = 64, size: int = 28, channels: int = 1, dim: int = 10,
                 distribution: str = "pca", seed: int = 0, file_name: str = "data.hdf5") -> Path:
    """A shapes dataset with PCA (unit-norm), Gaussian or Uniform initial codes (not normalised, as download.py)."""
    images = shape_images(n, size, channels, seed)
    rng = np.random.default_rng(seed + 1)
    if distribution == "pca":
        codes = pca_codes(images, dim)
    elif distribution == "gaussian":
        codes = rng.standard_normal((n, dim))
    else:
        codes = rng.random((n, dim)) * 2 - 1
    return write_glo_dataset(folder, images, codes, file_name)
