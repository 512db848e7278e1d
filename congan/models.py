"""Every network of the two ConGAN frameworks, NHWC, with the notebooks' layer order and initialisers.

Framework 2 (spec §3.1-3.6): :class:`LatentTransform`, :class:`ResNetGenerator` (SN-ResNet conditional G),
:class:`ResNetDiscriminator`, :class:`QNetwork`, and the alternative :class:`DCGANGenerator` /
:class:`DCGANDiscriminator` (SN-DCGAN, ``resnetgan=False``).
SimSiam (spec §3.8): :class:`SimSiamEncoder` (backbone + projector; its output is the representation r) and
:class:`SimSiamPredictor`.
Framework 1 (spec §3.7, §3.9): :class:`F1Generator`, :class:`F1Discriminator`, :class:`FlexDCGANEncoder`
(ctx_encoder), :class:`FlexDCGANDecoder` (decoder) and :class:`Projection` (repr_proj / ctx_proj).

Every model lists its leaf layers under their PyTorch ``state_dict`` prefixes in ``torch_modules()`` (a layer
registered twice in PyTorch is listed twice), which is all :mod:`congan.torch_io` needs to import and
export the original checkpoints. Every model returns float32 (a no-op normally; under ``--mixed_precision`` the
float16 results are cast, so losses are computed in float32).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from congan.layers import (
    BatchNorm,
    ConditionalBatchNorm,
    Conv2d,
    ConvTranspose2d,
    FrozenBias,
    LazyBuild,
    Linear,
    PlainBatchNorm,
    SNConv2d,
    SNLinear,
    kaiming_normal_fan_out,
    l2_normalize,
    to_float32,
    track,
    xavier_uniform,
)

CONDITIONING_MODES = ("repr", "none", "none_plain_bn")
LATENT_TRANSFORM_MODES = ("partial", "full", "noop")


def upsample2(x):
    """``nn.Upsample(scale_factor=2)`` (nearest). [B, H, W, C] -> [B, 2H, 2W, C].

    Each pixel is broadcast to a 2x2 block (three graph ops, differentiable and XLA-compatible).
    """
    _, h, w, c = x.shape
    blocks = tf.broadcast_to(tf.reshape(x, (-1, h, 1, w, 1, c)), (tf.shape(x)[0], h, 2, w, 2, c))
    return tf.reshape(blocks, (-1, 2 * h, 2 * w, c))


def avg_pool(x, size):
    """``nn.AvgPool2d(size)`` (stride = size, no padding)."""
    return tf.nn.avg_pool2d(x, size, size, "VALID")


def flatten_chw(x):
    """Flatten [B, H, W, C] in PyTorch's (C, H, W) order -> [B, C*H*W]."""
    return tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (tf.shape(x)[0], -1))


def parameter_count(model) -> int:
    """Number of PyTorch parameters: weights, biases and BN gamma/beta (also frozen ones); no buffers."""
    seen, total = set(), 0
    for _, layer in model.torch_modules():
        for suffix, (var, _, _) in layer.torch_tensors().items():
            if suffix.startswith("running_") or suffix.endswith("._u") or suffix.endswith("._v"):
                continue
            if id(var) not in seen:
                seen.add(id(var))
                total += int(np.prod(var.shape))
    return total


# ---------------------------------------------------------------------------------------------------
# Framework 2
# ---------------------------------------------------------------------------------------------------


class LatentTransform(LazyBuild, keras.Model):
    """T(r, n): the generator input from a representation and noise (spec §3.1).

    Modes: ``partial`` [W r + b ; n] (hidden + noise dims), ``full`` W [r; n] + b (hidden), ``noop`` n.
    Call: r [B, repr_dim], n [B, noise_dim] -> [B, output_dim].
    """

    def __init__(self, repr_dim, noise_dim, hidden_dim, mode="partial", **kwargs):
        super().__init__(**kwargs)
        if mode not in LATENT_TRANSFORM_MODES:
            raise ValueError(f"LatentTransform mode must be one of {LATENT_TRANSFORM_MODES}, got {mode!r}")
        self.repr_dim, self.noise_dim, self.hidden_dim, self.mode = repr_dim, noise_dim, hidden_dim, mode
        self.output_dim = {"partial": hidden_dim + noise_dim, "full": hidden_dim, "noop": noise_dim}[mode]
        self.transform = None if mode == "noop" else Linear(hidden_dim, name="transform")

    def call(self, r, n, training=False):
        if self.mode == "noop":
            return to_float32(n)
        if self.mode == "full":
            return to_float32(self.transform(tf.concat([r, n], axis=1)))
        return to_float32(tf.concat([self.transform(r), n], axis=1))

    def build_now(self):
        if self.transform is not None:
            in_dim = self.repr_dim + (self.noise_dim if self.mode == "full" else 0)
            self.transform.build((None, in_dim))
        self.built = True
        return self

    def torch_modules(self):
        return [] if self.transform is None else [("transform", self.transform)]


