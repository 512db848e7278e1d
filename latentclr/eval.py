"""Evaluate trained directions (the original's ``eval.py``):
``python latentclr/eval.py checkpoint=<run>/best_model.ckpt``.

Hydra command line as the original (config groups model, loss, generator, projector, hparams, misc, size
under latentclr/conf); outputs go to Hydra's run folder.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from latentclr.cli import put_repo_root_on_path, run_job  # noqa: E402

put_repo_root_on_path(__file__)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402


@hydra.main(version_base=None, config_path="conf", config_name="eval")
def eval(cfg: DictConfig) -> None:
    run_job(cfg, "eval")


if __name__ == "__main__":
    eval()
