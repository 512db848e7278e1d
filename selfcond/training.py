"""The GAN train step, generator EMA, and the job control of the original scripts (spec §2.1, §6).

``make_train_step`` builds one iteration of the original ``Trainer``: a D step then a G step on the same
z and labels, both with D and G in training mode (BatchNorm statistics of G update in both steps, those of
D in both steps too), followed by the EMA of G's trainable parameters when configured.
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from selfcond.losses import REG_TYPES, adversarial_loss, grad_squared_norm, gradient_penalty


def make_train_step(generator, discriminator, g_optimizer, d_optimizer, *, gan_type: str = "standard",
                    reg_type: str = "none", reg_param: float = 0.0, global_batch: int, ema_generator=None,
                    ema_beta: float = 0.999, strategy=None, rng: tf.random.Generator | None = None,
                    jit_compile: bool = False):
    """A ``tf.function`` ``step(x_real, y, z) -> {"d_loss", "reg", "g_loss"}`` (spec §6.1-§6.3).

    D step: L_D = BCE(D(x_r, y), 1) + BCE(D(sg(G(z, y)), y), 0) + reg; G step: L_G = BCE(D(G(z, y), y), 1).
    ``d_loss`` is reported without the regulariser (as the original logs it); for ``real_fake`` the
    reported ``reg`` is the fake one.

    Args:
        generator, discriminator: Keras models called as ``G(z, y, training)``, ``D(x, y, training)``.
        reg_type: ``none``, ``real`` (R1), ``fake``, ``real_fake``, ``wgangp``, ``wgangp0``.
        global_batch: B, the batch over all replicas (losses are divided by it).
        ema_generator: G's moving average (``take_model_average``), updated after every G step on the
            trainable variables only (BN statistics are not averaged).
        strategy: a ``tf.distribute`` strategy; the step's inputs are then per-replica values (see
            :func:`distribute`). ``None`` runs on the default device.
        rng: the generator of the WGAN-GP interpolation weights (needed only for ``wgangp*``).
        jit_compile: compile the step with XLA (single device only).

    Returns:
        The step function.
    """
    if reg_type not in REG_TYPES:
        raise ValueError(f"training.reg_type: expected one of {REG_TYPES}, got {reg_type!r}")
    if reg_type.startswith("wgangp") and rng is None:
        raise ValueError("wgangp regularisers need an rng")

    def penalty(x, y, center=None):
        """gamma * mean over the batch of the input-gradient norm term of D at x."""
        with tf.GradientTape(watch_accessed_variables=False) as x_tape:
            x_tape.watch(x)
            logits = discriminator(x, y, training=True)
            total = tf.reduce_sum(logits)  # the original differentiates the sum of the masked logits
        grads = x_tape.gradient(total, x)
        return logits, gradient_penalty(grad_squared_norm(grads), reg_param, center, global_batch)

    def replica_step(x_real, y, z):
        zero = tf.constant(0.0)
        with tf.GradientTape() as d_tape:
            if reg_type in ("real", "real_fake"):
                d_real, reg = penalty(x_real, y)
            else:
                d_real, reg = discriminator(x_real, y, training=True), zero
            loss_real = adversarial_loss(d_real, 1.0, gan_type, global_batch)
            x_fake = tf.stop_gradient(generator(z, y, training=True))
            if reg_type in ("fake", "real_fake"):
                d_fake, reg_fake = penalty(x_fake, y)
                total_reg = reg + reg_fake
                reg = reg_fake
            else:
                d_fake = discriminator(x_fake, y, training=True)
                total_reg = reg
            loss_fake = adversarial_loss(d_fake, 0.0, gan_type, global_batch)
            if reg_type.startswith("wgangp"):
                shape = tf.concat([tf.shape(x_real)[:1], tf.ones([tf.rank(x_real) - 1], tf.int32)], 0)
                eps = rng.uniform(shape, dtype=x_real.dtype)
                x_interp = (1.0 - eps) * x_real + eps * x_fake
                _, reg = penalty(x_interp, y, center=1.0 if reg_type == "wgangp" else 0.0)
                total_reg = reg
            d_total = loss_real + loss_fake + total_reg
        d_vars = discriminator.trainable_variables
        d_optimizer.apply_gradients(zip(d_tape.gradient(d_total, d_vars), d_vars))

        with tf.GradientTape() as g_tape:
            d_gen = discriminator(generator(z, y, training=True), y, training=True)
            g_loss = adversarial_loss(d_gen, 1.0, gan_type, global_batch)
        g_vars = generator.trainable_variables
        g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_vars), g_vars))
        return {"d_loss": loss_real + loss_fake, "reg": reg, "g_loss": g_loss}

    def ema_update():
        if ema_generator is not None:
            for avg, var in zip(ema_generator.trainable_variables, generator.trainable_variables):
                avg.assign(ema_beta * avg + (1.0 - ema_beta) * var)

    if strategy is None:
        def step(x_real, y, z):
            out = replica_step(x_real, y, z)
            ema_update()
            return out

        return tf.function(step, jit_compile=jit_compile)

    if jit_compile:
        print("note: --jit_compile is ignored with several devices", file=sys.stderr)

    @tf.function
    def distributed_step(x_real, y, z):
        out = strategy.run(replica_step, args=(x_real, y, z))
        out = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        ema_update()  # cross-replica context: assigns every copy of the EMA variables
        return out

    return distributed_step


def distribute(strategy, *arrays):
    """Split global-batch arrays into per-replica values for ``strategy.run`` (identity without a strategy).

    Every process holds the whole global batch [B, ...]; replica r (``replica_id_in_sync_group``, numbered over
    all workers under ``MultiWorkerMirroredStrategy``) takes rows r·B/R .. (r+1)·B/R - 1, so R replicas on any
    number of workers see the batch one process would.
    """
    if strategy is None:
        return tuple(tf.convert_to_tensor(a) for a in arrays)
    replicas = strategy.num_replicas_in_sync

    def split(array):
        array = np.asarray(array)
        size = len(array) // replicas

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return tf.convert_to_tensor(array[i * size:(i + 1) * size])

        return strategy.experimental_distribute_values_from_function(value_fn)

    return tuple(split(a) for a in arrays)


def build_optimizer(name: str, lr: float, beta1: float = 0.0, beta2: float = 0.99):
    """The original's optimizers (spec §3.2): adam (eps 1e-8), rmsprop (rho 0.99, eps 1e-8), sgd (momentum 0)."""
    import keras

    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2, epsilon=1e-8)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr, rho=0.99, epsilon=1e-8)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.0)
    from common.errors import UsageError

    raise UsageError(f"training.optimizer: expected adam, rmsprop or sgd, got {name!r}")


