"""Evaluation of a CIFAR-2 SLOGAN model as ``slogan_cifar2.py`` does it (spec §6).

- Clustering (§6.1): encode one ``val_size`` batch of the test stream, prob = softmax_c cos(E(x), μ_c) [N, K],
  KMeans (K clusters, random_state 0, n_init 10) on prob, then ARI and NMI against plane/frog.
- FID (§6.2): TF-GAN Inception ``pool_3`` features of one 10k real batch (augmented) and of G(z) for 10 000
  z ~ q(z) (inference mode, batches of 100), TF-GAN's symmetric-root Frechet distance in float64.
- IS (§6.2): TF-GAN Inception logits (1008) of G(z) for 100 000 z (10 000 during validation), one split.
- ICFID (§6.3): TTUR Inception features of one 50k real batch split by class and of 5 000 samples of each
  component; FID matrix (components × classes) with scipy's sqrtm; greedy class -> component matching.

The feature extractors are injectable (:class:`Extractors`): the default loads the two Inception graphs
lazily from their official URLs or local files; ``--features classifier`` uses the project's small CIFAR-10
classifier for all three (numbers then carry a ``classifier_`` prefix, they are not Inception numbers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from common import metrics
from common.errors import UsageError
from common.slogan.cifar2_data import Cifar2Streams
from common.slogan.cifar2_step import Cifar2State, stateless_seed
from common.slogan.losses import cosine_similarity_matrix

# The original's intra_cluster_fid.py keeps the TTUR graph in res/ beside itself (the repository root).
ICFID_CACHE_DIR = Path(__file__).resolve().parents[2] / "res"
GENERATOR_BATCH = 100  # z batches of the original's map_fn over the generator and encoder
FEATURE_GROUP = 1000  # generated images handed to a feature extractor at once


@dataclasses.dataclass(frozen=True)
class Extractors:
    """The networks behind FID, IS and ICFID; each takes images [N, 32, 32, 3] in [-1, 1].

    Attributes:
        fid_features: -> [N, F] (TF-GAN Inception ``pool_3``, F = 2048).
        is_logits: -> [N, C] (TF-GAN Inception ``logits``, C = 1008).
        icfid_features: -> [N', F] (TTUR Inception ``pool_3``; N' = N rounded down to ``icfid_batch``).
        icfid_batch: the ICFID extractor uses only ⌊N/icfid_batch⌋·icfid_batch images of a set (TTUR: 50).
        name: recorded with the numbers (``inception`` or the classifier's name).
        prefix: prepended to the metric names ("" for Inception, ``classifier_`` otherwise).
    """

    fid_features: Callable[[np.ndarray], np.ndarray]
    is_logits: Callable[[np.ndarray], np.ndarray]
    icfid_features: Callable[[np.ndarray], np.ndarray]
    icfid_batch: int = 1
    name: str = "inception"
    prefix: str = ""


def load_extractors(cfg) -> Extractors:
    """The extractors chosen by ``--features`` (nothing is read or downloaded before the first use)."""
    if cfg.features == "classifier":
        from common.classifier_features import load_classifier

        if not cfg.classifier_path:
            raise UsageError("--features classifier needs --classifier_path (train one: python -m "
                             "common.classifier_features --dataset cifar10 ...)")
        clf = load_classifier(cfg.classifier_path)
        return Extractors(clf.features, clf.logits, clf.features, 1, clf.name, "classifier_")
    from common.inception import InceptionNet

    # Each graph's own batch size; the TTUR one drops the remainder of a set like the original.
    tfgan = InceptionNet("tfgan", path=cfg.inception_path)
    ttur = InceptionNet("ttur", path=cfg.icfid_inception_path,
                        cache_dir=None if cfg.icfid_inception_path else ICFID_CACHE_DIR, drop_remainder=False)
    return Extractors(tfgan.features, tfgan.logits, ttur.features, ttur.graph.batch_size, "inception", "")


class Cifar2Evaluator:
    """Metrics of the current model; every draw comes from ``rng`` (the run's evaluation generator).

    Args:
        state: the models and prior.
        cfg: needs ``num_cluster``, ``latent_dim`` and the sample counts ``fid_size``, ``is_size``,
            ``icfid_fake_size``.
        streams: the real-image pipelines (``test`` for clustering, ``fid`` and ``icfid`` for the real sets).
        extractors: the feature networks.
        rng: a ``tf.random.Generator``.
    """

    def __init__(self, state: Cifar2State, cfg, streams: Cifar2Streams, extractors: Extractors,
                 rng: tf.random.Generator):
        self.state, self.cfg, self.streams, self.extractors, self.rng = state, cfg, streams, extractors, rng
        prior, g, e = state.prior, state.generator, state.encoder

        @tf.function(autograph=False)
        def mixture_images():
            z = prior.sample(GENERATOR_BATCH, seed=stateless_seed(rng))
            return g(z, training=False)

        @tf.function(autograph=False)
        def component_images(c):
            z = prior.sample_component(c, GENERATOR_BATCH, seed=stateless_seed(rng))
            return g(z, training=False)

        @tf.function(autograph=False)
        def probabilities(x):
            # prob_test = softmax_c cos(E(x), μ_c), [n, K] (spec §4.2 derived heads); with fix_nmi_features
            # the raw encoder outputs [n, d], as the paper describes the clustering (spec §9 #11).
            if cfg.fix_nmi_features:
                return e(x)
            return tf.nn.softmax(cosine_similarity_matrix(e(x), prior.means()))

        self._mixture_images, self._component_images, self._probabilities = (
            mixture_images, component_images, probabilities)

    def generated(self, n: int, component: int | None = None) -> Iterator[np.ndarray]:
        """G(z) in inference mode for n samples of q(z) (or of one component), in groups of ≤ 1000 images."""
        group = []
        for _ in range(-(-n // GENERATOR_BATCH)):
            x = self._mixture_images() if component is None else self._component_images(component)
            group.append(x.numpy())
            if len(group) * GENERATOR_BATCH >= FEATURE_GROUP:
                yield np.concatenate(group)
                group = []
        if group:
            yield np.concatenate(group)

    def _generated_outputs(self, fn, n: int, component: int | None = None) -> np.ndarray:
        return np.concatenate([fn(x) for x in self.generated(n, component)])[:n]

    @property
    def pi(self) -> np.ndarray:
        return self.state.prior.pi.numpy()

    def clustering(self) -> dict[str, float]:
        """ARI and NMI of KMeans on softmax-cosine probabilities of one ``val_size`` test batch (spec §6.1, §9 #11).

        With ``fix_nmi_features`` KMeans runs on the raw encoder outputs instead.
        """
        images, labels = self.streams.test.next()
        probs = np.concatenate([self._probabilities(images[i : i + GENERATOR_BATCH]).numpy()
                                for i in range(0, len(images), GENERATOR_BATCH)])
        predicted = metrics.kmeans_labels(probs, self.cfg.num_cluster, labels, seed=0, n_init=10)
        return {"ARI": metrics.ari(labels, predicted), "NMI": metrics.nmi(labels, predicted)}

    def fid(self) -> float:
        """FID between one fid_size real batch (augmented) and fid_size generated images (spec §6.2)."""
        real = np.concatenate([self.extractors.fid_features(x) for x, _ in self.streams.fid.chunks()])
        fake = self._generated_outputs(self.extractors.fid_features, self.cfg.fid_size)
        return metrics.fid_from_activations(real, fake, method="tfgan")

    def inception_score(self, n: int) -> float:
        """IS of n generated images, one split, softmax over every logit (spec §6.2)."""
        return metrics.inception_score(self._generated_outputs(self.extractors.is_logits, n), splits=1)[0]

    def icfid(self) -> tuple[float, np.ndarray, np.ndarray]:
        """Intra-cluster FID with the original's greedy class -> component matching (spec §6.3).

        Returns:
            ``(icfid, best_idx [C], per-class FID [C])``; C = K classes (planes, frogs, then empty ones).
        """
        k, step = self.cfg.num_cluster, self.extractors.icfid_batch
        per_class = [[] for _ in range(k)]
        for images, labels in self.streams.icfid.chunks():
            features = self.extractors.icfid_features(images)
            for j in range(k):
                per_class[j].append(features[labels == j])
        real = []
        for j in range(k):
            feats = np.concatenate(per_class[j])
            real.append(feats[: len(feats) // step * step])
        fake = [self._generated_outputs(self.extractors.icfid_features, self.cfg.icfid_fake_size, c)[
            : self.cfg.icfid_fake_size // step * step] for c in range(k)]
        for j, feats in enumerate(real):
            if len(feats) < 2:
                raise UsageError(f"ICFID: the real set of class {j} has {len(feats)} images (need >= 2); "
                                 "use --num_cluster 2 or a larger --icfid_real_size")
        return metrics.intra_cluster_fid(metrics.fid_matrix(fake, real, method="scipy"))
