"""Training runs of both frameworks: run folder, resume, schedules, progress grids, result files.

Output layout of a Framework-2 run (``--run_dir``; the notebook wrote ``<GANSIAM_DIR>/results``):

    config.json                     resolved configuration (checked on every restart)
    model-<iteration>.index/.data   exact-resume checkpoint (all networks, optimizers, RNG, fixed batch)
    events.out.tfevents.*           TensorBoard scalars and progress images
    metrics.jsonl                   one line per epoch (loss means, coefficients, learning rates)
    results/model.weights.h5, latent_transform.weights.h5, Q.weights.h5, state.json
    results/progress/grid_<epoch>.png, frames/*.png, grids_per_50_iters.gif

Global epochs replace the notebook's per-cell epoch counter (spec §8.5): grids are named by global epoch,
results are written after epochs e with e % save_freq == 0, at the end of every ``epochs_per_cell`` block,
before every step change of a coefficient schedule, and at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.config import as_dict, prepare_run_dir
from common.devices import worker_dir
from common.errors import UsageError
from common.images import save_png
from common.seeding import make_generator, set_seed
from common.summaries import Logbook
from common.training import Checkpoints, Every, train_loop
from congan import checkpoints, framework1, framework2, precision
from congan.data import EpochBatches, to_signed
from congan.distribute import make_run_strategy
from congan.runs import ProgressFrames, progress_grid, resolve_seed, simsiam_for, training_images
from congan.schedules import exponential_lr, parse_schedule


class _EpochMeans:
    """Running means of the step outputs within one epoch (for metrics.jsonl)."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, outputs):
        for k, v in outputs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self):
        means = {k: self.sums[k] / self.counts[k] for k in self.sums}
        self.sums, self.counts = {}, {}
        return means


