"""The CIFAR-2 critic objective: WGAN loss plus a Lipschitz penalty (gp, lp or alp), spec §1.4.

``critic`` arguments are callables ``x [N, H, W, C] -> [N, 1]`` (the discriminator). The WGAN loss itself is
:func:`common.slogan.losses.wasserstein_discriminator_loss`. The penalties take a
``reduce_fn`` over the per-image terms [N] (``mean``, ``sum`` or ``max`` of ``--reduce_fn``); under a
``tf.distribute`` strategy the train step passes a reduction over the whole global batch. Every random
quantity (interpolation weights, ALP radii and probe directions) is an argument so that tests can fix it.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from common.slogan.losses import dual_norm_order, interpolate_gradient_norms

Critic = Callable[[tf.Tensor], tf.Tensor]
Reduce = Callable[[tf.Tensor], tf.Tensor]

REGULARIZERS = ("gp", "lp", "alp")


def flat_norm(x: tf.Tensor, order: float) -> tf.Tensor:
    """Per-example ``order``-norm of x flattened: [N, ...] -> [N]."""
    return tf.norm(tf.reshape(x, [tf.shape(x)[0], -1]), ord=order, axis=1)


def unit_directions(v: tf.Tensor) -> tf.Tensor:
    """v / max(‖v‖₂, 1e-10) per example (norm over all pixels), as the original's ``normalize``."""
    norm = flat_norm(v, 2)
    return v / tf.maximum(tf.reshape(norm, [-1] + [1] * (v.shape.rank - 1)), 1e-10)


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
        reduce_fn: reduction of the per-image terms [N] (the train step passes one over the global batch).
    Returns:
        ``(penalty, gradients)``: a scalar and the [N, H, W, C] input gradients. The penalty is
        differentiable w.r.t. the critic's weights (double back-propagation).
    """
    norms, gradients = interpolate_gradient_norms(
        critic, x_real, x_fake, tf.reshape(eps, [-1, 1, 1, 1]), dual_norm_order(p))
    excess = norms[:, 0] - lipschitz
    if one_sided:
        excess = tf.maximum(excess, 0.0)
    return lambda_lp * reduce_fn(tf.square(excess)), gradients


def adversarial_lipschitz_penalty(
    critic: Critic,
    x: tf.Tensor,
    eps: tf.Tensor,
    direction: tf.Tensor,
    *,
    d_x: tf.Tensor | None = None,
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
        d_x: D(X) [N, 1] when the caller has it already (the critic has no batch coupling, so the WGAN
            loss's D(x_r), D(G(z)) concatenated are the same values); computed here when None.
    Returns:
        ``(penalty, parts)`` with parts ``ratio`` [N] (Δy/Δx), ``delta_x`` [N], ``delta_y`` [N].
    """
    x = tf.stop_gradient(x)
    d_x = critic(x) if d_x is None else d_x
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
