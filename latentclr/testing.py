"""Tiny generators for tests, smoke runs and benchmarks (no weights files, built in well under a second).

- :func:`toy_generator`: a functional Keras generator latent -> 32x32 RGB with named layers (``fc``,
  ``conv8``, ``conv16``, ``rgb``), optionally with one latent input per layer (``n_latent``) whose
  ``cat`` layer concatenates them (so a test can see which latent reached which input).
- :func:`identity_generator`: its ``identity`` layer outputs the latent itself - the feature of the
  pipeline-identity and convergence checks.
- ``TINY_BIGGAN`` / ``TINY_STYLEGAN2`` / ``TINY_STYLEGAN``: keyword arguments of the three pre-trained
  architectures at toy sizes with their full layout (attention block, upsampling, fused upscale, ...).
"""

from __future__ import annotations

from pathlib import Path

import keras

TINY_BIGGAN = dict(z_dim=8, class_embed_dim=8, channel_width=4, num_classes=10, attention_layer_position=1,
                   eps=1e-4, n_stats=51, layers=[(True, 16, 8), (True, 8, 4), (False, 4, 2), (True, 2, 1)],
                   output_dim=32)
TINY_STYLEGAN2 = dict(resolution=32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 8, 32: 8}, random_init=True)
TINY_STYLEGAN = dict(resolution=32, dlatent_size=16, fmap_base=64, fmap_max=16, mapping_layers=2, fused_min=16,
                     random_init=True)


def toy_generator(latent_dim: int = 16, size: int = 32, n_latent: int = 1, channels: int = 8) -> keras.Model:
    """z [B, S] (or ``n_latent`` of them) -> tanh images [B, size, size, 3]."""
    inputs = [keras.Input((latent_dim,), name=f"z{i}") for i in range(n_latent)]
    x = inputs[0] if n_latent == 1 else keras.layers.Concatenate(name="cat")(inputs)
    x = keras.layers.Dense(4 * 4 * channels, activation="relu", name="fc")(x)
    x = keras.layers.Reshape((4, 4, channels), name="reshape")(x)
    while x.shape[1] < size:
        x = keras.layers.UpSampling2D(name=f"up{x.shape[1] * 2}")(x)
        x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"conv{x.shape[1]}")(x)
    out = keras.layers.Conv2D(3, 3, padding="same", activation="tanh", name="rgb")(x)
    return keras.Model(inputs, out, name="toy")


def identity_generator(latent_dim: int = 8) -> keras.Model:
    """Feature layer ``identity`` = the latent; the output is a small image so that grids can be drawn."""
    z = keras.Input((latent_dim,), name="z")
    feature = keras.layers.Activation("linear", name="identity")(z)
    x = keras.layers.Dense(4 * 4 * 3, activation="tanh", name="fc")(feature)
    return keras.Model(z, keras.layers.Reshape((4, 4, 3), name="image")(x), name="identity_generator")


def save_model(model: keras.Model, path: str | Path) -> Path:
    path = Path(path)
    model.save(path)
    return path
