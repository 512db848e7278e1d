"""Readers and writers of the official on-disk dataset formats (no TensorFlow).

- MNIST IDX files (optionally gzipped): big-endian header ``0 0 dtype ndim`` + ``ndim`` uint32 sizes, then the
  values row-major. Images have magic 2051 ([n, 28, 28] uint8), labels 2049 ([n] uint8).
- CIFAR-10 python batches: pickles of a dict with ``data`` uint8 [n, 3072] (1024 R, then G, then B values, each
  plane row-major, i.e. CHW) and ``labels``; ``batches.meta`` holds ``label_names``.
- SVHN ``*_32x32.mat``: MATLAB files with ``X`` uint8 [32, 32, 3, n] and ``y`` [n, 1] in 1..10 (10 = digit 0).
- Image folders ``<split>/<class>/**/<image>``, as a directory or inside a ``.tar``/``.tar.gz``; the label of
  an image is the index of its class folder in sorted order (torchvision ``ImageFolder``).

Every writer is atomic (temporary file, then ``os.replace``). Every reader raises ``UsageError`` naming the
file when it is not in the expected format.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from common.errors import UsageError
from common.fileio import atomic_write_bytes

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# ----------------------------------------------------------------------------------------------- MNIST IDX


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (gzipped or raw, detected from the content) into an array of its declared shape.

    Returns:
        uint8 [n, rows, cols] for image files (magic 2051), uint8 [n] for label files (magic 2049).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UsageError(f"{path}: not a readable (gzipped) IDX file ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise UsageError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(v) for v in np.frombuffer(raw[4:header], dtype=">u4"))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UsageError(f"{path}: IDX header says {shape} ({expected} bytes) but {len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array (magic 2051 for [n, rows, cols], 2049 for [n])."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzipped (deterministic header, mtime 0) when the name ends in ``.gz``."""
    data = encode_idx(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    atomic_write_bytes(path, data)


# ----------------------------------------------------------------------------------------- CIFAR-10 pickles


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch.

    Returns:
        data: uint8 [n, 3072], rows in CHW order as stored.
        labels: int64 [n] in 0..9.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            # latin-1 turns the Python-2 byte-string keys into str keys (the original's Python-3 fallback).
            batch = pickle.load(handle, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise UsageError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    batch = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise UsageError(f"{path}: CIFAR-10 batch without 'data' and 'labels' keys")
    data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3072)
    labels = np.asarray(batch["labels"], dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise UsageError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data, labels


def cifar_rows_to_images(rows: np.ndarray) -> np.ndarray:
    """[n, 3072] CHW rows -> uint8 [n, 32, 32, 3] upright HWC images (as keras.datasets.cifar10 returns)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def images_to_cifar_rows(images: np.ndarray) -> np.ndarray:
    """uint8 [n, 32, 32, 3] HWC images -> [n, 3072] CHW rows (inverse of :func:`cifar_rows_to_images`)."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2).reshape(-1, 3072))


def write_cifar_batches(directory: str | os.PathLike, train_rows: np.ndarray, train_labels: np.ndarray,
                        test_rows: np.ndarray, test_labels: np.ndarray,
                        label_names: tuple[str, ...] = CIFAR10_CLASSES) -> None:
    """Write ``data_batch_1..5``, ``test_batch`` and ``batches.meta`` in the official python format.

    The training rows are cut into 5 consecutive, nearly equal batches (10000 each for the real set).
    """
    directory = Path(directory)
    chunks = np.array_split(np.arange(len(train_rows)), 5)
    for number, (name, index) in enumerate(zip(CIFAR_TRAIN_BATCHES, chunks), start=1):
        _write_batch(directory / name, f"training batch {number} of 5", train_rows[index], train_labels[index])
    _write_batch(directory / "test_batch", "testing batch 1 of 1", test_rows, test_labels)
    meta = {b"num_cases_per_batch": int(len(chunks[0])), b"label_names": [n.encode() for n in label_names],
            b"num_vis": 3072}
    atomic_write_bytes(directory / "batches.meta", pickle.dumps(meta, protocol=4))


def _write_batch(path: Path, batch_label: str, rows: np.ndarray, labels: np.ndarray) -> None:
    # Byte-string keys and values as in the official (Python 2) files, so that readers using
    # encoding="bytes" (Keras) and encoding="latin1" (torchvision, ours) both work. Protocol 4 stores the
    # pixel bytes as they are (protocol 2 under Python 3 would inflate them by half).
    batch = {b"batch_label": batch_label.encode(), b"labels": [int(v) for v in labels],
             b"data": np.ascontiguousarray(rows, dtype=np.uint8),
             b"filenames": [f"{i:06d}.png".encode() for i in range(len(rows))]}
    atomic_write_bytes(path, pickle.dumps(batch, protocol=4))


# ------------------------------------------------------------------------------------------------ SVHN .mat


def read_svhn_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One SVHN cropped-digits file.

    Returns:
        images: uint8 [n, 32, 32, 3] (``X`` moved from [32, 32, 3, n]).
        labels: uint8 [n] as stored, 1..10 where 10 stands for the digit 0.
    """
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, MatReadError) as err:
        raise UsageError(f"{path}: not a readable SVHN .mat file ({err})") from None
    if "X" not in mat or mat["X"].ndim != 4:
        raise UsageError(f"{path}: SVHN .mat file without an X array of shape [32, 32, 3, n]")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)), dtype=np.uint8)
    labels = np.asarray(mat.get("y", np.zeros((len(images), 1))), dtype=np.uint8).reshape(-1)
    return images, labels


def write_svhn_mat(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write uint8 [n, 32, 32, 3] images and [n] labels (1..10) as an SVHN-style ``.mat`` file."""
    import scipy.io

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"X": np.transpose(np.asarray(images, dtype=np.uint8), (1, 2, 3, 0)),
                              "y": np.asarray(labels, dtype=np.uint8).reshape(-1, 1)})
    atomic_write_bytes(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------- image folders


def list_image_folder(split_dir: str | os.PathLike) -> tuple[list[str], np.ndarray, list[str]]:
    """Files of ``split_dir/<class>/**`` with an image extension, in torchvision ``ImageFolder`` order.

    Returns:
        paths: file paths, grouped by class in sorted class order; within a class, sorted by folder then name.
        labels: int64 [n], index of the class folder in sorted order.
        classes: sorted class folder names.
    """
    split_dir = Path(split_dir)
    classes = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for root, _, files in sorted(os.walk(split_dir / name, followlinks=True)):
            for file in sorted(files):
                if file.lower().endswith(IMAGE_EXTENSIONS):
                    paths.append(os.path.join(root, file))
                    labels.append(label)
    if not paths:
        raise UsageError(f"{split_dir}: no images found in <class>/ sub-folders")
    return paths, np.asarray(labels, dtype=np.int64), classes


def find_split_dir(root: str | os.PathLike, split: str) -> Path | None:
    """``root/<split>`` if it is a folder of class folders, else None."""
    candidate = Path(root) / split
    return candidate if candidate.is_dir() else None


def iter_tar_images(archive: str | os.PathLike) -> Iterator[tuple[str, str, tuple[str, str], bytes]]:
    """Stream ``(split, class, sort_key, bytes)`` for each image ``…/<split>/<class>/…/<file>`` in a tar.

    The split is the first path element named ``train``, ``test`` or ``val`` that has at least a class folder
    and a file below it, so both ``train/…`` and ``cifar10/train/…`` layouts work.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not member.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                parts = PurePosixPath(member.name).parts
                for depth, part in enumerate(parts[:-2]):
                    if part in ("train", "test", "val"):
                        inner = parts[depth + 1:]
                        data = tar.extractfile(member).read()
                        yield part, inner[0], ("/".join(inner[1:-1]), inner[-1]), data
                        break
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UsageError(f"{archive}: not a readable tar archive of an image folder ({err})") from None


def decode_image(data: bytes | str | os.PathLike, mode: str, size: int | None = None, where: str = "") -> np.ndarray:
    """Decode one image file (bytes or path) with PIL into uint8 [h, w, c] (c = 1 for mode 'L', 3 for 'RGB').

    Mode ``"auto"`` keeps greyscale images greyscale (c = 1) and converts everything else to RGB.

    With ``size``, the shorter side is resized to ``size`` (bilinear) and the centre ``size``² is cropped,
    as torchvision ``Resize(size)`` + ``CenterCrop(size)`` do.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            if mode == "auto":
                mode = "L" if image.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
            image = image.convert(mode)
    except (OSError, UnidentifiedImageError) as err:
        raise UsageError(f"{where or data}: not a readable image ({err})") from None
    if size is not None:
        width, height = image.size
        if min(width, height) != size:
            new = (size, int(size * height / width)) if width <= height else (int(size * width / height), size)
            image = image.resize(new, Image.BILINEAR)
        width, height = image.size
        left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array
