"""Metric math against hand-computed values and independent NumPy/SciPy references (no TensorFlow here).

Covers SLOGAN checks 24-26 (ICFID matching, FID/IS math, clustering metrics), selfcond checks 24-28
(2-D metrics, reverse KL, cluster metrics, Frechet distance, IS splits) and congan checks 23-24.
"""

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from common import metrics as M

# ----------------------------------------------------------------------------------------------------
# Frechet distance
# ----------------------------------------------------------------------------------------------------


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _reference_frechet(mu1, s1, mu2, s2):
    """Independent route: the eigenvalues of s1 s2 are real and >= 0, tr sqrt(s1 s2) = sum sqrt(eig)."""
    eig = np.linalg.eigvals(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(eig, 0, None))))


@pytest.mark.parametrize("method", M.FID_METHODS)
def test_frechet_identical_sets_is_zero(method):
    x = np.random.default_rng(0).standard_normal((500, 16))
    assert abs(M.fid_from_activations(x, x, method=method)) < 1e-6


@pytest.mark.parametrize("method", M.FID_METHODS)
def test_frechet_analytic_gaussians(method):
    d = 8
    eye = np.eye(d)
    # selfcond check 27: mean shift of 1 in every coordinate -> 8; I vs 4I -> 8 + 32 - 2 * 16 = 8.
    zero, one = np.zeros(d), np.ones(d)
    np.testing.assert_allclose(M.frechet_distance(zero, eye, one, eye, method=method), 8.0, atol=1e-9)
    np.testing.assert_allclose(M.frechet_distance(zero, eye, zero, 4 * eye, method=method), 8.0, atol=1e-9)
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    expected = _reference_frechet(mu1, s1, mu2, s2)
    np.testing.assert_allclose(M.frechet_distance(mu1, s1, mu2, s2, method=method), expected, rtol=1e-8)


def test_frechet_of_samples_matches_mean_shift():
    # SLOGAN check 25 / congan check 24: N(0, I) vs N(a, I), d = 8, N = 20000 -> ||a||^2.
    rng = np.random.default_rng(2)
    a = np.array([1.0, -0.5, 0.25, 0.0, 2.0, 0.0, -1.0, 0.5])
    x = rng.standard_normal((20000, 8))
    y = rng.standard_normal((20000, 8)) + a
    # The sampling noise of the mean term alone has a std of about 2 |a| sqrt(2 / N) ~ 0.8% here.
    for method in ("tfgan", "scipy"):
        fid = M.fid_from_activations(x, y, method=method)
        assert abs(fid - a @ a) < 0.05 * (a @ a)


def test_frechet_methods_agree():
    # SLOGAN check 25: the SVD route (§6.2) and scipy's sqrtm (§6.3) agree to 1e-4 relative.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 32)) @ rng.standard_normal((32, 32))
    y = rng.standard_normal((300, 32)) @ rng.standard_normal((32, 32)) + 0.3
    values = {m: M.fid_from_activations(x, y, method=m) for m in M.FID_METHODS}
    np.testing.assert_allclose(values["tfgan_svd"], values["scipy"], rtol=1e-4)
    np.testing.assert_allclose(values["tfgan"], values["tfgan_svd"], rtol=1e-10)


def test_tfgan_eigh_route_equals_literal_svd_on_singular_covariances():
    # N < F: rank-deficient covariances with eigenvalues around and below the 1e-10 threshold, where
    # the SVD's sign handling of tiny negative eigenvalues matters.
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 20)), rng.standard_normal((9, 20))
    np.testing.assert_allclose(
        M.fid_from_activations(x, y, method="tfgan"), M.fid_from_activations(x, y, method="tfgan_svd"), rtol=1e-9
    )


def test_symmetric_sqrt_svd_is_a_root_and_keeps_tiny_values():
    rng = np.random.default_rng(5)
    s = _random_spd(rng, 6)
    root = M.symmetric_sqrt_svd(s)
    np.testing.assert_allclose(root @ root, s, atol=1e-10)
    np.testing.assert_allclose(M.symmetric_sqrt_svd(np.diag([4.0, 1e-12])), np.diag([2.0, 1e-12]), atol=1e-20)


def test_activation_statistics_use_n_minus_1():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, sigma = M.activation_statistics(x.astype(np.float32))
    np.testing.assert_allclose(mu, [2.0, 4.0])
    d = x - mu
    np.testing.assert_allclose(sigma, d.T @ d / 2)
    assert sigma.dtype == np.float64


