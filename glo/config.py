"""Flags and configurations of the GLO scripts: the original's flags and defaults, plus named extensions.

Every extension defaults to the original's behaviour (spec §6.5); the ones that fix a bug of the original
say so in their help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from common.errors import UsageError

UPDATE_MODES = ("first_only", "every_step")  # --code_update_mode, see glo.codes

SAMPLE_MODES = ("column_norm", "row_norm", "full_cov")
LOSS_NAMES = ("moment", "lap1")
DATASET_HELP = ("MNIST, SVHN or CIFAR10 (the folder datasets/<name> built by download.py), or the path of a folder "
                "holding data.hdf5 (or data.hy) and id.txt")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of ``glo/trainer.py``; defaults are the original's (spec §3.1, §6.5)."""

    batch_size: int = 16
    prefix: str = "default"
    checkpoint: str | None = None
    dataset: str = "MNIST"
    learning_rate: float = 1e-4
    alpha: float = 1.0
    lr_weight_decay: bool = False
    dump_result: bool = False
    # Extensions (original values as defaults).
    max_steps: int = 100000
    output_save_step: int = 1000
    log_step: int = 10
    summary_step: int = 1
    max_to_keep: int = 1000
    code_update_mode: str = "first_only"
    loss: str = "moment"
    lap_levels: int = 4
    num_train: int | None = None
    fix_cifar_transpose: bool = False
    seed: int | None = None
    run_name: str | None = None
    eval_step: int = 0
    eval_batches: int = 4
    no_image_cache: bool = False
    gpu: str = "0"
    devices: str | None = None  # hidden: explicit tf.distribute devices, e.g. "/cpu:0,/cpu:1" (tests)
    jit_compile: bool = False
    mixed_precision: bool = False
    no_progress: bool = False

    def __post_init__(self):
        _positive(self, "batch_size", "max_to_keep", "eval_batches", "lap_levels")
        _non_negative(self, "max_steps", "output_save_step", "log_step", "summary_step", "eval_step")
        if not self.learning_rate > 0:
            raise UsageError(f"--learning_rate {self.learning_rate}: expected a positive number")
        _choice(self, "code_update_mode", UPDATE_MODES)
        _choice(self, "loss", LOSS_NAMES)
        if self.run_name is not None and (not self.run_name or "/" in self.run_name or self.run_name in (".", "..")):
            raise UsageError(f"--run_name {self.run_name!r}: expected a folder name (no '/') under train_dir")


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Settings of ``glo/evaler.py``; defaults are the original's (spec §3.6, §6.5)."""

    batch_size: int = 256
    prefix: str = "default"
    checkpoint_path: str | None = None
    train_dir: str | None = None
    dataset: str = "MNIST"
    reconstruct: bool = False
    generate: bool = False
    interpolate: bool = False
    data_id: tuple[str, ...] | None = None
    # Extensions (original values as defaults).
    sample_mode: str = "column_norm"
    interp_padding: str = "zeros"
    interp_endpoints: str = "real"
    save_reconstruction: bool = False
    output_dir: str = "."
    num_train: int | None = None
    fix_cifar_transpose: bool = False
    seed: int | None = None
    gpu: str = "0"

    def __post_init__(self):
        _positive(self, "batch_size")
        _choice(self, "sample_mode", SAMPLE_MODES)
        _choice(self, "interp_padding", ("zeros", "train_codes"))
        _choice(self, "interp_endpoints", ("real", "decoded"))


def _positive(cfg, *names):
    for name in names:
        if getattr(cfg, name) < 1:
            raise UsageError(f"--{name} {getattr(cfg, name)}: expected a positive integer")


def _non_negative(cfg, *names):
    for name in names:
        if getattr(cfg, name) < 0:
            raise UsageError(f"--{name} {getattr(cfg, name)}: expected 0 or a positive integer")


def _choice(cfg, name, choices):
    if getattr(cfg, name) not in choices:
        raise UsageError(f"--{name} {getattr(cfg, name)!r}: expected one of {', '.join(choices)}")


def train_run_name(cfg: TrainConfig, label: str) -> str:
    """``<prefix>-<dataset>_lr_<lr>-<YYYYmmdd-HHMMSS>`` (spec §3.5), or ``--run_name`` when given."""
    if cfg.run_name:
        return cfg.run_name
    return f"{cfg.prefix}-{label}_lr_{cfg.learning_rate}-{time.strftime('%Y%m%d-%H%M%S')}"


