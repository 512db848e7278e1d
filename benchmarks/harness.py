"""Shared timing helpers for the benchmark scripts (not tests; nothing here asserts a speed).

Every ``benchmarks/bench_*.py`` prints one JSON object per line for each measurement, with at least
``bench`` (what was measured) and ``mode`` (``eager``, ``tf.function`` or ``xla``), and where they apply
``steps_per_sec``, ``examples_per_sec``, ``compile_s`` (first call: tracing + compilation) and
``peak_rss_mb`` (peak resident memory of the process so far). ``benchmarks/run.py`` collects the lines.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(
    call: Callable[[], object],
    *,
    warmup: int = 2,
    repeats: int = 5,
    calls_per_repeat: int = 10,
    sync: Callable[[object], object] | None = None,
) -> dict:
    """Time ``call``: the first call alone (trace/compile), then the median rate over repeats.

    Args:
        call: runs one step and returns its outputs.
        sync: forces the outputs to be computed (e.g. ``lambda out: float(out["loss"])``), so
            asynchronous execution is not mistaken for speed.

    Returns:
        ``{"compile_s", "steps_per_sec", "steps_per_sec_all", "peak_rss_mb"}``.
    """
    sync = sync or _default_sync
    start = time.perf_counter()
    sync(call())
    compile_s = time.perf_counter() - start
    for _ in range(warmup):
        sync(call())
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(calls_per_repeat):
            out = call()
        sync(out)
        rates.append(calls_per_repeat / (time.perf_counter() - start))
    return {
        "compile_s": round(compile_s, 3),
        "steps_per_sec": round(statistics.median(rates), 3),
        "steps_per_sec_all": [round(r, 3) for r in rates],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _default_sync(out):
    if isinstance(out, dict):
        for value in out.values():
            _default_sync(value)
    elif hasattr(out, "numpy"):
        out.numpy()
    return out


def machine() -> dict:
    import os

    return {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine()}


def emit(record: dict) -> None:
    """Print one measurement as a JSON line (the protocol ``benchmarks/run.py`` reads)."""
    print(json.dumps(record, sort_keys=False), flush=True)
    sys.stdout.flush()
