"""Evaluation of trained runs (the original's ``metrics.py`` and the scripts it calls, spec §2.2, §7).

Results are JSON dicts keyed by ``str(it)`` (or ``"pretrained"``) in ``OUT/results/``:
``fid_results``, ``is_results`` ([mean, std]), ``kl_results``, ``nmodes_results``, ``fsd_results`` and
``cluster_metrics`` ({nmi, purity, purity_standard, ari}); existing entries are not recomputed. Samples of the
checkpoint being evaluated are kept in ``OUT/results/samples.npz`` (``fake`` float32 NHWC in [0, 255],
``real`` the dataset name), overwritten per checkpoint as in the original.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from common.fileio import atomic_write_json
from common.metrics import ari, modes_and_reverse_kl, purity, purity_selfcond

RESULT_FILES = ("fid_results", "is_results", "kl_results", "nmodes_results", "fsd_results", "cluster_metrics")
DATASETS = ("imagenet", "cifar", "stacked_mnist", "places")  # the order in which the original matches paths
NUM_MODES = {"places": 365, "cifar": 10, "imagenet": 1000, "stacked_mnist": 1000}
DATA_TYPE_TO_NAME = {"cifar10": "cifar", "stacked_mnist": "stacked_mnist"}
FID_MIN_SAMPLES = 1000  # the original's fid.py returns 0 below this


class Results:
    """The six result dicts of a run folder (created empty when missing, like the original)."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / "results"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tables = {}
        for name in RESULT_FILES:
            path = self.dir / f"{name}.json"
            if not path.exists():
                atomic_write_json(path, {})
            try:
                self.tables[name] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise UsageError(f"{path}: not valid JSON ({err})") from err

    def has(self, name: str, it) -> bool:
        return str(it) in self.tables[name]

    def put(self, name: str, it, value) -> None:
        self.tables[name][str(it)] = value
        atomic_write_json(self.dir / f"{name}.json", self.tables[name])


def dataset_name(config_path: str | Path, config: dict) -> str | None:
    """The original infers the dataset from the config **path** (imagenet, cifar, stacked_mnist, places, in
    that order); the port falls back to ``data.type`` when the path names none."""
    text = str(config_path)
    for name in DATASETS:
        if name in text:
            return name
    return DATA_TYPE_TO_NAME.get(config["data"]["type"])


def reverse_kl_and_modes(predictions: np.ndarray, num_classes: int) -> tuple[float, int]:
    """(KL(p_hat || uniform) in log10, number of predicted classes) (spec §7.4)."""
    modes, kl = modes_and_reverse_kl(predictions, num_classes, base=10.0)
    return kl, modes


def label_training_set(state, config: dict, source=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) of every training image under the run's clusterer (spec §7.5).

    The original shuffles with drop_last and its default (non-deterministic) augmentation.
    """
    from selfcond.data import Loader, build_dataset

    if config["clusterer"]["name"] == "supervised":
        raise UsageError("--cluster_metrics: the supervised clusterer has no inferred clusters to score")
    dataset = build_dataset({**config, "data": {**config["data"], "deterministic": False}}, source, seed)
    loader = Loader(dataset, int(config["training"]["batch_size"]), seed, "eval")
    trues, preds = [], []
    for it in range(len(loader)):
        x, y = loader.batch(it)
        preds.append(state.clusterer.get_labels(tf.constant(x), None).numpy())
        trues.append(y)
    return np.concatenate(trues), np.concatenate(preds)


def cluster_scores(y_true: np.ndarray, y_pred: np.ndarray, nmi_average: str = "arithmetic") -> dict:
    """NMI, the original's "purity" (inverse purity, §10.2), the textbook purity and (port extra) the ARI."""
    from sklearn.metrics import normalized_mutual_info_score

    return {
        "nmi": float(normalized_mutual_info_score(y_pred, y_true, average_method=nmi_average)),
        "purity": purity_selfcond(y_true, y_pred),
        "purity_standard": purity(y_true, y_pred),
        "ari": ari(y_true, y_pred),
    }


def fid_score(samples_0_255: np.ndarray, reference_stats: tuple[np.ndarray, np.ndarray], extractor) -> float:
    """TTUR FID of samples (float [0, 255]) against (mu, sigma) of the real images (spec §7.2)."""
    from common.metrics import activation_statistics, frechet_distance

    if len(samples_0_255) < FID_MIN_SAMPLES:
        return 0.0
    acts = extractor.features(samples_0_255 / 127.5 - 1.0)
    mu, sigma = activation_statistics(acts)
    return frechet_distance(mu, sigma, reference_stats[0], reference_stats[1], method="scipy")


