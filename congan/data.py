"""Data of the ConGAN ports: local image readers, the shuffled drop-last loader, and the augmentations.

Readers (spec §4; no network; file formats from :mod:`common.data_formats`): the CIFAR-10 "python" pickle
batches, the Tiny ImageNet layout ``train/<wnid>/images/*.JPEG`` and any image folder (``<root>/train/<class>/*``
or ``<root>/<class>/*``, ImageFolder order: classes sorted, files sorted). Labels are dropped. Images are held
in memory as uint8 [N, S, S, 3], resized once to ``image_size`` with PIL bilinear (a no-op at the native 32/64 px; a
non-square image is resized on its shorter side and centre-cropped). Grayscale files become RGB.

Loader: :class:`EpochBatches` gives, for global epoch e, a permutation and per-sample horizontal flips
drawn from ``numpy.random.default_rng((seed, e))``: the DataLoader's shuffle + drop_last +
RandomHorizontalFlip, but reproducible per epoch, so a run resumed in the middle of an epoch sees the
same batches as an uninterrupted one.

Augmentations (in-graph, seeded by a checkpointed ``tf.random.Generator``):
- Framework 2: flip, then x/127.5 - 1 in [-1, 1] (Normalize(0.5, 0.5)).
- Framework 1: resize to 64, flip, ImageNet mean/std.
- SimSiam pretraining: the MoCo-v2 list of the notebook (RandomResizedCrop(scale 0.2-1), ColorJitter
  (0.4, 0.4, 0.4, 0.1) with p 0.8 in a random order per image, RandomGrayscale p 0.2, Gaussian blur
  sigma ~ U(0.1, 2) with p 0.5, flip), ImageNet mean/std.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from common.data_formats import cifar_rows_to_images, decode_image, find_split_dir, list_image_folder, read_cifar_batch
from common.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------


def read_cifar10_train(root: str | Path) -> np.ndarray:
    """The 50,000 CIFAR-10 train images [N, 32, 32, 3] uint8 from ``data_batch_1..5`` (labels dropped)."""
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    paths = [root / f"data_batch_{i}" for i in range(1, 6)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"--data_dir: CIFAR-10 python batches not found ({missing[0]}); expected the extracted "
                         "cifar-10-python.tar.gz (python download.py prepares it)")
    return cifar_rows_to_images(np.concatenate([read_cifar_batch(p)[0] for p in paths]))


def list_image_files(root: str | Path, dataset: str) -> list[str]:
    """Image files in ImageFolder order: ``<root>/train/<class>/**`` (Tiny ImageNet: ``<wnid>/images/*``)
    or ``<root>/<class>/**``."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--data_dir: {root} is not a folder")
    base = find_split_dir(root, "train") or root
    try:
        return list_image_folder(base)[0]
    except (UsageError, OSError) as err:
        raise UsageError(f"--data_dir: no {dataset} images under {base} ({err})") from None


def decode_file(path: str | Path, size: int) -> np.ndarray:
    """One RGB image as uint8 [size, size, 3] (PIL bilinear resize of the shorter side, centre crop)."""
    return decode_image(str(path), "RGB", size, where=str(path))


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 [N, H, W, 3] to [N, size, size, 3] with PIL bilinear (no-op if already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BILINEAR)) for im in images])


def subset_indices(total: int, subset: int) -> np.ndarray:
    """Indices of ``subset`` evenly spaced items out of ``total`` (all of them when subset is 0 or too big)."""
    if not subset or subset >= total:
        return np.arange(total)
    return np.floor(np.arange(subset) * (total / subset)).astype(np.int64)


def load_images(dataset: str, data_dir: str | Path, image_size: int, subset: int = 0, workers: int = 2) -> np.ndarray:
    """The training images of ``dataset`` as uint8 [N, image_size, image_size, 3].

    Args:
        subset: keep only N evenly spaced images (0 keeps all), so that every class of a class-sorted folder
            is represented; for smoke runs.
    """
    if dataset == "cifar10":
        images = read_cifar10_train(data_dir)
        return resize_images(images[subset_indices(len(images), subset)], image_size)
    files = list_image_files(data_dir, dataset)
    files = [files[i] for i in subset_indices(len(files), subset)]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return np.stack(list(pool.map(lambda f: decode_file(f, image_size), files)))


# ---------------------------------------------------------------------------------------------------
# Loader
# ---------------------------------------------------------------------------------------------------


class EpochBatches:
    """Shuffled, drop-last batches with per-sample flips, reproducible per (seed, epoch).

    Args:
        images: uint8 [N, S, S, 3].
        batch_size: B; an epoch has N // B batches.
        seed: run seed.
        flip: apply RandomHorizontalFlip (p 0.5).
    """

    def __init__(self, images: np.ndarray, batch_size: int, seed: int, flip: bool = True):
        if len(images) < batch_size:
            raise UsageError(f"--batch_size: {batch_size} is larger than the dataset ({len(images)} images)")
        self.images, self.batch_size, self.seed, self.flip = images, batch_size, seed, flip
        self.num_batches = len(images) // batch_size
        self._epoch, self._order, self._flips = None, None, None

    def _prepare(self, epoch: int):
        if self._epoch != epoch:
            rng = np.random.default_rng((self.seed, epoch))
            self._order = rng.permutation(len(self.images))
            self._flips = rng.random(len(self.images)) < 0.5 if self.flip else np.zeros(len(self.images), bool)
            self._epoch = epoch

    def batch(self, epoch: int, index: int) -> np.ndarray:
        """Batch ``index`` (0-based) of ``epoch`` as uint8 [B, S, S, 3]."""
        if not 0 <= index < self.num_batches:
            raise IndexError(f"batch {index} outside 0..{self.num_batches - 1}")
        self._prepare(epoch)
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        out = self.images[rows].copy()
        flips = self._flips[rows]
        out[flips] = out[flips, :, ::-1]
        return out

    def fixed_batch(self, count: int, tag: int = 10**6) -> np.ndarray:
        """``count`` images from the first batch of an extra shuffled pass (the progress-grid batch)."""
        return self.batch(tag, 0)[:count] if count <= self.batch_size else self.batch(tag, 0)


# ---------------------------------------------------------------------------------------------------
# In-graph transforms
# ---------------------------------------------------------------------------------------------------


def to_signed(images):
    """uint8 [B, H, W, 3] -> float32 in [-1, 1] (ToTensor + Normalize(0.5, 0.5))."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def imagenet_normalize(images01):
    """[0, 1] images -> (x - mean) / std with ImageNet statistics."""
    return (images01 - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def to_imagenet(images):
    """uint8 -> ImageNet-normalised float32 (Framework 1's ToTensor + Normalize)."""
    return imagenet_normalize(tf.cast(images, tf.float32) / 255.0)


def _grayscale(x):
    gray = tf.reduce_sum(x * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    return tf.broadcast_to(gray, tf.shape(x))


def _bcast(values):
    return tf.reshape(values, (-1, 1, 1, 1))


def random_resized_crop(images, rng, size, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), attempts=10):
    """torchvision RandomResizedCrop per image (first valid of 10 draws, else the whole image); bilinear.

    images: float [B, H, W, C] -> [B, size, size, C].
    """
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    area = float(h * w)
    target = area * rng.uniform((b, attempts), scale[0], scale[1])
    log_r = rng.uniform((b, attempts), math.log(ratio[0]), math.log(ratio[1]))
    aspect = tf.exp(log_r)
    cw = tf.round(tf.sqrt(target * aspect))
    ch = tf.round(tf.sqrt(target / aspect))
    valid = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1)
    any_valid = tf.reduce_any(valid, axis=1)
    pick = lambda t: tf.gather(t, first, batch_dims=1)  # noqa: E731
    cw = tf.where(any_valid, pick(cw), float(w))
    ch = tf.where(any_valid, pick(ch), float(h))
    top = tf.floor(rng.uniform((b,)) * (h - ch + 1))
    left = tf.floor(rng.uniform((b,)) * (w - cw + 1))
    boxes = tf.stack([top / max(h - 1, 1), left / max(w - 1, 1),
                      (top + ch - 1) / max(h - 1, 1), (left + cw - 1) / max(w - 1, 1)], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(b), (size, size))


def color_jitter(x, rng, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1):
    """torchvision ColorJitter with a random order of the four adjustments per image. x in [0, 1]."""
    b = tf.shape(x)[0]
    fb = rng.uniform((b,), 1 - brightness, 1 + brightness)
    fc = rng.uniform((b,), 1 - contrast, 1 + contrast)
    fs = rng.uniform((b,), 1 - saturation, 1 + saturation)
    fh = rng.uniform((b,), -hue, hue)
    order = tf.argsort(rng.uniform((b, 4)), axis=1)

    def adjust(op, img):
        if op == 0:
            out = img * _bcast(fb)
        elif op == 1:
            mean = tf.reduce_mean(_grayscale(img)[..., :1], axis=(1, 2, 3), keepdims=True)
            out = _bcast(fc) * img + (1 - _bcast(fc)) * mean
        elif op == 2:
            out = _bcast(fs) * img + (1 - _bcast(fs)) * _grayscale(img)
        else:
            hsv = tf.image.rgb_to_hsv(tf.clip_by_value(img, 0.0, 1.0))
            h = tf.math.floormod(hsv[..., 0] + tf.reshape(fh, (-1, 1, 1)), 1.0)
            out = tf.image.hsv_to_rgb(tf.stack([h, hsv[..., 1], hsv[..., 2]], axis=-1))
        return tf.clip_by_value(out, 0.0, 1.0)

    for slot in range(4):
        candidates = [adjust(op, x) for op in range(4)]
        which = order[:, slot]
        out = candidates[0]
        for op in range(1, 4):
            out = tf.where(_bcast(tf.equal(which, op)), candidates[op], out)
        x = out
    return x


def gaussian_blur(x, sigma, radius=6):
    """Per-image Gaussian blur with std ``sigma`` [B] (kernel 2*radius+1, symmetric border). x [B,H,W,C]."""
    b, h, w, c = tf.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # [B, K]
    # Fold the batch into channels so one depthwise conv applies a different kernel to every image.
    folded = tf.reshape(tf.transpose(x, (1, 2, 0, 3)), (1, h, w, -1))
    folded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="SYMMETRIC")
    per_channel = tf.reshape(tf.repeat(kernel, c, axis=0), (-1, 2 * radius + 1))  # [B*C, K]
    k_rows = tf.transpose(per_channel)[:, None, :, None]
    k_cols = tf.transpose(per_channel)[None, :, :, None]
    out = tf.nn.depthwise_conv2d(folded, k_rows, [1, 1, 1, 1], "VALID")
    out = tf.nn.depthwise_conv2d(out, k_cols, [1, 1, 1, 1], "VALID")
    return tf.transpose(tf.reshape(out, (h, w, b, c)), (2, 0, 1, 3))


def random_flip(x, rng):
    """Horizontal flip of each image with probability 0.5."""
    flip = rng.uniform((tf.shape(x)[0],)) < 0.5
    return tf.where(_bcast(flip), x[:, :, ::-1, :], x)


def simsiam_augment(images, rng, size):
    """One MoCo-v2 view of a uint8 batch [B, H, W, 3] -> ImageNet-normalised float32 [B, size, size, 3]."""
    x = tf.cast(images, tf.float32) / 255.0
    b = tf.shape(x)[0]
    x = random_resized_crop(x, rng, size)
    x = tf.where(_bcast(rng.uniform((b,)) < 0.8), color_jitter(x, rng), x)
    x = tf.where(_bcast(rng.uniform((b,)) < 0.2), _grayscale(x), x)
    sigma = rng.uniform((b,), 0.1, 2.0)
    x = tf.where(_bcast(rng.uniform((b,)) < 0.5), gaussian_blur(x, sigma), x)
    x = random_flip(x, rng)
    return imagenet_normalize(x)
