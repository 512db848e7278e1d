"""StyleGAN2 (rosinality's ``stylegan2-pytorch`` Generator) as a Keras model, wrapped as in
``colat/generators/stylegan2.py``.

Architecture (Karras et al. 2020; module names as rosinality's so the GANSpace ``.pt`` files load):
``style`` = PixelNorm + ``n_mlp`` equalised-lr dense layers (lr_mul 0.01, fused leaky ReLU); ``input`` =
a learned 4x4 constant; ``conv1`` + ``to_rgb1`` at 4x4; then per resolution 8 .. size two StyledConvs
(``convs.{2m}`` upsamples, ``convs.{2m+1}``) and one ToRGB (``to_rgbs.{m}``) adding to the upsampled skip
image. A StyledConv is a modulated 3x3 convolution (weights scaled per sample by a style, demodulated),
fixed noise times a learned strength, and a biased leaky ReLU times sqrt(2). Channels: 512 up to 32 px,
then 256, 128, 64, 32 times the channel multiplier / 2 (``channels`` overrides the table, for tiny tests).

Modulation is applied to the activations instead of the weights (x * s, shared convolution, then the
demodulation factor per sample and output channel): the same arithmetic as the original's grouped
convolution with per-sample weights, without building one kernel per sample.
"""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators.base import Generator, draw_seed
from latentclr.generators.locate import STYLEGAN2_RESOLUTIONS as RESOLUTIONS
from latentclr.generators.locate import stylegan2_weights
from latentclr.generators.ops import TorchModule, upfirdn2d
from latentclr.generators.weights import read_checkpoint, sub_state

log = logging.getLogger(__name__)

BLUR_KERNEL = (1, 3, 3, 1)
SQRT2 = math.sqrt(2.0)


def make_kernel(k) -> np.ndarray:
    k = np.asarray(k, np.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def channel_table(channel_multiplier: int = 2) -> dict[int, int]:
    m = channel_multiplier
    return {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m, 256: 64 * m, 512: 32 * m, 1024: 16 * m}


class EqualLinear(TorchModule):
    """Dense layer with equalised learning rate: x (W * lr_mul / sqrt(in))^T + b * lr_mul; optional fused
    leaky ReLU (sqrt(2) * lrelu(., 0.2) after the bias)."""

    def __init__(self, in_dim, out_dim, bias_init=0.0, lr_mul=1.0, activation=False, **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.weight((in_dim, out_dim), "kernel", "random_normal")
        self.bias = self.weight((out_dim,), "bias", _constant(bias_init))
        self.scale, self.lr_mul, self.activation = lr_mul / math.sqrt(in_dim), lr_mul, activation

    def torch_tensors(self):
        return [("weight", self.kernel, "linear"), ("bias", self.bias, "as_is")]

    def call(self, x):
        out = tf.matmul(x, self.kernel * self.scale) + self.bias * self.lr_mul
        return SQRT2 * tf.nn.leaky_relu(out, 0.2) if self.activation else out


def _constant(value):
    def init(shape, dtype=None):
        return tf.fill(shape, tf.constant(value, dtype or tf.float32))

    return init


class ModulatedConv2d(TorchModule):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, demodulate=True, upsample=False,
                 blur_kernel=BLUR_KERNEL, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.out_channel = kernel_size, out_channel
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.kernel = self.weight((kernel_size, kernel_size, in_channel, out_channel), "kernel", "random_normal")
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0, name="modulation")
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur_pad = ((p + 1) // 2 + factor - 1, p // 2 + 1)
            self.blur_kernel = make_kernel(blur_kernel) * factor ** 2

    def torch_tensors(self):
        return [("weight", self.kernel, "modconv")]

    def torch_children(self):
        return [("modulation", self.modulation)]

    def call(self, x, style):
        s = self.modulation(style)  # [B, in]
        w = self.kernel * self.scale
        x = x * s[:, None, None, :]
        if self.upsample:
            b, h, wd = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
            k = self.kernel_size
            out_shape = tf.stack([b, (h - 1) * 2 + k, (wd - 1) * 2 + k, self.out_channel])
            out = tf.nn.conv2d_transpose(x, tf.transpose(w, (0, 1, 3, 2)), out_shape, 2, "VALID")
        else:
            out = tf.nn.conv2d(x, w, 1, "SAME")
        if self.demodulate:
            demod = tf.math.rsqrt(tf.matmul(tf.square(s), tf.reduce_sum(tf.square(w), axis=(0, 1))) + 1e-8)
            out = out * demod[:, None, None, :]
        if self.upsample:
            out = upfirdn2d(out, self.blur_kernel, pad=self.blur_pad)
        return out


class StyledConv(TorchModule):
    """Modulated conv, fixed noise times ``noise.weight``, leaky ReLU with ``activate.bias``."""

    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False, **kwargs):
        super().__init__(**kwargs)
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample, name="conv")
        self.noise_strength = self.weight((1,), "noise_weight")
        self.act_bias = self.weight((out_channel,), "activate_bias")

    def torch_tensors(self):
        return [("noise.weight", self.noise_strength, "as_is"), ("activate.bias", self.act_bias, "as_is")]

    def torch_children(self):
        return [("conv", self.conv)]

    def call(self, x, style, noise):
        out = self.conv(x, style) + self.noise_strength * noise
        return SQRT2 * tf.nn.leaky_relu(out + self.act_bias, 0.2)