def test_scipy_route_retries_with_jitter_when_not_finite(monkeypatch):
    seen = []

    def fake_sqrtm(mat):
        seen.append(mat.copy())
        return np.full_like(mat, np.nan) if len(seen) == 1 else np.eye(len(mat)) * 2.0

    monkeypatch.setattr(M, "_sqrtm", fake_sqrtm)
    s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
    fd = M.frechet_distance(np.zeros(2), s1, np.zeros(2), s2, method="scipy")
    assert len(seen) == 2
    jitter = 1e-6 * np.eye(2)
    np.testing.assert_allclose(seen[1], (s1 + jitter) @ (s2 + jitter))
    np.testing.assert_allclose(fd, 3.0 + 7.0 - 2 * 4.0)


def test_scipy_route_imaginary_parts(monkeypatch):
    s = np.eye(2)
    monkeypatch.setattr(M, "_sqrtm", lambda mat: np.eye(2) + 1e-4j * np.eye(2))
    np.testing.assert_allclose(M.frechet_distance(np.zeros(2), s, np.zeros(2), s, method="scipy"), 0.0, atol=1e-12)
    monkeypatch.setattr(M, "_sqrtm", lambda mat: np.eye(2) + 1e-2j * np.eye(2))
    with pytest.raises(ValueError, match="imaginary"):
        M.frechet_distance(np.zeros(2), s, np.zeros(2), s, method="scipy")


def test_frechet_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        M.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="torch")
    with pytest.raises(ValueError, match="shapes"):
        M.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# ----------------------------------------------------------------------------------------------------
# Inception Score
# ----------------------------------------------------------------------------------------------------


def _reference_is(probs, bounds):
    scores = []
    for a, b in bounds:
        part = probs[a:b]
        py = part.mean(axis=0)
        scores.append(math.exp(np.mean([scipy.stats.entropy(row, py) for row in part])))
    return np.mean(scores), np.std(scores)


def test_inception_score_hand_values():
    # SLOGAN check 25 / congan check 23.
    mean, std = M.inception_score(np.zeros((50, 1008)))
    assert mean == pytest.approx(1.0, abs=1e-12) and std == 0.0
    c = 7
    one_hot = np.tile(np.eye(c), (4, 1))
    np.testing.assert_allclose(M.inception_score_from_probs(one_hot)[0], c, rtol=1e-12)
    np.testing.assert_allclose(M.inception_score(200.0 * one_hot)[0], c, rtol=1e-9)
    # selfcond check 28: alternating (0.9, 0.1) / (0.1, 0.9), 10 splits -> 1.444935, std ~ 0.
    probs = np.tile([[0.9, 0.1], [0.1, 0.9]], (5000, 1))
    mean, std = M.inception_score(np.log(probs), splits=10)
    np.testing.assert_allclose(mean, 1.444935, atol=1e-6)
    assert std < 1e-9


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_inception_score_matches_scipy_reference(drop_remainder):
    rng = np.random.default_rng(6)
    logits = 3 * rng.standard_normal((100, 12))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if drop_remainder:
        bounds = [(0, 33), (33, 66), (66, 99)]
    else:
        bounds = [(0, 33), (33, 66), (66, 100)]
    expected = _reference_is(probs, bounds)
    np.testing.assert_allclose(M.inception_score(logits, splits=3, drop_remainder=drop_remainder), expected, rtol=1e-10)
    np.testing.assert_allclose(
        M.inception_score_from_probs(probs, splits=3, drop_remainder=drop_remainder), expected, rtol=1e-10
    )


def test_inception_score_keeps_first_classes():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((40, 1008))
    kept = np.exp(logits[:, :1000])
    kept /= kept.sum(axis=1, keepdims=True)
    expected = _reference_is(kept, [(0, 20), (20, 40)])
    np.testing.assert_allclose(M.inception_score(logits, splits=2, num_classes=1000), expected, rtol=1e-10)


# ----------------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------------


