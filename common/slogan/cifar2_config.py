"""Configuration of a CIFAR-2 SLOGAN run: the original's flags and defaults (spec §2.2, §5).

Kept free of TensorFlow imports so that the command line can reject a bad value (exit status 2, one line)
before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from common.errors import UsageError

REDUCE_CHOICES = ("mean", "sum", "max")  # --reduce_fn
REG_CHOICES = ("gp", "lp", "alp")  # --reg
FEATURE_CHOICES = ("inception", "classifier")  # --features


@dataclasses.dataclass(frozen=True)
class Cifar2Config:
    """Every setting of a CIFAR-2 run; defaults are the original's (spec §2.2 and §5).

    The fields up to ``reg`` are the original's flags. The rest are this port's optional additions, whose
    defaults reproduce the original: the run folder name, the feature extractor of the metrics and its files,
    the CIFAR-10 cache, XLA, the evaluation sample counts, (Python API only) the network width, and three
    ``fix_*`` switches that repair oddities of the original (spec §9 #9, #11, #15).
    """

    log_dir: str = "./logs/cifar2/"
    gpu: str = "0"
    ratio_plane: float = 3
    coeff: float = 1.0
    lr_stein: float = 2e-3
    lr: float = 1e-4
    scale: float = 4.0
    margin: float = 0.5
    start_temp: float = 1.0
    end_temp: float = 0.0
    pretrained: str | None = None
    num_cluster: int = 2
    log_freq: int = 1000
    iterations: int = 100000
    batch_size: int = 64
    save_freq: int = 100000
    val_freq: int = -1
    val_size: int = 10000
    random_seed: int = 0
    latent_dim: int = 128
    lambda_lp: float = 10.0
    eps_min: float = 0.1
    eps_max: float = 10.0
    xi: float = 10.0
    ip: int = 1
    K: float = 1.0
    p: float = 2.0
    n_critic: int = 1
    reduce_fn: str = "mean"
    reg: str = "alp"
    # -- additions of the port (defaults = the original's behaviour) --
    run_name: str | None = None  # None: the current date-time, as the original
    features: str = "inception"  # or "classifier"
    inception_path: str | None = None  # TF-GAN Inception archive/.pb (FID, IS); None: ./ or download
    icfid_inception_path: str | None = None  # TTUR Inception archive/.pb (ICFID); None: res/ or download
    classifier_path: str | None = None  # with --features classifier
    data_dir: str | None = None  # CIFAR-10 cache of download.py; None: its default location
    jit_compile: bool = False
    fid_size: int = 10000  # real and generated images of FID
    is_size: int = 100000  # generated images of the final IS
    val_is_size: int = 10000  # generated images of the validation IS
    icfid_real_size: int = 50000  # real images of ICFID
    icfid_fake_size: int = 5000  # generated images per component of ICFID
    channels: int = 128  # ResNet width (tests shrink it)
    # -- fixes of the original's oddities (spec §9); off by default --
    fix_eval_split: bool = False  # #9: evaluate on a held-out tail of 2000 images (the original's dead split)
    fix_n_critic_schedule: bool = False  # #15: decay and temperature over iterations·n_critic D steps
    fix_nmi_features: bool = False  # #11: KMeans on raw encoder outputs, as the paper says

    def validate(self) -> Cifar2Config:
        """Raise :class:`UsageError` naming the flag of the first invalid value; return self."""
        positive = ("iterations", "batch_size", "latent_dim", "n_critic", "log_freq", "save_freq", "ip",
                    "fid_size", "is_size", "val_is_size", "icfid_real_size", "icfid_fake_size", "channels")
        for name in positive:
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be >= 1, got {getattr(self, name)}")
        if self.num_cluster < 2:
            raise UsageError(f"--num_cluster must be >= 2 for CIFAR-2's one-hot labels, got {self.num_cluster}")
        if not 0 < self.ratio_plane < 10:
            raise UsageError(f"--ratio_plane must lie in (0, 10) (planes per 10 images), got {self.ratio_plane}")
        if self.val_size < 100 or self.val_size % 100:
            raise UsageError(f"--val_size must be a positive multiple of 100, got {self.val_size}")
        if self.reduce_fn not in REDUCE_CHOICES:
            raise UsageError(f"--reduce_fn must be one of {sorted(REDUCE_CHOICES)}, got {self.reduce_fn!r}")
        if self.reg not in REG_CHOICES:
            raise UsageError(f"--reg must be one of {list(REG_CHOICES)}, got {self.reg!r}")
        if self.features not in FEATURE_CHOICES:
            raise UsageError(f"--features must be one of {list(FEATURE_CHOICES)}, got {self.features!r}")
        if self.features == "classifier" and not self.classifier_path:
            raise UsageError("--features classifier needs --classifier_path")
        if self.p < 1:
            raise UsageError(f"--p must be >= 1 (a norm order), got {self.p}")
        if self.run_name is not None and (not self.run_name or "/" in self.run_name or self.run_name in (".", "..")):
            raise UsageError(f"--run_name must be a plain folder name, got {self.run_name!r}")
        return self

    @property
    def schedule_length(self) -> int:
        """I of the schedules: ``iterations`` (D steps, as the original), or iterations·n_critic when fixed."""
        return self.iterations * (self.n_critic if self.fix_n_critic_schedule else 1)

    def run_dir(self, run_name: str) -> Path:
        """``log_dir + str(int(ratio_plane)) + '/' + run_name``: a plain string concatenation, as the original."""
        return Path(self.log_dir + str(int(self.ratio_plane)) + "/" + run_name)
