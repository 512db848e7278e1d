"""Samples and inferred clusters: ``python selfcond/visualize_clusters.py CONFIG [--model_it IT] [--show_clusters]``.

Writes ``OUT/clusters/{i}_gen.png`` (and ``{i}_real.png`` with ``--show_clusters``) and
``OUT/clusters/+lightbox.html`` to browse them (spec §2.2).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Visualize the samples/clusters of a class-conditional GAN")
    parser.add_argument("config", type=str, help="Path to config file.")
    parser.add_argument("--model_it", type=int, help="If you want to load from a specific model iteration")
    parser.add_argument("--show_clusters", action="store_true", help="show the real images of each cluster")
    parser.add_argument("--source", type=str, default=None, help="port: dataset file or folder")
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv=None):
    args = parse_args(argv)
    from selfcond.config import load_config
    from selfcond.visualize import visualize

    return visualize(load_config(args.config), args.model_it, args.show_clusters, args.source)


if __name__ == "__main__":
    main()
