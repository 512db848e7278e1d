"""Gaussian-mixture prior: initialisation, responsibilities, Gumbel pick, Stein estimates and updates (spec §10)."""

import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from common.slogan import prior as P


def test_initial_values():  # check 11
    pr = P.GaussianMixturePrior(8, 64, seed=0)
    np.testing.assert_array_equal(pr.rho.numpy(), np.full(8, 1 / 8, np.float32))
    np.testing.assert_allclose(pr.pi.numpy(), np.full(8, 1 / 8), rtol=1e-7)
    means = pr.means().numpy()
    assert means.shape == (8, 64)
    assert 0.08 < means.std() < 0.12
    assert all(m.shape == (64,) for m in pr.mu)
    assert len({tuple(np.round(m, 6)) for m in means}) == 8
    np.testing.assert_array_equal(pr.covariances().numpy(), np.tile(np.eye(64, dtype=np.float32), (8, 1, 1)))
    assert [v.name.split(":")[0] for v in pr.mu][:2] == ["mu_0", "mu_1"]
    assert pr.sigma[1].name.startswith("sigma_1")


def toy_mixture(dtype=np.float32):
    pi = np.array([0.3, 0.7], dtype)
    means = np.array([[1.0, 0.0, -1.0], [-0.5, 0.5, 0.0]], dtype)
    a = np.array([[1.0, 0.2, 0.0], [0.0, 0.8, 0.1], [0.3, 0.0, 0.6]], dtype)
    covs = np.stack([a @ a.T + 0.2 * np.eye(3), np.diag([0.5, 1.0, 1.5])]).astype(dtype)
    return pi, means, covs


def test_responsibility_logits_match_scipy():
    pi, means, covs = toy_mixture()
    z = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    got = P.responsibility_logits(z, pi, means, covs).numpy()
    comp = np.stack([multivariate_normal(means[c], covs[c]).logpdf(z) for c in range(2)], 1) + np.log(pi)
    want = comp - np.logaddexp(comp[:, 0], comp[:, 1])[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tf.reduce_logsumexp(got, 1).numpy(), 0, atol=1e-5)


def test_gumbel_softmax_matches_numpy_and_is_stable_at_small_tau():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 3)).astype(np.float32) * 20
    u = rng.uniform(size=(5, 3)).astype(np.float32)
    u[0, 0] = 0.0  # the 1e-20 inside both logs keeps this finite
    g = -np.log(-np.log(u.astype(np.float64) + 1e-20) + 1e-20)
    for tau in (0.1, 0.01):
        y = (logits + g) / tau
        want = np.exp(y - y.max(1, keepdims=True))
        want /= want.sum(1, keepdims=True)
        got = P.gumbel_softmax(logits, tau, u).numpy()
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_stein_estimators_are_unbiased():  # check 14
    pi, means, covs = toy_mixture()
    b = np.array([0.5, -1.0, 0.25], np.float32)
    z = P.mixture_distribution(pi, means, covs).sample(200_000, seed=(3, 4))
    resp = tf.nn.softmax(P.responsibility_logits(z, pi, means, covs))
    dldz = z - b  # toy loss ℓ(z) = ½‖z - b‖²
    loss = 0.5 * tf.reduce_sum(tf.square(dldz), axis=1, keepdims=True)
    precision = P.symmetric_precision(covs)
    g_mu = P.bonnet_mean_gradient(resp, dldz).numpy()
    nabla = P.price_covariance_gradient(resp, z, means, precision, dldz).numpy()
    g_rho = P.mixing_logit_gradient(resp, pi, loss).numpy()

    def close(got, want):
        ok = np.abs(got - want) <= np.maximum(0.03 * np.abs(want), 0.01)
        assert ok.all(), (got, want)

    close(g_mu, pi[:, None] * (means - b))
    close(nabla, pi[:, None, None] * np.eye(3))
    per_component = 0.5 * (np.sum((means - b) ** 2, axis=1) + np.trace(covs, axis1=1, axis2=2))
    close(g_rho, pi * (per_component - np.sum(pi * per_component)))


def test_price_gradient_equals_the_batched_outer_product_form():
    rng = np.random.default_rng(2)
    bsz, k, d = 5, 3, 4
    resp = rng.dirichlet(np.ones(k), size=bsz).astype(np.float32)
    z, g = rng.normal(size=(2, bsz, d)).astype(np.float32)
    means = rng.normal(size=(k, d)).astype(np.float32)
    precision = np.stack([np.eye(d) * (c + 1) for c in range(k)]).astype(np.float32)
    s = np.zeros((k, d, d))
    for i in range(bsz):
        for c in range(k):
            s[c] += resp[i, c] * precision[c] @ np.outer(z[i] - means[c], g[i])
    s /= bsz
    got = P.price_covariance_gradient(resp, z, means, precision, g).numpy()
    np.testing.assert_allclose(got, 0.5 * (s + s.transpose(0, 2, 1)), rtol=1e-5, atol=1e-6)


