"""One seed makes a run reproducible.

``set_seed`` seeds Python, NumPy (both the legacy global RNG the originals use and ``keras``'s), and
TensorFlow's global generator. In-graph randomness of the trainers comes from a ``tf.random.Generator``
made by :func:`make_generator`; it lives in the checkpoint, so a resumed run draws the same numbers as an
uninterrupted one.
"""

from __future__ import annotations

import random

import numpy as np


def set_seed(seed: int, deterministic_ops: bool = False) -> None:
    """Seed every global random source; optionally ask TensorFlow for deterministic kernels."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def make_generator(seed: int):
    """A counter-based ``tf.random.Generator`` (Philox) whose state is a checkpointable variable."""
    import tensorflow as tf

    return tf.random.Generator.from_seed(seed, alg="philox")
