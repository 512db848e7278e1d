"""What the three Hydra entry scripts share: the config banner, the output folder, the device choice."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent

#: job name -> module with ``run(cfg, run_dir)``
JOBS = {"train": "latentclr.trainer", "eval": "latentclr.evaluate", "gen": "latentclr.generate"}


def put_repo_root_on_path(script: str) -> None:
    """Run as ``python latentclr/train.py`` the script's own folder is sys.path[0]; replace it by the repo root
    so that ``latentclr`` and ``common`` import as packages (and no module here shadows another)."""
    here = str(Path(script).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def display_config(cfg: DictConfig) -> None:
    """The original's ``display_config``: the composed YAML between a title and a rule of 40 '='."""
    logger = logging.getLogger()
    logger.info("Configuration:\n")
    logger.info(OmegaConf.to_yaml(cfg))
    logger.info("=" * 40 + "\n")


def build_config(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what the library functions take)."""
    return OmegaConf.to_container(cfg, resolve=True)


def require_checkpoint(cfg) -> str:
    """eval / gen need ``checkpoint`` (``???`` in their configs); returns it as an absolute path."""
    from common.errors import UsageError

    value = cfg.get("checkpoint") if not isinstance(cfg, DictConfig) else OmegaConf.select(cfg, "checkpoint",
                                                                                          throw_on_missing=False)
    if value in (None, "???", ""):
        raise UsageError("checkpoint is required: checkpoint=<run folder>/best_model.ckpt (or an original .pt)")
    from hydra.utils import to_absolute_path

    try:
        return to_absolute_path(str(value))
    except ValueError:  # outside a Hydra run
        return str(Path(str(value)).resolve())


def output_dir() -> Path:
    """Hydra's output folder of this job (the original writes into the cwd, which Hydra set to it)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def select_device(cfg: DictConfig) -> None:
    """``device`` (``cuda:N`` or ``cpu``): make that GPU the visible one before TensorFlow starts; without a
    GPU the run uses the CPU (``auto_cpu_if_no_gpu``; TensorFlow places the generator too)."""
    from common.devices import select_gpus
    from common.errors import UsageError

    device = str(cfg.get("device", "cpu") or "cpu")
    if device.startswith("cuda"):
        index = device.partition(":")[2] or "0"
        ids = select_gpus(index, flag="device")
        import tensorflow as tf

        if ids and not tf.config.list_physical_devices("GPU") and not cfg.get("auto_cpu_if_no_gpu", True):
            raise UsageError(f"device={device} but no GPU is visible (auto_cpu_if_no_gpu=false)")
    elif device == "cpu":
        select_gpus("-1", flag="device")
    else:
        raise UsageError(f"device must be cuda, cuda:<index> or cpu, got {device!r}")


def run_job(cfg: DictConfig, job: str):
    """What every entry script does: show the config, check the cheap things first (``checkpoint`` of eval /
    gen, the pre-trained weights file), choose the device, then run the job in Hydra's output folder. Bad input
    ends with one line on stderr and exit status 2."""
    import importlib

    from common.errors import exit_on_usage_error
    from latentclr.generators.locate import preflight

    @exit_on_usage_error
    def main():
        display_config(cfg)
        if job in ("eval", "gen"):
            require_checkpoint(cfg)
        preflight(build_config(cfg))
        select_device(cfg)
        return importlib.import_module(JOBS[job]).run(cfg, output_dir())

    return main()
