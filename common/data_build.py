"""``download.py``'s work: fill the cache, then build GLO's ``datasets/<name>/{data.hdf5,id.txt}`` (glo.md §2).

Per dataset: the cache is made complete (download or ``--source``, see ``common.datasets.ensure_cached``);
then, unless the GLO folder already holds both files ("<name> was downloaded.", as the original), the
images are read from the cache and written with their initial codes. A user's own dataset (any other name)
is built straight from an image folder. On a failure, folders this run created and left empty are removed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common import data_glo, datasets
from common.errors import UsageError

# The original's "… was downloaded." messages, word for word.
_DONE_LABEL = {"MNIST": "MNIST", "SVHN": "SVHN", "CIFAR10": "CIFAR"}


def build_datasets(names: list[str], *, distribution: str = "Uniform", dimension: int = 100, seed: int | None = None,
                   source: str | None = None, image_size: int | None = None, cache_dir: str | None = None,
                   cache_only: bool = False, mirrors: list[str] | None = None, progress: bool = True,
                   root: str | Path = "datasets") -> list[Path]:
    """Build every dataset of ``names`` (the flags of ``download.py``); returns the GLO dataset folders
    (the cache folders with ``cache_only``)."""
    _validate(names, source, image_size, cache_only)
    cache = datasets.cache_root(cache_dir)
    watched = [Path(root), cache.parent, cache, *(cache / d.folder for d in datasets.OFFICIAL.values())]
    new_dirs = [d for d in watched if not d.exists()]
    try:
        outputs = []
        for name in names:
            if name in datasets.OFFICIAL:
                outputs.append(_build_official(name, distribution, dimension, seed, source, cache_dir, cache_only,
                                               mirrors, progress, Path(root)))
            else:
                outputs.append(_build_own(name, distribution, dimension, seed, source, image_size, progress,
                                          Path(root)))
        return outputs
    except UsageError:
        for directory in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()  # a failed run leaves no empty folders behind either
        raise


def _build_official(name, distribution, dimension, seed, source, cache_dir, cache_only, mirrors, progress, root):
    out = root / datasets.OFFICIAL[name].folder
    cache = datasets.ensure_cached(name, cache_dir=cache_dir, source=source, mirrors=mirrors, progress=progress)
    if cache_only:
        return cache
    if data_glo.glo_dataset_complete(out):
        print(f"{_DONE_LABEL[name]} was downloaded.")
    else:
        images, features = data_glo.official_glo_images(name, cache)
        data_glo.build_glo_dataset(out, images, features, distribution, dimension, seed, progress=progress)
    return out


def _build_own(name, distribution, dimension, seed, source, image_size, progress, root):
    from common.data_sources import read_image_folder

    out = root / name
    if data_glo.glo_dataset_complete(out):
        print(f"{name} was downloaded.")
        return out
    splits, _ = read_image_folder(source, mode="auto", size=image_size, progress=progress)
    parts = [splits[s][0] for s in ("train", "test") if s in splits]
    images = parts[0] if len(parts) == 1 else np.concatenate(parts)
    data_glo.build_glo_dataset(out, images, images, distribution, dimension, seed, progress=progress)
    return out


def _validate(names: list[str], source: str | None, image_size: int | None, cache_only: bool) -> None:
    if source is not None and len(names) != 1:
        raise UsageError(f"--source {source}: give exactly one dataset with it, not {len(names)}")
    for name in names:
        if name in datasets.OFFICIAL:
            continue
        if source is None:
            raise UsageError(f"--datasets {name}: expected MNIST, SVHN or CIFAR10; another name builds your own "
                             "dataset and needs --source with an image folder")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UsageError(f"--datasets {name}: a dataset name may hold letters, digits, '_', '.' and '-' only")
    if cache_only and any(name not in datasets.OFFICIAL for name in names):
        raise UsageError("--cache_only: only MNIST, SVHN and CIFAR10 have a cache")
    if image_size is not None and (image_size < 1 or any(n in datasets.OFFICIAL for n in names)):
        raise UsageError(f"--image_size {image_size}: only for your own datasets, and positive")
