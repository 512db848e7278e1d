"""Time the metric math at paper scale; prints one JSON line (seconds). Not a test.

    python benchmarks/bench_metrics.py [--n 10000] [--dim 2048] [--scipy]

FID on two [n, dim] float32 activation sets (Inception pool_3 size), per route of
``common.metrics.frechet_distance``; the scipy ``sqrtm`` route is slow at dim 2048 and runs only with
``--scipy``. Also IS on [50000, 1008] logits with 10 splits and KID with 1024-row blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import metrics as M  # noqa: E402


def _timed(fn, out: dict, key: str):
    """Run ``fn``; store its wall seconds under ``key`` and its process CPU seconds under ``key_cpu``.

    On a shared machine the wall time depends on the load; with OPENBLAS_NUM_THREADS=1 the CPU time is
    what the same call takes on one idle core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    out[key] = round(time.perf_counter() - wall, 3)
    out[key.removesuffix("_s") + "_cpu_s"] = round(time.process_time() - cpu, 3)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--scipy", action="store_true", help="also time the scipy sqrtm route")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    # Correlated, ReLU-like activations, like pool_3 features.
    mix = rng.standard_normal((args.dim, args.dim)).astype(np.float32) / np.sqrt(args.dim)
    real = np.maximum(rng.standard_normal((args.n, args.dim)).astype(np.float32) @ mix, 0)
    fake = np.maximum(rng.standard_normal((args.n, args.dim)).astype(np.float32) @ mix + 0.05, 0)

    # The machine may be shared: record its load, and the BLAS thread setting (OpenBLAS threads that
    # compete with other processes can be several times slower than OPENBLAS_NUM_THREADS=1).
    out = {
        "n": args.n,
        "dim": args.dim,
        "cpus": os.cpu_count(),
        "loadavg_1min": round(os.getloadavg()[0], 2),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    stats_r, stats_g = _timed(lambda: (M.activation_statistics(real), M.activation_statistics(fake)), out, "stats_s")
    methods = ["tfgan", "tfgan_svd"] + (["scipy"] if args.scipy else [])
    for method in methods:
        fid = _timed(lambda m=method: M.frechet_distance(*stats_r, *stats_g, method=m), out, f"fid_{method}_s")
        out[f"fid_{method}"] = round(fid, 6)
    _timed(lambda: M.fid_from_activations(real, fake), out, "fid_from_activations_tfgan_s")
    logits = rng.standard_normal((50000, 1008)).astype(np.float32) * 3
    _timed(lambda: M.inception_score(logits, splits=10), out, "is_50000x1008_10splits_s")
    _timed(lambda: M.kid_from_activations(real, fake), out, "kid_s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
