"""Training data of the Self-Conditioned GAN (spec §4.1, §4.2) and a deterministic batch loader.

Datasets (``data.type``):

- ``cifar10``: the 50000 CIFAR-10 training images, labels 0..9 (airplane ... truck). Read from the
  torchvision layout ``<train_dir>/cifar-10-batches-py/data_batch_1..5`` (or those files directly in
  ``train_dir``), or from an ImageFolder tree ``train/<class>/*`` (the offline JPEG copy, as a folder or
  a ``.tar.gz``), whose alphabetical class order is the CIFAR order.
- ``stacked_mnist``: three MNIST training digits per image, one per channel, 100000 fixed index triples
  (drawn with a ``random.Random(seed)``, as the original draws them with Python's ``random``); label
  100 y1 + 10 y2 + y3. MNIST is read from IDX files (``train-images-idx3-ubyte[.gz]``, in ``train_dir``,
  ``train_dir/raw`` or ``train_dir/MNIST/raw`` as torchvision stores them) or from a Keras ``mnist.npz``.
  Digits are resized 28 -> 32 with PIL bilinear; no flip, no noise.
- ``image``: an ImageFolder tree (label = index of the sorted sub-folder), images resized so that the
  shorter side is ``img_size`` (PIL bilinear) and centre-cropped.

The generic augmentation (when ``deterministic`` is false): random horizontal flip with p = 0.5, then
(v - 0.5) / 0.5, then + U[0, 1)/128 per value, so values lie in [-1, 1 + 1/128).

The loader is a function of (seed, stream, epoch): each pass over the data is a fresh permutation
(drop_last) and the augmentation of iteration ``it`` is drawn from (seed, stream, it), so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import gzip
import io
import pickle
import random
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

from common.errors import UsageError

ImageFile.LOAD_TRUNCATED_IMAGES = True  # the original tolerates truncated images
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STACKED_MNIST_SIZE = 100000
NUM_CLASSES = {"cifar10": 10, "stacked_mnist": 1000}


def resize_and_crop(image: Image.Image, size: int) -> np.ndarray:
    """torchvision ``Resize(size)`` (shorter side, PIL bilinear) + ``CenterCrop(size)`` -> uint8 [size, size, C]."""
    width, height = image.size
    if min(width, height) != size:
        if width <= height:
            new = (size, int(size * height / width))
        else:
            new = (int(size * width / height), size)
        image = image.resize(new, Image.BILINEAR)
        width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    if (width, height) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return np.asarray(image)


class ArrayImages:
    """Images held in memory: uint8 [N, H, W, C] and int64 labels [N]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool = True):
        self.images, self.labels, self.augment = images, np.asarray(labels, np.int64), augment

    def __len__(self) -> int:
        return len(self.images)

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.images[indices]


class FolderImages:
    """An ImageFolder tree read lazily (for ImageNet / Places), resized and cropped to ``size``."""

    def __init__(self, files: list[Path], labels: np.ndarray, size: int, augment: bool = True, workers: int = 8):
        self.files, self.labels, self.size, self.augment = files, np.asarray(labels, np.int64), size, augment
        self.workers = workers

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> np.ndarray:
        with Image.open(self.files[index]) as image:
            return resize_and_crop(image.convert("RGB"), self.size)

    def get(self, indices: np.ndarray) -> np.ndarray:
        with ThreadPoolExecutor(self.workers) as pool:
            return np.stack(list(pool.map(self._load, [int(i) for i in indices])))


class StackedMNIST:
    """Stacked MNIST (spec §4.2) as a dataset: item k = [digit(i1), digit(i2), digit(i3)] on the channels.

    Wraps :class:`common.data_selfcond.StackedMNIST` (digits resized to 32, fixed index triples, labels
    100 y1 + 10 y2 + y3) and returns uint8 images for the shared [-1, 1] mapping; no flip, no noise.
    """

    augment = False

    def __init__(self, stacked):
        self.stacked, self.labels = stacked, np.asarray(stacked.labels, np.int64)

    def __len__(self) -> int:
        return len(self.stacked)

    def get(self, indices: np.ndarray) -> np.ndarray:
        return np.moveaxis(self.stacked.digits[self.stacked.triples[indices]], 1, -1)


