"""SLOGAN's one-way SimCLR loss on generated images and their DiffAugment views (CIFAR-2 only, spec §1.6).

With e_b = E(x_b) (clean anchors) and e'_j = E(DiffAugment(x_j)):

    C_bj = cos(e_b, e'_j),  l_b = −log clip( exp(C_bb) / clip(Σ_{j≠b} exp(C_bj), 1e-10, 1e10), 1e-10, 1e10 )

No temperature, no scale; the positive pair is excluded from the denominator and only cross-view negatives
count. The loss trains only the encoder; the original's l_s is the batch mean.
"""

from __future__ import annotations

import tensorflow as tf

from common.slogan.losses import cosine_similarity_matrix

CLIP = (1e-10, 1e10)


def simclr_loss(anchors: tf.Tensor, views: tf.Tensor) -> tf.Tensor:
    """Per-anchor SimCLR loss l_b (spec §1.6).

    Args:
        anchors: [B, d] encodings of the clean generated images.
        views: [B, d] encodings of their augmented views, in the same order.
    Returns:
        [B] per-anchor losses.
    """
    cos = cosine_similarity_matrix(anchors, views)  # [B, B]
    off_diagonal = 1.0 - tf.eye(tf.shape(cos)[0], dtype=cos.dtype)
    numerator = tf.exp(tf.linalg.diag_part(cos))
    denominator = tf.clip_by_value(tf.reduce_sum(tf.exp(cos) * off_diagonal, axis=1), *CLIP)
    return -tf.math.log(tf.clip_by_value(numerator / denominator, *CLIP))
