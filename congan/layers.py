"""Keras layers that compute what the notebooks' PyTorch layers compute, with PyTorch's defaults.

Everything is NHWC. Each layer keeps its weights in Keras layout and knows how to translate them to and
from the PyTorch ``state_dict`` layout (``torch_tensors``), which is what the weight importer and exporter
in :mod:`congan.torch_io` use.

PyTorch conventions reproduced here (spec §3 "Conventions", §7.1, §7.2):
- "PT-default" init: weight U(+-1/sqrt(fan_in)) == ``VarianceScaling(1/3, "fan_in", "uniform")``, bias
  U(+-1/sqrt(fan_in)); for a transposed conv PyTorch takes fan_in = out_channels * k * k, which is also what
  Keras computes from a (kh, kw, out, in) kernel.
- padding is symmetric and explicit (``tf.pad`` then ``VALID``), so every stride/kernel/padding combination
  matches PyTorch, not only the ones where Keras "same" happens to agree.
- BatchNorm: eps 1e-5, PyTorch momentum 0.1 (Keras momentum 0.9), running variance updated with the
  *unbiased* batch variance (Keras uses the biased one).
- Spectral norm as ``torch.nn.utils.parametrizations.spectral_norm``: one power iteration per training-mode
  call (u first, then v), 15 warm-up iterations at creation, sigma = u^T W v with the gradient through W.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from common import replicas

BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # Keras convention; PyTorch momentum 0.1
SN_EPS = 1e-12
SN_WARMUP_ITERATIONS = 15
# Aggregation of non-trainable state that a training-mode call assigns (BN running statistics, SN u/v): with
# several replicas every replica computes the same value (synchronised BN, same weights), so the first one's is kept.
REPLICATED_STATE = "only_first_replica"

# Translations between Keras and PyTorch layouts: (to_torch, from_torch).
_IDENTITY = (lambda a: a, lambda a: a)
_DENSE = (lambda a: a.T, lambda a: a.T)  # Dense (in, out) <-> Linear (out, in)
_CONV = (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0))  # HWIO <-> OIHW
_CONV_T = (lambda a: a.transpose(3, 2, 0, 1), lambda a: a.transpose(2, 3, 1, 0))  # (kh,kw,out,in) <-> (in,out,kh,kw)


def torch_default_kernel() -> keras.initializers.Initializer:
    """PyTorch's default weight init (kaiming_uniform with a=sqrt(5)): U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def xavier_uniform(gain: float = 1.0) -> keras.initializers.Initializer:
    """``nn.init.xavier_uniform_(w, gain)``: U(+-gain*sqrt(6/(fan_in+fan_out)))."""
    return keras.initializers.VarianceScaling(gain * gain, "fan_avg", "uniform")


def kaiming_normal_fan_out() -> keras.initializers.Initializer:
    """``nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`` (torchvision ResNet convs)."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def torch_default_bias(fan_in: int) -> keras.initializers.Initializer:
    """PyTorch's default bias init U(+-1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    return keras.initializers.RandomUniform(-bound, bound)


def to_float32(x):
    """``x`` as float32 (a no-op for float32): network outputs and the delicate statistics under mixed precision."""
    return x if x.dtype == tf.float32 else tf.cast(x, tf.float32)


def l2_normalize(x, axis=-1, eps: float = SN_EPS):
    """``F.normalize``: x / max(||x||, eps) (written as x * rsqrt(max(||x||^2, eps^2)): fewer graph ops).

    Computed in float32 (eps^2 = 1e-24 does not exist in float16) and returned in x's dtype.
    """
    x32 = to_float32(x)
    out = x32 * tf.math.rsqrt(tf.maximum(tf.reduce_sum(tf.square(x32), axis=axis, keepdims=True), eps * eps))
    return tf.cast(out, x.dtype)


def cosine_similarity(a, b, eps: float = 1e-8):
    """``F.cosine_similarity`` per row: a.b / max(||a|| ||b||, eps). [B, D], [B, D] -> [B] float32."""
    a, b = to_float32(a), to_float32(b)
    dot = tf.reduce_sum(a * b, axis=-1)
    return dot / tf.maximum(tf.norm(a, axis=-1) * tf.norm(b, axis=-1), eps)


