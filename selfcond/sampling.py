"""Loading a trained run for evaluation, and the original's reproducible ``SeededSampler`` (spec §7.1).

Every evaluation image i has an integer seed s_i (Python ``random.randint(0, 10^8)``); a NumPy legacy
``RandomState(s_i)`` then draws z = standard_normal(z_dim) and **from the same stream** the label
y = choice(n_labels, 1, replace=False, p). The label distribution p is the clusterer's: empirical cluster
sizes of the clustering sample for k-means clusterers, uniform over K for ``random_labels``, uniform over
G's labels for ``supervised``. Samples come from the EMA generator when ``take_model_average``, in
inference mode, and are returned in [-1, 1].
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from selfcond.trainer import RunState, checkpoint_prefix, clustering_size, saved_iterations


def out_dir_of(config: dict) -> Path:
    return Path(config["training"]["out_dir"])


def resolve_iteration(config: dict, it) -> int | str:
    """``it`` if given (an int or ``"pretrained"``), else the newest saved iteration of the run."""
    if it is not None and it != -1:
        return it
    its = saved_iterations(out_dir_of(config))
    if not its and config.get("pretrained"):
        return "pretrained"
    if not its:
        raise UsageError(f"{out_dir_of(config)}/chkpts: no model_XXXXXXXX checkpoint; train the config first")
    return its[-1]


def checkpoint_for(config: dict, it) -> Path:
    """The checkpoint prefix of iteration ``it`` (or of ``pretrained.model`` for ``"pretrained"``)."""
    if it == "pretrained":
        model = str(config.get("pretrained", {}).get("model", ""))
        if model.startswith(("http://", "https://")) or model.endswith(".pt"):
            raise UsageError(f"pretrained.model {model!r}: a PyTorch checkpoint of the original; the port reads "
                             "TensorFlow checkpoints only (set pretrained.model to a converted checkpoint prefix)")
        prefix = Path(model)
    else:
        prefix = checkpoint_prefix(out_dir_of(config), int(it))
    if not Path(str(prefix) + ".index").exists():
        raise UsageError(f"{prefix}: no checkpoint (expected {prefix}.index)")
    return prefix


def load_run(config: dict, it=None) -> tuple[RunState, int | str]:
    """A :class:`RunState` with the weights and clusterer of iteration ``it`` (newest when None or -1)."""
    it = resolve_iteration(config, it)
    prefix = checkpoint_for(config, it)
    state = RunState(config, seed=0, n_cluster=clustering_size(prefix))
    state.restore(prefix, partial=True)
    return state, it


class SeededSampler:
    """Reproducible samples of a loaded run (the original's ``SeededSampler`` + ``YZDataset``).

    Args:
        state: a loaded :class:`RunState`.
        seed: seeds the per-image seeds (the original draws them from unseeded Python ``random``;
            None keeps that).
    """

    def __init__(self, state: RunState, seed: int | None = None):
        self.generator = state.sampler_generator
        self.z_dim = int(state.config["z_dist"]["dim"])
        self.probs = state.clusterer.sampling_distribution(int(self.generator.nlabels))
        self.seeds = random.Random(seed) if seed is not None else random.Random()
        self._run = tf.function(lambda z, y: self.generator(z, y, training=False), reduce_retracing=True)

    def zy(self, seeds) -> tuple[np.ndarray, np.ndarray]:
        """z [n, z_dim] float32 and labels [n] int32 for integer seeds (``YZDataset.__call__``)."""
        zs, ys = [], []
        for s in seeds:
            rng = np.random.RandomState(int(s))
            zs.append(rng.standard_normal(self.z_dim))
            ys.append(rng.choice(len(self.probs), 1, replace=False, p=self.probs)[0])
        return np.asarray(zs, np.float32), np.asarray(ys, np.int32)

    def sample(self, n: int) -> tuple[np.ndarray, list[int]]:
        """n images [n, H, W, C] in [-1, 1] and their seeds."""
        seeds = [self.seeds.randint(0, int(1e8)) for _ in range(n)]
        z, y = self.zy(seeds)
        return self._run(z, y).numpy(), seeds

    def conditional_sample(self, label: int, seed: int | None = None) -> np.ndarray:
        """One image [1, H, W, C] with z from ``RandomState(seed)`` and the label fixed."""
        seed = self.seeds.randint(0, int(1e8)) if seed is None else seed
        z = np.random.RandomState(seed).standard_normal(self.z_dim).astype(np.float32)[None]
        return self._run(z, np.array([label], np.int32)).numpy()


def to_0_255(images: np.ndarray) -> np.ndarray:
    """[-1, 1] -> float32 [0, 255]: 255 (x/2 + 0.5), clamped, **not** rounded (the original's samples)."""
    return np.clip((np.asarray(images, np.float32) * 0.5 + 0.5) * 255.0, 0.0, 255.0)


def draw_samples(sampler: SeededSampler, n: int, batch_size: int = 100) -> np.ndarray:
    """n samples as float32 NHWC in [0, 255]: ``n // batch_size + 1`` batches, truncated (metrics.py)."""
    out = [to_0_255(sampler.sample(batch_size)[0]) for _ in range(n // batch_size + 1)]
    return np.concatenate(out)[:n]
