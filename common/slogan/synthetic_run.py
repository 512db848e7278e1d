"""One run of SLOGAN on the synthetic mixture: run folder, checkpoints, loop, plots, clustering metrics.

Layout of ``<log_dir><run_name>/`` (the original's ``log_dir + run_name`` concatenation):

- ``real_data.png`` and ``samples_<i+1>.png`` every ``log_freq`` iterations (the original's figures);
  ``training.gif`` of the sample figures at the end;
- ``config.json``, ``model-<iteration>.index/.data-*`` checkpoints (port addition: the original wrote
  none), the TensorBoard events file, and ``metrics.jsonl``: at every plot step the losses, π, the
  temperature and G(μ_c) with the nearest mode; at every clustering step purity / ARI / NMI and π.

Printed like the original: π and ``[purity] [ari] [nmi]`` when i % 1000 == 0 (0-based i, so after the
first iteration too), plus once more after the last iteration (port addition).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from common import metrics
from common.config import RESUME_SAFE_KEYS, prepare_run_dir, timestamp_run_name
from common.devices import checked_strategy, worker_run_dir
from common.images import save_gif, save_png
from common.seeding import set_seed
from common.slogan.data import build_synthetic_streams
from common.slogan.scatter import real_data_figure, samples_figure
from common.slogan.synthetic import (
    SyntheticConfig,
    SyntheticState,
    make_loss_eval_step,
    make_train_step,
    stateless_seed,
)
from common.summaries import Logbook
from common.training import Checkpoints, Every, restore, train_loop

tfd = tfp.distributions

GIF_MAX_FRAMES = 100
CHECKPOINTS_KEPT = 5
RESUME_IGNORED = RESUME_SAFE_KEYS | {"show_progress", "stop_after"}


def progress_text(outputs) -> str:
    """The original's progress text: ``[D loss: x] [G loss: x] [Lc: x]`` (G loss = adversarial part)."""
    return f"[D loss: {outputs['loss/d']:.4f}] [G loss: {outputs['loss/g']:.4f}] [Lc: {outputs['loss/lc']:.8f}]"