# --- job control (the original's seeing/pidfile.py) -------------------------------------------------


def job_is_done_or_taken(directory: str | Path) -> str | None:
    """Why a job folder must not run now (``done.txt`` exists or ``lockfile.pid`` is held), else None.

    When free, the lock is taken for the rest of the process and removed at exit, so running a
    finished or running experiment again does nothing (spec §2.1).
    """
    directory = Path(directory)
    done = directory / "done.txt"
    if done.is_file():
        return f"{done} {done.read_text().strip()}"
    lock = directory / "lockfile.pid"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_RDWR)
    except FileExistsError:
        holder = lock.read_text().strip() if lock.exists() else "race"
        if not _holder_alive(holder):  # a stale lock of a killed process on this host: take it over
            lock.unlink(missing_ok=True)
            return job_is_done_or_taken(directory)
        return f"{lock} held by {holder or 'empty'}"
    os.write(fd, f"{os.getpid()}@{socket.gethostname()}\n".encode())
    os.close(fd)
    atexit.register(_release, lock)
    return None


def release_job(directory: str | Path) -> None:
    """Give up the lock taken by :func:`job_is_done_or_taken` (also done automatically at exit)."""
    _release(Path(directory) / "lockfile.pid")


def _holder_alive(holder: str) -> bool:
    """False only when the lock names a process of this host that no longer exists."""
    pid, _, host = holder.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release(lock: Path) -> None:
    try:
        lock.unlink()
    except OSError:
        pass


def mark_job_done(directory: str | Path) -> None:
    """Write ``done.txt`` (who finished the job and when)."""
    text = f"done by {os.getpid()}@{socket.gethostname()} at {time.strftime('%c')}"
    (Path(directory) / "done.txt").write_text(text)