class ToRGB(TorchModule):
    def __init__(self, in_channel, style_dim, upsample=True, **kwargs):
        super().__init__(**kwargs)
        self.upsample = upsample
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False, name="conv")
        self.bias = self.weight((1, 1, 1, 3), "bias")
        self.up_kernel = make_kernel(BLUR_KERNEL) * 4

    def torch_tensors(self):
        return [("bias", self.bias, "nchw")]

    def torch_children(self):
        return [("conv", self.conv)]

    def call(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + upfirdn2d(skip, self.up_kernel, up=2, pad=(2, 1))
        return out


class StyleGAN2Model(TorchModule):
    """rosinality ``Generator(size, style_dim, n_mlp, channel_multiplier)`` (NHWC)."""

    def __init__(self, size, style_dim=512, n_mlp=8, channel_multiplier=2, lr_mlp=0.01, channels=None, **kwargs):
        super().__init__(**kwargs)
        self.size, self.style_dim = int(size), int(style_dim)
        self.log_size = int(math.log2(self.size))
        if 2 ** self.log_size != self.size or self.size < 8:
            raise UsageError(f"StyleGAN2 resolution must be a power of two >= 8, got {size}")
        ch = {int(k): int(v) for k, v in (channels or channel_table(channel_multiplier)).items()}
        self.mapping = [EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True, name=f"style_{i + 1}")
                        for i in range(n_mlp)]
        self.const = self.weight((1, 4, 4, ch[4]), "input", "random_normal")
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, name="conv1")
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False, name="to_rgb1")
        self.convs, self.to_rgbs = [], []
        in_channel = ch[4]
        for i in range(3, self.log_size + 1):
            out_channel = ch[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         name=f"convs_{len(self.convs)}"))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, name=f"convs_{len(self.convs)}"))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, name=f"to_rgbs_{len(self.to_rgbs)}"))
            in_channel = out_channel
        self.n_latent = self.log_size * 2 - 2
        self.num_layers = (self.log_size - 2) * 2 + 1

    def torch_tensors(self):
        return [("input.input", self.const, "nchw")]

    def torch_children(self):
        rows = [(f"style.{i + 1}", layer) for i, layer in enumerate(self.mapping)]
        rows += [("conv1", self.conv1), ("to_rgb1", self.to_rgb1)]
        rows += [(f"convs.{i}", c) for i, c in enumerate(self.convs)]
        return rows + [(f"to_rgbs.{i}", t) for i, t in enumerate(self.to_rgbs)]

    def style(self, z):
        """The mapping network Z -> W: PixelNorm, then the ``n_mlp`` dense layers."""
        x = z * tf.math.rsqrt(tf.reduce_mean(tf.square(z), axis=1, keepdims=True) + 1e-8)
        for layer in self.mapping:
            x = layer(x)
        return x

    def make_noise(self, seed: int = 0) -> list[tf.Tensor]:
        """Fixed noise maps [1, H, W, 1]: one 4x4, then two per resolution 8 .. size."""
        rng = np.random.RandomState(seed)
        shapes = [4] + [2 ** i for i in range(3, self.log_size + 1) for _ in range(2)]
        return [tf.constant(rng.standard_normal((1, s, s, 1)).astype(np.float32)) for s in shapes]


