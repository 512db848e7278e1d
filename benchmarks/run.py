"""Run every ``benchmarks/bench_*.py`` and write one table: JSON, Markdown, and the README section.

    python benchmarks/run.py                  # all benchmarks, quick setting, about 15 min on 2 cores
    python benchmarks/run.py slogan glo       # only the scripts whose file name contains a word given
    python benchmarks/run.py --full           # the scripts' own repetition counts (no time budget cut)
    python benchmarks/run.py --no-readme      # leave README.md alone

Each script runs in its own process (some scripts several times, one process per mode: see ``PLANS``), with
``BENCH_QUICK=1`` (unless ``--full``: see ``benchmarks/harness.py``) and a wall-clock budget (its own plus what
earlier scripts left unused); a script that overruns it is stopped and the records it already printed are kept.
The collected records go to
``benchmarks/results.json``; the Markdown tables go to ``benchmarks/results.md`` and replace the part of
``README.md`` between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` (not with script words or
``--no-readme``; scripts that failed or ran out of time are listed under the table).

The ``default`` column marks the mode each trainer uses when run without flags, read from the trainer's own
configuration (every trainer's ``jit_compile`` default), so it follows the code if a default changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import QUICK_ENV, load_average, machine  # noqa: E402

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
STEP_MODES = ("eager", "tf.function", "xla")
TOTAL_BUDGET_S = 14 * 60  # leaves a minute of the 15 for start-up and writing
DEFAULT_BUDGET_S = 60


@dataclasses.dataclass(frozen=True)
class Plan:
    """How ``run.py`` runs one script in the quick setting.

    Attributes:
        trainer: key of ``DEFAULT_MODE`` (None: not a trainer's step).
        invocations: argument lists; each runs as its own process (one per mode where the script allows it,
            so each mode's memory is measured in a fresh process).
        budget_s: wall seconds for all invocations together (quick setting only); each invocation may use what
            the earlier ones left, minus a reserve for the later ones (:func:`invocation_budget`).
    """

    trainer: str | None
    invocations: tuple[tuple[str, ...], ...] = ((),)
    budget_s: float = DEFAULT_BUDGET_S


# Budgets add up to TOTAL_BUDGET_S. Arguments keep the original batch and network sizes; they only choose
# which configurations run (e.g. ConGAN's CIFAR-10 network, not the GPU-sized 64-px one; LatentCLR's direction
# models on the identity generator, whose cost is the direction model, projector, loss and optimizer alone) and
# split the modes over processes: the trainers' default mode first; where XLA compiles for long (ConGAN, selfcond,
# SLOGAN synthetic) it goes last, so the equal-share budget rule hands it what the faster modes left over.
PLANS = {
    "bench_congan.py": Plan("congan", (("--configs", "cifar32", "--modes", "tf.function"),
                                       ("--configs", "cifar32", "--modes", "eager"),
                                       ("--configs", "cifar32", "--modes", "xla")), 180),
    "bench_glo.py": Plan("glo", (("--modes", "tf.function"), ("--modes", "xla"), ("--modes", "eager")), 50),
    "bench_input.py": Plan(None, ((),), 45),
    "bench_latentclr.py": Plan("latentclr", tuple(("--generator", "identity", "--mode", mode)
                                                  for mode in ("xla", "tf.function", "eager")), 65),
    "bench_metrics.py": Plan(None, ((),), 30),
    "bench_selfcond.py": Plan("selfcond", (("--modes", "tf.function", "--skip_recluster"),
                                           ("--modes", "eager", "--skip_recluster"),
                                           ("--modes", "xla", "--skip_recluster"),
                                           ("--modes", "tf.function", "--skip_steps", "--nimgs", "1000")), 150),
    "bench_slogan_cifar2.py": Plan("slogan_cifar2", (("--mode", "tf.function"), ("--mode", "xla"),
                                                     ("--mode", "eager")), 245),
    "bench_slogan_synthetic.py": Plan("slogan_synthetic", (("--modes", "tf.function"), ("--modes", "eager"),
                                                           ("--modes", "xla")), 75),
}


def invocation_budget(budget: float, used: float, left: int) -> float:
    """Seconds the next of ``left`` invocations may use: what is left of ``budget`` after ``used``, minus a reserve
    of half an equal share (budget / 2n) for each invocation after it.

    So a mode that needs more than an equal share (an XLA compile) can borrow from the faster ones, and one that
    hangs still leaves every later mode some time. With n = 3 the first may use 2/3 of the budget.
    """
    share = budget / (2 * max(left, 1))
    return budget - used - share * (left - 1) if left > 1 else budget - used


def _dataclass_default(cls, name: str):
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def _default_slogan_synthetic() -> bool:
    from common.slogan.synthetic import SyntheticConfig

    return _dataclass_default(SyntheticConfig, "jit_compile")


def _default_slogan_cifar2() -> bool:
    from common.slogan.cifar2_config import Cifar2Config

    return _dataclass_default(Cifar2Config, "jit_compile")


def _default_glo() -> bool:
    from glo.config import TrainConfig

    return _dataclass_default(TrainConfig, "jit_compile")


def _default_congan() -> bool:
    from congan.config import Framework2Config

    return _dataclass_default(Framework2Config, "jit_compile")


def _default_selfcond() -> bool:
    from selfcond.train import parse_args

    return parse_args(["config.yaml"]).jit_compile


def _default_latentclr() -> bool:
    import yaml

    value = yaml.safe_load((ROOT / "latentclr" / "conf" / "misc" / "train_misc.yaml").read_text())["jit_compile"]
    if value == "auto":  # XLA on one device (latentclr.trainer.resolve_jit_compile); the benchmarks run on one
        return True
    return bool(value)


# Each trainer's train step is a tf.function; its jit_compile default decides between tf.function and xla.
DEFAULT_MODE: dict[str, Callable[[], bool]] = {
    "slogan_synthetic": _default_slogan_synthetic,
    "slogan_cifar2": _default_slogan_cifar2,
    "glo": _default_glo,
    "congan": _default_congan,
    "selfcond": _default_selfcond,
    "latentclr": _default_latentclr,
}


def default_modes() -> dict[str, str]:
    """Trainer -> the mode its train step runs in by default (``?`` when the default cannot be read)."""
    out = {}
    for trainer, read in DEFAULT_MODE.items():
        try:
            out[trainer] = "xla" if read() else "tf.function"
        except Exception as err:  # a broken trainer import must not stop the table  # noqa: BLE001
            print(f"   default mode of {trainer}: unreadable ({type(err).__name__}: {err})", file=sys.stderr)
            out[trainer] = "?"
    return out


def _parse_records(stdout: str) -> list[dict]:
    records = []
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def run_invocation(path: Path, args: tuple[str, ...], timeout: float | None,
                   quick: bool) -> tuple[list[dict], str | None]:
    """Run one script invocation in a new process group; return its records and an error line if it failed.

    On timeout the whole group (the script and any per-mode children it started) is killed, and the records
    printed before that are kept.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env[QUICK_ENV] = "1" if quick else "0"
    proc = subprocess.Popen([sys.executable, str(path), *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return _parse_records(stdout), f"stopped at its {timeout:.0f} s budget"
    records = _parse_records(stdout)
    if proc.returncode != 0:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return records, f"exit {proc.returncode}: {tail[:200]}"
    if not records:
        tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
        return records, f"no records: {tail[:200]}"
    return records, None


def kind_of(record: dict) -> str:
    """``train_step``, ``input`` or ``task`` (see ``benchmarks/harness.py``)."""
    if record.get("kind"):
        return record["kind"]
    return "train_step" if record.get("mode") in STEP_MODES and "steps_per_sec" in record else "task"


def annotate(records: list[dict], defaults: dict[str, str]) -> None:
    """Add ``kind``, ``trainer`` and ``default`` (this mode is the trainer's default) to every record."""
    for record in records:
        record["kind"] = kind_of(record)
        trainer = record.get("trainer") or PLANS.get(record.get("script", ""), Plan(None)).trainer
        if trainer:
            record["trainer"] = trainer
        if record["kind"] == "train_step" and trainer in defaults:
            record["default"] = record.get("mode") == defaults[trainer]


def join_inputs(records: list[dict]) -> None:
    """Give each input-pipeline record the examples/s its train step consumes (the step's default mode)."""
    steps = {(r.get("bench"), r.get("mode")): r for r in records if r["kind"] == "train_step"}
    defaults = {r.get("bench"): r for r in records if r["kind"] == "train_step" and r.get("default")}
    for record in records:
        if record["kind"] != "input" or not record.get("step_bench"):
            continue
        step = defaults.get(record["step_bench"]) or steps.get((record["step_bench"], "tf.function"))
        if step and step.get("examples_per_sec") and record.get("examples_per_sec"):
            record["step_examples_per_sec"] = step["examples_per_sec"]
            record["step_mode"] = step.get("mode")
            record["headroom"] = round(record["examples_per_sec"] / step["examples_per_sec"], 1)


def _cell(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _task_result(record: dict) -> str:
    skip = {"bench", "mode", "kind", "trainer", "script", "machine", "invocation", "error", "note", "default"}
    parts = [f"{k}={_cell(v)}" for k, v in record.items()
             if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(parts)


def machine_line(info: dict) -> str:
    """The sentence above the tables: setting, date, duration, machine, and its load at the start and the end."""
    start, end = info.get("loadavg_start") or [], info.get("loadavg_end") or []
    setting = "quick setting" if info.get("quick") else "full setting"
    if info.get("budget_scale", 1) != 1:
        setting += f", time budgets ×{info['budget_scale']:g}"
    line = (f"Measured by `make bench` ({setting}) on {info['date']} in {info.get('wall_min', '?')} min: "
            f"{info['processor']}, {info['usable_cores']} usable CPU cores ({info['cpu_count']} online), "
            f"{info.get('memory_gib', '?')} GiB, no GPU; Python {info['python']}, TensorFlow "
            f"{info.get('tensorflow', '?')}. Load average (1 / 5 / 15 min) at the start "
            f"{' / '.join(map(str, start)) or '?'}, at the end {' / '.join(map(str, end)) or '?'}")
    one_minute = [loads[0] for loads in (start, end) if loads]
    if one_minute and max(one_minute) > 1.5 * info["usable_cores"]:
        return line + (" — the cores were shared with other jobs, so wall-clock rates are lower than on an idle "
                       "machine (CPU ms/step is less affected).")
    return line + "."


def markdown(records: list[dict], info: dict) -> str:
    lines = [machine_line(info), ""]
    steps = [r for r in records if r["kind"] == "train_step" and "error" not in r]
    if steps:
        lines += ["**Train steps** (the original batch and network sizes; median over 3 or more timed repeats "
                  "after the first call and a warm-up call; SLOGAN CIFAR-2, at 8-14 s per step, has no warm-up "
                  "call):", ""]
        lines += _table(
            ["trainer", "bench", "mode", "default", "batch", "steps/s", "examples/s", "compile s", "CPU ms/step",
             "peak RSS MiB", "step mem MiB"],
            [[r.get("trainer", ""), r.get("bench"), r.get("mode"), r.get("default", ""), r.get("batch"),
              r.get("steps_per_sec"), r.get("examples_per_sec"), r.get("compile_s"), r.get("cpu_ms_per_step"),
              r.get("peak_rss_mb"), r.get("step_mem_mb")] for r in steps])
        lines.append("")
    inputs = [r for r in records if r["kind"] == "input"]
    if inputs:
        lines += ["**Input pipelines** (disk to batch with the trainer's own data code; `step consumes` is the "
                  "examples/s of the matching train step in its default mode):", ""]
        lines += _table(
            ["pipeline", "source", "batch", "load s", "examples/s", "step consumes /s", "headroom ×", "note"],
            [[r.get("bench"), r.get("source"), r.get("batch"), r.get("load_s"), r.get("examples_per_sec"),
              r.get("step_examples_per_sec"), r.get("headroom"), r.get("skipped") and f"skipped: {r['skipped']}"
              or r.get("note")] for r in inputs])
        lines.append("")
    tasks = [r for r in records if r["kind"] == "task" and "error" not in r]
    if tasks:
        lines += ["**Other work** (seconds of wall time unless named otherwise):", ""]
        lines += _table(["bench", "mode", "result", "note"],
                        [[r.get("bench"), r.get("mode"), _task_result(r), r.get("note")] for r in tasks])
        lines.append("")
    errors = [r for r in records if "error" in r]
    problems = [f"`{r.get('bench')}` {r.get('mode', '')}: {r['error']}" for r in errors]
    problems += [f"`{name}`: {why}" for name, why in info.get("failures", {}).items()]
    if problems:
        lines += ["Stopped by a time budget or failed (what such a process printed before is in the tables): "
                  + "; ".join(problems) + ".", ""]
    return "\n".join(lines)


def write_results(out: Path, records: list[dict], info: dict, failures: dict, began: float) -> str:
    """Write ``results.json`` and ``results.md`` for the records so far; return the Markdown."""
    info.update(failures=failures, loadavg_end=load_average(), wall_min=round((time.perf_counter() - began) / 60, 1))
    annotate(records, info["default_modes"])
    join_inputs(records)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"machine": info, "records": records}, indent=1) + "\n")
    table = markdown(records, info)
    (out / "results.md").write_text(table)
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="run only scripts whose file name contains one of these")
    parser.add_argument("--full", action="store_true", help="the scripts' own repetition counts, no budgets")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    parser.add_argument("--out", default=str(ROOT / "benchmarks"), help="folder of results.json / results.md")
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every time budget (e.g. 3 on a machine shared with other jobs)")
    args = parser.parse_args(argv)

    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    if args.words:
        scripts = [s for s in scripts if any(word in s.name for word in args.words)]
    quick = not args.full
    info = machine()
    info.pop("loadavg", None)
    info.update(date=datetime.date.today().isoformat(), quick=quick, budget_scale=args.budget_scale,
                loadavg_start=load_average())
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    except ImportError:
        pass
    defaults = default_modes()
    info["default_modes"] = defaults
    began = time.perf_counter()
    all_records, failures = [], {}
    planned = 0.0
    for script in scripts:
        plan = PLANS.get(script.name, Plan(None))
        started = time.perf_counter()
        cpu_started = resource.getrusage(resource.RUSAGE_CHILDREN)
        left = TOTAL_BUDGET_S * args.budget_scale - (started - began)
        if quick and left <= 5:
            failures[script.name] = "not run: the total time budget was used up"
            continue
        planned += plan.budget_s * args.budget_scale
        # Its own budget plus what the earlier scripts left unused (a noisy machine makes some slower, some faster).
        budget = min(planned - (started - began), left) if quick else None
        print(f"== {script.name}" + (f" (budget {budget:.0f} s)" if budget else ""), file=sys.stderr, flush=True)
        errors = []
        for k, invocation in enumerate(plan.invocations):
            remaining = None
            if budget is not None:
                remaining = invocation_budget(budget, time.perf_counter() - started, len(plan.invocations) - k)
            if remaining is not None and remaining <= 1:
                errors.append(f"{' '.join(invocation) or 'run'}: not run, budget used up")
                continue
            records, error = run_invocation(script, invocation, remaining, quick)
            for record in records:
                record.setdefault("script", script.name)
                record["invocation"] = list(invocation)
            all_records.extend(records)
            if error:
                errors.append(f"{' '.join(invocation) or 'run'}: {error}")
        cpu_done = resource.getrusage(resource.RUSAGE_CHILDREN)
        cost = {"wall_s": round(time.perf_counter() - started, 1),
                "cpu_s": round(cpu_done.ru_utime + cpu_done.ru_stime - cpu_started.ru_utime - cpu_started.ru_stime, 1)}
        info.setdefault("scripts", {})[script.name] = cost
        note = f"; {'; '.join(errors)}" if errors else ""
        print(f"   done in {cost['wall_s']:.0f} s ({cost['cpu_s']:.0f} CPU s){note}", file=sys.stderr, flush=True)
        if errors:
            failures[script.name] = "; ".join(errors)
        write_results(Path(args.out), all_records, info, failures, began)  # kept if a later script hangs
    table = write_results(Path(args.out), all_records, info, failures, began)
    readme = ROOT / "README.md"
    text = readme.read_text() if readme.exists() else ""
    if START in text and END in text and not args.words and not args.no_readme:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{START}\n{table}{END}{tail}")
    print(table)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
