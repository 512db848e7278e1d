"""Iterations per second of the SLOGAN CIFAR-2 train step (one D step + one G/E/prior step) on this machine.

Defaults are the original's sizes: real batch 64, z_gen 128, z_reg 64, latent 128, 128-channel ResNets, ALP.
Each mode runs in its own process (``--mode eager|tf.function|xla``); without ``--mode`` the script runs all
three one after the other and prints one JSON line per mode (protocol of ``benchmarks/harness.py``).

    python benchmarks/bench_slogan_cifar2.py                  # all modes, original sizes
    python benchmarks/bench_slogan_cifar2.py --mode xla --batch_size 16
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = ("eager", "tf.function", "xla")


def measure(mode: str, batch_size: int, channels: int, latent_dim: int, repeats: int) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf

    from benchmarks.harness import time_calls
    from common.seeding import set_seed
    from common.slogan import cifar2_step
    from common.slogan.cifar2_config import Cifar2Config

    cfg = Cifar2Config(batch_size=batch_size, channels=channels, latent_dim=latent_dim, jit_compile=mode == "xla")
    set_seed(0)
    state = cifar2_step.build_state(cfg)
    tf.config.run_functions_eagerly(mode == "eager")
    step = cifar2_step.make_train_step(state, cfg, jit_compile=mode == "xla")
    real = tf.constant(np.random.RandomState(0).uniform(-1, 1, (1, batch_size, 32, 32, 3)).astype(np.float32))
    # No untimed warm-up call: at 8-14 s per step the first call (trace, optimizer slots) warms it up enough.
    timing = time_calls(lambda: step(real), warmup=0, repeats=repeats, calls_per_repeat=1,
                        sync=lambda out: float(out["d_loss"]))
    return {
        "bench": "slogan_cifar2/train_step",
        "mode": mode,
        "batch": batch_size,
        "z_gen": 2 * batch_size,
        "channels": channels,
        "latent_dim": latent_dim,
        "steps_per_sec": timing["steps_per_sec"],
        "examples_per_sec": round(timing["steps_per_sec"] * batch_size, 3),
        "compile_s": timing["compile_s"],
        "cpu_ms_per_step": timing["cpu_ms_per_step"],
        "peak_rss_mb": timing["peak_rss_mb"],
        "step_mem_mb": timing["step_mem_mb"],
        "steps_per_sec_all": timing["steps_per_sec_all"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, help="one mode in this process (default: each in a subprocess)")
    parser.add_argument("--batch_size", type=int, default=64, help="real batch (z_gen is twice as large)")
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--latent_dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations after the first call")
    args = parser.parse_args()
    if args.mode:
        from benchmarks.harness import emit

        emit(measure(args.mode, args.batch_size, args.channels, args.latent_dim, args.repeats))
        return
    for mode in MODES:
        command = [sys.executable, __file__, "--mode", mode, "--batch_size", str(args.batch_size),
                   "--channels", str(args.channels), "--latent_dim", str(args.latent_dim),
                   "--repeats", str(args.repeats)]
        subprocess.run(command, check=False)


if __name__ == "__main__":
    main()