# --- readers ---------------------------------------------------------------------------------------


def _cifar_pickles(root: Path) -> list[Path] | None:
    for base in (root / "cifar-10-batches-py", root):
        files = [base / f"data_batch_{i}" for i in range(1, 6)]
        if all(f.exists() for f in files):
            return files
    return None


def read_cifar10_train(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The 50000 CIFAR-10 training images (uint8 [N, 32, 32, 3]) and labels from pickles or a JPEG tree."""
    root = Path(source)
    pickles = _cifar_pickles(root) if root.is_dir() else None
    if pickles:
        images, labels = [], []
        for path in pickles:
            with open(path, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.extend(batch[b"labels"])
        return np.concatenate(images), np.asarray(labels, np.int64)
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_image_tar(root, "train", 32)
    for tree in (root / "train", root):
        if tree.is_dir() and any(p.is_dir() for p in tree.iterdir()):
            files, labels, _ = list_image_folder(tree)
            return np.stack([resize_and_crop(Image.open(f).convert("RGB"), 32) for f in files]), labels
    raise UsageError(f"data.train_dir {str(source)!r}: no CIFAR-10 found (expected cifar-10-batches-py/"
                     "data_batch_1..5, a train/<class>/ image tree, or its .tar.gz)")


def _read_image_tar(path: Path, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """An ImageFolder tree ``<split>/<class>/<file>`` inside a tar archive (the offline CIFAR-10 JPEGs)."""
    members: dict[str, list[tuple[str, bytes]]] = {}
    with tarfile.open(path) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or split not in parts[:-2] or not member.name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            members.setdefault(parts[-2], []).append((member.name, archive.extractfile(member).read()))
    if not members:
        raise UsageError(f"{path}: no {split}/<class>/<image> files in the archive")
    images, labels = [], []
    for label, name in enumerate(sorted(members)):
        for _, blob in sorted(members[name]):
            images.append(resize_and_crop(Image.open(io.BytesIO(blob)).convert("RGB"), size))
            labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64)


def list_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """Files and labels of an ImageFolder tree (label = index of the sorted class folder)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"data.train_dir {str(root)!r}: not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(path)
                labels.append(label)
    if not files:
        raise UsageError(f"data.train_dir {str(root)!r}: no images in <class>/ sub-folders")
    return files, np.asarray(labels, np.int64), classes


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (2049, 2051):
        raise UsageError(f"{path}: not an MNIST IDX file (magic {magic}, expected 2049 or 2051)")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(magic - 2048)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)