def trainer_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Train GLO: a generator and one latent code per training image (codes live in the dataset "
                    "file; run cleaner.py to reset them to their initial values).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--prefix", type=str, default="default", help="first part of the run-folder name")
    p.add_argument("--checkpoint", type=str, default=None,
                   help="warm start from this checkpoint (generator, Adam state, global step) into a new run folder; "
                        "the loop counter restarts at 0 as in the original")
    p.add_argument("--dataset", type=str, default="MNIST", help=DATASET_HELP)
    p.add_argument("--learning_rate", type=float, default=1e-4)
    p.add_argument("--alpha", type=float, default=1.0, help="step size of the latent-code update")
    p.add_argument("--lr_weight_decay", action="store_true", help="halve the learning rate every 10000 steps")
    p.add_argument("--dump_result", action="store_true",
                   help="save the reconstructed batch as dump_result_<step>.hdf5 at every checkpoint")
    g = p.add_argument_group("extensions (defaults reproduce the original)")
    g.add_argument("--max_steps", type=int, default=100000, help="training iterations of this run")
    g.add_argument("--output_save_step", type=int, default=1000, help="checkpoint (and dump) every N iterations")
    g.add_argument("--log_step", type=int, default=10, help="console line every N iterations")
    g.add_argument("--summary_step", type=int, default=1, help="TensorBoard summaries every N iterations (0: never)")
    g.add_argument("--max_to_keep", type=int, default=1000, help="checkpoints kept")
    g.add_argument("--code_update_mode", choices=UPDATE_MODES, default="first_only",
                   help="first_only reproduces the original's write-once codes (each code is updated once, at its "
                        "first visit); every_step fixes it (the code is updated at every visit)")
    g.add_argument("--loss", choices=LOSS_NAMES, default="moment",
                   help="moment: this implementation's 4x4 window mean/variance L1; lap1: the paper's "
                        "Laplacian-pyramid L1")
    g.add_argument("--lap_levels", type=int, default=4, help="band-pass levels of --loss lap1")
    g.add_argument("--num_train", type=int, default=None,
                   help="size of the train split (default: the original's split, or 90%% for a folder dataset)")
    g.add_argument("--fix_cifar_transpose", action="store_true",
                   help="read CIFAR-10 images upright (download.py stores them transposed, as the original did)")
    g.add_argument("--seed", type=int, default=None, help="seed everything (default: unseeded, as the original)")
    g.add_argument("--run_name", type=str, default=None,
                   help="fixed run-folder name under train_dir; running the same command again resumes exactly")
    g.add_argument("--eval_step", type=int, default=0,
                   help="every N iterations append train/test reconstruction MSE and MAE to metrics.jsonl "
                        "(0: never, as the original)")
    g.add_argument("--eval_batches", type=int, default=4, help="batches per split for --eval_step")
    g.add_argument("--no_image_cache", action="store_true", help="read images from the file at every batch")
    g.add_argument("--gpu", type=str, default="0",
                   help="GPU index, a comma list (several: MirroredStrategy, same result as one device), or -1 for "
                        "the CPU; TF_CONFIG in the environment selects multi-worker training")
    g.add_argument("--devices", type=str, default=None, help=argparse.SUPPRESS)  # e.g. /cpu:0,/cpu:1 (tests)
    g.add_argument("--jit_compile", action="store_true", help="compile the train step with XLA (one device only)")
    g.add_argument("--mixed_precision", action="store_true",
                   help="float16 computation in the generator's first four blocks (mixed_float16; float32 "
                        "variables, BatchNorm statistics, output and losses) with dynamic loss scaling (GPUs)")
    g.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def evaler_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Evaluate a GLO checkpoint: reconstruct test images, generate samples, interpolate codes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--prefix", type=str, default="default", help="output names generate_<prefix>.png, ...")
    p.add_argument("--checkpoint_path", "--checkpoint", dest="checkpoint_path", type=str, default=None,
                   help="checkpoint prefix, e.g. train_dir/default-MNIST_lr_0.0001-20170101-123456/model-1001")
    p.add_argument("--train_dir", type=str, default=None, help="use the newest checkpoint of this run folder")
    p.add_argument("--dataset", type=str, default="MNIST", help=DATASET_HELP)
    p.add_argument("--reconstruct", action="store_true", help="reconstruction loss on the test split")
    p.add_argument("--generate", action="store_true", help="write generate_<prefix>.png")
    p.add_argument("--interpolate", action="store_true", help="write interpolate_<prefix>.png")
    p.add_argument("--data_id", nargs="*", default=None, help="reconstruct only these ids")
    g = p.add_argument_group("extensions (defaults reproduce the original)")
    g.add_argument("--sample_mode", choices=SAMPLE_MODES, default="column_norm",
                   help="column_norm reproduces the original (each latent dimension normalised across the samples); "
                        "row_norm puts each sample on the unit sphere; full_cov samples a full-covariance Gaussian "
                        "fitted to the training codes (the paper)")
    g.add_argument("--interp_padding", choices=("zeros", "train_codes"), default="zeros",
                   help="zeros reproduces the original (the 13 interpolated codes are padded with zero codes, which "
                        "skews BatchNorm's batch statistics); train_codes pads with codes of random training images")
    g.add_argument("--interp_endpoints", choices=("real", "decoded"), default="real",
                   help="first and last column of each interpolation row: the real images (original) or their "
                        "decoded codes")
    g.add_argument("--save_reconstruction", action="store_true",
                   help="also write reconstruct_<prefix>.png (real | reconstructed); the original writes no image")
    g.add_argument("--output_dir", type=str, default=".", help="folder of the PNG files (the original: the CWD)")
    g.add_argument("--num_train", type=int, default=None, help="size of the train split, as in the trainer")
    g.add_argument("--fix_cifar_transpose", action="store_true", help="read CIFAR-10 images upright")
    g.add_argument("--seed", type=int, default=None, help="seed the samples (default: unseeded, as the original)")
    g.add_argument("--gpu", type=str, default="0", help="GPU index, a comma list, or -1 for the CPU")
    return p


def config_from_args(cls, args: argparse.Namespace):
    """Build a config dataclass from parsed flags (lists become tuples so the config stays hashable)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
