"""Layers with the exact semantics of SLOGAN's TF1 original (spec §4.1 and §4.3).

- :class:`TF1BatchNorm`: ``tf.contrib.layers.batch_norm(decay=0.9, epsilon=1e-5, zero_debias_moving_mean=True)``
  on its fused path, with the choice of batch statistics (``training``) separate from the update of the
  moving statistics (``update_stats``): the original runs the generator in training mode in the D step
  but updates the moving statistics only in the G step (and twice per G step in CIFAR-2).
- :class:`SpectralNormProjection`: the encoder's kernel constraint, applied by the optimizer after each
  update (W <- W / σ̂ with two power iterations from fresh random u, v).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from common import replicas

# The fused TF1 kernel raises any epsilon below this value to it, so epsilon=1e-5 acts as 1.001e-5.
TF1_FUSED_MIN_EPSILON = 1.001e-5


class TF1BatchNorm(keras.layers.Layer):
    """Batch normalisation over every axis but the last, as TF1's fused ``batch_norm`` computes it.

    Forward: y = γ (x - m) / sqrt(v + ε) + β with ε = 1.001e-5, where (m, v) are the batch mean and the
    *biased* batch variance when ``training`` is True, and the moving statistics otherwise.

    Moving statistics (updated only when ``update_stats`` is True, from the batch statistics):

    - variance: v_mov <- 0.9 v_mov + 0.1 * (unbiased batch variance), the Bessel-corrected value the
      fused kernel returns;
    - mean, zero-debiased: biased <- biased - (biased - m) * 0.1, local_step <- local_step + 1,
      moving_mean <- biased / (1 - 0.9 ** local_step); after the first update it equals the batch mean.

    Initial values: γ = 1, β = 0, moving mean 0, moving variance 1, biased 0, local_step 0.

    Several replicas (``tf.distribute``): the original trained on one device, so the batch statistics are those
    of the global batch; the per-replica sums are all-reduced (:func:`common.replicas.moments`), which keeps the
    outputs, the gradients and the moving-statistics updates equal to the one-device ones (every replica writes
    the same values into its copy of the moving statistics).

    Args:
        momentum: the EMA decay (TF1 ``decay``), 0.9.
        epsilon: the requested epsilon; raised to 1.001e-5 like the fused kernel.

    Call args:
        x: [N, C] or [N, H, W, C] float32.
        training: normalise with batch statistics (TF1 ``is_training``).
        update_stats: also update the moving statistics (TF1 UPDATE_OPS run by this step).
    """

    def __init__(self, momentum: float = 0.9, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.momentum = float(momentum)
        self.epsilon = max(float(epsilon), TF1_FUSED_MIN_EPSILON)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=(channels,), initializer="zeros", name="moving_mean", trainable=False)
        self.moving_variance = self.add_weight(
            shape=(channels,), initializer="ones", name="moving_variance", trainable=False
        )
        # Hidden state of TF1's zero-debiased moving average (variables `moving_mean/biased`, `/local_step`).
        self.moving_mean_biased = self.add_weight(
            shape=(channels,), initializer="zeros", name="moving_mean_biased", trainable=False
        )
        self.moving_mean_local_step = self.add_weight(
            shape=(), initializer="zeros", name="moving_mean_local_step", trainable=False
        )

    def call(self, x, training=False, update_stats=False):
        x = tf.convert_to_tensor(x)
        axes = list(range(len(x.shape) - 1))
        if training:
            if replicas.num_replicas() > 1:
                mean, variance, count = replicas.moments(x, axes)
            else:
                mean, variance = tf.nn.moments(x, axes)
                count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype)
            if update_stats:
                self._update_moving_statistics(mean, variance * count / tf.maximum(count - 1.0, 1.0))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        inv = tf.math.rsqrt(variance + self.epsilon) * self.gamma
        return (x - mean) * inv + self.beta

    def _update_moving_statistics(self, mean, unbiased_variance):
        rate = 1.0 - self.momentum
        biased = self.moving_mean_biased.assign_sub((self.moving_mean_biased - mean) * rate)
        local_step = self.moving_mean_local_step.assign_add(1.0)
        self.moving_mean.assign(biased / (1.0 - tf.pow(self.momentum, local_step)))
        self.moving_variance.assign_sub((self.moving_variance - unbiased_variance) * rate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def l2_normalize_vector(x, eps: float = 1e-12):
    """x / ||x + eps|| (the original adds eps to the vector itself, not to the norm)."""
    return x / tf.norm(x + eps)


def spectral_norm_project(kernel, u, v, power_iters: int = 2):
    """W / σ̂ with σ̂ = uᵀ W v from ``power_iters`` power iterations started at u (spec §4.1).

    Each iteration: v <- normalise(Wᵀu), u <- normalise(W v). The start vector v is overwritten by the
    first iteration (the original draws it anyway).

    Args:
        kernel: weight of any rank; reshaped to [rows = first dim, -1].
        u: [rows] start vector; v: [cols] start vector.
    Returns:
        kernel / σ̂, same shape. σ̂ <= σ_max, so the top singular value of the result is >= 1.
    """
    w = tf.reshape(kernel, [tf.shape(kernel)[0], -1])
    for _ in range(power_iters):
        v = l2_normalize_vector(tf.linalg.matvec(w, u, transpose_a=True))
        u = l2_normalize_vector(tf.linalg.matvec(w, v))
    sigma = tf.tensordot(u, tf.linalg.matvec(w, v), axes=1)
    return kernel / sigma


class SpectralNormProjection(keras.constraints.Constraint):
    """Kernel constraint W <- W / σ̂ with fresh N(0, I) start vectors at every call (spec §4.1).

    Keras applies a layer's ``kernel_constraint`` right after each optimizer update, not in the forward
    pass, as TF1 did; the kernels are therefore unnormalised until the first encoder step.

    Args:
        power_iters: power iterations per call (2 in the original).
        generator: a ``tf.random.Generator`` for u and v (keep it in the checkpoint for exact resume);
            the global generator when None.
    """

    def __init__(self, power_iters: int = 2, generator: tf.random.Generator | None = None):
        self.power_iters = int(power_iters)
        self.generator = generator

    def __call__(self, w):
        generator = self.generator or tf.random.get_global_generator()
        rows = tf.shape(w)[0]
        cols = tf.size(w) // rows
        u = generator.normal([rows])
        v = generator.normal([cols])
        return spectral_norm_project(w, u, v, self.power_iters)

    def get_config(self):
        # The original returned the key `n_iters`, which its constructor does not accept (spec §9 #19).
        return {"power_iters": self.power_iters}