def _make_norm(num_features, conditioning, cbn_init, name):
    if conditioning == "none_plain_bn":
        return PlainBatchNorm(num_features, name=name)
    return ConditionalBatchNorm(num_features, cbn_init=cbn_init, name=name)


class _GeneratorBlock(LazyBuild, keras.layers.Layer):
    """ResBlockUp(x, r): h = conv2(relu(CBN2(conv1(up(relu(CBN1(x, r)))), r))); out = up(x) + h."""

    def __init__(self, nf, conditioning, cbn_init, **kwargs):
        super().__init__(**kwargs)
        self.bn1 = _make_norm(nf, conditioning, cbn_init, "bn1")
        self.bn2 = _make_norm(nf, conditioning, cbn_init, "bn2")
        self.conv1 = Conv2d(nf, 3, 1, 1, kernel_initializer=xavier_uniform(1.0), name="conv1")
        self.conv2 = Conv2d(nf, 3, 1, 1, kernel_initializer=xavier_uniform(1.0), name="conv2")

    def call(self, x, r, training=False):
        h = tf.nn.relu(self.bn1(x, r, training=training))
        h = self.conv1(upsample2(h))
        h = tf.nn.relu(self.bn2(h, r, training=training))
        h = self.conv2(h)
        return upsample2(x) + h

    def torch_modules(self, prefix):
        return (self.bn1.torch_modules(f"{prefix}.bn1") + self.bn2.torch_modules(f"{prefix}.bn2")
                + [(f"{prefix}.conv1", self.conv1), (f"{prefix}.conv2", self.conv2)])


class ResNetGenerator(LazyBuild, keras.Model):
    """SN-ResNet conditional generator (spec §3.3). Call: z [B, z_dim], r [B, repr_dim] -> [B, S, S, 3] in [-1, 1].

    Args:
        z_dim: input size (the latent transform's output_dim).
        num_features: nf (128 in the notebook: 2 x ``num_features``).
        image_size: 32 (3 up-blocks) or 64 (4 up-blocks).
        conditioning: ``repr`` (faithful), ``none`` (every CBN gets an all-zero r: the Run 2 choice) or
            ``none_plain_bn`` (affine BN instead of CBN).
        cbn_init: ``original`` (faithful) or ``intended`` (spec §8.2).
    """

    def __init__(self, z_dim, num_features=128, image_size=64, repr_dim=2048, conditioning="repr",
                 cbn_init="original", **kwargs):
        super().__init__(**kwargs)
        if image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {image_size}")
        self.z_dim, self.nf, self.image_size, self.repr_dim = z_dim, num_features, image_size, repr_dim
        self.conditioning = conditioning
        self.dense = Linear(4 * 4 * num_features, kernel_initializer=xavier_uniform(1.0), name="dense")
        track(self, "blocks", [_GeneratorBlock(num_features, conditioning, cbn_init, name=f"block{k}")
                               for k in range(1, 4 if image_size == 32 else 5)])
        self.bn = _make_norm(num_features, conditioning, cbn_init, "bn")
        self.final = Conv2d(3, 3, 1, 1, kernel_initializer=xavier_uniform(1.0), name="final")

    def call(self, z, r, training=False):
        if self.conditioning == "none":
            r = tf.zeros_like(r)
        h = self.dense(z)
        # PyTorch views the dense output as (nf, 4, 4); transposing keeps imported weights unchanged.
        h = tf.transpose(tf.reshape(h, (-1, self.nf, 4, 4)), (0, 2, 3, 1))
        for block in self.blocks:
            h = block(h, r, training=training)
        h = tf.nn.relu(self.bn(h, r, training=training))
        return to_float32(tf.tanh(self.final(h)))

    def torch_modules(self):
        mods = [("dense", self.dense), ("final", self.final)]
        for k, block in enumerate(self.blocks, start=1):
            mods += block.torch_modules(f"block{k}")
        return mods + self.bn.torch_modules("bn")


