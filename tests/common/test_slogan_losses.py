"""U2C loss (both script variants), hinge / WGAN critic losses and Lipschitz penalties vs NumPy (spec §10 #12, #18)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from common.slogan import losses


def np_l2n(x):
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), 1e-12))


def np_arcface(c, s, m, variant):
    if variant == "synthetic":
        sin_t = np.sqrt(np.maximum(1 - c * c, 1e-8) + 1e-8)
    else:
        sin_t = np.sqrt(np.clip(1 - c * c, 1e-10, 1e10))
    shifted = s * (c * np.cos(m) - sin_t * np.sin(m))
    kept = s * (c - np.sin(m) * m)
    return np.where(c - np.cos(np.pi - m) > 0, shifted, kept)


def np_u2c(e, proto, s, m, temp, variant):
    cos = np_l2n(e) @ np_l2n(proto).T
    b = len(e)
    pos = np.exp(np_arcface(np.diag(cos), s, m * temp, variant))
    neg = np.exp(np_arcface(cos, s, 0.0, variant))
    den = (pos + (neg * (1 - np.eye(b))).sum(1)) / b
    if variant == "cifar2":
        den = np.clip(den, 1e-10, 1e10)
        return -np.log(np.clip(pos / den, 1e-10, 1e10))
    return -np.log(pos / den)


def random_inputs(seed=0, b=8, d=16, k=3):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(b, d)).astype(np.float32)
    logits = rng.normal(size=(b, k))
    pick = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mu = rng.normal(size=(k, d))
    proto = (pick @ mu).astype(np.float32)
    # Rows whose cosines are exactly +1 / -1 in float32 (axis-aligned vectors): at +1 the sqrt clamps of the
    # two variants differ, at -1 the else-branch of the ArcFace transform fires.
    e[0], proto[0] = 3 * np.eye(d)[0], 2 * np.eye(d)[0]
    e[1], proto[1] = np.eye(d)[1], -0.5 * np.eye(d)[1]
    return e, proto


@pytest.mark.parametrize("variant,scale", [("synthetic", 2.0), ("cifar2", 4.0)])
@pytest.mark.parametrize("margin_temp", [0.0, 0.5])
def test_u2c_matches_numpy(variant, scale, margin_temp):
    e, proto = random_inputs()
    got = losses.u2c_loss(e, proto, scale=scale, margin=0.5, temperature=margin_temp / 0.5, variant=variant).numpy()
    want = np_u2c(e.astype(np.float64), proto.astype(np.float64), scale, 0.5, margin_temp / 0.5, variant)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.all(got >= -math.log(len(e)) - 1e-6)


def test_u2c_variants_differ_only_by_clamps():
    e, proto = random_inputs(1)
    synthetic = losses.arcface(tf.constant([1.0]), 2.0, 0.5, "synthetic").numpy()
    cifar2 = losses.arcface(tf.constant([1.0]), 2.0, 0.5, "cifar2").numpy()
    np.testing.assert_allclose(synthetic, 2.0 * (math.cos(0.5) - math.sqrt(2e-8) * math.sin(0.5)), rtol=1e-6)
    np.testing.assert_allclose(cifar2, 2.0 * (math.cos(0.5) - math.sqrt(1e-10) * math.sin(0.5)), rtol=1e-6)
    with pytest.raises(ValueError):
        losses.u2c_loss(e, proto, scale=2.0, margin=0.5, variant="other")


def test_arcface_zero_margin_is_scaled_cosine():
    cos = tf.constant(np.linspace(-1, 1, 21), tf.float32)
    for variant in losses.U2C_VARIANTS:
        np.testing.assert_allclose(losses.arcface(cos, 2.0, 0.0, variant).numpy(), 2.0 * cos.numpy(), atol=1e-6)


def test_u2c_lower_bound_is_reached_by_perfect_alignment():
    e = np.eye(4, dtype=np.float32)
    # Each embedding equals its prototype and is orthogonal to the others: Lc = -log(B e^{s cos m}/(e^{s cos m}+3)).
    got = losses.u2c_loss(e, e, scale=2.0, margin=0.0, variant="synthetic").numpy()
    np.testing.assert_allclose(got, -np.log(4 * np.e**2 / (np.e**2 + 3)), rtol=1e-5)
    assert np.all(got >= -np.log(4))


def linear_critic(w):
    w = tf.constant(w, tf.float32)
    return lambda x: tf.matmul(x, w[:, None])


@pytest.mark.parametrize("w", [[1.5, 2.0], [0.3, 0.4]])
def test_lp_of_linear_critic(w):
    rng = np.random.default_rng(0)
    x_r, x_g = rng.normal(size=(2, 16, 2)).astype(np.float32)
    eps = rng.uniform(size=(16, 1)).astype(np.float32)
    norms, grads = losses.interpolate_gradient_norms(linear_critic(w), x_r, x_g, eps, losses.dual_norm_order(2.0))
    np.testing.assert_allclose(grads.numpy(), np.tile(w, (16, 1)), rtol=1e-6)
    norm = float(np.linalg.norm(w))
    lp = losses.lipschitz_penalty(norms, lipschitz=1.0, weight=10.0, reduce="mean", kind="lp")
    gp = losses.lipschitz_penalty(norms, lipschitz=1.0, weight=10.0, reduce="mean", kind="gp")
    np.testing.assert_allclose(lp.numpy(), 10 * max(norm - 1, 0) ** 2, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gp.numpy(), 10 * (norm - 1) ** 2, rtol=1e-5)


def test_lp_is_differentiable_in_the_critic_weights():
    w = tf.Variable([[1.5], [2.0]])
    x = tf.ones([4, 2])
    with tf.GradientTape() as tape:
        norms, _ = losses.interpolate_gradient_norms(lambda v: v @ w, x, 2 * x, tf.fill([4, 1], 0.5), 2.0)
        lp = losses.lipschitz_penalty(norms, kind="lp")
    grad = tape.gradient(lp, w).numpy()[:, 0]
    np.testing.assert_allclose(grad, 10 * 2 * (2.5 - 1) * np.array([1.5, 2.0]) / 2.5, rtol=1e-5)


def test_penalty_reducers_and_dual_norm():
    norms = tf.constant([[0.5], [2.0], [3.0]])
    assert losses.lipschitz_penalty(norms, weight=1.0, reduce="sum").numpy() == pytest.approx(1 + 4)
    assert losses.lipschitz_penalty(norms, weight=1.0, reduce="max").numpy() == pytest.approx(4)
    assert losses.lipschitz_penalty(norms, weight=1.0, reduce="mean").numpy() == pytest.approx(5 / 3)
    assert losses.dual_norm_order(2.0) == 2.0 and losses.dual_norm_order(1.0) == math.inf
    assert losses.dual_norm_order(4.0) == pytest.approx(4 / 3)
    np.testing.assert_allclose(losses.flat_norms(tf.constant([[3.0, -4.0]]), math.inf).numpy(), [[4.0]])


def test_hinge_and_wasserstein_forms():
    d_real = tf.constant([[2.0], [0.5], [-1.0]])
    d_fake = tf.constant([[-2.0], [0.0], [1.0]])
    hinge, parts = losses.hinge_discriminator_loss(d_real, d_fake)
    assert hinge.numpy() == pytest.approx(np.mean([0, 0.5, 2.0]) + np.mean([0, 1.0, 2.0]))
    assert parts["d_real"].numpy() == pytest.approx(0.5)
    wgan, _ = losses.wasserstein_discriminator_loss(d_real, d_fake)
    assert wgan.numpy() == pytest.approx(-(0.5 - (-1 / 3)))
    assert losses.generator_adversarial_loss(d_fake).numpy() == pytest.approx(1 / 3)
