"""BigGAN-deep (``pytorch_pretrained_biggan``) as a Keras model, wrapped as in ``colat/generators/biggan.py``.

Architecture (Brock et al. 2019, deep variant; module names as in the PyTorch port so its checkpoint loads):
``embeddings`` (bias-free dense 1000 -> 128, not spectrally normalised); ``generator.gen_z`` (SN dense
256 -> 4*4*16ch); ``generator.layers`` = the GenBlocks of ``config.layers`` with a SelfAttn inserted at
``attention_layer_position``; then ``generator.bn`` (unconditional), ReLU, ``generator.conv_to_rgb`` (3x3,
ch -> ch), the first 3 channels, tanh. A GenBlock is BN-ReLU-1x1 conv (in -> in/4), BN-ReLU-[nearest x2]-3x3
conv, BN-ReLU-3x3 conv, BN-ReLU-1x1 conv (-> out), plus the input with its upper half of channels dropped
when in != out (and upsampled when the block upsamples). Every BN is class- and latent-conditional
(scale 1 + W_s c, shift W_b c, both bias-free SN dense layers of the 256-d condition c = [z_layer, embed])
with pre-computed statistics indexed by the truncation (51 levels, interpolated - with the weights swapped,
as the PyTorch port does). Convolutions and dense layers are spectrally normalised (inference form).

The LatentCLR wrapper feeds a different latent to every block ("multi-z"): latent 0 goes to ``gen_z``,
latent j >= 1 to the j-th GenBlock, so ``n_latent() = len(config.layers) + 1`` (13 for deep-256).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators import imagenet
from latentclr.generators.base import Generator, draw_seed
from latentclr.generators.locate import biggan_weights
from latentclr.generators.ops import SNConv2d, SNLinear, TorchModule, nearest_upsample

CONFIG_NAME = "config.json"

# (upsample?, in multiplier, out multiplier) per GenBlock. 128: the package's default config. 256 / 512:
# BigGAN-deep's architecture table (two blocks per resolution, channels drop in the upsampling block);
# the config.json shipped with the weights takes precedence when present.
_DEEP_256 = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
             (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]
CONFIGS = {
    128: dict(output_dim=128, layers=[(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                                      (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)]),
    256: dict(output_dim=256, layers=_DEEP_256),
    512: dict(output_dim=512, layers=_DEEP_256 + [(False, 1, 1), (True, 1, 1)]),
}
DEFAULTS = dict(z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000, attention_layer_position=8,
                eps=1e-4, n_stats=51)


def biggan_config(resolution: int | None = None, **overrides) -> dict:
    """The ``BigGANConfig`` fields for ``biggan-deep-<resolution>`` (or a custom, e.g. tiny, one)."""
    cfg = dict(DEFAULTS)
    if resolution is not None:
        if int(resolution) not in CONFIGS:
            raise UsageError(f"generator.resolution must be one of {sorted(CONFIGS)}, got {resolution}")
        cfg.update(CONFIGS[int(resolution)])
    cfg.update(overrides)
    cfg["layers"] = [tuple(layer) for layer in cfg["layers"]]
    return cfg


def truncation_stats(running: tf.Variable, truncation: float, step_size: float) -> tf.Tensor:
    """Statistics for ``truncation``: row t/step, or a blend of two rows with the port's swapped weights
    (row i gets weight coef, row i+1 weight 1 - coef), with ``math.modf`` as in the original."""
    coef, start = math.modf(truncation / step_size)
    start = int(start)
    if coef != 0.0:
        return running[start] * coef + running[start + 1] * (1.0 - coef)
    return running[start]


class BigGANBatchNorm(TorchModule):
    """Inference BatchNorm with truncation-indexed statistics; conditional (SN scale/offset) or affine."""

    def __init__(self, num_features, condition_dim=None, n_stats=51, eps=1e-4, conditional=True, **kwargs):
        super().__init__(**kwargs)
        self.eps, self.conditional, self.step_size = eps, conditional, 1.0 / (n_stats - 1)
        self.running_means = self.weight((n_stats, num_features), "running_means")
        self.running_vars = self.weight((n_stats, num_features), "running_vars", "ones")
        if conditional:
            self.scale = SNLinear(condition_dim, num_features, use_bias=False, name="scale")
            self.offset = SNLinear(condition_dim, num_features, use_bias=False, name="offset")
        else:
            self.gamma = self.weight((num_features,), "weight", "ones")
            self.beta = self.weight((num_features,), "bias")

    def torch_tensors(self):
        rows = [("running_means", self.running_means, "as_is"), ("running_vars", self.running_vars, "as_is")]
        if not self.conditional:
            rows += [("weight", self.gamma, "as_is"), ("bias", self.beta, "as_is")]
        return rows

    def torch_children(self):
        return [("scale", self.scale), ("offset", self.offset)] if self.conditional else []

    def call(self, x, truncation, condition=None):
        mean = truncation_stats(self.running_means, truncation, self.step_size)
        var = truncation_stats(self.running_vars, truncation, self.step_size)
        normed = (x - mean) / tf.sqrt(var + self.eps)
        if self.conditional:
            weight = 1.0 + self.scale(condition)[:, None, None, :]
            bias = self.offset(condition)[:, None, None, :]
            return normed * weight + bias
        return normed * self.gamma + self.beta


class GenBlock(TorchModule):
    def __init__(self, in_size, out_size, condition_dim, up_sample, n_stats, eps, reduction_factor=4, **kwargs):
        super().__init__(**kwargs)
        middle = in_size // reduction_factor
        self.up_sample, self.drop_channels = up_sample, in_size != out_size
        self.bn_0 = BigGANBatchNorm(in_size, condition_dim, n_stats, eps, name="bn_0")
        self.conv_0 = SNConv2d(in_size, middle, 1, name="conv_0")
        self.bn_1 = BigGANBatchNorm(middle, condition_dim, n_stats, eps, name="bn_1")
        self.conv_1 = SNConv2d(middle, middle, 3, name="conv_1")
        self.bn_2 = BigGANBatchNorm(middle, condition_dim, n_stats, eps, name="bn_2")
        self.conv_2 = SNConv2d(middle, middle, 3, name="conv_2")
        self.bn_3 = BigGANBatchNorm(middle, condition_dim, n_stats, eps, name="bn_3")
        self.conv_3 = SNConv2d(middle, out_size, 1, name="conv_3")

    def torch_children(self):
        return [(n, getattr(self, n)) for n in ("bn_0", "conv_0", "bn_1", "conv_1", "bn_2", "conv_2", "bn_3",
                                                "conv_3")]

    def call(self, x, condition, truncation):
        x0 = x
        x = self.conv_0(tf.nn.relu(self.bn_0(x, truncation=truncation, condition=condition)))
        x = tf.nn.relu(self.bn_1(x, truncation=truncation, condition=condition))
        if self.up_sample:
            x = nearest_upsample(x)
        x = self.conv_1(x)
        x = self.conv_2(tf.nn.relu(self.bn_2(x, truncation=truncation, condition=condition)))
        x = self.conv_3(tf.nn.relu(self.bn_3(x, truncation=truncation, condition=condition)))
        if self.drop_channels:
            x0 = x0[..., : x0.shape[-1] // 2]
        if self.up_sample:
            x0 = nearest_upsample(x0)
        return x + x0


class SelfAttn(TorchModule):
    """SAGAN self-attention: theta/phi/g 1x1 SN convs, 2x2 max-pooled keys and values, out = x + gamma o."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.snconv1x1_theta = SNConv2d(channels, channels // 8, 1, use_bias=False, name="snconv1x1_theta")
        self.snconv1x1_phi = SNConv2d(channels, channels // 8, 1, use_bias=False, name="snconv1x1_phi")
        self.snconv1x1_g = SNConv2d(channels, channels // 2, 1, use_bias=False, name="snconv1x1_g")
        self.snconv1x1_o_conv = SNConv2d(channels // 2, channels, 1, use_bias=False, name="snconv1x1_o_conv")
        self.gamma = self.weight((1,), "gamma")

    def torch_tensors(self):
        return [("gamma", self.gamma, "as_is")]

    def torch_children(self):
        return [(n, getattr(self, n)) for n in ("snconv1x1_theta", "snconv1x1_phi", "snconv1x1_g",
                                                "snconv1x1_o_conv")]

    def call(self, x):
        b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        ch = self.channels
        theta = tf.reshape(self.snconv1x1_theta(x), (b, h * w, ch // 8))
        pool = lambda t: tf.nn.max_pool2d(t, 2, 2, "VALID")  # noqa: E731
        phi = tf.reshape(pool(self.snconv1x1_phi(x)), (b, (h * w) // 4, ch // 8))
        attn = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True), axis=-1)  # [B, HW, HW/4]
        g = tf.reshape(pool(self.snconv1x1_g(x)), (b, (h * w) // 4, ch // 2))
        attn_g = tf.reshape(tf.matmul(attn, g), (b, h, w, ch // 2))
        return x + self.gamma * self.snconv1x1_o_conv(attn_g)


class BigGANDeep(TorchModule):
    """``BigGAN`` (embeddings + generator) with per-block latents; names follow the PyTorch port."""

    def __init__(self, config: dict, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        ch, cond = config["channel_width"], config["z_dim"] * 2
        self.embeddings = self.weight((config["num_classes"], config["z_dim"]), "embeddings", "glorot_uniform")
        self.gen_z = SNLinear(cond, 4 * 4 * 16 * ch, name="gen_z")
        self.blocks = []
        for i, (up, cin, cout) in enumerate(config["layers"]):
            if i == config["attention_layer_position"]:
                self.blocks.append(SelfAttn(ch * cin, name=f"layers_{len(self.blocks)}"))
            self.blocks.append(GenBlock(ch * cin, ch * cout, cond, bool(up), config["n_stats"], config["eps"],
                                        name=f"layers_{len(self.blocks)}"))
        self.bn = BigGANBatchNorm(ch, n_stats=config["n_stats"], eps=config["eps"], conditional=False, name="bn")
        self.conv_to_rgb = SNConv2d(ch, ch, 3, name="conv_to_rgb")
        self.n_latents = len(config["layers"]) + 1

    def torch_tensors(self):
        return [("embeddings.weight", self.embeddings, "linear")]

    def torch_children(self):
        rows = [("generator.gen_z", self.gen_z)]
        rows += [(f"generator.layers.{i}", block) for i, block in enumerate(self.blocks)]
        return rows + [("generator.bn", self.bn), ("generator.conv_to_rgb", self.conv_to_rgb)]

    def conditions(self, zs, class_vector):
        """[z_j, embed] for every latent j (c = 256-d for deep models)."""
        embed = tf.matmul(class_vector, self.embeddings)
        return [tf.concat([z, embed], axis=1) for z in zs]

    def run(self, zs, class_vector, truncation, n_modules=None, final=True):
        """Forward through ``gen_z`` and the first ``n_modules`` modules of ``generator.layers``
        (all when None), then the output head when ``final``. zs: ``n_latents`` tensors [B, z_dim]."""
        conds = self.conditions(zs, class_vector)
        x = tf.reshape(self.gen_z(conds[0]), (-1, 4, 4, 16 * self.config["channel_width"]))
        cond_index = 1
        blocks = self.blocks if n_modules is None else self.blocks[:n_modules]
        for block in blocks:
            if isinstance(block, GenBlock):
                x = block(x, condition=conds[cond_index], truncation=truncation)
                cond_index += 1
            else:
                x = block(x)
        if not final:
            return x
        x = tf.nn.relu(self.bn(x, truncation=truncation))
        x = self.conv_to_rgb(x)[..., :3]
        return tf.tanh(x)


class BigGANGenerator(Generator):
    """``colat.generators.BigGANGenerator``: BigGAN-deep at ``resolution`` for one ImageNet class.

    Latents are truncated normals: scipy ``truncnorm(-2, 2)`` from ``RandomState(seed)`` times
    ``truncation`` (``truncated_noise_sample``). ``class_name`` is an ImageNet index or a name (looked up
    in the shipped table of the 1000 synsets' names, or with NLTK's WordNet when installed, as the
    original). Weights: ``$GANCONTROL_CHECKPOINT_DIR/biggan-deep-<res>/pytorch_model.bin`` (+ config.json),
    read without PyTorch, or a ``pytorch_model.npz`` of the same state_dict.
    """

    def __init__(self, resolution=256, device=None, truncation=0.4, class_name="husky",
                 feature_layer="generator.layers.0", weights: str | None = None, config: dict | None = None,
                 **unused):
        super().__init__(feature_layer)
        self.truncation = float(truncation)
        if not 0.0 < self.truncation <= 1.0:
            raise UsageError(f"generator.truncation must be in (0, 1], got {truncation}")
        self.name = f"biggan-deep-{resolution}"
        if config is None:
            config, weights_path = _find_weights(self.name, resolution, weights)
        else:
            weights_path = weights
        self.config = biggan_config(None if "layers" in config else resolution, **config)
        self.latent_dim = self.config["z_dim"]
        self.class_index = imagenet.class_index(class_name, self.config["num_classes"])
        self.class_name = class_name
        self.model = BigGANDeep(self.config, name="biggan")
        if weights_path is not None:
            self.model.load_torch(_read_state(weights_path))
        self.v_class = np.eye(self.config["num_classes"], dtype=np.float32)[self.class_index][None]

    def n_latent(self) -> int:
        return self.model.n_latents

    def sample_latent(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        from scipy.stats import truncnorm

        if seed is None:
            seed = draw_seed()
        values = truncnorm.rvs(-2, 2, size=(batch_size, self.latent_dim), random_state=np.random.RandomState(seed))
        return (self.truncation * values.astype(np.float32)).astype(np.float32)

    def _class_vector(self, z):
        return tf.tile(tf.constant(self.v_class), (tf.shape(z)[0], 1))

    def __call__(self, z):
        zs = self.as_latent_list(z, self.n_latent())
        out = self.model.run(zs, self._class_vector(zs[0]), self.truncation)
        return 0.5 * (out + 1.0)

    def module_count(self, layer_name: str) -> int:
        """Modules of ``generator.layers`` run for ``layer_name`` (the original's rules, incl. its
        off-by-one: an unknown name runs ``len(config.layers)`` modules, one short of all of them)."""
        if layer_name in ("embeddings", "generator.gen_z"):
            return 0
        if "generator.layers" in layer_name:
            match = re.match(r"^generator\.layers\.[0-9]+", layer_name)
            if match is None:
                raise UsageError(f"generator.feature_layer={layer_name!r}: expected generator.layers.<index>")
            index = int(match.group(0).split(".")[-1])
            if index >= len(self.model.blocks):
                raise UsageError(f"generator.feature_layer={layer_name!r}: this BigGAN has "
                                 f"{len(self.model.blocks)} modules in generator.layers")
            return index + 1
        return len(self.config["layers"])

    def partial_forward(self, z, layer_name: str):
        zs = self.as_latent_list(z, self.n_latent())
        return self.model.run(zs, self._class_vector(zs[0]), self.truncation, self.module_count(layer_name),
                              final=False)


def _find_weights(name: str, resolution, weights: str | None):
    """(config fields from the config.json beside the weights, weights file); missing: a UsageError."""
    found = biggan_weights(resolution, weights)
    config = {}
    config_file = found.parent / CONFIG_NAME
    if config_file.is_file():
        fields = set(DEFAULTS) | {"layers", "output_dim"}
        config = {k: v for k, v in json.loads(config_file.read_text()).items() if k in fields}
    return config, found


def _read_state(path) -> dict:
    from latentclr.generators.weights import read_state_dict

    return read_state_dict(path)