def read_mnist_train(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The 60000 MNIST training digits uint8 [N, 28, 28] and labels, from IDX files or a Keras npz."""
    root = Path(source)
    if root.is_file() and root.suffix == ".npz":
        with np.load(root) as data:
            return data["x_train"], data["y_train"].astype(np.int64)
    for base in (root, root / "raw", root / "MNIST" / "raw"):
        for ext in ("", ".gz"):
            images, labels = base / f"train-images-idx3-ubyte{ext}", base / f"train-labels-idx1-ubyte{ext}"
            if images.exists() and labels.exists():
                return _read_idx(images), _read_idx(labels).astype(np.int64)
    raise UsageError(f"data.train_dir {str(source)!r}: no MNIST found (expected train-images-idx3-ubyte[.gz] "
                     "and train-labels-idx1-ubyte[.gz], or an mnist.npz)")


def _cifar10(root) -> tuple[np.ndarray, np.ndarray]:
    if root is not None and Path(root).exists():
        return read_cifar10_train(root)
    from common.data_selfcond import selfcond_cifar10

    return selfcond_cifar10()  # the download.py cache (UsageError naming the command when absent)


def _mnist(root) -> tuple[np.ndarray, np.ndarray]:
    if root is not None and Path(root).exists():
        return read_mnist_train(root)
    from common.datasets import load_mnist

    (x_train, y_train), _ = load_mnist()
    return x_train, np.asarray(y_train, np.int64)


def build_dataset(config: dict, source: str | Path | None = None, seed: int = 0):
    """The training set of a config tree (``data.type``).

    Read from ``source`` if given, else from ``data.train_dir`` when it exists, else (CIFAR-10, MNIST) from
    the dataset cache that ``python download.py --datasets CIFAR10 MNIST`` fills.
    """
    section = config["data"]
    kind, root = section["type"], source or section["train_dir"]
    size, augment = int(section["img_size"]), not bool(section.get("deterministic", False))
    if kind == "cifar10":
        images, labels = _cifar10(root)
        if images.shape[1] != size:
            images = np.stack([resize_and_crop(Image.fromarray(im), size) for im in images])
        return ArrayImages(images, labels, augment)
    if kind == "stacked_mnist":
        from common.data_selfcond import make_stacked_mnist

        digits, labels = _mnist(root)
        if size != 32:
            raise UsageError(f"data.img_size: Stacked MNIST is built at 32 pixels, got {size}")
        stacked = make_stacked_mnist(digits, labels, size=STACKED_MNIST_SIZE, py_rng=random.Random(seed))
        return StackedMNIST(stacked)
    if kind == "image":
        files, labels, _ = list_image_folder(root)
        return FolderImages(files, labels, size, augment)
    raise UsageError(f"data.type: {kind!r} is not supported by the port (expected cifar10, stacked_mnist or image)")


# --- batches -----------------------------------------------------------------------------------------


def to_model_range(images: np.ndarray, augment: bool, rng: np.random.Generator | None) -> np.ndarray:
    """uint8 [B, H, W, C] -> float32 in [-1, 1] (+ flip and U[0,1)/128 noise when ``augment``)."""
    x = images.astype(np.float32) / 255.0
    if augment:
        flip = rng.random(len(x)) < 0.5
        x[flip] = x[flip, :, ::-1]
    x = (x - 0.5) / 0.5
    if augment:
        x += rng.random(x.shape, dtype=np.float32) * (1.0 / 128)
    return x


STREAMS = {"train": 0, "test": 1, "cluster": 2, "eval": 3}


class Loader:
    """Shuffled, drop_last batches of a dataset as a pure function of (seed, stream, iteration).

    Args:
        dataset: ``ArrayImages``, ``FolderImages`` or ``StackedMNIST``.
        batch_size: B.
        seed: the run's seed.
        stream: ``train``, ``test``, ``cluster`` or ``eval`` (independent orders and augmentations).
    """

    def __init__(self, dataset, batch_size: int, seed: int, stream: str = "train"):
        if len(dataset) < batch_size:
            raise UsageError(f"training.batch_size {batch_size}: the dataset has only {len(dataset)} images")
        self.dataset, self.batch_size, self.seed, self.stream = dataset, batch_size, seed, STREAMS[stream]
        self.batches_per_epoch = len(dataset) // batch_size
        self._order, self._epoch = None, -1

    def __len__(self) -> int:
        return self.batches_per_epoch

    def batch(self, it: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch number ``it`` (0-based over all epochs): (x float32 [B, H, W, C], y int64 [B])."""
        epoch, index = divmod(it, self.batches_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, self.stream, epoch]).permutation(len(self.dataset))
            self._epoch = epoch
        indices = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.stream, 1 << 20, it])
        x = to_model_range(self.dataset.get(indices), self.dataset.augment, rng)
        return x, self.dataset.labels[indices]

    def first(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The original's ``get_nsamples``: whole batches of one pass until more than n, then the first n."""
        xs, ys, count, it = [], [], 0, 0
        while count <= n and it < self.batches_per_epoch:
            x, y = self.batch(it)
            xs.append(x)
            ys.append(y)
            count += len(x)
            it += 1
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]