def test_covariance_step_keeps_positive_definiteness():  # check 15
    rng = np.random.default_rng(3)
    d = 8
    a = rng.normal(size=(d, d))
    sigma = (a @ a.T / d + 0.5 * np.eye(d)).astype(np.float32)[None]
    n = rng.normal(size=(d, d)) * 10
    nabla = (0.5 * (n + n.T)).astype(np.float32)[None]
    gamma = 0.5
    precision = P.symmetric_precision(sigma)
    new = (sigma - gamma * P.pd_covariance_direction(nabla, precision, gamma)).numpy()[0]
    np.testing.assert_allclose(new, new.T, atol=1e-5 * np.abs(new).max())
    assert np.linalg.eigvalsh(new.astype(np.float64)).min() > 0
    s64, n64 = sigma[0].astype(np.float64), nabla[0].astype(np.float64)
    retraction = 0.5 * s64 + 0.5 * (s64 - gamma * n64) @ np.linalg.inv(s64) @ (s64 - gamma * n64)
    np.testing.assert_allclose(new, retraction, rtol=1e-4, atol=1e-4 * np.abs(retraction).max())
    # The plain step Σ - γN would leave the cone here: that is why the retraction term exists.
    assert np.linalg.eigvalsh(s64 - gamma * n64).min() < 0


def test_rho_sum_is_preserved_and_nonfinite_groups_are_skipped():
    pr = P.GaussianMixturePrior(4, 3, seed=1)
    rng = np.random.default_rng(4)
    for _ in range(100):
        resp = rng.dirichlet(np.ones(4), size=16).astype(np.float32)
        adv = rng.normal(size=(16, 1)).astype(np.float32) * 5
        grads = P.SteinGradients(
            mu=tf.zeros([4, 3]), sigma=tf.zeros([4, 3, 3]), rho=P.mixing_logit_gradient(resp, pr.pi, adv)
        )
        pr.apply_stein_updates(grads, 0.1, 0.01, 0.5)
    assert abs(pr.rho.numpy().sum() - 1.0) < 1e-5
    assert np.abs(pr.rho.numpy() - 0.25).max() > 1e-3

    before = [v.numpy().copy() for v in (*pr.mu, *pr.sigma, pr.rho)]
    bad_mu = tf.tensor_scatter_nd_update(tf.ones([4, 3]), [[2, 1]], [np.nan])
    applied = pr.apply_stein_updates(P.SteinGradients(bad_mu, tf.ones([4, 3, 3]), tf.ones([4])), 1.0, 1.0, 1.0)
    assert not bool(applied["mu"]) and bool(applied["sigma"]) and bool(applied["rho"])
    for c in range(4):
        np.testing.assert_array_equal(pr.mu[c].numpy(), before[c])
        np.testing.assert_allclose(pr.sigma[c].numpy(), before[4 + c] - 1.0)
    np.testing.assert_allclose(pr.rho.numpy(), before[-1] - 1.0)


def test_sampling_is_a_leaf_and_seeded():
    pr = P.GaussianMixturePrior(3, 5, seed=0)
    with tf.GradientTape() as tape:
        z = pr.sample(7, seed=tf.constant([1, 2]))
        total = tf.reduce_sum(z)
    assert z.shape == (7, 5)
    assert tape.gradient(total, pr.mu) == [None, None, None]
    np.testing.assert_array_equal(z.numpy(), pr.sample(7, seed=tf.constant([1, 2])).numpy())
    assert pr.sample_component(1, 4, seed=tf.constant([0, 1])).shape == (4, 5)


@pytest.mark.parametrize("k,d", [(2, 128), (8, 64)])
def test_stein_gradients_shapes(k, d):
    pr = P.GaussianMixturePrior(k, d)
    z = pr.sample(16, seed=tf.constant([0, 0]))
    resp = tf.nn.softmax(P.responsibility_logits(z, pr.pi, pr.means(), pr.covariances()))
    grads = P.stein_gradients(z, tf.ones_like(z), resp, pr.pi, pr.means(), pr.covariances(), tf.ones([16, 1]), 0.01)
    assert grads.mu.shape == (k, d) and grads.sigma.shape == (k, d, d) and grads.rho.shape == (k,)
