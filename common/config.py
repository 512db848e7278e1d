"""Run folders and their ``config.json``: written once, compared on every restart.

A run is resumed by running the same command again. The restart reads the ``config.json`` the first
start wrote and refuses to continue when a setting that shapes the run differs, listing every difference
(flags that only choose devices or logging verbosity are ignored).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from common.errors import UsageError
from common.fileio import atomic_write_json

CONFIG_FILE = "config.json"

# Settings that may change between a run and its resumption without changing its result.
RESUME_SAFE_KEYS = frozenset({"gpu", "devices", "jit_compile", "run_name", "log_dir", "outdir", "verbose"})
# Resume-safe keys that still change which random numbers the rest of the run draws: XLA's random kernels give
# other numbers than TensorFlow's for the same seed, so a resumed run that switches jit_compile continues
# correctly but not as the uninterrupted run would have.
STREAM_CHANGING_KEYS = frozenset({"jit_compile"})


def timestamp_run_name(now: datetime.datetime | None = None) -> str:
    """The originals' run name: local date-time with spaces, ':' and '.' replaced by '_'.

    >>> timestamp_run_name(datetime.datetime(2021, 6, 4, 13, 5, 59, 123456))
    '2021-06-04_13_05_59_123456'
    """
    text = str(now or datetime.datetime.now())
    for char in " :.":
        text = text.replace(char, "_")
    return text


def as_dict(config) -> dict:
    """A plain dict of a dataclass, an ``argparse.Namespace`` or a mapping (JSON-compatible values)."""
    if dataclasses.is_dataclass(config):
        raw = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        raw = dict(vars(config))
    return json.loads(json.dumps(raw, default=str))


def config_differences(saved: Mapping, current: Mapping, ignore: Iterable[str] = RESUME_SAFE_KEYS,
                       added: Mapping | None = None) -> list[str]:
    """Human-readable lines ``key: saved -> current`` for every setting that differs.

    Args:
        added: settings introduced after some run folders were written, with the value that reproduces the
            behaviour from before; a key absent from ``saved`` compares as that value (so an old folder still
            resumes with the new flag at its default, and is refused with the new flag set).
    """
    ignore, added = set(ignore), dict(added or {})
    lines = []
    for key in sorted(set(saved) | set(current)):
        if key in ignore:
            continue
        old, new = saved.get(key, added.get(key, "<absent>")), current.get(key, "<absent>")
        if old != new:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines


def prepare_run_dir(run_dir: str | Path, config, ignore: Iterable[str] = RESUME_SAFE_KEYS,
                    added: Mapping | None = None) -> tuple[Path, bool]:
    """Create ``run_dir`` and its ``config.json``, or check the saved one when resuming.

    ``added``: see :func:`config_differences` (flags newer than the saved ``config.json``).

    Returns:
        ``(run_dir, resuming)``; ``resuming`` is True when the folder already had a ``config.json``.

    Raises:
        UsageError: the saved configuration differs from ``config`` (the message lists the differences);
            nothing in the folder is changed.
    """
    run_dir = Path(run_dir)
    current = as_dict(config)
    saved_path = run_dir / CONFIG_FILE
    if saved_path.exists():
        try:
            saved = json.loads(saved_path.read_text())
        except json.JSONDecodeError as err:
            raise UsageError(f"{saved_path}: not valid JSON ({err}); expected the config of an earlier run") from err
        diffs = config_differences(saved, current, ignore, added)
        if diffs:
            raise UsageError(
                f"{run_dir} holds a run with a different configuration ({'; '.join(diffs)}); "
                "use the same flags to resume, or another run folder"
            )
        for key in sorted(STREAM_CHANGING_KEYS & set(saved) & set(current)):
            if saved[key] != current[key]:
                print(f"note: {key} was {saved[key]!r} when {run_dir} started and is {current[key]!r} now; the run "
                      "resumes, but its random numbers from here on differ from an uninterrupted run's",
                      file=sys.stderr)
        return run_dir, True
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(saved_path, current)
    return run_dir, False
