"""TF1 batch-norm semantics and the spectral-norm projection (spec §4.1, §4.3; §10 #10, #19)."""

import numpy as np
import pytest
import tensorflow as tf

from common.slogan.layers import SpectralNormProjection, TF1BatchNorm, spectral_norm_project

EPS = 1.001e-5


def test_epsilon_is_raised_to_the_fused_minimum():
    assert TF1BatchNorm(epsilon=1e-5).epsilon == EPS
    assert TF1BatchNorm(epsilon=1e-3).epsilon == 1e-3


def test_training_mode_uses_biased_batch_statistics():
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(32, 5)).astype(np.float32)
    bn = TF1BatchNorm()
    y = bn(x, training=True).numpy()
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + EPS), rtol=1e-4, atol=1e-5)
    # No update without update_stats (the D step): moving statistics keep their initial values.
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(5))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(5))
    assert bn.moving_mean_local_step.numpy() == 0


def test_moving_statistics_are_zero_debiased_and_unbiased():
    rng = np.random.default_rng(1)
    x1 = rng.normal(1.0, 2.0, size=(16, 3)).astype(np.float32)
    x2 = rng.normal(-1.0, 0.5, size=(16, 3)).astype(np.float32)
    bn = TF1BatchNorm()
    bn(x1, training=True, update_stats=True)
    np.testing.assert_allclose(bn.moving_mean.numpy(), x1.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * x1.var(0, ddof=1), rtol=1e-6)
    bn(x2, training=True, update_stats=True)
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), (0.09 * x1.mean(0) + 0.1 * x2.mean(0)) / (1 - 0.81), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), 0.9 * (0.9 + 0.1 * x1.var(0, ddof=1)) + 0.1 * x2.var(0, ddof=1), rtol=1e-5
    )
    # Inference mode normalises with the moving statistics and the learned γ, β.
    bn.gamma.assign([1.0, 2.0, 3.0])
    bn.beta.assign([0.0, -1.0, 1.0])
    y = bn(x1, training=False).numpy()
    want = (x1 - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + EPS) * [1, 2, 3] + [0, -1, 1]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_image_input_reduces_over_batch_and_space():
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 6)).astype(np.float32)
    bn = TF1BatchNorm()
    bn(x, training=True, update_stats=True)
    flat = x.reshape(-1, 6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    assert len(bn.trainable_weights) == 2 and len(bn.non_trainable_weights) == 4


def np_project(w, u, v, iters=2):
    for _ in range(iters):
        v = w.T @ u
        v = v / np.linalg.norm(v + 1e-12)
        u = w @ v
        u = u / np.linalg.norm(u + 1e-12)
    return w / (u @ w @ v)


def test_projection_matches_numpy_power_iteration():
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    u, v = rng.normal(size=6).astype(np.float32), rng.normal(size=4).astype(np.float32)
    got = spectral_norm_project(w, u, v).numpy()
    np.testing.assert_allclose(got, np_project(w.astype(np.float64), u, v), rtol=1e-5)


def test_projection_leaves_top_singular_value_at_least_one():
    limit = np.sqrt(6 / 256)
    w = tf.random.stateless_uniform([128, 128], seed=[0, 1], minval=-limit, maxval=limit)
    constraint = SpectralNormProjection(generator=tf.random.Generator.from_seed(0))
    for _ in range(3):
        top = np.linalg.svd(constraint(w).numpy(), compute_uv=False)[0]
        assert 1 - 1e-4 <= top <= 1.5
    # Fresh u, v at every call: two calls give different results.
    assert not np.allclose(constraint(w).numpy(), constraint(w).numpy())
    assert constraint.get_config() == {"power_iters": 2}


@pytest.mark.parametrize("shape", [(3, 3, 2, 4)])
def test_projection_of_conv_kernels_reshapes_by_first_dimension(shape):
    w = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    u, v = np.ones(shape[0], np.float32), np.ones(int(np.prod(shape[1:])), np.float32)
    got = spectral_norm_project(w, u, v).numpy()
    np.testing.assert_allclose(got.reshape(shape[0], -1), np_project(w.reshape(shape[0], -1), u, v), rtol=1e-5)