def inception_score_of(samples_0_255: np.ndarray, extractor, splits: int = 10) -> tuple[float, float]:
    """The paper's IS: TF-GAN Inception logits, first 1000 classes, 10 splits (spec §7.3a)."""
    from common.metrics import inception_score

    logits = extractor.logits(samples_0_255 / 127.5 - 1.0)
    return inception_score(logits, splits=splits, num_classes=1000)


def reference_statistics(name: str, extractor, config: dict, source=None, output_dir: str | Path = "output"):
    """(mu, sigma) of the real images: ``output/<ds>_gt_stats.npz``, computed once from ``<ds>_gt_imgs.npz``
    (or, for CIFAR, from the 50000 training images without flip or noise, as ``get_gt_imgs.py --cifar``)."""
    from common.metrics import activation_statistics

    output_dir = Path(output_dir)
    stats_path, imgs_path = output_dir / f"{name}_gt_stats.npz", output_dir / f"{name}_gt_imgs.npz"
    if stats_path.exists():
        with np.load(stats_path) as stored:
            return stored["m"], stored["s"]
    if imgs_path.exists():
        with np.load(imgs_path) as stored:
            real = stored["real"]
    elif name == "cifar":
        from selfcond.data import build_dataset

        dataset = build_dataset({**config, "data": {**config["data"], "deterministic": True}}, source)
        real = dataset.images.astype(np.float32)
    else:
        raise UsageError(f"--fid: no reference images {imgs_path} for {name}; write them first (float NHWC "
                         "in [0, 255] under the key 'real')")
    mu, sigma = activation_statistics(extractor.features(real / 127.5 - 1.0))
    stats_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(stats_path, m=mu, s=sigma)
    return mu, sigma


# --- the metrics.py driver ----------------------------------------------------------------------------

FSD_MESSAGE = ("--fsd: FSD needs the Unified Perceptual Parsing segmenter (ResNet-50 + UPerNet, netdissect), "
               "which the port does not ship")


def config_paths(paths) -> list[Path]:
    """YAML files named directly or found recursively under folders (the original's PATH arguments)."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(path.rglob("*.yaml")))
        elif path.suffix == ".yaml":
            found.append(path)
        elif not path.exists():
            raise UsageError(f"{raw}: no such config file or folder")
    return found


def iterations_to_evaluate(config: dict, it: int = -1, every: int = -1) -> list:
    """Saved iterations except 0, filtered by ``--every`` / ``--it``; plus ``"pretrained"`` (spec §2.2)."""
    from selfcond.trainer import saved_iterations

    chosen = []
    for saved in saved_iterations(config["training"]["out_dir"]):
        if every != 0 and saved % every != 0:
            continue
        if saved == 0 or (it != -1 and saved != it):
            continue
        chosen.append(saved)
    if config.get("pretrained"):
        chosen.append("pretrained")
    return chosen


def mode_classifier(name: str, options, source=None):
    """The ``--modes`` classifier of a dataset; the MNIST one is trained when its weights are missing."""
    from selfcond import classifiers

    if name not in ("stacked_mnist", "cifar"):
        raise UsageError(f"--modes: no classifier for {name!r} in the port (stacked_mnist and cifar are supported)")
    kind = "mnist" if name == "stacked_mnist" else "cifar"
    path = classifiers.weights_path(kind, options.classifier_dir)
    model = classifiers.build(kind)
    if not path.exists():
        if kind == "cifar":
            raise UsageError(f"--modes: {path} is missing; train it with "
                             "`python selfcond/train_classifier.py --dataset cifar`")
        print(f"{path} is missing: training the MNIST classifier (as the original does)")
        train_mnist_classifier(model, source=source, seed=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(path))
    model.load_weights(str(path))
    return classifiers.ModeClassifier(name, model, options.classifier_input, options.classifier_inference_mode)


def train_mnist_classifier(model, source=None, seed: int = 0, epochs: int = 10) -> float:
    """The original recipe: MNIST train resized to 32, [-1, 1], Adam 1e-3, batch 100, 10 epochs."""
    from common.data_selfcond import resize_digits
    from selfcond import classifiers
    from selfcond.data import _mnist

    digits, labels = _mnist(source)
    images = resize_digits(np.asarray(digits, np.uint8)).astype(np.float32) / 127.5 - 1.0
    return classifiers.train(model, images, labels, epochs=epochs, batch_size=100, seed=seed)


FID_BATCH = 200  # the original's TTUR activation loop: batches of 200, images after the last full one skipped


def make_fid_extractor():
    """TTUR's Inception graph in batches of :data:`FID_BATCH`, remainder dropped (spec §7.2; loaded lazily)."""
    from common.inception import load_inception

    return load_inception("ttur", batch_size=FID_BATCH, drop_remainder=True)