class LazyBuild:
    """Mixin for layers/models made of sublayers: no symbolic "build by running call" in Keras 3.

    Keras 3 builds a layer that has no ``build`` by tracing ``call`` symbolically; the sublayers are then
    created in a scratch graph. With this mixin the sublayers are built on the first (eager) call instead.
    """

    def build(self, *args, **kwargs):
        self.built = True


def track(owner, name: str, items) -> list:
    """Give ``owner`` the list ``name`` of sublayers, each also an attribute ``<name>_<i>``.

    Keras 3 wraps list attributes in its own tracking list, which ``tf.train.Checkpoint`` does not see; the
    named attributes make every sublayer part of the checkpoint, the plain list keeps iteration simple.
    ``None`` entries are kept in the list and get no attribute.
    """
    items = list(items)
    for i, item in enumerate(items):
        if item is not None:
            setattr(owner, f"{name}_{i}", item)
    object.__setattr__(owner, name, items)
    return items


class TorchLayer(keras.layers.Layer):
    """Base of the leaf layers. ``torch_tensors()`` maps each PyTorch state-dict suffix of the layer to
    ``(variable, to_torch, from_torch)``; leaves without weights map nothing."""

    def torch_tensors(self) -> dict[str, tuple[tf.Variable, Callable, Callable]]:
        return {}


class Linear(TorchLayer):
    """``nn.Linear``: y = x W + b. [..., in] -> [..., units]."""

    def __init__(self, units, use_bias=True, kernel_initializer=None, bias_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer or torch_default_kernel()
        self.bias_initializer = bias_initializer

    def build(self, input_shape):
        fan_in = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(fan_in, self.units), initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias", shape=(self.units,), initializer=self.bias_initializer or torch_default_bias(fan_in)
            )

    def effective_kernel(self, training):
        return self.kernel

    def call(self, x, training=False):
        y = tf.matmul(x, self.effective_kernel(training))
        return y + self.bias if self.use_bias else y

    def torch_tensors(self):
        out = {"weight": (self.kernel, *_DENSE)}
        if self.use_bias:
            out["bias"] = (self.bias, *_IDENTITY)
        return out


class _TorchConvolution(TorchLayer):
    """What ``nn.Conv2d`` and ``nn.ConvTranspose2d`` share: square kernel, stride, symmetric padding, PyTorch init."""

    def __init__(self, filters, kernel_size, stride=1, padding=0, use_bias=True, kernel_initializer=None,
                 bias_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(padding)
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer or torch_default_kernel()
        self.bias_initializer = bias_initializer


class Conv2d(_TorchConvolution):
    """``nn.Conv2d`` with symmetric zero padding. [B, H, W, in] -> [B, H', W', filters]."""

    def build(self, input_shape):
        in_ch = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, in_ch, self.filters),
                                      initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=self.bias_initializer or torch_default_bias(in_ch * k * k))

    def effective_kernel(self, training):
        return self.kernel

    def call(self, x, training=False):
        if self.padding:
            p = self.padding
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
        y = tf.nn.conv2d(x, self.effective_kernel(training), self.stride, "VALID")
        return y + self.bias if self.use_bias else y

    def torch_tensors(self):
        out = {"weight": (self.kernel, *_CONV)}
        if self.use_bias:
            out["bias"] = (self.bias, *_IDENTITY)
        return out


class ConvTranspose2d(_TorchConvolution):
    """``nn.ConvTranspose2d`` (no output_padding): out = (H-1)*stride - 2*padding + k.

    The full transposed convolution is computed with ``VALID`` and ``padding`` pixels are cropped from
    every side, which is PyTorch's definition. The kernel is (kh, kw, out, in), PyTorch's (in, out, kh, kw)
    transposed without a spatial flip.
    """

    def build(self, input_shape):
        in_ch = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(name="kernel", shape=(k, k, self.filters, in_ch),
                                      initializer=self.kernel_initializer)
        self.bias = None
        if self.use_bias:
            # PyTorch computes the transposed conv's fan_in from weight dim 1 (= out channels).
            self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                        initializer=self.bias_initializer or torch_default_bias(self.filters * k * k))

    def call(self, x, training=False):
        shape = tf.shape(x)
        k, s, p = self.kernel_size, self.stride, self.padding
        full_h = (x.shape[1] - 1) * s + k
        full_w = (x.shape[2] - 1) * s + k
        y = tf.nn.conv2d_transpose(x, self.kernel, [shape[0], full_h, full_w, self.filters], s, "VALID")
        if p:
            y = y[:, p:full_h - p, p:full_w - p, :]
        return y + self.bias if self.use_bias else y

    def torch_tensors(self):
        out = {"weight": (self.kernel, *_CONV_T)}
        if self.use_bias:
            out["bias"] = (self.bias, *_IDENTITY)
        return out


