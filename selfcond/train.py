"""Train a (self-)conditioned GAN: ``python selfcond/train.py selfcond/configs/cifar/selfcondgan.yaml``.

Original flags (spec §2.1) plus the port's ``--seed``, ``--source`` (read the dataset from this file or
folder instead of ``data.train_dir``) and ``--jit_compile``. Outputs go to ``training.out_dir``
(``--outdir`` overrides it); running a finished experiment again does nothing, and running an
interrupted one continues it from its newest checkpoint. With ``TF_CONFIG`` naming a cluster, every worker runs
this same command (``MultiWorkerMirroredStrategy``; only the chief writes the run folder).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train a GAN with different regularization strategies.")
    parser.add_argument("config", type=str, help="Path to config file.")
    parser.add_argument("--outdir", type=str, help="used to override outdir (useful for multiple runs)")
    parser.add_argument("--nepochs", type=int, default=250, help="number of epochs to run before terminating")
    parser.add_argument("--model_it", type=int, default=-1,
                        help="which model iteration to load from, -1 loads the most recent model")
    parser.add_argument("--devices", nargs="+", type=str, default=["0"], help="devices to use")
    parser.add_argument("--seed", type=int, default=None, help="port: seed of the run (default: random, recorded)")
    parser.add_argument("--source", type=str, default=None, help="port: dataset file or folder (default: "
                        "data.train_dir of the config)")
    parser.add_argument("--jit_compile", action="store_true", help="port: compile the train step with XLA")
    parser.add_argument("--max_it", type=int, default=None,
                        help="port: stop after this many iterations (saved, resumable, not marked done)")
    parser.add_argument("--exact_epochs", action="store_true",
                        help="port fix: run --nepochs epochs (the original runs nepochs + 1)")
    parser.add_argument("--save_last", action="store_true",
                        help="port fix: also checkpoint the final iteration (the original does not)")
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv=None):
    args = parse_args(argv)
    from common.devices import select_gpus

    # Before any other TensorFlow work: also builds the MultiWorkerMirroredStrategy of a TF_CONFIG cluster.
    select_gpus(",".join(args.devices), flag="--devices")
    from selfcond.config import load_config
    from selfcond.trainer import TrainOptions, run

    config = load_config(args.config)
    options = TrainOptions(config_path=args.config, outdir=args.outdir, nepochs=args.nepochs, model_it=args.model_it,
                           devices=tuple(args.devices), seed=args.seed, source=args.source,
                           jit_compile=args.jit_compile, max_it=args.max_it, exact_epochs=args.exact_epochs,
                           save_last=args.save_last)
    run(config, options)


if __name__ == "__main__":
    main()
