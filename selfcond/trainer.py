"""Image training of the Self-Conditioned GAN (the original's ``train.py``, spec §2.1, §2.4, §6.3).

Start-up: data, G and D, ``x_test`` (first ``ntest`` images of one pass) and ``x_cluster`` (``nimgs``
images of another pass), ``z_test``, the clusterer, then the newest checkpoint if any; without one, the
initial clustering on the random D. Loop over iterations it = 0, 1, ... of (nepochs + 1) epochs
(the original's bound is checked only at epoch boundaries, spec §10.5): labels, D step, G step, EMA; then
at it % recluster_every == 0 and it > burnin_time a re-clustering, at it % sample_every == 0 sample
grids, at it % backup_every == 0 a checkpoint ``chkpts/model_%08d`` (and ``chkpts/model`` for it > 0).
There is no final save, as in the original (``save_last`` adds one; ``exact_epochs`` runs nepochs epochs).

The checkpoint holds G, D, both optimizers, the EMA generator, the clusterer (snapshot D, centers,
mapping, labels of the clustering sample), the latent RNG and the iteration; data order and augmentation
are functions of (seed, iteration), so a resumed run continues exactly.

Multi-worker (``TF_CONFIG``, ``MultiWorkerMirroredStrategy`` built by ``common.devices.select_gpus``): every
worker reads the same global batch and z (same seed) and feeds its replicas their rows of it (:func:`distribute`).
Only the chief touches the run folder: it takes the job lock, resolves the seed, checks the config and picks the
checkpoint to resume, and every worker adopts these decisions (``common.devices.from_chief``); the other workers
read the chief's checkpoint and clustering images, save their checkpoints into a scratch folder
(``common.devices.worker_dir``, as the collectives of a save need every worker) and write nothing else. After each
reclustering every worker takes the chief's partition (``selfcond.clusterers.share_chief_clustering``).
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.config import RESUME_SAFE_KEYS, prepare_run_dir
from common.devices import from_chief, is_chief, worker_dir
from common.errors import UsageError
from common.images import save_grid
from common.progress import Progress
from common.seeding import make_generator, set_seed
from common.summaries import Logbook
from common.training import StopRequest
from common.training import restore as restore_checkpoint
from selfcond.clusterers import build_clusterer, share_chief_clustering
from selfcond.data import Loader, build_dataset
from selfcond.losses import GAN_TYPES, REG_TYPES
from selfcond.models import build_discriminator, build_generator
from selfcond.training import (
    build_optimizer,
    distribute,
    job_is_done_or_taken,
    make_train_step,
    mark_job_done,
    release_job,
)

INTERRUPTED_EXIT_CODE = 130
GRID_COLUMNS = 8  # torchvision save_image's nrow in the original's logger


@dataclasses.dataclass
class TrainOptions:
    """Command-line options of ``train.py`` (original flags plus the port's ``seed``, ``source``, ``jit_compile``)."""

    config_path: str
    outdir: str | None = None
    nepochs: int = 250
    model_it: int = -1
    devices: tuple = ("0",)
    seed: int | None = None
    source: str | None = None
    jit_compile: bool = False
    max_it: int | None = None  # port: stop (with a checkpoint, not done) after this many iterations
    exact_epochs: bool = False  # port fix (spec §10.5): run nepochs epochs, not nepochs + 1
    save_last: bool = False  # port fix (spec §10.5): checkpoint the final iteration too
    show_progress: bool = True


def checkpoint_prefix(out_dir: str | Path, it: int | None = None) -> Path:
    """``OUT/chkpts/model_%08d`` (or ``OUT/chkpts/model`` for the latest copy)."""
    name = "model" if it is None else f"model_{it:08d}"
    return Path(out_dir) / "chkpts" / name


def saved_iterations(out_dir: str | Path) -> list[int]:
    """Iterations of every ``chkpts/model_%08d`` checkpoint, ascending."""
    found = []
    for path in (Path(out_dir) / "chkpts").glob("model_*.index"):
        digits = path.name[len("model_"):-len(".index")]
        if digits.isdigit():
            found.append(int(digits))
    return sorted(found)


def clustering_size(prefix: str | Path) -> int | None:
    """N_c stored in a checkpoint (the length of the clusterer's ``x_labels``), or None."""
    reader = tf.train.load_checkpoint(str(prefix))
    for key, shape in reader.get_variable_to_shape_map().items():
        if key.startswith("clusterer/x_labels/"):
            return int(shape[0])
    return None


def validate(config: dict) -> None:
    """Refuse settings the port does not support, naming the config key."""
    training = config["training"]
    if training["gan_type"] not in GAN_TYPES:
        raise UsageError(f"training.gan_type: expected one of {GAN_TYPES}, got {training['gan_type']!r}")
    if training["reg_type"] not in REG_TYPES:
        raise UsageError(f"training.reg_type: expected one of {REG_TYPES}, got {training['reg_type']!r}")
    if config["z_dist"]["type"] not in ("gauss", "uniform"):
        raise UsageError(f"z_dist.type: expected gauss or uniform, got {config['z_dist']['type']!r}")
    for key in ("batch_size", "backup_every", "recluster_every", "sample_every", "log_every"):
        if int(training[key]) < 1:
            raise UsageError(f"training.{key}: expected a positive integer, got {training[key]}")


def sample_z(rng: tf.random.Generator, kind: str, n: int, dim: int):
    """z ~ N(0, I) (``gauss``) or U[-1, 1]^dim (``uniform``): [n, dim]."""
    if kind == "uniform":
        return rng.uniform([n, dim], -1.0, 1.0)
    return rng.normal([n, dim])


def total_iterations(nepochs: int, batches_per_epoch: int, exact_epochs: bool = False) -> int:
    """Iterations of a run from scratch: the original checks ``it < nepochs * len(loader)`` only at epoch
    boundaries, starting from it = -1, so it runs nepochs + 1 epochs (spec §10.5); ``exact_epochs`` runs
    nepochs."""
    epochs = nepochs if exact_epochs else nepochs + 1
    return epochs * batches_per_epoch if epochs > 0 else 0


def due_events(it: int, training: dict) -> dict[str, bool]:
    """What happens after iteration ``it`` (spec §6.3): log, recluster, sample, backup."""
    return {
        "log": it % int(training["log_every"]) == 0,
        "recluster": it % int(training["recluster_every"]) == 0 and it > int(training["burnin_time"]),
        "sample": it % int(training["sample_every"]) == 0,
        "backup": it % int(training["backup_every"]) == 0,
    }


class InceptionMonitor:
    """The original's training-time Inception Score monitor ("pt_inception", spec §7.3b), every
    ``inception_every`` iterations (it > 0), one split over ``inception_nsamples`` samples whose labels are the
    clusterer's labels of real batches.

    The original uses torchvision's Inception-v3 (not reachable here); the port uses the TF-GAN Inception
    graph of :mod:`common.inception` (first 1000 logits) when it can be loaded, and otherwise says so once
    and skips the monitor. It is monitoring only, never a paper number. Its random draws do not touch the
    training RNGs, so training is the same with or without it.
    """

    def __init__(self, nsamples: int):
        self.nsamples, self.net, self.disabled = int(nsamples), None, False

    def __call__(self, state, loader, it: int, seed: int) -> tuple[float, float] | None:
        if self.disabled:
            return None
        from common.inception import load_inception
        from common.metrics import inception_score

        try:
            self.net = self.net or load_inception("tfgan")
            self.net.logits(np.zeros([1, 32, 32, 3], np.float32))  # loads the graph (or fails) before sampling
        except UsageError as err:
            print(f"note: Inception monitor skipped from now on ({str(err).splitlines()[0]})", file=sys.stderr)
            self.disabled = True
            return None
        config = state.config
        rng = make_generator(seed * 1000003 + it)
        images, batch = [], 0
        while sum(len(i) for i in images) < self.nsamples:
            x, y = loader.batch(batch)
            labels = state.clusterer.get_labels(tf.constant(x), tf.constant(y))
            z = sample_z(rng, config["z_dist"]["type"], len(x), int(config["z_dist"]["dim"]))
            images.append(state.sampler_generator(z, labels, training=False).numpy())
            batch += 1
        logits = self.net.logits(np.concatenate(images)[:self.nsamples])
        return inception_score(logits, splits=1, num_classes=1000)


class RunState:
    """Everything a run or an evaluation of a config needs: models, optimizers, clusterer, RNGs, checkpoint.

    Args:
        config: the effective config tree.
        seed: seeds weight init, k-means and the in-graph RNGs.
        x_cluster: the clustering images (training), or None with ``n_cluster`` (evaluation: labels only).
        strategy: a ``tf.distribute`` strategy or None.
    """

    def __init__(self, config: dict, seed: int, x_cluster=None, n_cluster: int | None = None, strategy=None):
        self.config, self.strategy = config, strategy
        training = config["training"]
        scope = strategy.scope() if strategy is not None else _null_scope()
        with scope:
            set_seed(seed)
            self.generator = build_generator(config, "generator")
            self.discriminator = build_discriminator(config, "discriminator")
            self.g_optimizer = build_optimizer(training["optimizer"], training["lr_g"], training["beta1"],
                                               training["beta2"])
            self.d_optimizer = build_optimizer(training["optimizer"], training["lr_d"], training["beta1"],
                                               training["beta2"])
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.discriminator.trainable_variables)
            self.generator_test = None
            if training["take_model_average"]:
                self.generator_test = build_generator(config, "generator_test")
                for dst, src in zip(self.generator_test.weights, self.generator.weights):
                    dst.assign(src)  # starts as a copy of G
            self.reg_rng = make_generator(seed + 1)
        self.z_rng = make_generator(seed)
        section = config["clusterer"]
        kwargs = dict(section.get("kwargs") or {})
        self.clusterer = build_clusterer(
            section["name"], discriminator=self.discriminator, x_cluster=x_cluster, n_cluster=n_cluster,
            build_discriminator=lambda: build_discriminator(config, "snapshot"), seed=seed,
            gt_nlabels=config["data"]["nlabels"], **kwargs,
        )
        self.iteration = tf.Variable(-1, dtype=tf.int64, trainable=False, name="iteration")
        objects = dict(generator=self.generator, discriminator=self.discriminator, g_optimizer=self.g_optimizer,
                       d_optimizer=self.d_optimizer, clusterer=self.clusterer, z_rng=self.z_rng,
                       reg_rng=self.reg_rng, iteration=self.iteration)
        if self.generator_test is not None:
            objects["generator_test"] = self.generator_test
        self.checkpoint = tf.train.Checkpoint(**objects)

    @property
    def sampler_generator(self):
        """The generator used for samples: the EMA one when ``take_model_average``, else G."""
        return self.generator_test if self.generator_test is not None else self.generator

    def restore(self, prefix: str | Path, partial: bool = False) -> int:
        restore_checkpoint(self.checkpoint, prefix, partial=partial, written=True)
        return int(self.iteration.numpy())

    def save(self, out_dir: str | Path, it: int) -> None:
        """``chkpts/model_%08d`` at every backup; ``chkpts/model`` too when it > 0 (the original's model.pt)."""
        self.iteration.assign(it)
        checkpoint_prefix(out_dir).parent.mkdir(parents=True, exist_ok=True)
        self.checkpoint.write(str(checkpoint_prefix(out_dir, it)))
        if it > 0:
            self.checkpoint.write(str(checkpoint_prefix(out_dir)))


