"""Keras building blocks that behave like the PyTorch modules of the original (selfcond spec §5, §9.1).

Every layer here states its PyTorch constants explicitly, because Keras defaults differ:

- weights and biases of Linear / Conv layers are U(-b, b) with b = 1/sqrt(fan_in) (PyTorch's default
  init, §5.6); Keras would use glorot_uniform and zero biases. ConvTranspose computes fan_in from
  C_out * k * k, as PyTorch does from the weight's second dimension.
- BatchNorm: momentum 0.1 in PyTorch's convention (0.9 in Keras'), eps 1e-5, and the running variance
  is updated with the *unbiased* batch variance (PyTorch), normalisation with the biased one.
- LeakyReLU slopes are always given (Keras' default is 0.3).
- Embeddings are N(0, 1) (Keras' default is U(-0.05, 0.05)).
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf


def TorchUniform(fan_in: int) -> keras.initializers.RandomUniform:  # noqa: N802 - reads like an initializer class
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear/Conv weights and biases (spec §5.6).

    Args:
        fan_in: in_features (Linear), C_in*k*k (Conv2d) or C_out*k*k (ConvTranspose2d).

    Unseeded draws follow Keras' global seed (``keras.utils.set_random_seed``).
    """
    bound = 1.0 / math.sqrt(int(fan_in))
    return keras.initializers.RandomUniform(-bound, bound)


def dense(units: int, fan_in: int, name: str | None = None, use_bias: bool = True) -> keras.layers.Dense:
    """``nn.Linear(fan_in, units)`` with PyTorch's init."""
    return keras.layers.Dense(
        units, use_bias=use_bias, kernel_initializer=TorchUniform(fan_in), bias_initializer=TorchUniform(fan_in),
        name=name,
    )


def conv(filters: int, kernel: int, c_in: int, strides: int = 1, use_bias: bool = True, name: str | None = None):
    """``nn.Conv2d(c_in, filters, kernel, strides)`` without padding (pad explicitly with :func:`pad`)."""
    fan_in = c_in * kernel * kernel
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="valid", use_bias=use_bias,
        kernel_initializer=TorchUniform(fan_in), bias_initializer=TorchUniform(fan_in), name=name,
    )


def conv_transpose(filters: int, name: str | None = None) -> keras.layers.Conv2DTranspose:
    """``nn.ConvTranspose2d(c_in, filters, 4, 2, 1)``: [B, H, W, c_in] -> [B, 2H, 2W, filters].

    TensorFlow's 'same' transposed convolution with k4 s2 crops one row/column at each border of the
    full (2H + 2) output, exactly like PyTorch's padding 1. A PyTorch weight W[in, out, kh, kw] maps to
    the Keras kernel K[kh, kw, out, in] without a spatial flip (spec §9.1, checked in the tests).
    """
    fan_in = filters * 16  # PyTorch: fan_in of a ConvTranspose weight [in, out, k, k] is out * k * k
    return keras.layers.Conv2DTranspose(
        filters, 4, strides=2, padding="same",
        kernel_initializer=TorchUniform(fan_in), bias_initializer=TorchUniform(fan_in), name=name,
    )


def pad(amount: int = 1, name: str | None = None) -> keras.layers.ZeroPadding2D:
    """Symmetric zero padding (PyTorch's ``padding=amount``)."""
    return keras.layers.ZeroPadding2D(amount, name=name)


def leaky_relu(slope: float, name: str | None = None) -> keras.layers.LeakyReLU:
    return keras.layers.LeakyReLU(negative_slope=slope, name=name)


@keras.saving.register_keras_serializable(package="selfcond")
class TorchBatchNorm(keras.layers.Layer):
    """BatchNorm with PyTorch semantics over the last axis ([B, C] or [B, H, W, C]).

    Training mode normalises with the biased batch variance and updates
    ``running = (1 - momentum) * running + momentum * batch_stat``, where the variance statistic is the
    unbiased one (n / (n - 1), n = elements per channel), as ``nn.BatchNorm1d/2d`` do. Inference mode
    uses the running statistics. The update happens whenever ``training=True``, independent of the
    layer's ``trainable`` flag (the original never freezes D's statistics, spec §9.1).

    Args:
        momentum: PyTorch momentum (0.1); Keras' equivalent would be 0.9.
        epsilon: 1e-5 (PyTorch); Keras' default is 1e-3.
    """

    def __init__(self, momentum: float = 0.1, epsilon: float = 1e-5, affine: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.affine = bool(affine)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.beta = None
        if self.affine:  # affine=False: PyTorch's BatchNorm2d(affine=False), no scale and no offset
            self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
            self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        # "mean" aggregation: under MirroredStrategy each replica proposes its own statistics (PyTorch's
        # DataParallel keeps unsynchronised per-replica BN, spec §9.4) and the copies are averaged.
        self.moving_mean = self.add_weight(
            shape=(channels,), initializer="zeros", trainable=False, name="moving_mean", aggregation="mean"
        )
        self.moving_variance = self.add_weight(
            shape=(channels,), initializer="ones", trainable=False, name="moving_variance", aggregation="mean"
        )

    def call(self, inputs, training=False):
        axes = list(range(len(inputs.shape) - 1))
        if training:
            mean, variance = tf.nn.moments(inputs, axes=axes)
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), inputs.dtype)
            unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
            self.moving_mean.assign((1.0 - self.momentum) * self.moving_mean + self.momentum * mean)
            self.moving_variance.assign((1.0 - self.momentum) * self.moving_variance + self.momentum * unbiased)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return tf.nn.batch_normalization(inputs, mean, variance, self.beta, self.gamma, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon, "affine": self.affine}


