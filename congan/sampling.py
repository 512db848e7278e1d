"""Representation sampling for generation after training ("Training/Results", spec §2.5) and interpolation.

Methods of :func:`sample_representations` (all return float32 [n, repr_dim]):
- ``real``: E(x[:n]) + repr_noise e;
- ``slerp`` / ``lerp``: x1 = x[:n], x2 = x[n:2n]; interpolate E(x1) + e and E(x2) + e with t ~ U(0, 1) per row;
- ``uniform``: U(-1, 1);  ``gaussian``: N(0, I).

The notebook's slerp assumes unit vectors; SimSiam representations have norm ~45, so arccos gets
arguments far outside [-1, 1] and the images are NaN (spec §8.1). Bug-compatible by default:
:func:`slerp` computes exactly that. ``fix=True`` (``--fix_slerp``) measures the angle between
L2-normalised copies (cosine clamped to [-1, 1]) and weights the raw vectors, falling back to lerp when
sin(omega) < 1e-6.
"""

from __future__ import annotations

import tensorflow as tf

from congan.layers import l2_normalize

METHODS = ("real", "slerp", "lerp", "uniform", "gaussian")


def lerp(a, b, t):
    """The notebook's lerp = interpolate(a, b, t) = t a + (1 - t) b (t weights the FIRST argument). t [n]."""
    t = tf.reshape(tf.cast(t, a.dtype), (-1, 1))
    return t * a + (1.0 - t) * b


def slerp(a, b, t, fix: bool = False):
    """Spherical interpolation [sin((1-t) w) a + sin(t w) b] / sin w. a, b [n, D], t [n]; t=0 -> a, t=1 -> b.

    Default (the notebook): w = arccos(a . b) of the raw vectors, NaN unless |a . b| <= 1 (spec §8.1).
    ``fix=True``: w from the normalised vectors, clamped; lerp where sin w < 1e-6. Returns [n, D].
    """
    t = tf.reshape(tf.cast(t, a.dtype), (-1, 1))
    if not fix:
        omega = tf.acos(tf.reduce_sum(a * b, axis=1, keepdims=True))
        so = tf.sin(omega)
        return tf.sin((1.0 - t) * omega) / so * a + tf.sin(t * omega) / so * b
    cos = tf.clip_by_value(tf.reduce_sum(l2_normalize(a, 1) * l2_normalize(b, 1), axis=1, keepdims=True), -1.0, 1.0)
    omega = tf.acos(cos)
    so = tf.sin(omega)
    small = so < 1e-6
    safe = tf.where(small, tf.ones_like(so), so)
    w_a = tf.where(small, 1.0 - t, tf.sin((1.0 - t) * omega) / safe)
    w_b = tf.where(small, t, tf.sin(t * omega) / safe)
    return w_a * a + w_b * b


def sample_representations(method: str, n: int, *, rng: tf.random.Generator, repr_dim: int, encode=None,
                           images=None, repr_noise: float = 1e-5, fix_slerp: bool = False):
    """Representations to generate from (spec §2.5).

    Args:
        method: one of ``METHODS``.
        n: number of representations.
        rng: the random generator (noise, t, priors).
        repr_dim: representation size.
        encode: ``encode(x)`` = E(x) for x in [-1, 1] [B, S, S, 3] (needed by real/slerp/lerp).
        images: float images in [-1, 1], at least n (real) or 2n (slerp/lerp) of them.
        fix_slerp: the fixed slerp instead of the notebook's (NaN on unnormalised representations).
    Returns:
        float32 [n, repr_dim].
    """
    if method not in METHODS:
        raise ValueError(f"sampling method must be one of {METHODS}, got {method!r}")
    if method == "uniform":
        return rng.uniform((n, repr_dim), -1.0, 1.0)
    if method == "gaussian":
        return rng.normal((n, repr_dim))

    def noisy_repr(x):
        r = encode(x)
        return r + repr_noise * rng.normal(tf.shape(r))

    if method == "real":
        return noisy_repr(images[:n])
    r1, r2 = noisy_repr(images[:n]), noisy_repr(images[n:2 * n])
    t = rng.uniform((n,))
    return slerp(r1, r2, t, fix_slerp) if method == "slerp" else lerp(r1, r2, t)


def generate(nets, r, rng, noise=None, training=False, add_im_noise=True, im_noise=1e-2):
    """G(T(r, n), r) [+ im_noise e], G in eval mode by default (the results cells). r [n, repr_dim]."""
    if noise is None:
        noise = rng.normal((tf.shape(r)[0], nets.T.noise_dim))
    fake = nets.G(nets.T(r, noise), r, training=training)
    if add_im_noise:
        fake = fake + im_noise * rng.normal(tf.shape(fake))
    return fake
