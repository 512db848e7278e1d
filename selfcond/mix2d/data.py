"""The 2-D Gaussian mixtures (the original's ``2d_mix/inputs.py``, spec §4.3), from ``common.data_selfcond``.

- ring: 8 Gaussians at (2 sin t_k, 2 cos t_k), t_k = 2 pi k / 8 (k = 0 is (0, 2)); per-coordinate
  variance 1e-4; component counts multinomial(n, uniform), labels shuffled; label k.
- grid: 25 Gaussians at (2i - 4, 2j - 4), i, j uniform in {0..4}; variance 0.0025; label 5i + j.

The draws use the original's generators in the original's order (NumPy's legacy RNG and Python's
``random``); the port passes seeded instances of both (the original used the unseeded global ones).
"""

from __future__ import annotations

import random

import numpy as np

from common.data_selfcond import grid_means, grid_mixture, ring_means, ring_mixture

DEFAULT_VARIANCE = {"ring": 0.0001, "grid": 0.0025}
NUM_MODES = {"ring": 8, "grid": 25}


def means_of(data_type: str) -> np.ndarray:
    """[8, 2] ring or [25, 2] grid means; row k is the mean of label k."""
    return ring_means() if data_type == "ring" else grid_means()


class MixtureSampler:
    """Successive draws of one run: the original's global RNGs, here seeded per run.

    Args:
        seed: seeds both the legacy NumPy ``RandomState`` and the Python ``random.Random``.
    """

    def __init__(self, seed: int):
        self.np_rng = np.random.RandomState(seed % 2**32)
        self.py_rng = random.Random(seed)

    def normal(self, shape) -> np.ndarray:
        """float32 standard normal draws (the fixed test latents)."""
        return self.np_rng.standard_normal(shape).astype(np.float32)

    def sample(self, data_type: str, n: int, var: float):
        """n points of ``ring`` or ``grid`` as float32 [n, 2] and int64 [n] labels."""
        mixture = ring_mixture if data_type == "ring" else grid_mixture
        points, labels = mixture(n, var=var, np_rng=self.np_rng, py_rng=self.py_rng)
        return points.astype(np.float32), labels.astype(np.int64)