@keras.saving.register_keras_serializable(package="selfcond")
class LatentEmbeddingConcat(keras.layers.Layer):
    """concat[z, e_y / ||e_y||]: the generator's label conditioning (spec §1.5).

    Args:
        nlabels: rows of the embedding table (N(0, 1) init).
        embed_dim: 256 for the image generators, 32 for the 2-D one.
        clamp: clamp labels to ``nlabels - 1`` first (the image generators do; the 2-D one does not).

    Call: ``(z [B, z_dim], y [B] int)`` -> [B, z_dim + embed_dim].
    """

    def __init__(self, nlabels: int, embed_dim: int, clamp: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.nlabels, self.embed_dim, self.clamp = int(nlabels), int(embed_dim), bool(clamp)
        self.embedding = keras.layers.Embedding(
            self.nlabels, self.embed_dim, embeddings_initializer=keras.initializers.RandomNormal(0.0, 1.0),
            name="embedding",
        )

    def call(self, z, y):
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        if self.clamp:
            y = tf.minimum(y, self.nlabels - 1)
        e = self.embedding(y)
        e = e / tf.norm(e, axis=1, keepdims=True)  # no epsilon, as in the original
        return tf.concat([tf.cast(z, e.dtype), e], axis=1)

    def get_config(self):
        return {**super().get_config(), "nlabels": self.nlabels, "embed_dim": self.embed_dim, "clamp": self.clamp}


@keras.saving.register_keras_serializable(package="selfcond")
class LogitsHead(keras.layers.Layer):
    """The discriminator's last linear layer (spec §1.5).

    ``conditioning="mask"``: Linear(features -> nlabels) and the logit at index y_i of each row
    ("multi-head, indexed by label"); ``"unconditional"``: Linear(features -> 1).

    Call: ``(features [B, F], y [B] int)`` -> logits [B].

    Args:
        clamp: clamp labels to ``nlabels - 1`` (the image discriminators do; the 2-D one does not).
    """

    def __init__(self, nlabels: int, fan_in: int, conditioning: str = "mask", clamp: bool = True, **kwargs):
        super().__init__(**kwargs)
        if conditioning not in ("mask", "unconditional"):
            raise ValueError(f"discriminator conditioning: expected mask or unconditional, got {conditioning!r}")
        self.nlabels, self.fan_in, self.conditioning, self.clamp = int(nlabels), int(fan_in), conditioning, clamp
        units = self.nlabels if conditioning == "mask" else 1
        self.fc = dense(units, self.fan_in, name="fc")

    def call(self, features, y=None):
        out = self.fc(features)
        if self.conditioning == "unconditional":
            return out[:, 0]
        y = tf.cast(tf.reshape(y, [-1]), tf.int32)
        if self.clamp:
            y = tf.minimum(y, self.nlabels - 1)
        return tf.gather(out, y, axis=1, batch_dims=1)

    def get_config(self):
        return {**super().get_config(), "nlabels": self.nlabels, "fan_in": self.fan_in,
                "conditioning": self.conditioning, "clamp": self.clamp}


def attach(owner, names, items) -> tuple:
    """Set each layer as a named attribute of ``owner`` and return them as a tuple, in order.

    Layers kept only in a Python list are invisible to ``tf.train.Checkpoint`` (Keras 3 tracks such lists
    for ``model.weights`` but not as checkpoint dependencies), so BatchNorm statistics in a list would not
    be saved. Named attributes are (with names like the original's modules).
    """
    items = tuple(items)
    for name, item in zip(names, items):
        setattr(owner, name, item)
    return items


def copy_weights(target: keras.Model, source: keras.Model) -> None:
    """Assign every variable of ``source`` (trainable or not) to the same-built ``target`` (a deep copy)."""
    if len(target.weights) != len(source.weights):
        raise ValueError(f"copy_weights: {len(target.weights)} target vs {len(source.weights)} source variables")
    for dst, src in zip(target.weights, source.weights):
        dst.assign(src)
