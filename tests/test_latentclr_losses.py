"""LatentCLR contrastive loss (spec §1.3, §4; acceptance checks 9-13) against hand values and NumPy."""

import numpy as np
import pytest

from latentclr.losses import contrastive_loss


def numpy_loss(features, k, temp=0.5, use_abs=True, reduce="mean", divide_by_temp=False):
    """Straight transcription of the original's masked_select formulation."""
    f = np.asarray(features, np.float64)
    n = len(f)
    sim = f @ f.T
    if use_abs:
        sim = np.abs(sim)
    sim = np.exp(sim / temp if divide_by_temp else sim * temp)
    block = np.arange(n) // (n // k)
    same = block[:, None] == block[None, :]
    pos = np.stack([sim[r][same[r] & (np.arange(n) != r)] for r in range(n)])
    neg = np.stack([sim[r][~same[r]] for r in range(n)])
    agg = np.mean if reduce == "mean" else np.sum
    p, q = agg(pos, axis=1), agg(neg, axis=1)
    return float(np.mean(p > q)), float(-np.mean(np.log(p / q)))


def run(features, k, **kw):
    acc, loss = contrastive_loss(np.asarray(features, np.float32), k, **kw)
    return float(acc), float(loss)


def test_perfect_separation():
    e = np.eye(3)
    acc, loss = run([e[0], e[0], e[1], e[1]], 2)
    np.testing.assert_allclose([acc, loss], [1.0, -0.5], atol=1e-6)
    rows = [e[0], e[0], e[1], e[1], e[2], e[2]]
    np.testing.assert_allclose(run(rows, 3)[1], -0.5, atol=1e-6)
    np.testing.assert_allclose(run(rows, 3, reduce="sum")[1], np.log(4) - 0.5, atol=1e-6)


def test_identical_rows():
    row = np.array([1.0, 1.0]) / np.sqrt(2)
    np.testing.assert_allclose(run([row] * 4, 2), [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("kw, acc, loss", [
    ({}, 1.0, -0.0801319282),
    ({"reduce": "sum"}, 0.0, 0.6130152524),
    ({"use_abs": False}, 0.5, 0.2198680718),
    ({"use_abs": False, "reduce": "sum"}, 0.0, 0.9130152524),
    ({"divide_by_temp": True}, 1.0, -0.1092464397),
])
def test_hand_example(kw, acc, loss):
    rows = [[1, 0], [0.6, 0.8], [0, 1], [0.8, -0.6]]
    got = run(rows, 2, **kw)
    np.testing.assert_allclose(got, [acc, loss], atol=1e-7)


def test_random_reference_values():
    r = np.random.RandomState(0).randn(12, 5)
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    np.testing.assert_allclose(run(r, 3), [0.5, 0.0170344783], atol=1e-7)
    np.testing.assert_allclose(run(r, 4), [5 / 12, -0.0157561038], atol=1e-7)
    np.testing.assert_allclose(run(r, 3, reduce="sum")[1], 0.9978637313, atol=1e-7)


@pytest.mark.parametrize("k, n", [(2, 3), (4, 5), (3, 2)])
def test_invariants_and_numpy_reference(k, n):
    rng = np.random.RandomState(k * 10 + n)
    f = rng.randn(k * n, 7)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    mean, total = run(f, k), run(f, k, reduce="sum")
    np.testing.assert_allclose(total[1] - mean[1], np.log(n * (k - 1) / (n - 1)), atol=1e-5)
    assert -0.5 <= mean[1] <= 0.5
    for kw in ({}, {"use_abs": False}, {"reduce": "sum"}, {"divide_by_temp": True, "temp": 0.3}):
        np.testing.assert_allclose(run(f, k, **kw), numpy_loss(f, k, **kw), atol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="k=4"):
        contrastive_loss(np.ones((6, 2), np.float32), 4)
    with pytest.raises(ValueError, match="mean and sum"):
        contrastive_loss(np.ones((4, 2), np.float32), 2, reduce="max")
