"""The dataset cache and the array readers every paper uses (MNIST, CIFAR-10, SVHN); no TensorFlow.

``python download.py`` fills a cache with the official files (or files written in the official formats from a
``--source``), and the readers here load them:

    <cache>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   # IDX, gzipped
    <cache>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}   # python pickles
    <cache>/cifar10/cifar-10-python.tar.gz                             # kept when downloaded
    <cache>/svhn/{train,test}_32x32.mat
    <cache>/<folder>/SOURCE.json                                       # where the files came from

``<cache>`` is, in this order: the ``cache_dir`` argument (``--cache_dir``), the environment variable
``LATENT_GANS_CACHE``, ``./datasets/.cache`` (beside GLO's ``./datasets/<name>``). Readers also look in
``<repo>/datasets/.cache`` so scripts started from inside their folder find it.

Other data modules: ``common.data_glo`` (GLO's h5 files), ``common.data_slogan`` (synthetic mixture, CIFAR-2),
``common.data_selfcond`` (Stacked MNIST, 2-D mixtures), ``common.data_pipelines`` (tf.data image pipelines),
``common.data_sources`` (building the cache from local copies).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np

from common import data_formats as formats
from common.downloads import Resource, RetryPolicy, fetch
from common.errors import UsageError
from common.fileio import atomic_write_json

log = logging.getLogger("datasets")

CACHE_ENV = "LATENT_GANS_CACHE"
MIRROR_ENV = "LATENT_GANS_MIRROR"
DEFAULT_CACHE = Path("datasets") / ".cache"
REPO_ROOT = Path(__file__).resolve().parents[1]

_MNIST_BASES = (
    "http://yann.lecun.com/exdb/mnist/",  # the original; intermittently 403 since ~2023
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # TensorFlow's mirror
)
_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


@dataclasses.dataclass(frozen=True)
class OfficialDataset:
    """One of GLO's three datasets: its cache folder, official files and stored image shape."""

    name: str
    folder: str
    resources: tuple[Resource, ...]
    image_shape: tuple[int, int, int]


OFFICIAL: dict[str, OfficialDataset] = {
    "MNIST": OfficialDataset("MNIST", "mnist", tuple(
        Resource(name, tuple(base + name for base in _MNIST_BASES), md5=md5) for name, md5 in _MNIST_MD5.items()
    ), (28, 28, 1)),
    "SVHN": OfficialDataset("SVHN", "svhn", (
        Resource("train_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",),
                 md5="e26dedcc434d2e4c54c9b2d4a06d8373"),
        Resource("test_32x32.mat", ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",),
                 md5="eb5a983be6a315427106f1b164d9cef3"),
    ), (32, 32, 3)),
    "CIFAR10": OfficialDataset("CIFAR10", "cifar10", (
        Resource(CIFAR_ARCHIVE, ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                 md5="c58f30108f718f92721af3b95e74349a",
                 sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    ), (32, 32, 3)),
}


# ------------------------------------------------------------------------------------------ cache locations


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``download.py`` writes: ``cache_dir``, else ``$LATENT_GANS_CACHE``, else ``./datasets/.cache``."""
    if cache_dir:
        return Path(cache_dir)
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _candidate_roots(cache_dir: str | os.PathLike | None) -> list[Path]:
    if cache_dir:
        return [Path(cache_dir)]
    roots = [Path(os.environ[CACHE_ENV])] if os.environ.get(CACHE_ENV) else []
    roots += [DEFAULT_CACHE.resolve(), REPO_ROOT / DEFAULT_CACHE]
    unique: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def is_cached(name: str, folder: str | os.PathLike) -> bool:
    """Whether ``folder`` (``<cache>/<dataset folder>``) holds what the readers of ``name`` need."""
    folder = Path(folder)
    if name == "MNIST":
        return all((folder / f).is_file() for f in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"))
    if name == "SVHN":
        return all((folder / f).is_file() for f in SVHN_FILES)
    if name == "CIFAR10":
        return _cifar_batches_complete(folder / CIFAR_DIR) or (folder / CIFAR_ARCHIVE).is_file()
    raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(OFFICIAL)}")


def find_cache(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder of dataset ``name`` (``MNIST``, ``SVHN`` or ``CIFAR10``) for reading.

    Raises:
        UsageError: not found in any candidate root; the message says which command fills the cache.
    """
    spec = _official(name)
    roots = _candidate_roots(cache_dir)
    for root in roots:
        if is_cached(name, root / spec.folder):
            return root / spec.folder
    looked = ", ".join(str(root / spec.folder) for root in roots)
    raise UsageError(
        f"{name} is not in the dataset cache (looked in {looked}); run "
        f"`python download.py --datasets {name} --cache_only` (add --source PATH to use a local copy)"
    )