class PlotSampler:
    """Everything ``samples_<i+1>.png`` shows, drawn with G in inference mode (BN moving statistics).

    :meth:`__call__` returns ``mixture`` [8000, 2] (G of mixture samples), ``components`` (K arrays, G of
    int(80000·π_c) samples of component c) and ``centres`` [K, 2] (G(μ_c)). The original also sorted each
    component's samples by log-density, which only changes the drawing order inside one colour and so not
    the image. The samplers are compiled once (the per-component count is a tensor argument).
    """

    def __init__(self, state: SyntheticState, config: SyntheticConfig):
        g, pr, noise = state.generator, state.prior, state.eval_noise
        self.state, self.config = state, config

        @tf.function(autograph=False)
        def mixture_points():
            return g(pr.sample(config.plot_mixture_samples, seed=stateless_seed(noise)), training=False)

        @tf.function(autograph=False, input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
        def component_points(c, n):
            component = tfd.MultivariateNormalTriL(
                loc=tf.gather(pr.means(), c), scale_tril=tf.linalg.cholesky(tf.gather(pr.covariances(), c))
            )
            return g(tf.stop_gradient(component.sample(n, seed=stateless_seed(noise))), training=False)

        self.mixture_points, self.component_points = mixture_points, component_points

    def __call__(self) -> dict:
        pi = self.state.prior.pi
        counts = tf.cast(float(self.config.plot_component_total) * pi, tf.int32)  # tf.cast(80000 * pi[i], int32)
        components = [self.component_points(tf.constant(c, tf.int32), counts[c]).numpy()
                      for c in range(self.config.num_cluster)]
        centres = self.state.generator(self.state.prior.means(), training=False).numpy()
        return {"mixture": self.mixture_points().numpy(), "components": components, "centres": centres}


def clustering_scores(state: SyntheticState, config: SyntheticConfig) -> dict[str, float]:
    """Purity / ARI / NMI of KMeans on raw encoder outputs of one evaluation batch (spec §6.1).

    KMeans: n_clusters = max(K, number of labels), random_state 0, n_init 10, on E(x) [N, d].
    """
    x, classes = state.eval_batch()
    features = state.encoder(x, training=False).numpy()
    classes = classes.numpy()
    predicted = metrics.kmeans_labels(features, config.num_cluster, classes, seed=0, n_init=10)
    return {
        "purity": metrics.purity(classes, predicted),
        "ari": metrics.ari(classes, predicted),
        "nmi": metrics.nmi(classes, predicted),
    }


def pi_entropy(pi: np.ndarray) -> float:
    """Shannon entropy of π in nats (log K when uniform)."""
    pi = np.asarray(pi, np.float64)
    return float(-np.sum(pi * np.log(np.maximum(pi, 1e-30))))


def nearest_modes(points: np.ndarray, modes: np.ndarray) -> list[int]:
    """Index of the nearest mode centre for each point [N, 2]."""
    distances = np.linalg.norm(np.asarray(points)[:, None, :] - np.asarray(modes)[None, :, :], axis=2)
    return distances.argmin(axis=1).tolist()


class Reporter:
    """The periodic work after an iteration: figures, TensorBoard, ``metrics.jsonl`` and the printed scores."""

    def __init__(self, state: SyntheticState, config: SyntheticConfig, run_dir: Path, logbook: Logbook,
                 mode_centres: np.ndarray):
        self.state, self.config, self.run_dir, self.logbook = state, config, run_dir, logbook
        self.mode_centres = mode_centres
        self.sampler = PlotSampler(state, config)
        self.last_scores: dict = {}

    def plot(self, done: int, outputs) -> None:
        """``samples_<done>.png`` + TensorBoard scalars and image + one ``metrics.jsonl`` record."""
        points = self.sampler()
        image = samples_figure(self.state.plot_real.numpy(), points["mixture"], points["components"],
                               points["centres"])
        save_png(self.run_dir / f"samples_{done}.png", image)
        pi = self.state.prior.pi.numpy()
        scalars = {key: value for key, value in outputs.items() if key.startswith(("loss/", "d/", "schedule/"))}
        scalars.update({f"pi/cluster_{c}": float(p) for c, p in enumerate(pi)})
        scalars["pi/entropy"] = pi_entropy(pi)
        scalars["time/steps_per_sec"] = outputs.get("time/steps_per_sec", 0.0)
        self.logbook.scalars(done, scalars)
        self.logbook.images(done, {"samples": image[None].astype(np.float32) / 255.0}, max_outputs=1)
        self.logbook.record(done, {
            **{k: float(v) for k, v in outputs.items()},
            "pi": pi.tolist(), "pi_entropy": pi_entropy(pi),
            "g_mu": points["centres"].tolist(), "nearest_mode": nearest_modes(points["centres"], self.mode_centres),
        })
        self.logbook.flush()

    def evaluate(self, done: int, outputs=None) -> None:
        """Clustering scores of a fresh evaluation batch, printed like the original and recorded."""
        scores = clustering_scores(self.state, self.config)
        pi = self.state.prior.pi.numpy()
        print(f"\npi:{tuple(float(p) for p in pi)}"
              f"\n[purity: {scores['purity']:.4f}] [ari: {scores['ari']:.4f}] [nmi: {scores['nmi']:.4f}]", flush=True)
        self.logbook.scalars(done, {f"cluster_assignment/{k.upper() if k != 'purity' else k}": v
                                    for k, v in scores.items()})
        self.logbook.record(done, {**scores, "pi": pi.tolist()})
        self.logbook.flush()
        self.last_scores = {"step": done, **scores, "pi": pi.tolist()}


def write_training_gif(run_dir: Path, max_frames: int = GIF_MAX_FRAMES) -> Path | None:
    """``training.gif`` from the ``samples_<n>.png`` figures in step order (at most ``max_frames``, evenly spread)."""
    frames = sorted(run_dir.glob("samples_*.png"), key=lambda p: int(p.stem.split("_")[1]))
    if not frames:
        return None
    if len(frames) > max_frames:
        keep = np.unique(np.linspace(0, len(frames) - 1, max_frames).round().astype(int))
        frames = [frames[k] for k in keep]
    return save_gif(run_dir / "training.gif", frames, seconds_per_frame=0.3)


def run(config: SyntheticConfig, extra_hooks: Sequence[Every] = ()) -> dict:
    """Train (or, with ``ckpt_path``, only evaluate losses) and return the last clustering scores.

    A run folder that already holds a checkpoint of the same configuration is resumed from its newest
    checkpoint; the result equals that of an uninterrupted run.

    Args:
        config: the run's settings (validated here).
        extra_hooks: more :class:`common.training.Every` hooks (tests use one to stop a run early).
    Returns:
        ``{"run_dir", "step", "purity", "ari", "nmi", "pi"}`` of the last evaluation.
    """
    config.validate()
    set_seed(config.seed)
    # A non-chief worker of a multi-worker run writes into a scratch folder that is removed afterwards.
    with worker_run_dir(config.log_dir + (config.run_name or timestamp_run_name())) as target:
        return _run(config, extra_hooks, target)


def _run(config: SyntheticConfig, extra_hooks: Sequence[Every], target: Path) -> dict:
    run_dir, resuming = prepare_run_dir(target, config, ignore=RESUME_IGNORED)
    print(f"Logging to: {run_dir}", flush=True)
    if config.reg == "gp" and not config.fix_gp:
        print("warning: --reg gp adds no penalty, as in the original (only lp is wired); "
              "add --fix_gp for the gradient penalty", file=sys.stderr)
    train, evaluation = build_synthetic_streams(config.seed)
    state = SyntheticState(config, train, evaluation, make_run_strategy(config))
    state.plot_real.assign(state.eval_batch()[0])  # the original's fixed 10k real batch of every figure
    logbook = Logbook(run_dir)
    reporter = Reporter(state, config, run_dir, logbook, train.scaled_means)
    hooks = [Every(config.log_freq, reporter.plot),
             Every(config.metrics_every, reporter.evaluate, offset=1, at_end=True), *extra_hooks]
    try:
        if config.ckpt_path:
            _evaluate_losses(state, config, run_dir, hooks)
        else:
            _train(state, config, run_dir, hooks, resuming)
    finally:
        logbook.close()
    return {"run_dir": str(run_dir), **reporter.last_scores}


def make_run_strategy(config: SyntheticConfig) -> tf.distribute.Strategy:
    """The strategy of ``--gpu`` (several GPUs: MirroredStrategy; ``TF_CONFIG``: multi-worker), or of the explicit
    ``devices`` (tests), checked against the batch size and ``--jit_compile`` (:func:`common.devices.checked_strategy`;
    the seed always has a value here)."""
    devices = [d.strip() for d in config.devices.split(",") if d.strip()] if config.devices else None
    strategy = checked_strategy(batch_size=config.batch_size, gpu=config.gpu, devices=devices,
                                jit_compile=config.jit_compile, seed=config.seed)
    count = strategy.num_replicas_in_sync
    if count > 1:
        print(f"training on {count} replicas ({type(strategy).__name__})", flush=True)
    return strategy


def _save_real_figure(state: SyntheticState, run_dir: Path) -> None:
    if not (run_dir / "real_data.png").exists():
        save_png(run_dir / "real_data.png", real_data_figure(state.plot_real.numpy()))


def _train(state: SyntheticState, config: SyntheticConfig, run_dir: Path, hooks, resuming: bool) -> None:
    checkpoints = Checkpoints(run_dir, max_to_keep=CHECKPOINTS_KEPT, **state.trackables())
    start = checkpoints.restore_latest()
    if start:
        print(f"resuming from {checkpoints.latest} (iteration {start} of {config.iterations})", flush=True)
    elif resuming:
        print(f"note: {run_dir} has no checkpoint yet; starting from iteration 0", flush=True)
    _save_real_figure(state, run_dir)
    end = config.last_iteration
    if start >= end:
        print(f"the run already finished {start} of {config.iterations} iterations", flush=True)
    else:
        step = make_train_step(state, config)
        train_loop(lambda i: step(), start=start, total=end, checkpoints=checkpoints,
                   save_every=config.checkpoint_every, hooks=hooks, progress_text=progress_text,
                   desc="slogan", show_progress=config.show_progress)
    write_training_gif(run_dir)


def _evaluate_losses(state: SyntheticState, config: SyntheticConfig, run_dir: Path, hooks) -> None:
    """``--ckpt_path``: the original's loss-evaluation loop, without its crash (spec §9 #2).

    The original restored nothing; here a checkpoint of this port at that prefix is restored when one
    exists (weights, BN statistics, prior), otherwise the freshly initialised model is evaluated.
    """
    path = config.ckpt_path
    if tf.io.gfile.exists(path + ".index"):
        restore(tf.train.Checkpoint(**state.trackables()), path, partial=True)
        print(f"restored {path}", flush=True)
    else:
        print(f"note: {path} is not a checkpoint of this port; evaluating the initial model (like the original, "
              "which restored nothing)", flush=True)
    _save_real_figure(state, run_dir)
    evaluate = make_loss_eval_step(state, config)
    train_loop(lambda i: evaluate(), start=0, total=config.iterations, checkpoints=None, save_every=0,
               hooks=hooks, progress_text=progress_text, desc="evaluate", show_progress=config.show_progress)
