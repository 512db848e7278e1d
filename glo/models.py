"""The GLO generator of this implementation: bilinear x2 resize + 4x4 conv blocks, ReLU then BatchNorm.

Layer table (spec §4.1; channels per dataset):

    z [B, d] -> [B, 1, 1, d]
    deconv1  resize x2 -> conv 4x4 -> ReLU -> BN     2x2    MNIST 100   SVHN/CIFAR-10 384
    deconv2  resize x2 -> conv 4x4 -> ReLU -> BN     4x4          50                 128
    deconv3  resize x2 -> conv 4x4 -> ReLU -> BN     8x8          25                  64
    deconv4  resize x2 -> conv 4x4 -> ReLU -> BN    16x16          6                  16
    deconv5  resize x2 -> conv 4x4 -> tanh          32x32          1                   3
    final legacy bilinear resize to (h, w)          28x28 (MNIST) / identity at 32x32

Two details decide the numbers and are kept on purpose:
- every resize is TF1's ``resize_bilinear`` (no half-pixel centres), which samples source pixel
  ``i * in / out``; ``tf.image.resize`` and Keras' ``UpSampling2D`` sample half-pixel centres instead;
- BatchNorm always normalises with the statistics of the batch it is given, in training and in the evaler
  alike (the original built it with ``is_training=True``); the moving averages are updated and never read.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from common import replicas

# Channels of the five blocks (the original's get_deconv_info); the last entry is the image channel count.
CHANNELS = {
    "MNIST": (100, 50, 25, 6, 1),
    "SVHN": (384, 128, 64, 16, 3),
    "CIFAR10": (384, 128, 64, 16, 3),
}
NUM_BLOCKS = 5
BN_MOMENTUM = 0.9  # tf.contrib batch_norm decay
BN_EPSILON = 1e-3
INIT_STDDEV = 0.02  # truncated normal, redrawn beyond 2 sigma: effective std ~0.0176


def channel_table(dataset: str | None, image_channels: int) -> tuple[int, ...]:
    """Channels of the five blocks for a named dataset, or for a folder dataset with ``image_channels``.

    Folder datasets (spec §6.4): one channel uses the MNIST table; otherwise the SVHN/CIFAR-10 table with the
    last entry replaced by the channel count.
    """
    if dataset in CHANNELS:
        return CHANNELS[dataset]
    if image_channels == 1:
        return CHANNELS["MNIST"]
    return CHANNELS["SVHN"][:-1] + (int(image_channels),)


def _legacy_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source taps of TF1's legacy bilinear resize along one axis: output i reads ``src = i * in / out``
    (float32, as the kernel), between rows floor(src) and min(ceil(src), in - 1) with weight src - floor(src)."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    low = np.floor(src)
    high = np.minimum(np.ceil(src), in_size - 1)
    return low.astype(np.int32), high.astype(np.int32), (src - low).astype(np.float32)


def legacy_resize_bilinear(images: tf.Tensor, size: tuple[int, int], xla_safe: bool = False) -> tf.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, half_pixel_centers=False).

    Output pixel ``i`` samples the input at ``i * in / out`` (clamped at the last pixel), so x2 upsampling of
    [1, 3, 7, 15] gives [1, 2, 3, 5, 7, 11, 15, 15]. A resize to the same size is the identity.

    Args:
        images: [B, H, W, C] float32.
        size: (out_h, out_w).
        xla_safe: compute with gathers (bit-identical to the op, horizontal interpolation first, then vertical)
            instead of the ``ResizeBilinear`` op, whose XLA lowering gets the 32 -> 28 legacy downscale wrong.
            The op is faster without XLA (its gradient kernel beats the gathers').
    Returns:
        [B, out_h, out_w, C] float32.
    """
    in_h, in_w = images.shape[1], images.shape[2]
    out_h, out_w = size
    if (in_h, in_w) == (out_h, out_w):
        return images
    if not xla_safe:
        return tf.raw_ops.ResizeBilinear(images=images, size=tf.constant(size, tf.int32), align_corners=False,
                                         half_pixel_centers=False)
    left, right, x_lerp = _legacy_taps(in_w, out_w)
    x_lerp = tf.constant(x_lerp[None, None, :, None])
    left_values, right_values = tf.gather(images, left, axis=2), tf.gather(images, right, axis=2)
    rows = left_values + (right_values - left_values) * x_lerp  # [B, H, out_w, C]
    top, bottom, y_lerp = _legacy_taps(in_h, out_h)
    top_values, bottom_values = tf.gather(rows, top, axis=1), tf.gather(rows, bottom, axis=1)
    return top_values + (bottom_values - top_values) * tf.constant(y_lerp[None, :, None, None])


