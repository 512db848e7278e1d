"""Evaluation metrics shared by every paper: pure NumPy/SciPy functions of activations, logits or labels.

Nothing here imports TensorFlow or touches a network. The feature extractors that produce the
activations live in :mod:`common.inception` (the Inception graphs of the originals) and
:mod:`common.classifier_features` (a small in-project classifier); :mod:`common.evaluate` ties both to a
run folder.

Which paper uses what (see the specs in ``shared/specs``):

==========================  ==========================================================================
SLOGAN FID (slogan §6.2)    ``fid_from_activations(..., method="tfgan")``: TF-GAN's symmetric-root route
SLOGAN ICFID (§6.3)         ``fid_matrix(..., method="scipy")`` then ``intra_cluster_fid`` (greedy match)
SLOGAN clustering (§6.1)    ``kmeans_labels`` then ``purity`` / ``ari`` / ``nmi``
SLOGAN IS                   ``inception_score(logits, splits=1)`` on all 1008 logits
Self-Cond FID (§7.2)        ``fid_from_activations(..., method="scipy")`` (TTUR)
Self-Cond IS (§7.3a)        ``inception_score(logits, splits=10, num_classes=1000)``
Self-Cond modes (§7.4)      ``modes_and_reverse_kl(pred, num_classes, base=10)``
Self-Cond 2-D (§7.7)        ``ring_2d_metrics`` / ``grid_2d_metrics`` (natural log)
Self-Cond clusters (§7.5)   ``nmi`` and ``purity_selfcond`` (the swapped "purity" as coded)
ConGAN (congan §5)          ``fid_from_activations(..., method="scipy")``; ``inception_score_from_probs(
                            probs, splits=1, drop_remainder=True)``
==========================  ==========================================================================
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.linalg

# TF-GAN leaves singular values below this threshold un-rooted in its symmetric square root.
SVD_EPS = 1e-10
# TTUR / pytorch-fid: jitter added to both covariances when sqrtm returns a non-finite result.
SQRTM_JITTER = 1e-6
# TTUR / pytorch-fid: largest tolerated |imaginary part| on the diagonal of sqrtm's result.
SQRTM_IMAG_TOL = 1e-3
# SLOGAN's greedy matcher overwrites a used component's row with this value.
ICFID_USED = 999999.0

FID_METHODS = ("tfgan", "tfgan_svd", "scipy")


# --------------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------------


def activation_statistics(activations) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a set of activations, in float64.

    Args:
        activations: [N, F] array (N >= 2).

    Returns:
        mu: [F] mean; sigma: [F, F] covariance normalised by N - 1 (``np.cov`` convention).
    """
    acts = _as_2d(activations, "activations")
    if acts.shape[0] < 2:
        raise ValueError(f"activations: need at least 2 rows for a covariance, got {acts.shape[0]}")
    mu = acts.mean(axis=0)
    sigma = np.cov(acts, rowvar=False)
    return mu, np.atleast_2d(sigma)


def symmetric_sqrt_svd(mat, eps: float = SVD_EPS) -> np.ndarray:
    """TF-GAN's square root of a symmetric matrix: U diag(s') V^T with s' = sqrt(s), or s where s < eps.

    Args:
        mat: [F, F] symmetric matrix (float64).
        eps: singular values below it are kept as they are, not rooted.

    Returns:
        [F, F] matrix R with R R ~= mat for positive semi-definite input.
    """
    u, s, vt = np.linalg.svd(np.asarray(mat, dtype=np.float64))
    s_root = np.where(s < eps, s, np.sqrt(s))
    return (u * s_root) @ vt


def _signed_root(eigvals: np.ndarray, eps: float) -> np.ndarray:
    """The SVD root of a symmetric matrix, written on its eigenvalues.

    For symmetric M = Q diag(l) Q^T the SVD is U = Q, s = |l|, V = Q diag(sign l), so TF-GAN's
    U diag(root(s)) V^T equals Q diag(sign(l) * root(|l|)) Q^T with root(s) = s if s < eps else sqrt(s).
    """
    mag = np.abs(eigvals)
    return np.sign(eigvals) * np.where(mag < eps, mag, np.sqrt(mag))


