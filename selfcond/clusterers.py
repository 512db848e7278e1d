"""The label sources of the Self-Conditioned GAN (spec §1.3, §1.4): who says which "class" an image has.

Registry (``clusterer.name`` in the configs, ``--clusterer`` in 2-D):

============== ============================================================================================
supervised     the dataset's labels y, unchanged (with G/D ``nlabels: 1`` this is the unconditional GAN)
selfcondgan    k-means on the features of a frozen copy of D, re-fitted every ``recluster_every``
               iterations, warm-started from the previous clusters and re-aligned by Hungarian matching
kmeans_fixed   port-only alias: ``selfcondgan`` that clusters once (on the random D) and never again
online         k-means++ once, one warm-started re-fit on the live D ("burn-in"), then MacQueen updates
random_labels  i.i.d. uniform labels in [0, K), drawn anew for every batch
============== ============================================================================================

All state that ``get_labels`` depends on lives in TensorFlow variables of the clusterer (a ``tf.Module``):
the snapshot discriminator's weights, the k-means centers, the label permutation ``mapping``, the labels
``x_labels`` of the clustering sample, the online counts, flags and a random generator. Putting the
clusterer into the run's ``tf.train.Checkpoint`` therefore resumes it exactly. The clustering images
themselves are not in the checkpoint (the original saves them once to ``cluster_samples.npz``).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from common.errors import UsageError

# sklearn KMeans settings of the original (sklearn 0.2x defaults, spec §1.3 step 4).
KMEANS_MAX_ITER = 300
KMEANS_TOL = 1e-4
KMEANS_RESTARTS = 10


class DiscriminatorSnapshot(tf.Module):
    """A frozen deep copy of the discriminator, used in inference mode for clustering features.

    Args:
        build: a function returning a freshly built discriminator of the same configuration; its
            variables are created once (so they can live in a checkpoint) and overwritten by
            :meth:`update`, the port's ``copy.deepcopy(D)``.
    """

    def __init__(self, build):
        super().__init__(name="snapshot")
        self.model = build()

    def update(self, discriminator) -> None:
        from selfcond.layers import copy_weights

        copy_weights(self.model, discriminator)

    def features(self, x):
        """[B, ...] inputs -> [B, F] penultimate features, BN in inference mode."""
        return self.model.features(x, training=False)


class LiveFeatures:
    """Features of the live (training) discriminator, in inference mode (``online`` after burn-in)."""

    def __init__(self, discriminator):
        self.discriminator = discriminator

    def features(self, x):
        return self.discriminator.features(x, training=False)


def initial_centers(features: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Row j = mean of the features whose previous label is j (spec §1.3 step 3).

    A label without images gets a uniformly random feature row: the original's intent (its code for this
    case crashes, spec §10.4).

    Args:
        features: [N, F]. labels: [N] ints in [0, k).

    Returns:
        [k, F] float64 initial centers.
    """
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    sums = np.zeros((k, features.shape[1]))
    np.add.at(sums, labels, features)
    counts = np.bincount(labels, minlength=k)
    centers = sums / np.maximum(counts, 1)[:, None]
    for j in np.flatnonzero(counts == 0):
        centers[j] = features[rng.integers(0, len(features))]
    return centers


def hungarian_mapping(new_labels: np.ndarray, old_labels: np.ndarray, k: int) -> np.ndarray:
    """Permutation aligning new cluster ids with old ones (spec §1.3 step 5).

    M[a, b] = #{i : new_i = a and old_i = b}; the assignment maximising the total overlap is found by
    minimising N - M with the Hungarian algorithm, and ``mapping[a]`` is the old label given to new
    cluster a.

    Returns:
        [k] int64 mapping.
    """
    new_labels, old_labels = np.asarray(new_labels, np.int64), np.asarray(old_labels, np.int64)
    overlap = np.zeros((k, k), np.int64)
    np.add.at(overlap, (new_labels, old_labels), 1)
    rows, cols = linear_sum_assignment(len(old_labels) - overlap)
    mapping = np.empty(k, np.int64)
    mapping[rows] = cols
    return mapping


