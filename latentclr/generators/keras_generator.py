"""Any Keras generator behind the LatentCLR interface (config ``generator=keras``).

The wrapped ``keras.Model`` (functional or sequential, e.g. a ``.keras`` file) takes one latent input
[B, S] - or ``n_latent`` of them, one per layer, which enables ``feed_layers`` - optionally followed by
one condition input (e.g. a one-hot class) that is held fixed, and returns images in ``output_range``.
Any layer can be the feature layer: a sub-model from the inputs to that layer's output is built once and
cached, so the forward pass stops there. A dotted name (``block.conv``) reaches into a nested model.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators.base import Generator, draw_seed

LATENT_DISTRIBUTIONS = ("normal", "uniform", "sphere")


def sample_latents(rng: np.random.RandomState, batch_size: int, latent_dim: int, distribution: str) -> np.ndarray:
    """[B, S] float32 latents from ``rng``; ``normal`` draws in the StyleGAN samplers' order."""
    if distribution == "normal":
        return rng.standard_normal(latent_dim * batch_size).reshape(batch_size, latent_dim).astype(np.float32)
    if distribution == "uniform":
        return rng.uniform(-1.0, 1.0, (batch_size, latent_dim)).astype(np.float32)
    if distribution == "sphere":
        z = rng.standard_normal(latent_dim * batch_size).reshape(batch_size, latent_dim)
        return (z / np.linalg.norm(z, axis=1, keepdims=True)).astype(np.float32)
    raise UsageError(f"generator.latent_distribution must be one of {LATENT_DISTRIBUTIONS}, got {distribution!r}")


class KerasGenerator(Generator):
    """Wrap a Keras generator.

    Args:
        model: the ``keras.Model`` (or give ``model_path`` to a ``.keras`` file).
        feature_layer: layer name (dotted for nested models) whose output is the feature.
        latent_dim: checked against the model's first input (inferred when None).
        latent_distribution: ``normal`` (default), ``uniform`` in [-1, 1] or ``sphere`` (unit norm).
        truncation, latent_avg: images (not features) use avg + truncation * (z - avg), as the StyleGAN2
            wrapper does; 1.0 turns it off.
        output_range: the model's output range, mapped to [0, 1] (the originals' 0.5 * (out + 1)).
        condition: a fixed [C] vector fed as the model's last input (e.g. a one-hot class).
        class_name: only a label here (it names the run folder); ``condition`` is what the model sees.
    """

    def __init__(self, model: keras.Model | None = None, model_path: str | None = None,
                 feature_layer: str = "", latent_dim: int | None = None, latent_distribution: str = "normal",
                 truncation: float = 1.0, latent_avg=None, output_range=(-1.0, 1.0), condition=None,
                 class_name=None, **unused):
        super().__init__(feature_layer)
        if model is None:
            if not model_path:
                raise UsageError("generator.model_path: give the .keras file of the generator to wrap")
            path = Path(str(model_path)).expanduser()
            if not path.exists():
                raise UsageError(f"generator.model_path: {path} does not exist")
            model = keras.saving.load_model(path, compile=False)
        self.model = model
        self.model.trainable = False
        self.class_name = class_name
        self.condition = None if condition is None else np.asarray(condition, np.float32)
        inputs = list(model.inputs)
        n_inputs = len(inputs) - (1 if self.condition is not None else 0)
        if n_inputs < 1:
            raise UsageError("generator: the Keras model has no latent input")
        self._n_latent = n_inputs
        dim = int(inputs[0].shape[-1])
        if latent_dim is not None and int(latent_dim) != dim:
            raise UsageError(f"generator.latent_dim={latent_dim} but the model's latent input has size {dim}")
        self.latent_dim = dim
        if latent_distribution not in LATENT_DISTRIBUTIONS:
            raise UsageError(f"generator.latent_distribution must be one of {LATENT_DISTRIBUTIONS}, "
                             f"got {latent_distribution!r}")
        self.latent_distribution = latent_distribution
        self.truncation = float(truncation)
        self.latent_avg = None if latent_avg is None else np.asarray(latent_avg, np.float32).reshape(1, -1)
        self.output_range = (float(output_range[0]), float(output_range[1]))
        self._submodels: dict[str, keras.Model] = {}

    def n_latent(self) -> int:
        return self._n_latent

    def sample_latent(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        if seed is None:
            seed = draw_seed()
        return sample_latents(np.random.RandomState(seed), batch_size, self.latent_dim, self.latent_distribution)

    def _inputs(self, z):
        if isinstance(z, (list, tuple)):
            if self._n_latent == 1:
                raise UsageError("feed_layers needs a generator with per-layer latent inputs; this Keras model has "
                                 "one latent input (n_latent = 1)")
            zs = self.as_latent_list(z, self._n_latent)
        else:
            zs = [z] * self._n_latent
        if self.condition is not None:
            batch = tf.shape(zs[0])[0]
            zs = zs + [tf.tile(tf.constant(self.condition)[None], (batch, 1))]
        return zs if len(zs) > 1 else zs[0]

    def partial_forward(self, z, layer_name: str):
        return self._submodel(layer_name)(self._inputs(z), training=False)

    def __call__(self, z):
        if self.truncation < 1.0 and self.latent_avg is not None:
            avg = tf.constant(self.latent_avg)

            def trunc(w):
                return avg + self.truncation * (w - avg)

            z = [trunc(w) for w in z] if isinstance(z, (list, tuple)) else trunc(z)
        out = tf.cast(self.model(self._inputs(z), training=False), tf.float32)  # float16 under mixed precision
        lo, hi = self.output_range
        return (out - lo) / (hi - lo)

    def _submodel(self, name: str) -> keras.Model:
        if name not in self._submodels:
            self._submodels[name] = keras.Model(self.model.inputs, _resolve_output(self.model, name, name))
        return self._submodels[name]


def _resolve_output(model: keras.Model, name: str, full_name: str):
    """The symbolic output of layer ``name`` in ``model``'s graph (``a.b`` reaches into nested model ``a``)."""
    try:
        return model.get_layer(name).output
    except ValueError:
        pass
    head, _, rest = name.partition(".")
    if rest:
        try:
            inner = model.get_layer(head)
        except ValueError:
            inner = None
        if isinstance(inner, keras.Model) and inner._inbound_nodes:
            # The nested model's part up to the layer, applied to the tensors the outer graph feeds it.
            head_model = keras.Model(inner.inputs, _resolve_output(inner, rest, full_name))
            fed = inner._inbound_nodes[0].input_tensors
            return head_model(fed if len(fed) > 1 else fed[0])
    names = [layer.name for layer in model.layers]
    raise UsageError(f"generator.feature_layer={full_name!r}: no such layer; the model has "
                     f"{', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
