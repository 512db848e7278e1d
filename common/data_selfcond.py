"""The Self-Conditioned GAN's data (selfcond.md §4): 2-D ring/grid mixtures, Stacked MNIST, image pipelines.

Random draws use the same generators as the original, in the same order: Python's ``random`` for label
shuffles, grid cells and Stacked-MNIST index triples, NumPy's legacy RNG for multinomial counts and Gaussian
noise. Pass ``py_rng=random.Random(s)`` / ``np_rng=np.random.RandomState(s)`` for seeded draws; the defaults
are the global generators (the original is unseeded).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np

from common.errors import UsageError

STACKED_MNIST_SIZE = 100000


# ------------------------------------------------------------------------------------------- 2-D mixtures


def ring_means(n_clusters: int = 8, radius: float = 2.0) -> np.ndarray:
    """float64 [K, 2]: (r·sin θ_k, r·cos θ_k), θ_k = 2πk/K, so k = 0 is (0, r)."""
    thetas = np.linspace(0, 2 * np.pi, n_clusters + 1)[:n_clusters]
    return np.stack([radius * np.sin(thetas), radius * np.cos(thetas)], axis=1)


def grid_means(nrows: int = 5, ncols: int = 5) -> np.ndarray:
    """float64 [25, 2]: row 5i + j is (2i − 4, 2j − 4) (i = x index), the label of that cell."""
    return np.array([[2 * i - 4, 2 * j - 4] for i in range(ncols) for j in range(nrows)], dtype=np.float64)


def _gaussian_noise(np_rng, n: int, var: float) -> np.ndarray:
    """n draws of ``multivariate_normal(0, var·I₂)``: one [n, 2] standard-normal draw consumes the legacy
    stream like n single draws, and the SVD of var·I₂ is (I, var, I), so the rows are z·√var exactly."""
    _, s, vh = np.linalg.svd(np.array([[var, 0.0], [0.0, var]]))
    return np_rng.standard_normal((n, 2)) @ (np.sqrt(s)[:, None] * vh)


def ring_mixture(n: int, radius: float = 2.0, var: float = 0.0001, n_clusters: int = 8, *, np_rng=None,
                 py_rng=None) -> tuple[np.ndarray, np.ndarray]:
    """``get_data_ring``: multinomial(n, uniform) component counts, labels listed by component and shuffled
    with Python's ``random.shuffle``, then one Gaussian draw (variance ``var`` per coordinate) per point.

    Returns:
        points float64 [n, 2], labels int64 [n] in 0..K−1.
    """
    np_rng = np.random if np_rng is None else np_rng
    py_rng = random if py_rng is None else py_rng
    counts = np_rng.multinomial(n, [1.0 / n_clusters] * n_clusters)
    labels = [k for k in range(n_clusters) for _ in range(counts[k])]
    py_rng.shuffle(labels)
    labels = np.asarray(labels, dtype=np.int64)
    return ring_means(n_clusters, radius)[labels] + _gaussian_noise(np_rng, n, var), labels


def grid_mixture(n: int, var: float = 0.0025, nrows: int = 5, ncols: int = 5, *, np_rng=None,
                 py_rng=None) -> tuple[np.ndarray, np.ndarray]:
    """``get_data_grid``: per point, i then j uniform with Python's ``random.randint``, then one Gaussian draw
    around (2i − 4, 2j − 4); the label is 5i + j.

    Returns:
        points float64 [n, 2], labels int64 [n] in 0..24.
    """
    np_rng = np.random if np_rng is None else np_rng
    py_rng = random if py_rng is None else py_rng
    cells = np.array([(py_rng.randint(0, ncols - 1), py_rng.randint(0, nrows - 1)) for _ in range(n)],
                     dtype=np.int64).reshape(n, 2)
    labels = 5 * cells[:, 0] + cells[:, 1]
    return (2 * cells - 4).astype(np.float64) + _gaussian_noise(np_rng, n, var), labels


# -------------------------------------------------------------------------------------------- Stacked MNIST


def resize_digits(digits: np.ndarray, size: int = 32) -> np.ndarray:
    """uint8 [N, 28, 28] -> uint8 [N, size, size] with PIL bilinear (torchvision ``Resize`` on PIL images)."""
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(d).resize((size, size), Image.BILINEAR)) for d in digits])


@dataclasses.dataclass(frozen=True)
class StackedMNIST:
    """Stacked MNIST (selfcond.md §4.2): item k stacks digits (i1, i2, i3) of the MNIST training set as channels.

    Attributes:
        digits: uint8 [60000, 32, 32], the training digits resized 28 → 32.
        triples: int64 [100000, 3], fixed index triples.
        labels: int64 [100000] = 100·y(i1) + 10·y(i2) + y(i3), in 0..999.
    """

    digits: np.ndarray
    triples: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.triples)

    def images(self, index) -> np.ndarray:
        """float32 [k, 32, 32, 3] in [−1, 1] (x/127.5 − 1, no flip, no noise) of items ``index``."""
        stacked = self.digits[self.triples[np.asarray(index)]]  # [k, 3, 32, 32]
        return np.moveaxis(stacked, -3, -1).astype(np.float32) / 127.5 - 1.0


def make_stacked_mnist(x_train: np.ndarray, y_train: np.ndarray, size: int = STACKED_MNIST_SIZE,
                       py_rng=None) -> StackedMNIST:
    """Draw the ``size`` index triples as the original: for k in order, three ``randint(0, N−1)`` calls."""
    if len(x_train) != len(y_train) or len(x_train) == 0:
        raise UsageError(f"Stacked MNIST needs labelled digits, got {len(x_train)} images and {len(y_train)} labels")
    py_rng = random if py_rng is None else py_rng
    last = len(x_train) - 1
    triples = np.array([(py_rng.randint(0, last), py_rng.randint(0, last), py_rng.randint(0, last))
                        for _ in range(size)], dtype=np.int64).reshape(size, 3)
    y = np.asarray(y_train, dtype=np.int64)
    labels = 100 * y[triples[:, 0]] + 10 * y[triples[:, 1]] + y[triples[:, 2]]
    return StackedMNIST(resize_digits(np.asarray(x_train, dtype=np.uint8)), triples, labels)


def stacked_mnist_dataset(stacked: StackedMNIST, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                          repeat: bool = False, drop_remainder: bool = True):
    """tf.data of (images float32 [B, 32, 32, 3] in [−1, 1], labels int32 [B] in 0..999), reshuffled each epoch.

    The digits table is one constant; each batch gathers its three channels in parallel.
    """
    import tensorflow as tf

    digits = tf.constant(stacked.digits)
    triples = tf.constant(stacked.triples)
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(stacked)), stacked.labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(len(stacked), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()

    def gather(index, label):
        image = tf.transpose(tf.gather(digits, tf.gather(triples, index)), [0, 2, 3, 1])
        return tf.cast(image, tf.float32) / 127.5 - 1.0, label

    return ds.batch(batch_size, drop_remainder=drop_remainder).map(gather, num_parallel_calls=tf.data.AUTOTUNE) \
        .prefetch(tf.data.AUTOTUNE)


def load_stacked_mnist(cache_dir=None, size: int = STACKED_MNIST_SIZE, py_rng=None) -> StackedMNIST:
    """:func:`make_stacked_mnist` on the MNIST training set of the cache (``download.py --datasets MNIST``)."""
    from common.datasets import load_mnist

    (x_train, y_train), _ = load_mnist(cache_dir)
    return make_stacked_mnist(x_train, y_train, size, py_rng)


# ------------------------------------------------------------------------------------------- image pipeline


def selfcond_image_dataset(source, labels=None, *, img_size: int, batch_size: int, deterministic: bool = False,
                           seed: int = 0, repeat: bool = False):
    """The generic pipeline of selfcond.md §4.1 for ``cifar10`` / ``image`` data.

    Resize (shorter side) + centre crop to ``img_size``; unless ``deterministic``: random horizontal flip and
    dequantisation noise U[0, 1)/128 after the map to [−1, 1]. Shuffled each epoch, ``drop_last``.

    Args:
        source: uint8 [N, H, W, 3] array (see :func:`selfcond_cifar10`) or an image-folder path.

    Returns:
        tf.data of (float32 [B, S, S, 3] in [−1, 1 + 1/128), int32 [B] labels).
    """
    from common.data_pipelines import image_dataset

    return image_dataset(source, labels, batch_size=batch_size, image_size=img_size, crop=True,
                         flip=not deterministic, noise=0.0 if deterministic else 1.0 / 128.0, seed=seed,
                         repeat=repeat, drop_remainder=True)


def selfcond_cifar10(cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """The 50000 CIFAR-10 training images (uint8 [50000, 32, 32, 3]) and labels (int64 [50000], 0..9)."""
    from common.datasets import load_cifar10

    (x_train, y_train), _ = load_cifar10(cache_dir)
    return x_train, y_train.reshape(-1).astype(np.int64)