def run_framework2(cfg, images: np.ndarray | None = None, show_progress: bool = True,
                   stop_after: int | None = None, devices: list[str] | None = None) -> Path:
    """Train Framework 2 for a resolved :class:`Framework2Config`; returns the run folder.

    Args:
        images: uint8 [N, S, S, 3] training images (tests); default: read ``cfg.dataset``.
        stop_after: end after this many iterations (an interruption, for resume tests).
        devices: explicit replica devices (tests: ``["/cpu:0", "/cpu:1"]``); default: ``--gpu`` / ``TF_CONFIG``.
    """
    strategy = make_run_strategy(cfg, devices)
    cfg = resolve_seed(cfg)
    if cfg.sample_repr == "slerp" and not cfg.fix_slerp:
        print("warning: --sample_repr slerp uses the notebook's slerp, which gives NaN on unnormalised SimSiam "
              "representations (spec §8.1), so the losses will be NaN; --fix_slerp fixes it", file=sys.stderr)
    run_dir, _ = prepare_run_dir(worker_dir(cfg.run_dir), cfg)  # non-chief: a scratch folder
    set_seed(cfg.seed)
    batches = EpochBatches(training_images(cfg, images), cfg.batch_size, cfg.seed)
    # Networks and optimizer slots are mirrored on every replica; float16 compute under --mixed_precision.
    with strategy.scope(), precision.dtype_policy(cfg.mixed_precision):
        simsiam = simsiam_for(cfg)
        repr_dim = simsiam.dim
        nets = framework2.build_networks(cfg, simsiam.encoder, repr_dim)
        opts = framework2.make_optimizers(cfg, nets)
    rng = make_generator(cfg.seed)  # used in the cross-replica context only (one draw of seeds per step)
    plan = framework2.epoch_plan(batches.num_batches, cfg.D_iters, framework2.REPR_BATCHES[cfg.sample_repr])
    if not plan:
        raise UsageError(f"--batch_size: {batches.num_batches} batches per epoch cannot feed one G step")
    per_epoch = len(plan)

    # Fixed progress batch (spec §1.7): min(32, B) images, their representations and noise, kept in the checkpoint.
    count = min(32, cfg.batch_size)
    fixed_x = tf.Variable(to_signed(batches.fixed_batch(count)), trainable=False, name="fixed_x")
    r0 = framework2.encode(nets, fixed_x, cfg)
    fixed_repr = tf.Variable(r0 + cfg.repr_noise * rng.normal(tf.shape(r0)), trainable=False, name="fixed_repr")
    fixed_noise = tf.Variable(rng.normal((count, cfg.latent_noise_dim)), trainable=False, name="fixed_noise")

    ckpt = Checkpoints(run_dir, G=nets.G, D=nets.D, T=nets.T, Q=nets.Q, simsiam=simsiam, rng=rng,
                       fixed_x=fixed_x, fixed_repr=fixed_repr, fixed_noise=fixed_noise,
                       **{f"opt_{k}": v for k, v in opts.items()})
    start = ckpt.restore_latest()
    if start == 0 and cfg.load:
        used = checkpoints.load_weights_folder(cfg.load, nets)
        print(f"loaded weights from {', '.join(map(str, used.values()))}", file=sys.stderr)
        start = cfg.start_epoch * per_epoch

    lam_g_of, lam_d_of = (parse_schedule(cfg.G_consistency_schedule, "--G_consistency_schedule"),
                          parse_schedule(cfg.D_consistency_schedule, "--D_consistency_schedule"))
    base_lrs = {"G": cfg.G_lr, "T": cfg.latent_transform_lr, "D": cfg.D_lr, "Q": cfg.Q_lr}
    steps = framework2.Steps(nets, opts, cfg, rng, repr_dim, strategy)
    results_dir = run_dir / "results"
    frames = ProgressFrames(results_dir / "progress", cfg.generate_grid_interval)
    book = Logbook(run_dir)
    means = _EpochMeans()
    boundaries = set(lam_g_of.boundaries()) | set(lam_d_of.boundaries())

    @tf.function(autograph=False)
    def snapshot():
        return framework2.generate(nets, fixed_repr, fixed_noise, training=True)

    def grid_now():
        return progress_grid(fixed_x.numpy(), snapshot().numpy())

    def step_fn(i):
        epoch, j = divmod(i, per_epoch)
        for name, opt in opts.items():
            opt.set_learning_rate(exponential_lr(base_lrs[name], cfg.lr_decay, epoch))
        return framework2.run_iteration(steps, plan[j], lambda k: batches.batch(epoch, k),
                                        lam_g_of(epoch), lam_d_of(epoch))

    def after_iteration(done, out):
        epoch, j = divmod(done - 1, per_epoch)
        out = {k: v for k, v in out.items() if k != "time/steps_per_sec"}
        means.add(out)
        if plan[j].complete and j % cfg.generate_grid_interval == 0:
            grid = grid_now()
            frames.add(done, grid)
            book.images(done, {"progress": grid[None].astype(np.float32) / 255.0}, max_outputs=1)
        if plan[j].complete and j % cfg.print_freq == 0:
            book.scalars(done, {**out, "lambda/G": lam_g_of(epoch), "lambda/D": lam_d_of(epoch),
                                "lr/G": float(opts["G"].learning_rate.numpy()),
                                "lr/D": float(opts["D"].learning_rate.numpy())})
        if j == per_epoch - 1:
            end_of_epoch(epoch, done)

    def end_of_epoch(epoch, done):
        save_png(results_dir / "progress" / f"grid_{epoch:04d}.png", grid_now())
        book.record(done, {"epoch": epoch, **means.pop(), "lambda_G": lam_g_of(epoch), "lambda_D": lam_d_of(epoch),
                           "lr_G": exponential_lr(cfg.G_lr, cfg.lr_decay, epoch),
                           "lr_D": exponential_lr(cfg.D_lr, cfg.lr_decay, epoch)})
        cell_end = (epoch + 1) % cfg.epochs_per_cell == 0 or epoch + 1 == cfg.epochs or (epoch + 1) in boundaries
        if epoch % cfg.save_freq == 0 or cell_end:
            checkpoints.save_results(results_dir, nets, {
                "config": as_dict(cfg), "epochs_done": epoch + 1, "iteration": done,
                "G_consistency_schedule": str(lam_g_of), "D_consistency_schedule": str(lam_d_of)})
        if cell_end:
            frames.render()
        book.flush()

    total = cfg.epochs * per_epoch if stop_after is None else min(stop_after, cfg.epochs * per_epoch)
    train_loop(step_fn, start=start, total=total, checkpoints=ckpt,
               save_every=cfg.checkpoint_every or per_epoch, hooks=[Every(1, after_iteration)],
               progress_text=lambda o: " ".join(f"{k} {o[k]:.3f}" for k in ("loss/G", "loss/D") if k in o),
               desc="congan-f2", show_progress=show_progress)
    book.close()
    return run_dir