class _null_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _resolve_seed(options: TrainOptions, out_dir: Path) -> int:
    if options.seed is not None:
        return int(options.seed)
    saved = out_dir / "config.json"
    if saved.exists():
        return int(json.loads(saved.read_text())["seed"])
    return random.SystemRandom().randrange(2**31)


def _strategy(devices, batch_size: int):
    """None for one device; a MirroredStrategy over the listed GPUs (or CPUs in tests) otherwise; under a
    ``TF_CONFIG`` cluster the process's MultiWorkerMirroredStrategy (over each worker's visible devices)."""
    from common.devices import checked_strategy, make_strategy, names_a_cluster

    if names_a_cluster():
        # seed=0: the check for a missing --seed does not apply, every worker adopts the chief's resolved seed.
        # jit_compile=False: make_train_step notes that XLA is ignored on several replicas, as for --devices.
        return checked_strategy(batch_size=batch_size, seed=0, batch_flag="training.batch_size", gpu_flag="--devices")
    devices = [str(d) for d in devices]
    if len(devices) <= 1:
        return None
    if all(d.startswith("/") for d in devices):
        return make_strategy(devices=devices)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < len(devices):
        print(f"note: --devices {' '.join(devices)} asked for {len(devices)} GPUs, {len(gpus)} visible; "
              "training on one device", file=sys.stderr)
        return None
    return make_strategy(devices=[gpus[i].name for i in range(len(devices))])