class Clusterer(tf.Module):
    """``supervised``: labels are the dataset's labels; reclustering does nothing (spec §1.4).

    Args:
        discriminator: the live discriminator (its snapshot copy is made at construction, like the
            original's ``deepcopy``).
        k_value: number of clusters K (-1 for ``supervised``, which does not need it).
        x_cluster: [N_c, ...] the fixed clustering sample (numpy), or None.
        snapshot: object with ``update(discriminator)`` and ``features(x)``; by default a
            :class:`DiscriminatorSnapshot` built with ``build_discriminator``.
        build_discriminator: builds a discriminator of the same configuration (for the snapshot).
        feature_dim: F, the width of the features (taken from ``discriminator.feature_dim`` if absent).
        batch_size: chunk size for clustering features (100 in the original).
        seed: seeds k-means and the random fallbacks (the original is unseeded).
        **kwargs: the config's other clusterer kwargs (``placeholder``, ``num_components``, ``x_labels``,
            ``gt_nlabels``) are accepted and ignored, as in the original.
    """

    name_in_registry = "supervised"
    deterministic = True  # get_labels gives the same answer when called twice with the same input

    def __init__(self, discriminator=None, k_value: int = -1, x_cluster=None, snapshot=None,
                 build_discriminator=None, feature_dim: int | None = None, batch_size: int = 100, seed: int = 0,
                 n_cluster: int | None = None, **kwargs):
        super().__init__(name=self.name_in_registry)
        self.k = int(k_value)
        self.x = x_cluster
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.live_discriminator = discriminator
        # N_c: the clustering sample's size (given explicitly when only labelling, without the images).
        self.n_cluster = int(n_cluster) if n_cluster is not None else (0 if x_cluster is None else len(x_cluster))

    # --- interface -------------------------------------------------------------------------------
    def get_labels(self, x, y):
        """Labels [B] (int32 tensor) for a batch of inputs x [B, ...] with dataset labels y [B]."""
        return tf.cast(tf.reshape(y, [-1]), tf.int32)

    def recluster(self, discriminator, x_batch=None) -> None:
        """Update the clustering with the current discriminator (no-op here)."""

    def get_label_distribution(self, x=None) -> np.ndarray:
        """Counts per label [K] of the clustering sample's labels, or of ``get_labels(x)``."""
        labels = self._x_labels_numpy() if x is None else self.get_labels(x, None).numpy()
        return np.bincount(np.asarray(labels, np.int64), minlength=max(self.k, 0))

    def sampling_distribution(self, nlabels: int) -> np.ndarray:
        """The label distribution used for evaluation samples (spec §7.1): uniform over G's labels."""
        return np.full(nlabels, 1.0 / nlabels)

    def _x_labels_numpy(self):
        raise UsageError(f"clusterer {self.name_in_registry}: has no labels of a clustering sample")

    def clustering_variables(self) -> list:
        """The variables a reclustering sets (none here); see :func:`share_chief_clustering`."""
        return []


class RandomLabels(Clusterer):
    """``random_labels``: i.i.d. uniform labels in [0, K) for every batch (spec §1.4).

    The label shape comes from the batch of x (the original takes it from y and crashes when y is None,
    spec §10.20). Draws come from a checkpointed ``tf.random.Generator``.
    """

    name_in_registry = "random_labels"
    deterministic = False

    def __init__(self, k_value: int = -1, seed: int = 0, **kwargs):
        super().__init__(k_value=k_value, seed=seed, **kwargs)
        if self.k < 1:
            raise UsageError(f"clusterer random_labels: k_value must be >= 1, got {self.k}")
        self.generator = tf.random.Generator.from_seed(self.seed, alg="philox")

    def get_labels(self, x, y):
        return self.generator.uniform([tf.shape(x)[0]], 0, self.k, dtype=tf.int32)

    def sampling_distribution(self, nlabels: int) -> np.ndarray:
        return np.full(self.k, 1.0 / self.k)  # a clusterer without k-means: uniform over K (spec §7.1)


