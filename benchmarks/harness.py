"""Shared timing helpers for the benchmark scripts (not tests; nothing here asserts a speed).

Every ``benchmarks/bench_*.py`` prints one JSON object per line for each measurement (:func:`emit`), with at
least ``bench`` (what was measured) and ``mode`` (``eager``, ``tf.function`` or ``xla`` for a train step).
Where they apply:

- ``steps_per_sec``: median over the timed repeats, after the first call and the warm-up calls;
- ``examples_per_sec``: the examples one step consumes from its input pipeline times ``steps_per_sec``;
- ``compile_s``: wall seconds of the first call (tracing, plus XLA compilation in ``xla`` mode);
- ``cpu_ms_per_step``: process CPU milliseconds per timed step, all threads together (on a shared machine the
  wall-clock rate depends on the load; this depends on it much less);
- ``peak_rss_mb``: the highest resident memory of the process while this measurement ran. :func:`time_calls`
  resets the kernel's high-water mark when it starts (Linux ``/proc/self/clear_refs``), so an earlier mode timed
  in the same process does not leak its peak into this one; what the process already held (models, data,
  memory an earlier mode kept) is included. ``peak_scope`` says ``measurement`` when the reset worked and
  ``process`` (peak since the process started) when it did not;
- ``step_mem_mb``: ``peak_rss_mb`` minus the resident memory just before the first call: what running the step
  adds (activations, compiled code, optimizer slots created on the first call);
- ``kind``: ``train_step`` (the default for records with ``steps_per_sec``), ``input`` (an input pipeline, see
  ``bench_input.py``) or ``task`` (a one-off job timed in seconds: a metric, a reclustering...).

Quick setting: with the environment variable ``BENCH_QUICK=1`` (``benchmarks/run.py`` sets it unless ``--full``)
:func:`time_calls` uses one warm-up call and exactly 3 timed repeats, each of as many calls as fill about
``QUICK_REPEAT_S`` seconds (at least 1, at most the script's ``calls_per_repeat``), so every script keeps its
own arguments and the median is still over 3 repeats.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable

QUICK_ENV = "BENCH_QUICK"
QUICK_REPEATS = 3
QUICK_REPEAT_S = 1.0


def quick() -> bool:
    """Whether the quick setting is on (``BENCH_QUICK=1``)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def _status_mb(field: str) -> float | None:
    """A ``VmRSS`` / ``VmHWM`` line of ``/proc/self/status`` in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (0 where it cannot be read)."""
    return _status_mb("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB since it started or since :func:`reset_peak_rss`."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> bool:
    """Reset the process's resident-memory high-water mark to its current RSS; False where not supported.

    Linux (4.0+) resets ``VmHWM`` (and ``ru_maxrss``) when ``5`` is written to ``/proc/self/clear_refs``.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


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
        warmup: calls after the first one that are not timed (1 in the quick setting).
        repeats: timed repeats (exactly 3 in the quick setting).
        calls_per_repeat: calls per timed repeat (quick setting: as many as fill ``QUICK_REPEAT_S``, at most this).
        sync: forces the outputs to be computed (e.g. ``lambda out: float(out["loss"])``), so
            asynchronous execution is not mistaken for speed.

    Returns:
        ``{"compile_s", "steps_per_sec", "steps_per_sec_all", "cpu_ms_per_step", "calls_per_repeat",
        "peak_rss_mb", "step_mem_mb", "peak_scope"}`` (see the module docstring).
    """
    sync = sync or _default_sync
    is_quick = quick()
    if is_quick:
        warmup, repeats = min(warmup, 1), QUICK_REPEATS
    rss_before = current_rss_mb()
    scope = "measurement" if reset_peak_rss() else "process"
    start = time.perf_counter()
    sync(call())
    compile_s = time.perf_counter() - start
    last = compile_s
    for _ in range(warmup):
        start = time.perf_counter()
        sync(call())
        last = time.perf_counter() - start
    if is_quick:
        calls_per_repeat = max(1, min(calls_per_repeat, round(QUICK_REPEAT_S / max(last, 1e-6))))
    rates = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        out = None
        for _ in range(calls_per_repeat):
            out = call()
        sync(out)
        rates.append(calls_per_repeat / (time.perf_counter() - start))
    cpu_ms = 1000.0 * (time.process_time() - cpu_start) / (repeats * calls_per_repeat)
    peak = peak_rss_mb()
    return {
        "compile_s": round(compile_s, 3),
        "steps_per_sec": round(statistics.median(rates), 3),
        "steps_per_sec_all": [round(r, 3) for r in rates],
        "cpu_ms_per_step": round(cpu_ms, 2),
        "calls_per_repeat": calls_per_repeat,
        "peak_rss_mb": round(peak, 1),
        "step_mem_mb": round(max(peak - rss_before, 0.0), 1),
        "peak_scope": scope,
    }


def time_once(fn: Callable[[], object]) -> tuple[object, float, float]:
    """Run ``fn`` once; return ``(its value, wall seconds, process CPU seconds)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def _default_sync(out):
    if isinstance(out, dict):
        for value in out.values():
            _default_sync(value)
    elif isinstance(out, (tuple, list)):
        for value in out:
            _default_sync(value)
    elif hasattr(out, "numpy"):
        out.numpy()
    return out


def cpu_model() -> str:
    """The CPU's marketing name (``model name`` of ``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (empty where unknown)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict:
    """Facts about the machine a record was measured on."""
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return {"python": platform.python_version(), "cpu_count": os.cpu_count(), "usable_cores": usable_cores(),
            "machine": platform.machine(), "processor": cpu_model(), "memory_gib": mem_gib,
            "loadavg": load_average()}


def emit(record: dict) -> None:
    """Print one measurement as a JSON line (the protocol ``benchmarks/run.py`` reads)."""
    print(json.dumps(record, sort_keys=False), flush=True)
    sys.stdout.flush()