def _official(name: str) -> OfficialDataset:
    if name not in OFFICIAL:
        raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(OFFICIAL)}")
    return OFFICIAL[name]


def mirror_bases(mirrors: list[str] | None) -> list[str]:
    """Base URLs/directories replacing the official URLs: ``--mirror`` values, else ``$LATENT_GANS_MIRROR``."""
    if mirrors:
        return list(mirrors)
    env = os.environ.get(MIRROR_ENV, "")
    return [part for part in env.replace(",", " ").split() if part]


# ------------------------------------------------------------------------------------------- filling it


def ensure_cached(name: str, *, cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
                  mirrors: list[str] | None = None, policy: RetryPolicy | None = None, progress: bool = True) -> Path:
    """Make ``<cache>/<folder>`` complete for dataset ``name`` and return that folder.

    Does nothing when it is complete already. Otherwise builds it from ``source`` (see
    :func:`common.data_sources.import_source`) or downloads the official files (from ``mirrors`` instead of
    the official URLs when given). The CIFAR-10 archive is extracted to ``cifar-10-batches-py``.
    """
    spec = _official(name)
    folder = cache_root(cache_dir) / spec.folder
    if is_cached(name, folder):
        log.info("%s: found in the cache %s", name, folder)
        if source is not None:
            log.warning("%s: --source %s not used, the cache is complete (delete %s to rebuild it from the source)",
                        name, source, folder)
    elif source is not None:
        from common.data_sources import import_source

        import_source(name, source, folder, progress=progress)
    else:
        bases = mirror_bases(mirrors)
        for resource in spec.resources:
            fetch(resource.with_bases(bases) if bases else resource, folder, policy=policy, progress=progress)
        atomic_write_json(folder / "SOURCE.json", {"origin": "download", "urls": bases or "official"})
    if name == "CIFAR10":
        extract_cifar_archive(folder)
    return folder


def _cifar_batches_complete(directory: Path) -> bool:
    return all((directory / f).is_file() for f in (*formats.CIFAR_TRAIN_BATCHES, "test_batch"))


def extract_cifar_archive(folder: str | os.PathLike, archive: str | os.PathLike | None = None) -> Path:
    """Extract the CIFAR-10 batches of ``archive`` (default ``folder/cifar-10-python.tar.gz``) to
    ``folder/cifar-10-batches-py``, unless they are there already.

    Extraction goes to a temporary folder that is renamed when complete, so an interrupted run leaves no
    half-extracted batches under the final name.
    """
    folder = Path(folder)
    target = folder / CIFAR_DIR
    if _cifar_batches_complete(target):
        return target
    archive = Path(archive) if archive is not None else folder / CIFAR_ARCHIVE
    if not archive.is_file():
        raise UsageError(f"{folder}: neither {CIFAR_DIR}/ nor {CIFAR_ARCHIVE} is there")
    staging = folder / f".{CIFAR_DIR}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    wanted = {*formats.CIFAR_TRAIN_BATCHES, "test_batch", "batches.meta"}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                base = os.path.basename(member.name)
                if member.isfile() and base in wanted:
                    with tar.extractfile(member) as src, open(staging / base, "wb") as dst:
                        shutil.copyfileobj(src, dst)
    except (tarfile.TarError, OSError, EOFError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"{archive}: cannot extract the CIFAR-10 batches ({err})") from None
    if not _cifar_batches_complete(staging):
        shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"{archive}: does not contain {CIFAR_DIR}/data_batch_1..5 and test_batch")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    return target


