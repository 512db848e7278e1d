"""Building the dataset cache from a local copy (``download.py --source PATH``) instead of the network.

Accepted sources, per dataset:

- MNIST: a Keras ``mnist.npz`` (``x_train``, ``y_train``, ``x_test``, ``y_test``); a folder with the official
  IDX files (gzipped or not).
- SVHN: a folder with ``train_32x32.mat`` and ``test_32x32.mat``.
- CIFAR10: the official ``cifar-10-python.tar.gz``; a folder holding ``cifar-10-batches-py/`` (or being it).
- any of them: an image folder ``train/<class>/*`` (+ optional ``test/<class>/*``), as a folder or a
  ``.tar``/``.tar.gz`` of one.

Whatever the source, the cache ends up in the official formats (see ``common.datasets``), so every reader works
unchanged: e.g. CIFAR-10 built from the JPEG folder gets python batches ``data_batch_1..5``, ``test_batch`` and
``batches.meta``. Official files whose checksum differs from the official one are used with a warning (the
user chose them; their format is still checked when read).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import logging
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import data_formats as formats
from common import datasets
from common.downloads import checksum_problem
from common.errors import UsageError
from common.fileio import atomic_write_bytes, atomic_write_json

log = logging.getLogger("datasets")

_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_ARCHIVE_SUFFIXES)


def import_source(name: str, source: str | os.PathLike, folder: str | os.PathLike, progress: bool = True) -> None:
    """Fill the cache ``folder`` of official dataset ``name`` from the local copy ``source``.

    Raises:
        UsageError: the source does not exist or is none of the accepted kinds for ``name``.
    """
    source, folder = Path(source), Path(folder)
    if not source.exists():
        raise UsageError(f"--source {source}: no such file or folder")
    kind = {"MNIST": _import_mnist, "SVHN": _import_svhn, "CIFAR10": _import_cifar10}[name](source, folder, progress)
    atomic_write_json(folder / "SOURCE.json", {"origin": str(source.resolve()), "kind": kind})
    log.info("%s: cache %s built from %s (%s)", name, folder, source, kind)


def _warn_checksum(path: Path, resource_name: str, name: str) -> None:
    resource = next((r for r in datasets.OFFICIAL[name].resources if r.filename == resource_name), None)
    if resource is not None and (problem := checksum_problem(path, resource)):
        log.warning("%s: not the official file (%s); using it anyway", path, problem)


def _import_mnist(source: Path, folder: Path, progress: bool) -> str:
    if source.is_file() and source.suffix == ".npz":
        with np.load(source) as npz:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(npz.files)
            if missing:
                raise UsageError(f"--source {source}: a Keras mnist.npz needs x_train, y_train, x_test, y_test "
                                 f"(missing {', '.join(sorted(missing))})")
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
        _write_mnist(folder, arrays, str(source))
        return "keras npz"
    if source.is_dir() and any((source / f"train-images-idx3-ubyte{s}").is_file() for s in ("", ".gz")):
        # Labels first, images last: the cache counts as complete once the image files exist.
        for stem in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte",
                     "t10k-images-idx3-ubyte"):
            _copy_idx(source, stem, folder, required="images" in stem)
        return "IDX files"
    if _looks_like_image_folder(source):
        splits, _ = read_image_folder(source, mode="L", progress=progress)
        arrays = {}
        for split, key in (("train", "train"), ("test", "test")):
            images, labels = splits.get(split, (np.zeros((0, 28, 28, 1), np.uint8), np.zeros(0, np.int64)))
            arrays[f"x_{key}"], arrays[f"y_{key}"] = images, labels
        _write_mnist(folder, arrays, str(source))
        return "image folder"
    raise UsageError(f"--source {source}: expected a Keras mnist.npz, a folder with the MNIST IDX files, or an "
                     "image folder train/<class>/*")


def _write_mnist(folder: Path, arrays: dict[str, np.ndarray], where: str) -> None:
    for key in ("x_train", "x_test"):
        images = arrays[key]
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise UsageError(f"--source {where}: {key} has shape {images.shape}, expected [n, 28, 28]")
        arrays[key] = images
    for key, stem in (("y_train", "train-labels-idx1-ubyte"), ("y_test", "t10k-labels-idx1-ubyte"),
                      ("x_train", "train-images-idx3-ubyte"), ("x_test", "t10k-images-idx3-ubyte")):
        formats.write_idx(folder / f"{stem}.gz", np.asarray(arrays[key]).astype(np.uint8))


def _copy_idx(source: Path, stem: str, folder: Path, required: bool) -> None:
    target = folder / f"{stem}.gz"
    for candidate, gzipped in ((source / f"{stem}.gz", True), (source / stem, False)):
        if candidate.is_file():
            formats.read_idx(candidate)  # format check: raises a UsageError naming the file
            if gzipped:
                _warn_checksum(candidate, target.name, "MNIST")
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(candidate, folder / f".{target.name}.tmp")
                os.replace(folder / f".{target.name}.tmp", target)
            else:
                atomic_write_bytes(target, gzip.compress(candidate.read_bytes(), compresslevel=6, mtime=0))
            return
    if required:
        raise UsageError(f"--source {source}: {stem}(.gz) is missing")
    log.warning("--source %s: %s(.gz) is missing; readers that need MNIST labels will refuse", source, stem)


def _import_svhn(source: Path, folder: Path, progress: bool) -> str:
    if source.is_dir() and all((source / f).is_file() for f in datasets.SVHN_FILES):
        folder.mkdir(parents=True, exist_ok=True)
        for file in datasets.SVHN_FILES:
            _warn_checksum(source / file, file, "SVHN")
            shutil.copyfile(source / file, folder / f".{file}.tmp")
            os.replace(folder / f".{file}.tmp", folder / file)
        return "official .mat files"
    if _looks_like_image_folder(source):
        splits, _ = read_image_folder(source, mode="RGB", progress=progress)
        for split, file in zip(("train", "test"), datasets.SVHN_FILES):
            images, labels = splits.get(split, (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64)))
            _check_shape(images, (32, 32, 3), source)
            # SVHN stores the digit 0 as label 10; class folders are taken to be the digits in sorted order.
            formats.write_svhn_mat(folder / file, images, np.where(labels == 0, 10, labels))
        return "image folder"
    raise UsageError(f"--source {source}: expected a folder with train_32x32.mat and test_32x32.mat, or an "
                     "image folder train/<class>/*")


def _import_cifar10(source: Path, folder: Path, progress: bool) -> str:
    if is_archive(source) and _archive_has_batches(source):
        _warn_checksum(source, datasets.CIFAR_ARCHIVE, "CIFAR10")
        datasets.extract_cifar_archive(folder, archive=source)  # straight from the user's file, no copy
        return "official archive"
    batches = source / datasets.CIFAR_DIR if (source / datasets.CIFAR_DIR).is_dir() else source
    if batches.is_dir() and (batches / "data_batch_1").is_file():
        staging = folder / f".{datasets.CIFAR_DIR}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for file in (*formats.CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta"):
            if (batches / file).is_file():
                if file != "batches.meta":
                    formats.read_cifar_batch(batches / file)  # format check: raises a UsageError naming the file
                shutil.copyfile(batches / file, staging / file)
            elif file != "batches.meta":
                raise UsageError(f"--source {source}: {file} is missing")
        shutil.rmtree(folder / datasets.CIFAR_DIR, ignore_errors=True)
        os.replace(staging, folder / datasets.CIFAR_DIR)
        return "python batches"
    if _looks_like_image_folder(source):
        splits, classes = read_image_folder(source, mode="RGB", progress=progress)
        if len(classes) != 10:
            raise UsageError(f"--source {source}: CIFAR10 needs 10 class folders, found {len(classes)}")
        empty = (np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64))
        (x_train, y_train), (x_test, y_test) = splits["train"], splits.get("test", empty)
        for images in (x_train, x_test):
            _check_shape(images, (32, 32, 3), source)
        staging = folder / f".{datasets.CIFAR_DIR}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        formats.write_cifar_batches(staging, formats.images_to_cifar_rows(x_train), y_train,
                                    formats.images_to_cifar_rows(x_test), y_test, tuple(classes))
        shutil.rmtree(folder / datasets.CIFAR_DIR, ignore_errors=True)
        os.replace(staging, folder / datasets.CIFAR_DIR)
        return "image folder"
    raise UsageError(f"--source {source}: expected cifar-10-python.tar.gz, a folder with cifar-10-batches-py/, or "
                     "an image folder train/<class>/* (or a .tar.gz of one)")


def _check_shape(images: np.ndarray, shape: tuple[int, int, int], source: Path) -> None:
    if len(images) and images.shape[1:] != shape:
        raise UsageError(f"--source {source}: images are {list(images.shape[1:])}, expected {list(shape)}")


def _archive_has_batches(archive: Path) -> bool:
    """Whether the first file of the tar is one of the CIFAR python batch files (decided without a full scan)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isfile():
                    return os.path.basename(member.name) in {*formats.CIFAR_TRAIN_BATCHES, "test_batch",
                                                             "batches.meta", "readme.html"}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UsageError(f"--source {archive}: not a readable tar archive ({err})") from None
    return False


