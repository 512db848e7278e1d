"""StyleGAN (v1) as a Keras model - the lernapparat PyTorch port that ``colat/utils/stylegan_helper.py``
vendors - wrapped as in ``colat/generators/stylegan.py``.

Architecture (Karras et al. 2019; module names as the PyTorch port so GANSpace's ``.pt`` files load):
``g_mapping`` = PixelNorm + 8 equalised-lr dense layers (lr multiplier 0.01) with leaky ReLU 0.2;
``g_synthesis.blocks.{4x4, 8x8, ...}``: the 4x4 block starts from a learned constant plus bias, every later
block upsamples (nearest, or for outputs of 128 px and more the "fused" transposed convolution with a 4x4
kernel made by summing four shifted copies of the 3x3 one) and blurs ([1, 2, 1] filter); each of the two
convolutions of a block is followed by the "layer epilogue": fixed noise times a per-channel strength,
leaky ReLU 0.2, instance normalisation, and the style modulation x (1 + s_scale) + s_shift from a dense
layer of that layer's latent. ``g_synthesis.torgb`` is a 1x1 convolution to RGB (no tanh).
Channels nf(stage) = min(fmap_base / 2^stage, fmap_max): 512 up to 32 px, then 256, 128, 64, 32, 16.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from latentclr.generators.base import Generator, draw_seed
from latentclr.generators.locate import STYLEGAN_RESOLUTIONS as RESOLUTIONS
from latentclr.generators.locate import stylegan_weights
from latentclr.generators.ops import TorchModule, nearest_upsample
from latentclr.generators.weights import read_state_dict

N_LATENT = 18  # the original always reports 18 layers, even for 256 / 512 px models
SQRT2 = math.sqrt(2.0)


class MyLinear(TorchModule):
    """Equalised-lr dense: x (W * w_mul)^T + b * b_mul with w_mul = gain / sqrt(in) * lrmul, b_mul = lrmul."""

    def __init__(self, in_dim, out_dim, gain=SQRT2, lrmul=1.0, **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.weight((in_dim, out_dim), "kernel", "random_normal")
        self.bias = self.weight((out_dim,), "bias")
        self.w_mul, self.b_mul = gain * in_dim ** -0.5 * lrmul, lrmul

    def torch_tensors(self):
        return [("weight", self.kernel, "linear"), ("bias", self.bias, "as_is")]

    def call(self, x):
        return tf.matmul(x, self.kernel * self.w_mul) + self.bias * self.b_mul


class MyConv2d(TorchModule):
    """Equalised-lr convolution; with ``upscale`` it doubles the resolution first (nearest, or fused with a
    transposed convolution when the output is at least ``fused_min`` px) and then blurs (``intermediate``)."""

    def __init__(self, in_ch, out_ch, kernel_size, gain=SQRT2, upscale=False, blur=False, fused_min=128,
                 **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.weight((kernel_size, kernel_size, in_ch, out_ch), "kernel", "random_normal")
        self.bias = self.weight((out_ch,), "bias")
        self.w_mul = gain * (in_ch * kernel_size ** 2) ** -0.5
        self.upscale, self.blur, self.fused_min, self.out_ch = upscale, blur, fused_min, out_ch
        self.blur_kernel = np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16.0

    def torch_tensors(self):
        return [("weight", self.kernel, "conv"), ("bias", self.bias, "as_is")]

    def call(self, x):
        w = self.kernel * self.w_mul
        if self.upscale and min(x.shape[1], x.shape[2]) * 2 >= self.fused_min:
            w = tf.pad(w, [[1, 1], [1, 1], [0, 0], [0, 0]])
            w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]  # [4, 4, in, out]
            b, h, wd = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
            out_shape = tf.stack([b, 2 * h + 2, 2 * wd + 2, self.out_ch])
            x = tf.nn.conv2d_transpose(x, tf.transpose(w, (0, 1, 3, 2)), out_shape, 2, "VALID")
            x = x[:, 1:-1, 1:-1, :]  # PyTorch's padding=1 of the transposed convolution
        else:
            if self.upscale:
                x = nearest_upsample(x)
            x = tf.nn.conv2d(x, w, 1, "SAME")
        if self.blur:
            depthwise = np.tile(self.blur_kernel[:, :, None, None], (1, 1, x.shape[-1], 1))
            x = tf.nn.depthwise_conv2d(x, tf.constant(depthwise, x.dtype), [1, 1, 1, 1], "SAME")
        return x + self.bias


class LayerEpilogue(TorchModule):
    """noise -> leaky ReLU 0.2 -> instance norm -> style modulation x (1 + s0) + s1."""

    def __init__(self, channels, dlatent_size, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.noise_weight = self.weight((channels,), "noise_weight")
        self.style_lin = MyLinear(dlatent_size, channels * 2, gain=1.0, name="style_mod_lin")

    def torch_tensors(self):
        return [("top_epi.noise.weight", self.noise_weight, "as_is")]

    def torch_children(self):
        return [("style_mod.lin", self.style_lin)]

    def call(self, x, latent, noise):
        x = x + self.noise_weight * noise
        x = tf.nn.leaky_relu(x, 0.2)
        mean, var = tf.nn.moments(x, axes=[1, 2], keepdims=True)
        x = (x - mean) * tf.math.rsqrt(var + 1e-5)
        style = self.style_lin(latent)
        return x * (style[:, None, None, : self.channels] + 1.0) + style[:, None, None, self.channels:]


EPILOGUE_LEAVES = ["top_epi.noise", "top_epi.activation", "top_epi.instance_norm", "style_mod.lin"]


class InputBlock(TorchModule):
    def __init__(self, nf, dlatent_size, **kwargs):
        super().__init__(**kwargs)
        self.const = self.weight((1, 4, 4, nf), "const", "ones")
        self.bias = self.weight((nf,), "bias", "ones")
        self.epi1 = LayerEpilogue(nf, dlatent_size, name="epi1")
        self.conv = MyConv2d(nf, nf, 3, name="conv")
        self.epi2 = LayerEpilogue(nf, dlatent_size, name="epi2")
        self.leaves = [f"epi1.{n}" for n in EPILOGUE_LEAVES] + ["conv"] + [f"epi2.{n}" for n in EPILOGUE_LEAVES]

    def torch_tensors(self):
        return [("const", self.const, "nchw"), ("bias", self.bias, "as_is")]

    def torch_children(self):
        return [("epi1", self.epi1), ("conv", self.conv), ("epi2", self.epi2)]

    def call(self, latents, noise):
        x = tf.tile(self.const, (tf.shape(latents)[0], 1, 1, 1)) + self.bias
        x = self.epi1(x, latent=latents[:, 0], noise=noise)
        x = self.conv(x)
        return self.epi2(x, latent=latents[:, 1], noise=noise)


class GSynthesisBlock(TorchModule):
    def __init__(self, in_ch, out_ch, dlatent_size, fused_min=128, **kwargs):
        super().__init__(**kwargs)
        self.conv0_up = MyConv2d(in_ch, out_ch, 3, upscale=True, blur=True, fused_min=fused_min, name="conv0_up")
        self.epi1 = LayerEpilogue(out_ch, dlatent_size, name="epi1")
        self.conv1 = MyConv2d(out_ch, out_ch, 3, name="conv1")
        self.epi2 = LayerEpilogue(out_ch, dlatent_size, name="epi2")
        self.leaves = (["conv0_up.upscale", "conv0_up.intermediate"] + [f"epi1.{n}" for n in EPILOGUE_LEAVES]
                       + ["conv1"] + [f"epi2.{n}" for n in EPILOGUE_LEAVES])

    def torch_children(self):
        return [("conv0_up", self.conv0_up), ("epi1", self.epi1), ("conv1", self.conv1), ("epi2", self.epi2)]

    def call(self, x, latents, noise):
        x = self.epi1(self.conv0_up(x), latent=latents[:, 0], noise=noise)
        return self.epi2(self.conv1(x), latent=latents[:, 1], noise=noise)


class StyleGANModel(TorchModule):
    """``StyleGAN_G(resolution)``: g_mapping + g_synthesis (NHWC)."""

    def __init__(self, resolution, dlatent_size=512, fmap_base=8192, fmap_max=512, mapping_layers=8,
                 fused_min=128, **kwargs):
        super().__init__(**kwargs)
        log2 = int(math.log2(resolution))
        if 2 ** log2 != resolution or resolution < 4:
            raise UsageError(f"StyleGAN resolution must be a power of two >= 4, got {resolution}")

        def nf(stage):
            return min(int(fmap_base / (2.0 ** stage)), fmap_max)

        self.mapping = [MyLinear(dlatent_size, dlatent_size, lrmul=0.01, name=f"dense{i}")
                        for i in range(mapping_layers)]
        self.blocks, self.block_names = [], []
        last = None
        for res in range(2, log2 + 1):
            name, channels = f"{2 ** res}x{2 ** res}", nf(res - 1)
            block = (InputBlock(channels, dlatent_size, name="b" + name) if res == 2
                     else GSynthesisBlock(last, channels, dlatent_size, fused_min=fused_min, name="b" + name))
            self.blocks.append(block)
            self.block_names.append(name)
            last = channels
        self.torgb = MyConv2d(last, 3, 1, gain=1.0, name="torgb")

    def torch_children(self):
        rows = [(f"g_mapping.dense{i}", layer) for i, layer in enumerate(self.mapping)]
        rows += [(f"g_synthesis.blocks.{n}", b) for n, b in zip(self.block_names, self.blocks)]
        return rows + [("g_synthesis.torgb", self.torgb)]

    def g_mapping(self, z):
        x = z * tf.math.rsqrt(tf.reduce_mean(tf.square(z), axis=1, keepdims=True) + 1e-8)
        for layer in self.mapping:
            x = tf.nn.leaky_relu(layer(x), 0.2)
        return x

    def make_noise(self, seed: int = 0) -> list[tf.Tensor]:
        """One map per block; the original reseeds before every noise layer, so both layers of a block share
        it (drawn here from ``np.random.RandomState(seed)`` instead of ``torch.manual_seed(seed)``)."""
        maps = []
        for name in self.block_names:
            size = int(name.split("x")[0])
            maps.append(tf.constant(np.random.RandomState(seed).standard_normal((1, size, size, 1)).astype(np.float32)))
        return maps


class StyleGANGenerator(Generator):
    """``colat.generators.StyleGANGenerator``: StyleGAN v1 (resolution from ``class_name``, 512-d).

    ``truncation`` is accepted and, as in the original, never applied; ``n_latent()`` is 18 for every
    resolution. Layer names: ``g_mapping`` (W broadcast to [B, 18, 512]), ``truncation``, else the first
    synthesis block with a sub-module whose name *contains* the requested one - so the default
    ``g_synthesis.blocks.1`` gives the 16x16 block. Weights: ``stylegan/stylegan_<class>_<res>.pt`` (a
    state_dict, read without PyTorch) or ``.npz``; the TensorFlow pickles of the community models must
    first be converted with the original's ``export_from_tf`` (it needs TensorFlow 1 ``dnnlib``).
    """

    def __init__(self, device=None, class_name="ffhq", truncation=0.7, use_w=True,
                 feature_layer="g_synthesis.blocks.1", weights: str | None = None, resolution: int | None = None,
                 dlatent_size=512, fmap_base=8192, fmap_max=512, mapping_layers=8, fused_min=128, random_init=False,
                 **unused):
        super().__init__(feature_layer)
        self.class_name, self.truncation, self.w_primary = str(class_name), float(truncation), bool(use_w)
        if resolution is None:
            if self.class_name not in RESOLUTIONS:
                raise UsageError(f"generator.class_name={class_name!r} is not a StyleGAN class; use one of "
                                 f"{', '.join(RESOLUTIONS)}")
            resolution = RESOLUTIONS[self.class_name]
        self.resolution = int(resolution)
        path = None if random_init else stylegan_weights(self.class_name, self.resolution, weights)
        self.model = StyleGANModel(self.resolution, dlatent_size, fmap_base, fmap_max, mapping_layers, fused_min,
                                   name="stylegan")
        if path is not None:
            self.model.load_torch(read_state_dict(path))
        self.latent_dim = int(dlatent_size)
        self.noise = self.model.make_noise(0)

    def n_latent(self) -> int:
        return N_LATENT

    def sample_latent(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        if seed is None:
            seed = draw_seed()
        rng = np.random.RandomState(seed)
        z = rng.standard_normal(self.latent_dim * batch_size).reshape(batch_size, self.latent_dim).astype(np.float32)
        if self.w_primary:
            z = self.model.g_mapping(tf.constant(z)).numpy()
        return z

    def _latents(self, x):
        if not self.w_primary:
            x = [self.model.g_mapping(v) for v in x] if isinstance(x, (list, tuple)) else self.model.g_mapping(x)
        if isinstance(x, (list, tuple)):
            return tf.stack(list(x), axis=1)
        return tf.tile(x[:, None, :], (1, N_LATENT, 1))

    def partial_forward(self, x, layer_name: str):
        latents = self._latents(x)
        if "g_mapping" in layer_name or layer_name == "truncation":
            return latents
        out = None
        for i, (name, block) in enumerate(zip(self.model.block_names, self.model.blocks)):
            pair = latents[:, 2 * i: 2 * i + 2]
            out = block(pair, noise=self.noise[i]) if i == 0 else block(out, latents=pair, noise=self.noise[i])
            if any(layer_name in f"g_synthesis.blocks.{name}.{leaf}" for leaf in block.leaves):
                return out
        raise UsageError(f"generator.feature_layer: Layer {layer_name} not encountered in partial_forward")

    def __call__(self, x):
        if isinstance(x, (list, tuple)) and len(x) != N_LATENT:
            raise UsageError(f"StyleGAN: must provide 1 or {N_LATENT} latents, got {len(x)}")
        latents = self._latents(x)
        out = None
        for i, block in enumerate(self.model.blocks):
            pair = latents[:, 2 * i: 2 * i + 2]
            out = block(pair, noise=self.noise[i]) if i == 0 else block(out, latents=pair, noise=self.noise[i])
        return 0.5 * (self.model.torgb(out) + 1.0)