class KMeansClusterer(Clusterer):
    """Shared machinery of the k-means clusterers: snapshot, centers, mapping, TF nearest-center labels."""

    def __init__(self, discriminator=None, k_value: int = -1, x_cluster=None, snapshot=None,
                 build_discriminator=None, feature_dim: int | None = None, **kwargs):
        super().__init__(discriminator=discriminator, k_value=k_value, x_cluster=x_cluster, **kwargs)
        if self.k < 1:
            raise UsageError(f"clusterer {self.name_in_registry}: kwargs.k_value must be >= 1, got {self.k}")
        if x_cluster is None and self.n_cluster == 0:
            raise UsageError(f"clusterer {self.name_in_registry}: needs a clustering sample (clusterer.nimgs)")
        if snapshot is None:
            if build_discriminator is None:
                raise ValueError("a k-means clusterer needs `snapshot` or `build_discriminator`")
            snapshot = DiscriminatorSnapshot(build_discriminator)
            if discriminator is not None:
                snapshot.update(discriminator)  # the original deep-copies D at construction
        self.snapshot = snapshot
        if feature_dim is None:
            feature_dim = int(discriminator.feature_dim)
        self.feature_dim = int(feature_dim)
        self.centers = tf.Variable(tf.zeros([self.k, self.feature_dim]), trainable=False, name="centers")
        self.mapping = tf.Variable(tf.range(self.k, dtype=tf.int64), trainable=False, name="mapping")
        self.x_labels = tf.Variable(tf.zeros([self.n_cluster], tf.int64), trainable=False, name="x_labels")
        self.has_x_labels = tf.Variable(False, trainable=False, name="has_x_labels")
        self.fitted = tf.Variable(False, trainable=False, name="fitted")
        self.fits = tf.Variable(0, dtype=tf.int64, trainable=False, name="fits")  # seeds successive k-means
        self._cache = _FunctionCache()
        # How cluster_features runs D: "tf.function" (default), "xla" or "eager" (benchmarks/bench_selfcond.py).
        self.feature_mode = "tf.function"

    # --- features ---------------------------------------------------------------------------------
    def _source(self):
        return self.snapshot

    def cluster_features(self) -> np.ndarray:
        """[N_c, F] features of the clustering sample, computed in chunks of ``batch_size``."""
        if self.x is None:
            raise ValueError("this clusterer was built without its clustering images; it can only label")
        source = self._source()
        fn = source.features
        if self.feature_mode != "eager":
            fn = tf.function(fn, reduce_retracing=True, jit_compile=self.feature_mode == "xla")
        outputs = [np.asarray(fn(tf.constant(self.x[i:i + self.batch_size])))
                   for i in range(0, len(self.x), self.batch_size)]
        return np.concatenate(outputs, axis=0)

    # --- k-means ----------------------------------------------------------------------------------
    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(self.fits.numpy())])

    def _fit(self, features: np.ndarray, init) -> np.ndarray:
        """Fit k-means (10 restarts for k-means++, 1 for an explicit init); store centers; return predictions."""
        n_init = KMEANS_RESTARTS if isinstance(init, str) else 1
        seed = int(self._rng().integers(0, 2**31 - 1))
        kmeans = KMeans(n_clusters=self.k, init=init, n_init=n_init, max_iter=KMEANS_MAX_ITER, tol=KMEANS_TOL,
                        random_state=seed)
        kmeans.fit(features)
        self.fits.assign_add(1)
        self.fitted.assign(True)
        self.centers.assign(kmeans.cluster_centers_.astype(np.float32))
        return kmeans.predict(features)

    # --- labels -----------------------------------------------------------------------------------
    def _nearest(self, features):
        """Nearest center index [B] of features [B, F] (k-means predict), then the label permutation."""
        f = tf.cast(features, tf.float32)
        d2 = (tf.reduce_sum(f * f, axis=1, keepdims=True) - 2.0 * tf.matmul(f, self.centers, transpose_b=True)
              + tf.reduce_sum(self.centers * self.centers, axis=1)[None, :])
        raw = tf.argmin(d2, axis=1, output_type=tf.int32)
        return tf.cast(tf.gather(self.mapping, raw), tf.int32)

    def get_labels(self, x, y):
        source = self._source()
        fn = self._cache.get(id(source))
        if fn is None:
            fn = tf.function(lambda inputs: self._nearest(source.features(inputs)), reduce_retracing=True)
            self._cache.put(id(source), fn)
        return fn(x)

    def _x_labels_numpy(self):
        return self.x_labels.numpy()

    def clustering_variables(self) -> list:
        return [self.centers, self.mapping, self.x_labels, self.has_x_labels, self.fitted, self.fits]

    def sampling_distribution(self, nlabels: int) -> np.ndarray:
        """Empirical cluster sizes of the clustering sample at the last reclustering (spec §7.1)."""
        counts = self.get_label_distribution().astype(np.float64)
        return counts / counts.sum()


