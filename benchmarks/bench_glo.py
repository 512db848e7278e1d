"""GLO train-step throughput: MNIST- and CIFAR-sized inputs, eager, tf.function and XLA (one JSON line each).

    python benchmarks/bench_glo.py [--batch_size 16] [--repeats 5] [--modes eager tf.function xla]

The measured call is the compiled iteration of ``glo.train.make_train_step`` (generator Adam step, code
gradient with the updated generator, code step and projection, diagnostic forward, code-table write) on
in-memory batches, with the original's default shapes: MNIST 28x28x1 with PCA codes of d = 10 (the README's
MNIST setting), CIFAR-10 32x32x3 with d = 35 (the README's CIFAR-10 setting).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.harness import emit, machine, time_calls  # noqa: E402
from glo.codes import CodeTable  # noqa: E402
from glo.config import TrainConfig  # noqa: E402
from glo.losses import moment_loss  # noqa: E402
from glo.models import build_generator  # noqa: E402
from glo.train import TrainState, make_optimizer, make_train_step  # noqa: E402

CASES = {"MNIST": ((28, 28, 1), 10), "CIFAR10": ((32, 32, 3), 35)}
NUM_CODES = 4096


MODES = ("eager", "tf.function", "xla")


def measure(dataset: str, batch_size: int, mode: str, repeats: int) -> dict:
    jit_compile = mode == "xla"
    shape, dim = CASES[dataset]
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((NUM_CODES, dim)).astype(np.float32)
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    generator = build_generator(dim, shape, dataset, xla_safe=jit_compile)
    optimizer = make_optimizer(TrainConfig())
    optimizer.build(generator.trainable_variables)
    state = TrainState(generator, optimizer, CodeTable(codes, np.zeros(NUM_CODES, np.int32)),
                       tf.Variable(0, tf.int64), tf.Variable(0, tf.int64))
    step = make_train_step(state, alpha=5.0, loss_fn=moment_loss, update_mode="every_step", jit_compile=jit_compile)
    images = tf.constant(rng.uniform(-1, 1, (batch_size, *shape)).astype(np.float32))
    batches = [tf.constant(rng.permutation(NUM_CODES)[:batch_size].astype(np.int32)) for _ in range(8)]
    counter = iter(range(10**9))
    tf.config.run_functions_eagerly(mode == "eager")
    try:
        result = time_calls(lambda: step(images, batches[next(counter) % len(batches)]), repeats=repeats,
                            sync=lambda out: float(out["loss"]))
    finally:
        tf.config.run_functions_eagerly(False)
    return {"bench": f"glo_train_step_{dataset.lower()}", "mode": mode,
            "batch": batch_size, "image_shape": list(shape), "latent_dim": dim,
            "examples_per_sec": round(result["steps_per_sec"] * batch_size, 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", type=int, default=16, help="the trainer's default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args()
    info = {**machine(), "tensorflow": tf.__version__}
    for dataset in CASES:
        for mode in args.modes:
            emit({**measure(dataset, args.batch_size, mode, args.repeats), "machine": info})


if __name__ == "__main__":
    main()
