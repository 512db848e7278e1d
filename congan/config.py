"""Configurations of the ConGAN ports: every notebook argument as a flag, with the notebook's default.

- :class:`Framework2Config`: ``ConsistentGAN.ipynb`` (64cce62) "Training/Args" plus its globals (spec §2.1)
  and the port's options (schedules, conditioning for Run 2, bug-compat switches, run folder).
- :class:`Framework1Config`: ``GAN_+_SimSiam.ipynb`` (3731cb8) "Training v2" Args (spec §2.4).
- :class:`SimSiamConfig`: the in-project SimSiam pretraining (spec §7.7).

Each dataclass field carries its flag help in ``metadata``; :func:`build_parser` turns a class into an
``argparse`` parser whose flag names are the field names (the notebooks' spellings, e.g. ``--D_lr``).
``PRESETS`` hold the README's two runs (``--preset run1`` / ``--preset run2``); explicit flags win over a
preset. :func:`resolve` fills derived values (learning rates from the batch size, spec §8.11) and checks
every value, raising :class:`common.errors.UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from common.errors import UsageError
from congan.schedules import parse_schedule

DATASETS = ("tiny_imagenet", "cifar10", "folder")
LOSSES = ("hinge", "ns", "ls", "wasserstein")
REPR_SOURCES = ("real", "prior_gaussian", "prior_uniform", "lerp", "slerp")
SIMSIAM_ARCH_CHOICES = ("resnet50", "resnet18_cifar", "tiny")


def _f(default, help, **kwargs):
    """A dataclass field with its argparse help/type/choices in the metadata."""
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


@dataclasses.dataclass(frozen=True, kw_only=True)
class Framework2Config:
    """Framework 2 (ConsistentGAN.ipynb). Defaults = 64cce62's ``Args`` and globals."""

    framework: int = _f(2, "which framework to train (2: ConsistentGAN, 1: GAN + SimSiam + autoencoder)", type=int,
                        choices=(1, 2))
    preset: str | None = _f(None, "README run: run1 (coefficients 0, 0.1 after 30 epochs, 1.0 after 30 more; 90 "
                                  "epochs) or run2 (coefficients 0, generator not conditioned; 90 epochs)",
                            choices=("run1", "run2"))
    # --- notebook Args ---
    load: str | None = _f(None, "folder with model/latent_transform/Q checkpoints (.pth.tar, .npz or .weights.h5) "
                                "to start from (weights only, like the notebook's load=True); default: fresh run")
    start_epoch: int = _f(0, "global epoch to start at when --load imports weights (the LR is lr0*0.98^epoch)",
                          type=int)
    print_freq: int = _f(10, "iterations between logged meters", type=int)
    seed: int | None = _f(None, "random seed (default: drawn once and stored in config.json)", type=int)
    gpu: str = _f("0", "GPU index/indices (0, 0,1) or -1 for the CPU")
    workers: int = _f(2, "threads decoding image files while loading the dataset", type=int)
    epochs: int = _f(100, "total number of epochs of the run (the notebook's run cells decided this)", type=int)
    batch_size: int = _f(128, "batch size B", type=int)
    D_lr: float | None = _f(None, "discriminator LR (default 1e-3*B/256 = 5e-4 at B=128)", type=float)
    G_lr: float | None = _f(None, "generator LR (default 1e-3*B/256)", type=float)
    Q_lr: float | None = _f(None, "Q LR (default D_lr)", type=float)
    latent_transform_lr: float | None = _f(None, "latent transform LR (default G_lr)", type=float)
    lr_decay: float = _f(0.02, "ExponentialLR gamma = 1 - lr_decay, stepped every epoch", type=float)
    betas: tuple[float, float] = _f((0.0, 0.9), "Adam betas of both optimizers", type=float, nargs=2)
    dim: int = _f(2048, "SimSiam projector output size (must match the SimSiam weights)", type=int)
    pred_dim: int = _f(512, "SimSiam predictor hidden size", type=int)
    repr_dim: int | None = _f(None, "representation size (default: read from the SimSiam encoder = dim)", type=int)
    latent_full_transform: bool = _f(False, "latent transform W[r;n]+b instead of [Wr+b; n]")
    latent_noise_dim: int = _f(512, "size of the noise n", type=int)
    latent_hidden_dim: int = _f(512, "size of the transformed representation", type=int)
    Q_hidden_dim: int = _f(512, "Q's bottleneck size", type=int)
    num_features: int = _f(64, "base width (SN-ResNet uses 2x for G and D)", type=int)
    D_iters: int = _f(5, "D steps per G step", type=int)
    gan_type: str = _f("gan", "ignored, as in the notebook (the loss is chosen by --loss)")
    resnetgan: bool = _f(True, "SN-ResNet G/D (overrides --wgan); --no-resnetgan selects SN-DCGAN")
    wgan: bool = _f(False, "flexible DCGAN without SN: crashes in the notebook's loop, rejected here (spec §8.10)")
    grad_penalty: float = _f(0.0, "gradient penalty weight", type=float)
    grad_center: float = _f(1.0, "gradient penalty target norm", type=float)
    generate_grid_interval: int = _f(50, "iterations between progress snapshots", type=int)
    im_noise: float = _f(1e-2, "std of the noise added to real images and to G outputs", type=float)
    repr_noise: float = _f(1e-5, "std of the noise added to representations", type=float)
    G_consistency: float = _f(1.0, "lambda_G: weight of -cos(E(fake), r) in the G loss", type=float)
    D_consistency: float = _f(1.0, "lambda_D: weight of the Q losses (G and D)", type=float)
    # --- notebook globals ---
    image_size: int = _f(64, "IMAGE_SIZE (32 or 64)", type=int, choices=(32, 64))
    dataset: str = _f("tiny_imagenet", "DATASET: tiny_imagenet (train/<wnid>/images), cifar10 (python pickle "
                                       "batches) or folder (any image folder)", choices=DATASETS)
    data_dir: str = _f("tiny-imagenet-200", "dataset root (TINYIMAGENET_DIR / the CIFAR-10 batches / a folder)")
    simsiam_path: str | None = _f(None, "SIMSIAM_PATH: SimSiam weights (simsiam.weights.h5 from "
                                        "congan/pretrain_simsiam.py, the official .pth.tar, or an .npz state dict); "
                                        "'random' = untrained encoder (tests only)")
    epochs_per_cell: int = _f(10, "epochs per notebook run cell: results and the progress animation are written "
                                  "after each cell", type=int)
    # --- port options ---
    G_consistency_schedule: str | None = _f(None, "per-epoch lambda_G schedule, e.g. 0:0,30:0.1,60:1 or 0:0,30~1 "
                                                  "(overrides --G_consistency)")
    D_consistency_schedule: str | None = _f(None, "per-epoch lambda_D schedule (overrides --D_consistency)")
    loss: str = _f("hinge", "adversarial loss (the notebook fixes hinge)", choices=LOSSES)
    conditioning: str = _f("repr", "repr: G conditioned on r (faithful); none: Run 2 (noise-only input, CBN fed "
                                   "zeros); none_plain_bn: affine BN instead of CBN",
                           choices=("repr", "none", "none_plain_bn"))
    cbn_init: str = _f("original", "CBN embed init: original (bug-compatible, spec §8.2) or intended",
                       choices=("original", "intended"))
    simsiam_arch: str = _f("resnet50", "SimSiam backbone of --simsiam_path", choices=SIMSIAM_ARCH_CHOICES)
    simsiam_bn_mode: str = _f("batch", "SimSiam BN: batch (faithful: never in eval mode) or inference",
                              choices=("batch", "inference"))
    sample_repr: str = _f("real", "training-time representation source", choices=REPR_SOURCES)
    fix_slerp: bool = _f(False, "fixed slerp (angle of the normalised vectors); default: the notebook's slerp of "
                                "unnormalised representations, which gives NaN (spec §8.1)")
    save_freq: int = _f(10, "write results/*.weights.h5 after global epochs e with e %% save_freq == 0", type=int)
    checkpoint_every: int = _f(0, "iterations between resume checkpoints (0: every epoch)", type=int)
    subset: int = _f(0, "use only N evenly spaced images of the dataset (0: all; smoke runs)", type=int)
    run_dir: str = _f("logs/congan/framework2", "run folder (config.json, checkpoints, results/, events)")
    jit_compile: bool = _f(False, "XLA-compile the train steps")
    mixed_precision: bool = _f(False, "Keras mixed_float16 policy (float16 compute; variables, BN statistics, "
                                      "spectral norm, normalisations and losses in float32) with dynamic loss "
                                      "scaling; for GPUs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Framework1Config:
    """Framework 1 (GAN_+_SimSiam.ipynb, "Training v2"). Defaults = 3731cb8's ``Args`` and globals."""

    framework: int = _f(1, "which framework to train", type=int, choices=(1, 2))
    data: str = _f("tiny-imagenet-200", "unused, as in the notebook (--dataset/--data_dir decide)")
    workers: int = _f(2, "threads decoding image files while loading the dataset", type=int)
    epochs: int = _f(25, "epochs", type=int)
    batch_size: int = _f(256, "batch size (progress grids use min(64, B) samples)", type=int)
    D_lr: float = _f(1e-4, "discriminator LR", type=float)
    G_lr: float = _f(2e-4, "generator LR", type=float)
    decoder_lr: float = _f(1e-4, "LR of decoder, ctx_encoder, repr_proj, ctx_proj", type=float)
    momentum: float = _f(0.9, "unused, as in the notebook (Adam is used)", type=float)
    weight_decay: float = _f(1e-4, "unused, as in the notebook", type=float)
    print_freq: int = _f(10, "batches between logged meters", type=int)
    seed: int | None = _f(None, "random seed (default: drawn once and stored in config.json)", type=int)
    gpu: str = _f("0", "GPU index/indices or -1 for the CPU")
    dim: int = _f(2048, "SimSiam projector output size", type=int)
    pred_dim: int = _f(512, "SimSiam predictor hidden size (loaded, unused)", type=int)
    gan_type: str = _f("gan-gp", "gan-gp/wgan-gp: D without BN; gan/wgan: BN in D; wgan*: Wasserstein loss",
                       choices=("gan", "gan-gp", "wgan", "wgan-gp"))
    repr_dim: int | None = _f(None, "representation size (default: from the encoder)", type=int)
    latent_dim: int = _f(256, "size of z", type=int)
    D_iters: int = _f(3, "D steps between G steps", type=int)
    noise: float = _f(1e-6, "std of the noise on real and fake representations", type=float)
    grad_penalty: float = _f(10.0, "gradient penalty weight", type=float)
    grad_center: float = _f(1.0, "gradient penalty target norm", type=float)
    generate_grid_interval: int = _f(50, "batches between progress grids", type=int)
    rec_penalty: float = _f(0.01, "weight of the image reconstruction SSE", type=float)
    repr_consistency: float = _f(10.0, "weight of the (no-gradient) representation SSE", type=float)
    norm_penalty: float = _f(1.0, "weight of the mean projection norm", type=float)
    div_penalty: float = _f(1.0, "weight of the (misused) KL term, subtracted", type=float)
    image_size: int = _f(64, "IMAGE_SIZE (images are resized to it)", type=int, choices=(32, 64))
    dataset: str = _f("cifar10", "DATASET (the notebook used CIFAR10)", choices=DATASETS)
    data_dir: str = _f("cifar-10-batches-py", "dataset root")
    simsiam_path: str | None = _f(None, "SimSiam weights (see framework 2); 'random' for tests")
    simsiam_arch: str = _f("resnet50", "SimSiam backbone", choices=SIMSIAM_ARCH_CHOICES)
    simsiam_bn_mode: str = _f("batch", "SimSiam BN mode", choices=("batch", "inference"))
    save_freq: int = _f(10, "write results/checkpoint_<epoch>.weights.h5 when epoch %% save_freq == 0", type=int)
    checkpoint_every: int = _f(0, "iterations between resume checkpoints (0: every epoch)", type=int)
    subset: int = _f(0, "use only N evenly spaced images (0: all)", type=int)
    run_dir: str = _f("logs/congan/framework1", "run folder")
    jit_compile: bool = _f(False, "XLA-compile the train steps")
    mixed_precision: bool = _f(False, "Keras mixed_float16 policy (float16 compute; variables, BN statistics, "
                                      "spectral norm, normalisations and losses in float32) with dynamic loss "
                                      "scaling; for GPUs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SimSiamConfig:
    """In-project SimSiam pretraining with the official recipe (spec §7.7)."""

    arch: str = _f("resnet50", "backbone: resnet50 (ImageNet layout, official), resnet18_cifar, tiny (tests)",
                   choices=SIMSIAM_ARCH_CHOICES)
    dim: int = _f(2048, "projector output size (= repr_dim of the GAN)", type=int)
    pred_dim: int = _f(512, "predictor hidden size", type=int)
    batch_size: int = _f(512, "batch size", type=int)
    epochs: int = _f(100, "epochs", type=int)
    lr: float = _f(0.05, "base LR; the initial LR is lr*B/256, cosine-decayed per epoch", type=float)
    momentum: float = _f(0.9, "SGD momentum", type=float)
    weight_decay: float = _f(1e-4, "L2 added to every gradient (PyTorch SGD weight_decay)", type=float)
    fix_pred_lr: bool = _f(True, "keep the predictor at the initial LR (official command uses it)")
    image_size: int = _f(64, "crop size (the GAN's resolution)", type=int, choices=(32, 64))
    dataset: str = _f("tiny_imagenet", "dataset kind", choices=DATASETS)
    data_dir: str = _f("tiny-imagenet-200", "dataset root")
    subset: int = _f(0, "use only N evenly spaced images (0: all)", type=int)
    workers: int = _f(2, "threads decoding image files", type=int)
    print_freq: int = _f(10, "iterations between logged losses", type=int)
    seed: int | None = _f(None, "random seed (default: drawn once and stored in config.json)", type=int)
    gpu: str = _f("0", "GPU index/indices or -1 for the CPU")
    run_dir: str = _f("logs/congan/simsiam", "run folder; the weights are <run_dir>/simsiam.weights.h5")
    jit_compile: bool = _f(False, "XLA-compile the train step")
    mixed_precision: bool = _f(False, "Keras mixed_float16 policy (float16 compute; variables, BN statistics, "
                                      "spectral norm, normalisations and losses in float32) with dynamic loss "
                                      "scaling; for GPUs")


# README runs (spec §2.2). Run 2's "not conditioned" is the port's conditioning="none" [UNRESOLVED in spec].
PRESETS = {
    "run1": {"epochs": 90, "G_consistency_schedule": "0:0,30:0.1,60:1", "D_consistency_schedule": "0:0,30:0.1,60:1"},
    "run2": {"epochs": 90, "G_consistency_schedule": "0", "D_consistency_schedule": "0", "conditioning": "none"},
}


def build_parser(cls, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one ``--<field>`` flag per dataclass field (defaults from the class)."""
    parser = argparse.ArgumentParser(prog=prog, description=description or cls.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for field in dataclasses.fields(cls):
        meta = dict(field.metadata)
        help_text = meta.pop("help")
        if isinstance(field.default, bool):
            parser.add_argument(f"--{field.name}", action=argparse.BooleanOptionalAction, default=field.default,
                                help=help_text)
        else:
            parser.add_argument(f"--{field.name}", default=field.default, help=help_text, **meta)
    parser.add_argument("--dry_run", action="store_true", help="print the resolved configuration and exit")
    return parser


def parse_args(cls, argv: Sequence[str] | None = None, prog: str | None = None):
    """Parse flags into ``cls`` (presets applied first); returns ``(config, dry_run)``."""
    parser = build_parser(cls, prog)
    if "preset" in {f.name for f in dataclasses.fields(cls)}:
        first, _ = parser.parse_known_args(argv)
        if first.preset:
            parser.set_defaults(**PRESETS[first.preset])
    args = vars(parser.parse_args(argv))
    dry_run = args.pop("dry_run")
    if isinstance(args.get("betas"), list):
        args["betas"] = tuple(args["betas"])
    return cls(**args), dry_run


def _positive(cfg, *names):
    for name in names:
        if getattr(cfg, name) <= 0:
            raise UsageError(f"--{name}: expected a positive value, got {getattr(cfg, name)}")


def _non_negative(cfg, *names):
    for name in names:
        if getattr(cfg, name) < 0:
            raise UsageError(f"--{name}: expected a value >= 0, got {getattr(cfg, name)}")


def _check_paths(cfg):
    if cfg.simsiam_path is None:
        raise UsageError("--simsiam_path: required (train one with congan/pretrain_simsiam.py, or give the official "
                         "SimSiam checkpoint / an .npz state dict)")
    if cfg.simsiam_path != "random" and not os.path.exists(cfg.simsiam_path):
        raise UsageError(f"--simsiam_path: {cfg.simsiam_path} does not exist")


def resolve(cfg, *, check_paths: bool = True):
    """Fill derived values and validate; returns a new frozen config of the same class."""
    if isinstance(cfg, Framework2Config):
        return _resolve_framework2(cfg, check_paths)
    if isinstance(cfg, Framework1Config):
        _positive(cfg, "batch_size", "epochs", "D_iters", "latent_dim", "dim", "generate_grid_interval", "print_freq")
        _non_negative(cfg, "subset", "checkpoint_every", "noise")
        if check_paths:
            _check_paths(cfg)
        return cfg
    if isinstance(cfg, SimSiamConfig):
        _positive(cfg, "batch_size", "epochs", "lr", "dim", "pred_dim", "print_freq")
        _non_negative(cfg, "subset", "weight_decay")
        if cfg.batch_size < 2:
            raise UsageError("--batch_size: SimSiam's batch norm needs at least 2 images per batch")
        return cfg
    raise TypeError(f"unknown config type {type(cfg).__name__}")


def _resolve_framework2(cfg: Framework2Config, check_paths: bool) -> Framework2Config:
    _positive(cfg, "batch_size", "epochs", "D_iters", "latent_noise_dim", "latent_hidden_dim", "Q_hidden_dim",
              "num_features", "dim", "generate_grid_interval", "print_freq", "epochs_per_cell", "save_freq")
    _non_negative(cfg, "im_noise", "repr_noise", "subset", "checkpoint_every", "start_epoch", "lr_decay")
    if cfg.wgan and not cfg.resnetgan:
        raise UsageError("--wgan: the flexible DCGAN has no return_h and no conditioning input, so the notebook's "
                         "loop crashes with it (spec §8.10); use the SN-ResNet (default) or --no-resnetgan")
    if cfg.start_epoch >= cfg.epochs:
        raise UsageError(f"--start_epoch: must be below --epochs ({cfg.epochs}), got {cfg.start_epoch}")
    if cfg.start_epoch and not cfg.load:
        raise UsageError("--start_epoch: only meaningful with --load (importing weights of an earlier run)")
    if cfg.conditioning != "repr" and cfg.latent_full_transform:
        raise UsageError("--latent_full_transform: not available with --conditioning none* (G gets noise only)")
    for flag in ("G_consistency_schedule", "D_consistency_schedule"):
        if getattr(cfg, flag) is not None:
            parse_schedule(getattr(cfg, flag), f"--{flag}")
    if check_paths:
        _check_paths(cfg)
        if cfg.load is not None and not os.path.isdir(cfg.load):
            raise UsageError(f"--load: {cfg.load} is not a folder holding model/latent_transform/Q checkpoints")
    d_lr = cfg.D_lr if cfg.D_lr is not None else 1e-3 * cfg.batch_size / 256
    g_lr = cfg.G_lr if cfg.G_lr is not None else 1e-3 * cfg.batch_size / 256
    return dataclasses.replace(
        cfg, D_lr=d_lr, G_lr=g_lr,
        Q_lr=cfg.Q_lr if cfg.Q_lr is not None else d_lr,
        latent_transform_lr=cfg.latent_transform_lr if cfg.latent_transform_lr is not None else g_lr,
        G_consistency_schedule=str(parse_schedule(cfg.G_consistency_schedule or cfg.G_consistency,
                                                  "--G_consistency_schedule")),
        D_consistency_schedule=str(parse_schedule(cfg.D_consistency_schedule or cfg.D_consistency,
                                                  "--D_consistency_schedule")),
    )


def tiny_framework2(**overrides) -> Framework2Config:
    """The spec's "tiny" test configuration (§9): 32 px, B 32, 16 channels, dims 16, D_iters 1."""
    base = dict(image_size=32, batch_size=32, num_features=8, latent_noise_dim=16, latent_hidden_dim=16,
                Q_hidden_dim=16, dim=64, pred_dim=16, D_iters=1, simsiam_arch="tiny", simsiam_path="random",
                dataset="folder", seed=0, print_freq=1)
    base.update(overrides)
    return Framework2Config(**base)


def as_json(cfg) -> dict:
    """The configuration as a JSON-compatible dict (what ``config.json`` holds)."""
    from common.config import as_dict

    return as_dict(cfg)
