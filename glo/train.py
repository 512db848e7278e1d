"""GLO training: the compiled train step and the run (folder, checkpoints, summaries, dumps, code store).

One iteration, in the original's order (spec §1.4, ``Trainer.run_single_step``):

1. generator step: X^ = G_theta(Z), L_pre = l(X, X^); Adam on theta (gradients clipped to global norm 20);
2. code gradient with the updated generator: L_G = l(X, G_theta'(Z)), grad = dL_G/dZ (batch-mean loss, BN
   batch statistics couple the examples);
3. code step and projection: Z' = (Z - alpha grad) / ||Z - alpha grad||_2 per row (no epsilon);
4. diagnostic L_Z = l(X, G_theta'(Z'));
5. write-back of Z' into the code table (write-once by default, see :mod:`glo.codes`).

The paper (Bojanowski et al. 2018, eq. 1) optimises theta and every z_i jointly by SGD on the same loss; this
implementation's alternating Adam/plain-gradient steps are the author's own variant and are kept.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import tensorflow as tf

from common import replicas
from common.config import RESUME_SAFE_KEYS, prepare_run_dir
from common.devices import checked_strategy, is_chief, worker_run_dir
from common.errors import UsageError
from common.seeding import set_seed
from common.summaries import Logbook, tf1_image_scale
from common.training import Checkpoints, Every, restore, train_loop
from glo import data as glo_data
from glo.codes import CodeStore, CodeTable
from glo.config import TrainConfig, train_run_name
from glo.evaluate import reconstruction_errors
from glo.log import INFOV, log
from glo.losses import get_loss
from glo.models import Generator, build_generator, parameter_table

TRAIN_ROOT = Path("train_dir")  # relative to the working directory, as in the original
CLIP_NORM = 20.0
DECAY_STEPS = 10000
DECAY_RATE = 0.5
MAX_SUMMARY_IMAGES = 4
# Flags that may change when a run folder is resumed: they do not change the trained numbers.
RESUME_IGNORED = RESUME_SAFE_KEYS | {"max_steps", "log_step", "summary_step", "eval_step", "eval_batches",
                                     "max_to_keep", "no_image_cache", "no_progress"}
# Flags newer than some run folders, with the value an older config.json implies (it then still resumes).
ADDED_FLAGS = {"mixed_precision": False}


@dataclasses.dataclass
class TrainState:
    """Everything a run needs to continue, all in the checkpoint.

    Attributes:
        generator: G_theta (with its BN moving statistics, which are updated but never used).
        optimizer: Adam; ``optimizer.iterations`` is the global step g (checkpoint ``model-<g>``).
        codes: the train split's codes and write flags.
        loop_step: finished iterations s of this run folder (restarts at 0 after ``--checkpoint``).
        stream_seed: seed of the batch order (:class:`glo.data.BatchStream`).
    """

    generator: Generator
    optimizer: keras.optimizers.Optimizer
    codes: CodeTable
    loop_step: tf.Variable
    stream_seed: tf.Variable

    def trackables(self) -> dict:
        return {"generator": self.generator, "optimizer": self.optimizer, "codes": self.codes,
                "loop_step": self.loop_step, "stream_seed": self.stream_seed}


def learning_rate(cfg: TrainConfig):
    """lr, or lr * 0.5^floor(g / 10000) with ``--lr_weight_decay`` (g read before the increment)."""
    if cfg.lr_weight_decay:
        return keras.optimizers.schedules.ExponentialDecay(cfg.learning_rate, DECAY_STEPS, DECAY_RATE, staircase=True)
    return cfg.learning_rate


def make_optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    """TF1 ``optimize_loss(Adam, clip_gradients=20)``: Adam(0.9, 0.999, eps 1e-8), global-norm clipping at 20.

    Keras 3's Adam has the TF1 form: step lr * sqrt(1 - b2^t) / (1 - b1^t) and eps added to the uncorrected sqrt(v).
    With ``--mixed_precision`` it is wrapped in a dynamic ``LossScaleOptimizer`` (gradients unscaled before the
    clipping; a step with non-finite gradients is skipped and halves the scale).
    """
    adam = keras.optimizers.Adam(learning_rate(cfg), beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                                 global_clipnorm=CLIP_NORM)
    return keras.optimizers.LossScaleOptimizer(adam) if cfg.mixed_precision else adam


def make_train_step(state: TrainState, *, alpha: float, loss_fn, update_mode: str, jit_compile: bool = False,
                    strategy: tf.distribute.Strategy | None = None):
    """Build the compiled iteration of the module docstring.

    Args:
        state: generator, optimizer and code table (variables are updated in place).
        alpha: step size of the code update (``--alpha``).
        loss_fn: l(X, X^) -> scalar, a mean over the batch (:func:`glo.losses.get_loss`).
        update_mode: ``first_only`` or ``every_step`` (:meth:`glo.codes.CodeTable.store`).
        jit_compile: compile with XLA (one device only).
        strategy: the ``tf.distribute`` strategy the generator and optimizer were built under (default: one device).

    Returns:
        ``step(images, positions)`` with images float32 [B, h, w, c] in [-1, 1] and positions int32 [B] (rows of
        the code table), returning ``loss`` (L_pre), ``g_update`` (L_G), ``z_update`` (L_Z), ``gradient_norm``
        (before clipping), ``clipped_gradient_norm``, ``global_step`` (g after the increment) and ``x_hat``
        (the pre-update reconstruction [B, h, w, c]).

    Several replicas (``--gpu 0,1``): the codes of the global batch are read once, each replica takes its rows
    of images and codes, BatchNorm normalises with the statistics of the global batch, and each replica
    differentiates its share l_r * b / B of the batch-mean loss. The generator gradients are summed over the
    replicas and applied once (so the global-norm clipping sees the global gradient); the code gradient of a
    replica's rows is the full dL_G/dz of those rows (BatchNorm's all-reduce carries the other replicas' part),
    each replica steps and projects its own codes, and the new codes are gathered back in batch order and written
    once. The result equals the one-device step up to summation order.
    """
    generator, optimizer, codes = state.generator, state.optimizer, state.codes
    strategy = strategy or tf.distribute.get_strategy()
    several = strategy.num_replicas_in_sync > 1
    # --mixed_precision: losses stay float32 and are multiplied by the dynamic loss scale before differentiating.
    scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    if jit_compile and several:
        raise UsageError("--jit_compile works on one device only; drop it or use one --gpu")
    alpha = tf.constant(alpha, tf.float32)

    def local_loss(images, x_hat):
        # The replica's part of the batch-mean loss: l(X_r, X^_r) * b / B sums over the replicas to l(X, X^).
        loss = loss_fn(images, x_hat)
        return loss * replicas.share() if several else loss

    def generator_gradients(images, z):
        images, z = replicas.shard(images), replicas.shard(z)
        with tf.GradientTape() as tape:
            x_hat = generator(z, training=True)
            loss = local_loss(images, x_hat)
            target = optimizer.scale_loss(loss) if scaled else loss
        grads = tape.gradient(target, generator.trainable_variables)
        return replicas.all_sum(grads), replicas.all_sum(loss), replicas.gather(x_hat)

    def code_step(images, z):
        images, z = replicas.shard(images), replicas.shard(z)
        with tf.GradientTape() as tape:
            tape.watch(z)
            g_loss = local_loss(images, generator(z, training=True))
            target = optimizer.scale_loss(g_loss) if scaled else g_loss
        grad = tape.gradient(target, z)
        if scaled:
            grad = grad / optimizer.dynamic_scale
        z_new = z - alpha * grad
        z_new = z_new / tf.norm(z_new, axis=1, keepdims=True)  # no epsilon, as the original's NumPy
        z_loss = local_loss(images, generator(z_new, training=True))
        return replicas.gather(z_new), replicas.all_sum(g_loss), replicas.all_sum(z_loss)

    def step(images, positions):
        z = codes.gather(positions)
        grads, loss, x_hat = replicas.first_local(strategy, strategy.run(generator_gradients, args=(images, z)))
        variables = generator.trainable_variables
        norm = tf.linalg.global_norm(grads)
        if scaled:
            norm = norm / optimizer.dynamic_scale  # the unscaled gradient's norm (read before the scale moves)
        optimizer.apply_gradients(zip(grads, variables))  # clipped to global norm 20 inside
        z_new, g_loss, z_loss = replicas.first_local(strategy, strategy.run(code_step, args=(images, z)))
        if scaled:
            # A float16 overflow leaves non-finite codes: keep the batch's codes as they are (not marked written).
            tf.cond(tf.reduce_all(tf.math.is_finite(z_new)), lambda: codes.store(positions, z_new, update_mode),
                    lambda: None)
        else:
            codes.store(positions, z_new, update_mode)
        return {"loss": loss, "g_update": g_loss, "z_update": z_loss, "gradient_norm": norm,
                "clipped_gradient_norm": tf.minimum(norm, CLIP_NORM), "global_step": optimizer.iterations,
                "x_hat": x_hat}

    return tf.function(step, jit_compile=jit_compile, autograph=False)


class _Saver:
    """Checkpoint saving for :func:`common.training.train_loop`: file ``model-<g>``, code file synced first.

    The dataset file is brought in line with the code table *before* the checkpoint is written, so after a
    crash the newest checkpoint is never ahead of the file; a restart re-syncs the file from the checkpoint.
    """

    def __init__(self, checkpoints: Checkpoints, store: CodeStore, state: TrainState, writes_file: bool = True):
        self.checkpoints, self.store, self.state = checkpoints, store, state
        self.writes_file = writes_file  # False on a non-chief worker (it still saves: the save may be collective)
        self.last_step = None

    def save(self, done: int) -> str | None:
        g = int(self.state.optimizer.iterations.numpy())
        if g == self.last_step:
            return None
        self.state.loop_step.assign(done)
        if self.writes_file:
            self.store.sync(self.state.codes)
        self.last_step = g
        return self.checkpoints.save(g)


def _write_dump(path: Path, x_hat: np.ndarray) -> None:
    """``dump_result_<s>.hdf5`` with one dataset ``image`` (float32 [B, h, w, c]), written atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as dump:
            dump.create_dataset("image", data=np.asarray(x_hat, np.float32))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _warm_start(path: str, state: TrainState, cfg: TrainConfig) -> None:
    """``--checkpoint``: restore generator and optimizer (Adam slots, global step, a float lr) from ``path``.

    Every generator weight must be in the file; optimizer entries may be missing (e.g. the learning-rate
    variable when the checkpoint was trained with ``--lr_weight_decay``).
    """
    restore(tf.train.Checkpoint(generator=state.generator), path)
    restore(tf.train.Checkpoint(optimizer=state.optimizer), path, partial=True)
    if not cfg.lr_weight_decay and float(np.asarray(state.optimizer.learning_rate)) != np.float32(cfg.learning_rate):
        # TF1 restored every variable, the learning-rate variable included: the checkpoint's rate wins.
        log.warning("--checkpoint restored the learning rate %g of %s (not --learning_rate %g), as the original",
                    float(np.asarray(state.optimizer.learning_rate)), path, cfg.learning_rate)


