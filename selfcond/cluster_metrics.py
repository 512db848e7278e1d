"""NMI and purity of the inferred clusters: ``python selfcond/cluster_metrics.py CONFIG [--model_it IT] [--random]``.

Prints ``nmi X purity Y`` (purity as the original codes it, which is inverse purity, spec §10.2) plus the
textbook purity and the ARI. Predictions are cached in ``OUT/cluster_preds_{it}.npz`` (per iteration; the original's
single cache ignored ``--model_it``, spec §10.7). ``--random`` scores uniform labels in [0, 100) instead.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Evaluate the clustering inferred by our method")
    parser.add_argument("config", type=str, help="Path to config file.")
    parser.add_argument("--model_it", type=int, default=None, help="iteration (default: the newest)")
    parser.add_argument("--random", action="store_true", help="Figure out if the clusters were randomly assigned")
    parser.add_argument("--seed", type=int, default=None, help="port: seed of the data order and --random")
    parser.add_argument("--source", type=str, default=None, help="port: dataset file or folder")
    parser.add_argument("--nmi_average", choices=["arithmetic", "geometric"], default="arithmetic")
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv=None):
    args = parse_args(argv)
    from selfcond.config import load_config
    from selfcond.evaluation import cluster_metrics_for
    from selfcond.sampling import load_run

    config = load_config(args.config)
    state, it = load_run(config, args.model_it)
    scores = cluster_metrics_for(state, config, it, args)
    print("nmi", scores["nmi"], "purity", scores["purity"], "purity_standard", scores["purity_standard"], "ari",
          scores["ari"])
    return scores


if __name__ == "__main__":
    main()
