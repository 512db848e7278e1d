"""CIFAR-2 critic loss and Lipschitz penalties on stub critics with known gradients (spec §1.4, §10 item 18)."""

import numpy as np
import pytest
import tensorflow as tf

from common.slogan import penalties as pen
from common.slogan.losses import wasserstein_discriminator_loss


def _linear_critic(w):
    """D(x) = wᵀ vec(x): [N, H, W, C] -> [N, 1]; its input gradient is w everywhere."""
    w = tf.Variable(w)

    def critic(x):
        return tf.reshape(tf.reshape(x, [tf.shape(x)[0], -1]) @ tf.reshape(w, [-1, 1]), [-1, 1])

    return critic, w


def _inputs(n=6, shape=(4, 4, 1), seed=0, scale=0.1):
    rng = np.random.RandomState(seed)
    return [tf.constant(rng.uniform(-scale, scale, (n, *shape)).astype(np.float32)) for _ in range(2)]


def test_wgan_critic_loss_form():
    d_real, d_fake = tf.constant([[1.0], [3.0]]), tf.constant([[0.5], [-0.5], [1.5]])
    loss, parts = wasserstein_discriminator_loss(d_real, d_fake)
    assert parts["d_real"].numpy() - parts["d_fake"].numpy() == pytest.approx(2.0 - 0.5)
    assert loss.numpy() == pytest.approx(-1.5)


@pytest.mark.parametrize("norm", [0.5, 3.0])
def test_gp_and_lp_of_a_linear_critic(norm):
    w = np.random.RandomState(1).normal(size=16).astype(np.float32)
    w *= norm / np.linalg.norm(w)
    critic, _ = _linear_critic(w)
    x_real, x_fake = _inputs()
    eps = tf.constant(np.linspace(0, 1, 6), tf.float32)
    lp, grads = pen.gradient_penalty(critic, x_real, x_fake, eps, one_sided=True)
    gp, _ = pen.gradient_penalty(critic, x_real, x_fake, eps, one_sided=False)
    assert lp.numpy() == pytest.approx(10 * max(norm - 1, 0) ** 2, rel=1e-5, abs=1e-6)
    assert gp.numpy() == pytest.approx(10 * (norm - 1) ** 2, rel=1e-5)
    np.testing.assert_allclose(grads.numpy().reshape(6, -1), np.tile(w, (6, 1)), rtol=1e-6)


def test_gp_uses_the_dual_norm_and_the_reduction():
    w = np.array([0.5, -2.0, 1.0, 0.0], np.float32)
    critic, _ = _linear_critic(w)
    x_real, x_fake = _inputs(3, (2, 2, 1))
    eps = tf.constant([0.1, 0.5, 0.9])
    # p = 1 -> q = inf: n = max|w| = 2.
    gp, _ = pen.gradient_penalty(critic, x_real, x_fake, eps, one_sided=False, p=1.0, reduce_fn=tf.reduce_sum)
    assert gp.numpy() == pytest.approx(10 * 3 * (2.0 - 1.0) ** 2)


def test_interpolates_per_image():
    x_real, x_fake = _inputs(2)
    x_hat = pen.interpolates(x_real, x_fake, tf.constant([0.0, 0.25])).numpy()
    np.testing.assert_allclose(x_hat[0], x_real.numpy()[0])
    np.testing.assert_allclose(x_hat[1], 0.25 * x_fake.numpy()[1] + 0.75 * x_real.numpy()[1], rtol=1e-6)


def test_alp_ratio_and_penalty_of_a_linear_critic():
    w = np.random.RandomState(2).normal(size=16).astype(np.float32)  # ‖w‖ ≈ 4 > K = 1
    critic, w_var = _linear_critic(w)
    x_real, x_fake = _inputs(4, scale=0.05)
    x = tf.concat([x_real, x_fake], 0)
    eps = tf.constant(np.linspace(0.01, 0.05, 8), tf.float32)
    direction = tf.constant(np.random.RandomState(3).uniform(-0.5, 0.5, (8, 4, 4, 1)), tf.float32)
    with tf.GradientTape() as tape:
        # Small ξ and ε: no pixel is clipped, so Δx = ε and Δy = |wᵀr| exactly.
        penalty, parts = pen.adversarial_lipschitz_penalty(critic, x, eps, direction, xi=0.01)
    grad = tape.gradient(penalty, w_var).numpy()
    delta_x, delta_y, ratio = (parts[k].numpy() for k in ("delta_x", "delta_y", "ratio"))
    np.testing.assert_allclose(delta_x, eps.numpy(), rtol=1e-4)
    # One power iteration on a linear critic turns the probe into ±w/‖w‖: the ratio is ‖w‖.
    norm_w = np.linalg.norm(w)
    np.testing.assert_allclose(ratio, norm_w, rtol=1e-4)
    np.testing.assert_allclose(delta_y / delta_x, ratio, rtol=1e-6)
    assert penalty.numpy() == pytest.approx(10 * (norm_w - 1) ** 2, rel=1e-4)
    # X̂ and the direction are constants: d/dw of 10·(|wᵀv| − 1)² with v = w/‖w‖ fixed is 20(‖w‖ − 1)·v.
    np.testing.assert_allclose(grad, 20 * (norm_w - 1) * w / norm_w, rtol=1e-3)


def test_alp_is_zero_below_the_lipschitz_target_and_clips_to_the_image_range():
    w = np.full(16, 0.1, np.float32)  # ‖w‖ = 0.4 < 1
    critic, _ = _linear_critic(w)
    x = tf.concat(_inputs(2, scale=0.9), 0)
    direction = tf.constant(np.random.RandomState(4).uniform(-0.5, 0.5, (4, 4, 4, 1)), tf.float32)
    penalty, parts = pen.adversarial_lipschitz_penalty(critic, x, tf.constant([10.0] * 4), direction)
    assert penalty.numpy() == 0.0
    # ε = 10 pushes the images out of [-1, 1]: the clip shortens the step below ε.
    assert np.all(parts["delta_x"].numpy() < 10.0)


def test_unit_directions_floor():
    v = tf.constant(np.zeros((2, 2, 2, 1), np.float32))
    np.testing.assert_array_equal(pen.unit_directions(v).numpy(), 0.0)
    u = tf.constant(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))
    np.testing.assert_allclose(np.linalg.norm(pen.unit_directions(u).numpy()), 1.0, rtol=1e-6)