def make_is_extractor():
    """TF-GAN's Inception graph with logits (loaded lazily on first use)."""
    from common.inception import load_inception

    return load_inception("tfgan")


def cluster_metrics_for(state, config: dict, it, options) -> dict:
    """Cluster metrics of iteration ``it``, with the predictions cached in ``OUT/cluster_preds_{it}.npz``.

    The original caches one ``cluster_preds.npz`` per experiment and reuses it for every iteration (§10.7);
    the port keys the cache by iteration.
    """
    cache = Path(config["training"]["out_dir"]) / f"cluster_preds_{it}.npz"
    if cache.exists():
        with np.load(cache) as stored:
            y_true, y_pred = stored["y_reals"], stored["y_preds"]
    else:
        y_true, y_pred = label_training_set(state, config, options.source, options.seed or 0)
        np.savez(cache, y_reals=y_true, y_preds=y_pred)
    if getattr(options, "random", False):
        y_pred = np.random.default_rng(options.seed).integers(0, 100, size=y_true.shape)
    return cluster_scores(y_true, y_pred, options.nmi_average)


def evaluate(options) -> dict:
    """Compute the requested metrics for every config and checkpoint (the original's ``metrics.py``).

    Returns:
        {config path: {metric file: table}} for the configs that were evaluated.
    """
    from selfcond.config import load_config
    from selfcond.sampling import SeededSampler, draw_samples, load_run

    if options.fsd:
        raise UsageError(FSD_MESSAGE)
    summary = {}
    for path in config_paths(options.paths):
        config = load_config(path)
        out_dir = Path(config["training"]["out_dir"])
        if not out_dir.exists() and not config.get("pretrained"):
            print("Skipping", path, "outdir", out_dir)
            continue
        results = Results(out_dir)
        name = dataset_name(path, config)
        for it in iterations_to_evaluate(config, options.it, options.every):
            print("Computing for", it)
            wanted = ([("is_results",)] if options.inception else []) + ([("fid_results",)] if options.fid else []) \
                + ([("kl_results",), ("nmodes_results",)] if options.modes else [])
            state = None
            samples = None
            if not all(results.has(w[0], it) for w in wanted):
                state, _ = load_run(config, it)
                samples = draw_samples(SeededSampler(state, options.seed), options.nsamples)
                np.savez(results.dir / "samples.npz", fake=samples, real=str(name))
            else:
                print("Already generated", it, path)
            if options.fid and not results.has("fid_results", it):
                if name not in ("cifar", "imagenet", "places"):
                    raise UsageError(f"--fid: no reference images for dataset {name!r} ({path}); FID is defined "
                                     "for cifar, imagenet and places")
                extractor = make_fid_extractor()
                stats = reference_statistics(name, extractor, config, options.source)
                results.put("fid_results", it, fid_score(samples, stats, extractor))
                print(f"{path} iteration {it} FID: {results.tables['fid_results'][str(it)]}")
            if options.inception and not results.has("is_results", it):
                mean, std = inception_score_of(samples, make_is_extractor())
                results.put("is_results", it, [mean, std])
                print(f"{path} iteration {it} IS: {mean} +- {std}")
            if options.modes and not (results.has("kl_results", it) and results.has("nmodes_results", it)):
                classifier = mode_classifier(name, options, options.source)
                kl, modes = reverse_kl_and_modes(classifier.classify(samples), NUM_MODES[name])
                results.put("kl_results", it, kl)
                results.put("nmodes_results", it, modes)
                print(f"{results.dir} iteration {it} KL: {kl} Covered {modes} out of {NUM_MODES[name]} total modes")
            if options.cluster_metrics and not results.has("cluster_metrics", it):
                if state is None:
                    state, _ = load_run(config, it)
                scores = cluster_metrics_for(state, config, it, options)
                results.put("cluster_metrics", it, scores)
                print("nmi", scores["nmi"], "purity", scores["purity"], "purity_standard", scores["purity_standard"],
                      "ari", scores["ari"])
        summary[str(path)] = results.tables
    return summary
