"""Losses of both frameworks and of SimSiam, as pure tensor functions (spec §1.2, §1.4, §7.7).

Shapes: logits are [B, 1] or [B]; representations [B, D]; images [B, H, W, C]. Every function returns a
scalar (means over the batch as in the notebooks).
"""

from __future__ import annotations

import tensorflow as tf

from congan.layers import cosine_similarity

# ---------------------------------------------------------------------------------------------------
# Framework 2 adversarial criteria (spec §1.4): hinge is the notebook's choice, the rest are defined there.
# ---------------------------------------------------------------------------------------------------


def d_hinge(d_real, d_fake):
    """L_D = mean relu(1 - d_real) + mean relu(1 + d_fake)."""
    return tf.reduce_mean(tf.nn.relu(1.0 - d_real)) + tf.reduce_mean(tf.nn.relu(1.0 + d_fake))


def g_hinge(d_fake):
    """L_G = -mean d_fake."""
    return -tf.reduce_mean(d_fake)


def d_non_saturating(d_real, d_fake):
    """L_D = mean [softplus(-d_real) + softplus(d_fake)]."""
    return tf.reduce_mean(tf.nn.softplus(-d_real) + tf.nn.softplus(d_fake))


def g_non_saturating(d_fake):
    """L_G = mean softplus(-d_fake)."""
    return tf.reduce_mean(tf.nn.softplus(-d_fake))


def d_least_squares(d_real, d_fake):
    """L_D = mean [0.5 (d_real - 1)^2 + 0.5 d_fake^2]."""
    return tf.reduce_mean(0.5 * (d_real - 1.0) ** 2 + 0.5 * d_fake**2)


def g_least_squares(d_fake):
    """L_G = mean 0.5 (d_fake - 1)^2."""
    return tf.reduce_mean(0.5 * (d_fake - 1.0) ** 2)


def d_wasserstein(d_real, d_fake):
    """L_D = mean (d_fake - d_real)."""
    return tf.reduce_mean(d_fake - d_real)


def g_wasserstein(d_fake):
    """L_G = -mean d_fake."""
    return -tf.reduce_mean(d_fake)


ADVERSARIAL_LOSSES = {
    "hinge": (d_hinge, g_hinge),
    "ns": (d_non_saturating, g_non_saturating),
    "ls": (d_least_squares, g_least_squares),
    "wasserstein": (d_wasserstein, g_wasserstein),
}


# ---------------------------------------------------------------------------------------------------
# Consistency terms (spec §1.4)
# ---------------------------------------------------------------------------------------------------


def negative_cosine(a, b):
    """-mean_b cos(a_b, b_b) for [B, D] inputs; cos = a.b / max(|a||b|, 1e-8)."""
    return -tf.reduce_mean(cosine_similarity(a, b))


def d_consistency(q_real, e_real, q_fake, r):
    """D-side Q loss: 0.5 * [(-mean cos(Q(h(x)), E(x))) + (-mean cos(Q(h(fake)), r))]."""
    return 0.5 * (negative_cosine(q_real, e_real) + negative_cosine(q_fake, r))


def interpolate(real, fake, u):
    """x_hat = u real + (1 - u) fake, with u [B, 1, ...] broadcast over the rest."""
    return u * real + (1.0 - u) * fake


def gradient_penalty(grads, center=1.0):
    """mean_b (||grad_b||_2 - center)^2 of per-sample gradients [B, ...]."""
    flat = tf.reshape(grads, (tf.shape(grads)[0], -1))
    return tf.reduce_mean((tf.norm(flat, axis=1) - center) ** 2)


# ---------------------------------------------------------------------------------------------------
# Framework 1 (spec §1.2)
# ---------------------------------------------------------------------------------------------------


def binary_cross_entropy(probs, targets):
    """PyTorch ``F.binary_cross_entropy``: -mean [y log p + (1 - y) log(1 - p)], logs clamped at -100.

    Targets may exceed 1 (Framework 1 draws real labels from U(0.7, 1.2)); the raw formula is kept.
    """
    log_p = tf.maximum(tf.math.log(probs), -100.0)
    log_1mp = tf.maximum(tf.math.log(1.0 - probs), -100.0)
    return -tf.reduce_mean(targets * log_p + (1.0 - targets) * log_1mp)


def sse(a, b):
    """Batch mean of the per-sample sum of squared differences (``rec_criterion``)."""
    diff = tf.reshape(a - b, (tf.shape(a)[0], -1))
    return tf.reduce_mean(tf.reduce_sum(diff**2, axis=1))


def kl_div_batchmean(inputs, targets):
    """PyTorch ``F.kl_div(inputs, targets, reduction='batchmean')`` = sum t (log t - inputs) / B.

    ``inputs`` should be log-probabilities; Framework 1 passes probabilities (a notebook bug, kept).
    """
    pointwise = tf.math.xlogy(targets, targets) - targets * inputs
    return tf.reduce_sum(pointwise) / tf.cast(tf.shape(inputs)[0], inputs.dtype)


def f1_d_gan(d_real, d_fake, real_labels):
    """Framework 1 D loss (gan/gan-gp): BCE(D(real), y) + BCE(D(fake), 0) with y ~ U(0.7, 1.2)."""
    return binary_cross_entropy(d_real, real_labels) + binary_cross_entropy(d_fake, tf.zeros_like(d_fake))


def f1_g_gan(d_fake):
    """Framework 1 G loss (gan/gan-gp): BCE(D(fake), 1) = -mean log D(G(z))."""
    return binary_cross_entropy(d_fake, tf.ones_like(d_fake))


# ---------------------------------------------------------------------------------------------------
# SimSiam (spec §7.7)
# ---------------------------------------------------------------------------------------------------


def simsiam_loss(p1, p2, z1, z2):
    """L = -0.5 [mean cos(p1, sg(z2)) + mean cos(p2, sg(z1))]; [B, dim] each."""
    return 0.5 * (negative_cosine(p1, tf.stop_gradient(z2)) + negative_cosine(p2, tf.stop_gradient(z1)))
