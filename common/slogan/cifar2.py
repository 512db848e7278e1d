"""SLOGAN on CIFAR-2 (planes vs frogs): configuration, the training run, and ``--pretrained`` evaluation.

``python slogan_cifar2.py [flags]`` builds a :class:`Cifar2Config` and calls :func:`run`. A run writes
``<log_dir><int(ratio_plane)>/<run_name>/`` (spec §2.4): ``config.json``, TensorBoard events with the
original's tags (spec §2.3), ``metrics.jsonl`` and checkpoints ``model-<iteration>``. Running the same command
with the same ``--run_name`` resumes from the newest checkpoint. ``--pretrained PREFIX`` restores a
checkpoint (this port's, or the authors' TF1 ``model-100000``) and only evaluates, printing ICFID, Best_idx,
IS, FID, π, ARI and NMI like the original.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from common.config import prepare_run_dir, timestamp_run_name
from common.devices import worker_dir
from common.errors import UsageError
from common.images import make_grid
from common.seeding import set_seed
from common.slogan import cifar2_data, cifar2_eval, cifar2_step, tf1_checkpoint
from common.slogan.cifar2_config import Cifar2Config
from common.summaries import Logbook, tf1_image_scale
from common.training import Checkpoints, Every, restore, train_loop

MAX_CHECKPOINTS = 1000  # tf.train.Saver(max_to_keep=1000)

__all__ = ["Cifar2Config", "Cifar2Run", "evaluate_pretrained", "run"]


def progress_text(outputs) -> str:
    """The original's progress-bar text."""
    return f"[D loss: {outputs['d_loss']:.4f}] [G loss: {outputs['g_loss']:.4f}] [Lc: {outputs['lc']:.8f}]"


def grid_image(images: np.ndarray) -> np.ndarray:
    """An 8×8 column-major grid of the first 64 images, rescaled like a TF1 image summary: [1, 8H, 8W, C]."""
    return tf1_image_scale(make_grid(np.asarray(images[:64], np.float32), rows=8, cols=8, column_major=True))[None]


class Cifar2Run:
    """The pieces of one run, wired together; :func:`run` and :func:`evaluate_pretrained` use it.

    Args:
        cfg: the validated configuration.
        load_cifar10: CIFAR-10 loader like ``keras.datasets.cifar10.load_data`` (default: the cache).
        extractors: feature networks of the metrics (default: chosen by ``cfg.features``).
        strategy: a ``tf.distribute`` strategy (default: from ``--gpu``).
    """

    def __init__(self, cfg: Cifar2Config, *, load_cifar10: Callable | None = None,
                 extractors: cifar2_eval.Extractors | None = None, strategy=None):
        from common.devices import make_strategy, parse_gpu_flag

        self.cfg = cfg
        set_seed(cfg.random_seed)
        self.strategy = strategy or make_strategy(num_gpus=len(parse_gpu_flag(cfg.gpu)))
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise UsageError(f"--batch_size {cfg.batch_size} must be divisible by the {replicas} devices of --gpu")
        if cfg.jit_compile and replicas > 1:
            raise UsageError("--jit_compile works on one device only; drop it or use one --gpu")
        loader = load_cifar10
        if loader is None and cfg.data_dir is not None:
            from common.datasets import load_cifar10 as cached

            def loader():
                return cached(cfg.data_dir)

        self.streams = cifar2_data.build_streams(cfg, loader)
        self.state = cifar2_step.build_state(cfg, self.strategy)
        self.eval_rng = tf.random.Generator.from_seed(cfg.random_seed + 1, alg="philox")
        self.extractors = extractors or cifar2_eval.load_extractors(cfg)
        self.evaluator = cifar2_eval.Cifar2Evaluator(self.state, cfg, self.streams, self.extractors, self.eval_rng)

    def trackables(self) -> dict:
        return {**self.state.trackables(), **self.streams.trackables(), "eval_rng": self.eval_rng}

    def restore(self, prefix: str) -> str:
        """Restore a checkpoint prefix of this port or of the original (TF1); returns which one it was."""
        if tf1_checkpoint.is_tf1_checkpoint(prefix):
            s = self.state
            rebuilt = tf1_checkpoint.restore_tf1(prefix, (s.generator, s.discriminator, s.encoder), s.prior,
                                                 s.global_step)
            if rebuilt:
                print(f"note: {prefix} has no zero-debias BatchNorm state; rebuilt {len(rebuilt)} variables")
            return "tf1"
        restore(tf.train.Checkpoint(**self.trackables()), prefix, partial=True)
        return "port"

    # -- evaluation pieces, each printing like the original and returning its numbers --

    def clustering(self) -> dict:
        scores = self.evaluator.clustering()
        print(f"[ARI: {scores['ARI']:.4f}] [NMI: {scores['NMI']:.4f}]")
        return scores

    def final_metrics(self) -> dict:
        """ICFID with Best_idx, then IS and FID (the original's end-of-training block)."""
        print("Measuring unsupervised conditional generation metric...")
        icfid, best_idx, per_class = self.evaluator.icfid()
        print(f"\nICFID:{icfid}\nBest_idx:{tuple(int(i) for i in best_idx)}")
        print("Measuring unconditional generation metrics...")
        inception_score = self.evaluator.inception_score(self.cfg.is_size)
        fid = self.evaluator.fid()
        print(f"IS:{inception_score}\nFID:{fid}")
        return {"ICFID": icfid, "ICFID_per_class": per_class.tolist(), "best_idx": best_idx.tolist(),
                "IS": inception_score, "FID": fid}


