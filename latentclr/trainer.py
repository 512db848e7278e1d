"""``train.py``: learn K directions with the contrastive objective (``colat/trainer.py``, ``colat/runner.py``).

One iteration (paper Alg. 1, code ``Trainer._train_loop``): draw z [B, S] and the step sizes; features of
the unedited batch h = P(G_f(z)) (no gradient); edited latents Z' = D(z) [K*B, S]; features of every edit
P(G_f(Z')), projected chunk by chunk (B rows per direction); divergences f = P(G_f(Z')) - h, normalised;
contrastive loss; coupled-L2 Adam step on the direction (and projector) parameters; the schedule steps
every iteration. Iterations are grouped into "epochs" of ``eval_freq``; after each: a validation loop of
``eval_iters`` fresh batches (inference mode, without ``feed_layers`` as in the original), the log line,
TensorBoard scalars (step = epoch), a grid of the directions, ``best_model`` when the validation loss is
the lowest so far, and the resumable ``most_recent`` checkpoint. ``final_model`` at the end.

Resuming: run the same command again (same day, so the same Hydra folder): training continues from the
last ``most_recent`` checkpoint, which holds the parameters, optimiser moments, step, running metrics,
best loss and NumPy's RNG state, so the result equals an uninterrupted run. A run with a ``final_model``
is finished and is not trained again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from common.config import RESUME_SAFE_KEYS, prepare_run_dir
from common.errors import UsageError
from common.summaries import Logbook
from common.training import Checkpoints, Every, train_loop
from latentclr import build, distribute, optim, precision
from latentclr.checkpoints import SNAPSHOT_SUFFIX, load_directions, save_snapshot
from latentclr.cli import require_checkpoint
from latentclr.models import apply_projector_chunks, l2_normalize_rows

log = logging.getLogger()

#: settings that may change between a run and its resumption
RESUME_IGNORED = RESUME_SAFE_KEYS | {"device", "devices", "auto_cpu_if_no_gpu", "generator.device", "tensorboard",
                                     "tb_image_dirs", "checkpoint", "jit_compile"}


# ---------------------------------------------------------------------------------------------------
# shared set-up


def seed_everything(cfg) -> None:
    """``seed`` (a key the original lacks) seeds NumPy's global RNG - which the latent samplers, the alpha
    draws and ``n_dirs`` use as in the original - Python's ``random`` and Keras."""
    from common.seeding import set_seed

    seed = cfg.get("seed", 0)
    if seed is not None:
        set_seed(int(seed))
        log.debug("seed %d", int(seed))


def attach_log_file(run_dir: Path, job: str) -> logging.Handler | None:
    """Outside Hydra (library use, tests) write ``<run_dir>/<job>.log`` like the job logging config does."""
    root = logging.getLogger()
    path = (run_dir / f"{job}.log").resolve()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve() == path:
            return None
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s]- %(message)s"))
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    return handler


