"""The 2-D mixture experiment (the original's ``2d_mix/train.py``, spec §2.3, §6.5).

Per iteration (it from 0): labels of the real batch from the clusterer, a D step and a G step; at
it % recluster_every == 0 (it = 0 included) the clusterer re-fits (except ``supervised``); at
it % 1000 == 0 the plots (G in training mode on the 50000 test latents, which updates G's BN
statistics, as in the original), a snapshot, then the metrics on G in inference mode, appended to
``log.txt``.

Port additions: ``--seed`` (default: a random one, recorded in the run's ``config.json``), exact resume
from the newest snapshot (the snapshot holds G, D, both optimizers, the clusterer and the latent RNG;
the data are re-drawn from the seed), and ``--jit_compile``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.config import prepare_run_dir
from common.errors import UsageError
from common.progress import Progress
from common.seeding import make_generator, set_seed
from common.training import StopRequest, restore
from selfcond.clusterers import build_clusterer
from selfcond.mix2d import data, plots
from selfcond.mix2d.evaluation import percent_good
from selfcond.mix2d.models import Discriminator2D, build_models
from selfcond.training import (
    build_optimizer,
    job_is_done_or_taken,
    make_train_step,
    mark_job_done,
    release_job,
)

CLUSTERERS_2D = ("selfcondgan", "supervised", "online", "random_labels", "kmeans_fixed")
N_CLUSTER_POINTS = 10000  # the clustering sample of the 2-D experiments
EVAL_EVERY = 1000  # plots, snapshot and metrics
INTERRUPTED_EXIT_CODE = 130


@dataclasses.dataclass(frozen=True)
class Config2D:
    """The original's flags and defaults (spec §2.3), plus the port's ``seed`` and ``jit_compile``."""

    clusterer: str | None = None
    data_type: str | None = None
    recluster_every: int = 5000
    nruns: int = 1
    burnin_time: int = 0  # consulted only for a clusterer named "burnin", which does not exist
    variance: float | None = None
    model_type: str = "standard"
    num_clusters: int = 50
    z_dim: int = 2
    d_act_dim: int = 200
    npts: int = 100000
    train_batch_size: int = 100
    test_batch_size: int = 50000
    nepochs: int = 100
    outdir: str = "output"
    seed: int | None = None
    jit_compile: bool = False
    show_progress: bool = True

    def validate(self) -> None:
        if self.clusterer not in CLUSTERERS_2D:
            raise UsageError(f"--clusterer: expected one of {', '.join(CLUSTERERS_2D)}, got {self.clusterer!r}")
        if self.data_type not in ("ring", "grid"):
            raise UsageError(f"--data_type: expected ring or grid, got {self.data_type!r}")
        if self.model_type != "standard":
            raise UsageError(f"--model_type: only 'standard' exists, got {self.model_type!r}")
        if self.z_dim != 2:
            raise UsageError(f"--z_dim: the generator is always built for z_dim 2 (the original crashes with "
                             f"other values), got {self.z_dim}")
        for name in ("recluster_every", "nruns", "num_clusters", "d_act_dim", "train_batch_size",
                     "test_batch_size", "nepochs"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name}: expected a positive integer, got {getattr(self, name)}")
        if self.npts < self.train_batch_size:
            raise UsageError(f"--npts: needs at least one batch of {self.train_batch_size} points, got {self.npts}")
        if self.variance is not None and not self.variance > 0:
            raise UsageError(f"--variance: expected a positive number, got {self.variance}")

    @property
    def k_value(self) -> int:
        """K: the number of true modes for ``supervised`` (8 or 25), otherwise ``--num_clusters``."""
        return data.NUM_MODES[self.data_type] if self.clusterer == "supervised" else self.num_clusters

    @property
    def var(self) -> float:
        return data.DEFAULT_VARIANCE[self.data_type] if self.variance is None else self.variance

    @property
    def iterations(self) -> int:
        return self.nepochs * (self.npts // self.train_batch_size)


def experiment_dir(cfg: Config2D) -> Path:
    """``OUTDIR/[{variance}_][{model_type}_]{data_type}_{clusterer}_{recluster_every}_{K}/`` (spec §2.3)."""
    name = f"{cfg.data_type}_{cfg.clusterer}_{cfg.recluster_every}_{cfg.k_value}/"
    if cfg.model_type != "standard":
        name = f"{cfg.model_type}_{name}"
    if cfg.variance is not None:
        name = f"{cfg.variance}_{name}"
    return Path(str(Path(cfg.outdir)) + "/" + name)


def run_dirs(cfg: Config2D) -> list[Path]:
    """One folder per run; with ``--nruns > 1`` the original names them ``<experiment>/_run_{r}``."""
    base = str(experiment_dir(cfg))
    if cfg.nruns == 1:
        return [Path(base)]
    return [Path(f"{base}/_run_{r}") for r in range(cfg.nruns)]


def run(cfg: Config2D) -> list[dict]:
    """Run every repeat of the experiment; returns the last metrics of each run (empty if already done)."""
    cfg.validate()
    outdir = experiment_dir(cfg)
    reason = job_is_done_or_taken(outdir)
    if reason:
        print(reason)
        return []
    try:
        results = [train_one(cfg, run_dir, r) for r, run_dir in enumerate(run_dirs(cfg))]
        mark_job_done(outdir)
    finally:
        release_job(outdir)
    return results


def _resolve_seed(cfg: Config2D, run_dir: Path) -> int:
    """The run's seed: ``--seed``, else the one recorded by an earlier start, else a fresh random one."""
    if cfg.seed is not None:
        return int(cfg.seed)
    saved = run_dir / "config.json"
    if saved.exists():
        return int(json.loads(saved.read_text())["seed"])
    return random.SystemRandom().randrange(2**31)


