"""The CIFAR-2 ResNets of SLOGAN ("ResGAN"): generator, discriminator and encoder (spec §4.2).

128 channels everywhere, 3×3 convolutions He-uniform, 1×1 shortcuts, dense layers and the final 3-channel
convolution Glorot-uniform, zero biases, padding SAME, ReLU activations (no LeakyReLU in these nets).

    G: z [B, d] -> Dense(4·4·C) -> [B, 4, 4, C] -> Up(8) -> Up(16) -> Up(32) -> BN -> ReLU -> Conv3×3(3) -> tanh
    D: x [B, 32, 32, 3] -> Opt(16) -> Down(8) -> Plain(8) -> Plain(8) -> ReLU -> mean_HW -> Dense(1)
    E: as D with its own weights and Dense(d) at the end.

Layers carry the variable names of the TF1 original in creation order (``dense``, ``BatchNorm``,
``conv2d``, ``BatchNorm_1``, ``conv2d_1``, …, spec §4.4), which the TF1-checkpoint converter relies on.
With C = 128 and d = 128 the trainable parameter counts are G 1 204 483, D 1 053 825, E 1 070 208.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf

from common import replicas
from common.slogan.layers import TF1BatchNorm

CHANNELS = 128


class GeneratorBatchNorm(TF1BatchNorm):
    """:class:`TF1BatchNorm` computed the way the original's runs did, for 4-D feature maps.

    - One device, training mode: TF's fused batch-norm kernel, the op the original's
      ``tf.contrib.layers.batch_norm(fused)`` ran. It returns the biased-variance normalisation and the
      Bessel-corrected batch variance for the moving average, and it is a single op (with a single gradient
      op), which keeps the traced train step small.
    - Several replicas (``tf.distribute``): :class:`TF1BatchNorm`'s cross-replica statistics (the original
      trained on one GPU, so BatchNorm saw the whole batch; the per-replica sums are all-reduced).
    - Inference mode, or other ranks: exactly :class:`TF1BatchNorm`.
    """

    def call(self, x, training=False, update_stats=False):
        if not training or len(x.shape) != 4 or replicas.num_replicas() > 1:
            return super().call(x, training=training, update_stats=update_stats)
        return self._fused(x, update_stats)

    def _fused(self, x, update_stats):
        empty = tf.zeros([0], x.dtype)
        y, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=self.gamma, offset=self.beta, mean=empty, variance=empty, epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True)[:3]
        if update_stats:
            self._update_moving_statistics(mean, unbiased_variance)
        return y


def upsample(x: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour ×2 upsampling as the original: 4 channel-wise copies, then depth-to-space."""
    return tf.nn.depth_to_space(tf.concat([x, x, x, x], axis=-1), 2)


def pool(x: tf.Tensor) -> tf.Tensor:
    """2×2 mean pooling with stride 2 (the original's mean of the four strided slices)."""
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class _Names:
    """Hands out the TF1 default layer names in creation order: ``conv2d``, ``conv2d_1``, …"""

    def __init__(self):
        self._counts: dict[str, int] = {}

    def __call__(self, base: str) -> str:
        n = self._counts.get(base, 0)
        self._counts[base] = n + 1
        return base if n == 0 else f"{base}_{n}"


def _conv(names: _Names, filters: int, size: int, he: bool) -> keras.layers.Conv2D:
    init = keras.initializers.HeUniform() if he else keras.initializers.GlorotUniform()
    return keras.layers.Conv2D(
        filters, size, padding="same", kernel_initializer=init, bias_initializer="zeros", name=names("conv2d")
    )


def _dense(names: _Names, units: int) -> keras.layers.Dense:
    return keras.layers.Dense(
        units, kernel_initializer=keras.initializers.GlorotUniform(), bias_initializer="zeros", name=names("dense")
    )


class _NamedLayers(keras.Model):
    """A model whose layers are attributes named by their TF1 names (``self.conv2d_3`` …).

    Keras 3 does not put layers kept inside Python lists or tuples into a ``tf.train.Checkpoint``'s object
    graph, so every layer is a direct attribute; the block structure is kept as tuples of names.
    """

    def _add(self, layer: keras.layers.Layer) -> str:
        setattr(self, layer.name, layer)
        return layer.name

    def _layer(self, name: str) -> keras.layers.Layer:
        return getattr(self, name)


