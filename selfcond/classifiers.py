"""The mode-counting classifiers of ``--modes`` (spec §7.4), trained by the project itself.

- ``mnist``: the original's MLP on one 32x32 channel, 1024 -> 256 -> ReLU -> Dropout 0.2 -> 256 -> ReLU ->
  Dropout 0.2 -> 10, trained on MNIST in [-1, 1] (Adam 1e-3, batch 100, 10 epochs, cross-entropy), as the
  original trains it when ``mnist_model.pt`` is missing. A Stacked-MNIST image is classified per channel:
  pred(ch0) + 10 pred(ch1) + 100 pred(ch2).
- ``cifar``: the pytorch-playground VGG of the original ([Conv 3x3 128, BN(no affine), ReLU] x 2, pool,
  256 x 2, pool, 512 x 2, pool, Conv 3x3 1024 without padding, BN, ReLU, pool, Linear 1024 -> 10). Its
  published weights cannot be fetched here, so the port trains it (Adam 1e-3, batch 128, random flips,
  ``--epochs``) with ``python selfcond/train_classifier.py --dataset cifar``.

Two quirks of the original pipeline are the defaults (spec §10.1), each with a flag that fixes it:
``input_range="raw_0_255"`` feeds the [0, 255] samples unchanged although the nets were trained on
[-1, 1] (``"normalized"`` maps them to [-1, 1] first), and ``inference_mode=False`` predicts in training
mode (MNIST dropout active, CIFAR BN on batch statistics; ``True`` uses inference mode).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.errors import UsageError
from selfcond.layers import TorchBatchNorm, attach, conv, dense, pad

WEIGHT_FILES = {"mnist": "mnist_model.weights.h5", "cifar": "cifar10_classifier.weights.h5"}
INPUT_RANGES = ("raw_0_255", "normalized")


class MNISTClassifier(keras.Model):
    """The original's Stacked-MNIST digit MLP: [B, 32, 32] (or [B, 1024]) -> logits [B, 10]."""

    def __init__(self, input_dims: int = 1024, hidden=(256, 256), n_class: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.input_dims = input_dims
        fan_ins = [input_dims, *hidden[:-1]]
        names = [f"fc{i + 1}" for i in range(len(hidden))]
        self._hidden = attach(self, names, (dense(h, f, name=n) for n, h, f in zip(names, hidden, fan_ins)))
        self._drops = attach(self, [f"drop{i + 1}" for i in range(len(hidden))],
                             (keras.layers.Dropout(0.2, name=f"drop{i + 1}") for i in range(len(hidden))))
        self.out = dense(n_class, hidden[-1], name="out")

    def call(self, x, training=False):
        x = tf.reshape(x, [tf.shape(x)[0], self.input_dims])
        for layer, drop in zip(self._hidden, self._drops):
            x = drop(tf.nn.relu(layer(x)), training=training)
        return self.out(x)


class CIFARClassifier(keras.Model):
    """pytorch-playground's ``cifar10(n_channel=128)``: [B, 32, 32, 3] -> logits [B, 10]."""

    def __init__(self, n_channel: int = 128, **kwargs):
        super().__init__(**kwargs)
        plan = [n_channel, n_channel, "M", 2 * n_channel, 2 * n_channel, "M", 4 * n_channel, 4 * n_channel, "M",
                (8 * n_channel, 0), "M"]
        blocks, c_in = [], 3
        for i, item in enumerate(plan):
            if item == "M":
                blocks.append(keras.layers.MaxPooling2D(2, 2, name=f"pool{i}"))
                continue
            filters, padding = item if isinstance(item, tuple) else (item, 1)
            blocks.append(pad(padding, name=f"pad{i}") if padding else None)
            blocks.append(conv(filters, 3, c_in, name=f"conv{i}"))
            blocks.append(TorchBatchNorm(affine=False, name=f"bn{i}"))
            c_in = filters
        blocks = [b for b in blocks if b is not None]
        self._blocks = attach(self, [b.name for b in blocks], blocks)
        self.classifier = dense(10, 8 * n_channel, name="classifier")

    def call(self, x, training=False):
        for block in self._blocks:
            if isinstance(block, TorchBatchNorm):
                x = tf.nn.relu(block(x, training=training))
            else:
                x = block(x)
        return self.classifier(tf.reshape(x, [tf.shape(x)[0], -1]))


def build(dataset: str) -> keras.Model:
    """A built (variables created) classifier for ``mnist`` or ``cifar``."""
    if dataset == "mnist":
        model = MNISTClassifier(name="mnist_classifier")
        model(tf.zeros([1, 32, 32]))
    elif dataset == "cifar":
        model = CIFARClassifier(name="cifar_classifier")
        model(tf.zeros([1, 32, 32, 3]))
    else:
        raise UsageError(f"--dataset: expected mnist or cifar, got {dataset!r}")
    return model


def weights_path(dataset: str, directory: str | Path = ".") -> Path:
    return Path(directory) / WEIGHT_FILES[dataset]


def train(model: keras.Model, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
          lr: float = 1e-3, flip: bool = False, seed: int = 0, log_every: int = 100) -> float:
    """Cross-entropy training with Adam (eps 1e-8), shuffled each epoch, drop_last; returns the last accuracy.

    Args:
        images: float32 in [-1, 1] ([N, 32, 32] digits or [N, 32, 32, 3] CIFAR images); labels: [N] ints.
        flip: random horizontal flips (CIFAR).
    """
    optimizer = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy

    rng = np.random.default_rng(seed)
    accuracy = 0.0
    batches = len(images) // batch_size
    for epoch in range(epochs):
        order = rng.permutation(len(images))
        for b in range(batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            x = images[idx]
            if flip:
                mirror = rng.random(len(x)) < 0.5
                x = x.copy()
                x[mirror] = x[mirror, :, ::-1]
            loss, acc = step(tf.constant(x), tf.constant(labels[idx].astype(np.int32)))
            accuracy = float(acc)
            if b % log_every == 0:
                print(f"[{epoch}, {b}], closs={float(loss):.4f}, acc={accuracy:.3f}")
    return accuracy


class ModeClassifier:
    """Class predictions of evaluation samples for ``--modes`` (spec §7.4).

    Args:
        dataset: ``stacked_mnist`` (per-channel digits, 1000 classes) or ``cifar`` (10 classes).
        model: the trained Keras classifier (``mnist`` MLP or ``cifar`` VGG).
        input_range: ``raw_0_255`` (original: samples in [0, 255] are fed unchanged) or ``normalized``.
        inference_mode: False (original: dropout / batch-statistics BN active at prediction) or True.
    """

    def __init__(self, dataset: str, model: keras.Model, input_range: str = "raw_0_255",
                 inference_mode: bool = False):
        if input_range not in INPUT_RANGES:
            raise UsageError(f"--classifier_input: expected one of {INPUT_RANGES}, got {input_range!r}")
        self.dataset, self.model, self.input_range = dataset, model, input_range
        self.training = not inference_mode
        self._predict = tf.function(lambda x: tf.argmax(self.model(x, training=self.training), axis=1))

    @property
    def num_classes(self) -> int:
        return 1000 if self.dataset == "stacked_mnist" else 10

    def predict(self, samples: np.ndarray) -> np.ndarray:
        """[B, 32, 32, 3] samples in [0, 255] -> int64 [B] classes."""
        x = np.asarray(samples, np.float32)
        if self.input_range == "normalized":
            x = x / 127.5 - 1.0
        if self.dataset == "stacked_mnist":
            # The original sums pred(ch c) * 10^c: channel 0 is the units digit (the reverse of the dataset
            # label's order), which changes neither the mode count nor the KL.
            return sum(self._predict(tf.constant(x[..., c])).numpy() * 10**c for c in range(3))
        return self._predict(tf.constant(x)).numpy()

    def classify(self, samples: np.ndarray, batch_size: int = 100) -> np.ndarray:
        """Predictions of every full batch of ``batch_size`` (the remainder is dropped, as in the original)."""
        n = (len(samples) // batch_size) * batch_size
        return np.concatenate([self.predict(samples[i:i + batch_size]) for i in range(0, n, batch_size)])
