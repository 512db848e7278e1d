"""SLOGAN's data (slogan.md §3): the imbalanced 8-Gaussian synthetic set, CIFAR-2, real-image augmentation.

Both builders call NumPy's legacy RNG functions in the original's order, so with ``np.random.seed(s)`` (the
original seeds the global RNG: 0 for the synthetic script, ``--random_seed`` for CIFAR-2) they reproduce the
original arrays exactly. Each call is a fresh draw: the original builds the synthetic set twice (train, then
the 10k evaluation stream) and CIFAR-2 four times (train, test, 10k, 50k), consuming the RNG in sequence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from common.errors import UsageError

SYNTHETIC_MEANS = np.array([[2, 0], [-2, 0], [0, 2], [0, -2], [np.sqrt(2), np.sqrt(2)], [-np.sqrt(2), -np.sqrt(2)],
                            [np.sqrt(2), -np.sqrt(2)], [-np.sqrt(2), np.sqrt(2)]], dtype=np.float64)
SYNTHETIC_WEIGHTS = (1 / 16, 3 / 16, 1 / 16, 3 / 16, 1 / 16, 3 / 16, 1 / 16, 3 / 16)
SYNTHETIC_SIZE = 80000
SYNTHETIC_VARIANCE = 0.01  # covariance 0.01·I, std 0.1


@dataclasses.dataclass(frozen=True)
class SyntheticMixture:
    """One draw of the synthetic set.

    Attributes:
        points: float32 [80000, 2], each coordinate min-max scaled to exactly [−1, 1], shuffled.
        labels: float64 [80000, 8] one-hot component labels (same order as ``points``).
        raw: float64 [80000, 2] the points before scaling (same order).
        scaler_min, scaler_max: float64 [2] per-coordinate min and max of ``raw`` that the scaler fitted.
    """

    points: np.ndarray
    labels: np.ndarray
    raw: np.ndarray
    scaler_min: np.ndarray
    scaler_max: np.ndarray


def make_slogan_synthetic(rng: np.random.RandomState | None = None) -> SyntheticMixture:
    """Draw SLOGAN's synthetic set (slogan.md §3.1, ``get_toy_dataset``).

    Components 0..7 in order, int(80000·w_c) points each from N(mean_c, 0.01·I) via ``multivariate_normal``
    (5000 / 15000 alternately), stacked; sklearn ``MinMaxScaler((-1, 1))`` fitted on this draw; float32; then
    one ``shuffle`` of ``arange(80000)``.

    Args:
        rng: a ``np.random.RandomState``; default the legacy global RNG (``np.random``), as the original.
    """
    from sklearn.preprocessing import MinMaxScaler

    rng = np.random if rng is None else rng
    counts = [int(SYNTHETIC_SIZE * w) for w in SYNTHETIC_WEIGHTS]
    raw = np.concatenate([rng.multivariate_normal(SYNTHETIC_MEANS[c], SYNTHETIC_VARIANCE * np.eye(2), n)
                          for c, n in enumerate(counts)])
    labels = np.concatenate([np.tile(np.eye(8)[c], [n, 1]) for c, n in enumerate(counts)])
    scaler = MinMaxScaler((-1, 1))
    points = scaler.fit_transform(raw).astype("float32")
    perm = np.arange(len(points))
    rng.shuffle(perm)
    return SyntheticMixture(points[perm], labels[perm], raw[perm], scaler.data_min_, scaler.data_max_)


def cifar2_counts(ratio_plane: float, n_plane: int = 6000, n_frog: int = 6000) -> tuple[int, int]:
    """(planes kept, frogs kept) for ``--ratio_plane`` r: r < 5 keeps int(n·r/(10−r)) planes, r > 5 keeps
    int(n·(10−r)/r) frogs (slogan.md §3.2)."""
    if ratio_plane < 5:
        return int(n_plane * (ratio_plane / (10.0 - ratio_plane))), n_frog
    if ratio_plane > 5:
        return n_plane, int(n_frog * ((10.0 - ratio_plane) / ratio_plane))
    return n_plane, n_frog


def make_cifar2(ratio_plane: float = 3, num_cluster: int = 2, *, load_cifar10: Callable | None = None,
                rng: np.random.RandomState | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Build CIFAR-2 (planes vs frogs) exactly as ``get_cifar10_dataset`` (slogan.md §3.2).

    CIFAR-10 train + test are concatenated, pixels become float32 uint8/256, classes 0 (airplane) and 6 (frog)
    are kept with frog relabelled 1, the kept images are permuted (``shuffle`` of an index array), then planes
    (r < 5) or frogs (r > 5) are dropped with ``choice(..., replace=False)`` to reach the r : (10 − r) ratio.
    Real CIFAR-10 sizes: r=3 → 2571/6000/8571, r=5 → 6000/6000/12000, r=7 → 6000/2571/8571.

    Args:
        ratio_plane: r, planes per 10 images (``--ratio_plane``, a float).
        num_cluster: K, the width of the one-hot labels (≥ 2).
        load_cifar10: callable returning ``((x_train, y_train), (x_test, y_test))`` like
            ``keras.datasets.cifar10.load_data`` (default: :func:`common.datasets.load_cifar10`, the cache).
        rng: a ``np.random.RandomState``; default the legacy global RNG, as the original.

    Returns:
        images: float32 [N, 32, 32, 3] in [0, 255/256].
        labels: float64 [N, num_cluster] one-hot; column 0 = plane, 1 = frog.
    """
    if num_cluster < 2:
        raise UsageError(f"--num_cluster {num_cluster}: CIFAR-2 needs at least 2 (labels 0 and 1 are one-hot)")
    if load_cifar10 is None:
        from common.datasets import load_cifar10
    rng = np.random if rng is None else rng
    (x_train, y_train), (x_test, y_test) = load_cifar10()
    labels = np.concatenate([y_train, y_test], axis=0).reshape(-1)
    # The original converts all images to float, then selects, permutes and deletes rows. Doing the same
    # selections on an index array and converting the chosen uint8 rows once at the end gives identical
    # arrays and the same RNG calls, without four copies of ~150 MB float images.
    source = np.where((labels == 0) | (labels == 6))[0]
    labels = labels[source].astype(np.int64)
    labels[labels == 6] = 1
    perm = np.arange(len(source))
    rng.shuffle(perm)
    source, labels = source[perm], labels[perm]
    if ratio_plane != 5:
        cls = 0 if ratio_plane < 5 else 1
        index = np.where(labels == cls)[0]
        kept = cifar2_counts(ratio_plane, len(index), len(index))[cls]
        drop = rng.choice(index, size=len(index) - kept, replace=False)
        source, labels = np.delete(source, drop), np.delete(labels, drop)
    images = np.empty((len(source), 32, 32, 3), np.float32)
    in_train = source < len(x_train)
    images[in_train] = x_train[source[in_train]]
    images[~in_train] = x_test[source[~in_train] - len(x_train)]
    images /= 256.0  # exact in float32, as the original's float32 array / 256.0
    return images, np.eye(num_cluster)[labels]


