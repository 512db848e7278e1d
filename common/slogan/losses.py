"""SLOGAN's losses as pure tensor functions (spec §1.4 and §1.5).

- :func:`u2c_loss`: the unsupervised conditional contrastive (U2C) loss with the ArcFace scale and margin
  of the code (paper Eq. 10 has neither), in the variant of each original script.
- :func:`hinge_discriminator_loss`, :func:`generator_adversarial_loss`: the synthetic script's hinge critic
  loss and the generator's -mean D(G(z)).
- :func:`interpolate_gradient_norms`, :func:`lipschitz_penalty`: the LP ("lp") and gradient ("gp") penalties
  on random interpolates between real and generated samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

# How each original script keeps sqrt(1 - cos²) finite in the ArcFace transform:
# slogan_synthetic.py: sqrt(max(1 - c², 1e-8) + 1e-8); slogan_cifar2.py: sqrt(clip(1 - c², 1e-10, 1e10)).
U2C_VARIANTS = ("synthetic", "cifar2")
# Only the cifar2 script clips the U2C denominator and ratio (to [1e-10, 1e10]).
CIFAR2_CLIP = (1e-10, 1e10)

REDUCERS: dict[str, Callable] = {"mean": tf.reduce_mean, "sum": tf.reduce_sum, "max": tf.reduce_max}


def _check_variant(variant: str) -> None:
    if variant not in U2C_VARIANTS:
        raise ValueError(f"variant must be one of {U2C_VARIANTS}, got {variant!r}")


def l2_normalize(x, axis: int = -1):
    """x / sqrt(max(||x||², 1e-12)) along ``axis`` (TF's ``l2_normalize``)."""
    return tf.math.l2_normalize(x, axis=axis)


def cosine_similarity_matrix(a, b):
    """[N, M] cosines between the rows of a [N, D] and b [M, D]."""
    return tf.matmul(l2_normalize(a), l2_normalize(b), transpose_b=True)


def cosine_similarity_rows(a, b):
    """[N] cosines between matching rows of a and b, both [N, D]."""
    return tf.reduce_sum(l2_normalize(a) * l2_normalize(b), axis=1)


def arcface(cos, scale: float, margin, variant: str = "synthetic"):
    """ArcFace logit A(c; s, m), elementwise (spec §1.5).

    A = s·(c·cos m - sinθ·sin m) = s·cos(θ + m) where c > cos(π - m), else s·(c - m·sin m); sinθ is
    the clamped sqrt(1 - c²) of ``variant``. With m = 0 this is s·c.

    Args:
        cos: cosines, any shape, in [-1, 1].
        scale: s.
        margin: m (float or scalar tensor; the callers pass ``margin * temperature``).
        variant: ``"synthetic"`` or ``"cifar2"`` (their sqrt clamp constants).
    """
    _check_variant(variant)
    cos = tf.convert_to_tensor(cos, tf.float32)
    margin = tf.cast(margin, tf.float32)
    cos_m, sin_m = tf.math.cos(margin), tf.math.sin(margin)
    one_minus_sq = 1.0 - tf.square(cos)
    if variant == "synthetic":
        sin_t = tf.sqrt(tf.maximum(one_minus_sq, 1e-8) + 1e-8)
    else:
        sin_t = tf.sqrt(tf.clip_by_value(one_minus_sq, 1e-10, 1e10))
    shifted = scale * (cos * cos_m - sin_t * sin_m)
    kept = scale * (cos - sin_m * margin)
    return tf.where(cos - tf.math.cos(math.pi - margin) > 0.0, shifted, kept)


def u2c_loss(embeddings, prototypes, *, scale: float, margin: float, temperature=1.0, variant: str = "synthetic"):
    """Per-sample U2C loss Lc_b (spec §1.5; paper Eq. 10 plus the code's ArcFace scale and margin).

    With cos_bj = cos(e_b, m_j):

        P_b = A(cos_bb; s, margin·temperature),   Q_bj = A(cos_bj; s, 0) = s·cos_bj  (j ≠ b)
        Lc_b = -log( exp(P_b) / ((exp(P_b) + Σ_{j≠b} exp(Q_bj)) / B) )

    The denominator is a mean over B terms, so Lc_b >= -log B. The ``cifar2`` variant clips the
    denominator and the ratio to [1e-10, 1e10] before the log.

    Args:
        embeddings: e_b = E(G(z_b)), [B, d].
        prototypes: m_b = C_b @ stack(μ), the soft component means of the same samples, [B, d].
        scale: ArcFace s (2.0 synthetic, 4.0 cifar2).
        margin: ArcFace m (0.5); the positive pair uses ``margin * temperature``.
        temperature: temp(s), the schedule of :mod:`common.slogan.schedules`.
        variant: ``"synthetic"`` or ``"cifar2"``.
    Returns:
        [B] float32 losses.
    """
    _check_variant(variant)
    embeddings = tf.convert_to_tensor(embeddings, tf.float32)
    prototypes = tf.convert_to_tensor(prototypes, tf.float32)
    if embeddings.shape.rank != 2 or prototypes.shape.rank != 2:
        raise ValueError(f"u2c_loss expects [B, d] inputs, got {embeddings.shape} and {prototypes.shape}")
    positive = tf.exp(arcface(cosine_similarity_rows(embeddings, prototypes), scale, margin * temperature, variant))
    others = tf.exp(arcface(cosine_similarity_matrix(embeddings, prototypes), scale, 0.0, variant))
    batch = tf.shape(embeddings)[0]
    off_diagonal_sum = tf.reduce_sum(others * (1.0 - tf.eye(batch)), axis=1)
    denominator = (positive + off_diagonal_sum) / tf.cast(batch, tf.float32)
    if variant == "cifar2":
        denominator = tf.clip_by_value(denominator, *CIFAR2_CLIP)
        return -tf.math.log(tf.clip_by_value(positive / denominator, *CIFAR2_CLIP))
    return -tf.math.log(positive / denominator)


def hinge_discriminator_loss(d_real, d_fake):
    """Hinge critic loss mean relu(1 - D(x_r)) + mean relu(1 + D(G(z))) (synthetic script, spec §1.4).

    Args:
        d_real, d_fake: critic outputs [B, 1].
    Returns:
        (loss, {"d_real": mean D(x_r), "d_fake": mean D(G(z))}).
    """
    loss = tf.reduce_mean(tf.nn.relu(1.0 - d_real)) + tf.reduce_mean(tf.nn.relu(1.0 + d_fake))
    return loss, {"d_real": tf.reduce_mean(d_real), "d_fake": tf.reduce_mean(d_fake)}


def wasserstein_discriminator_loss(d_real, d_fake):
    """WGAN critic loss -(mean D(x_r) - mean D(G(z))) (cifar2 script, spec §1.4); same return form."""
    loss = -(tf.reduce_mean(d_real) - tf.reduce_mean(d_fake))
    return loss, {"d_real": tf.reduce_mean(d_real), "d_fake": tf.reduce_mean(d_fake)}


def generator_adversarial_loss(d_fake):
    """L_adv = -mean D(G(z)) (both scripts)."""
    return -tf.reduce_mean(d_fake)


def dual_norm_order(p: float) -> float:
    """q = p / (p - 1), the dual of ``--p`` used for gradient norms (q = inf for p = 1)."""
    return math.inf if p == 1 else 1.0 / (1.0 - 1.0 / p)


def flat_norms(x, order: float):
    """[N, 1] norms of the flattened samples of x ([N, ...]) of the given order (TF ``tf.norm``)."""
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.norm(flat, ord=order if math.isfinite(order) else math.inf, axis=1, keepdims=True)


def interpolate_gradient_norms(critic: Callable, x_real, x_fake, epsilon, order: float):
    """Norms of ∂D(x̂)/∂x̂ at x̂ = ε·x_fake + (1 - ε)·x_real.

    Call it inside the tape of the critic loss: the inner tape keeps the result differentiable w.r.t. the
    critic weights (double backpropagation), as ``tf.gradients`` did in TF1.

    Args:
        critic: x -> D(x), [N, ...] -> [N, 1].
        x_real, x_fake: [N, ...].
        epsilon: interpolation weights broadcastable to x, e.g. [N, 1] (synthetic) or [N, 1, 1, 1].
        order: norm order q (see :func:`dual_norm_order`).
    Returns:
        (norms [N, 1], gradients like x).
    """
    x_real = tf.convert_to_tensor(x_real, tf.float32)
    x_hat = epsilon * tf.convert_to_tensor(x_fake, tf.float32) + (1.0 - epsilon) * x_real
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        d_hat = critic(x_hat)
    gradients = tape.gradient(d_hat, x_hat)
    return flat_norms(gradients, order), gradients


def lipschitz_penalty(norms, *, lipschitz: float = 1.0, weight: float = 10.0, reduce: str = "mean", kind: str = "lp"):
    """λ·reduce(max(n - K, 0)²) for ``kind="lp"``, λ·reduce((n - K)²) for ``kind="gp"`` (spec §1.4).

    Args:
        norms: gradient norms n, [N, 1].
        lipschitz: K (the ``--K`` flag, 1).
        weight: λ (``--lambda_lp``, 10).
        reduce: ``mean``, ``sum`` or ``max`` (``--reduce_fn``).
    """
    excess = norms - lipschitz
    if kind == "lp":
        excess = tf.maximum(excess, 0.0)
    elif kind != "gp":
        raise ValueError(f"kind must be 'lp' or 'gp', got {kind!r}")
    return weight * REDUCERS[reduce](tf.square(excess))