def run(cfg: TrainConfig) -> Path:
    """Train GLO as ``glo/trainer.py`` does; return the run folder."""
    if cfg.seed is not None:
        set_seed(cfg.seed)
    info = glo_data.describe(cfg.dataset, cfg.num_train)
    # Only the chief stores codes in the dataset file; the other workers of a cluster only read it.
    source = glo_data.DataFile(info, writable=is_chief(), upright_cifar=cfg.fix_cifar_transpose,
                               cache_images=not cfg.no_image_cache)
    try:
        return _train(cfg, source)
    finally:
        source.close()


def _train(cfg: TrainConfig, source: glo_data.DataFile) -> Path:
    info = source.info
    run_dir = TRAIN_ROOT / train_run_name(cfg, info.label)
    if cfg.run_name is None and run_dir.exists():
        raise UsageError(f"{run_dir} already exists (a run started in the same second); use another --prefix")
    with worker_run_dir(run_dir) as target:  # a non-chief worker writes into a scratch folder, removed afterwards
        return _train_in(cfg, source, target, run_dir)


def _train_in(cfg: TrainConfig, source: glo_data.DataFile, target: Path, run_dir: Path) -> Path:
    info = source.info
    chief = target == run_dir
    run_dir, resuming = prepare_run_dir(target, cfg, ignore=RESUME_IGNORED, added=ADDED_FLAGS)
    log.log(INFOV, "Train Dir: %s", run_dir)

    strategy = make_run_strategy(cfg)
    log.info("Reading the codes of %d training ids from %s", len(info.train_ids), info.path)
    store = CodeStore(source.file, info.train_ids)
    state = build_state(cfg, source, store, strategy)
    log.info("Generator variables:\n%s", parameter_table(state.generator))
    checkpoints = Checkpoints(run_dir, max_to_keep=cfg.max_to_keep, prefix="model", **state.trackables())
    start = 0
    if resuming and checkpoints.latest:
        checkpoints.restore_latest()
        start = int(state.loop_step.numpy())
        log.info("Resuming %s at iteration %d (global step %d)", checkpoints.latest, start, _global_step(state))
    elif cfg.checkpoint:
        _warm_start(cfg.checkpoint, state, cfg)
        log.info("Checkpoint %s loaded: global step %d", cfg.checkpoint, _global_step(state))
    touched = store.sync(state.codes) if chief else 0  # the file now holds exactly the table's codes
    if touched:
        log.info("Dataset file re-synchronised with the checkpoint's codes (%d ids)", touched)

    step = make_train_step(state, alpha=cfg.alpha, loss_fn=get_loss(cfg.loss, cfg.lap_levels),
                           update_mode=cfg.code_update_mode, jit_compile=cfg.jit_compile, strategy=strategy)
    stream = glo_data.BatchStream(len(info.train_ids), cfg.batch_size, int(state.stream_seed.numpy()))
    train_ids = np.asarray(info.train_ids)
    last: dict = {}

    def step_fn(i):
        positions = stream.positions(i)
        began = time.perf_counter()
        images = source.images(train_ids[positions])
        out = step(tf.constant(images), tf.constant(positions))
        last["x_hat"], last["x"] = out.pop("x_hat"), images
        out = {k: float(v) for k, v in out.items()}
        out["sec_per_batch"] = time.perf_counter() - began
        return out

    logbook = Logbook(run_dir)
    saver = _Saver(checkpoints, store, state, writes_file=chief)
    hooks = _Hooks(cfg, run_dir, source, state, saver, logbook, last)
    try:
        train_loop(step_fn, start=start, total=cfg.max_steps, checkpoints=saver, save_every=cfg.max_steps + 1,
                   hooks=hooks.schedule(), progress_text=lambda out: f"loss {out['loss']:.4f}", desc=info.label,
                   show_progress=not cfg.no_progress)
        hooks.record_losses(_global_step(state))
    finally:
        logbook.close()
    log.log(INFOV, "Training finished: %s (global step %d)", run_dir, _global_step(state))
    return run_dir