def _summary_hook(run: Cifar2Run, logbook: Logbook, summary_fn) -> Callable:
    def write(done: int, outputs=None) -> None:
        x_true, _ = run.streams.train.next()
        scalars, images = summary_fn(tf.constant(x_true))
        values = {}
        for name, value in scalars.items():
            value = np.reshape(value.numpy(), [-1]).astype(np.float64)
            values[f"summaries/{name}/mean"] = value.mean()
            values[f"summaries/{name}/std"] = value.std()
        logbook.scalars(done - 1, values)
        logbook.images(done - 1, {f"summaries/{name}/grid/image/0": grid_image(x.numpy())
                                  for name, x in images.items()}, max_outputs=1)

    return write


def _cluster_hook(run: Cifar2Run, logbook: Logbook) -> Callable:
    def measure(done: int, outputs=None) -> None:
        pi = run.evaluator.pi
        print(f"\npi:{tuple(float(v) for v in pi)}")
        scores = run.clustering()
        values = {"cluster_assignment/ARI": scores["ARI"], "cluster_assignment/NMI": scores["NMI"]}
        values.update({f"pi/cluster_{c}": float(v) for c, v in enumerate(pi)})
        logbook.scalars(done - 1, values)
        logbook.record(done - 1, {**values, "iteration": done})
        logbook.flush()

    return measure


def _validation_hook(run: Cifar2Run, logbook: Logbook, write_summaries: Callable) -> Callable:
    def validate(done: int, outputs=None) -> None:
        write_summaries(done)  # the original's validation summary includes the periodic one
        prefix = run.extractors.prefix
        values = {f"summaries/validation/{prefix}inception_score": run.evaluator.inception_score(run.cfg.val_is_size),
                  f"summaries/validation/{prefix}fid": run.evaluator.fid()}
        logbook.scalars(done - 1, values)
        logbook.record(done - 1, {**values, "iteration": done, "features": run.extractors.name})
        logbook.flush()

    return validate


def _final_hook(run: Cifar2Run, logbook: Logbook, results: dict) -> Callable:
    def finish(done: int, outputs=None) -> None:
        results.update(run.final_metrics())
        prefix = run.extractors.prefix
        values = {f"{prefix}ICFID/mean": results["ICFID"]}
        values.update({f"{prefix}ICFID/cluster_{j}": v for j, v in enumerate(results["ICFID_per_class"])})
        values.update({f"best_idx/cluster_{j}": v for j, v in enumerate(results["best_idx"])})
        values.update({f"summaries/{prefix}IS": results["IS"], f"summaries/{prefix}FID": results["FID"]})
        logbook.scalars(done - 1, values)
        logbook.record(done - 1, {**values, "iteration": done, "features": run.extractors.name})
        logbook.flush()

    return finish


