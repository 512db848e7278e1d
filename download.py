"""Build GLO's datasets (``datasets/<name>/data.hdf5`` + ``id.txt``) and the raw-file cache the other papers read.

    python download.py --datasets MNIST SVHN CIFAR10 [--distribution {Uniform,Gaussian,PCA}] [--dimension 100]
    python download.py --datasets MNIST --source mnist.npz --distribution PCA --dimension 10
    python download.py --datasets CIFAR10 --source cifar10_jpg/          # image folder train/<class>/*
    python download.py --datasets my_faces --source faces.tar.gz --image_size 64   # your own GLO dataset
    python download.py --datasets CIFAR10 --cache_only                   # only the cache (SLOGAN, selfcond, ConGAN)

The official files are downloaded (mirrors tried in order, checksums verified, partial downloads resumed)
into the cache ``datasets/.cache/<mnist|svhn|cifar10>/`` (``--cache_dir`` or ``$LATENT_GANS_CACHE`` to move
it) and kept there for the other readers; ``--source`` builds the cache from a local copy instead. Running
the same command again does nothing; an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

import numpy as np

from common import data_glo, datasets
from common.errors import UsageError, exit_on_usage_error

# The original's "… was downloaded." messages, word for word.
_DONE_LABEL = {"MNIST": "MNIST", "SVHN": "SVHN", "CIFAR10": "CIFAR"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Download dataset for GLO.")
    parser.add_argument("--datasets", metavar="N", type=str, nargs="+", required=True,
                        help="MNIST, SVHN, CIFAR10, or the name of your own dataset (needs --source)")
    parser.add_argument("--dimension", type=int, default=100, help="length d of each latent code")
    parser.add_argument("--distribution", type=str, default="Uniform", choices=list(data_glo.DISTRIBUTIONS),
                        help="initial codes: Uniform U[-1,1), Gaussian N(0,1) (both not normalised), or unit-norm PCA")
    parser.add_argument("--seed", type=int, default=None, help="seed of the code draw (default: unseeded, as the "
                        "original)")
    parser.add_argument("--source", type=str, default=None,
                        help="build from a local copy instead of the network: official files, a Keras mnist.npz, or "
                        "an image folder train/<class>/* [test/<class>/*] (a folder or a .tar.gz)")
    parser.add_argument("--image_size", type=int, default=None,
                        help="own datasets: resize the shorter side and centre-crop to this size")
    parser.add_argument("--cache_dir", type=str, default=None,
                        help=f"raw-file cache (default ${datasets.CACHE_ENV} or datasets/.cache)")
    parser.add_argument("--cache_only", action="store_true", help="fill the cache only, build no GLO h5 file")
    parser.add_argument("--mirror", action="append", default=None, metavar="BASE_URL",
                        help="base URL or folder serving the official file names, used instead of the official "
                        f"URLs (repeatable; also ${datasets.MIRROR_ENV})")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace, root: str | Path = "datasets") -> list[Path]:
    """Build every requested dataset; returns the GLO dataset folders (the cache folders with --cache_only)."""
    _validate(args)
    cache = datasets.cache_root(args.cache_dir)
    watched = [Path(root), cache.parent, cache, *(cache / d.folder for d in datasets.OFFICIAL.values())]
    new_dirs = [d for d in watched if not d.exists()]
    try:
        return _run(args, root)
    except UsageError:
        for directory in sorted(new_dirs, key=lambda d: len(d.parts), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()  # a failed run leaves no empty folders behind either
        raise


def _run(args: argparse.Namespace, root: str | Path) -> list[Path]:
    progress = not args.no_progress
    outputs = []
    for name in args.datasets:
        if name in datasets.OFFICIAL:
            out = Path(root) / datasets.OFFICIAL[name].folder
            cache = datasets.ensure_cached(name, cache_dir=args.cache_dir, source=args.source, mirrors=args.mirror,
                                           progress=progress)
            if args.cache_only:
                outputs.append(cache)
                continue
            if data_glo.glo_dataset_complete(out):
                print(f"{_DONE_LABEL[name]} was downloaded.")
            else:
                images, features = data_glo.official_glo_images(name, cache)
                data_glo.build_glo_dataset(out, images, features, args.distribution, args.dimension, args.seed,
                                           progress=progress)
        else:
            out = Path(root) / name
            if data_glo.glo_dataset_complete(out):
                print(f"{name} was downloaded.")
            else:
                from common.data_sources import read_image_folder

                splits, _ = read_image_folder(args.source, mode="auto", size=args.image_size, progress=progress)
                parts = [splits[s][0] for s in ("train", "test") if s in splits]
                images = parts[0] if len(parts) == 1 else np.concatenate(parts)
                data_glo.build_glo_dataset(out, images, images, args.distribution, args.dimension, args.seed,
                                           progress=progress)
        outputs.append(out)
    return outputs


def _validate(args: argparse.Namespace) -> None:
    if args.source is not None and len(args.datasets) != 1:
        raise UsageError(f"--source {args.source}: give exactly one dataset with it, not {len(args.datasets)}")
    for name in args.datasets:
        if name in datasets.OFFICIAL:
            continue
        if args.source is None:
            raise UsageError(f"--datasets {name}: expected MNIST, SVHN or CIFAR10; another name builds your own "
                             "dataset and needs --source with an image folder")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise UsageError(f"--datasets {name}: a dataset name may hold letters, digits, '_', '.' and '-' only")
    if args.cache_only and any(name not in datasets.OFFICIAL for name in args.datasets):
        raise UsageError("--cache_only: only MNIST, SVHN and CIFAR10 have a cache")
    if args.image_size is not None and (args.image_size < 1 or any(n in datasets.OFFICIAL for n in args.datasets)):
        raise UsageError(f"--image_size {args.image_size}: only for your own datasets, and positive")


@exit_on_usage_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
