"""The CIFAR-2 critic objective: WGAN loss plus a Lipschitz penalty (gp, lp or alp), spec §1.4.

``critic`` arguments are callables ``x [N, H, W, C] -> [N, 1]`` (the discriminator). The penalties take a
``reduce_fn`` over the per-image terms [N] (``mean``, ``sum`` or ``max`` of ``--reduce_fn``); under a
``tf.distribute`` strategy the train step passes a reduction over the whole global batch. Every random
quantity (interpolation weights, ALP radii and probe directions) is an argument so that tests can fix it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

Critic = Callable[[tf.Tensor], tf.Tensor]
Reduce = Callable[[tf.Tensor], tf.Tensor]

REDUCE_FNS: dict[str, Reduce] = {"mean": tf.reduce_mean, "sum": tf.reduce_sum, "max": tf.reduce_max}
REGULARIZERS = ("gp", "lp", "alp")


def dual_order(p: float) -> float:
    """q = p/(p-1), the dual norm order of ``--p`` (inf for p = 1); gradient norms use it."""
    return np.inf if p == 1 else 1.0 / (1.0 - 1.0 / p)


def flat_norm(x: tf.Tensor, order: float) -> tf.Tensor:
    """Per-example ``order``-norm of x flattened: [N, ...] -> [N]."""
    return tf.norm(tf.reshape(x, [tf.shape(x)[0], -1]), ord=order, axis=1)


def unit_directions(v: tf.Tensor) -> tf.Tensor:
    """v / max(‖v‖₂, 1e-10) per example (norm over all pixels), as the original's ``normalize``."""
    norm = flat_norm(v, 2)
    return v / tf.maximum(tf.reshape(norm, [-1] + [1] * (v.shape.rank - 1)), 1e-10)


def wgan_critic_loss(d_real: tf.Tensor, d_fake: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """WGAN critic loss −(mean D(x_r) − mean D(x_g)).

    Args:
        d_real: [N, 1] critic values of real images.
        d_fake: [M, 1] critic values of generated images.
    Returns:
        ``(loss, wasserstein)``, both scalars, loss = −wasserstein.
    """
    wasserstein = tf.reduce_mean(d_real) - tf.reduce_mean(d_fake)
    return -wasserstein, wasserstein


def interpolates(x_real: tf.Tensor, x_fake: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
    """x̂ = ε·x_g + (1−ε)·x_r with one ε per image. eps: [N] in [0, 1]."""
    eps = tf.reshape(eps, [-1] + [1] * (x_real.shape.rank - 1))
    return eps * x_fake + (1.0 - eps) * x_real


def critic_input_gradients(critic: Critic, x_hat: tf.Tensor) -> tf.Tensor:
    """∂ Σ_n D(x̂_n) / ∂x̂, [N, H, W, C] (also logged as the ``summaries/gradients`` image grid)."""
    with tf.GradientTape() as tape:
        tape.watch(x_hat)
        d_hat = critic(x_hat)
    return tape.gradient(d_hat, x_hat)


def gradient_penalty(
    critic: Critic,
    x_real: tf.Tensor,
    x_fake: tf.Tensor,
    eps: tf.Tensor,
    *,
    one_sided: bool,
    lambda_lp: float = 10.0,
    lipschitz: float = 1.0,
    p: float = 2.0,
    reduce_fn: Reduce = tf.reduce_mean,
) -> tuple[tf.Tensor, tf.Tensor]:
    """GP (two-sided) or LP (one-sided) on interpolates, spec §1.4.

    n_i = ‖∂D(x̂_i)/∂x̂_i‖_q with q the dual of p;
    GP = λ·reduce((n − K)²), LP = λ·reduce(max(n − K, 0)²).

    Args:
        x_real, x_fake: [N, H, W, C].
        eps: [N] interpolation weights ~ U[0, 1].
        one_sided: True for ``lp``, False for ``gp``.
    Returns:
        ``(penalty, gradients)``: a scalar and the [N, H, W, C] input gradients. The penalty is
        differentiable w.r.t. the critic's weights (double back-propagation).
    """
    gradients = critic_input_gradients(critic, interpolates(x_real, x_fake, eps))
    excess = flat_norm(gradients, dual_order(p)) - lipschitz
    if one_sided:
        excess = tf.maximum(excess, 0.0)
    return lambda_lp * reduce_fn(tf.square(excess)), gradients


def adversarial_lipschitz_penalty(
    critic: Critic,
    x: tf.Tensor,
    eps: tf.Tensor,
    direction: tf.Tensor,
    *,
    xi: float = 10.0,
    ip: int = 1,
    lambda_lp: float = 10.0,
    lipschitz: float = 1.0,
    p: float = 2.0,
    reduce_fn: Reduce = tf.reduce_mean,
) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Adversarial Lipschitz penalty (ALP), spec §1.4.

    1. v = normalise(direction); ``ip`` times: X̃ = clip(X + ξv, −1, 1), dist = mean|D(X) − D(X̃)|,
       v ← normalise(stop_gradient(∂dist/∂v)).
    2. X̂ = clip(X + ε·v, −1, 1) (a constant); Δx = max(‖X − X̂‖_p, 1e-10), Δy = |D(X) − D(X̂)|.
    3. ALP = λ·reduce(max(Δy/Δx − K, 0)²). The gradient reaches the critic through D(X) and D(X̂).

    Args:
        x: [N, H, W, C] real and generated images concatenated (N = 2·batch in the original).
        eps: [N] radii ~ U[eps_min, eps_max].
        direction: [N, H, W, C] initial probe ~ U[−0.5, 0.5).
    Returns:
        ``(penalty, parts)`` with parts ``ratio`` [N] (Δy/Δx), ``delta_x`` [N], ``delta_y`` [N].
    """
    x = tf.stop_gradient(x)
    d_x = critic(x)
    v = unit_directions(direction)
    for _ in range(ip):
        with tf.GradientTape() as tape:
            tape.watch(v)
            dist = tf.reduce_mean(tf.abs(d_x - critic(tf.clip_by_value(x + xi * v, -1.0, 1.0))))
        v = unit_directions(tf.stop_gradient(tape.gradient(dist, v)))
    x_hat = tf.stop_gradient(tf.clip_by_value(x + tf.reshape(eps, [-1, 1, 1, 1]) * v, -1.0, 1.0))
    delta_x = tf.maximum(flat_norm(x - x_hat, p), 1e-10)
    delta_y = tf.abs(d_x - critic(x_hat))[:, 0]
    ratio = delta_y / delta_x
    penalty = lambda_lp * reduce_fn(tf.square(tf.maximum(ratio - lipschitz, 0.0)))
    return penalty, {"ratio": ratio, "delta_x": delta_x, "delta_y": delta_y}