class BilinearDeconv(keras.layers.Layer):
    """One "bilinear deconv" block without its BatchNorm: resize x2, conv 4x4 stride 1 SAME (+ bias), activation.

    The conv keeps TF's SAME padding for an even kernel (1 row/column before, 2 after).

    Input [B, H, W, C_in] -> output [B, 2H, 2W, filters].
    """

    def __init__(self, filters: int, activation: str, xla_safe: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.xla_safe = xla_safe
        self.activation_name = activation
        self.conv = keras.layers.Conv2D(
            filters, 4, strides=1, padding="same", use_bias=True, name="conv2d",
            kernel_initializer=keras.initializers.TruncatedNormal(stddev=INIT_STDDEV),
            bias_initializer="zeros", dtype=self.dtype_policy,
        )
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        _, h, w, c = input_shape
        self.conv.build((None, 2 * h, 2 * w, c))
        self.built = True

    def call(self, inputs):
        h, w = inputs.shape[1], inputs.shape[2]
        return self.activation(self.conv(legacy_resize_bilinear(inputs, (2 * h, 2 * w), self.xla_safe)))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return (b, 2 * h, 2 * w, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "activation": self.activation_name,
                "xla_safe": self.xla_safe}


class BatchNorm(keras.layers.BatchNormalization):
    """Keras BatchNormalization whose batch statistics span the global batch under ``tf.distribute``.

    The original trained on one device, so its BatchNorm saw the whole batch. With several replicas the per-replica
    sums are all-reduced (:func:`common.replicas.moments`), which keeps the outputs, the gradients and the moving
    statistics equal to the one-device ones; on one device this is Keras' layer unchanged.
    """

    def _moments(self, inputs, mask):
        if mask is None and replicas.num_replicas() > 1:
            mean, variance, _ = replicas.moments(inputs, self._reduction_axes)
            return mean, variance
        return super()._moments(inputs, mask)


class Generator(keras.Model):
    """G_theta: unit-sphere code z [B, d] -> image [B, h, w, c] in (-1, 1).

    Args:
        latent_dim: d.
        image_shape: (h, w, c) of the dataset; the network always produces 32x32 and resizes to (h, w).
        channels: the five block widths (:func:`channel_table`); the last must equal c.
        xla_safe: resize with gathers, for train steps compiled with XLA (:func:`legacy_resize_bilinear`).
        mixed_precision: blocks 1-4 and their BatchNorms compute in float16 with float32 variables (Keras'
            ``mixed_float16`` policy; BatchNorm keeps its statistics in float32); the tanh block and the output
            stay float32, so losses and code gradients are float32.

    BatchNorm runs in training mode whatever ``training`` says (spec §4.3, bug #6 kept): an output depends on
    the other codes of its batch, exactly as in the original's trainer and evaler.
    """

    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], channels: tuple[int, ...],
                 xla_safe: bool = False, mixed_precision: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.xla_safe = xla_safe
        self.mixed_precision = bool(mixed_precision)
        inner = "mixed_float16" if mixed_precision else None
        if len(channels) != NUM_BLOCKS or channels[-1] != image_shape[-1]:
            raise ValueError(f"channels {channels} must have {NUM_BLOCKS} entries ending in c={image_shape[-1]}")
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(int(v) for v in image_shape)
        self.channels = tuple(int(v) for v in channels)
        # One attribute per layer: Keras 3 does not expose layers kept in Python lists to tf.train.Checkpoint.
        for k, width in enumerate(self.channels, start=1):
            activation = "tanh" if k == NUM_BLOCKS else "relu"
            policy = "float32" if k == NUM_BLOCKS else inner
            setattr(self, f"deconv{k}", BilinearDeconv(width, activation, xla_safe, name=f"deconv{k}", dtype=policy))
        for k in range(1, NUM_BLOCKS):
            setattr(self, f"bn{k}", BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=f"batch_norm{k}",
                                              dtype=inner))

    @property
    def blocks(self) -> list[BilinearDeconv]:
        return [getattr(self, f"deconv{k}") for k in range(1, NUM_BLOCKS + 1)]

    @property
    def norms(self) -> list[BatchNorm]:
        return [getattr(self, f"bn{k}") for k in range(1, NUM_BLOCKS)]

    def build(self, input_shape):
        shape = (None, 1, 1, self.latent_dim)
        for k, block in enumerate(self.blocks):
            block.build(shape)
            shape = block.compute_output_shape(shape)
            if k < len(self.norms):
                self.norms[k].build(shape)
        self.built = True

    def call(self, z, training=None):
        """z [B, d] float32 -> [B, h, w, c] float32 in (-1, 1); BN always uses batch statistics."""
        x = tf.reshape(z, [-1, 1, 1, self.latent_dim])
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k < len(self.norms):
                x = self.norms[k](x, training=True)  # the original's is_training=True, everywhere
        h, w, _ = self.image_shape
        if (h, w) != (x.shape[1], x.shape[2]):
            x = legacy_resize_bilinear(x, (h, w), self.xla_safe)
        return x

    def get_config(self):
        return {"latent_dim": self.latent_dim, "image_shape": self.image_shape, "channels": self.channels,
                "xla_safe": self.xla_safe, "mixed_precision": self.mixed_precision}


def build_generator(latent_dim: int, image_shape: tuple[int, int, int], dataset: str | None = None,
                    xla_safe: bool = False, mixed_precision: bool = False) -> Generator:
    """A built generator for ``dataset`` (MNIST / SVHN / CIFAR10, or None for a folder dataset)."""
    generator = Generator(latent_dim, image_shape, channel_table(dataset, image_shape[-1]), xla_safe,
                          mixed_precision, name="g")
    generator.build((None, latent_dim))
    return generator


def parameter_table(model: keras.Model) -> str:
    """The trainable-variable table printed at start-up (the original's slim analyze_vars)."""
    lines, total = [], 0
    for var in model.trainable_variables:
        size = int(tf.size(var))
        total += size
        lines.append(f"  {var.path:<40s} {str(tuple(var.shape)):<20s} {size:>9d}")
    lines.append(f"  total trainable parameters: {total}")
    return "\n".join(lines)
