"""Building blocks shared by the Keras ports of the pre-trained generators.

:class:`TorchModule` is a Keras layer that knows the PyTorch state_dict names of its tensors and their
layouts, so a published checkpoint loads by name (``generator.layers.3.conv_1.weight_orig`` ...) with the
right transposes (PyTorch is NCHW with (out, in, kh, kw) kernels, Keras NHWC with (kh, kw, in, out)).
All weights are non-trainable: the generators are frozen.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import numpy as np
import tensorflow as tf

from common.errors import UsageError

# torch layout -> keras layout, and back
_TO_KERAS = {
    "as_is": lambda a: a,
    "linear": lambda a: a.T,                              # (out, in) -> (in, out)
    "conv": lambda a: a.transpose(2, 3, 1, 0),            # (out, in, kh, kw) -> (kh, kw, in, out)
    "nchw": lambda a: a.transpose(0, 2, 3, 1),            # (1, C, H, W) -> (1, H, W, C)
    "modconv": lambda a: a[0].transpose(2, 3, 1, 0),      # (1, out, in, kh, kw) -> (kh, kw, in, out)
}
_TO_TORCH = {
    "as_is": lambda a: a,
    "linear": lambda a: a.T,
    "conv": lambda a: a.transpose(3, 2, 0, 1),
    "nchw": lambda a: a.transpose(0, 3, 1, 2),
    "modconv": lambda a: a.transpose(3, 2, 0, 1)[None],
}


class TorchModule(keras.layers.Layer):
    """A frozen Keras layer mirroring one PyTorch module.

    Subclasses list their own tensors in :meth:`torch_tensors` as ``(name, variable, layout)`` and their
    sub-modules in :meth:`torch_children` as ``(name, module)``; loading and exporting walk that tree.
    """

    def __init__(self, **kwargs):
        super().__init__(trainable=False, **kwargs)

    def weight(self, shape, name, initializer="zeros"):
        return self.add_weight(shape=tuple(int(s) for s in shape), name=name, initializer=initializer,
                               trainable=False)

    def torch_tensors(self):
        return []

    def torch_children(self):
        return []

    def load_torch(self, state: Mapping[str, np.ndarray], prefix: str = "", missing: list | None = None):
        """Assign this module's tensors from ``state``; names not found are appended to ``missing``."""
        top = missing is None
        missing = [] if top else missing
        for name, var, layout in self.torch_tensors():
            key = prefix + name
            if key not in state:
                missing.append(key)
                continue
            value = _TO_KERAS[layout](np.asarray(state[key], np.float32))
            if tuple(value.shape) != tuple(var.shape):
                raise UsageError(f"generator weights: {key} has shape {np.shape(state[key])}, which does not fit "
                                 f"this architecture (expected {tuple(var.shape)} after conversion)")
            var.assign(value)
        self.load_extra(state, prefix, missing)
        for name, child in self.torch_children():
            child.load_torch(state, f"{prefix}{name}.", missing)
        if top and missing:
            raise UsageError(f"generator weights: {len(missing)} tensors missing, e.g. {', '.join(missing[:3])}")

    def load_extra(self, state, prefix, missing):
        """Hook for tensors that need more than a transpose (spectral normalisation)."""

    def export_torch(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The module's tensors under their PyTorch names and layouts (inverse of :meth:`load_torch`)."""
        state = {}
        for name, var, layout in self.torch_tensors():
            state[prefix + name] = _TO_TORCH[layout](np.asarray(var.numpy()))
        state.update(self.export_extra(prefix))
        for name, child in self.torch_children():
            state.update(child.export_torch(f"{prefix}{name}."))
        return state

    def export_extra(self, prefix):
        return {}


# ---------------------------------------------------------------------------------------------------
# spectral normalisation (inference form)


def spectral_weight(weight_orig: np.ndarray, u: np.ndarray, v: np.ndarray | None, eps: float = 1e-12) -> np.ndarray:
    """PyTorch's ``spectral_norm`` in eval mode: W / sigma with sigma = u^T (W_mat v), no power iteration.

    ``weight_orig`` is in PyTorch layout (out, ...); W_mat is it reshaped to (out, -1). Checkpoints
    without ``weight_v`` (PyTorch < 1.0 wrote none) get v = normalize(W_mat^T u), what PyTorch's
    loading hook computes for them.
    """
    w = np.asarray(weight_orig, np.float64)
    mat = w.reshape(w.shape[0], -1)
    u = np.asarray(u, np.float64)
    if v is None:
        v = mat.T @ u
        v = v / max(np.linalg.norm(v), eps)
    sigma = float(u @ (mat @ np.asarray(v, np.float64)))
    return (w / sigma).astype(np.float32)


class SNMixin:
    """Load/export ``weight_orig`` / ``weight_u`` / ``weight_v`` into the effective kernel ``self.kernel``."""

    sn_layout = "linear"

    def load_extra(self, state, prefix, missing):
        keys = [prefix + "weight_orig", prefix + "weight_u"]
        absent = [k for k in keys if k not in state]
        if absent:
            missing.extend(absent)
            return
        w = spectral_weight(state[keys[0]], state[keys[1]], state.get(prefix + "weight_v"))
        value = _TO_KERAS[self.sn_layout](w)
        if tuple(value.shape) != tuple(self.kernel.shape):
            raise UsageError(f"generator weights: {keys[0]} has shape {w.shape}, which does not fit this "
                             f"architecture (expected {tuple(self.kernel.shape)} after conversion)")
        self.kernel.assign(value)

    def export_extra(self, prefix):
        # Any (u, v) with u^T W v = 1 reproduces W exactly: v = W^T u / |W^T u|^2 for a unit u.
        w = _TO_TORCH[self.sn_layout](np.asarray(self.kernel.numpy(), np.float64))
        mat = w.reshape(w.shape[0], -1)
        rng = np.random.RandomState(0)
        u = rng.standard_normal(mat.shape[0])
        u /= np.linalg.norm(u)
        wu = mat.T @ u
        v = wu / max(float(wu @ wu), 1e-30)
        return {prefix + "weight_orig": w.astype(np.float32), prefix + "weight_u": u.astype(np.float32),
                prefix + "weight_v": v.astype(np.float32)}


class SNLinear(SNMixin, TorchModule):
    """Spectrally normalised ``nn.Linear`` (inference form), optional bias."""

    def __init__(self, in_features, out_features, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.weight((in_features, out_features), "kernel", "glorot_uniform")
        self.bias = self.weight((out_features,), "bias") if use_bias else None

    def torch_tensors(self):
        return [("bias", self.bias, "as_is")] if self.bias is not None else []

    def call(self, x):
        y = tf.matmul(x, self.kernel)
        return y + self.bias if self.bias is not None else y


class SNConv2d(SNMixin, TorchModule):
    """Spectrally normalised ``nn.Conv2d`` (stride 1, 'same' padding for odd kernels), NHWC."""

    sn_layout = "conv"

    def __init__(self, in_channels, out_channels, kernel_size, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.kernel = self.weight((kernel_size, kernel_size, in_channels, out_channels), "kernel", "glorot_uniform")
        self.bias = self.weight((out_channels,), "bias") if use_bias else None

    def torch_tensors(self):
        return [("bias", self.bias, "as_is")] if self.bias is not None else []

    def call(self, x):
        y = tf.nn.conv2d(x, self.kernel, 1, "SAME")
        return y + self.bias if self.bias is not None else y


# ---------------------------------------------------------------------------------------------------
# resampling


def upfirdn2d(x: tf.Tensor, kernel: np.ndarray, up: int = 1, down: int = 1, pad=(0, 0)) -> tf.Tensor:
    """rosinality's ``upfirdn2d_native`` in NHWC: zero-insertion upsampling, padding (negative = crop),
    convolution with the flipped FIR kernel, then stride-``down`` subsampling. x: [B, H, W, C]."""
    kernel = np.asarray(kernel, np.float32)
    channels = x.shape[-1]
    if up > 1:
        b, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
        x = tf.reshape(x, (b, h, 1, w, 1, channels))
        x = tf.pad(x, [[0, 0], [0, 0], [0, up - 1], [0, 0], [0, up - 1], [0, 0]])
        x = tf.reshape(x, (b, h * up, w * up, channels))
    p0, p1 = pad
    x = tf.pad(x, [[0, 0], [max(p0, 0), max(p1, 0)], [max(p0, 0), max(p1, 0)], [0, 0]])
    if p0 < 0 or p1 < 0:
        x = x[:, max(-p0, 0): tf.shape(x)[1] - max(-p1, 0), max(-p0, 0): tf.shape(x)[2] - max(-p1, 0), :]
    flipped = kernel[::-1, ::-1]
    depthwise = np.tile(flipped[:, :, None, None], (1, 1, channels, 1))
    x = tf.nn.depthwise_conv2d(x, tf.constant(depthwise, x.dtype), [1, 1, 1, 1], "VALID")
    if down > 1:
        x = x[:, ::down, ::down, :]
    return x


def nearest_upsample(x: tf.Tensor, factor: int = 2) -> tf.Tensor:
    """``F.interpolate(mode='nearest', scale_factor=2)`` / StyleGAN's ``upscale2d``: repeat pixels."""
    return tf.repeat(tf.repeat(x, factor, axis=1), factor, axis=2)