# Start-up decisions the chief sends to every worker: [status, seed, first checkpoint iteration or -1].
_SKIP, _GO, _FAILED = 0, 1, 2


def run(config: dict, options: TrainOptions) -> dict:
    """Train (or resume) the run of ``config``; returns the last logged losses ({} if already done)."""
    validate(config)
    training = config["training"]
    out_dir = Path(options.outdir or training["out_dir"])
    strategy = _strategy(options.devices, int(training["batch_size"]))
    chief, locked, failure = is_chief(), False, None
    decision = np.array([_SKIP, 0, -1], np.int64)
    if chief:
        try:
            reason = job_is_done_or_taken(out_dir)
            if reason:
                print(reason)
            else:
                locked = True
                decision = _plan(config, options, out_dir)
        except BaseException as err:  # the other workers must hear of it, or they wait for the chief forever
            failure, decision = err, np.array([_FAILED, 0, -1], np.int64)
    status, seed, it0 = (int(v) for v in from_chief(strategy, [decision])[0])
    try:
        if failure is not None:
            raise failure
        if status == _FAILED:
            raise UsageError("the chief of the TF_CONFIG cluster refused the run; its output names the reason")
        if status == _SKIP:
            return {}
        return _run_locked(config, options, out_dir, strategy, seed, None if it0 < 0 else it0)
    finally:
        if locked:
            release_job(out_dir)