# ------------------------------------------------------------------------------------------------ readers


def load_mnist(cache_dir: str | os.PathLike | None = None, with_labels: bool = True):
    """MNIST from the cache, like ``keras.datasets.mnist.load_data()``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 [n, 28, 28] in 0..255 (60000 and 10000 for the real
        set), y uint8 [n] in 0..9. With ``with_labels=False`` the y are None (GLO needs images only).
    """
    folder = find_cache("MNIST", cache_dir)
    out = []
    for prefix in ("train", "t10k"):
        images = formats.read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = None
        if with_labels:
            path = folder / f"{prefix}-labels-idx1-ubyte.gz"
            if not path.is_file():
                raise UsageError(f"{path}: MNIST labels are missing from the cache (the source had images only)")
            labels = formats.read_idx(path)
            if len(labels) != len(images):
                raise UsageError(f"{path}: {len(labels)} labels for {len(images)} images")
        out.append((images, labels))
    return tuple(out)


def read_cifar10_rows(cache_dir: str | os.PathLike | None = None):
    """CIFAR-10 rows as stored: ``(train_rows, train_labels), (test_rows, test_labels)``.

    Returns:
        rows uint8 [n, 3072] in CHW order (train = data_batch_1..5 concatenated), labels int64 [n].
    """
    directory = extract_cifar_archive(find_cache("CIFAR10", cache_dir))
    train = [formats.read_cifar_batch(directory / name) for name in formats.CIFAR_TRAIN_BATCHES]
    test = formats.read_cifar_batch(directory / "test_batch")
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train])), test


def load_cifar10(cache_dir: str | os.PathLike | None = None):
    """CIFAR-10 from the cache, exactly as ``keras.datasets.cifar10.load_data()`` returns it.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 [n, 32, 32, 3] (upright, HWC, 0..255; 50000 and
        10000 for the real set), y uint8 [n, 1] in 0..9 (airplane = 0 … truck = 9).
    """
    (train_rows, train_labels), (test_rows, test_labels) = read_cifar10_rows(cache_dir)
    return ((formats.cifar_rows_to_images(train_rows), train_labels.astype(np.uint8).reshape(-1, 1)),
            (formats.cifar_rows_to_images(test_rows), test_labels.astype(np.uint8).reshape(-1, 1)))


def cifar10_class_names(cache_dir: str | os.PathLike | None = None) -> tuple[str, ...]:
    """``label_names`` of ``batches.meta`` (the 10 official names when the file is absent)."""
    import pickle

    meta = extract_cifar_archive(find_cache("CIFAR10", cache_dir)) / "batches.meta"
    if not meta.is_file():
        return formats.CIFAR10_CLASSES
    with open(meta, "rb") as handle:
        content = pickle.load(handle, encoding="latin1")
    names = content.get("label_names", content.get(b"label_names", formats.CIFAR10_CLASSES))
    return tuple(n.decode() if isinstance(n, bytes) else n for n in names)


def load_svhn(cache_dir: str | os.PathLike | None = None):
    """SVHN (cropped digits, train and test) from the cache.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: x uint8 [n, 32, 32, 3] (73257 and 26032 for the real set),
        y uint8 [n] in 0..9 (the file's label 10 mapped to the digit 0, as torchvision does).
    """
    folder = find_cache("SVHN", cache_dir)
    out = []
    for file in SVHN_FILES:
        images, labels = formats.read_svhn_mat(folder / file)
        out.append((images, np.where(labels == 10, 0, labels).astype(np.uint8)))
    return tuple(out)