def _looks_like_image_folder(source: Path) -> bool:
    return is_archive(source) or (source.is_dir() and (source / "train").is_dir())


# ------------------------------------------------------------------------------------- image folder arrays


def read_image_folder(source: str | os.PathLike, mode: str = "RGB", size: int | None = None,
                      progress: bool = True) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Decode an image folder (``train/<class>/**`` and optional ``test/<class>/**``; a folder or a tar).

    Args:
        source: the folder, or a ``.tar``/``.tar.gz`` containing it (possibly under a top folder).
        mode: ``"RGB"``, ``"L"``, or ``"auto"`` (one channel if every image is greyscale, else RGB).
        size: resize the shorter side to ``size`` and centre-crop ``size``² (else all images must share a size).

    Returns:
        ``({"train": (images, labels), "test": (...)}, classes)``: images uint8 [n, h, w, c], labels int64 [n]
        = index of the class folder in the sorted train class names.
    """
    source = Path(source)
    items: dict[str, list[tuple[str, tuple[str, str], bytes | str]]] = {}
    if is_archive(source):
        for split, cls, key, data in tqdm(formats.iter_tar_images(source), desc=f"reading {source.name}",
                                          unit="img", disable=not progress, mininterval=0.5):
            items.setdefault("test" if split == "val" else split, []).append((cls, key, data))
    else:
        for split, folder_name in (("train", "train"), ("test", "test"), ("test", "val")):
            split_dir = formats.find_split_dir(source, folder_name)
            if split_dir is None or split in items:
                continue
            paths, _, _ = formats.list_image_folder(split_dir)
            items[split] = [(Path(p).relative_to(split_dir).parts[0], ("", ""), p) for p in paths]
    if "train" not in items:
        raise UsageError(f"--source {source}: no train/<class>/<image> files found")
    classes = sorted({cls for cls, _, _ in items["train"]})
    index = {cls: i for i, cls in enumerate(classes)}
    result = {}
    for split, entries in items.items():
        entries.sort(key=lambda e: (e[0], e[1]))  # ImageFolder order; a no-op for folder listings
        unknown = {cls for cls, _, _ in entries} - set(index)
        if unknown:
            raise UsageError(f"--source {source}: {split} classes {sorted(unknown)[:3]} are not train classes")
        images = _decode_all([data for _, _, data in entries], mode, size, f"{source} ({split})", progress)
        result[split] = (images, np.asarray([index[cls] for cls, _, _ in entries], dtype=np.int64))
    return result, classes


def _decode_all(sources: list, mode: str, size: int | None, where: str, progress: bool) -> np.ndarray:
    """Decode in a thread pool (PIL releases the GIL while decoding) and stack into one uint8 array."""

    def decode(item):
        return formats.decode_image(item, mode, size, item if isinstance(item, str) else where)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 1)) as pool:
        arrays = list(tqdm(pool.map(decode, sources, chunksize=256), total=len(sources), desc=f"decoding {where}",
                           unit="img", disable=not progress, mininterval=0.5))
    if not arrays:
        return np.zeros((0, size or 0, size or 0, 1 if mode == "L" else 3), np.uint8)
    if mode == "auto" and len({a.shape[-1] for a in arrays}) > 1:
        arrays = [np.repeat(a, 3, axis=-1) if a.shape[-1] == 1 else a for a in arrays]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UsageError(f"{where}: images have different sizes ({sorted(shapes)[:2]}); pass --image_size N to "
                         "resize and centre-crop them")
    return np.stack(arrays)