def _plan(config: dict, options: TrainOptions, out_dir: Path) -> np.ndarray:
    """The chief's start-up decisions: [_GO, seed, iteration to resume or -1], or [_SKIP, 0, -1].

    Checks the EMA / BatchNorm combination, resolves the seed, records (or checks, when resuming) the config in
    the run folder and picks the checkpoint (``--model_it`` or the newest).
    """
    training = config["training"]
    if training["take_model_average"] and _has_batch_norm(config):
        print("Batch norm in generator or discriminator not compatible with exponential moving average")
        return np.array([_SKIP, 0, -1], np.int64)
    seed = _resolve_seed(options, out_dir)
    # --nepochs (and --exact_epochs, --save_last) only set where the run stops and what it saves there: a run
    # may be extended by resuming with a larger bound.
    prepare_run_dir(out_dir, {"config": config, "nepochs": options.nepochs, "seed": seed,
                              "source": options.source, "devices": list(options.devices),
                              "jit_compile": options.jit_compile, "exact_epochs": options.exact_epochs,
                              "save_last": options.save_last},
                    ignore=RESUME_SAFE_KEYS | {"nepochs", "exact_epochs", "save_last"})
    restored = saved_iterations(out_dir)
    it0 = options.model_it if options.model_it != -1 else (restored[-1] if restored else None)
    if it0 is not None and it0 not in restored:
        raise UsageError(f"--model_it {it0}: no checkpoint {checkpoint_prefix(out_dir, it0)}")
    return np.array([_GO, seed, -1 if it0 is None else it0], np.int64)


