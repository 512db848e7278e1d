"""The four CIFAR-2 pipelines of ``slogan_cifar2.py`` (spec §3.2, §3.3), with checkpointable state.

The original builds CIFAR-2 four times from the NumPy RNG seeded with ``--random_seed`` (train, test, "10k",
"50k"; each a fresh random subsample of the majority class) and feeds each through repeat -> shuffle(100 000)
-> batch, then augments every batch (random left-right flip, U[0, 1/256) noise, x -> (x - 0.5)·2). There is
no held-out split: evaluation images come from the same pool as training (spec §9 #9).

Here each pipeline is a :class:`RealStream`: the images of its own CIFAR-2 draw (kept as exact uint8 =
256·x), a :class:`common.slogan.data.ShuffledStream` of indices (the same shuffle process, 400 KB of state)
and a batch counter that seeds the stateless augmentation, so a resumed run continues every stream exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf

from common.data_slogan import make_cifar2, slogan_augment
from common.errors import UsageError
from common.slogan.data import SHUFFLE_BUFFER, ShuffledStream

STREAMS = ("train", "test", "10k", "50k")
HELD_OUT = 2000  # the original's dead ``split`` code: the last 2000 images of a build are the test split


class RealStream(tf.Module):
    """One pipeline: shuffled batches of augmented real images.

    Args:
        images: float32 [N, 32, 32, 3] in [0, 255/256] (uint8/256, as :func:`make_cifar2` returns).
        labels: [N, K] one-hot (0 = plane, 1 = frog).
        batch_size: images per batch.
        seed: seed of the shuffle and of the augmentation.
        chunk: largest number of images materialised at once (the 50 000-image batch is 600 MB as float32).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                 buffer_size: int = SHUFFLE_BUFFER, chunk: int = 5000, name: str | None = None):
        super().__init__(name=name)
        self.pixels = np.round(np.asarray(images) * 256.0).astype(np.uint8)  # exact: images are uint8/256
        self.labels = np.asarray(labels).argmax(axis=1)
        self.batch_size, self.seed, self.chunk = int(batch_size), int(seed), int(chunk)
        self.indices = ShuffledStream(len(self.pixels), batch_size, seed=seed, buffer_size=buffer_size)
        self.augmented = tf.Variable(tf.constant(0, tf.int64), name="augmented_chunks")

    @property
    def size(self) -> int:
        return len(self.pixels)

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The next batch in pieces of at most ``chunk`` images: (images [n, 32, 32, 3] in [-1, 1), labels [n])."""
        index = self.indices.next_indices().numpy()
        for start in range(0, len(index), self.chunk):
            part = index[start : start + self.chunk]
            counter = self.augmented.assign_add(1)
            seed = tf.stack([tf.constant(self.seed, tf.int64), counter])
            images = slogan_augment(self.pixels[part].astype(np.float32) / 256.0, seed)
            yield images.numpy(), self.labels[part]

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """The next whole batch: (images [batch, 32, 32, 3] float32 in [-1, 1), labels [batch] int)."""
        parts = list(self.chunks())
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclasses.dataclass
class Cifar2Streams:
    """The original's four pipelines: ``train`` (batch B), ``test`` (val_size), ``fid`` (10k), ``icfid`` (50k)."""

    train: RealStream
    test: RealStream
    fid: RealStream
    icfid: RealStream

    def trackables(self) -> dict:
        return {f"data_{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}


def build_streams(cfg, load_cifar10: Callable | None = None, buffer_size: int = SHUFFLE_BUFFER) -> Cifar2Streams:
    """Build CIFAR-2 four times from one NumPy RNG seeded with ``cfg.random_seed`` and wrap each in a stream.

    Args:
        cfg: needs ``ratio_plane``, ``num_cluster``, ``random_seed``, ``batch_size``, ``val_size``,
            ``fid_size`` (10 000), ``icfid_real_size`` (50 000) and ``fix_eval_split``. With
            ``fix_eval_split`` the training stream keeps all but the last 2000 images of its build and the
            three evaluation streams only those last 2000 (what the original's unused ``split`` argument
            did); by default every stream uses its whole build, as the original ran (spec §9 #9).
        load_cifar10: returns ``((x_train, y_train), (x_test, y_test))`` like ``keras.datasets.cifar10.load_data``
            (default: the cache written by ``download.py``).
    """
    rng = np.random.RandomState(cfg.random_seed)  # the original seeds the global legacy RNG the same way
    if load_cifar10 is None:
        from common.datasets import load_cifar10
    arrays = load_cifar10()  # read once; the original's four loads return the same arrays
    sizes = (cfg.batch_size, cfg.val_size, cfg.fid_size, cfg.icfid_real_size)
    streams = []
    for k, (name, size) in enumerate(zip(STREAMS, sizes)):
        images, labels = make_cifar2(cfg.ratio_plane, cfg.num_cluster, load_cifar10=lambda: arrays, rng=rng)
        if cfg.fix_eval_split:
            if len(images) <= HELD_OUT:
                raise UsageError(f"--fix_eval_split: CIFAR-2 has only {len(images)} images, fewer than the "
                                 f"{HELD_OUT} held out plus a training set")
            part = slice(None, -HELD_OUT) if name == "train" else slice(-HELD_OUT, None)
            images, labels = images[part], labels[part]
        seed = int(np.random.SeedSequence([cfg.random_seed, k]).generate_state(1)[0] >> 1)
        streams.append(RealStream(images, labels, size, seed, buffer_size=buffer_size, name=f"cifar2_{name}"))
    return Cifar2Streams(*streams)
