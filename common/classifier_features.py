"""Classifier features: FID/IS-style scores on a small classifier this project trains itself.

For users without the Inception graphs (no network, or no GPU time), a small convolutional classifier
trained for a few CPU epochs on MNIST or CIFAR-10 gives the same interface as :class:`common.inception.
InceptionNet` (``features(images) -> [N, F]``, ``logits(images) -> [N, 10]``). The numbers it gives are
recorded as ``classifier_fid`` / ``classifier_is`` and are NOT comparable to published FID / IS values,
which all use the 2015 Inception graphs; they are only meaningful between runs scored with the same
classifier file.

Train it::

    python -m common.classifier_features --dataset mnist --source mnist.npz --out clf_mnist.keras
    python -m common.classifier_features --dataset cifar10 --source cifar10_jpg.tar.gz --out clf_cifar.keras

``--source`` is one of: an ``.npz`` (Keras layout ``x_train``/``y_train`` [+ ``x_test``/``y_test``], or
``x``/``y``, or ``images``/``labels``); an image folder ``train/<class>/*`` [+ ``test/<class>/*``] (classes
in sorted order) or a tar archive of one; a CIFAR-10 python batches folder (``data_batch_1..5``,
``test_batch``). Without ``--source`` the project's dataset cache (``python download.py mnist|cifar10``) is
read. Images are uint8 0..255 or floats in [-1, 1].
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from common import data_formats as formats
from common.errors import UsageError, exit_on_usage_error
from common.fileio import atomic_write_json

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class ClassifierSpec:
    """Input shape, conv widths (one 3x3 conv + 2x2 max-pool per stage), feature size, default epochs."""

    shape: tuple[int, int, int]
    widths: tuple[int, ...]
    features: int
    epochs: int


DATASETS = {
    "mnist": ClassifierSpec(shape=(28, 28, 1), widths=(32, 64), features=128, epochs=3),
    "cifar10": ClassifierSpec(shape=(32, 32, 3), widths=(32, 64, 128), features=256, epochs=5),
}


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------


def _to_unit_range(images: np.ndarray, source) -> np.ndarray:
    """uint8 0..255 -> [-1, 1] float32 (x / 127.5 - 1); floats must already be in [-1, 1]."""
    if images.dtype == np.uint8:
        return images.astype(np.float32) / 127.5 - 1.0
    images = images.astype(np.float32)
    if images.size and (images.min() < -1.0 - 1e-6 or images.max() > 1.0 + 1e-6):
        raise UsageError(f"--source {source}: float images must lie in [-1, 1] (or be uint8 0..255)")
    return images


def _load_npz(path: Path):
    with np.load(path) as data:
        for xk, yk in (("x_train", "y_train"), ("x", "y"), ("images", "labels")):
            if xk in data and yk in data:
                train = (data[xk], data[yk])
                test = (data["x_test"], data["y_test"]) if xk == "x_train" and "x_test" in data else None
                return train, test
        raise UsageError(f"--source {path}: expected arrays x_train/y_train, x/y or images/labels, got {list(data)}")


def _load_cifar_batches(root: Path):
    def read(paths):
        parts = [formats.read_cifar_batch(p) for p in paths]
        rows, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return formats.cifar_rows_to_images(rows), labels

    train = read(sorted(root.glob("data_batch_*")))
    return train, (read([root / "test_batch"]) if (root / "test_batch").is_file() else None)


def _load_image_folder(path: Path, channels: int):
    from common.data_sources import read_image_folder

    splits, _ = read_image_folder(path, mode="L" if channels == 1 else "RGB", progress=False)
    return splits["train"], splits.get("test")


def _load_project_cache(dataset: str):
    from common import datasets

    return datasets.load_mnist() if dataset == "mnist" else datasets.load_cifar10()


def load_source(source: str | os.PathLike | None, dataset: str):
    """Read a labelled image set for ``dataset``.

    Args:
        source: an ``.npz``, an image folder or tar archive of one (``train/<class>/*`` [+ ``test/``]), or a
            CIFAR-10 python batches folder; None: the project's dataset cache written by ``download.py``.

    Returns:
        ((x_train [N, H, W, C] float32 in [-1, 1], y_train [N] int64), (x_test, y_test) or None).

    Raises:
        UsageError: unreadable source, or images whose shape differs from the dataset's.
    """
    spec = DATASETS[dataset]
    path = Path(source) if source is not None else None
    if path is None:
        train, test = _load_project_cache(dataset)
    elif path.is_dir() and any(path.glob("data_batch_*")):
        train, test = _load_cifar_batches(path)
    elif path.is_file() and path.suffix == ".npz":
        train, test = _load_npz(path)
    elif path.is_dir() or (path.is_file() and tarfile.is_tarfile(path)):
        train, test = _load_image_folder(path, spec.shape[-1])
    else:
        raise UsageError(f"--source {source}: expected an .npz, an image folder, CIFAR batches or a tar archive")
    out = []
    for part in (train, test):
        if part is None:
            out.append(None)
            continue
        x, y = part
        if x.ndim == 3:
            x = x[..., None]  # MNIST [N, 28, 28]
        if tuple(x.shape[1:]) != spec.shape:
            raise UsageError(f"--source {source}: {dataset} images must be {spec.shape}, got {tuple(x.shape[1:])}")
        y = np.asarray(y).reshape(-1).astype(np.int64)
        if y.min() < 0 or y.max() >= NUM_CLASSES:
            raise UsageError(f"--source {source}: labels must lie in [0, {NUM_CLASSES}), got {y.min()}..{y.max()}")
        out.append((_to_unit_range(x, source), y))
    return out[0], out[1]


# --------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------


def build_classifier(dataset: str):
    """[N, H, W, C] in [-1, 1] -> logits [N, 10]; the ReLU layer named ``features`` gives the features."""
    import keras

    spec = DATASETS[dataset]
    inputs = keras.Input(spec.shape, name="images")
    x = inputs
    for width in spec.widths:
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    features = keras.layers.Dense(spec.features, activation="relu", name="features")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(features)
    return keras.Model(inputs, logits, name=f"{dataset}_classifier")


def train_classifier(
    x,
    y,
    *,
    dataset: str,
    epochs: int | None = None,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    validation=None,
    verbose: int = 2,
):
    """Train :func:`build_classifier` with Adam on softmax cross-entropy.

    Args:
        x: [N, H, W, C] in [-1, 1]; y: [N] labels in [0, 10).
        epochs: default: the dataset's (a few CPU minutes).
        steps_per_epoch: cap the batches per epoch (tests).
        validation: optional (x_test, y_test).

    Returns:
        (model, history dict).
    """
    import keras

    from common.seeding import set_seed

    set_seed(seed)
    model = build_classifier(dataset)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x,
        y,
        batch_size=batch_size,
        epochs=epochs or DATASETS[dataset].epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        shuffle=True,
        verbose=verbose,
    )
    return model, history.history


def save_classifier(model, out: str | os.PathLike, meta: dict) -> None:
    """Write ``out`` (a ``.keras`` file) atomically, and ``<out>.json`` with ``meta``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".keras", dir=out.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    atomic_write_json(str(out) + ".json", meta)


class ClassifierFeatures:
    """``features`` / ``logits`` of a trained classifier, over images in [-1, 1] [N, H, W, C].

    Images of another spatial size are resized bilinearly to the classifier's input; the channel count
    must match. Metric names get the prefix ``classifier_`` (see :mod:`common.evaluate`).
    """

    metric_prefix = "classifier_"
    has_logits = True

    def __init__(self, model, name: str, batch_size: int = 500):
        import keras
        import tensorflow as tf

        self.name = name
        self.batch_size = int(batch_size)
        self.input_shape = tuple(model.input.shape[1:])
        both = keras.Model(model.input, [model.get_layer("features").output, model.output])

        @tf.function(input_signature=[tf.TensorSpec([None, *self.input_shape], tf.float32)])
        def run(batch):
            return both(batch, training=False)

        self._run = run

    def features_and_logits(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Features [N, F] (the ReLU ``features`` layer) and logits [N, 10]."""
        shape = np.shape(images)
        if len(shape) != 4 or shape[-1] != self.input_shape[-1]:
            raise UsageError(f"images: {self.name} expects [N, H, W, {self.input_shape[-1]}] in [-1, 1], got {shape}")
        import tensorflow as tf

        feats, logits = [], []
        for start in range(0, shape[0], self.batch_size):
            batch = np.asarray(images[start : start + self.batch_size], dtype=np.float32)
            if batch.shape[1:3] != self.input_shape[:2]:
                batch = tf.image.resize(batch, self.input_shape[:2], method="bilinear")
            f, lg = self._run(batch)
            feats.append(f.numpy())
            logits.append(lg.numpy())
        return np.concatenate(feats), np.concatenate(logits)

    def features(self, images) -> np.ndarray:
        return self.features_and_logits(images)[0]

    def logits(self, images) -> np.ndarray:
        return self.features_and_logits(images)[1]


def load_classifier(path: str | os.PathLike, *, batch_size: int = 500) -> ClassifierFeatures:
    """Load a classifier written by :func:`save_classifier` (``--classifier PATH``)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--classifier {path}: no such file (train one with python -m common.classifier_features)")
    try:
        model = keras.models.load_model(path, compile=False)
        model.get_layer("features")
    except (ValueError, OSError) as err:
        raise UsageError(f"--classifier {path}: not a classifier saved by common.classifier_features ({err})") from err
    return ClassifierFeatures(model, name=f"classifier-{model.name.removesuffix('_classifier')}", batch_size=batch_size)


# --------------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.classifier_features",
        description="Train the small classifier behind classifier-FID / classifier-IS (not comparable to "
        "published Inception numbers).",
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument(
        "--source",
        default=None,
        help=".npz, image folder, CIFAR batches folder or tar archive (default: the dataset cache of download.py)",
    )
    parser.add_argument("--out", required=True, help="output .keras file (a .json with the details is written beside)")
    parser.add_argument("--epochs", type=int, default=None, help="default: mnist 3, cifar10 5")
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_train", type=int, default=None, help="use only the first N training images")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


def run(args: argparse.Namespace) -> dict:
    """Train, evaluate on the held-out part (if any) and save; returns the metadata written."""
    out = Path(args.out)
    if out.suffix != ".keras":
        raise UsageError(f"--out {out}: must end in .keras")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out}: exists; pass --overwrite to replace it")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be >= 1, got {args.epochs}")
    (x, y), test = load_source(args.source, args.dataset)
    if args.max_train:
        x, y = x[: args.max_train], y[: args.max_train]
    model, history = train_classifier(
        x,
        y,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        seed=args.seed,
        validation=test,
    )
    meta = {
        "dataset": args.dataset,
        "source": str(args.source) if args.source else "download.py cache",
        "num_train": int(len(x)),
        "epochs": args.epochs or DATASETS[args.dataset].epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "train_accuracy": float(history["accuracy"][-1]),
        "test_accuracy": float(history["val_accuracy"][-1]) if test is not None else None,
        "note": "classifier-FID / classifier-IS: not comparable to published Inception FID / IS",
    }
    save_classifier(model, out, meta)
    print(json.dumps(meta))
    return meta


@exit_on_usage_error
def main(argv: list[str] | None = None) -> dict:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
