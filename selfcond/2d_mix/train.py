"""2-D mixture experiments: ``python selfcond/2d_mix/train.py --clusterer selfcondgan --data_type ring``.

Flags and defaults of the original ``2d_mix/train.py`` (spec §2.3); ``--seed`` and ``--jit_compile`` are
the port's. Output: ``OUTDIR/{data_type}_{clusterer}_{recluster_every}_{K}/`` with ``log.txt``,
``all/``, ``clusters/`` and ``snapshots/``.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="2d dataset experiments")
    parser.add_argument("--clusterer", help="selfcondgan, supervised, online, random_labels (or kmeans_fixed)")
    parser.add_argument("--data_type", help="either grid or ring")
    parser.add_argument("--recluster_every", type=int, default=5000, help="how frequently to recluster")
    parser.add_argument("--nruns", type=int, default=1, help="number of trials to do")
    parser.add_argument("--burnin_time", type=int, default=0, help="unused (as in the original)")
    parser.add_argument("--variance", type=float, default=None, help="variance of the gaussians")
    parser.add_argument("--model_type", type=str, default="standard", help="model architecture")
    parser.add_argument("--num_clusters", type=int, default=50, help="number of clusters to use for selfcondgan")
    parser.add_argument("--z_dim", type=int, default=2, help="G latent dim (only 2 works, as in the original)")
    parser.add_argument("--d_act_dim", type=int, default=200, help="hidden layer width")
    parser.add_argument("--npts", type=int, default=100000, help="number of points to use in dataset")
    parser.add_argument("--train_batch_size", type=int, default=100, help="training time batch size")
    parser.add_argument("--test_batch_size", type=int, default=50000, help="number of examples to get metrics with")
    parser.add_argument("--nepochs", type=int, default=100, help="number of epochs to run")
    parser.add_argument("--outdir", default="output")
    parser.add_argument("--seed", type=int, default=None, help="port: seed of every draw (default: random)")
    parser.add_argument("--jit_compile", action="store_true", help="port: compile the train step with XLA")
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv=None):
    from selfcond.mix2d.trainer import Config2D, run

    run(Config2D(**vars(parse_args(argv))))


if __name__ == "__main__":
    main()