class Pieces:
    """Generator, direction model, projector, loss and feed layers of one configuration."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.generator = build.build_generator(cfg)
        self.mixed_precision = bool(cfg.get("mixed_precision", False))
        if self.mixed_precision:  # the generator pass in float16 (latentclr.precision)
            precision.make_generator_mixed(self.generator)
        self.model = build.build_model(cfg, self.generator.latent_dim)
        self.feature_shape = self.generator.feature_shape()
        self.projector = build.build_projector(cfg, int(np.prod(self.feature_shape)))
        self.loss_fn = build.build_loss(cfg)
        self.feed_layers = build.feed_layers(cfg, self.generator)
        self.k = self.model.k
        self.norm_eps = float(cfg.get("norm_eps", 0.0) or 0.0)
        self.batched_generator = bool(cfg.get("batched_generator", False))
        # Build the projector's variables now so that optimisers and checkpoints see them.
        self.projector(tf.zeros((2,) + self.feature_shape), training=False)

    def contrastive(self, z, alphas, training: bool, projector_training: bool, use_feed: bool):
        """(acc, loss) of one batch: z [B, S], alphas [K]. Inside a multi-replica step this replica edits its
        B / R rows and the loss is taken over the divergences gathered from all replicas
        (:mod:`latentclr.distribute`)."""
        gen, k = self.generator, self.k
        ctx, n_replicas = distribute.replicas()
        if n_replicas > 1:
            z = distribute.local_rows(z, ctx, n_replicas)
        # Features in float32 from here on (a float16 generator pass under mixed_precision).
        reference = tf.stop_gradient(self.projector(tf.cast(gen.get_features(z), tf.float32),
                                                    training=projector_training))
        edited = self.model(z, alphas, training=training)  # [K*B, S]
        inputs = self.generator_inputs(z, edited, use_feed)
        feats = gen.get_features(inputs) if self.batched_generator else self.chunked_features(inputs)
        feats = tf.cast(feats, tf.float32)
        feats = apply_projector_chunks(self.projector, feats, k, projector_training)
        divergence = l2_normalize_rows(feats - tf.tile(reference, (k, 1)), self.norm_eps)
        if n_replicas > 1:
            divergence = distribute.gather_direction_major(divergence, k, ctx, n_replicas)
        return self.loss_fn(divergence)

    def generator_inputs(self, z, edited, use_feed: bool):
        """The edited latents [K*B, S]; with ``feed_layers`` a list of ``n_latent`` of them where only the
        listed layers get the edit and the others the unedited z (tiled K times)."""
        if not use_feed or self.feed_layers is None:
            return edited
        unedited = tf.tile(z, (self.k, 1))
        return [edited if i in self.feed_layers else unedited for i in range(self.generator.n_latent())]

    def chunked_features(self, inputs):
        """G_f of [K*B, S] latents (or a list of them) run direction by direction, B rows at a time, as the
        original loops: a generator whose layers use batch statistics (GLO) sees the same batch size as
        for the unedited features. The loop is unrolled in the traced graph (static shapes, so XLA works)."""
        k = self.k
        if isinstance(inputs, list):
            parts = [tf.split(x, k, axis=0) for x in inputs]
            chunks = [[p[j] for p in parts] for j in range(k)]
        else:
            chunks = tf.split(inputs, k, axis=0)
        return tf.concat([self.generator.get_features(chunk) for chunk in chunks], axis=0)

    def draw(self, batch_size: int):
        """A batch of latents and step sizes from NumPy's global RNG, in the original's order."""
        z = self.generator.sample_latent(batch_size)
        return tf.constant(z, tf.float32), tf.constant(self.model.sample_alphas(), tf.float32)


def make_train_step(pieces: Pieces, optimizer, variables, n_direction_vars: int, train_projector: bool,
                    grad_clip: float | None, jit_compile: bool = False, strategy=None, compiled: bool = True,
                    loss_scale: precision.DynamicLossScale | None = None):
    """tf.function(z, alphas) -> {"loss", "acc"}: one optimisation step (clipping only the direction
    gradients, as the original's ``clip_grad_norm_(model.parameters())``).

    Under a multi-replica ``strategy`` each replica differentiates loss / R of the gathered batch, the
    gradients are summed over replicas and the update is applied once, in cross-replica context (the
    optimiser's variables are mirrored). ``compiled=False`` returns the plain Python step (eager reference).
    With a ``loss_scale`` (mixed precision) the scaled loss is differentiated, the gradients unscaled, and a
    step with a non-finite gradient is skipped (the output ``skipped`` says so).
    """
    strategy = strategy or tf.distribute.get_strategy()
    has_grad = {}  # which variables get a gradient (known when the step is traced)

    def replica_step(z, alphas):
        ctx, n_replicas = distribute.replicas()
        with tf.GradientTape() as tape:
            acc, loss = pieces.contrastive(z, alphas, True, train_projector, True)
            scaled = loss / n_replicas if n_replicas > 1 else loss
            if loss_scale is not None:
                scaled = scaled * loss_scale.scale
        grads = tape.gradient(scaled, variables)
        has_grad["mask"] = [g is not None for g in grads]
        return distribute.sum_gradients([g for g in grads if g is not None], ctx, n_replicas), loss, acc

    def first(value):  # the value of replica 0 (all replicas hold the same one after the all-reduce)
        return strategy.experimental_local_results(value)[0]

    def step(z, alphas):
        present, loss, acc = strategy.run(replica_step, args=(z, alphas))
        present = iter([first(g) for g in present])
        grads = [next(present) if flag else None for flag in has_grad["mask"]]
        loss, acc = first(loss), first(acc)
        if loss_scale is None:
            update(grads)
            return {"loss": loss, "acc": acc}
        grads = loss_scale.unscale(grads)
        finite = loss_scale.all_finite(grads)
        tf.cond(finite, lambda: update(grads), lambda: tf.constant(False))
        loss_scale.update(finite)
        return {"loss": loss, "acc": acc, "skipped": tf.logical_not(finite)}

    def update(grads):
        if grad_clip is not None:
            grads = optim.clip_by_global_norm(grads[:n_direction_vars], float(grad_clip)) + list(
                grads[n_direction_vars:])
        optimizer.apply(grads)
        return tf.constant(True)

    return tf.function(step, jit_compile=jit_compile) if compiled else step


def make_eval_step(pieces: Pieces, use_feed: bool, jit_compile: bool = False, strategy=None):
    """tf.function(z, alphas) -> {"loss", "acc"} in inference mode, no update."""
    strategy = strategy or tf.distribute.get_strategy()

    def replica_step(z, alphas):
        acc, loss = pieces.contrastive(z, alphas, False, False, use_feed)
        return {"loss": loss, "acc": acc}

    def step(z, alphas):
        out = strategy.run(replica_step, args=(z, alphas))
        return {key: strategy.experimental_local_results(value)[0] for key, value in out.items()}

    return tf.function(step, jit_compile=jit_compile)


# ---------------------------------------------------------------------------------------------------
# compile mode

def resolve_jit_compile(value, n_replicas: int) -> bool:
    """The ``jit_compile`` argument of the train and validation steps from the config value.

    ``auto`` (the default): XLA on one device - on a 2-core CPU it ran the step 1.45-1.67x (identity generator)
    and 1.5-2x (small conv generator) faster than plain tf.function (benchmarks/bench_latentclr.py) - and
    plain tf.function with several replicas, because XLA cannot compile a step whose variables are mirrored
    over devices. The choice is printed once. ``true`` forces XLA (a UsageError with several replicas),
    ``false`` plain tf.function. XLA does not change the random numbers of a run: latents and step sizes are
    drawn on the host from NumPy's RNG, the step itself draws none. Every generator type (biggan, stylegan,
    stylegan2, keras, congan, glo, selfcond, slogan) was checked to compile under XLA and to give the eager
    step's losses.
    """
    if isinstance(value, str):  # e.g. a YAML-quoted or environment-given value
        value = {"true": True, "false": False, "auto": "auto"}.get(value.strip().lower(), value)
    if not (isinstance(value, bool) or value == "auto"):
        raise UsageError(f"jit_compile must be auto, true or false, got {value!r}")
    if value is True and n_replicas > 1:
        raise UsageError(f"jit_compile=true needs one device: XLA cannot compile a step whose variables live on "
                         f"{n_replicas} devices; use jit_compile=auto or false for multi-device training")
    if value != "auto":
        return value
    jit = n_replicas == 1
    why = "one device" if jit else f"{n_replicas} replicas (XLA needs one device)"
    print(f"jit_compile=auto: {'XLA' if jit else 'plain tf.function'} train step ({why})", flush=True)
    return jit


# ---------------------------------------------------------------------------------------------------
# resumable state


class RunState(tf.Module):
    """Running sums of the current epoch and the best validation loss (-1: none yet, as the original)."""

    def __init__(self):
        super().__init__(name="run_state")
        self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.acc_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_loss = tf.Variable(-1.0, dtype=tf.float64, trainable=False)

    def add(self, loss: float, acc: float) -> None:
        self.loss_sum.assign_add(loss)
        self.acc_sum.assign_add(acc)
        self.count.assign_add(1)

    def means(self) -> tuple[float, float]:
        n = max(int(self.count.numpy()), 1)
        return float(self.acc_sum.numpy()) / n, float(self.loss_sum.numpy()) / n

    def reset(self) -> None:
        self.loss_sum.assign(0.0)
        self.acc_sum.assign(0.0)
        self.count.assign(0)


class NumpyRNG(tf.Module):
    """NumPy's global Mersenne-Twister state as checkpoint variables (latents and alphas come from it)."""

    def __init__(self):
        super().__init__(name="numpy_rng")
        self.key = tf.Variable(tf.zeros((624,), tf.int64), trainable=False)
        self.pos = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.has_gauss = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.cached_gaussian = tf.Variable(0.0, dtype=tf.float64, trainable=False)

    def capture(self) -> None:
        _, key, pos, has_gauss, cached = np.random.get_state()
        self.key.assign(np.asarray(key, np.int64))
        self.pos.assign(int(pos))
        self.has_gauss.assign(int(has_gauss))
        self.cached_gaussian.assign(float(cached))

    def apply(self) -> None:
        np.random.set_state(("MT19937", self.key.numpy().astype(np.uint32), int(self.pos.numpy()),
                             int(self.has_gauss.numpy()), float(self.cached_gaussian.numpy())))


class RunCheckpoints(Checkpoints):
    """``most_recent-<iteration>``: everything needed to resume, NumPy's RNG state captured at each save."""

    def __init__(self, run_dir, rng: NumpyRNG, **trackables):
        super().__init__(run_dir, max_to_keep=1, prefix="most_recent", rng=rng, **trackables)
        self.rng = rng

    def save(self, iteration: int) -> str:
        self.rng.capture()
        return super().save(iteration)

    def restore_latest(self) -> int:
        start = super().restore_latest()
        if start:
            self.rng.apply()
        return start


def flatten(cfg, prefix: str = "") -> dict:
    """Dotted keys of a nested config (for the resume check and its messages)."""
    out = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


# ---------------------------------------------------------------------------------------------------
# the run


def run(cfg, run_dir: str | Path) -> dict:
    """Train from a composed config in ``run_dir`` (Hydra's output folder). Returns the last epoch's metrics."""
    cfg = build.to_dict(cfg)
    run_dir = Path(run_dir)
    # A non-chief worker of a cluster writes into a scratch folder seeded with the chief's newest checkpoint: it must
    # save in lockstep with the chief (saving mirrored variables may run collectives) and restore the same state.
    target = distribute.worker_dir(run_dir)
    target.mkdir(parents=True, exist_ok=True)
    handler = attach_log_file(target, "train")
    logging.getLogger("absl").setLevel(logging.WARNING)  # TensorFlow's checkpoint chatter
    try:
        # finished or not is read in the chief's folder, so that every worker of a cluster makes the same choice
        return _train(cfg, target, finished=(run_dir / f"final_model{SNAPSHOT_SUFFIX}").exists())
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _validate_cadence(cfg) -> tuple[int, int, int, int]:
    hp = cfg["hparams"]
    values = {"hparams.iterations": hp["iterations"], "hparams.batch_size": hp["batch_size"],
              "eval_freq": cfg["eval_freq"], "eval_iters": cfg["eval_iters"]}
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UsageError(f"{name} must be a positive integer, got {value!r}")
    if hp["batch_size"] < 2:
        raise UsageError("hparams.batch_size must be >= 2 (the loss needs two samples per direction)")
    return hp["iterations"], hp["batch_size"], cfg["eval_freq"], cfg["eval_iters"]


def _train(cfg: dict, run_dir: Path, finished: bool) -> dict:
    iterations, batch_size, eval_freq, eval_iters = _validate_cadence(cfg)
    save = bool(cfg.get("save", True))
    if save and finished:
        log.info(f"final_model{SNAPSHOT_SUFFIX} exists: this run is finished (nothing retrained)")
        return {}
    strategy = distribute.strategy_for(cfg)  # first: a multi-worker strategy must exist before other TF work
    distribute.check_batch(batch_size, strategy)
    jit = resolve_jit_compile(cfg.get("jit_compile", "auto"), strategy.num_replicas_in_sync)
    if not distribute.is_chief():  # the other workers of a cluster save into their scratch folder, but log nothing
        cfg = {**cfg, "tensorboard": False}
    seed_everything(cfg)
    with strategy.scope():  # direction, projector and optimiser variables are mirrored over the replicas
        pieces = Pieces(cfg)  # every check of the config and the generator happens here, before anything is written
        model, projector = pieces.model, pieces.projector
        train_projector = bool(cfg.get("train_projector", True))
        model_vars = list(model.trainable_variables)
        variables = model_vars + (list(projector.trainable_variables) if train_projector else [])
        optimizer = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"].get("scheduler"))
    if save:
        # jit_compile stays out of the resume check: switching it changes no random number here (all are drawn on
        # the host), so common.config's note that XLA changes the random stream does not apply to LatentCLR
        prepare_run_dir(run_dir, {k: v for k, v in flatten(cfg).items() if k != "jit_compile"}, ignore=RESUME_IGNORED)
    if strategy.num_replicas_in_sync > 1:
        log.info(f"Training on {strategy.num_replicas_in_sync} replicas ({type(strategy).__name__})")
    loss_scale = None
    if pieces.mixed_precision:
        with strategy.scope():
            loss_scale = precision.DynamicLossScale()
        log.info("Mixed precision: generator pass in float16, dynamic loss scale")
    train_step = make_train_step(pieces, optimizer, variables, len(model_vars), train_projector,
                                 cfg["hparams"].get("grad_clip_max_norm"), jit, strategy, loss_scale=loss_scale)
    val_step = make_eval_step(pieces, bool(cfg.get("val_uses_feed_layers", False)), jit, strategy)

    state, rng = RunState(), NumpyRNG()
    extra = {"loss_scale": loss_scale} if loss_scale is not None else {}
    checkpoints = RunCheckpoints(run_dir, rng, model=model, projector=projector, optimizer=optimizer,
                                 state=state, **extra) if save else None
    start = checkpoints.restore_latest() if checkpoints is not None else 0
    if start:
        log.info(f"Checkpoint loaded, resuming from iteration {start}")
    elif cfg.get("checkpoint"):
        source = require_checkpoint(cfg)
        load_directions(source, model, projector, pieces.feature_shape)
        log.info(f"Directions initialised from {source}")

    logbook = Logbook(run_dir, enabled=bool(cfg.get("tensorboard", True)))
    if start == 0 and logbook.enabled:
        _write_config_text(run_dir, cfg)
    grid_dirs = int(cfg.get("tb_image_dirs", 8) or 0)
    grid_z = pieces.generator.sample_latent(1, seed=int(cfg.get("seed", 0) or 0))  # fixed latent of the grids
    timer = {"epoch": time.time(), "run": time.time()}
    last = {}

    def step_fn(i):
        z, alphas = pieces.draw(batch_size)
        out = train_step(z, alphas)
        state.add(float(out["loss"]), float(out["acc"]))
        return out

    def end_epoch(done, outputs):
        epoch = (done - 1) // eval_freq
        val_acc, val_loss = _validate(pieces, val_step, batch_size, eval_iters, epoch)
        train_acc, train_loss = state.means()
        elapsed = time.time() - timer["epoch"]
        log.info(f"Epoch {epoch} | Train acc: {train_acc:.3f} | Train loss: {train_loss:.3f} | Val acc: {val_acc:.3f} "
                 f"| Val loss: {val_loss:.3f} | Epoch time: {elapsed:.1f}s")
        scalars = {"Loss/train": train_loss, "Acc/train": train_acc, "Loss/val": val_loss, "Acc/val": val_acc}
        logbook.scalars(epoch, scalars)
        logbook.record(epoch, {"iteration": done, **scalars, "lr": float(optimizer.learning_rate())})
        if grid_dirs:
            logbook.images(epoch, {"directions": direction_grid(pieces, grid_z, grid_dirs)[None]}, max_outputs=1)
        logbook.flush()
        best = float(state.best_loss.numpy())
        if save and (best == -1 or val_loss < best):
            state.best_loss.assign(val_loss)
            save_snapshot(run_dir, "best_model", model, projector, done)
        state.reset()
        last.update(epoch=epoch, **scalars)
        timer["epoch"] = time.time()

    log.info("Beginning training")
    train_loop(step_fn, start=start, total=iterations, checkpoints=checkpoints, save_every=eval_freq,
               hooks=[Every(eval_freq, end_epoch, at_end=True)],
               progress_text=lambda o: f"Acc: {o['acc']:.3f} Loss: {o['loss']:.3f}",
               desc="train", show_progress=True)
    log.info(f"Finished training! Total time: {(time.time() - timer['run']) / 3600:.2f}h")
    if save:
        save_snapshot(run_dir, "final_model", model, projector, iterations)
    logbook.close()
    return last


def _validate(pieces: Pieces, val_step, batch_size: int, iterations: int, epoch: int) -> tuple[float, float]:
    acc_sum = loss_sum = 0.0
    for _ in range(iterations):
        out = val_step(*pieces.draw(batch_size))
        acc_sum += float(out["acc"])
        loss_sum += float(out["loss"])
    return acc_sum / iterations, loss_sum / iterations


def _write_config_text(run_dir: Path, cfg: dict) -> None:
    """The composed config as the TensorBoard text ``config`` (YAML inside <pre>), as the original."""
    from omegaconf import OmegaConf

    writer = tf.summary.create_file_writer(str(run_dir), filename_suffix=".config")
    with writer.as_default(step=0):
        tf.summary.text("config", f"<pre>{OmegaConf.to_yaml(OmegaConf.create(cfg))}</pre>")
    writer.close()


def direction_grid(pieces: Pieces, z: np.ndarray, n_dirs: int, size: int = 64) -> np.ndarray:
    """[H, W, 3] in [0, 1]: the first ``n_dirs`` directions (rows) at 5 step sizes around z (columns)."""
    from latentclr.generate import Editor, resize_shorter

    alpha = pieces.model.alpha
    top = max(abs(float(a)) for a in alpha) if isinstance(alpha, list) else abs(float(alpha))
    top = top or 1.0
    dirs = list(range(min(n_dirs, pieces.k)))
    cells, _ = Editor(pieces.generator, pieces.model, pieces.feed_layers).rows(
        z, dirs, [-top, -top / 2, 0.0, top / 2, top], iterative=False)
    rows, cols = cells.shape[:2]
    flat = np.clip(resize_shorter(cells.reshape((rows * cols,) + cells.shape[2:]), min(size, cells.shape[2])), 0, 1)
    if flat.shape[-1] == 1:
        flat = np.repeat(flat, 3, axis=-1)
    from common.images import make_grid

    return make_grid(flat, rows=rows, cols=cols, padding=1, pad_value=1.0)
