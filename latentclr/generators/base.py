"""The interface every generator offers to LatentCLR (``colat/generators/abstract.py``).

A generator is frozen: it is always run in inference mode and its weights are never trained or saved
with the directions. The trainer only needs five things from it:

- ``sample_latent(batch_size, seed=None)`` -> [B, S] float32 NumPy latents. Without a seed, one is drawn
  with ``np.random.randint(2**31 - 1)`` from NumPy's global RNG and a ``RandomState(seed)`` draws the
  values, as in the original (so the same global seed gives the same latents bit for bit);
- ``partial_forward(z, layer_name)`` -> the activation of the named layer, [B, H, W, C] (NHWC) or [B, ...],
  stopping the forward pass there; ``z`` is [B, S] or a list of ``n_latent()`` such tensors (one latent
  per layer, used by ``feed_layers``);
- ``get_features(z)`` = ``partial_forward(z, feature_layer)``;
- ``n_latent()`` -> the number of per-layer latent inputs;
- ``__call__(z)`` -> images [B, H, W, 3] mapped to [0, 1] by 0.5 * (out + 1) (may leave [0, 1] slightly).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common.errors import UsageError


def draw_seed() -> int:
    """A seed from NumPy's global RNG, as the original's samplers draw it."""
    return int(np.random.randint(np.iinfo(np.int32).max))


class Generator:
    """Base class: ``feature_layer`` plus the shared helpers; subclasses implement the interface above."""

    #: dimension S of one latent vector (of the space the directions live in)
    latent_dim: int = 0

    def __init__(self, feature_layer: str):
        self.feature_layer = str(feature_layer)

    def get_features(self, z):
        return self.partial_forward(z, self.feature_layer)

    def feature_shape(self) -> tuple[int, ...]:
        """Shape of one sample's activation at ``feature_layer`` (runs the generator on one latent)."""
        z = tf.constant(self.sample_latent(1, seed=0))
        return tuple(int(d) for d in self.get_features(z).shape[1:])

    @staticmethod
    def as_latent_list(z, n_latent: int) -> list:
        """A list of ``n_latent`` latents: ``z`` itself if it is a list (checked), else ``z`` repeated."""
        if isinstance(z, (list, tuple)):
            if len(z) != n_latent:
                raise UsageError(f"expected {n_latent} latents (one per layer), got {len(z)}")
            return list(z)
        return [z] * n_latent
