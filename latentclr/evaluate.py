"""``eval.py``: contrastive accuracy and loss of trained directions on fresh latents (``colat/evaluator.py``).

Runs ``hparams.iterations`` batches of ``hparams.batch_size`` exactly like the training's validation loop
(inference mode, no update) but with ``feed_layers`` applied, and logs ``Acc: x.xxxx Loss: y.yyyy`` to
``eval.log``. The original's evaluator never runs (it builds the loss without ``k`` and reads attributes
it never set); this is the behaviour its code describes.
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.errors import UsageError
from common.progress import Progress
from latentclr import build
from latentclr.checkpoints import load_directions
from latentclr.cli import require_checkpoint
from latentclr.trainer import Pieces, attach_log_file, make_eval_step, seed_everything

log = logging.getLogger()


def run(cfg, run_dir: str | Path) -> dict:
    """Evaluate ``checkpoint``; returns ``{"acc": ..., "loss": ...}`` (means over the batches)."""
    cfg = build.to_dict(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = attach_log_file(run_dir, "eval")
    try:
        checkpoint = require_checkpoint(cfg)
        seed_everything(cfg)
        pieces = Pieces(cfg)
        load_directions(checkpoint, pieces.model, pieces.projector, pieces.feature_shape)
        hp = cfg["hparams"]
        iterations, batch_size = int(hp["iterations"]), int(hp["batch_size"])
        if iterations < 1 or batch_size < 2:
            raise UsageError(f"hparams.iterations must be >= 1 and hparams.batch_size >= 2, got {iterations} and "
                             f"{batch_size}")
        step = make_eval_step(pieces, use_feed=True)
        acc_sum = loss_sum = 0.0
        bar = Progress(total=iterations, desc="Evaluating... ")
        for i in range(iterations):
            out = step(*pieces.draw(batch_size))
            acc_sum += float(out["acc"])
            loss_sum += float(out["loss"])
            bar.update(i + 1)
        bar.close()
        acc, loss = acc_sum / iterations, loss_sum / iterations
        log.info(f"Acc: {acc:.4f} Loss: {loss:.4f}\n")
        return {"acc": acc, "loss": loss}
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