def _run_locked(config: dict, options: TrainOptions, out_dir: Path, strategy, seed: int, it0: int | None) -> dict:
    """Train from iteration 0 (``it0`` None) or from the checkpoint of ``it0`` in ``out_dir``.

    Every worker reads ``out_dir`` (the chief's run folder); the chief also writes it, any other worker saves its
    checkpoints into ``target``, a scratch folder removed when the process exits, and writes nothing else.
    """
    training = config["training"]
    chief = is_chief()
    target = worker_dir(out_dir)
    batch_size = int(training["batch_size"])
    dataset = build_dataset(config, options.source, seed)
    loader = Loader(dataset, batch_size, seed, "train")
    total = total_iterations(options.nepochs, len(loader), options.exact_epochs)

    samples_path = out_dir / "chkpts" / "cluster_samples.npz"
    x_test, y_test = Loader(dataset, batch_size, seed, "test").first(int(training["ntest"]))
    if samples_path.exists():
        with np.load(samples_path) as stored:
            x_cluster = stored["x"]
    else:
        x_cluster, _ = Loader(dataset, batch_size, seed, "cluster").first(int(config["clusterer"]["nimgs"]))
    state = RunState(config, seed, x_cluster=x_cluster, strategy=strategy)
    z_test = sample_z(make_generator(seed + 2), config["z_dist"]["type"], len(x_test), int(config["z_dist"]["dim"]))
    if chief:
        save_grid(out_dir / "real.png", x_test, padding=2, cols=GRID_COLUMNS)
    logbook = Logbook(out_dir / "monitoring", enabled=chief)

    if it0 is not None:
        state.restore(checkpoint_prefix(out_dir, it0))
        start = it0 + 1
        print(f"Loaded iteration {it0}; continuing at {start}")
    else:
        print("Initializing new clusterer. The first clustering can be quite slow.")
        state.clusterer.recluster(state.discriminator)
        share_chief_clustering(state.clusterer, strategy)
        if chief:
            samples_path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(samples_path, x=x_cluster)
            _save_images(out_dir, "gt", 0, x_test, logbook)
        start = 0

    step = make_train_step(
        state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
        gan_type=training["gan_type"], reg_type=training["reg_type"], reg_param=float(training["reg_param"]),
        global_batch=batch_size, ema_generator=state.generator_test,
        ema_beta=float(training["model_average_beta"]), strategy=strategy, rng=state.reg_rng,
        jit_compile=options.jit_compile,
    )
    stop_at = total if options.max_it is None else min(total, int(options.max_it))
    last = _loop(config, options, state, step, loader, start, stop_at, total, target, x_test, y_test, z_test,
                 logbook, Loader(dataset, batch_size, seed, "eval"), seed)
    logbook.close()
    if stop_at < total:
        if start < stop_at:
            state.save(target, stop_at - 1)
        print(f"--max_it {options.max_it}: stopped after iteration {stop_at - 1} of {total}; run again to continue")
    else:
        if options.save_last and start < total:
            state.save(target, total - 1)  # the original keeps only the last backup_every multiple
        if chief:
            mark_job_done(out_dir)
    return last