class Generator(_NamedLayers):
    """G: z [B, d] -> images [B, 32, 32, 3] in (−1, 1), 7 TF1 BatchNorms (spec §4.2, §4.3).

    Call args:
        z: [B, latent_dim].
        training: BatchNorm uses batch statistics (True in the D and G steps) or moving ones (evaluation).
        update_stats: also update the BatchNorm moving statistics (only in the G step).
    """

    def __init__(self, latent_dim: int = 128, channels: int = CHANNELS, name: str = "generator"):
        super().__init__(name=name)
        self.latent_dim, self.channels = latent_dim, channels
        names = _Names()
        self.dense = _dense(names, 4 * 4 * channels)
        blocks = []
        for _ in range(3):  # Up blocks: 4 -> 8 -> 16 -> 32
            # Creation order of the original: BN, conv 3×3, BN, conv 3×3, then the 1×1 shortcut.
            blocks.append((
                self._add(GeneratorBatchNorm(name=names("BatchNorm"))),
                self._add(_conv(names, channels, 3, he=True)),
                self._add(GeneratorBatchNorm(name=names("BatchNorm"))),
                self._add(_conv(names, channels, 3, he=True)),
                self._add(_conv(names, channels, 1, he=False)),
            ))
        self.block_names = tuple(blocks)
        self.bn_out = GeneratorBatchNorm(name=names("BatchNorm"))
        self.conv_out = _conv(names, 3, 3, he=False)

    def stages(self, z, training=False, update_stats=False) -> list[tf.Tensor]:
        """Feature maps after the dense layer and after each Up block: [B, 4|8|16|32, …, C]."""
        x = tf.reshape(self.dense(z), [-1, 4, 4, self.channels])
        outputs = [x]
        for block in self.block_names:
            bn1, conv1, bn2, conv2, shortcut = (self._layer(name) for name in block)
            h = conv1(upsample(tf.nn.relu(bn1(x, training=training, update_stats=update_stats))))
            h = conv2(tf.nn.relu(bn2(h, training=training, update_stats=update_stats)))
            x = shortcut(upsample(x)) + h
            outputs.append(x)
        return outputs

    def call(self, z, training=False, update_stats=False):
        x = self.stages(z, training=training, update_stats=update_stats)[-1]
        x = tf.nn.relu(self.bn_out(x, training=training, update_stats=update_stats))
        return tf.tanh(self.conv_out(x))

    @property
    def batch_norms(self) -> list[TF1BatchNorm]:
        return [self._layer(block[i]) for block in self.block_names for i in (0, 2)] + [self.bn_out]


class Critic(_NamedLayers):
    """D or E: images [B, 32, 32, 3] -> [B, out_dim]; residual blocks without normalisation (spec §4.2).

    Opt (32 -> 16): main conv3×3 -> ReLU -> conv3×3 -> pool; shortcut pool -> conv1×1.
    Down (16 -> 8): main ReLU -> conv3×3 -> ReLU -> conv3×3 -> pool; shortcut conv1×1 -> pool.
    Plain ×2 (8): main ReLU -> conv3×3 -> ReLU -> conv3×3; identity shortcut.
    Head: ReLU -> mean over H, W -> Dense(out_dim).
    """

    def __init__(self, out_dim: int, channels: int = CHANNELS, name: str = "discriminator"):
        super().__init__(name=name)
        self.out_dim, self.channels = out_dim, channels
        names = _Names()

        def conv(size: int) -> str:
            return self._add(_conv(names, channels, size, he=size == 3))

        self.opt_names = (conv(3), conv(3), conv(1))
        self.down_names = (conv(3), conv(3), conv(1))
        self.plain_names = ((conv(3), conv(3)), (conv(3), conv(3)))
        self.head = _dense(names, out_dim)

    def stages(self, x) -> list[tf.Tensor]:
        """Feature maps after Opt, Down, Plain, Plain: [B, 16|8|8|8, …, C]."""
        conv1, conv2, shortcut = (self._layer(name) for name in self.opt_names)
        x = shortcut(pool(x)) + pool(conv2(tf.nn.relu(conv1(x))))
        outputs = [x]
        conv1, conv2, shortcut = (self._layer(name) for name in self.down_names)
        x = pool(shortcut(x)) + pool(conv2(tf.nn.relu(conv1(tf.nn.relu(x)))))
        outputs.append(x)
        for names in self.plain_names:
            conv1, conv2 = (self._layer(name) for name in names)
            x = x + conv2(tf.nn.relu(conv1(tf.nn.relu(x))))
            outputs.append(x)
        return outputs

    def call(self, x):
        x = self.stages(x)[-1]
        return self.head(tf.reduce_mean(tf.nn.relu(x), axis=[1, 2]))


def build_generator(latent_dim: int = 128, channels: int = CHANNELS) -> Generator:
    """A built generator (weights created by one call on zeros)."""
    model = Generator(latent_dim, channels)
    model(tf.zeros([1, latent_dim]))
    return model


def build_discriminator(channels: int = CHANNELS) -> Critic:
    """A built discriminator D: [B, 32, 32, 3] -> [B, 1]."""
    model = Critic(1, channels, name="discriminator")
    model(tf.zeros([1, 32, 32, 3]))
    return model


def build_encoder(latent_dim: int = 128, channels: int = CHANNELS) -> Critic:
    """A built encoder E: [B, 32, 32, 3] -> [B, latent_dim]."""
    model = Critic(latent_dim, channels, name="encoder")
    model(tf.zeros([1, 32, 32, 3]))
    return model


def tf1_variable_names(model: keras.Model) -> dict[str, tf.Variable]:
    """Map ``<scope>/<tf1 layer name>/<weight>`` (the TF1 checkpoint keys, spec §4.4) to this model's variables.

    BatchNorm's hidden zero-debias state maps to ``BatchNorm*/moving_mean/biased`` and ``…/local_step``.
    """
    return {_TF1_LEAF.sub(lambda m: _TF1_HIDDEN[m.group(0)], weight.path): weight for weight in model.weights}


_TF1_HIDDEN = {"moving_mean_biased": "moving_mean/biased", "moving_mean_local_step": "moving_mean/local_step"}
_TF1_LEAF = re.compile("|".join(f"{key}$" for key in _TF1_HIDDEN))