class SpectralNormMixin:
    """Spectral normalisation of ``self.kernel`` as ``torch.nn.utils.parametrizations.spectral_norm``.

    W is the kernel as a matrix [out, in*kh*kw] in PyTorch (OIHW) order, so imported ``_u`` [out] and
    ``_v`` [in*kh*kw] vectors keep their meaning. State: u, v (non-trainable). The concrete classes
    provide ``_to_torch_matrix(kernel)``.
    """

    def _build_sn(self):
        rows = self.kernel.shape[-1]
        cols = int(np.prod(self.kernel.shape)) // rows
        normal = keras.initializers.RandomNormal(0.0, 1.0)
        # Every replica computes the same u, v from the same W: the first replica's value is kept.
        self.sn_u = self.add_weight(name="sn_u", shape=(rows,), initializer=normal, trainable=False,
                                    autocast=False, aggregation=REPLICATED_STATE)
        self.sn_v = self.add_weight(name="sn_v", shape=(cols,), initializer=normal, trainable=False,
                                    autocast=False, aggregation=REPLICATED_STATE)
        # PyTorch normalises the random u, v and runs 15 power iterations when the parametrization is
        # registered, i.e. on the initial weight.
        w = tf.stop_gradient(self.weight_matrix())
        u, v = l2_normalize(self.sn_u, axis=0), l2_normalize(self.sn_v, axis=0)
        for _ in range(SN_WARMUP_ITERATIONS):
            u = l2_normalize(tf.linalg.matvec(w, v), axis=0)
            v = l2_normalize(tf.linalg.matvec(w, u, transpose_a=True), axis=0)
        self.sn_u.assign(u)
        self.sn_v.assign(v)

    def weight_matrix(self):
        """The kernel as the PyTorch matrix [out, in*kh*kw] in float32 (a tensor, differentiable)."""
        return self._to_torch_matrix(to_float32(tf.convert_to_tensor(self.kernel)))

    def sigma(self, training):
        """sigma = u^T W v (float32); in training mode u and v first take one power-iteration step (no gradient)."""
        w = self.weight_matrix()
        if training:
            w_const = tf.stop_gradient(w)
            u = l2_normalize(tf.linalg.matvec(w_const, self.sn_v), axis=0)
            v = l2_normalize(tf.linalg.matvec(w_const, u, transpose_a=True), axis=0)
            self.sn_u.assign(u)
            self.sn_v.assign(v)
        else:
            u, v = tf.stop_gradient(self.sn_u.value), tf.stop_gradient(self.sn_v.value)
        return tf.reduce_sum(u * tf.linalg.matvec(w, v))

    def effective_kernel(self, training):
        kernel = tf.convert_to_tensor(self.kernel)  # float16 under mixed precision (Keras autocast)
        return kernel / tf.cast(self.sigma(training), kernel.dtype)

    def _sn_torch_tensors(self):
        to_t, from_t = _CONV if len(self.kernel.shape) == 4 else _DENSE
        out = {
            "parametrizations.weight.original": (self.kernel, to_t, from_t),
            "parametrizations.weight.0._u": (self.sn_u, *_IDENTITY),
            "parametrizations.weight.0._v": (self.sn_v, *_IDENTITY),
        }
        if self.use_bias:
            out["bias"] = (self.bias, *_IDENTITY)
        return out


