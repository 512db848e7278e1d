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
import sys
from pathlib import Path

from common import data_glo, datasets
from common.data_build import build_datasets
from common.errors import exit_on_usage_error


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
    """Build every requested dataset (see :func:`common.data_build.build_datasets`)."""
    return build_datasets(args.datasets, distribution=args.distribution, dimension=args.dimension, seed=args.seed,
                          source=args.source, image_size=args.image_size, cache_dir=args.cache_dir,
                          cache_only=args.cache_only, mirrors=args.mirror, progress=not args.no_progress, root=root)


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
