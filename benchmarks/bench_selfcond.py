"""Self-Conditioned GAN throughput: CIFAR and Stacked-MNIST train steps, one reclustering (JSON lines).

    python benchmarks/bench_selfcond.py [--repeats 3] [--nimgs 2500] [--modes eager tf.function xla]
                                        [--skip_recluster | --skip_steps]

Train steps: one iteration of ``selfcond.training.make_train_step`` (clusterer labels of the batch, D step,
G step) with the configs' networks at full size and batch 64 (``configs/cifar/selfcondgan.yaml``:
dcgan_deep, 100 labels; ``configs/stacked_mnist/selfcondgan.yaml``: dcgan_shallow, 100 labels), in each
mode: ``eager`` (the step's Python function), ``tf.function`` (the trainer's default) and ``xla``
(``--jit_compile``). Reclustering: ``SelfCondGAN.recluster`` (snapshot copy, D features of the clustering
sample in chunks of 100, warm-started k-means with K = 100, Hungarian matching) on ``--nimgs`` random images
(the configs use 25000; the cost grows about linearly with it): the first clustering (k-means++, 10
restarts; ``first_clustering_s``) once, then one periodic reclustering per mode of the feature pass
(``feature_mode`` of the clusterer; ``features_s`` is a second feature pass alone, the part spent in D).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.harness import emit, load_average, machine, peak_rss_mb, time_calls  # noqa: E402
from selfcond.config import load_config  # noqa: E402
from selfcond.trainer import RunState  # noqa: E402
from selfcond.training import make_train_step  # noqa: E402

CASES = {"cifar": "configs/cifar/selfcondgan.yaml", "stacked_mnist": "configs/stacked_mnist/selfcondgan.yaml"}
BATCH = 64
MODES = ("eager", "tf.function", "xla")


def _state(dataset: str, nimgs: int):
    config = load_config(CASES[dataset])
    x_cluster = np.random.default_rng(0).uniform(-1, 1, (nimgs, 32, 32, 3)).astype(np.float32)
    return config, RunState(config, seed=0, x_cluster=x_cluster), x_cluster


def measure_step(dataset: str, mode: str, repeats: int, nimgs: int) -> dict:
    config, state, x_cluster = _state(dataset, nimgs)
    state.clusterer.recluster(state.discriminator)
    step = make_train_step(state.generator, state.discriminator, state.g_optimizer, state.d_optimizer,
                           global_batch=BATCH, jit_compile=mode == "xla")
    if mode == "eager":
        step = step.python_function
    x = tf.constant(x_cluster[:BATCH])
    z = tf.random.normal([BATCH, int(config["z_dist"]["dim"])])

    def iteration():
        return step(x, state.clusterer.get_labels(x, None), z)

    result = time_calls(iteration, repeats=repeats, calls_per_repeat=5, sync=lambda out: float(out["g_loss"]))
    return {"bench": f"selfcond_train_step_{dataset}", "mode": mode, "batch": BATCH,
            "examples_per_sec": round(result["steps_per_sec"] * BATCH, 1), **result}


def measure_recluster(dataset: str, modes, nimgs: int) -> list[dict]:
    """The first clustering once (k-means++, 10 restarts), then one periodic reclustering per feature mode."""
    _, state, _ = _state(dataset, nimgs)
    clusterer = state.clusterer
    start = time.perf_counter()
    clusterer.recluster(state.discriminator)  # first clustering: k-means++ with 10 restarts
    first = time.perf_counter() - start
    records = []
    for mode in modes:
        clusterer.feature_mode = mode
        wall, cpu = time.perf_counter(), time.process_time()
        clusterer.recluster(state.discriminator)  # the periodic one (as in training, traced/compiled anew)
        seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        start = time.perf_counter()
        clusterer.cluster_features()
        features_s = time.perf_counter() - start
        records.append({"bench": f"selfcond_recluster_{dataset}", "kind": "task", "mode": mode, "batch": nimgs,
                        "steps_per_sec": round(1.0 / seconds, 4), "recluster_s": round(seconds, 2),
                        "cpu_s": round(cpu_s, 2), "features_s": round(features_s, 2),
                        "first_clustering_s": round(first, 2), "k": clusterer.k, "nimgs": nimgs,
                        "peak_rss_mb": round(peak_rss_mb(), 1), "machine_loadavg": load_average()})
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nimgs", type=int, default=2500, help="clustering sample size (configs: 25000)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--datasets", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--skip_recluster", action="store_true")
    parser.add_argument("--skip_steps", action="store_true", help="only the reclustering (benchmarks/run.py "
                        "gives it its own process and budget)")
    args = parser.parse_args()
    info = {**machine(), "tensorflow": tf.__version__}
    for dataset in args.datasets if not args.skip_steps else ():
        for mode in args.modes:
            emit({**measure_step(dataset, mode, args.repeats, 200), "machine": {**info, "loadavg": load_average()}})
    if not args.skip_recluster:
        for record in measure_recluster("cifar", args.modes, args.nimgs):
            loadavg = record.pop("machine_loadavg")
            emit({**record, "machine": {**info, "loadavg": loadavg}})


if __name__ == "__main__":
    main()
