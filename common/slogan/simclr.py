"""SLOGAN's one-way SimCLR loss on generated images and their DiffAugment views (CIFAR-2 only, spec §1.6).

With e_b = E(x_b) (clean anchors) and e'_j = E(DiffAugment(x_j)):

    C_bj = cos(e_b, e'_j),  l_b = −log clip( exp(C_bb) / clip(Σ_{j≠b} exp(C_bj), 1e-10, 1e10), 1e-10, 1e10 )

No temperature, no scale; the positive pair is excluded from the denominator and only cross-view negatives
count. The loss trains only the encoder. For several replicas the views of the whole global batch are the
candidates (gathered by the caller), and ``positive_index`` says where each local anchor's own view sits.
"""

from __future__ import annotations

import tensorflow as tf


def cosine_matrix(u: tf.Tensor, v: tf.Tensor) -> tf.Tensor:
    """cos(u_b, v_j): [B, d] x [M, d] -> [B, M]; rows l2-normalised as x/√max(‖x‖², 1e-12)."""
    return tf.matmul(tf.math.l2_normalize(u, axis=1), tf.math.l2_normalize(v, axis=1), transpose_b=True)


def simclr_loss(
    anchors: tf.Tensor, views: tf.Tensor, positive_index: tf.Tensor | None = None
) -> tf.Tensor:
    """Per-anchor SimCLR loss l_b (spec §1.6); the original's l_s is its mean.

    Args:
        anchors: [B, d] encodings of the clean generated images (this replica's share).
        views: [M, d] encodings of the augmented images of the whole batch (M = B on one device).
        positive_index: [B] int32, the row of ``views`` holding each anchor's own view; ``range(B)`` if None.
    Returns:
        [B] per-anchor losses.
    """
    cos = cosine_matrix(anchors, views)  # [B, M]
    if positive_index is None:
        positive_index = tf.range(tf.shape(anchors)[0])
    is_positive = tf.one_hot(positive_index, tf.shape(views)[0], dtype=cos.dtype)
    numerator = tf.exp(tf.reduce_sum(cos * is_positive, axis=1))
    denominator = tf.clip_by_value(tf.reduce_sum(tf.exp(cos) * (1.0 - is_positive), axis=1), 1e-10, 1e10)
    return -tf.math.log(tf.clip_by_value(numerator / denominator, 1e-10, 1e10))
