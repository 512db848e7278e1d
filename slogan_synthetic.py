"""SLOGAN on the synthetic 8-Gaussian mixture (ICLR 2022), TensorFlow 2 port of ``slogan_synthetic.py``.

    python slogan_synthetic.py --gpu 0                     # the original's run, figures in ./logs/synthetic/<time>/
    python slogan_synthetic.py --gpu -1 --run_name demo    # fixed folder: running it again resumes
    python slogan_synthetic.py --gpu -1 --run_name demo --stop_after 3000 --log_freq 500   # `make demo`

Same flags, types and defaults as the original; the port's additions are listed under "port options".
"""

import argparse
import sys

from common.errors import exit_on_usage_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log_dir", default="./logs/synthetic/")
    parser.add_argument("--gpu", type=str, default="3",
                        help="GPU index, a comma list (several: MirroredStrategy, same result as one device), or -1")
    parser.add_argument("--ckpt_path", default=None, help="evaluate losses only, train nothing (original behaviour)")
    parser.add_argument("--num_cluster", type=int, default=8)
    for flag, default in [("lr_stein", 1e-2), ("lr", 1e-3), ("coeff", 4), ("scale", 2.0), ("margin", 0.5),
                          ("start_temp", 1.0), ("end_temp", -4.0)]:
        parser.add_argument(f"--{flag}", type=float, default=default)
    for flag, default in [("log_freq", 100), ("iterations", 100000), ("batch_size", 128), ("save_freq", 1000),
                          ("val_size", 100), ("random_seed", 0), ("latent_dim", 64)]:
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--lambda_lp", type=float, default=10)
    parser.add_argument("--K", type=float, default=1, help="Lipschitz target (not the number of components)")
    parser.add_argument("--p", type=float, default=2)
    parser.add_argument("--n_critic", type=int, default=1)
    parser.add_argument("--reduce_fn", default="mean", choices=["mean", "sum", "max"])
    parser.add_argument("--reg", default="lp", choices=["gp", "lp"])
    port = parser.add_argument_group("port options (not in the original)")
    port.add_argument("--run_name", default=None, help="run folder name (default: the start time, as the original)")
    port.add_argument("--stop_after", type=int, default=None,
                      help="stop after this many iterations of the --iterations schedule (run again to continue)")
    port.add_argument("--checkpoint_every", type=int, default=1000, help="checkpoint period in iterations")
    port.add_argument("--use_random_seed", action="store_true", help="make --random_seed effective (original: 0)")
    port.add_argument("--fix_gp", action="store_true", help="make --reg gp add the gradient penalty")
    port.add_argument("--no_skip_nonfinite", dest="skip_nonfinite", action="store_false",
                      help="apply updates with non-finite gradients (the original skipped them)")
    port.add_argument("--jit_compile", action="store_true", help="compile the train step with XLA (one device only)")
    port.add_argument("--devices", default=None, help=argparse.SUPPRESS)  # explicit devices, e.g. /cpu:0,/cpu:1
    port.add_argument("--no_progress", dest="show_progress", action="store_false", help="no progress bar")
    return parser


@exit_on_usage_error
def main(argv=None, **overrides) -> dict:
    """Parse ``argv``, select devices, run. ``overrides`` set config fields the CLI does not expose (tests)."""
    args = build_parser().parse_args(argv)
    print(args)
    from common.devices import select_gpus

    select_gpus(args.gpu)
    from common.slogan.synthetic import SyntheticConfig
    from common.slogan.synthetic_run import run

    return run(SyntheticConfig(**{**vars(args), **overrides}))


if __name__ == "__main__":
    main()
    sys.exit(0)