def run(cfg: Cifar2Config, *, load_cifar10: Callable | None = None,
        extractors: cifar2_eval.Extractors | None = None, strategy=None, show_progress: bool = True) -> dict:
    """Train (or, with ``cfg.pretrained``, only evaluate) as ``slogan_cifar2.py`` does.

    Args:
        cfg: the configuration (validated here).
        load_cifar10, extractors, strategy: injection points (tests pass fake CIFAR arrays and stub features).
        show_progress: draw the progress bar.
    Returns:
        ``{"run_dir", "iterations", "final"}`` for training; the metrics for ``--pretrained``.
    """
    cfg.validate()
    if cfg.pretrained:
        return evaluate_pretrained(cfg, load_cifar10=load_cifar10, extractors=extractors, strategy=strategy)
    run_dir = cfg.run_dir(cfg.run_name or timestamp_run_name())
    run_dir, resuming = prepare_run_dir(worker_dir(run_dir), cfg)  # non-chief: a scratch folder
    pieces = Cifar2Run(cfg, load_cifar10=load_cifar10, extractors=extractors, strategy=strategy)
    checkpoints = Checkpoints(run_dir, max_to_keep=MAX_CHECKPOINTS, **pieces.trackables())
    start = checkpoints.restore_latest()
    print(f"Logging to: {run_dir}" + (f" (resuming after iteration {start})" if resuming and start else ""))
    train_step = cifar2_step.make_train_step(pieces.state, cfg, pieces.strategy, jit_compile=cfg.jit_compile)
    logbook = Logbook(run_dir)
    write_summaries = _summary_hook(pieces, logbook, cifar2_step.make_summary_step(pieces.state, cfg, pieces.eval_rng))
    final = {}

    def step(i: int):
        real = np.stack([pieces.streams.train.next()[0] for _ in range(cfg.n_critic)])
        return train_step(tf.constant(real))

    hooks = [
        Every(cfg.log_freq, write_summaries),
        Every(cfg.val_freq, _validation_hook(pieces, logbook, write_summaries)),
        Every(cfg.iterations, _final_hook(pieces, logbook, final)),
        Every(cfg.log_freq, _cluster_hook(pieces, logbook)),
    ]
    try:
        train_loop(step, start=start, total=cfg.iterations, checkpoints=checkpoints, save_every=cfg.save_freq,
                   hooks=hooks, progress_text=progress_text, desc="slogan-cifar2", show_progress=show_progress)
    finally:
        logbook.close()
    print(f"Logging to: {run_dir}")
    return {"run_dir": str(run_dir), "iterations": cfg.iterations, "final": final}


def evaluate_pretrained(cfg: Cifar2Config, *, load_cifar10: Callable | None = None,
                        extractors: cifar2_eval.Extractors | None = None, strategy=None) -> dict:
    """``--pretrained PREFIX``: restore, run no training step, print and return the original's metrics.

    Nothing is written (the original's summary writer only left an empty folder behind).
    """
    pieces = Cifar2Run(cfg, load_cifar10=load_cifar10, extractors=extractors, strategy=strategy)
    kind = pieces.restore(cfg.pretrained)
    print(f"model loaded! pretrained model path: {cfg.pretrained}" + (" (TF1 checkpoint)" if kind == "tf1" else ""))
    results = pieces.final_metrics()
    pi = pieces.evaluator.pi
    print(f"pi:{tuple(float(v) for v in pi)}")
    print("Measuring clustering metrics...")
    results.update(pieces.clustering())
    results["pi"] = pi.tolist()
    results["features"] = pieces.extractors.name
    return results
