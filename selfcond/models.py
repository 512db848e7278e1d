"""The image networks of the Self-Conditioned GAN (spec §5.1-§5.4) and their registry.

=============== ======================================= ================================================
name            generator                                discriminator (features = penultimate layer)
=============== ======================================= ================================================
dcgan_deep      Linear -> 4x4x512, 3 x [ConvT, BN, ReLU], 7 convs, LReLU 0.1, no norm -> 8192 (CIFAR)
                Conv 3x3, tanh -> 32x32x3
dcgan_shallow   the same generator                      4 x [Conv k4 s2, BN, LReLU 0.2] -> 2048 (Stacked MNIST)
resnet2         Linear -> 4x4x1024, 12 res blocks, up x2 conv + 12 res blocks, 3x3 avg pools
                x5 -> 128x128x3                          (zeros counted) -> 16384 (ImageNet, Places)
=============== ======================================= ================================================

Generators are called ``G(z [B, z_dim], y [B] int, training)`` -> images [B, H, W, 3] in (-1, 1);
discriminators ``D(x, y, training)`` -> logits [B] and ``D.features(x, training)`` -> [B, F]. Labels are
clamped to ``nlabels - 1`` in both. Conditioning: G ``embedding`` (normalised 256-d label embedding
concatenated to z) or ``unconditional``; D ``mask`` (one logit per label, the one of y) or
``unconditional``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from common.errors import UsageError
from selfcond.layers import (
    LatentEmbeddingConcat,
    LogitsHead,
    TorchBatchNorm,
    attach,
    conv,
    conv_transpose,
    dense,
    leaky_relu,
    pad,
)


def _check_conditioning(kind: str, conditioning: str, nlabels: int, allowed: tuple) -> None:
    if conditioning not in allowed:
        raise UsageError(f"{kind}.conditioning: expected one of {allowed}, got {conditioning!r}")
    if conditioning == "unconditional" and nlabels != 1:
        raise UsageError(f"{kind}: conditioning unconditional needs nlabels 1, got {nlabels}")


class ConditionalGenerator(keras.Model):
    """Shared front of every generator: [concat(z, e_y/||e_y||)] -> Linear (spec §1.5)."""

    def _init_latent(self, nlabels, conditioning, z_dim, embed_dim, units):
        _check_conditioning("generator", conditioning, nlabels, ("embedding", "unconditional"))
        self.nlabels, self.conditioning, self.z_dim = int(nlabels), conditioning, int(z_dim)
        extra = embed_dim if conditioning == "embedding" else 0
        self.get_latent = LatentEmbeddingConcat(nlabels, embed_dim, name="get_latent") if extra else None
        self.fc = dense(units, z_dim + extra, name="fc")

    def latent_input(self, z, y):
        """The first linear layer's input: [B, z_dim (+ embed_dim)]."""
        return z if self.get_latent is None else self.get_latent(z, y)