def run_framework1(cfg, images: np.ndarray | None = None, show_progress: bool = True,
                   stop_after: int | None = None, devices: list[str] | None = None) -> Path:
    """Train Framework 1 for a resolved :class:`Framework1Config`; returns the run folder.

    Layout: config.json, model-<iteration>.* (resume), events, metrics.jsonl,
    results/checkpoint_<epoch>.weights.h5 (epoch % save_freq == 0, and the last), results/progress/.
    ``devices``: explicit replica devices (tests); default: ``--gpu`` / ``TF_CONFIG``.
    """
    strategy = make_run_strategy(cfg, devices)
    cfg = resolve_seed(cfg)
    run_dir, _ = prepare_run_dir(worker_dir(cfg.run_dir), cfg)  # non-chief: a scratch folder
    set_seed(cfg.seed)
    batches = EpochBatches(training_images(cfg, images), cfg.batch_size, cfg.seed)
    rng = make_generator(cfg.seed)
    with strategy.scope(), precision.dtype_policy(cfg.mixed_precision):
        simsiam = simsiam_for(cfg)
        state = framework1.build_state(cfg, simsiam.encoder, simsiam.dim, rng)
    d_batch_step, g_batch_step = framework1.make_batch_steps(state, cfg, strategy)
    snapshot = framework1.make_snapshot(state)
    ckpt = Checkpoints(run_dir, model=state.model, simsiam=simsiam, rng=rng, fixed_latent=state.fixed_latent,
                       **{f"opt_{k}": v for k, v in state.opts.items()})
    start = ckpt.restore_latest()
    n_b = batches.num_batches
    results_dir = run_dir / "results"
    frames = ProgressFrames(results_dir / "progress", cfg.generate_grid_interval)
    book = Logbook(run_dir)
    means = _EpochMeans()
    current = {}

    def step_fn(i):
        epoch, j = divmod(i, n_b)
        current["images"] = tf.constant(batches.batch(epoch, j))
        step = d_batch_step if framework1.is_d_batch(j, cfg.D_iters) else g_batch_step
        return step(current["images"])

    def after_iteration(done, out):
        epoch, j = divmod(done - 1, n_b)
        out = {k: v for k, v in out.items() if k != "time/steps_per_sec"}
        means.add(out)
        if j % cfg.generate_grid_interval == 0:
            images = snapshot(current["images"]).numpy()
            grid = progress_grid(images[:0], images)
            frames.add(done, grid)
            book.images(done, {"progress": grid[None].astype(np.float32) / 255.0}, max_outputs=1)
        if j % cfg.print_freq == 0:
            book.scalars(done, out)
        if j == n_b - 1:
            book.record(done, {"epoch": epoch, **means.pop()})
            if epoch % cfg.save_freq == 0 or epoch + 1 == cfg.epochs:
                path = results_dir / f"checkpoint_{epoch:04d}.weights.h5"
                checkpoints.save_keras_weights(state.model, path)
                frames.render()
            book.flush()

    total = cfg.epochs * n_b if stop_after is None else min(stop_after, cfg.epochs * n_b)
    train_loop(step_fn, start=start, total=total, checkpoints=ckpt,
               save_every=cfg.checkpoint_every or n_b, hooks=[Every(1, after_iteration)],
               progress_text=lambda o: " ".join(f"{k} {o[k]:.3f}" for k in ("loss/D", "loss/G", "Rec loss") if k in o),
               desc="congan-f1", show_progress=show_progress)
    book.close()
    return run_dir
