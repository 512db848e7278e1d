"""ConGAN Framework-2 train-step throughput (one JSON line per configuration and mode).

    python benchmarks/bench_congan.py [--configs tiny,cifar32] [--modes eager,tf.function,xla] [--repeats 3]

Modes: ``eager`` (the step functions run as Python, ``tf.config.run_functions_eagerly``), ``tf.function`` (the
trainer's default graph) and ``xla`` (``--jit_compile``). Measured: the G step and D step of ``congan.framework2``
(lambda_G = lambda_D = 1, so the SimSiam call on fakes and the Q terms are included) on in-memory uint8 batches,
and the notebook iteration rate 1 / (t_G + D_iters t_D) derived from them (one iteration = 1 G step + D_iters D
steps = 1 + 2 D_iters batches); ``cpu_ms_per_step`` is the process CPU time of one such iteration.
Configurations:
- ``tiny``: the spec's test configuration (32 px, B 32, 16 channels, tiny SimSiam with repr_dim 64, D_iters 1);
- ``cifar32``: the CIFAR-10 SN-ResNet of the notebook at 32 px (nf 128, noise/hidden/Q 512, D_iters 5), B 64,
  with the small ``resnet18_cifar`` SimSiam (dim 2048);
- ``tiny_imagenet64``: the README runs' 64-px model with the ResNet-50 SimSiam, B 128 (GPU-sized; slow on CPU).
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
from common.seeding import make_generator, set_seed  # noqa: E402
from congan import framework2  # noqa: E402
from congan.config import Framework2Config, resolve, tiny_framework2  # noqa: E402
from congan.simsiam import SimSiam  # noqa: E402

CONFIGS = {
    "tiny": lambda: tiny_framework2(),
    "cifar32": lambda: Framework2Config(image_size=32, batch_size=64, simsiam_arch="resnet18_cifar",
                                        simsiam_path="random", dataset="folder", seed=0),
    "tiny_imagenet64": lambda: Framework2Config(simsiam_path="random", seed=0),
}


MODES = ("eager", "tf.function", "xla")


def measure(name: str, mode: str, repeats: int) -> dict:
    tf.config.run_functions_eagerly(mode == "eager")
    try:
        return _measure(name, mode, repeats)
    finally:
        tf.config.run_functions_eagerly(False)


def _measure(name: str, mode: str, repeats: int) -> dict:
    cfg = resolve(CONFIGS[name](), check_paths=False)
    cfg = resolve(Framework2Config(**{**cfg.__dict__, "jit_compile": mode == "xla"}), check_paths=False)
    set_seed(0)
    simsiam = SimSiam(cfg.simsiam_arch, cfg.dim, cfg.pred_dim).build_for(cfg.image_size)
    nets = framework2.build_networks(cfg, simsiam.encoder, cfg.dim)
    opts = framework2.make_optimizers(cfg, nets)
    steps = framework2.Steps(nets, opts, cfg, make_generator(0), cfg.dim)
    rng = np.random.default_rng(0)
    shape = (cfg.batch_size, cfg.image_size, cfg.image_size, 3)
    batches = [tf.constant(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(3)]
    one = tf.constant(1.0)
    g_step, d_step = steps.g(1.0, 1.0), steps.d(1.0)
    calls = {"g": lambda: g_step((batches[0],), one, one), "d": lambda: d_step(batches[1], (batches[2],), one)}
    timings = {k: time_calls(f, warmup=1, repeats=repeats, calls_per_repeat=3,
                             sync=lambda out: float(out["loss/G" if "loss/G" in out else "loss/D"]))
               for k, f in calls.items()}
    t_iter = 1.0 / timings["g"]["steps_per_sec"] + cfg.D_iters / timings["d"]["steps_per_sec"]
    return {"bench": f"congan_f2_train_step_{name}", "mode": mode,
            "batch": cfg.batch_size, "image_size": cfg.image_size, "D_iters": cfg.D_iters,
            "simsiam_arch": cfg.simsiam_arch, "repr_dim": cfg.dim,
            "g_steps_per_sec": timings["g"]["steps_per_sec"], "d_steps_per_sec": timings["d"]["steps_per_sec"],
            "steps_per_sec": round(1.0 / t_iter, 4), "iterations_per_sec": round(1.0 / t_iter, 4),
            "examples_per_sec": round((1 + 2 * cfg.D_iters) * cfg.batch_size / t_iter, 1),
            "compile_s": round(timings["g"]["compile_s"] + timings["d"]["compile_s"], 3),
            "cpu_ms_per_step": round(timings["g"]["cpu_ms_per_step"] + cfg.D_iters * timings["d"]["cpu_ms_per_step"],
                                     2),
            "peak_rss_mb": max(t["peak_rss_mb"] for t in timings.values()),
            "step_mem_mb": iteration_memory_mb(timings["g"], timings["d"])}


def iteration_memory_mb(g: dict, d: dict) -> float:
    """Memory one G-then-D iteration needs beyond what the process held before G's first call, in MiB.

    ``g`` and ``d`` are :func:`time_calls` results measured in that order: G's baseline is its peak minus its step
    memory, and the iteration's peak is the larger of the two peaks (D's measurement starts from what G left).
    """
    baseline = g["peak_rss_mb"] - g["step_mem_mb"]
    return round(max(g["peak_rss_mb"], d["peak_rss_mb"]) - baseline, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,cifar32", help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=True,
                        help="--no-xla drops the xla mode")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES):
        parser.error(f"--modes: expected a comma-separated subset of {','.join(MODES)}, got {args.modes!r}")
    if not args.xla:
        modes = [m for m in modes if m != "xla"]
    info = {**machine(), "tensorflow": tf.__version__}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name not in CONFIGS:
            parser.error(f"--configs: unknown {name!r}; expected a subset of {','.join(CONFIGS)}")
        for mode in modes:
            try:
                record = measure(name, mode, args.repeats)
            except (tf.errors.OpError, ValueError) as err:
                record = {"bench": f"congan_f2_train_step_{name}", "mode": mode,
                          "error": str(err).strip().splitlines()[0][:300]}
            emit({**record, "machine": info})


if __name__ == "__main__":
    main()