def slogan_augment(images, seed):
    """SLOGAN's real-image preprocessing (slogan.md §3.3), applied per batch.

    Each image is flipped left-right when its U[0, 1) draw is ≥ 0.5 (kept when < 0.5, as the original's
    ``tf.where(mask < 0.5, x, reverse(x))``), U[0, 1/256) noise is added to every value, then
    x ↦ (x − 0.5)·2.

    Args:
        images: float32 [B, H, W, C] in [0, 255/256] (CIFAR-2 pixels).
        seed: int tensor [2], the stateless seed of this batch.

    Returns:
        float32 [B, H, W, C] in [−1, 1).
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images, tf.float32)
    keys = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    mask = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], keys[0])
    images = tf.where(mask < 0.5, images, tf.reverse(images, axis=[2]))
    images = images + tf.random.stateless_uniform(tf.shape(images), keys[1], 0.0, 1.0 / 256.0)
    return (images - 0.5) * 2.0


def cifar2_stream(images: np.ndarray, labels: np.ndarray, batch_size: int, *, seed: int = 0, augment: bool = True,
                  buffer_size: int = 100_000):
    """The original's CIFAR-2 pipeline: repeat → prefetch → shuffle(100 000) → batch, then
    :func:`slogan_augment` with a per-batch seed derived from ``seed`` and the batch index.

    Returns:
        Endless ``tf.data.Dataset`` of (images float32 [B, 32, 32, 3] in [−1, 1), labels float64 [B, K]).
    """
    import tensorflow as tf

    from common.data_pipelines import repeat_shuffle_batch

    stream = repeat_shuffle_batch((images, labels), batch_size, seed=seed, buffer_size=buffer_size)
    if not augment:
        return stream
    return stream.enumerate().map(
        lambda i, batch: (slogan_augment(batch[0], tf.stack([tf.constant(seed, tf.int64), i])), batch[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