def _latest_snapshot(run_dir: Path) -> int | None:
    its = [int(p.name[len("model_"):-len(".index")]) for p in (run_dir / "snapshots").glob("model_*.index")]
    return max(its) if its else None


def train_one(cfg: Config2D, run_dir: Path, run_number: int = 0) -> dict:
    """Train one G/D pair from scratch (or resume it) in ``run_dir``; returns the last logged metrics."""
    seed = _resolve_seed(cfg, run_dir) + run_number
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("nruns", "show_progress")}
    prepare_run_dir(run_dir, {**settings, "seed": seed - run_number, "run": run_number})
    for sub in ("all", "snapshots", "clusters"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    set_seed(seed)

    # The fixed draws of the original, in its order: test latents, test points, clustering points, train set.
    draws = data.MixtureSampler(seed)
    z_test = draws.normal((cfg.test_batch_size, cfg.z_dim))
    x_test, y_test = draws.sample(cfg.data_type, cfg.test_batch_size, cfg.var)
    x_cluster, _ = draws.sample(cfg.data_type, N_CLUSTER_POINTS, cfg.var)
    x_train, y_train = draws.sample(cfg.data_type, cfg.npts, cfg.var)

    k = cfg.k_value
    generator, discriminator = build_models(k, cfg.d_act_dim)
    g_opt, d_opt = (build_optimizer("adam", 1e-4, 0.8, 0.999) for _ in range(2))
    g_opt.build(generator.trainable_variables)
    d_opt.build(discriminator.trainable_variables)

    def build_d():
        model = Discriminator2D(k, act_dim=cfg.d_act_dim, name="snapshot_discriminator")
        model(tf.zeros([2, 2]), tf.zeros([2], tf.int32))
        return model

    clusterer = build_clusterer(cfg.clusterer, discriminator=discriminator, k_value=k, x_cluster=x_cluster,
                                build_discriminator=build_d, seed=seed)
    z_rng = make_generator(seed)
    iteration = tf.Variable(-1, dtype=tf.int64, name="iteration")
    checkpoint = tf.train.Checkpoint(generator=generator, discriminator=discriminator, g_optimizer=g_opt,
                                     d_optimizer=d_opt, clusterer=clusterer, z_rng=z_rng, iteration=iteration)
    step = make_train_step(generator, discriminator, g_opt, d_opt, gan_type="standard", reg_type="none",
                           reg_param=0.0, global_batch=cfg.train_batch_size, jit_compile=cfg.jit_compile)

    latest = _latest_snapshot(run_dir)
    log_path = run_dir / "log.txt"
    if latest is None:
        log_path.unlink(missing_ok=True)
        clusterer.recluster(discriminator)  # the start-up clustering on the random D
        start = 0
    else:
        restore(checkpoint, run_dir / "snapshots" / f"model_{latest}", written=True)
        start = latest + 1
        print(f"resuming {run_dir} after iteration {latest}")

    batches = cfg.npts // cfg.train_batch_size
    total = cfg.iterations
    last = {}
    order, order_epoch = None, -1
    bar = Progress(total=total, initial=start, desc=run_dir.name, enabled=cfg.show_progress)
    with StopRequest() as stop:
        for it in range(start, total):
            epoch, index = divmod(it, batches)
            if epoch != order_epoch:  # shuffled each epoch, drop_last; the order is a function of (seed, epoch)
                order, order_epoch = np.random.default_rng([seed, 1, epoch]).permutation(cfg.npts), epoch
            idx = order[index * cfg.train_batch_size:(index + 1) * cfg.train_batch_size]
            x_real = tf.constant(x_train[idx])
            z = z_rng.normal([cfg.train_batch_size, cfg.z_dim])
            labels = clusterer.get_labels(x_real, tf.constant(y_train[idx]))
            out = step(x_real, labels, z)
            if it % cfg.recluster_every == 0 and cfg.clusterer != "supervised":
                clusterer.recluster(discriminator, x_batch=x_real)
            if it % EVAL_EVERY == 0:
                last = _evaluate(cfg, it, epoch, out, generator, clusterer, z_test, x_test, y_test, run_dir)
                iteration.assign(it)
                checkpoint.write(str(run_dir / "snapshots" / f"model_{it}"))
                bar.update(it + 1, f"modes={last['modes']} kl={last['kl']:.4f}")
            elif stop.requested:
                iteration.assign(it)
                checkpoint.write(str(run_dir / "snapshots" / f"model_{it}"))
            if stop.requested:
                bar.close()
                print(f"stopped after iteration {it}; run the same command to continue", file=sys.stderr)
                sys.exit(INTERRUPTED_EXIT_CODE)
            if it % 100 == 0:
                bar.update(it + 1)
    bar.close()
    return last


def _evaluate(cfg, it, epoch, out, generator, clusterer, z_test, x_test, y_test, run_dir) -> dict:
    """Plots, then metrics in inference mode, and one line in ``log.txt`` (spec §6.5)."""
    cache: dict = {}

    def test_labels():
        """Labels of the test points; drawn anew per use only for a random clusterer (as in the original)."""
        if not (clusterer.deterministic and "labels" in cache):
            cache["labels"] = clusterer.get_labels(tf.constant(x_test), tf.constant(y_test))
        return cache["labels"]

    # Training-mode pass: G's BN statistics move to the test batch's before the metric pass (original order).
    fake = generator(tf.constant(z_test), test_labels(), training=True).numpy()
    plots.plot_generated(fake, x_test, it, run_dir)
    plots.plot_clusters(x_test, test_labels().numpy(), it, run_dir)
    fake = generator(tf.constant(z_test), test_labels(), training=False).numpy()
    prop_real, modes, kl = percent_good(fake, cfg.data_type, cfg.var)
    dloss, gloss = float(out["d_loss"]), float(out["g_loss"])
    line = (f"[epoch {epoch} it {it}] dloss = {dloss}, gloss = {gloss}, prop_real = {prop_real}, "
            f"modes = {modes}, kl = {kl}")
    with open(run_dir / "log.txt", "a") as handle:
        handle.write(line + "\n")
    print(line)
    return {"it": it, "dloss": dloss, "gloss": gloss, "prop_real": prop_real, "modes": modes, "kl": kl}
