"""``--mixed_precision``: Keras' ``mixed_float16`` policy for the networks, and dynamic loss scaling for the port's
PyTorch-exact optimizers.

What runs in float16: the convolutions, matrix products and activations of every network built inside
:func:`dtype_policy` (variables stay float32 and are cast on use, Keras' autocast). What stays float32 (the
numerically delicate parts, see :mod:`congan.layers`): BatchNorm statistics and running averages, spectral-norm
power iterations and sigma, L2 normalisations and cosine similarities (their epsilons 1e-12 / 1e-8 are below
float16's range), every network output (the models cast what they return), hence every loss.

Loss scaling: ``keras.optimizers.LossScaleOptimizer`` wraps Keras optimizers only, and the port's optimizers are
``tf.Module`` s that reproduce ``torch.optim.Adam`` / ``SGD`` exactly (:mod:`congan.optim`). :class:`LossScale`
implements the same dynamic algorithm with Keras' constants: start at 2^15; multiply the loss by the scale,
divide the gradients by it; if any gradient is not finite, skip the update (the optimizer's step counter does not
move, like PyTorch's GradScaler) and halve the scale; after 2000 finite steps in a row, double it.
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from congan.optim import assign_local

INITIAL_SCALE = 2.0 ** 15
GROWTH_STEPS = 2000


@contextlib.contextmanager
def dtype_policy(mixed: bool):
    """Networks created (and first called) inside use ``mixed_float16`` when ``mixed``; the global policy is
    restored afterwards."""
    if not mixed:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class LossScale(tf.Module):
    """Dynamic loss scale of one train step (its state is checkpointed with the step's optimizer).

    Under ``strategy.run`` the variables are mirrored; the finiteness test is made on the replica-summed gradients,
    so every replica takes the same decision and updates its own copy identically.
    """

    def __init__(self, name="loss_scale"):
        super().__init__(name=name)
        self.scale = tf.Variable(INITIAL_SCALE, trainable=False, name="scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

    def scale_loss(self, loss):
        return loss * tf.cast(self.scale, loss.dtype)

    def apply(self, grads, apply_fn) -> tf.Tensor:
        """Unscale ``grads`` and call ``apply_fn(unscaled)`` if all are finite; update the scale. Returns finite."""
        scale = tf.identity(self.scale)
        grads = [None if g is None else g / scale for g in grads]
        present = [g for g in grads if g is not None]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in present]) if present else tf.constant(True)

        def update():
            apply_fn(grads)
            return tf.constant(True)

        tf.cond(finite, update, lambda: tf.constant(False))
        good = tf.where(finite, self.good_steps + 1, tf.constant(0, tf.int64))
        grown = good >= GROWTH_STEPS
        assign_local(self.good_steps, tf.where(grown, tf.constant(0, tf.int64), good))
        assign_local(self.scale, tf.where(finite, tf.where(grown, scale * 2.0, scale), tf.maximum(scale / 2.0, 1.0)))
        return finite


def scaled(loss, loss_scale: LossScale | None):
    """The loss to differentiate: multiplied by the loss scale when there is one."""
    return loss if loss_scale is None else loss_scale.scale_loss(loss)


def apply_gradients(loss_scale: LossScale | None, grads, apply_fn) -> None:
    """``apply_fn(grads)``, through the loss scale (unscale, skip when not finite) when there is one."""
    if loss_scale is None:
        apply_fn(grads)
    else:
        loss_scale.apply(grads, apply_fn)
