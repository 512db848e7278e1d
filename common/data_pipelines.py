"""tf.data image pipelines shared by the papers: seeded shuffles, parallel decode and augmentation, prefetch.

:func:`image_dataset` is the torchvision-style pipeline of the Self-Conditioned GAN and ConGAN (selfcond.md
§4.1, congan.md §4): optional resize of the shorter side + centre crop, random horizontal flip, map to
[−1, 1] as ``x/127.5 − 1``, optional uniform dequantisation noise. It reads a uint8 array (CIFAR-10 from the
cache, Stacked MNIST) or an image folder ``<root>/<class>/**`` (ImageNet, Places, Tiny ImageNet, the JPEG
CIFAR-10), decoding files in parallel.

:func:`repeat_shuffle_batch` is SLOGAN's stream (slogan.md §3.1-3.2): repeat forever, prefetch, shuffle with a
100 000-element buffer, batch.

All randomness is seeded: the shuffle by ``seed``, the per-image flips and noise by a ``Dataset.random``
stream of the same seed that draws new values every epoch.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from common import data_formats as formats
from common.errors import UsageError

AUTOTUNE = tf.data.AUTOTUNE


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
    """torchvision ``Resize(size)`` on a uint8 [h, w, c] image: the shorter side becomes ``size``, the other
    ``int(size·long/short)``; bilinear with antialiasing, rounded back to the uint8 grid (PIL returns uint8).
    A no-op when the shorter side is already ``size``. Returns float32 [h', w', c] holding integers 0..255."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    short = tf.minimum(h, w)

    def resize():
        new_h = tf.where(h <= w, size, tf.cast(size * h // w, tf.int32))
        new_w = tf.where(h <= w, tf.cast(size * w // h, tf.int32), size)
        out = tf.image.resize(tf.cast(image, tf.float32), tf.stack([new_h, new_w]), method="bilinear", antialias=True)
        return tf.clip_by_value(tf.round(out), 0.0, 255.0)

    return tf.cond(tf.equal(short, size), lambda: tf.cast(image, tf.float32), resize)


def center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The centre ``size``×``size`` window of [h, w, c] (torchvision ``CenterCrop`` rounding)."""
    shape = tf.shape(image)
    top = tf.cast(tf.round(tf.cast(shape[0] - size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(shape[1] - size, tf.float32) / 2.0), tf.int32)
    return image[top:top + size, left:left + size, :]


def _read_file(path: tf.Tensor, channels: int) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    return tf.ensure_shape(image, [None, None, channels])


def image_dataset(
    source,
    labels: np.ndarray | None = None,
    *,
    batch_size: int,
    image_size: int | None = None,
    crop: bool = True,
    flip: bool = False,
    noise: float = 0.0,
    seed: int = 0,
    shuffle: bool = True,
    repeat: bool = False,
    drop_remainder: bool = True,
    channels: int = 3,
    with_labels: bool = True,
) -> tf.data.Dataset:
    """Batches of images in [−1, 1] (+ noise) with their integer labels.

    Args:
        source: uint8 array [N, H, W, C], or a folder ``<root>/<class>/**/<image>`` (labels = sorted class index).
        labels: [N] integer labels of an array source (default zeros).
        batch_size: B.
        image_size: resize the shorter side to this (see :func:`resize_shorter_side`) and, with ``crop``, take
            the centre square. None keeps the stored size (arrays and same-size folders only).
        flip: random left-right flip with probability 0.5 per image.
        noise: add ``noise · U[0, 1)`` per value after the map to [−1, 1] (selfcond: 1/128).
        seed: seeds the per-epoch shuffle and the flip/noise draws.
        shuffle, repeat, drop_remainder: as in tf.data (``drop_last`` in PyTorch).
        channels: 3 (RGB) or 1 (greyscale) when decoding files.
        with_labels: False yields images only.

    Returns:
        A ``tf.data.Dataset`` of ``(images float32 [B, S, S, C], labels int32 [B])`` (or images only).
    """
    if isinstance(source, (str, os.PathLike)):
        paths, folder_labels, _ = formats.list_image_folder(source)
        elements = tf.data.Dataset.from_tensor_slices((paths, folder_labels.astype(np.int32)))

        def load(path, label):
            return _read_file(path, channels), label
    else:
        images = np.asarray(source)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise UsageError(f"image_dataset: expected uint8 [N, H, W, C] images, got {images.dtype} {images.shape}")
        labels = np.zeros(len(images), np.int32) if labels is None else np.asarray(labels).reshape(-1).astype(np.int32)
        table = tf.constant(images)
        elements = tf.data.Dataset.from_tensor_slices((np.arange(len(images)), labels))

        def load(index, label):
            return tf.gather(table, index), label

    count = int(elements.cardinality())
    if shuffle:
        elements = elements.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        elements = elements.repeat()
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    elements = tf.data.Dataset.zip((elements, draws))

    def transform(element, draw):
        image, label = load(*element)
        image = tf.cast(image, tf.float32)
        if image_size is not None:
            image = resize_shorter_side(image, image_size)
            if crop:
                image = center_crop(image, image_size)
        keys = tf.random.experimental.stateless_split(tf.cast(draw, tf.int64), 2)
        if flip:
            coin = tf.random.stateless_uniform([], keys[0])
            image = tf.cond(coin < 0.5, lambda: tf.reverse(image, axis=[1]), lambda: image)
        image = image / 127.5 - 1.0
        if noise:
            image = image + noise * tf.random.stateless_uniform(tf.shape(image), keys[1])
        return (image, label) if with_labels else image

    return elements.map(transform, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=drop_remainder) \
        .prefetch(AUTOTUNE)


def repeat_shuffle_batch(arrays, batch_size: int, *, seed: int | None = None,
                         buffer_size: int = 100_000) -> tf.data.Dataset:
    """SLOGAN's stream: ``from_tensor_slices → repeat() → prefetch → shuffle(buffer_size, seed) → batch``.

    Args:
        arrays: an array or a tuple of arrays with the same first dimension.
        seed: op-level shuffle seed (the original relied on the graph seed).

    Returns:
        An endless ``tf.data.Dataset`` of batches of exactly ``batch_size``.
    """
    return (tf.data.Dataset.from_tensor_slices(arrays).repeat().prefetch(AUTOTUNE)
            .shuffle(buffer_size, seed=seed).batch(batch_size))