class SelfCondGAN(KMeansClusterer):
    """``selfcondgan``: the method (spec §1.3).

    Args:
        initialization: warm-start each re-fit from the per-label means of the new features (default on;
            ``false`` is the "no initialisation" ablation: k-means++ every time).
        matching: re-align new cluster ids with the previous labels by Hungarian matching (default on;
            ``false`` is the "no matching" ablation).
    """

    name_in_registry = "selfcondgan"

    def __init__(self, initialization: bool = True, matching: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.initialization = _as_bool(initialization, "initialization")
        self.matching = _as_bool(matching, "matching")

    def recluster(self, discriminator, x_batch=None) -> None:
        """Snapshot D, cluster its features of the clustering sample, align the ids (spec §1.3)."""
        self.snapshot.update(discriminator)
        features = self.cluster_features()
        previous = self.x_labels.numpy() if bool(self.has_x_labels.numpy()) else None
        if previous is not None and self.initialization:
            init = initial_centers(features, previous, self.k, self._rng())
        else:
            init = "k-means++"
        new = self._fit(features, init)
        if previous is not None and self.matching:
            self.mapping.assign(hungarian_mapping(new, previous, self.k))
        self.x_labels.assign(self.mapping.numpy()[new])
        self.has_x_labels.assign(True)


class FixedKMeans(SelfCondGAN):
    """``kmeans_fixed`` (port-only): k-means on the random D's features once, never redone (spec §1.4)."""

    name_in_registry = "kmeans_fixed"

    def recluster(self, discriminator, x_batch=None) -> None:
        if not bool(self.fitted.numpy()):
            super().recluster(discriminator, x_batch)


class Online(KMeansClusterer):
    """``online``: k-means++ once, one warm-started re-fit on the live D, then MacQueen updates (spec §1.4).

    After the first call the clusterer follows the **live** discriminator (no copy), and ``x_labels`` is
    not updated after the first clustering, so the sampling distribution stays the first one (spec §10.15).
    """

    name_in_registry = "online"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.counts = tf.Variable(tf.zeros([self.k], tf.int64), trainable=False, name="counts")
        self.burned_in = tf.Variable(False, trainable=False, name="burned_in")
        self.live = tf.Variable(False, trainable=False, name="live")
        self._live_source = None

    def clustering_variables(self) -> list:
        return [*super().clustering_variables(), self.counts, self.burned_in, self.live]

    def _source(self):
        if bool(self.live.numpy()):
            if self._live_source is None or self._live_source.discriminator is not self.live_discriminator:
                self._live_source = LiveFeatures(self.live_discriminator)
            return self._live_source
        return self.snapshot

    def recluster(self, discriminator, x_batch=None) -> None:
        if not bool(self.fitted.numpy()):
            self.snapshot.update(discriminator)
            self.x_labels.assign(self._fit(self.cluster_features(), "k-means++").astype(np.int64))
            self.has_x_labels.assign(True)
            return
        self.live_discriminator = discriminator
        self.live.assign(True)
        if not bool(self.burned_in.numpy()):
            features = self.cluster_features()
            self._fit(features, initial_centers(features, self.x_labels.numpy(), self.k, self._rng()))
            self.burned_in.assign(True)
            return
        if x_batch is None:
            raise ValueError("online clusterer: recluster after burn-in needs the current batch (x_batch)")
        features = np.asarray(self._source().features(x_batch), np.float64)
        centers = self.centers.numpy().astype(np.float64)
        assigned = ((features[:, None, :] - centers[None]) ** 2).sum(-1).argmin(axis=1)  # k-means predict
        self.centers.assign(macqueen_update(centers, self.counts.numpy(), features, assigned).astype(np.float32))
        self.counts.assign(self.counts.numpy() + np.bincount(assigned, minlength=self.k))


def macqueen_update(centers: np.ndarray, counts: np.ndarray, features: np.ndarray, assigned: np.ndarray):
    """MacQueen's running mean, all batch items at once: count[c] += 1; c += (f - c) / count[c].

    Done item by item in the original; the sequential result equals this closed form, because the first
    update of a center with count 0 replaces it by the feature.

    Args:
        centers: [K, F]; counts: [K] items seen so far; features: [B, F]; assigned: [B] center ids.

    Returns:
        [K, F] updated centers (float64).
    """
    centers = np.asarray(centers, np.float64).copy()
    k = len(centers)
    new = np.bincount(assigned, minlength=k)
    sums = np.zeros_like(centers)
    np.add.at(sums, assigned, features)
    touched = new > 0
    total = counts[touched] + new[touched]
    centers[touched] = (counts[touched, None] * centers[touched] + sums[touched]) / total[:, None]
    return centers


def share_chief_clustering(clusterer: Clusterer, strategy) -> None:
    """Every worker of a multi-worker run takes the chief's clustering (no-op on one process).

    Each worker reclusters on its own copy of the synchronised D (so side effects such as the snapshot weights and
    the online clusterer's switch to the live D happen everywhere), then adopts the chief's centers, permutation,
    labels of the clustering sample and counters bit for bit, so all workers label their batches with one
    partition. Same weights and seed would usually give the same k-means anyway, but nothing guarantees it:
    sklearn's threaded Lloyd sums and D's features may round differently on other hardware or thread counts.
    """
    from common.devices import from_chief, is_multi_worker

    variables = clusterer.clustering_variables()
    if not variables or strategy is None or not is_multi_worker(strategy):
        return
    for variable, value in zip(variables, from_chief(strategy, [v.numpy() for v in variables])):
        variable.assign(value)


class _FunctionCache:
    """Traced label functions per feature source (a plain object, so that tf.Module does not track it)."""

    def __init__(self):
        self._functions = {}

    def get(self, key):
        return self._functions.get(key)

    def put(self, key, fn):
        self._functions[key] = fn


CLUSTERERS = {
    "supervised": Clusterer,
    "selfcondgan": SelfCondGAN,
    "online": Online,
    "random_labels": RandomLabels,
    "kmeans_fixed": FixedKMeans,
}


def build_clusterer(name: str, **kwargs) -> Clusterer:
    """The clusterer registered under ``name`` (config ``clusterer.name`` / 2-D ``--clusterer``)."""
    if name not in CLUSTERERS:
        raise UsageError(f"clusterer.name: unknown clusterer {name!r}; expected one of {sorted(CLUSTERERS)}")
    return CLUSTERERS[name](**kwargs)


def _as_bool(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"clusterer.kwargs.{name}: expected true or false, got {value!r}")
