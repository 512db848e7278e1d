"""DiffAugment (translation, color, cutout) for SLOGAN's SimCLR branch on generated CIFAR images (spec §3.4).

The policy ``translation,color,cutout`` is applied in that order, every random quantity drawn per image:

1. translation: integer shifts t_h, t_w ~ U{-4..4}; out[i, j] = x[i + t_h, j + t_w], zero outside the image.
2. color: brightness x + (u - 0.5); saturation (x - mean_c x)·2u + mean_c x; contrast (x - mean_hwc x)·(u + 0.5)
   + mean_hwc x, each with its own u ~ U[0, 1).
3. cutout: centre o_h, o_w ~ U{0..32}; rows [o_h - 8, o_h + 8) and columns [o_w - 8, o_w + 8), clipped to the
   image, are zeroed.

There is no clipping afterwards. The random draws are a :class:`AugmentDraws` so that tests can fix them; in a
run they come from :func:`draw`, fed by the run's checkpointed ``tf.random.Generator``.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


class AugmentDraws(NamedTuple):
    """Per-image random draws of one DiffAugment call (B = batch size).

    Attributes:
        shift: [B, 2] int32, (t_h, t_w) in [-shift_max, shift_max].
        brightness: [B] float32 in [0, 1).
        saturation: [B] float32 in [0, 1).
        contrast: [B] float32 in [0, 1).
        cutout_centre: [B, 2] int32, (o_h, o_w) in [0, size].
    """

    shift: tf.Tensor
    brightness: tf.Tensor
    saturation: tf.Tensor
    contrast: tf.Tensor
    cutout_centre: tf.Tensor


def max_shift(size: int, ratio: float = TRANSLATION_RATIO) -> int:
    """int(size·ratio + 0.5): 4 for 32-pixel images."""
    return int(size * ratio + 0.5)


def cutout_size(size: int, ratio: float = CUTOUT_RATIO) -> int:
    """int(size·ratio + 0.5): 16 for 32-pixel images."""
    return int(size * ratio + 0.5)


def draw(rng: tf.random.Generator, batch: int, height: int = 32, width: int = 32) -> AugmentDraws:
    """Draw the random quantities of one DiffAugment call from ``rng`` (in the original's order)."""
    s_h, s_w = max_shift(height), max_shift(width)
    t_h = rng.uniform([batch], -s_h, s_h + 1, dtype=tf.int32)
    t_w = rng.uniform([batch], -s_w, s_w + 1, dtype=tf.int32)
    brightness = rng.uniform([batch])
    saturation = rng.uniform([batch])
    contrast = rng.uniform([batch])
    # The original's upper bound is size + (1 - cut % 2): size + 1 for an even cutout, so centres 0..size.
    c_h, c_w = cutout_size(height), cutout_size(width)
    o_h = rng.uniform([batch], 0, height + (1 - c_h % 2), dtype=tf.int32)
    o_w = rng.uniform([batch], 0, width + (1 - c_w % 2), dtype=tf.int32)
    return AugmentDraws(tf.stack([t_h, t_w], 1), brightness, saturation, contrast, tf.stack([o_h, o_w], 1))


def translate(x: tf.Tensor, shift: tf.Tensor) -> tf.Tensor:
    """Zero-filled integer shift: out[b, i, j] = x[b, i + t_h[b], j + t_w[b]] where inside, else 0.

    Args:
        x: [B, H, W, C].
        shift: [B, 2] int32 (t_h, t_w).
    """
    height, width = x.shape[1], x.shape[2]
    rows = tf.range(height)[None, :] + shift[:, :1]  # [B, H]
    cols = tf.range(width)[None, :] + shift[:, 1:]  # [B, W]
    inside_rows = tf.cast((rows >= 0) & (rows < height), x.dtype)
    inside_cols = tf.cast((cols >= 0) & (cols < width), x.dtype)
    x = tf.gather(x, tf.clip_by_value(rows, 0, height - 1), axis=1, batch_dims=1)
    x = tf.gather(x, tf.clip_by_value(cols, 0, width - 1), axis=2, batch_dims=1)
    return x * inside_rows[:, :, None, None] * inside_cols[:, None, :, None]


def adjust_brightness(x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """x + (u - 0.5) per image; u: [B]."""
    return x + (u[:, None, None, None] - 0.5)


def adjust_saturation(x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """(x - m)·2u + m with m the per-pixel mean over channels; u: [B]."""
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    return (x - mean) * (2.0 * u[:, None, None, None]) + mean


def adjust_contrast(x: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """(x - m)·(u + 0.5) + m with m the per-image mean over H, W, C; u: [B]."""
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (u[:, None, None, None] + 0.5) + mean


def cut_out(x: tf.Tensor, centre: tf.Tensor, size: int | None = None) -> tf.Tensor:
    """Zero the size×size window [o - size//2, o + size - size//2) (clipped) around each image's centre.

    The original scatters ones at border-clamped window indices; the clamped indices fall inside the window
    anyway, so this slice mask is the same (spec §9, item 17).

    Args:
        x: [B, H, W, C].
        centre: [B, 2] int32 (o_h, o_w).
        size: window side; ``cutout_size(H)`` by default (16 for 32-pixel images).
    """
    height, width = x.shape[1], x.shape[2]
    size = cutout_size(height) if size is None else size
    start = centre - size // 2  # [B, 2]
    rows = tf.range(height)[None, :]
    cols = tf.range(width)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + size)  # [B, H]
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + size)  # [B, W]
    window = in_rows[:, :, None] & in_cols[:, None, :]
    return x * tf.cast(~window, x.dtype)[..., None]


def diff_augment(x: tf.Tensor, draws: AugmentDraws) -> tf.Tensor:
    """The ``translation,color,cutout`` policy with the given draws.

    Args:
        x: [B, H, W, C] generated images, nominally in [-1, 1].
        draws: per-image random values (:func:`draw`).
    Returns:
        [B, H, W, C] augmented images (not clipped).
    """
    x = translate(x, draws.shift)
    x = adjust_brightness(x, draws.brightness)
    x = adjust_saturation(x, draws.saturation)
    x = adjust_contrast(x, draws.contrast)
    return cut_out(x, draws.cutout_centre)
