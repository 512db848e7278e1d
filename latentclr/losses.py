"""The LatentCLR contrastive loss, exactly as the original ``colat/loss.py`` computes it.

Paper form (Eq. 2 of arXiv 2104.00820): for feature divergences f_i^k of sample i under direction k,

    l(z_i^k) = -log [ sum_{j != i} exp(sim(f_i^k, f_j^k) / tau) / sum_j sum_{l != k} exp(sim(f_i^k, f_j^l) / tau) ]

The code differs in three ways that this module reproduces: the similarity is scaled by multiplying with
``temp`` (0.5), not by dividing (``divide_by_temp=True`` gives the paper's form); the cosine is taken in
absolute value (``abs``); positives and negatives are averaged (``reduce="mean"``) rather than summed.
"""

from __future__ import annotations

import tensorflow as tf

REDUCTIONS = ("mean", "sum")


def contrastive_loss(
    features: tf.Tensor,
    k: int,
    temp: float = 0.5,
    use_abs: bool = True,
    reduce: str = "mean",
    divide_by_temp: bool = False,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Contrastive accuracy and loss of direction-major, L2-normalised feature divergences.

    With ``M = F F^T`` (optionally ``|M|``) and ``E = exp(temp * M)``, row ``r = (k, i)`` has positives
    ``E[r, (k, j)]`` for ``j != i`` (N-1 entries) and negatives ``E[r, (l, j)]`` for ``l != k`` (N(K-1)
    entries); ``P_r`` and ``Q_r`` are their means (or sums). Then

        loss = -mean_r log(P_r / Q_r),    acc = mean_r [P_r > Q_r].

    With ``mean`` and ``abs`` the loss lies in [-temp, temp]. No epsilon anywhere, as in the original.

    Args:
        features: [K*N, F] float, rows ``k*N .. k*N+N-1`` belong to direction k; rows already unit norm
            (the trainer normalises them; the loss does not).
        k: number of directions K (>= 2); N = rows / K must be >= 2.
        temp: similarity scale (multiplies the similarity unless ``divide_by_temp``).
        use_abs: take |cos| (config key ``loss.abs``).
        reduce: ``"mean"`` or ``"sum"`` over the positive and negative sets.
        divide_by_temp: use exp(sim / temp) (the paper) instead of exp(sim * temp) (the code).

    Returns:
        ``(acc, loss)``: scalar float32 tensors.

    Raises:
        ValueError: the row count is not divisible by ``k``, or ``reduce`` is not mean/sum.
    """
    if reduce not in REDUCTIONS:
        raise ValueError("Only mean and sum is supported for reduce method")
    features = tf.convert_to_tensor(features)
    if features.shape.rank != 2:
        raise ValueError(f"contrastive_loss expects [K*N, F] features, got shape {features.shape}")
    n_rows = features.shape[0]
    if n_rows is not None and n_rows % k != 0:
        raise ValueError(f"Batch size is not divisible by given k! ({n_rows} rows, k={k})")
    n_rows = tf.shape(features)[0]
    per_direction = n_rows // k

    sim = tf.matmul(features, features, transpose_b=True)
    if use_abs:
        sim = tf.abs(sim)
    sim = tf.exp(sim / temp if divide_by_temp else sim * temp)

    block = tf.range(n_rows) // per_direction
    same_block = tf.equal(block[:, None], block[None, :])
    not_self = tf.logical_not(tf.eye(n_rows, dtype=tf.bool))
    pos_mask = tf.cast(tf.logical_and(same_block, not_self), sim.dtype)
    neg_mask = tf.cast(tf.logical_not(same_block), sim.dtype)

    pos = tf.reduce_sum(sim * pos_mask, axis=1)
    neg = tf.reduce_sum(sim * neg_mask, axis=1)
    if reduce == "mean":
        pos = pos / tf.cast(per_direction - 1, sim.dtype)
        neg = neg / tf.cast(n_rows - per_direction, sim.dtype)

    acc = tf.reduce_mean(tf.cast(pos > neg, sim.dtype))
    loss = -tf.reduce_mean(tf.math.log(pos / neg))
    return acc, loss
