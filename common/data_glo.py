"""GLO's dataset files: building ``datasets/<name>/{data.hdf5,id.txt}`` and reading them (glo.md §2, §3.2, §6.4).

On-disk contract (the original's):

    datasets/<mnist|svhn|cifar10|YOUR_DATASET>/
      data.hdf5   # one group per id "0".."N-1": image uint8 [h, w, c], code float64 [d];
                  # training adds update float32 [d] (unit norm)
      id.txt      # the ids, one per line: train images first, then test images, in source order

Initial codes (§2.4), drawn from NumPy's legacy global RNG in id order (unseeded unless a seed is given):
Uniform U[-1, 1) and Gaussian N(0, 1), both *not* normalised; PCA = sklearn ``PCA(d)`` scores of all N
images / 255 (train and test together, centred, not whitened), each row divided by its L2 norm. The PCA is
solved exactly (glo.md §9 check 2), where the original's sklearn default was randomized for big inputs.

CIFAR-10 images are stored transposed (§2.2, bug 7): the 3072-row is reshaped in Fortran order, so
``image[a, b, ch] == row[ch*1024 + b*32 + a]``. The stored layout is part of the data contract (spec §8 #7);
readers that want upright images transpose at read time (``glo/`` has a flag for it).

A user's own dataset (the README's ``datasets/YOUR_DATASET``) is found by name or path, with ``data.hdf5`` or
the README's ``data.hy``; see :func:`resolve_glo_dir` and :class:`GloData`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common import data_formats as formats
from common import datasets
from common.errors import UsageError
from common.fileio import atomic_write_text

log = logging.getLogger("datasets")

DISTRIBUTIONS = ("Uniform", "Gaussian", "PCA")
# name -> (num_trains of datasets/<name>.py, total ids of the official file)   (glo.md §3.2, §6.4)
GLO_SPLITS = {"MNIST": (60000, 70000), "SVHN": (73257, 99289), "CIFAR10": (50000, 60000)}
H5_NAMES = ("data.hdf5", "data.hy")  # the code's name, then the README's


# ---------------------------------------------------------------------------------------------- building


def initial_codes(features: np.ndarray, distribution: str, dimension: int, rng=None) -> np.ndarray:
    """Initial latent codes, one row per example (glo.md §2.4).

    Args:
        features: uint8 [N, ...] images (or CIFAR rows); only PCA reads their values.
        distribution: ``Uniform``, ``Gaussian`` or ``PCA``.
        dimension: d.
        rng: a ``np.random.RandomState``; default the legacy global RNG (``np.random``), as the original.

    Returns:
        float64 [N, d]. One [N, d] draw consumes the legacy stream exactly like N draws of [d] in id order.
    """
    rng = np.random if rng is None else rng
    n = len(features)
    if distribution == "Uniform":
        return rng.random_sample((n, dimension)) * 2 - 1
    if distribution == "Gaussian":
        return rng.standard_normal((n, dimension))
    if distribution == "PCA":
        from sklearn.decomposition import PCA

        x = np.array(features, dtype=np.float64).reshape(n, -1)
        x /= 255.0  # in place: SVHN's float64 copy alone is 2.4 GB
        if dimension > min(x.shape):
            raise UsageError(f"--dimension {dimension}: PCA needs at most min(images, pixels) = {min(x.shape)}")
        # An exact solver: sklearn's default ("auto") picks the randomized one for inputs above 500 x 500,
        # an approximation (errors ~1e-4 on small sets) that also draws from the global RNG.
        scores = PCA(n_components=dimension, svd_solver=_exact_pca_solver(x.shape)).fit_transform(x)
        return scores / np.linalg.norm(scores, axis=1, keepdims=True)
    raise UsageError(f"--distribution {distribution!r}: expected one of {', '.join(DISTRIBUTIONS)}")


def _exact_pca_solver(shape: tuple[int, int]) -> str:
    """An exact sklearn PCA solver: ``covariance_eigh`` when N ≥ 10·pixels (the real sets: fast, and what
    sklearn ≥ 1.5 itself picks there), else a ``full`` SVD."""
    import sklearn

    major, minor = (int(v) for v in sklearn.__version__.split(".")[:2])
    return "covariance_eigh" if (major, minor) >= (1, 5) and shape[0] >= 10 * shape[1] else "full"


def write_glo_h5(directory: str | os.PathLike, images: np.ndarray, codes: np.ndarray, progress: bool = True) -> Path:
    """Write ``directory/data.hdf5`` (group str(i): ``image``, ``code``) and ``directory/id.txt`` (prepare_h5py).

    Both files are written under temporary names and renamed at the end, ``id.txt`` last: a folder holding
    both is always complete (that is the skip test of ``download.py``).

    Args:
        images: uint8 [N, h, w, c].
        codes: float64 [N, d].
    """
    import h5py

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final, tmp = directory / "data.hdf5", directory / ".data.hdf5.tmp"
    images = np.asarray(images, dtype=np.uint8)
    with h5py.File(tmp, "w") as h5:
        for i in tqdm(range(len(images)), desc=f"writing {final}", unit="img", disable=not progress, mininterval=0.5):
            group = h5.create_group(str(i))
            group.create_dataset("image", data=images[i])
            group.create_dataset("code", data=np.asarray(codes[i], dtype=np.float64))
    os.replace(tmp, final)
    atomic_write_text(directory / "id.txt", "".join(f"{i}\n" for i in range(len(images))))
    return final


def glo_dataset_complete(directory: str | os.PathLike) -> bool:
    """The original's skip test: the folder holds both ``data.hdf5`` and ``id.txt``."""
    return (Path(directory) / "data.hdf5").is_file() and (Path(directory) / "id.txt").is_file()