class SNConv2d(SpectralNormMixin, Conv2d):
    """``spectral_norm(nn.Conv2d(...))``."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_sn()

    def _to_torch_matrix(self, kernel):
        return tf.reshape(tf.transpose(kernel, (3, 2, 0, 1)), (kernel.shape[-1], -1))

    def torch_tensors(self):
        return self._sn_torch_tensors()


class SNLinear(SpectralNormMixin, Linear):
    """``spectral_norm(nn.Linear(...))``."""

    def build(self, input_shape):
        super().build(input_shape)
        self._build_sn()

    def _to_torch_matrix(self, kernel):
        return tf.transpose(kernel)

    def torch_tensors(self):
        return self._sn_torch_tensors()


class BatchNorm(TorchLayer):
    """``nn.BatchNorm1d/2d`` over the last axis; [B, F] or [B, H, W, F] in and out.

    Training mode normalises with the biased batch variance and updates the running variance with the
    unbiased one (PyTorch); inference mode uses the running statistics. Under ``strategy.run`` with several
    replicas the batch statistics are those of the global batch (sums all-reduced, :func:`common.replicas.moments`):
    synchronised BN, what the notebooks' single GPU computed.
    """

    def __init__(self, center=True, scale=True, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, gamma_initializer="ones",
                 **kwargs):
        super().__init__(**kwargs)
        self.center = center
        self.scale = scale
        self.epsilon = epsilon
        self.momentum = momentum
        self.gamma_initializer = gamma_initializer

    def build(self, input_shape):
        f = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(f,), initializer=self.gamma_initializer) if self.scale \
            else None
        self.beta = self.add_weight(name="beta", shape=(f,), initializer="zeros") if self.center else None
        self.moving_mean = self.add_weight(name="moving_mean", shape=(f,), initializer="zeros", trainable=False,
                                           autocast=False, aggregation=REPLICATED_STATE)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(f,), initializer="ones", trainable=False,
                                               autocast=False, aggregation=REPLICATED_STATE)

    def call(self, x, training=False):
        # Statistics, scale and shift in float32 (float16 inputs under mixed precision are cast, the result cast back).
        x32 = to_float32(x)
        if training:
            mean, var, correction = self._batch_moments(x32)
            decay = 1.0 - self.momentum  # running = momentum * running + (1 - momentum) * batch statistic
            self.moving_mean.assign_sub((self.moving_mean - tf.stop_gradient(mean)) * decay)
            self.moving_variance.assign_sub((self.moving_variance - tf.stop_gradient(var) * correction) * decay)
        else:
            mean, var = self.moving_mean.value, self.moving_variance.value
        # y = (x - mean) * rsqrt(var + eps) * gamma + beta, folded into one scale and one shift per channel.
        scale = tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            scale = scale * to_float32(tf.convert_to_tensor(self.gamma))
        shift = -mean * scale
        if self.center:
            shift = shift + to_float32(tf.convert_to_tensor(self.beta))
        return tf.cast(x32 * scale + shift, x.dtype)

    @staticmethod
    def _batch_moments(x):
        """Mean [F], biased variance [F] (to normalise) and n / (n - 1) (PyTorch's unbiased running variance)."""
        axes = list(range(len(x.shape) - 1))
        several = replicas.num_replicas()
        if None in x.shape[:-1]:
            n = replicas.all_sum(tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), x.dtype))
            correction = n / tf.maximum(n - 1.0, 1.0)
        else:
            n = float(np.prod(x.shape[:-1])) * several
            correction = n / max(n - 1.0, 1.0)
        if several == 1:
            mean = tf.reduce_mean(x, axes)
            return mean, tf.reduce_mean(tf.square(x - mean), axes), correction
        # Several replicas: statistics of the global batch. Unlike common.replicas.moments (and tf.nn.moments) the
        # variance keeps the gradient through the mean: its first derivative is the same, but second derivatives
        # (a gradient penalty through BN, Framework 1 with gan_type gan/wgan) need it, as PyTorch's BN has it.
        mean = replicas.all_sum(tf.reduce_sum(x, axes)) / n
        var = replicas.all_sum(tf.reduce_sum(tf.square(x - mean), axes)) / n
        return mean, var, correction

    def torch_tensors(self):
        out = {}
        if self.scale:
            out["weight"] = (self.gamma, *_IDENTITY)
        if self.center:
            out["bias"] = (self.beta, *_IDENTITY)
        out["running_mean"] = (self.moving_mean, *_IDENTITY)
        out["running_var"] = (self.moving_variance, *_IDENTITY)
        return out


