"""Run every ``benchmarks/bench_*.py`` and write one table: JSON, Markdown, and the README section.

    python benchmarks/run.py                 # all benchmarks
    python benchmarks/run.py slogan glo      # only those whose file name contains a word given

Each script prints JSON lines (see ``benchmarks/harness.py``). The collected records go to
``benchmarks/results.json``; the Markdown table goes to ``benchmarks/results.md`` and replaces the part
of ``README.md`` between ``<!-- bench:start -->`` and ``<!-- bench:end -->``.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import machine  # noqa: E402

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
COLUMNS = ["bench", "mode", "batch", "steps_per_sec", "examples_per_sec", "compile_s", "peak_rss_mb"]
TIMEOUT_S = 300


def run_script(path: Path) -> tuple[list[dict], str | None]:
    """Run one benchmark script; return its records and an error line if it failed."""
    try:
        proc = subprocess.run(
            [sys.executable, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S,
            env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
    except subprocess.TimeoutExpired:
        return [], f"timed out after {TIMEOUT_S} s"
    records = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    error = None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        error = f"exit {proc.returncode}: {tail[:200]}"
    return records, error


def markdown(records: list[dict], info: dict) -> str:
    lines = [
        f"Measured by `make bench` on {info['date']}: {info['cpu_count']} CPU cores ({info['processor']}), "
        f"Python {info['python']}, TensorFlow {info.get('tensorflow', '?')}, no GPU. "
        "Median of several repetitions after warm-up; `compile_s` is the first call (tracing + XLA compilation).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for record in records:
        cells = []
        for key in COLUMNS:
            value = record.get(key, "")
            cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    if info.get("failures"):
        lines += ["", "Failed: " + "; ".join(f"`{k}` ({v})" for k, v in info["failures"].items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(word in s.name for word in argv)]
    info = machine()
    info["date"] = datetime.date.today().isoformat()
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:
        pass
    all_records, failures = [], {}
    for script in scripts:
        started = time.perf_counter()
        print(f"== {script.name}", file=sys.stderr, flush=True)
        records, error = run_script(script)
        print(f"   {len(records)} records in {time.perf_counter() - started:.0f} s" + (f"; {error}" if error else ""),
              file=sys.stderr)
        for record in records:
            record.setdefault("script", script.name)
        all_records.extend(records)
        if error:
            failures[script.name] = error
    info["failures"] = failures
    (ROOT / "benchmarks" / "results.json").write_text(
        json.dumps({"machine": info, "records": all_records}, indent=1) + "\n"
    )
    table = markdown(all_records, info)
    (ROOT / "benchmarks" / "results.md").write_text(table)
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if START in text and END in text and not argv:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{table}{END}{tail}")
    print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
