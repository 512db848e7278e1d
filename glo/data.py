"""GLO datasets: which folder, which ids are train and test, image reads, and the batch stream.

A dataset is a folder holding an HDF5 file (``data.hdf5``, or ``data.hy`` as the original README calls it) with
one group per id (``image`` uint8 [h, w, c], ``code`` [d], and after training ``update`` float32 [d]) and
``id.txt`` listing the ids. ``--dataset`` names one of the built-in folders (``MNIST`` -> ``datasets/mnist``,
made by ``download.py``) or is a path to such a folder (the README's "your own dataset", no code edit needed).
Finding the folder, the id list and the split are :mod:`common.data_glo`'s; this module adds the trainer's
file handle (codes are written through it), an image cache, the CIFAR-10 orientation fix and the batch order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np

from common import data_glo
from common.errors import UsageError
from glo import codes as code_store

REPO_ROOT = Path(__file__).resolve().parent.parent
NAMED = tuple(data_glo.GLO_SPLITS)  # MNIST, SVHN, CIFAR10


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset is and how it splits.

    Attributes:
        label: ``MNIST`` / ``SVHN`` / ``CIFAR10``, or the folder's base name (used in run-folder names).
        named: the built-in name, or None for a folder given by path.
        path: the HDF5 file.
        train_ids, test_ids: the ``RandomState(123)`` shuffle of the ``id.txt`` order, cut at the train size.
    """

    label: str
    named: str | None
    path: Path
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


def dataset_folder(dataset: str, flag: str = "--dataset") -> Path:
    """Resolve ``--dataset`` with :func:`common.data_glo.resolve_glo_dir` (``MNIST`` -> ``datasets/mnist``, a
    folder path, or a name under ``datasets/``), looking in the working directory first and then in the
    repository root, so the scripts work from the root and from inside ``glo/``."""
    try:
        return data_glo.resolve_glo_dir(dataset, "datasets")
    except UsageError as first:
        if Path(dataset).is_absolute() or Path.cwd().resolve() == REPO_ROOT:
            raise UsageError(str(first).replace("--dataset", flag, 1)) from None
        try:
            return data_glo.resolve_glo_dir(dataset, REPO_ROOT / "datasets")
        except UsageError:
            raise UsageError(str(first).replace("--dataset", flag, 1)) from None


def describe(dataset: str, num_train: int | None = None) -> DatasetInfo:
    """Find the dataset and compute its split; ``num_train`` overrides the default size (spec §6.4)."""
    folder = dataset_folder(dataset)
    path = data_glo.find_h5_file(folder)
    ids = data_glo.read_ids(folder)
    if not ids:
        raise UsageError(f"--dataset: {folder / 'id.txt'} lists no ids")
    named = dataset if dataset in NAMED else None
    if num_train is None:
        num_train = data_glo.default_num_train(named or "", len(ids))
    if not 1 <= num_train <= len(ids):
        raise UsageError(f"--num_train {num_train}: expected 1..{len(ids)} (the dataset has {len(ids)} ids)")
    train_ids, test_ids = data_glo.split_ids(ids, num_train)
    label = named if named is not None else folder.resolve().name
    return DatasetInfo(label=label, named=named, path=path, train_ids=tuple(train_ids), test_ids=tuple(test_ids))


class DataFile:
    """An open dataset file: images and codes by id.

    Args:
        info: from :func:`describe`.
        writable: open read-write (the trainer stores codes); the evaler opens read-only.
        upright_cifar: transpose CIFAR-10 images back to upright on reading (``--fix_cifar_transpose``);
            ``download.py`` stores them transposed, as the original did (spec §8 #7).
        cache_images: keep every image read in memory (an epoch of MNIST is 47 MB).

    HDF5 file locking is off so an evaler can read while a trainer holds the file, as with the HDF5 1.8 of
    the original; the trainer writes codes only when it saves a checkpoint.
    """

    def __init__(self, info: DatasetInfo, writable: bool = False, upright_cifar: bool = False,
                 cache_images: bool = True):
        self.info = info
        try:
            self.file = h5py.File(info.path, "r+" if writable else "r", locking=False)
        except OSError as err:
            raise UsageError(f"--dataset: cannot open {info.path} as HDF5 ({err})") from None
        self.transpose = upright_cifar and info.named == "CIFAR10"
        self._cache: dict[str, np.ndarray] | None = {} if cache_images else None
        first = self.group(info.train_ids[0])
        if "image" not in first or "code" not in first:
            raise UsageError(f"--dataset: group {info.train_ids[0]!r} of {info.path} needs 'image' and 'code'")
        h, w, c = self.raw_image(info.train_ids[0]).shape
        self.image_shape = (w, h, c) if self.transpose else (h, w, c)
        self.latent_dim = int(first["code"].shape[0])

    def group(self, data_id: str) -> h5py.Group:
        try:
            return self.file[data_id]
        except KeyError:
            raise UsageError(f"--dataset: id {data_id!r} of id.txt has no group in {self.info.path}") from None

    def raw_image(self, data_id: str) -> np.ndarray:
        """uint8 [h, w, c] as stored."""
        image = self.group(data_id)["image"][()]
        return image[..., None] if image.ndim == 2 else image

    def image(self, data_id: str) -> np.ndarray:
        """uint8 [h, w, c] (upright when CIFAR-10 is being fixed), cached."""
        if self._cache is not None and data_id in self._cache:
            return self._cache[data_id]
        image = self.raw_image(data_id)
        if self.transpose:
            image = np.ascontiguousarray(image.transpose(1, 0, 2))
        if self._cache is not None:
            self._cache[data_id] = image
        return image

    def images(self, ids) -> np.ndarray:
        """float32 [n, h, w, c] in [-1, 1]: image / 255 * 2 - 1 (computed in float64 as the original)."""
        stack = np.stack([self.image(i) for i in ids]).astype(np.float64)
        return (stack / 255.0 * 2.0 - 1.0).astype(np.float32)

    def codes(self, ids) -> np.ndarray:
        """float32 [n, d]: each id's ``update`` if present, else its ``code``."""
        return np.stack([code_store.read_code(self.group(i)) for i in ids])

    def close(self) -> None:
        self.file.close()


class BatchStream:
    """The training order: a fresh random permutation of the ``n`` positions per epoch, concatenated into one
    endless stream and cut into consecutive batches of ``batch_size`` (spec §3.3).

    Batch ``s`` is a pure function of ``(seed, s)``, so a resumed run continues the same order without
    storing any iterator state.
    """

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self._epochs: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._epochs:
            if len(self._epochs) > 4:
                self._epochs.pop(min(self._epochs))
            self._epochs[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._epochs[epoch]

    def positions(self, s: int) -> np.ndarray:
        """int32 [batch_size]: positions (into the split's id list) of batch ``s``."""
        start = s * self.batch_size
        stream = np.arange(start, start + self.batch_size)
        return np.array([self._permutation(p // self.n)[p % self.n] for p in stream], dtype=np.int32)