def _trace_sqrt_product_tfgan(sigma1, sigma2, use_svd: bool) -> float:
    """tr sqrt(sigma1 sigma2) computed as tr sqrt(A sigma2 A) with A = sqrt(sigma1) (TF-GAN, slogan §6.2)."""
    if use_svd:
        root1 = symmetric_sqrt_svd(sigma1)
        return float(np.trace(symmetric_sqrt_svd(root1 @ sigma2 @ root1)))
    # Same function through symmetric eigendecompositions (about 4x faster than two SVDs at F = 2048).
    lam, q = np.linalg.eigh(sigma1)
    root1 = (q * _signed_root(lam, SVD_EPS)) @ q.T
    inner = root1 @ sigma2 @ root1
    inner = 0.5 * (inner + inner.T)
    return float(np.sum(_signed_root(np.linalg.eigvalsh(inner), SVD_EPS)))


def _sqrtm(mat):
    """scipy's matrix square root (a module attribute so that tests can inject failures)."""
    with warnings.catch_warnings():
        # A singular product warns; the original computed it anyway (disp=False) and so do we.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        return scipy.linalg.sqrtm(mat)


def _trace_sqrt_product_scipy(sigma1, sigma2) -> float:
    """tr sqrtm(sigma1 sigma2) as in TTUR / pytorch-fid (slogan §6.3, selfcond §7.2, congan §5).

    Non-finite result: add 1e-6 I to both covariances and recompute. A complex result whose diagonal
    has an imaginary part above 1e-3 raises ``ValueError``; otherwise the real part is kept.
    """
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * SQRTM_JITTER
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=SQRTM_IMAG_TOL):
            worst = np.max(np.abs(covmean.imag))
            raise ValueError(f"Frechet distance: sqrtm has an imaginary component of {worst:g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, *, method: str = "tfgan") -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (FID when fed Inception statistics).

        d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr sqrt(sigma1 sigma2)

    Args:
        mu1, mu2: [F] means. sigma1, sigma2: [F, F] covariances. Everything is cast to float64.
        method: how tr sqrt(sigma1 sigma2) is computed:
            ``"tfgan"``: TF-GAN's route (slogan §6.2): tr sqrt(A sigma2 A) with A = sqrt(sigma1), both roots
                symmetric, singular values < 1e-10 un-rooted; evaluated with ``eigh`` (same function).
            ``"tfgan_svd"``: the same, literally with two SVDs as TF-GAN does (slower, for checking).
            ``"scipy"``: ``scipy.linalg.sqrtm`` of the product, with TTUR's 1e-6 jitter retry and
                imaginary-part check (slogan §6.3, selfcond §7.2, congan §5).

    Returns:
        The distance as a Python float (float64 arithmetic).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"Frechet distance: shapes do not match: mu {mu1.shape} vs {mu2.shape}, "
            f"sigma {sigma1.shape} vs {sigma2.shape}"
        )
    if method == "tfgan":
        tr_covmean = _trace_sqrt_product_tfgan(sigma1, sigma2, use_svd=False)
    elif method == "tfgan_svd":
        tr_covmean = _trace_sqrt_product_tfgan(sigma1, sigma2, use_svd=True)
    elif method == "scipy":
        tr_covmean = _trace_sqrt_product_scipy(sigma1, sigma2)
    else:
        raise ValueError(f"Frechet distance: method must be one of {FID_METHODS}, got {method!r}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_activations(real, fake, *, method: str = "tfgan") -> float:
    """FID between two activation sets ([N1, F] and [N2, F]); see :func:`frechet_distance`."""
    mu1, sigma1 = activation_statistics(real)
    mu2, sigma2 = activation_statistics(fake)
    return frechet_distance(mu1, sigma1, mu2, sigma2, method=method)


# --------------------------------------------------------------------------------------------------
# Inception Score
# --------------------------------------------------------------------------------------------------


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _split_bounds(n: int, splits: int, drop_remainder: bool) -> list[tuple[int, int]]:
    """Row ranges of the splits: [i N/s, (i+1) N/s) (TF-GAN / selfcond), or N//s rows each (sbarratt)."""
    if splits < 1 or splits > n:
        raise ValueError(f"Inception Score: splits must be in [1, {n}], got {splits}")
    if drop_remainder:
        part = n // splits
        return [(i * part, (i + 1) * part) for i in range(splits)]
    return [(i * n // splits, (i + 1) * n // splits) for i in range(splits)]


def _score_from_log_probs(log_p: np.ndarray, splits: int, drop_remainder: bool) -> tuple[float, float]:
    scores = []
    for start, stop in _split_bounds(log_p.shape[0], splits, drop_remainder):
        part = log_p[start:stop]
        p = np.exp(part)
        log_marginal = np.log(p.mean(axis=0))
        # KL(p(y|x) || p(y)) with 0 log 0 = 0 (zeros only arise from probabilities given directly).
        with np.errstate(invalid="ignore", divide="ignore"):
            kl = np.sum(np.where(p > 0, p * (part - log_marginal), 0.0), axis=1)
        scores.append(math.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(
    logits, *, splits: int = 1, num_classes: int | None = None, drop_remainder: bool = False
) -> tuple[float, float]:
    """Inception Score from classifier logits, in float64.

        IS = exp( mean_x KL( p(y|x) || p(y) ) ),   p(y|x) = softmax(logits),  p(y) = mean_x p(y|x)

    computed per split; the mean and the (population) std over the splits are returned.

    Args:
        logits: [N, C] pre-softmax outputs.
        splits: number of consecutive row blocks (SLOGAN 1, selfcond 10).
        num_classes: keep only the first ``num_classes`` logits before the softmax (selfcond keeps 1000
            of the graph's 1008); ``None`` keeps all (SLOGAN, TF-GAN).
        drop_remainder: ``False``: split i holds rows [i N/s, (i+1) N/s) (TF-GAN, selfcond);
            ``True``: each split holds N // s rows and the rest is dropped (sbarratt's, used by ConGAN).

    Returns:
        (mean, std) over the splits; std is 0 for one split.
    """
    logits = _as_2d(logits, "logits")
    if num_classes is not None:
        logits = logits[:, :num_classes]
    return _score_from_log_probs(_log_softmax(logits), splits, drop_remainder)


def inception_score_from_probs(probs, *, splits: int = 1, drop_remainder: bool = False) -> tuple[float, float]:
    """Inception Score from class probabilities [N, C] (rows sum to 1); see :func:`inception_score`."""
    probs = _as_2d(probs, "probs")
    with np.errstate(divide="ignore"):
        log_p = np.log(probs)
    return _score_from_log_probs(log_p, splits, drop_remainder)


# --------------------------------------------------------------------------------------------------
# Kernel Inception Distance (extra; TF-GAN's block estimator)
# --------------------------------------------------------------------------------------------------


def _block_sizes(n: int, n_blocks: int) -> np.ndarray:
    small = n // n_blocks
    n_big = n - small * n_blocks
    return np.array([small] * (n_blocks - n_big) + [small + 1] * n_big)


def kid_from_activations(real, fake, *, max_block_size: int = 1024) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel k(x, y) = (x.y / F + 1)^3.

    TF-GAN's block estimator (Binkowski et al. 2018): both sets are cut, in order, into
    ceil(max(N1, N2) / max_block_size) blocks of near-equal size; each block pair gives

        MMD^2 = sum_{i != j} k(r_i, r_j) / (m (m-1)) + sum_{i != j} k(g_i, g_j) / (n (n-1)) - 2 mean k(r, g)

    Args:
        real: [N1, F]; fake: [N2, F] activations, assumed in random order.
        max_block_size: the largest block.

    Returns:
        (mean over blocks, standard error sqrt(var / blocks) with Bessel's correction; NaN for one block).
    """
    real = _as_2d(real, "real")
    fake = _as_2d(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"KID: feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    n_blocks = int(math.ceil(max(len(real), len(fake)) / max_block_size))
    bounds_r = np.concatenate([[0], np.cumsum(_block_sizes(len(real), n_blocks))])
    bounds_g = np.concatenate([[0], np.cumsum(_block_sizes(len(fake), n_blocks))])
    dim = real.shape[1]
    estimates = []
    for i in range(n_blocks):
        r = real[bounds_r[i] : bounds_r[i + 1]]
        g = fake[bounds_g[i] : bounds_g[i + 1]]
        m, n = len(r), len(g)
        k_rr = (r @ r.T / dim + 1) ** 3
        k_gg = (g @ g.T / dim + 1) ** 3
        k_rg = (r @ g.T / dim + 1) ** 3
        estimates.append(
            (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
            + (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
            - 2 * k_rg.mean()
        )
    estimates = np.array(estimates)
    mean = float(estimates.mean())
    if n_blocks <= 1:
        return mean, float("nan")
    var = float(np.sum((estimates - mean) ** 2) / (n_blocks - 1))
    return mean, math.sqrt(var / n_blocks)


# --------------------------------------------------------------------------------------------------
# Intra-cluster FID (SLOGAN Algorithm 2)
# --------------------------------------------------------------------------------------------------


def fid_matrix(generated: Sequence, real: Sequence, *, method: str = "scipy") -> np.ndarray:
    """FID between every generated component and every real class.

    Args:
        generated: K activation sets [N_i, F] (one per mixture component).
        real: C activation sets [M_j, F] (one per true class).
        method: see :func:`frechet_distance`; SLOGAN's ICFID uses ``"scipy"`` (slogan §6.3).

    Returns:
        [K, C] matrix, rows = components, columns = classes.
    """
    gen_stats = [activation_statistics(a) for a in generated]
    real_stats = [activation_statistics(a) for a in real]
    out = np.zeros((len(gen_stats), len(real_stats)))
    for i, (mu_g, sigma_g) in enumerate(gen_stats):
        for j, (mu_r, sigma_r) in enumerate(real_stats):
            out[i, j] = frechet_distance(mu_r, sigma_r, mu_g, sigma_g, method=method)
    return out


def greedy_class_matching(fid_mat) -> tuple[np.ndarray, np.ndarray]:
    """SLOGAN's greedy class -> component match (not Hungarian; slogan §6.3, check 24).

    For classes j = 0, 1, ... in order: i* = argmin_i FID[i, j] over the rows not used yet; record
    FID[i*, j]; mark row i* used. As in the original, a used row is overwritten with 999999, so with
    more classes than components the later classes get 999999.

    Args:
        fid_mat: [K, C], rows = components, columns = classes.

    Returns:
        best_idx: [C] int component matched to each class; values: [C] the recorded FIDs.
    """
    work = np.array(fid_mat, dtype=np.float64, copy=True)
    if work.ndim != 2:
        raise ValueError(f"greedy_class_matching: expected a [K, C] matrix, got shape {work.shape}")
    best_idx = np.zeros(work.shape[1], dtype=np.int64)
    values = np.zeros(work.shape[1])
    for j in range(work.shape[1]):
        i = int(np.argmin(work[:, j]))
        best_idx[j] = i
        values[j] = work[i, j]
        work[i, :] = ICFID_USED
    return best_idx, values


def intra_cluster_fid(fid_mat) -> tuple[float, np.ndarray, np.ndarray]:
    """ICFID = mean over classes of the greedily matched FIDs (SLOGAN Algorithm 2).

    Returns:
        (icfid, best_idx [C], per-class FIDs [C]).
    """
    best_idx, values = greedy_class_matching(fid_mat)
    return float(values.mean()), best_idx, values


# --------------------------------------------------------------------------------------------------
# Clustering metrics
# --------------------------------------------------------------------------------------------------


def contingency_table(y_true, y_pred) -> np.ndarray:
    """Counts n[k, t] of points in predicted cluster k (rows) carrying true label t (columns)."""
    y_true = _as_labels(y_true)
    y_pred = _as_labels(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels: y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    _, t = np.unique(y_true, return_inverse=True)
    _, k = np.unique(y_pred, return_inverse=True)
    table = np.zeros((k.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (k, t), 1)
    return table


def purity(y_true, y_pred) -> float:
    """Textbook purity: sum over clusters of the count of its majority label, over N (SLOGAN §6.1)."""
    table = contingency_table(y_true, y_pred)
    return float(table.max(axis=1).sum() / table.sum())


def purity_selfcond(y_true, y_pred) -> float:
    """The Self-Conditioned GAN's "purity" as coded: sum over true classes of their largest cluster, over N.

    The original passes the arguments of its helper swapped, which makes this inverse purity
    (selfcond §7.5); ``purity`` is the textbook value.
    """
    table = contingency_table(y_true, y_pred)
    return float(table.max(axis=0).sum() / table.sum())


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information with arithmetic averaging (sklearn >= 0.22 default)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(_as_labels(y_true), _as_labels(y_pred), average_method="arithmetic"))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(_as_labels(y_true), _as_labels(y_pred)))


def cluster_accuracy(y_true, y_pred) -> float:
    """Clustering accuracy: the best one-to-one cluster -> label map (Hungarian), fraction correct."""
    from scipy.optimize import linear_sum_assignment

    table = contingency_table(y_true, y_pred)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / table.sum())


def clustering_scores(y_true, y_pred) -> dict[str, float]:
    """All clustering metrics at once: nmi, ari, acc, purity, purity_selfcond."""
    return {
        "nmi": nmi(y_true, y_pred),
        "ari": ari(y_true, y_pred),
        "acc": cluster_accuracy(y_true, y_pred),
        "purity": purity(y_true, y_pred),
        "purity_selfcond": purity_selfcond(y_true, y_pred),
    }


def make_kmeans(num_components: int, y_true, *, seed: int = 0, n_init: int = 10):
    """SLOGAN's KMeans: n_clusters = max(K, number of distinct labels), random_state 0, n_init 10.

    sklearn >= 1.4 defaults to ``n_init="auto"`` (one run for k-means++), so n_init = 10 (the 0.22 default
    the original ran with) is set explicitly.
    """
    from sklearn.cluster import KMeans

    n_labels = len(np.unique(_as_labels(y_true)))
    return KMeans(n_clusters=max(int(num_components), n_labels), random_state=seed, n_init=n_init)


def kmeans_labels(features, num_components: int, y_true, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Cluster ``features`` [N, D] with :func:`make_kmeans`; returns the predicted cluster ids [N]."""
    features = _as_2d(features, "features")
    return make_kmeans(num_components, y_true, seed=seed, n_init=n_init).fit_predict(features)


# --------------------------------------------------------------------------------------------------
# Mode coverage and reverse KL
# --------------------------------------------------------------------------------------------------


def modes_and_reverse_kl(predicted_classes, num_classes: int, *, base: float = 10.0) -> tuple[int, float]:
    """Modes covered and KL(p_hat || uniform) of predicted classes (selfcond §7.4; Stacked MNIST, CIFAR).

        modes = #{c : predicted at least once},   KL = sum_c p_hat_c log_base(p_hat_c C)

    Args:
        predicted_classes: [N] integer class predictions in [0, C).
        num_classes: C (1000 for Stacked MNIST, 10 for CIFAR).
        base: logarithm base; the original uses 10 (PacGAN's convention).

    Returns:
        (modes, reverse KL).
    """
    pred = _as_labels(predicted_classes).astype(np.int64)
    if pred.size == 0:
        raise ValueError("predicted_classes: empty")
    if pred.min() < 0 or pred.max() >= num_classes:
        raise ValueError(f"predicted_classes: expected values in [0, {num_classes}), got {pred.min()}..{pred.max()}")
    p_hat = np.bincount(pred, minlength=num_classes) / pred.size
    nz = p_hat[p_hat > 0]
    return int(nz.size), float(np.sum(nz * np.log(nz * num_classes)) / math.log(base))


def mixture_2d_metrics(points, means, threshold) -> tuple[float, int, float]:
    """Quality, modes and reverse KL of 2-D samples against a mixture of known means (selfcond §7.7).

    - High quality: |x - mu| < threshold in every coordinate for some mean mu (a box test). The point
      counts for the first such mean in order.
    - Modes: the number of means that received at least one high-quality point.
    - Reverse KL: every point goes to its Euclidean-nearest mean (first on ties), q_k the fractions,
      KL = sum_{q_k > 0} q_k ln(K q_k), natural log.

    Args:
        points: [N, 2] samples. means: [K, 2]. threshold: scalar or [2] (3 sigma in the original).

    Returns:
        (fraction of high-quality points, modes, reverse KL).
    """
    points = _as_2d(points, "points")
    means = _as_2d(means, "means")
    diff = np.abs(points[:, None, :] - means[None, :, :])  # [N, K, 2]
    inside = np.all(diff < np.asarray(threshold, dtype=np.float64), axis=2)  # [N, K]
    good = inside.any(axis=1)
    first_box = np.argmax(inside, axis=1)
    modes = int(np.unique(first_box[good]).size)
    nearest = np.argmin(np.linalg.norm(diff, axis=2), axis=1)
    q = np.bincount(nearest, minlength=len(means)) / len(points)
    nz = q[q > 0]
    return float(good.mean()), modes, float(np.sum(nz * np.log(len(means) * nz)))


def ring_means(n_modes: int = 8, radius: float = 2.0) -> np.ndarray:
    """The 2-D ring's means (radius sin t, radius cos t), t = 2 pi k / n: (0, 2), (sqrt2, sqrt2), (2, 0), ..."""
    theta = np.linspace(0, 2 * np.pi, n_modes + 1)[:n_modes]
    return np.stack([radius * np.sin(theta), radius * np.cos(theta)], axis=1)


def grid_means(nrows: int = 5, ncols: int = 5) -> np.ndarray:
    """The 2-D grid's means (2i - 4, 2j - 4), index 5i + j."""
    return np.array([[2.0 * i - 4, 2.0 * j - 4] for i in range(nrows) for j in range(ncols)])


def ring_2d_metrics(points, var: float = 1e-4) -> tuple[float, int, float]:
    """:func:`mixture_2d_metrics` on the 8-mode ring with the original's 3-sigma box (sigma = 0.01)."""
    return mixture_2d_metrics(points, ring_means(), 3 * math.sqrt(var))


def grid_2d_metrics(points, var: float = 0.0025) -> tuple[float, int, float]:
    """:func:`mixture_2d_metrics` on the 5x5 grid with the original's 3-sigma box (sigma = 0.05)."""
    return mixture_2d_metrics(points, grid_means(), 3 * math.sqrt(var))


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _as_2d(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array [N, F], got shape {arr.shape}")
    return arr


def _as_labels(values) -> np.ndarray:
    """[N] labels from [N], [N, 1] or one-hot [N, C] input."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] > 1:
        arr = arr.argmax(axis=1)  # one-hot labels (SLOGAN keeps them one-hot)
    return arr.reshape(-1)
