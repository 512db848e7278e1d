"""``mixed_precision=true``: the generator pass in float16, everything LatentCLR trains or scores in float32.

The original's AMP loop crashes at once (spec §10 #3); its intent is ``torch.cuda.amp``: the generator's
matmuls and convolutions in float16, a dynamic ``GradScaler``. Here:

- the generator's layers compute in float16 (Keras ``mixed_float16``: float32 weights, float16 activations);
  its features are cast to float32 before the projector, so the feature divergences, their normalisation
  and the contrastive loss stay float32;
- the direction model stays float32. Its edits alpha * d/|d| are small next to z (0.1 / sqrt(S) per
  coordinate by default) and would lose bits in float16 before the generator even sees them; the model is a
  few matmuls, so float16 would save nothing;
- gradients flow back through the float16 activations, so the loss is scaled (:class:`DynamicLossScale`,
  Keras ``LossScaleOptimizer``'s rule: start at 2^15, halve and skip the update on a non-finite gradient,
  double after 2000 finite steps); the optimisers are the port's torch-form ones, hence the scale is kept
  here rather than by wrapping a Keras optimiser.

Only the generic Keras wrapper (``generator=keras``) is converted: its functional model is cloned with the
``mixed_float16`` policy on every layer. The ported BigGAN / StyleGAN / StyleGAN2 and the run-folder
generators of the other papers run custom TensorFlow code with float32 constants, not checked in float16;
for them the flag is refused with a message saying so.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from common.errors import UsageError

POLICY = "mixed_float16"


def to_mixed(model: keras.Model) -> keras.Model:
    """A copy of a functional / sequential Keras model whose layers compute in float16 (same weights)."""

    def clone_layer(layer):
        config = layer.get_config()
        config["dtype"] = keras.DTypePolicy(POLICY)
        return layer.__class__.from_config(config)

    try:
        clone = keras.models.clone_model(model, clone_function=clone_layer)
    except (ValueError, TypeError) as err:
        raise UsageError(f"mixed_precision=true: the Keras generator cannot be cloned in float16 ({err})") from err
    clone.set_weights(model.get_weights())
    clone.trainable = False
    return clone


def make_generator_mixed(generator) -> None:
    """Switch the generator's forward pass to float16 compute, or refuse (one clear line)."""
    from latentclr.generators.keras_generator import KerasGenerator

    if not isinstance(generator, KerasGenerator):
        raise UsageError(f"mixed_precision=true is implemented for generator=keras only; {type(generator).__name__} "
                         "runs custom TensorFlow code that is not checked in float16 (use mixed_precision=false)")
    generator.model = to_mixed(generator.model)
    generator._submodels.clear()


class DynamicLossScale(tf.Module):
    """Dynamic loss scaling: loss * scale for the backward pass, gradients / scale before the update.

    A step whose unscaled gradients are not all finite is skipped and halves the scale; ``growth_steps``
    finite steps in a row double it. Both counters are variables, so a checkpoint resumes them.
    """

    def __init__(self, initial: float = 2.0 ** 15, growth_steps: int = 2000):
        super().__init__(name="loss_scale")
        self.scale = tf.Variable(float(initial), trainable=False, dtype=tf.float32, name="scale")
        self.good_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="good_steps")
        self.growth_steps = int(growth_steps)

    def unscale(self, grads):
        return [None if g is None else g / tf.cast(self.scale, g.dtype) for g in grads]

    @staticmethod
    def all_finite(grads) -> tf.Tensor:
        checks = [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        return tf.reduce_all(tf.stack(checks)) if checks else tf.constant(True)

    def update(self, finite: tf.Tensor) -> None:
        """Halve on a skipped step; double after ``growth_steps`` finite steps in a row."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_steps)
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), self.scale * 0.5))
        self.good_steps.assign(tf.where(tf.logical_and(finite, tf.logical_not(grow)), self.good_steps + 1,
                                        tf.zeros_like(self.good_steps)))