class FrozenBias(TorchLayer):
    """A bias that is part of the model but never trained (SimSiam's projector fc.6.bias)."""

    def __init__(self, fan_in, **kwargs):
        super().__init__(**kwargs)
        self.fan_in = int(fan_in)

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),),
                                    initializer=torch_default_bias(self.fan_in), trainable=False)

    def call(self, x):
        return x + self.bias

    def torch_tensors(self):
        return {"bias": (self.bias, *_IDENTITY)}


class CBNKernelInit(keras.initializers.Initializer):
    """Init of the conditional-BN embed kernel [repr_dim, 2F] (spec §3.2, bug §8.2).

    ``"original"`` reproduces the notebook: PyTorch fills ``weight[:, :F]`` (the first F *input* columns of
    the [2F, repr_dim] weight) with N(1, 0.02) and zeroes the rest, i.e. Keras kernel rows [0, F) ~ N(1, 0.02)
    and rows [F, repr_dim) = 0. ``"intended"`` fills the gamma outputs (kernel columns [0, F)) with N(1, 0.02)
    and the beta outputs (columns [F, 2F)) with 0.
    """

    def __init__(self, num_features, mode="original", seed=None):
        self.num_features = num_features
        self.mode = mode
        self.seed = seed
        self._normal = keras.initializers.RandomNormal(mean=1.0, stddev=0.02, seed=seed)

    def __call__(self, shape, dtype=None):
        rows, cols = shape
        f = self.num_features
        normal = tf.convert_to_tensor(self._normal(shape, dtype=dtype or "float32"))
        if self.mode == "original":
            mask = tf.cast(tf.range(rows)[:, None] < f, normal.dtype) * tf.ones((1, cols), normal.dtype)
        else:
            mask = tf.ones((rows, 1), normal.dtype) * tf.cast(tf.range(cols)[None, :] < f, normal.dtype)
        return normal * mask

    def get_config(self):
        return {"num_features": self.num_features, "mode": self.mode, "seed": self.seed}


class ConditionalBatchNorm(keras.layers.Layer):
    """CBN(F, repr_dim): gamma(r) * BN(x) + beta(r), [gamma; beta] = Linear(r) (no "1 + gamma"). Spec §3.2.

    Args:
        num_features: F, channels of x.
        cbn_init: ``"original"`` (faithful, quirky) or ``"intended"``; see :class:`CBNKernelInit`.
    Call: x [B, H, W, F], r [B, repr_dim] -> [B, H, W, F].
    """

    def __init__(self, num_features, cbn_init="original", **kwargs):
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        self.bn = BatchNorm(center=False, scale=False, name="bn")
        self.cbn_init = cbn_init

    def build(self, x_shape, r_shape=None):
        repr_dim = int(r_shape[-1]) if r_shape is not None else None
        self.embed = Linear(2 * self.num_features, kernel_initializer=CBNKernelInit(self.num_features, self.cbn_init),
                            name="embed")
        if repr_dim is not None:
            self.embed.build((None, repr_dim))
        self.bn.build(x_shape)

    def call(self, x, r, training=False):
        out = self.bn(x, training=training)
        gamma, beta = tf.split(tf.reshape(self.embed(r), (-1, 1, 1, 2 * self.num_features)), 2, axis=-1)
        return gamma * out + beta

    def torch_modules(self, prefix):
        return [(f"{prefix}.bn", self.bn), (f"{prefix}.embed", self.embed)]


class PlainBatchNorm(keras.layers.Layer):
    """Affine BN (gamma 1, beta 0) that ignores r: the ``conditioning="none_plain_bn"`` option (spec §2.2)."""

    def __init__(self, num_features, **kwargs):
        super().__init__(**kwargs)
        self.num_features = int(num_features)
        self.bn = BatchNorm(name="bn")

    def build(self, x_shape, r_shape=None):
        self.bn.build(x_shape)

    def call(self, x, r, training=False):
        return self.bn(x, training=training)

    def torch_modules(self, prefix):
        return [(f"{prefix}.bn", self.bn)]