class DCGANGenerator(ConditionalGenerator):
    """dcgan_deep / dcgan_shallow generator (spec §5.1): [B, z_dim] -> [B, 32, 32, nc].

    Linear -> 4x4x(8 ngf), no norm or activation; 3 x [ConvT k4 s2 p1, BN, ReLU]; Conv 3x3 -> tanh.
    3,812,355 trainable parameters unconditional, 5,935,107 with 100 labels.
    """

    def __init__(self, nlabels: int, conditioning: str, z_dim: int = 128, nc: int = 3, ngf: int = 64,
                 embed_dim: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.ngf = int(ngf)
        self._init_latent(nlabels, conditioning, z_dim, embed_dim, 4 * 4 * ngf * 8)
        names = ("conv1", "conv2", "conv3")
        self._convs = attach(self, names, (conv_transpose(ngf * m, name=n) for n, m in zip(names, (4, 2, 1))))
        self._bns = attach(self, ("bn1", "bn2", "bn3"), (TorchBatchNorm(name=f"bn{i + 1}") for i in range(3)))
        self.pad_out = pad(1)
        self.conv_out = conv(nc, 3, ngf, name="conv_out")

    def call(self, z, y, training=False):
        out = self.fc(self.latent_input(z, y))
        out = tf.reshape(out, [-1, 4, 4, self.ngf * 8])
        for conv_t, bn in zip(self._convs, self._bns):
            out = tf.nn.relu(bn(conv_t(out), training=training))
        return tf.tanh(self.conv_out(self.pad_out(out)))


class Discriminator(keras.Model):
    """Shared tail of every discriminator: features -> :class:`LogitsHead` (mask or unconditional)."""

    def _init_head(self, nlabels, conditioning, feature_dim):
        _check_conditioning("discriminator", conditioning, nlabels, ("mask", "unconditional"))
        self.nlabels, self.conditioning, self.feature_dim = int(nlabels), conditioning, int(feature_dim)
        self.fc_out = LogitsHead(nlabels, feature_dim, conditioning, clamp=True, name="fc_out")

    def call(self, x, y, training=False):
        return self.fc_out(self.flat_features(x, training=training), y)

    def features(self, x, training=False):
        """[B, F] clustering features (``penultimate`` or, where supported, ``summed``)."""
        return self.flat_features(x, training=training)


class DCGANDeepDiscriminator(Discriminator):
    """dcgan_deep discriminator (spec §5.2): [B, 32, 32, nc] -> 8192 features, LReLU 0.1, no norm.

    Args:
        features: ``penultimate`` (flattened 4x4x512) or ``summed`` (per-channel sum over space, 512).
        pack_size: PacGAN packing; only 1 (every config) is supported.
    """

    def __init__(self, nlabels: int, conditioning: str, nc: int = 3, ndf: int = 64, pack_size: int = 1,
                 features: str = "penultimate", **kwargs):
        super().__init__(**kwargs)
        _check_pack_and_features(pack_size, features, ("penultimate", "summed"))
        self.feature_mode = features
        plan = [(ndf, 3, 1), (ndf, 4, 2), (ndf * 2, 3, 1), (ndf * 2, 4, 2), (ndf * 4, 3, 1), (ndf * 4, 4, 2),
                (ndf * 8, 3, 1)]
        c_in, convs = nc, []
        for i, (filters, kernel, stride) in enumerate(plan):
            convs.append(conv(filters, kernel, c_in, stride, name=f"conv{i + 1}"))
            c_in = filters
        self._convs = attach(self, [f"conv{i + 1}" for i in range(len(plan))], convs)
        self._pads = attach(self, [f"pad{i + 1}" for i in range(len(plan))], (pad(1) for _ in plan))
        self.act = leaky_relu(0.1)
        self._init_head(nlabels, conditioning, ndf * 8 * 4 * 4)

    def conv_features(self, x, training=False):
        for padding, layer in zip(self._pads, self._convs):
            x = self.act(layer(padding(x)))
        return x

    def flat_features(self, x, training=False):
        out = self.conv_features(x, training)
        return tf.reshape(out, [tf.shape(out)[0], -1])

    def features(self, x, training=False):
        out = self.conv_features(x, training)
        if self.feature_mode == "summed":
            return tf.reduce_sum(out, axis=[1, 2])
        return tf.reshape(out, [tf.shape(out)[0], -1])


class DCGANShallowDiscriminator(Discriminator):
    """dcgan_shallow discriminator (spec §5.3): 4 x [Conv k4 s2 p1, BN, LReLU 0.2] -> 2x2x512 = 2048 features.

    Its BatchNorm runs in training mode on the real and fake batches separately (per-source statistics)
    and in inference mode for clustering.
    """

    def __init__(self, nlabels: int, conditioning: str, features: str = "penultimate", pack_size: int = 1,
                 nc: int = 3, ndf: int = 64, **kwargs):
        super().__init__(**kwargs)
        _check_pack_and_features(pack_size, features, ("penultimate",))
        c_in, convs = nc, []
        for i, m in enumerate((1, 2, 4, 8)):
            convs.append(conv(ndf * m, 4, c_in, 2, name=f"conv{i + 1}"))
            c_in = ndf * m
        self._convs = attach(self, [f"conv{i + 1}" for i in range(4)], convs)
        self._pads = attach(self, [f"pad{i + 1}" for i in range(4)], (pad(1) for _ in range(4)))
        self._bns = attach(self, [f"bn{i + 1}" for i in range(4)],
                           (TorchBatchNorm(name=f"bn{i + 1}") for i in range(4)))
        self.act = leaky_relu(0.2)
        self._init_head(nlabels, conditioning, ndf * 8 * 4)

    def flat_features(self, x, training=False):
        for padding, layer, bn in zip(self._pads, self._convs, self._bns):
            x = self.act(bn(layer(padding(x)), training=training))
        return tf.reshape(x, [tf.shape(x)[0], -1])


class ResnetBlock(keras.layers.Layer):
    """out = shortcut(x) + 0.1 * conv_1(lrelu(conv_0(lrelu(x)))), no normalisation (spec §5.4).

    conv_0: fin -> min(fin, fout), 3x3; conv_1: -> fout, 3x3; shortcut: 1x1 conv without bias if fin != fout.
    """

    def __init__(self, fin: int, fout: int, **kwargs):
        super().__init__(**kwargs)
        hidden = min(fin, fout)
        self.pad0, self.pad1 = pad(1), pad(1)
        self.conv_0 = conv(hidden, 3, fin, name="conv_0")
        self.conv_1 = conv(fout, 3, hidden, name="conv_1")
        self.conv_s = conv(fout, 1, fin, use_bias=False, name="conv_s") if fin != fout else None
        self.act = leaky_relu(0.2)

    def call(self, x):
        shortcut = x if self.conv_s is None else self.conv_s(x)
        dx = self.conv_0(self.pad0(self.act(x)))
        dx = self.conv_1(self.pad1(self.act(dx)))
        return shortcut + 0.1 * dx


class ResNetGenerator(ConditionalGenerator):
    """resnet2 generator (spec §5.4): Linear -> s0 x s0 x 16nf, res blocks with nearest x2 upsampling.

    s0 = size // 32 (4 at 128 px). 96,085,443 trainable parameters unconditional, 100,305,347 with 100 labels.
    """

    def __init__(self, z_dim: int, nlabels: int, size: int, conditioning: str, embed_size: int = 256,
                 nfilter: int = 64, **kwargs):
        super().__init__(**kwargs)
        self.s0, self.nf = size // 32, int(nfilter)
        if self.s0 < 1:
            raise UsageError(f"data.img_size: resnet2 needs at least 32 pixels, got {size}")
        nf = self.nf
        self._init_latent(nlabels, conditioning, z_dim, embed_size, 16 * nf * self.s0 * self.s0)
        widths = [(16, 16), (16, 16), (16, 16), (16, 16), (16, 8), (8, 8), (8, 4), (4, 4), (4, 2), (2, 2), (2, 1),
                  (1, 1)]
        names = [f"resnet_{i // 2}_{i % 2}" for i in range(len(widths))]
        self._blocks = attach(self, names, (ResnetBlock(a * nf, b * nf, name=n) for n, (a, b) in zip(names, widths)))
        self.up = keras.layers.UpSampling2D(2, interpolation="nearest")
        self.act = leaky_relu(0.2)
        self.pad_img = pad(1)
        self.conv_img = conv(3, 3, nf, name="conv_img")

    def call(self, z, y, training=False):
        out = self.fc(self.latent_input(z, y))
        out = tf.reshape(out, [-1, self.s0, self.s0, 16 * self.nf])
        for i, block in enumerate(self._blocks):
            if i > 0 and i % 2 == 0:
                out = self.up(out)
            out = block(out)
        return tf.tanh(self.conv_img(self.pad_img(self.act(out))))


class ResNetDiscriminator(Discriminator):
    """resnet2 discriminator (spec §5.4): conv 3 -> nf, res blocks and 3x3/2 average pools -> 16 nf s0^2.

    The pool is zero padding 1 then 3x3 stride-2 averaging that always divides by 9 (PyTorch
    ``avg_pool2d(3, 2, 1)`` counts the padded zeros; Keras' 'same' pooling would not).
    """

    def __init__(self, nlabels: int, size: int, conditioning: str, nfilter: int = 64,
                 features: str = "penultimate", pack_size: int = 1, **kwargs):
        super().__init__(**kwargs)
        _check_pack_and_features(pack_size, features, ("penultimate", "summed"))
        self.feature_mode = features
        self.s0, self.nf = size // 32, int(nfilter)
        if self.s0 < 1:
            raise UsageError(f"data.img_size: resnet2 needs at least 32 pixels, got {size}")
        nf = self.nf
        self.pad_img = pad(1)
        self.conv_img = conv(nf, 3, 3, name="conv_img")
        widths = [(1, 1), (1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8), (8, 16), (16, 16), (16, 16), (16, 16),
                  (16, 16)]
        names = [f"resnet_{i // 2}_{i % 2}" for i in range(len(widths))]
        self._blocks = attach(self, names, (ResnetBlock(a * nf, b * nf, name=n) for n, (a, b) in zip(names, widths)))
        self.pool_pad = pad(1)
        self.pool = keras.layers.AveragePooling2D(3, strides=2, padding="valid")
        self.act = leaky_relu(0.2)
        self._init_head(nlabels, conditioning, 16 * nf * self.s0 * self.s0)

    def conv_features(self, x, training=False):
        out = self.conv_img(self.pad_img(x))
        for i, block in enumerate(self._blocks):
            if i > 0 and i % 2 == 0:
                out = self.pool(self.pool_pad(out))
            out = block(out)
        return self.act(out)

    def flat_features(self, x, training=False):
        out = self.conv_features(x, training)
        return tf.reshape(out, [tf.shape(out)[0], -1])

    def features(self, x, training=False):
        out = self.conv_features(x, training)
        if self.feature_mode == "summed":
            return tf.reduce_sum(out, axis=[1, 2])
        return tf.reshape(out, [tf.shape(out)[0], -1])


def _check_pack_and_features(pack_size, features, allowed) -> None:
    if int(pack_size) != 1:
        raise UsageError(f"discriminator.kwargs.pack_size: only 1 is supported (every config), got {pack_size}")
    if features not in allowed:
        raise UsageError(f"discriminator.kwargs.features: expected one of {allowed}, got {features!r}")


GENERATORS = {"dcgan_deep": DCGANGenerator, "dcgan_shallow": DCGANGenerator, "resnet2": ResNetGenerator}
DISCRIMINATORS = {
    "dcgan_deep": DCGANDeepDiscriminator,
    "dcgan_shallow": DCGANShallowDiscriminator,
    "resnet2": ResNetDiscriminator,
}
# Constructor keywords each network accepts from the config's ``kwargs`` (others, e.g. placeholder, are ignored).
_G_KWARGS = {"dcgan_deep": ("nc", "ngf", "embed_dim"), "dcgan_shallow": ("nc", "ngf", "embed_dim"),
             "resnet2": ("embed_size", "nfilter")}
_D_KWARGS = {"dcgan_deep": ("nc", "ndf", "pack_size", "features"),
             "dcgan_shallow": ("nc", "ndf", "pack_size", "features"), "resnet2": ("nfilter", "features", "pack_size")}


def _model_kwargs(section: dict, allowed: tuple) -> dict:
    kwargs = section.get("kwargs") or {}
    return {k: v for k, v in kwargs.items() if k in allowed}


def _registered(config: dict, part: str, registry: dict) -> str:
    name = config[part]["name"]
    if name not in registry:
        raise UsageError(f"{part}.name: unknown model {name!r}; expected one of {sorted(registry)}")
    return name


def build_generator(config: dict, name: str = "generator") -> keras.Model:
    """The generator of a config tree, with variables created (spec §5)."""
    kind = _registered(config, "generator", GENERATORS)
    section, size = config["generator"], int(config["data"]["img_size"])
    kwargs = _model_kwargs(section, _G_KWARGS[kind])
    z_dim = int(config["z_dist"]["dim"])
    if kind == "resnet2":
        model = ResNetGenerator(z_dim, section["nlabels"], size, section["conditioning"], name=name, **kwargs)
    else:
        model = DCGANGenerator(section["nlabels"], section["conditioning"], z_dim=z_dim, name=name, **kwargs)
    model(tf.zeros([1, z_dim]), tf.zeros([1], tf.int32))
    return model


def build_discriminator(config: dict, name: str = "discriminator") -> keras.Model:
    """The discriminator of a config tree, with variables created (spec §5)."""
    kind = _registered(config, "discriminator", DISCRIMINATORS)
    section, size = config["discriminator"], int(config["data"]["img_size"])
    kwargs = _model_kwargs(section, _D_KWARGS[kind])
    if kind == "resnet2":
        model = ResNetDiscriminator(section["nlabels"], size, section["conditioning"], name=name, **kwargs)
    else:
        model = DISCRIMINATORS[kind](section["nlabels"], section["conditioning"], name=name, **kwargs)
        size = 32
    nc = int(kwargs.get("nc", 3))
    model(tf.zeros([1, size, size, nc]), tf.zeros([1], tf.int32))
    return model


def build_models(config: dict):
    """(generator, discriminator) of a config tree (the original's ``build_models``)."""
    return build_generator(config), build_discriminator(config)


def count_parameters(model: keras.Model) -> int:
    """Number of trainable scalars."""
    return int(sum(int(tf.size(v)) for v in model.trainable_variables))
