"""SLOGAN synthetic: one training iteration (D step + joint G/E/prior step), eager, tf.function and XLA; JSON lines.

    python benchmarks/bench_slogan_synthetic.py [--repeats 5] [--calls 20] [--modes eager tf.function xla]

The measured call is the loop's ``iteration`` of ``common.slogan.synthetic.make_train_steps`` with the
original's defaults (K = 8, d = 64, batch 128, n_critic 1, LP). Also measured: the periodic work of the run
(one ``samples_<n>.png`` figure, one clustering evaluation on 10 000 points), which the loop adds every
``--log_freq`` and every 1 000 iterations. ``projected_100k_min`` adds both at the default cadences.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks.harness import emit, machine, time_calls  # noqa: E402
from common.slogan.data import build_synthetic_streams  # noqa: E402
from common.slogan.scatter import samples_figure  # noqa: E402
from common.slogan.synthetic import SyntheticConfig, SyntheticState, make_train_steps  # noqa: E402
from common.slogan.synthetic_run import PlotSampler, clustering_scores  # noqa: E402


def seconds(call, repeats: int = 3) -> float:
    call()  # compile / warm up
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def measure_periodic(state: SyntheticState, config: SyntheticConfig) -> dict:
    """Seconds of one ``samples_<n>.png`` figure and of one clustering evaluation (10 000 points)."""
    sampler = PlotSampler(state, config)
    real = state.eval_batch()[0].numpy()

    def figure():
        points = sampler()
        samples_figure(real, points["mixture"], points["components"], points["centres"])

    return {"plot_s": round(seconds(figure), 3),
            "clustering_s": round(seconds(lambda: clustering_scores(state, config), 2), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20, help="iterations per timed repeat")
    parser.add_argument("--modes", nargs="+", default=["eager", "tf.function", "xla"],
                        choices=["eager", "tf.function", "xla"])
    args = parser.parse_args()
    train, evaluation = build_synthetic_streams(0)
    periodic = None
    for mode in args.modes:
        config = SyntheticConfig(jit_compile=mode == "xla")
        state = SyntheticState(config, train, evaluation)
        steps = make_train_steps(state, config)
        tf.config.run_functions_eagerly(mode == "eager")
        try:
            result = time_calls(steps.iteration, repeats=args.repeats, calls_per_repeat=args.calls,
                                sync=lambda out: float(out["loss/d"]))
        finally:
            tf.config.run_functions_eagerly(False)
        if periodic is None:
            periodic = measure_periodic(state, config)
        per_iteration = 1.0 / result["steps_per_sec"]
        total = (config.iterations * per_iteration + config.iterations / config.log_freq * periodic["plot_s"]
                 + config.iterations / config.metrics_every * periodic["clustering_s"])
        emit({"bench": "slogan_synthetic_iteration", "mode": mode, "batch": config.batch_size,
              "ms_per_iteration": round(1000 * per_iteration, 2),
              "examples_per_sec": round(result["steps_per_sec"] * config.batch_size, 1), **result, **periodic,
              "projected_100k_min": round(total / 60, 1), "machine": machine()})


if __name__ == "__main__":
    main()