def official_glo_images(name: str, cache_folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Images to store for ``name`` (train then test) and the features PCA sees, read from the cache.

    Returns:
        images: uint8 [N, h, w, c] (MNIST [28, 28, 1]; SVHN and CIFAR-10 [32, 32, 3], CIFAR transposed).
        features: uint8 [N, ...]: the images, or for CIFAR-10 the raw 3072-rows, as the original's PCA.
    """
    folder = Path(cache_folder)
    if name == "MNIST":
        parts = [formats.read_idx(folder / f"{p}-images-idx3-ubyte.gz") for p in ("train", "t10k")]
        images = np.concatenate(parts)[..., None]
        return images, images
    if name == "SVHN":
        images = np.concatenate([formats.read_svhn_mat(folder / f)[0] for f in datasets.SVHN_FILES])
        return images, images
    if name == "CIFAR10":
        (train_rows, _), (test_rows, _) = datasets.read_cifar10_rows(folder.parent)
        rows = np.concatenate([train_rows, test_rows])
        # The original reshapes each row to [32, 32, 3] in Fortran order: image[a, b, ch] = row[ch*1024 + b*32 + a],
        # channels right but rows and columns swapped (bug 7). Same values as the transpose below.
        return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 3, 2, 1)), rows
    raise UsageError(f"unknown dataset {name!r}")


def build_glo_dataset(directory: str | os.PathLike, images: np.ndarray, features: np.ndarray, distribution: str,
                      dimension: int, seed: int | None = None, progress: bool = True) -> Path:
    """Draw the initial codes (seeding the global legacy RNG first if ``seed`` is given) and write the files."""
    if dimension < 1:
        raise UsageError(f"--dimension {dimension}: expected a positive integer")
    if seed is not None:
        np.random.seed(seed)
    log.info("%s: %d images %s, %s codes of dimension %d", directory, len(images), list(images.shape[1:]),
             distribution, dimension)
    codes = initial_codes(features, distribution, dimension)
    return write_glo_h5(directory, images, codes, progress=progress)


# ----------------------------------------------------------------------------------------------- reading


def resolve_glo_dir(dataset: str, root: str | os.PathLike = "datasets") -> Path:
    """The folder of a GLO dataset given by name or path (glo.md §6.4).

    ``MNIST``/``SVHN``/``CIFAR10`` -> ``<root>/<lowercase>``; an existing folder path -> itself; any other name
    -> ``<root>/<name>`` (the README's ``datasets/YOUR_DATASET``).
    """
    if dataset in GLO_SPLITS:
        directory = Path(root) / dataset.lower()
    elif Path(dataset).is_dir():
        directory = Path(dataset)
    else:
        directory = Path(root) / dataset
    if not directory.is_dir():
        raise UsageError(f"--dataset {dataset}: no folder {directory}; expected MNIST, SVHN, CIFAR10 (built by "
                         "download.py) or a folder holding data.hdf5 (or data.hy) and id.txt")
    return directory


def find_h5_file(directory: str | os.PathLike) -> Path:
    """``data.hdf5``, else the README's ``data.hy`` (bug 13)."""
    for name in H5_NAMES:
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    raise UsageError(f"{directory}: neither data.hdf5 nor data.hy is there (run download.py or see the README)")


def read_ids(directory: str | os.PathLike) -> list[str]:
    """The stripped lines of ``id.txt``. Blank lines are skipped (the original would keep them as '' ids)."""
    path = Path(directory) / "id.txt"
    if not path.is_file():
        raise UsageError(f"{path}: missing; it must list the ids of data.hdf5, one per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def default_num_train(dataset: str, num_ids: int) -> int:
    """Train-split size when ``--num_train`` is absent (glo.md §6.4).

    Named datasets: their constant, or ⌊N·constant/official total⌋ when the file is not bigger than the constant
    (small fixtures). Path datasets: ⌊0.9·N⌋, leaving at least one test id when N ≥ 2.
    """
    if dataset in GLO_SPLITS:
        constant, total = GLO_SPLITS[dataset]
        return constant if num_ids > constant else num_ids * constant // total
    num_train = int(0.9 * num_ids)
    return min(num_train, num_ids - 1) if num_ids >= 2 else num_train


def split_ids(ids: Sequence[str], num_train: int) -> tuple[list[str], list[str]]:
    """Shuffle a copy of ``ids`` with ``RandomState(123)`` (the modules' fixed split) and cut at ``num_train``."""
    ids = list(ids)
    np.random.RandomState(123).shuffle(ids)
    return ids[:num_train], ids[num_train:]


class GloData:
    """An opened GLO dataset: ids, the random train/test split and the per-id image/code store.

    Args:
        dataset: ``MNIST``, ``SVHN``, ``CIFAR10``, a name under ``root`` or a folder path.
        root: folder of the named datasets (``datasets``).
        num_train: train-split size; default :func:`default_num_train`.
        code_update_mode: ``first_only`` (faithful write-once, bug 1) or ``every_step``.
        mode: h5py file mode; ``r+`` as the original (codes are written back), ``r`` for read-only use.

    Attributes:
        directory, name (the basename, for run-folder names), ids, train_ids, test_ids,
        data_info: (h, w, c, d) of the first train id.
    """

    def __init__(self, dataset: str, root: str | os.PathLike = "datasets", num_train: int | None = None,
                 code_update_mode: str = "first_only", mode: str = "r+"):
        import h5py

        if code_update_mode not in ("first_only", "every_step"):
            raise UsageError(f"--code_update_mode {code_update_mode!r}: expected first_only or every_step")
        self.directory = resolve_glo_dir(dataset, root)
        self.name = dataset if dataset in GLO_SPLITS else self.directory.name
        self.ids = read_ids(self.directory)
        if not self.ids:
            raise UsageError(f"{self.directory / 'id.txt'}: lists no ids")
        if num_train is None:
            num_train = default_num_train(dataset if dataset in GLO_SPLITS else "", len(self.ids))
        if not 0 < num_train <= len(self.ids):
            raise UsageError(f"--num_train {num_train}: expected 1..{len(self.ids)} for {self.directory}")
        self.train_ids, self.test_ids = split_ids(self.ids, num_train)
        self.code_update_mode = code_update_mode
        self._h5 = h5py.File(find_h5_file(self.directory), mode)
        first = self._group(self.train_ids[0])
        self.data_info = (*first["image"].shape, first["code"].shape[0])

    def _group(self, id_: str):
        if id_ not in self._h5:
            raise UsageError(f"{self._h5.filename}: no group {id_!r} (listed in id.txt)")
        return self._h5[id_]

    def get_data(self, id_: str) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 [h, w, c] = uint8/255·2 − 1 in [−1, 1], code float32 [d]: ``update`` if present)."""
        group = self._group(id_)
        image = group["image"][()].astype(np.float32) / 255.0 * 2.0 - 1.0
        code = group["update"][()] if "update" in group else group["code"][()]
        return image, np.asarray(code, dtype=np.float32)

    def get_batch(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Images float32 [B, h, w, c] in [−1, 1] and codes float32 [B, d] of ``ids``."""
        pairs = [self.get_data(i) for i in ids]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def set_data(self, id_: str, code: np.ndarray) -> bool:
        """Store ``code`` as the id's ``update`` (float32 [d]); returns whether anything was written.

        ``first_only`` (default): an existing ``update`` is left unchanged, like the original whose second
        write fails inside h5py and is swallowed (glo.md §1.5). ``every_step``: overwritten in place.
        """
        group = self._group(id_)
        value = np.asarray(code, dtype=np.float32)
        if "update" not in group:
            group.create_dataset("update", data=value)
            return True
        if self.code_update_mode == "every_step":
            group["update"][...] = value
            return True
        return False

    def set_batch(self, ids: Sequence[str], codes: np.ndarray) -> int:
        """:meth:`set_data` for each id; returns how many were written."""
        return sum(self.set_data(i, c) for i, c in zip(ids, codes))

    def flush(self) -> None:
        self._h5.flush()

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> GloData:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def id_batches(ids: Sequence[str], batch_size: int, rng: np.random.RandomState | None = None) -> Iterator[list[str]]:
    """Endless batches of exactly ``batch_size`` ids: per-epoch random permutations, concatenated (glo.md §3.3).

    Batches span epoch boundaries like the original's shuffle queue.
    """
    rng = np.random if rng is None else rng
    ids = list(ids)
    if not ids:
        raise UsageError("no ids to draw batches from")
    buffer: list[str] = []
    while True:
        while len(buffer) < batch_size:
            buffer.extend(ids[i] for i in rng.permutation(len(ids)))
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]
