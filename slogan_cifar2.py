"""SLOGAN on CIFAR-2 (planes vs frogs), the original's ``slogan_cifar2.py`` command line.

    python slogan_cifar2.py --gpu 0 --ratio_plane 3                 # train (7:3 frog:plane), then evaluate
    python slogan_cifar2.py --pretrained ./logs/cifar2/3/pretrained/model-100000   # evaluate only

Flags and defaults are the original's (spec §2.2); the ones after ``--reg`` are optional additions whose
defaults keep the original's behaviour. Re-running with the same ``--run_name`` resumes a run.
"""

import argparse

from common.errors import exit_on_usage_error

# (flag, type, default, help) in the original's order; a None type keeps the string.
ORIGINAL_FLAGS = [
    ("log_dir", None, "./logs/cifar2/", "base folder; the run folder is log_dir + int(ratio_plane) + '/' + run_name"),
    ("gpu", str, "0", "CUDA_VISIBLE_DEVICES (0,1: two GPUs with MirroredStrategy; -1: CPU)"),
    ("ratio_plane", float, 3, "planes per 10 images (3: frog:plane = 7:3, 5: balanced)"),
    ("coeff", float, 1, "U2C weight (times the temperature)"),
    ("lr_stein", float, 2e-3, "Stein step size of Sigma and rho (mu uses 10x)"),
    ("lr", float, 1e-4, "Adam learning rate of G and E (D uses 4x)"),
    ("scale", float, 4.0, "ArcFace scale s"),
    ("margin", float, 0.5, "ArcFace margin m (times the temperature)"),
    ("start_temp", float, 1.0, "temperature at step 0"),
    ("end_temp", float, 0.0, "temperature at the last step (clipped at 0)"),
    ("pretrained", None, None, "checkpoint prefix (this port's or the original TF1 one): evaluate only"),
    ("num_cluster", int, 2, "number of mixture components K"),
    ("log_freq", int, 1000, "period of summaries and clustering metrics"),
    ("iterations", int, 100000, "training iterations"),
    ("batch_size", int, 64, "real batch size (generated batch: 2x)"),
    ("save_freq", int, 100000, "checkpoint period"),
    ("val_freq", int, -1, "period of validation IS/FID (-1: never)"),
    ("val_size", int, 10000, "images of the clustering batch (a multiple of 100)"),
    ("random_seed", int, 0, "seed of the data construction and of every random draw"),
    ("latent_dim", int, 128, "latent dimension d"),
    ("lambda_lp", float, 10, "weight of the gp/lp/alp penalty"),
    ("eps_min", float, 0.1, "ALP: smallest perturbation radius"),
    ("eps_max", float, 10.0, "ALP: largest perturbation radius"),
    ("xi", float, 10.0, "ALP: probe step of the power iteration"),
    ("ip", int, 1, "ALP: power iterations"),
    ("K", float, 1, "Lipschitz target"),
    ("p", float, 2, "norm order (gradient norms use its dual)"),
    ("n_critic", int, 1, "discriminator steps per iteration"),
]
EXTRA_FLAGS = [
    ("run_name", None, None, "run folder name (default: the current date-time); reuse it to resume"),
    ("inception_path", None, None, "TF-GAN Inception archive or .pb for FID/IS (default: ./ or download)"),
    ("icfid_inception_path", None, None, "TTUR Inception archive or .pb for ICFID (default: res/ or download)"),
    ("classifier_path", None, None, "classifier of common.classifier_features for --features classifier"),
    ("data_dir", None, None, "CIFAR-10 cache written by download.py (default: its default location)"),
    ("fid_size", int, 10000, "real and generated images of FID"),
    ("is_size", int, 100000, "generated images of the final Inception Score"),
    ("val_is_size", int, 10000, "generated images of the validation Inception Score"),
    ("icfid_real_size", int, 50000, "real images of ICFID"),
    ("icfid_fake_size", int, 5000, "generated images per component of ICFID"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, kind, default, text in ORIGINAL_FLAGS:
        parser.add_argument(f"--{name}", type=kind, default=default, help=text)
    parser.add_argument("--reduce_fn", default="mean", choices=["mean", "sum", "max"], help="penalty reduction")
    parser.add_argument("--reg", default="alp", choices=["gp", "lp", "alp"], help="discriminator penalty")
    for name, kind, default, text in EXTRA_FLAGS:
        parser.add_argument(f"--{name}", type=kind, default=default, help=text)
    parser.add_argument("--features", default="inception", choices=["inception", "classifier"],
                        help="feature network of FID/IS/ICFID (classifier numbers are not Inception numbers)")
    parser.add_argument("--jit_compile", action="store_true", help="compile the train step with XLA (one device)")
    fixes = parser.add_argument_group("fixes of the original's oddities (off: reproduce the original)")
    fixes.add_argument("--fix_eval_split", action="store_true",
                       help="evaluate on the last 2000 images of each build, train on the rest (§9 #9)")
    fixes.add_argument("--fix_n_critic_schedule", action="store_true",
                       help="with --n_critic > 1, decay rates and temperature over all D steps of the run (§9 #15)")
    fixes.add_argument("--fix_nmi_features", action="store_true",
                       help="cluster raw encoder outputs for ARI/NMI, as the paper says (§9 #11)")
    return parser


@exit_on_usage_error
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    print(args)
    from common.devices import select_gpus
    from common.slogan.cifar2_config import Cifar2Config

    config = Cifar2Config(**vars(args)).validate()  # before TensorFlow starts
    select_gpus(args.gpu)
    from common.slogan.cifar2 import run

    return run(config)


if __name__ == "__main__":
    main()