class StyleGAN2Generator(Generator):
    """``colat.generators.StyleGAN2Generator``: rosinality StyleGAN2 (size from ``class_name``, 512-d, n_mlp 8).

    With ``use_w`` the directions live in W: ``sample_latent`` maps z ~ N(0, I) through the mapping network.
    Features (``partial_forward``) are computed from untruncated latents; images (``__call__``) apply
    w_avg + truncation (w - w_avg) with ``latent_avg`` from the checkpoint - as the original.

    Noise maps are fixed once (``set_noise_seed(0)``); the original draws them with ``torch.manual_seed(0)``,
    here they come from ``np.random.RandomState(0)`` (same shapes and distribution, different numbers).

    Layer names follow the original's substring rules (``style``, ``input``, ``conv1``, ``to_rgb1``,
    ``convs.{i}``, ``to_rgbs.{m}`` which returns the conv features, not the RGB). Substring matching makes
    ``convs.10`` ... ``convs.15`` return ``convs.1``; ``exact_layer_names=True`` matches names exactly.

    Tiny variants for tests: give ``resolution``, ``style_dim``, ``n_mlp``, ``channels`` and
    ``random_init=True`` (no weights file).
    """

    def __init__(self, device=None, class_name="ffhq", truncation=0.7, use_w=True, feature_layer="conv1",
                 exact_layer_names=False, weights: str | None = None, resolution: int | None = None,
                 style_dim=512, n_mlp=8, channel_multiplier=2, channels=None, random_init=False, **unused):
        super().__init__(feature_layer)
        self.class_name, self.truncation, self.w_primary = str(class_name), float(truncation), bool(use_w)
        self.exact_layer_names = bool(exact_layer_names)
        if resolution is None:
            if self.class_name not in RESOLUTIONS:
                raise UsageError(f"generator.class_name={class_name!r} is not a StyleGAN2 class; use one of "
                                 f"{', '.join(RESOLUTIONS)}")
            resolution = RESOLUTIONS[self.class_name]
        self.resolution = int(resolution)
        path = None
        if not random_init:
            path = stylegan2_weights(self.class_name, self.resolution, weights)
        self.model = StyleGAN2Model(self.resolution, style_dim, n_mlp, channel_multiplier, channels=channels,
                                    name="stylegan2")
        self.latent_dim = int(style_dim)
        self.latent_avg = tf.zeros((self.latent_dim,))
        if path is not None:
            ckpt = read_checkpoint(path)
            self.model.load_torch(sub_state(ckpt, "g_ema"))
            if "latent_avg" not in ckpt:
                raise UsageError(f"{path}: no latent_avg entry (expected the g_ema + latent_avg checkpoint)")
            self.latent_avg = tf.constant(np.asarray(ckpt["latent_avg"], np.float32).reshape(-1))
        self.noise = self.model.make_noise(0)
        self._warned = False

    def n_latent(self) -> int:
        return self.model.n_latent

    def sample_latent(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        if seed is None:
            seed = draw_seed()
        rng = np.random.RandomState(seed)
        z = rng.standard_normal(self.latent_dim * batch_size).reshape(batch_size, self.latent_dim).astype(np.float32)
        if self.w_primary:
            z = self.model.style(tf.constant(z)).numpy()
        return z

    def _latent(self, styles):
        """[B, n_latent, S] from 1 (broadcast), 2 (mixed at a random layer) or n_latent styles."""
        n = self.model.n_latent
        if len(styles) == 1:
            return tf.tile(styles[0][:, None, :], (1, n, 1))
        if len(styles) == 2:
            inject = random.randint(1, n - 1)
            return tf.concat([tf.tile(styles[0][:, None, :], (1, inject, 1)),
                              tf.tile(styles[1][:, None, :], (1, n - inject, 1))], axis=1)
        if len(styles) != n:
            raise UsageError(f"expected {n} latents, got {len(styles)}")
        return tf.stack(styles, axis=1)

    def _match(self, token: str, name: str) -> bool:
        if self.exact_layer_names:
            return name == token or name.startswith(token + ".")
        hit = token in name
        if hit and not (name == token or name.startswith(token + ".")) and not self._warned:
            log.warning("StyleGAN2 layer %r resolved to %r by substring matching, as in the original "
                        "(generator.exact_layer_names=true matches exactly)", name, token)
            self._warned = True
        return hit

    def partial_forward(self, z, layer_name: str):
        styles = list(z) if isinstance(z, (list, tuple)) else [z]
        if not self.w_primary:
            styles = [self.model.style(s) for s in styles]
        latent = self._latent(styles)
        if self._match("style", layer_name):
            return latent
        return self._synthesis(latent, layer_name)

    def _synthesis(self, latent, layer_name: str | None):
        m, noise = self.model, self.noise
        out = tf.tile(m.const, (tf.shape(latent)[0], 1, 1, 1))
        if layer_name == "input":
            return out
        out = m.conv1(out, style=latent[:, 0], noise=noise[0])
        if layer_name is not None and self._match("conv1", layer_name):
            return out
        skip = m.to_rgb1(out, style=latent[:, 1])
        if layer_name is not None and self._match("to_rgb1", layer_name):
            return skip
        i = 1
        for conv_a, conv_b, to_rgb in zip(m.convs[::2], m.convs[1::2], m.to_rgbs):
            out = conv_a(out, style=latent[:, i], noise=noise[i])
            if layer_name is not None and self._match(f"convs.{i - 1}", layer_name):
                return out
            out = conv_b(out, style=latent[:, i + 1], noise=noise[i + 1])
            if layer_name is not None and self._match(f"convs.{i}", layer_name):
                return out
            skip = to_rgb(out, style=latent[:, i + 2], skip=skip)
            if layer_name is not None and self._match(f"to_rgbs.{i // 2}", layer_name):
                return out
            i += 2
        if layer_name is None:
            return skip
        raise UsageError(f"generator.feature_layer: Layer {layer_name} not encountered in partial_forward")

    def __call__(self, z):
        styles = list(z) if isinstance(z, (list, tuple)) else [z]
        if not self.w_primary:
            styles = [self.model.style(s) for s in styles]
        if self.truncation < 1.0:
            styles = [self.latent_avg + self.truncation * (s - self.latent_avg) for s in styles]
        image = self._synthesis(self._latent(styles), None)
        return 0.5 * (image + 1.0)

