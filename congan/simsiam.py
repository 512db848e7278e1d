"""SimSiam in TensorFlow: the frozen encoder E of both frameworks, its pretraining, and its weight loader.

The notebooks load the official ImageNet SimSiam R-50 (``pretrained_batch256.tar``), which cannot be
downloaded here. So the port
1. pretrains SimSiam itself with the official recipe (:func:`pretrain`, entry ``congan/pretrain_simsiam.py``):
   two MoCo-v2 views, L = -0.5 [cos(p1, sg z2) + cos(p2, sg z1)], SGD(momentum 0.9, weight decay 1e-4 added
   to the gradient like PyTorch), lr0 = lr * B / 256 with a per-epoch cosine decay, predictor at lr0 when
   ``fix_pred_lr``; and writes ``<run_dir>/simsiam.weights.h5`` with a ``simsiam.json`` describing it;
2. loads a user-supplied checkpoint (:func:`load_simsiam`): the file above, the official ``.pth.tar`` (read
   without PyTorch by :mod:`congan.torch_io`) or an ``.npz`` of its state dict.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common import replicas
from common.errors import UsageError
from common.fileio import atomic_write_json
from congan import losses, precision
from congan.data import simsiam_augment
from congan.distribute import StepNoise, reduce_mean
from congan.layers import LazyBuild, l2_normalize
from congan.models import SimSiamEncoder, SimSiamPredictor
from congan.optim import assign_add_local, assign_local, assign_sub_local
from congan.torch_io import import_state_dict, load_state_dict

WEIGHTS_FILE = "simsiam.weights.h5"
SIDECAR_FILE = "simsiam.json"


class SimSiam(LazyBuild, keras.Model):
    """Encoder f (backbone + projector) and predictor h. Call: views x1, x2 -> (p1, p2, z1, z2)."""

    def __init__(self, arch="resnet50", dim=2048, pred_dim=512, **kwargs):
        super().__init__(**kwargs)
        self.arch, self.dim, self.pred_dim = arch, dim, pred_dim
        self.encoder = SimSiamEncoder(arch, dim, name="encoder")
        self.predictor = SimSiamPredictor(dim, pred_dim, name="predictor")

    def call(self, x1, x2, training=False):
        z1 = self.encoder(x1, training=training)
        z2 = self.encoder(x2, training=training)
        return self.predictor(z1, training=training), self.predictor(z2, training=training), z1, z2

    def build_for(self, image_size: int):
        """Create every variable with one inference call (no state changes)."""
        z = self.encoder(tf.zeros((2, image_size, image_size, 3)), training=False)
        self.predictor(z, training=False)
        self.built = True
        return self

    def torch_modules(self):
        return self.encoder.torch_modules() + self.predictor.torch_modules()


def load_simsiam(path: str | None, arch: str, dim: int, pred_dim: int, image_size: int, flag="--simsiam_path"):
    """Build SimSiam and load weights from ``path``; ``"random"`` keeps the (seeded) initial weights.

    Formats: ``*.weights.h5`` (this project; its ``simsiam.json`` beside it must agree with arch/dim),
    ``*.npz`` (a PyTorch state dict, with or without ``module.``), or a PyTorch checkpoint
    (``.pth``/``.tar``, zip or pre-1.6 legacy format: the official release, ``{'state_dict': ...}``).
    """
    model = SimSiam(arch, dim, pred_dim, name="simsiam").build_for(image_size)
    if path == "random":
        print("note: SimSiam is randomly initialised (--simsiam_path random): representations carry no "
              "semantics", file=sys.stderr)
        return model
    path = Path(path)
    if str(path).endswith(".weights.h5"):
        sidecar = path.with_name(SIDECAR_FILE)
        if sidecar.exists():
            saved = json.loads(sidecar.read_text())
            for key, value in (("arch", arch), ("dim", dim), ("pred_dim", pred_dim)):
                if saved.get(key) != value:
                    raise UsageError(f"{flag}: {path} holds a SimSiam with {key}={saved.get(key)!r}, but "
                                     f"{value!r} was asked for (set --simsiam_arch/--dim/--pred_dim to match)")
        try:
            model.load_weights(str(path))
        except (ValueError, OSError) as err:
            raise UsageError(f"{flag}: {path} does not fit SimSiam({arch}, dim={dim}) ({str(err)[:200]})") from err
        return model
    state = load_state_dict(path)
    import_state_dict(model, state, source=str(path))
    return model


def save_simsiam(model: SimSiam, run_dir: str | Path, image_size: int) -> Path:
    """Write ``simsiam.weights.h5`` and ``simsiam.json`` into ``run_dir``; returns the weights path."""
    run_dir = Path(run_dir)
    path = run_dir / WEIGHTS_FILE
    tmp = run_dir / ("tmp_" + WEIGHTS_FILE)
    model.save_weights(str(tmp))
    tmp.replace(path)
    atomic_write_json(run_dir / SIDECAR_FILE, {"arch": model.arch, "dim": model.dim, "pred_dim": model.pred_dim,
                                               "image_size": image_size})
    return path


class TorchSGD(tf.Module):
    """``torch.optim.SGD(momentum, weight_decay)``: g += wd w; buf = mu buf + g; w -= lr buf.

    The learning rate is a variable per parameter group; the momentum buffers are variables, so both
    live in the checkpoint.
    """

    def __init__(self, groups: dict[str, list], momentum=0.9, weight_decay=1e-4):
        super().__init__(name="sgd")
        self.groups = groups
        self.momentum, self.weight_decay = momentum, weight_decay
        self.lr = {name: tf.Variable(0.0, trainable=False, name=f"lr_{name}") for name in groups}
        self.buffers = {name: [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
                        for name, variables in groups.items()}
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.loss_scale = None  # a congan.precision.LossScale under --mixed_precision

    def apply(self, grads_by_group: dict[str, list]):
        """One step; under ``strategy.run`` the gradients must already be summed over the replicas (each replica
        then updates its own copy of the mirrored variables identically)."""
        for name, grads in grads_by_group.items():
            for var, buf, grad in zip(self.groups[name], self.buffers[name], grads):
                grad = grad + self.weight_decay * var
                # PyTorch initialises the buffer with the first gradient (no damping).
                new_buf = tf.where(self.iterations > 0, self.momentum * buf + grad, grad)
                assign_local(buf, new_buf)
                assign_sub_local(var, self.lr[name] * new_buf)
        assign_add_local(self.iterations, 1)


# Seeds per step: the two augmented views draw 14 random tensors each.
_AUGMENT_SEEDS = 32


def _z_std(z):
    """Collapse monitor (SimSiam paper Fig. 2): mean over dimensions of the std over the GLOBAL batch of the
    normalised z [b, dim] (~1/sqrt(dim) if healthy, ~0 when collapsed); sums all-reduced over replicas."""
    n = replicas.all_sum(tf.cast(tf.shape(z)[0], z.dtype))
    mean = replicas.all_sum(tf.reduce_sum(z, axis=0)) / n
    var = replicas.all_sum(tf.reduce_sum(tf.square(z - mean), axis=0)) / n
    return tf.reduce_mean(tf.sqrt(var))


def make_pretrain_step(model: SimSiam, optimizer: TorchSGD, rng: tf.random.Generator, image_size: int,
                       jit_compile: bool = False, strategy: tf.distribute.Strategy | None = None):
    """The SimSiam train step: global uint8 batch [B, H, W, 3] -> {"loss", "z_std"}.

    With several replicas (``strategy``, see :mod:`congan.distribute`) each takes B / R images and their rows of
    the augmentation draws; BN statistics are those of the global batch; the loss is a per-image mean (SimSiam has
    no negatives), scaled by 1 / R, with gradients summed over replicas. ``z_std`` is over the global batch.
    """
    strategy = strategy or tf.distribute.get_strategy()
    encoder_vars = model.encoder.trainable_variables
    predictor_vars = model.predictor.trainable_variables

    def replica_step(images, seeds):
        noise = StepNoise(seeds)
        images = replicas.shard(images)
        x1 = simsiam_augment(images, noise, image_size)
        x2 = simsiam_augment(images, noise, image_size)
        with tf.GradientTape() as tape:
            p1, p2, z1, z2 = model(x1, x2, training=True)
            loss = losses.simsiam_loss(p1, p2, z1, z2)
            scaled = precision.scaled(loss * replicas.share(), optimizer.loss_scale)
        grads = replicas.all_sum(tape.gradient(scaled, encoder_vars + predictor_vars))
        precision.apply_gradients(optimizer.loss_scale, grads, lambda g: optimizer.apply(
            {"encoder": g[:len(encoder_vars)], "predictor": g[len(encoder_vars):]}))
        return {"loss": loss, "z_std": _z_std(l2_normalize(tf.stop_gradient(z1), axis=1))}

    @tf.function(jit_compile=jit_compile, autograph=False)
    def step(images):
        seeds = rng.make_seeds(_AUGMENT_SEEDS)
        return reduce_mean(strategy, strategy.run(replica_step, args=(images, seeds)))

    return step


def cosine_lr(lr0: float, epoch: int, epochs: int) -> float:
    """The official per-epoch schedule: lr0 * 0.5 * (1 + cos(pi * epoch / epochs))."""
    return lr0 * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def pretrain(cfg, images: np.ndarray | None = None, show_progress: bool = True,
             devices: list[str] | None = None) -> Path:
    """Train SimSiam on the GAN's training images; returns the path of ``simsiam.weights.h5``.

    Args:
        cfg: a resolved :class:`congan.config.SimSiamConfig`.
        images: uint8 [N, S, S, 3] (tests); default: read ``cfg.dataset`` from ``cfg.data_dir``.
        devices: explicit replica devices (tests: ``["/cpu:0", "/cpu:1"]``); default: ``--gpu`` / ``TF_CONFIG``.
    """
    from common.config import prepare_run_dir
    from common.devices import worker_dir
    from common.seeding import make_generator, set_seed
    from common.summaries import Logbook
    from common.training import Checkpoints, Every, train_loop
    from congan.data import EpochBatches, load_images
    from congan.distribute import make_run_strategy
    from congan.runs import resolve_seed

    strategy = make_run_strategy(cfg, devices)
    cfg = resolve_seed(cfg)
    run_dir, _ = prepare_run_dir(worker_dir(cfg.run_dir), cfg)  # non-chief: a scratch folder
    set_seed(cfg.seed)
    if images is None:
        images = load_images(cfg.dataset, cfg.data_dir, cfg.image_size, cfg.subset, cfg.workers)
    batches = EpochBatches(images, cfg.batch_size, cfg.seed, flip=False)
    with strategy.scope(), precision.dtype_policy(cfg.mixed_precision):
        model = SimSiam(cfg.arch, cfg.dim, cfg.pred_dim, name="simsiam").build_for(cfg.image_size)
        optimizer = TorchSGD({"encoder": model.encoder.trainable_variables,
                              "predictor": model.predictor.trainable_variables}, cfg.momentum, cfg.weight_decay)
        if cfg.mixed_precision:
            optimizer.loss_scale = precision.LossScale()
    rng = make_generator(cfg.seed)
    step = make_pretrain_step(model, optimizer, rng, cfg.image_size, cfg.jit_compile, strategy)
    ckpt = Checkpoints(run_dir, model=model, rng=rng, optimizer=optimizer)
    start = ckpt.restore_latest()
    lr0 = cfg.lr * cfg.batch_size / 256
    n_b = batches.num_batches
    book = Logbook(run_dir)

    def step_fn(i):
        epoch = i // n_b
        optimizer.lr["encoder"].assign(cosine_lr(lr0, epoch, cfg.epochs))
        optimizer.lr["predictor"].assign(lr0 if cfg.fix_pred_lr else cosine_lr(lr0, epoch, cfg.epochs))
        return step(tf.constant(batches.batch(epoch, i % n_b)))

    def log(it, out):
        book.scalars(it, {"simsiam/loss": out["loss"], "simsiam/z_std": out["z_std"],
                          "simsiam/lr": float(optimizer.lr["encoder"].numpy())})

    def end_of_epoch(it, out):
        save_simsiam(model, run_dir, cfg.image_size)
        book.record(it, {"epochs_done": it // n_b, "loss": out["loss"], "z_std": out["z_std"],
                         "z_std_healthy": 1.0 / math.sqrt(cfg.dim)})
        book.flush()

    train_loop(step_fn, start=start, total=cfg.epochs * n_b, checkpoints=ckpt, save_every=n_b,
               hooks=[Every(cfg.print_freq, log), Every(n_b, end_of_epoch, at_end=True)],
               progress_text=lambda o: f"loss {o['loss']:.4f} z_std {o['z_std']:.4f}", desc="simsiam",
               show_progress=show_progress)
    book.close()
    return save_simsiam(model, run_dir, cfg.image_size)