def make_run_strategy(cfg: TrainConfig) -> tf.distribute.Strategy:
    """The strategy of ``--gpu`` (several GPUs: MirroredStrategy; ``TF_CONFIG``: multi-worker), checked against
    the batch size, ``--jit_compile`` and ``--seed`` (:func:`common.devices.checked_strategy`); ``--devices`` names
    the devices explicitly (tests: ``/cpu:0,/cpu:1``)."""
    devices = [d.strip() for d in cfg.devices.split(",") if d.strip()] if cfg.devices else None
    strategy = checked_strategy(batch_size=cfg.batch_size, gpu=cfg.gpu, devices=devices,
                                jit_compile=cfg.jit_compile, seed=cfg.seed)
    count = strategy.num_replicas_in_sync
    if count > 1:
        log.info("Training on %d replicas (%s)", count, type(strategy).__name__)
    return strategy


def build_state(cfg: TrainConfig, source: glo_data.DataFile, store: CodeStore,
                strategy: tf.distribute.Strategy | None = None) -> TrainState:
    """Fresh generator, built Adam, the code table as the file holds it, loop counter 0, a stream seed.

    The generator and Adam are created under ``strategy.scope()`` (mirrored on every replica); the code table,
    the loop counter and the stream seed are ordinary variables read and written in the cross-replica context.
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        generator = build_generator(source.latent_dim, source.image_shape, source.info.named,
                                    xla_safe=cfg.jit_compile, mixed_precision=cfg.mixed_precision)
        optimizer = make_optimizer(cfg)
        optimizer.build(generator.trainable_variables)  # slots exist before a checkpoint is restored into them
    seed = cfg.seed if cfg.seed is not None else secrets.randbits(62)
    return TrainState(generator, optimizer, store.make_table(), tf.Variable(0, dtype=tf.int64, name="loop_step"),
                      tf.Variable(seed, dtype=tf.int64, name="stream_seed"))


def _global_step(state: TrainState) -> int:
    return int(state.optimizer.iterations.numpy())


class _Hooks:
    """What happens between iterations, on the original's cadence (loop counter s = finished - 1):
    console line (s % log_step == 0), summaries (every step by default), checkpoint + dump + metrics record
    (s % output_save_step == 0), and the optional reconstruction evaluation (``--eval_step``)."""

    def __init__(self, cfg, run_dir, source, state, saver, logbook, last):
        self.cfg, self.run_dir, self.source, self.state = cfg, run_dir, source, state
        self.saver, self.logbook, self.last = saver, logbook, last
        self.totals: dict[str, float] = {}

    def schedule(self) -> list[Every]:
        cfg = self.cfg
        return [Every(1, self.accumulate), Every(cfg.summary_step, self.summaries, offset=1),
                Every(cfg.log_step, self.log_line, offset=1), Every(cfg.output_save_step, self.save, offset=1),
                Every(cfg.eval_step, self.evaluate, offset=1)]

    def accumulate(self, done, out):
        for key in ("loss", "g_update", "z_update"):
            self.totals[key] = self.totals.get(key, 0.0) + out[key]
        self.totals["count"] = self.totals.get("count", 0.0) + 1

    def log_line(self, done, out):
        sec = out["sec_per_batch"]
        log.info(" [train step %4d] Loss: %.5f G update: %.5f Z update: %.5f (%.3f sec/batch, %.3f instances/sec) ",
                 int(out["global_step"]), out["loss"], out["g_update"], out["z_update"], sec,
                 self.cfg.batch_size / max(sec, 1e-9))

    def summaries(self, done, out):
        scalars = {"loss/loss": out["loss"], "g_optimizer_loss/loss": out["loss"],
                   "g_optimizer_loss/global_norm/gradient_norm": out["gradient_norm"],
                   "g_optimizer_loss/global_norm/clipped_gradient_norm": out["clipped_gradient_norm"]}
        if out.get("time/steps_per_sec"):
            scalars["global_step/sec"] = out["time/steps_per_sec"]
        g = int(out["global_step"])
        self.logbook.scalars(g, scalars)
        # TF1 rescaled image summaries itself (each image to [0, 255]); tf1_image_scale applies the same rule.
        self.logbook.images(g, {"img/reconstructed": tf1_image_scale(self.last["x_hat"].numpy()[:MAX_SUMMARY_IMAGES]),
                                "img/real": tf1_image_scale(self.last["x"][:MAX_SUMMARY_IMAGES])},
                            max_outputs=MAX_SUMMARY_IMAGES)

    def save(self, done, out):
        s = done - 1
        self.saver.save(done)
        log.info("Saved checkpoint at %d", s)
        if self.cfg.dump_result:
            _write_dump(self.run_dir / f"dump_result_{s}.hdf5", self.last["x_hat"].numpy())
        self.record_losses(int(out["global_step"]))

    def record_losses(self, g: int) -> None:
        """Append the mean losses since the previous record to ``metrics.jsonl`` (at saves and at the end)."""
        count = self.totals.pop("count", 0)
        if count:
            self.logbook.record(g, {f"train/{k}": v / count for k, v in self.totals.items()})
        self.totals.clear()

    def evaluate(self, done, out):
        g, info = int(out["global_step"]), self.source.info
        rng = np.random.default_rng([int(self.state.stream_seed.numpy()), g])
        record = {}
        for split, ids in (("train", info.train_ids), ("test", info.test_ids)):
            if ids:
                errors = reconstruction_errors(self.state.generator, self.source, ids, self.cfg.batch_size,
                                               self.cfg.eval_batches, rng)
                record.update({f"eval/{split}_{k}": v for k, v in errors.items()})
        self.logbook.scalars(g, record)
        self.logbook.record(g, record)
