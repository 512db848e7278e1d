"""Reconstruction losses: this implementation's local-moment loss, and the paper's Laplacian-pyramid L1.

Both take two image batches on the [-1, 1] scale and return a scalar float32; both are symmetric.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

MOMENT_WINDOW = 4
MOMENT_STRIDE = 2


def window_moments(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-channel mean and population variance in every 4x4 window, stride 2, VALID padding.

    The original convolves with an all-ones 4x4 kernel divided by 16; average pooling is the same sum.

    Args:
        images: [B, h, w, c] float32.
    Returns:
        (m, v), each [B, H', W', c] with H' = floor((h - 4) / 2) + 1 (13 for 28, 15 for 32);
        v = window mean of x^2 minus m^2.
    """
    pool = lambda t: tf.nn.avg_pool2d(t, MOMENT_WINDOW, MOMENT_STRIDE, "VALID")  # noqa: E731
    mean = pool(images)
    return mean, pool(tf.square(images)) - tf.square(mean)


def moment_loss(x: tf.Tensor, x_hat: tf.Tensor) -> tf.Tensor:
    """The training loss of this implementation (spec §1.3), not the paper's.

        l(X, X^) = mean_{B,H',W',c} |m(X) - m(X^)| + mean_{B,H',W',c} |v(X) - v(X^)|

    with m, v the 4x4/stride-2 window mean and variance of :func:`window_moments`. l(X, X) = 0 and
    l(X, X + k) = |k| for a constant k.

    Args:
        x, x_hat: [B, h, w, c] float32 in [-1, 1].
    Returns:
        scalar float32.
    """
    m, v = window_moments(x)
    m_hat, v_hat = window_moments(x_hat)
    return tf.reduce_mean(tf.abs(m - m_hat)) + tf.reduce_mean(tf.abs(v - v_hat))


# 5x5 binomial kernel [1, 4, 6, 4, 1]^T [1, 4, 6, 4, 1] / 256: the Burt-Adelson blur of a Laplacian pyramid.
_BINOMIAL = np.outer([1.0, 4.0, 6.0, 4.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]) / 256.0


def _blur(images: tf.Tensor) -> tf.Tensor:
    """Depthwise 5x5 binomial blur with symmetric padding; [B, h, w, c] -> same shape."""
    channels = images.shape[-1]
    kernel = tf.constant(np.tile(_BINOMIAL[:, :, None, None], (1, 1, channels, 1)), tf.float32)
    padded = tf.pad(images, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def laplacian_pyramid(images: tf.Tensor, levels: int) -> list[tf.Tensor]:
    """Band-pass levels L^0..L^{levels-1} and the low-pass residual as level ``levels``.

    G^0 = x, L^j = G^j - blur(G^j), G^{j+1} = blur(G^j) subsampled by 2 (every other row and column).

    Args:
        images: [B, h, w, c].
    Returns:
        ``levels + 1`` tensors; level j is [B, ceil(h / 2^j), ceil(w / 2^j), c].
    """
    pyramid, current = [], images
    for _ in range(levels):
        blurred = _blur(current)
        pyramid.append(current - blurred)
        current = blurred[:, ::2, ::2, :]
    pyramid.append(current)
    return pyramid


def laplacian_l1_loss(x: tf.Tensor, x_hat: tf.Tensor, levels: int = 4) -> tf.Tensor:
    """The paper's Lap1 loss (Bojanowski et al. 2018, §3.3), behind ``--loss lap1``.

        Lap1(X, X^) = sum_j 2^(-2j) ||L^j(X) - L^j(X^)||_1 / (B h w c)

    The L1 norms are sums over each level's elements, divided by one constant (the element count of the
    batch), so a single-level pyramid is the mean pixel L1.

    Args:
        x, x_hat: [B, h, w, c] float32 in [-1, 1].
        levels: number of band-pass levels (the low-pass residual is added as level ``levels``).
    Returns:
        scalar float32.
    """
    count = tf.cast(tf.size(x), tf.float32)
    total = tf.constant(0.0)
    for j, (a, b) in enumerate(zip(laplacian_pyramid(x, levels), laplacian_pyramid(x_hat, levels))):
        total += 2.0 ** (-2 * j) * tf.reduce_sum(tf.abs(a - b))
    return total / count


def pixel_errors(x: tf.Tensor, x_hat: tf.Tensor) -> dict[str, tf.Tensor]:
    """Per-batch pixel MAE (the evaler's "Average loss") and MSE, on the [-1, 1] scale."""
    diff = x_hat - x
    return {"mae": tf.reduce_mean(tf.abs(diff)), "mse": tf.reduce_mean(tf.square(diff))}


LOSSES = {"moment": moment_loss, "lap1": laplacian_l1_loss}


def get_loss(name: str, lap_levels: int = 4):
    """The loss named by ``--loss``: ``moment`` (default, this implementation) or ``lap1`` (the paper)."""
    if name == "lap1":
        return lambda x, x_hat: laplacian_l1_loss(x, x_hat, lap_levels)
    return LOSSES[name]