def _loop(config, options, state, step, loader, start, stop_at, total, target, x_test, y_test, z_test,
          logbook, eval_loader, seed) -> dict:
    """Iterations ``start .. stop_at - 1``; checkpoints go to ``target``, images and logs only from the chief."""
    training = config["training"]
    chief = is_chief()
    batch_size, z_kind, z_dim = int(training["batch_size"]), config["z_dist"]["type"], int(config["z_dist"]["dim"])
    sample_nlabels = min(int(config["data"]["nlabels"]), int(training["sample_nlabels"]))
    last: dict = {}
    monitor = InceptionMonitor(int(training["inception_nsamples"]))
    bar = Progress(total=total, initial=start, desc=str(target), enabled=options.show_progress)
    with StopRequest() as stop:
        for it in range(start, stop_at):
            epoch = it // len(loader)
            x_real, y = loader.batch(it)
            z = sample_z(state.z_rng, z_kind, batch_size, z_dim)
            labels = state.clusterer.get_labels(tf.constant(x_real), tf.constant(y))
            out = step(*distribute(state.strategy, x_real, labels, z))
            last = {k: float(v) for k, v in out.items()}
            logbook.scalars(it, {"losses/discriminator": last["d_loss"], "losses/regularizer": last["reg"],
                                 "losses/generator": last["g_loss"]})
            due = due_events(it, training)
            if due["log"]:
                print(f"[epoch {epoch}, it {it:4d}] g_loss = {last['g_loss']:.4f}, "
                      f"d_loss = {last['d_loss']:.4f}, reg={last['reg']:.4f}")
                logbook.record(it, last)
            if due["recluster"]:
                if it % 100 == 0 and int(training["recluster_every"]) <= 100:
                    dist = state.clusterer.get_label_distribution(tf.constant(x_real)).tolist()
                    print(f"[epoch {epoch}, it {it}], distribution: {dist}")
                state.clusterer.recluster(state.discriminator, x_batch=tf.constant(x_real))
                share_chief_clustering(state.clusterer, state.strategy)
            if due["sample"] and chief:
                _sample_grids(state, it, target, x_test, y_test, z_test, sample_nlabels, logbook)
            if it % int(training["inception_every"]) == 0 and it > 0 and chief:
                scores = monitor(state, eval_loader, it, seed)
                if scores is not None:
                    logbook.scalars(it, {"metrics/pt_inception_mean": scores[0],
                                         "metrics/pt_inception_stddev": scores[1]})
                    print(f"[epoch {epoch}, it {it}] pt_inception_mean: {scores[0]}, pt_inception_stddev: {scores[1]}")
            if due["backup"]:
                print("Saving backup...")
                state.save(target, it)
                logbook.flush()
            bar.update(it + 1, f"d={last['d_loss']:.3f} g={last['g_loss']:.3f}")
            if stop.requested:
                state.save(target, it)
                bar.close()
                print(f"stopped after iteration {it}; run the same command to continue", file=sys.stderr)
                sys.exit(INTERRUPTED_EXIT_CODE)
    bar.close()
    return last


def _sample_grids(state, it, out_dir, x_test, y_test, z_test, sample_nlabels, logbook) -> None:
    """``imgs/all/%08d.png`` (labels of x_test) and ``imgs/%04d/%08d.png`` per fixed label (spec §2.4)."""
    generator = state.sampler_generator
    labels = state.clusterer.get_labels(tf.constant(x_test), tf.constant(y_test))
    _save_images(out_dir, "all", it, generator(z_test, labels, training=False).numpy(), logbook)
    for label in range(sample_nlabels):
        fixed = tf.fill([len(x_test)], label)
        _save_images(out_dir, f"{label:04d}", it, generator(z_test, fixed, training=False).numpy(), logbook)


def _save_images(out_dir, name, it, images, logbook) -> None:
    save_grid(Path(out_dir) / "imgs" / name / f"{it:08d}.png", images, padding=2, cols=GRID_COLUMNS)
    logbook.images(it, {name: np.clip(images[:3] / 2 + 0.5, 0, 1)})


def _has_batch_norm(config: dict) -> bool:
    """Whether G or D of the config contains BatchNorm (dcgan_* do, resnet2 does not)."""
    return config["generator"]["name"] in ("dcgan_deep", "dcgan_shallow") or \
        config["discriminator"]["name"] == "dcgan_shallow"