class _DiscriminatorBlock(LazyBuild, keras.layers.Layer):
    """SN-ResNet D blocks: ``first`` (no ReLU on the image), ``down`` (stride 2) and ``plain`` (stride 1)."""

    def __init__(self, nf, kind, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        self.conv1 = SNConv2d(nf, 3, 1, 1, kernel_initializer=xavier_uniform(1.0), name="conv1")
        self.conv2 = SNConv2d(nf, 3, 1, 1, kernel_initializer=xavier_uniform(1.0), name="conv2")
        self.bypass_conv = None
        if kind in ("first", "down"):
            self.bypass_conv = SNConv2d(nf, 1, 1, 0, kernel_initializer=xavier_uniform(math.sqrt(2.0)),
                                        name="bypass_conv")

    def call(self, x, training=False):
        if self.kind == "first":
            h = self.conv2(tf.nn.relu(self.conv1(x, training=training)), training=training)
            return avg_pool(h, 2) + self.bypass_conv(avg_pool(x, 2), training=training)
        h = self.conv1(tf.nn.relu(x), training=training)
        h = self.conv2(tf.nn.relu(h), training=training)
        if self.kind == "down":
            return avg_pool(h, 2) + avg_pool(self.bypass_conv(x, training=training), 2)
        return h + x

    def torch_modules(self, prefix):
        # PyTorch registers each SN conv twice: as an attribute and inside the Sequential (spec §6).
        seq = {"first": ("model.0", "model.2", "bypass.1"), "down": ("model.1", "model.3", "bypass.0"),
               "plain": ("model.1", "model.3", None)}[self.kind]
        mods = []
        for name, alias in zip(("conv1", "conv2", "bypass_conv"), seq):
            layer = getattr(self, name)
            if layer is not None:
                mods += [(f"{prefix}.{name}", layer), (f"{prefix}.{alias}", layer)]
        return mods


class ResNetDiscriminator(LazyBuild, keras.Model):
    """SN-ResNet discriminator (spec §3.4). Call: x [B, S, S, 3] -> (logits [B, 1], h [B, h_dim] >= 0).

    h_dim = nf at 32 px, 4 nf at 64 px (flattened in PyTorch's CHW order).
    """

    def __init__(self, num_features=128, image_size=64, **kwargs):
        super().__init__(**kwargs)
        if image_size not in (32, 64):
            raise ValueError(f"image_size must be 32 or 64, got {image_size}")
        self.nf, self.image_size = num_features, image_size
        self.hidden_dim = num_features * (4 if image_size == 64 else 1)
        kinds = ["first", "down", "plain", "plain"] + (["plain"] if image_size == 64 else [])
        track(self, "blocks", [_DiscriminatorBlock(num_features, kind, name=f"model_{i}")
                               for i, kind in enumerate(kinds)])
        self.fc = SNLinear(1, kernel_initializer=xavier_uniform(1.0), name="fc")

    def call(self, x, training=False):
        h = x
        for block in self.blocks:
            h = block(h, training=training)
        h = flatten_chw(avg_pool(tf.nn.relu(h), 8))
        return to_float32(self.fc(h, training=training)), to_float32(h)

    def torch_modules(self):
        mods = []
        for i, block in enumerate(self.blocks):
            mods += block.torch_modules(f"model.{i}")
        return mods + [("fc", self.fc)]


class DCGANGenerator(LazyBuild, keras.Model):
    """SN-DCGAN conditional generator (``resnetgan=False``; spec §3.6). z [B, z_dim], r -> [B, S, S, 3]."""

    def __init__(self, z_dim, num_features=64, image_size=32, repr_dim=2048, conditioning="repr",
                 cbn_init="original", **kwargs):
        super().__init__(**kwargs)
        nf = num_features
        self.z_dim, self.conditioning = z_dim, conditioning
        widths = [8 * nf, 4 * nf, 2 * nf, nf] + ([nf // 2] if image_size == 64 else [])
        track(self, "convs", [ConvTranspose2d(w, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, name=f"conv{i + 1}")
                              for i, w in enumerate(widths)])
        track(self, "bns", [_make_norm(w, conditioning, cbn_init, f"bn{i + 1}") for i, w in enumerate(widths)])
        self.final_conv = ConvTranspose2d(3, 3, 1, 1, name="final_conv")

    def call(self, z, r, training=False):
        if self.conditioning == "none":
            r = tf.zeros_like(r)
        h = tf.reshape(z, (-1, 1, 1, self.z_dim))
        for conv, bn in zip(self.convs, self.bns):
            h = tf.nn.relu(bn(conv(h), r, training=training))
        return to_float32(tf.tanh(self.final_conv(h)))

    def torch_modules(self):
        mods = [(f"conv{i + 1}", c) for i, c in enumerate(self.convs)] + [("final_conv", self.final_conv)]
        for i, bn in enumerate(self.bns):
            mods += bn.torch_modules(f"bn{i + 1}")
        return mods


class DCGANDiscriminator(LazyBuild, keras.Model):
    """SN-DCGAN discriminator (spec §3.6). x -> (logits [B] (squeezed), h [B, 8192]); LeakyReLU 0.1."""

    def __init__(self, num_features=64, image_size=32, **kwargs):
        super().__init__(**kwargs)
        nf = num_features
        spec = [(nf, 3, 1), (nf, 4, 2), (2 * nf, 3, 1), (2 * nf, 4, 2), (4 * nf, 3, 1), (4 * nf, 4, 2), (8 * nf, 3, 1)]
        track(self, "main", [SNConv2d(f, k, s, 1, name=f"main_{2 * i}") for i, (f, k, s) in enumerate(spec)])
        from64 = []
        if image_size == 64:
            from64 = [SNConv2d(8 * nf, 3, 2, 1, name="from64_0"), SNConv2d(16 * nf, 3, 1, 1, name="from64_2")]
        track(self, "from64", from64)
        self.hidden_dim = 4 * 4 * (16 if image_size == 64 else 8) * nf
        self.fc = SNLinear(1, name="fc")

    def call(self, x, training=False):
        h = x
        for conv in self.main + self.from64:
            h = tf.nn.leaky_relu(conv(h, training=training), alpha=0.1)
        h = flatten_chw(h)
        return to_float32(tf.squeeze(self.fc(h, training=training), 1)), to_float32(h)

    def torch_modules(self):
        return ([(f"main.{2 * i}", c) for i, c in enumerate(self.main)]
                + [(f"from64.{2 * i}", c) for i, c in enumerate(self.from64)] + [("fc", self.fc)])


class QNetwork(LazyBuild, keras.Model):
    """Q: Linear(h_dim -> hidden, no bias) then Linear(hidden -> repr_dim); no nonlinearity (spec §3.5)."""

    def __init__(self, hidden_dim=512, repr_dim=2048, **kwargs):
        super().__init__(**kwargs)
        self.l0 = Linear(hidden_dim, use_bias=False, name="l0")
        self.l1 = Linear(repr_dim, name="l1")

    def call(self, h, training=False):
        return to_float32(self.l1(self.l0(h)))

    def torch_modules(self):
        return [("0", self.l0), ("1", self.l1)]


# ---------------------------------------------------------------------------------------------------
# SimSiam
# ---------------------------------------------------------------------------------------------------

SIMSIAM_ARCHS = {
    # name: (stem, block, blocks per stage, stage widths, stem width)
    "resnet50": ("imagenet", "bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64),
    "resnet18_cifar": ("cifar", "basic", (2, 2, 2, 2), (64, 128, 256, 512), 64),
    "tiny": ("cifar", "basic", (1, 1), (16, 32), 16),  # tests and smoke runs only
}


class _ResNetBlock(LazyBuild, keras.layers.Layer):
    """torchvision Bottleneck (1x1, 3x3 with the stride, 1x1; expansion 4) or BasicBlock (two 3x3)."""

    def __init__(self, width, stride, kind, needs_downsample, zero_init_residual=True, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind
        conv = dict(use_bias=False, kernel_initializer=kaiming_normal_fan_out())
        last_gamma = "zeros" if zero_init_residual else "ones"
        if kind == "bottleneck":
            out = width * 4
            layers = [Conv2d(width, 1, **conv, name="conv1"), BatchNorm(name="bn1"),
                      Conv2d(width, 3, stride, 1, **conv, name="conv2"), BatchNorm(name="bn2"),
                      Conv2d(out, 1, **conv, name="conv3"), BatchNorm(gamma_initializer=last_gamma, name="bn3")]
        else:
            out = width
            layers = [Conv2d(width, 3, stride, 1, **conv, name="conv1"), BatchNorm(name="bn1"),
                      Conv2d(width, 3, 1, 1, **conv, name="conv2"), BatchNorm(gamma_initializer=last_gamma, name="bn2")]
        track(self, "layers_", layers)
        if needs_downsample:
            track(self, "downsample", [Conv2d(out, 1, stride, **conv, name="ds_conv"), BatchNorm(name="ds_bn")])
        else:
            object.__setattr__(self, "downsample", None)

    def call(self, x, training=False):
        h = x
        pairs = list(zip(self.layers_[0::2], self.layers_[1::2]))
        for i, (conv, bn) in enumerate(pairs):
            h = bn(conv(h), training=training)
            if i < len(pairs) - 1:
                h = tf.nn.relu(h)
        identity = x
        if self.downsample is not None:
            identity = self.downsample[1](self.downsample[0](x), training=training)
        return tf.nn.relu(h + identity)

    def torch_modules(self, prefix):
        names = ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3"]
        mods = [(f"{prefix}.{n}", layer) for n, layer in zip(names, self.layers_)]
        if self.downsample is not None:
            mods += [(f"{prefix}.downsample.0", self.downsample[0]), (f"{prefix}.downsample.1", self.downsample[1])]
        return mods


class SimSiamEncoder(LazyBuild, keras.Model):
    """SimSiam's f = projector(backbone(x)): x [B, S, S, 3] -> r [B, dim] (spec §3.8).

    The projector is Linear(nb)-BN-ReLU, Linear(nb)-BN-ReLU, Linear(+frozen bias)-BN(no affine). The frozen
    bias is non-trainable; BN layers stay trainable-flagged so ``training=True`` uses batch statistics.
    """

    def __init__(self, arch="resnet50", dim=2048, zero_init_residual=True, **kwargs):
        super().__init__(**kwargs)
        if arch not in SIMSIAM_ARCHS:
            raise ValueError(f"SimSiam arch must be one of {sorted(SIMSIAM_ARCHS)}, got {arch!r}")
        stem, kind, blocks, widths, stem_width = SIMSIAM_ARCHS[arch]
        self.arch, self.dim, self.stem = arch, dim, stem
        conv = dict(use_bias=False, kernel_initializer=kaiming_normal_fan_out())
        if stem == "imagenet":
            self.conv1 = Conv2d(stem_width, 7, 2, 3, **conv, name="conv1")
        else:
            self.conv1 = Conv2d(stem_width, 3, 1, 1, **conv, name="conv1")
        self.bn1 = BatchNorm(name="bn1")
        expansion = 4 if kind == "bottleneck" else 1
        stages = []
        in_ch = stem_width
        for s, (n, width) in enumerate(zip(blocks, widths)):
            stage = []
            for b in range(n):
                stride = 2 if (b == 0 and s > 0) else 1
                needs_ds = b == 0 and (stride != 1 or in_ch != width * expansion)
                stage.append(_ResNetBlock(width, stride, kind, needs_ds, zero_init_residual,
                                          name=f"layer{s + 1}_{b}"))
                in_ch = width * expansion
            stages.append(track(self, f"stage{s}", stage))
        object.__setattr__(self, "stages", stages)
        self.prev_dim = in_ch
        track(self, "fc", [Linear(in_ch, use_bias=False, name="fc0"), BatchNorm(name="fc1"),
                   Linear(in_ch, use_bias=False, name="fc3"), BatchNorm(name="fc4"),
                   Linear(dim, use_bias=False, name="fc6"), FrozenBias(in_ch, name="fc6_bias"),
                   BatchNorm(center=False, scale=False, name="fc7")])

    def backbone(self, x, training=False):
        h = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        if self.stem == "imagenet":
            # Zero padding is safe before the max-pool: its input is post-ReLU (spec §7.1).
            h = tf.nn.max_pool2d(tf.pad(h, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
        for stage in self.stages:
            for block in stage:
                h = block(h, training=training)
        return tf.reduce_mean(h, axis=(1, 2))

    def call(self, x, training=False):
        h = self.backbone(x, training=training)
        lin0, bn1, lin3, bn4, lin6, bias6, bn7 = self.fc
        h = tf.nn.relu(bn1(lin0(h), training=training))
        h = tf.nn.relu(bn4(lin3(h), training=training))
        return to_float32(bn7(bias6(lin6(h)), training=training))

    def torch_modules(self):
        mods = [("encoder.conv1", self.conv1), ("encoder.bn1", self.bn1)]
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                mods += block.torch_modules(f"encoder.layer{s + 1}.{b}")
        for index, layer in zip((0, 1, 3, 4, 6, 6, 7), self.fc):
            mods.append((f"encoder.fc.{index}", layer))
        return mods


class SimSiamPredictor(LazyBuild, keras.Model):
    """SimSiam's h: Linear(dim -> pred_dim, nb)-BN-ReLU-Linear(pred_dim -> dim). [B, dim] -> [B, dim]."""

    def __init__(self, dim=2048, pred_dim=512, **kwargs):
        super().__init__(**kwargs)
        self.l0 = Linear(pred_dim, use_bias=False, name="l0")
        self.bn = BatchNorm(name="bn1")
        self.l3 = Linear(dim, name="l3")

    def call(self, z, training=False):
        return to_float32(self.l3(tf.nn.relu(self.bn(self.l0(z), training=training))))

    def torch_modules(self):
        return [("predictor.0", self.l0), ("predictor.1", self.bn), ("predictor.3", self.l3)]


# ---------------------------------------------------------------------------------------------------
# Framework 1
# ---------------------------------------------------------------------------------------------------


class F1Generator(LazyBuild, keras.Model):
    """G: z [B, 256] -> unit-norm fake representation [B, repr_dim] (spec §3.9).

    Linear(nb)-BN-LReLU(0.2), then 5 x [Linear(nb)-BN-LReLU], then Linear(nb)-BN(no affine)-L2 normalise.
    Hidden width = repr_dim // 10.
    """

    def __init__(self, latent_dim=256, repr_dim=2048, **kwargs):
        super().__init__(**kwargs)
        hidden = repr_dim // 10
        track(self, "linears", [Linear(hidden if i < 6 else repr_dim, use_bias=False, name=f"lin{3 * i}")
                                for i in range(7)])
        track(self, "bns", [BatchNorm(name=f"bn{3 * i + 1}") for i in range(6)]
              + [BatchNorm(center=False, scale=False, name="bn19")])

    def call(self, z, training=False):
        h = z
        for i, (lin, bn) in enumerate(zip(self.linears, self.bns)):
            h = bn(lin(h), training=training)
            if i < 6:
                h = tf.nn.leaky_relu(h, alpha=0.2)
        return to_float32(l2_normalize(h, axis=1))

    def torch_modules(self):
        return ([(f"G.{3 * i}", lin) for i, lin in enumerate(self.linears)]
                + [(f"G.{3 * i + 1}", bn) for i, bn in enumerate(self.bns)])


class F1Discriminator(LazyBuild, keras.Model):
    """D on representations: [B, repr_dim] -> sigmoid probability [B, 1] (spec §3.9).

    ``batchnorm`` (gan_type "gan"/"wgan") inserts a BN after the second Linear.
    """

    def __init__(self, repr_dim=2048, batchnorm=False, **kwargs):
        super().__init__(**kwargs)
        hidden = repr_dim // 10
        self.l0 = Linear(hidden, use_bias=False, name="l0")
        self.l2 = Linear(hidden, use_bias=False, name="l2")
        self.bn = BatchNorm(name="bn3") if batchnorm else None
        self.out = Linear(1, name="out")

    def call(self, s, training=False):
        h = tf.nn.leaky_relu(self.l0(s), alpha=0.2)
        h = self.l2(h)
        if self.bn is not None:
            h = self.bn(h, training=training)
        h = tf.nn.leaky_relu(h, alpha=0.2)
        return to_float32(tf.sigmoid(self.out(h)))

    def torch_modules(self):
        if self.bn is not None:
            return [("D.0", self.l0), ("D.2", self.l2), ("D.3", self.bn), ("D.5", self.out)]
        return [("D.0", self.l0), ("D.2", self.l2), ("D.4", self.out)]


def _flex_dcgan_sizes(image_size, num_features=64, max_features=512):
    """Layer plan of the flexible DCGAN: halve the size until <= 5; widths min(512, nf 2^i)."""
    sizes = [image_size]
    while sizes[-1] > 5:
        sizes.append(sizes[-1] // 2)
    layers = len(sizes) - 1
    return sizes, [min(max_features, round(num_features * 2 ** i)) for i in range(layers)]


class FlexDCGANEncoder(LazyBuild, keras.Model):
    """Flexible DCGAN discriminator used as Framework 1's ctx_encoder (spec §3.7).

    Conv4x4/s2/p1 (nb)-BN-LReLU(0.2) blocks, then Conv k x k (nb) -> num_latents, optional sigmoid.
    x [B, 64, 64, 3] -> [B, num_latents].
    """

    def __init__(self, num_latents=256, image_size=64, num_features=64, batchnorm=True, sigmoid=True, **kwargs):
        super().__init__(**kwargs)
        sizes, widths = _flex_dcgan_sizes(image_size, num_features)
        track(self, "convs", [Conv2d(w, 4, 2, 1, use_bias=False, name=f"conv{i}") for i, w in enumerate(widths)])
        track(self, "bns", [BatchNorm(name=f"bn{i}") if batchnorm else None for i in range(len(widths))])
        self.out = Conv2d(num_latents, sizes[-1], 1, 0, use_bias=False, name="out")
        self.sigmoid = sigmoid

    def call(self, x, training=False):
        h = x
        for conv, bn in zip(self.convs, self.bns):
            h = conv(h)
            if bn is not None:
                h = bn(h, training=training)
            h = tf.nn.leaky_relu(h, alpha=0.2)
        h = flatten_chw(self.out(h))
        return to_float32(tf.sigmoid(h) if self.sigmoid else h)

    def torch_modules(self):
        mods = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            prefix = "input_layer" if i == 0 else f"main_layers.{i - 1}"
            mods.append((f"{prefix}.conv", conv))
            if bn is not None:
                mods.append((f"{prefix}.batchnorm", bn))
        return mods + [("output_layer.0", self.out)]


class FlexDCGANDecoder(LazyBuild, keras.Model):
    """Flexible DCGAN generator used as Framework 1's decoder (spec §3.7).

    ConvT k/s1/p0 (nb)-BN-ReLU from a 1x1 input, ConvT 4/2/1 (nb)-BN-ReLU blocks, ConvT 4/2/1 (nb) -> 3, tanh.
    p [B, num_latents] -> [B, 64, 64, 3] in [-1, 1].
    """

    def __init__(self, num_latents=512, image_size=64, num_features=64, **kwargs):
        super().__init__(**kwargs)
        sizes, widths = _flex_dcgan_sizes(image_size, num_features)
        widths = widths[::-1]
        self.num_latents = num_latents
        track(self, "convs", [ConvTranspose2d(widths[0], sizes[-1], 1, 0, use_bias=False, name="convT0")]
              + [ConvTranspose2d(w, 4, 2, 1, use_bias=False, name=f"convT{i + 1}") for i, w in enumerate(widths[1:])])
        track(self, "bns", [BatchNorm(name=f"bn{i}") for i in range(len(self.convs))])
        self.out = ConvTranspose2d(3, 4 + image_size % 2, 2, 1, use_bias=False, name="out")

    def call(self, p, training=False):
        h = tf.reshape(p, (-1, 1, 1, self.num_latents))
        for conv, bn in zip(self.convs, self.bns):
            h = tf.nn.relu(bn(conv(h), training=training))
        return to_float32(tf.tanh(self.out(h)))

    def torch_modules(self):
        mods = []
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            prefix = "input_layer" if i == 0 else f"main_layers.{i - 1}"
            mods += [(f"{prefix}.convT", conv), (f"{prefix}.batchnorm", bn)]
        return mods + [("output_layer", self.out)]


class Projection(LazyBuild, keras.Model):
    """repr_proj / ctx_proj: sigmoid(Linear(x)). [B, in] -> [B, units] in (0, 1)."""

    def __init__(self, units=256, prefix="repr_proj", **kwargs):
        super().__init__(**kwargs)
        self.linear = Linear(units, name="linear")
        self.prefix = prefix

    def call(self, x, training=False):
        return to_float32(tf.sigmoid(self.linear(x)))

    def torch_modules(self):
        return [(f"{self.prefix}.0", self.linear)]
