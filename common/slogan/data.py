"""Data of the synthetic SLOGAN experiment (spec §3.1) and a checkpointable shuffled stream.

The mixture: 8 isotropic 2-D Gaussians (std 0.1) with weights 1/16 and 3/16 alternating, 80 000 points,
drawn with NumPy's legacy RNG in the original's call order, min-max scaled per feature to exactly [-1, 1]
(sklearn ``MinMaxScaler((-1, 1))`` fitted on the draw), cast to float32 and permuted. The original builds
it twice from one RNG seeded with 0: first the training stream, then the evaluation ("10k") stream.

The original feeds each array through ``tf.data``: repeat -> prefetch -> shuffle(100 000) -> batch.
:class:`ShuffledStream` is the same process (a 100 000-slot buffer over the repeated example indices;
each output is a uniform pick from the buffer, whose slot takes the next element of the stream) with its
state in a few variables. A ``tf.data`` iterator would checkpoint its buffer element by element (about
40 MB and seconds per save here); this one is 400 KB and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

SQRT2 = math.sqrt(2.0)
SYNTHETIC_MEANS = np.array(
    [[2, 0], [-2, 0], [0, 2], [0, -2], [SQRT2, SQRT2], [-SQRT2, -SQRT2], [SQRT2, -SQRT2], [-SQRT2, SQRT2]]
)
SYNTHETIC_WEIGHTS = np.array([1, 3, 1, 3, 1, 3, 1, 3]) / 16.0
SYNTHETIC_TOTAL = 80_000
SYNTHETIC_STD = 0.1
SHUFFLE_BUFFER = 100_000


@dataclasses.dataclass(frozen=True)
class SyntheticMixture:
    """One build of the synthetic data set.

    Attributes:
        data: [80000, 2] float32 in [-1, 1], shuffled (what the original trains on).
        classes: [80000] int, the component of each point (same order as ``data``).
        raw: [80000, 2] float64, the draw before scaling, in generation order (component 0 first).
        raw_min, raw_max: [2], the scaler's fitted per-feature minimum and maximum.
    """

    data: np.ndarray
    classes: np.ndarray
    raw: np.ndarray
    raw_min: np.ndarray
    raw_max: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """[80000, 8] float32 one-hot labels."""
        return np.eye(len(SYNTHETIC_WEIGHTS), dtype=np.float32)[self.classes]

    def scale(self, points) -> np.ndarray:
        """Map raw-space points [N, 2] to the scaled space of ``data`` (e.g. the mode centres)."""
        return (np.asarray(points) - self.raw_min) / (self.raw_max - self.raw_min) * 2.0 - 1.0

    @property
    def scaled_means(self) -> np.ndarray:
        """[8, 2] the component means in the scaled space."""
        return self.scale(SYNTHETIC_MEANS)


def build_synthetic_mixture(rng: np.random.RandomState) -> SyntheticMixture:
    """One build of the 8-Gaussian mixture from a legacy NumPy RNG (consumes it like the original).

    Calls, in order: ``rng.multivariate_normal`` per component (means and weights above, covariance
    0.01 I, int(80000·w) points), a min-max scaling to [-1, 1] per feature fitted on the stacked draw,
    ``astype(float32)``, then ``rng.shuffle`` of ``arange(80000)``.
    """
    parts, classes = [], []
    for c, (mean, weight) in enumerate(zip(SYNTHETIC_MEANS, SYNTHETIC_WEIGHTS)):
        count = int(SYNTHETIC_TOTAL * weight)
        parts.append(rng.multivariate_normal(list(mean), SYNTHETIC_STD**2 * np.eye(2), count))
        classes.append(np.full(count, c))
    raw = np.vstack(parts)
    classes = np.concatenate(classes)
    from sklearn.preprocessing import MinMaxScaler

    data = MinMaxScaler((-1, 1)).fit_transform(raw).astype("float32")
    perm = np.arange(SYNTHETIC_TOTAL)
    rng.shuffle(perm)
    return SyntheticMixture(
        data=data[perm], classes=classes[perm], raw=raw, raw_min=raw.min(axis=0), raw_max=raw.max(axis=0)
    )


def build_synthetic_streams(seed: int = 0) -> tuple[SyntheticMixture, SyntheticMixture]:
    """The original's two builds from one legacy RNG seeded with ``seed``: (train, evaluation)."""
    rng = np.random.RandomState(seed)
    train = build_synthetic_mixture(rng)
    evaluation = build_synthetic_mixture(rng)
    return train, evaluation


class ShuffledStream(tf.Module):
    """Batches of example indices from repeat -> shuffle(buffer) -> batch, with checkpointable state.

    The buffer starts with the first ``buffer_size`` elements of the repeated index sequence
    (i mod N). Each output element is a uniformly chosen slot, which is then refilled with the next
    element of the sequence. A batch of b picks is computed at once: output k is the element written
    into its slot by the latest earlier pick of the same slot in this batch, or the buffer content.

    Args:
        num_examples: N.
        batch_size: b.
        seed: seed of the stream's own ``tf.random.Generator``.
        buffer_size: shuffle buffer (100 000 in the original).
        chunk: picks resolved together (memory is chunk² booleans).
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, buffer_size: int = SHUFFLE_BUFFER,
                 chunk: int = 1024, name: str | None = None):
        super().__init__(name=name)
        self.num_examples = int(num_examples)
        self.batch_size = int(batch_size)
        self.chunk = int(chunk)
        self.buffer_size = int(buffer_size)
        self.buffer = tf.Variable(tf.range(self.buffer_size, dtype=tf.int32) % self.num_examples, name="buffer")
        self.position = tf.Variable(tf.constant(self.buffer_size, tf.int64), name="position")
        self.generator = tf.random.Generator.from_seed(seed, alg="philox")

    def next_indices(self) -> tf.Tensor:
        """The next batch of indices, [batch_size] int32."""
        pieces = []
        remaining = self.batch_size
        while remaining > 0:
            size = min(self.chunk, remaining)
            pieces.append(self._picks(size))
            remaining -= size
        return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=0)

    def _picks(self, size: int) -> tf.Tensor:
        slots = self.generator.uniform([size], minval=0, maxval=self.buffer_size, dtype=tf.int64)
        order = tf.range(size, dtype=tf.int64)
        same = tf.equal(slots[:, None], slots[None, :])  # [k, m]
        earlier = same & (order[None, :] < order[:, None])  # pick m < k hit the slot of pick k
        later = same & (order[None, :] > order[:, None])  # pick m > k overwrites what pick k wrote
        last_writer = tf.reduce_max(tf.where(earlier, order[None, :], -1), axis=1)
        incoming = tf.cast((self.position + order) % self.num_examples, tf.int32)  # element written by pick m
        current = tf.gather(self.buffer, slots)
        out = tf.where(last_writer >= 0, tf.gather(incoming, tf.maximum(last_writer, 0)), current)
        final = tf.logical_not(tf.reduce_any(later, axis=1))
        self.buffer.scatter_nd_update(tf.boolean_mask(slots, final)[:, None], tf.boolean_mask(incoming, final))
        self.position.assign_add(size)
        return out
