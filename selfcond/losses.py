"""GAN losses and discriminator regularisers of the Self-Conditioned GAN (spec §6.1, §6.2).

Pure tensor functions. Every loss returns the *per-replica share of the global-batch mean*: a sum over
the local examples divided by ``global_batch`` (equal to the plain mean on one device). Under a
``MirroredStrategy`` the replicas' gradients are summed, which then gives the gradient of the mean over
the global batch, as PyTorch's ``DataParallel`` computes it.
"""

from __future__ import annotations

import tensorflow as tf

GAN_TYPES = ("standard", "wgan")
REG_TYPES = ("none", "real", "fake", "real_fake", "wgangp", "wgangp0")


def _mean(values, global_batch):
    """sum(values) / global_batch; ``global_batch=None`` means the local batch (a plain mean)."""
    values = tf.reshape(values, [-1])
    if global_batch is None:
        return tf.reduce_mean(values)
    return tf.reduce_sum(values) / tf.cast(global_batch, values.dtype)


def adversarial_loss(logits, target: float, gan_type: str = "standard", global_batch=None):
    """The original's ``compute_loss(d_out, target)`` (spec §6.1).

    ``standard``: mean_i BCE-with-logits(l_i, target); D minimises loss(real, 1) + loss(fake, 0), G the
    non-saturating loss(fake, 1). ``wgan``: (2 target - 1) * mean(l), the original's (flipped but
    consistent) critic convention.

    Args:
        logits: [B] discriminator outputs (masked by label).
        target: 1.0 (real) or 0.0 (fake).

    Returns:
        Scalar loss.
    """
    if gan_type == "standard":
        labels = tf.fill(tf.shape(logits), tf.cast(target, logits.dtype))
        return _mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits), global_batch)
    if gan_type == "wgan":
        return (2.0 * target - 1.0) * _mean(logits, global_batch)
    raise ValueError(f"training.gan_type: expected one of {GAN_TYPES}, got {gan_type!r}")


def grad_squared_norm(gradients):
    """Per-example squared L2 norm of input gradients [B, ...] -> [B] (the original's ``compute_grad2``)."""
    flat = tf.reshape(gradients, [tf.shape(gradients)[0], -1])
    return tf.reduce_sum(tf.square(flat), axis=1)


def gradient_penalty(grad2, reg_param: float, center: float | None = None, global_batch=None):
    """Gradient penalties from per-example squared input-gradient norms ``grad2`` [B] (spec §6.2).

    - ``center=None`` (R1 on real, or the same on fake): gamma * mean_i ||grad_x D(x_i)||^2, with
      **no** 1/2 factor (the original's choice, unlike the GAN-stability paper's gamma/2).
    - ``center=c`` (``wgangp``: c = 1, ``wgangp0``: c = 0): gamma * mean_i (||grad D(x_hat_i)|| - c)^2.
    """
    if center is None:
        return reg_param * _mean(grad2, global_batch)
    return reg_param * _mean(tf.square(tf.sqrt(grad2) - center), global_batch)