def _reference_kid_block(r, g):
    dim = r.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / dim + 1) ** 3

    m, n = len(r), len(g)
    rr = sum(k(r[i], r[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    gg = sum(k(g[i], g[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    rg = sum(k(a, b) for a in r for b in g) / (m * n)
    return rr + gg - 2 * rg


def test_kid_matches_blockwise_reference():
    rng = np.random.default_rng(8)
    real, fake = rng.standard_normal((23, 5)), rng.standard_normal((17, 5)) + 0.5
    # ceil(23 / 8) = 3 blocks; TF-GAN puts the one-larger blocks last: real 7, 8, 8 and fake 5, 6, 6.
    ests = [
        _reference_kid_block(real[0:7], fake[0:5]),
        _reference_kid_block(real[7:15], fake[5:11]),
        _reference_kid_block(real[15:23], fake[11:17]),
    ]
    mean, std = M.kid_from_activations(real, fake, max_block_size=8)
    np.testing.assert_allclose(mean, np.mean(ests), rtol=1e-10)
    np.testing.assert_allclose(std, np.std(ests, ddof=1) / math.sqrt(3), rtol=1e-10)
    one_mean, one_std = M.kid_from_activations(real, fake)
    np.testing.assert_allclose(one_mean, _reference_kid_block(real, fake), rtol=1e-10)
    assert math.isnan(one_std)


# ----------------------------------------------------------------------------------------------------
# ICFID
# ----------------------------------------------------------------------------------------------------


def test_icfid_greedy_matching_check_24():
    icfid, best, values = M.intra_cluster_fid([[10, 1], [2, 30]])
    assert best.tolist() == [1, 0] and icfid == 1.5 and values.tolist() == [2, 1]
    icfid, best, _ = M.intra_cluster_fid([[1, 2], [3, 4]])
    assert best.tolist() == [0, 1] and icfid == 2.5
    # Greedy, not Hungarian: Hungarian would pick [1, 0] here (total 3 + 3 = 6 < 1 + 10).
    icfid, best, _ = M.intra_cluster_fid([[1, 3], [3, 10]])
    assert best.tolist() == [0, 1] and icfid == 5.5
    # More classes than components: the used row holds 999999, as in the original.
    _, best, values = M.intra_cluster_fid([[5, 6]])
    assert best.tolist() == [0, 0] and values.tolist() == [5, 999999]


def test_fid_matrix_rows_are_components():
    rng = np.random.default_rng(9)
    gen = [rng.standard_normal((60, 3)) + c for c in (0.0, 3.0, 6.0)]
    real = [rng.standard_normal((50, 3)) + c for c in (6.0, 0.0)]
    mat = M.fid_matrix(gen, real)
    assert mat.shape == (3, 2)
    mu_r, s_r = np.mean(real[1], 0), np.cov(real[1], rowvar=False)
    mu_g, s_g = np.mean(gen[2], 0), np.cov(gen[2], rowvar=False)
    np.testing.assert_allclose(mat[2, 1], _reference_frechet(mu_r, s_r, mu_g, s_g), rtol=1e-8)
    assert M.intra_cluster_fid(mat)[1].tolist() == [2, 0]


# ----------------------------------------------------------------------------------------------------
# Clustering
# ----------------------------------------------------------------------------------------------------


def _reference_nmi_ari(y_true, y_pred):
    n = len(y_true)
    cls, clu = np.unique(y_true), np.unique(y_pred)
    table = np.array([[np.sum((y_pred == k) & (y_true == t)) for t in cls] for k in clu], dtype=float)
    pk, pt, pkt = table.sum(1) / n, table.sum(0) / n, table / n
    mi = sum(
        pkt[i, j] * math.log(pkt[i, j] / (pk[i] * pt[j]))
        for i in range(len(clu))
        for j in range(len(cls))
        if pkt[i, j] > 0
    )
    h_k, h_t = -np.sum(pk * np.log(pk)), -np.sum(pt * np.log(pt))
    nmi = mi / ((h_k + h_t) / 2) if h_k + h_t > 0 else 1.0

    def comb2(x):
        return x * (x - 1) / 2

    index = comb2(table).sum()
    a, b = comb2(table.sum(1)).sum(), comb2(table.sum(0)).sum()
    expected = a * b / comb2(n)
    ari = (index - expected) / ((a + b) / 2 - expected)
    return nmi, ari


def test_selfcond_cluster_metrics_check_26():
    y_pred, y_true = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 1, 1]
    np.testing.assert_allclose(M.nmi(y_true, y_pred), 0.386253, atol=1e-6)
    np.testing.assert_allclose(M.purity_selfcond(y_true, y_pred), 4 / 6, atol=1e-12)
    np.testing.assert_allclose(M.purity(y_true, y_pred), 5 / 6, atol=1e-12)


def test_slogan_purity_hand_value():
    # Clusters: 1 -> labels {0, 0} (majority 2); 0 -> {0, 1, 1, 2} (majority 2). Purity = 4 / 6.
    assert M.purity([0, 0, 0, 1, 1, 2], [1, 1, 0, 0, 0, 0]) == pytest.approx(4 / 6, abs=1e-12)


def test_perfect_clustering_under_any_permutation():
    y_true = np.repeat(np.arange(4), [3, 5, 2, 6])
    for perm in itertools.permutations(range(4)):
        scores = M.clustering_scores(y_true, np.asarray(perm)[y_true] + 10)
        for name, value in scores.items():
            assert value == pytest.approx(1.0, abs=1e-12), name


def test_clustering_metrics_match_references():
    rng = np.random.default_rng(10)
    y_true, y_pred = rng.integers(0, 4, 60), rng.integers(0, 3, 60)
    nmi, ari = _reference_nmi_ari(y_true, y_pred)
    np.testing.assert_allclose(M.nmi(y_true, y_pred), nmi, rtol=1e-10)
    np.testing.assert_allclose(M.ari(y_true, y_pred), ari, rtol=1e-10)
    # ACC: the best injective map clusters -> labels, by brute force.
    best = max(
        sum(np.sum((y_pred == k) & (y_true == perm[k])) for k in range(3))
        for perm in itertools.permutations(range(4), 3)
    )
    np.testing.assert_allclose(M.cluster_accuracy(y_true, y_pred), best / 60)
    np.testing.assert_allclose(M.nmi(np.eye(4)[y_true], y_pred), nmi, rtol=1e-10)  # one-hot labels


def test_kmeans_follows_slogan_convention():
    params = M.make_kmeans(3, np.arange(5)).get_params()
    assert (params["n_clusters"], params["random_state"], params["n_init"]) == (5, 0, 10)
    assert M.make_kmeans(8, np.eye(2)[[0, 1, 1]]).get_params()["n_clusters"] == 8
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(3), 20)
    blobs = np.array([[0, 0], [10, 0], [0, 10]])[labels] + 0.1 * rng.standard_normal((60, 2))
    assert M.nmi(labels, M.kmeans_labels(blobs, 2, labels)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------
# Modes and reverse KL
# ----------------------------------------------------------------------------------------------------


def test_modes_and_reverse_kl_log10_check_25():
    modes, kl = M.modes_and_reverse_kl([0] * 50 + [1] * 50, 1000)
    assert modes == 2 and kl == pytest.approx(2.698970, abs=1e-6)
    assert M.modes_and_reverse_kl(np.repeat(np.arange(10), 3), 1000) == (10, pytest.approx(2.0))
    assert M.modes_and_reverse_kl(np.arange(1000), 1000) == (1000, pytest.approx(0.0, abs=1e-12))
    assert M.modes_and_reverse_kl([3, 3], 10, base=math.e)[1] == pytest.approx(math.log(10))
    with pytest.raises(ValueError, match="predicted_classes"):
        M.modes_and_reverse_kl([10], 10)


def _reference_2d(points, means, threshold):
    good, visited, counts = 0, set(), np.zeros(len(means))
    for p in points:
        for k, mu in enumerate(means):
            if np.all(np.abs(p - mu) < threshold):
                good += 1
                visited.add(k)
                break
        dists = [np.linalg.norm(p - mu) for mu in means]
        counts[int(np.argmin(dists))] += 1
    q = counts / len(points)
    return good / len(points), len(visited), sum(v * math.log(len(means) * v) for v in q if v > 0)


def test_2d_metrics_check_24():
    ring = M.ring_means()
    np.testing.assert_allclose(ring[:3], [[0, 2], [math.sqrt(2), math.sqrt(2)], [2, 0]], atol=1e-12)
    assert M.ring_2d_metrics(np.repeat(ring, 5, axis=0)) == (1.0, 8, pytest.approx(0.0, abs=1e-12))
    prop, modes, kl = M.ring_2d_metrics(np.repeat(ring[:1], 7, axis=0))
    assert modes == 1 and kl == pytest.approx(2.079442, abs=1e-6)
    assert M.grid_2d_metrics(np.repeat(M.grid_means()[:1], 7, axis=0))[2] == pytest.approx(3.218876, abs=1e-6)
    prop, modes, _ = M.ring_2d_metrics(ring + [3.1 * 0.01, 0.0])
    assert (prop, modes) == (0.0, 0)
    assert M.grid_means()[5 * 1 + 3].tolist() == [-2.0, 2.0]


def test_2d_metrics_match_loop_reference():
    rng = np.random.default_rng(12)
    means = M.grid_means()
    points = means[rng.integers(0, 25, 300)] + 0.06 * rng.standard_normal((300, 2))
    got = M.grid_2d_metrics(points)
    expected = _reference_2d(points, means, 0.15)
    assert got[:2] == pytest.approx(expected[:2]) and got[2] == pytest.approx(expected[2], rel=1e-12)
