"""The benchmark plumbing: quick setting, per-measurement peak memory, budgets, default-mode marks, the table.

Nothing here times anything against a threshold; speed is what ``benchmarks/`` measures, not what tests assert.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from benchmarks import harness, run


def test_quick_setting_times_exactly_three_repeats_of_at_most_the_given_calls(monkeypatch):
    monkeypatch.setenv(harness.QUICK_ENV, "1")
    calls = []
    result = harness.time_calls(lambda: calls.append(1), warmup=5, repeats=9, calls_per_repeat=4, sync=lambda _: None)
    assert len(result["steps_per_sec_all"]) == 3
    assert 1 <= result["calls_per_repeat"] <= 4
    # first call + one warm-up call (not five) + the timed ones
    assert len(calls) == 2 + 3 * result["calls_per_repeat"]
    assert result["steps_per_sec"] == sorted(result["steps_per_sec_all"])[1]


def test_full_setting_keeps_the_scripts_counts(monkeypatch):
    monkeypatch.setenv(harness.QUICK_ENV, "0")
    calls = []
    result = harness.time_calls(lambda: calls.append(1), warmup=2, repeats=4, calls_per_repeat=3, sync=lambda _: None)
    assert len(calls) == 1 + 2 + 4 * 3 and len(result["steps_per_sec_all"]) == 4


@pytest.mark.skipif(not harness.reset_peak_rss(), reason="no /proc/self/clear_refs on this system")
def test_peak_memory_is_per_measurement():
    big = np.ones(150 * 2**20 // 8)  # 150 MiB resident
    del big
    first = harness.time_calls(lambda: None, warmup=0, repeats=1, calls_per_repeat=1, sync=lambda _: None)
    assert first["peak_scope"] == "measurement"
    # The 150 MiB freed before the measurement are not in its peak ...
    assert first["peak_rss_mb"] < harness.current_rss_mb() + 100
    # ... and what the step allocates is in its step memory.
    second = harness.time_calls(lambda: np.ones(80 * 2**20 // 8).sum(), warmup=0, repeats=1, calls_per_repeat=1,
                                sync=lambda _: None)
    assert second["step_mem_mb"] >= 60


def test_overrunning_script_keeps_its_records_and_is_named(tmp_path):
    script = tmp_path / "bench_sleepy.py"
    script.write_text(textwrap.dedent("""
        import json, time
        print(json.dumps({"bench": "a", "mode": "tf.function", "steps_per_sec": 2.0}), flush=True)
        time.sleep(60)
    """))
    records, error = run.run_invocation(script, (), timeout=3, quick=True)
    assert [r["bench"] for r in records] == ["a"]
    assert error == "stopped at its 3 s budget"


def test_failing_script_reports_its_last_error_line(tmp_path):
    script = tmp_path / "bench_broken.py"
    script.write_text("import sys\nprint('{\"bench\": \"b\"}')\nsys.exit('bad input: expected X')\n")
    records, error = run.run_invocation(script, (), timeout=30, quick=True)
    assert records == [{"bench": "b"}] and error == "exit 1: bad input: expected X"


def _records():
    return [
        {"bench": "glo_train_step_mnist", "mode": "tf.function", "steps_per_sec": 10.0, "examples_per_sec": 160.0,
         "script": "bench_glo.py"},
        {"bench": "glo_train_step_mnist", "mode": "xla", "steps_per_sec": 5.0, "examples_per_sec": 80.0,
         "script": "bench_glo.py"},
        {"bench": "selfcond_recluster_cifar", "mode": "tf.function", "recluster_s": 3.5, "script": "bench_selfcond.py",
         "kind": "task"},
        {"bench": "input/glo_mnist", "kind": "input", "batch": 16, "examples_per_sec": 400.0,
         "step_bench": "glo_train_step_mnist", "script": "bench_input.py"},
        {"bench": "input/x", "kind": "input", "skipped": "no x.npz (pass --data_dir)", "script": "bench_input.py"},
        {"bench": "congan_f2_train_step_cifar32", "mode": "xla", "error": "out of memory", "script": "bench_congan.py"},
    ]


def test_default_mode_marks_join_and_table():
    records = _records()
    run.annotate(records, {"glo": "tf.function", "congan": "tf.function"})
    run.join_inputs(records)
    assert [r.get("default") for r in records[:2]] == [True, False]
    assert records[2]["kind"] == "task" and "default" not in records[2]
    assert records[3]["step_examples_per_sec"] == 160.0 and records[3]["headroom"] == 2.5
    info = {"date": "2026-01-01", "quick": True, "budget_scale": 1.0, "processor": "Test CPU", "usable_cores": 2,
            "cpu_count": 2, "memory_gib": 8.0, "python": "3.11", "tensorflow": "2.x", "loadavg_start": [9.0, 1, 1],
            "loadavg_end": [0.5, 1, 1], "wall_min": 14.0,
            "failures": {"bench_selfcond.py": "stopped at its 150 s budget"}}
    table = run.markdown(records, info)
    assert "Test CPU, 2 usable CPU cores" in table and "at the start 9.0 / 1 / 1, at the end 0.5 / 1 / 1" in table
    assert "the cores were shared with other jobs" in table  # 9 > 1.5 x 2 cores
    assert "| glo | glo_train_step_mnist | tf.function | yes | " in table
    assert "| glo | glo_train_step_mnist | xla |  | " in table
    assert "skipped: no x.npz (pass --data_dir)" in table and "recluster_s=3.5" in table
    assert "`congan_f2_train_step_cifar32` xla: out of memory" in table
    assert "`bench_selfcond.py`: stopped at its 150 s budget" in table


def test_default_modes_are_read_from_the_trainers():
    modes = run.default_modes()
    assert set(modes) == set(run.DEFAULT_MODE)
    assert set(modes.values()) <= {"tf.function", "xla"}


def test_every_plan_names_an_existing_script_and_the_budgets_fit():
    for name in run.PLANS:
        assert (run.ROOT / "benchmarks" / name).is_file(), name
    assert sum(plan.budget_s for plan in run.PLANS.values()) <= run.TOTAL_BUDGET_S


def test_results_files_are_written(tmp_path):
    info = {"date": "d", "quick": True, "processor": "p", "usable_cores": 1, "cpu_count": 1, "python": "3",
            "default_modes": {"glo": "xla"}}
    run.write_results(tmp_path, _records()[:2], info, {}, began=0.0)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [r["default"] for r in data["records"]] == [False, True]
    assert (tmp_path / "results.md").read_text().startswith("Measured by `make bench`")


def test_invocation_budget_lets_a_slow_first_mode_borrow_but_reserves_time_for_the_rest():
    from benchmarks import run

    assert run.invocation_budget(60, 0, 3) == pytest.approx(40)  # 60 minus half an equal share (10) for each of 2
    assert run.invocation_budget(60, 40, 2) == pytest.approx(5)  # 20 left, 15 reserved for the last one
    assert run.invocation_budget(60, 45, 1) == pytest.approx(15)  # the last gets everything left
    assert run.invocation_budget(60, 10, 2) == pytest.approx(35)  # a fast first mode leaves more to the others


def test_congan_iteration_memory_counts_from_before_the_generator_step():
    from benchmarks.bench_congan import iteration_memory_mb

    # G: 500 MiB before its first call, peak 700; D then peaks at 760 (its own baseline, 650, is what G left).
    g = {"peak_rss_mb": 700.0, "step_mem_mb": 200.0}
    assert iteration_memory_mb(g, {"peak_rss_mb": 760.0, "step_mem_mb": 110.0}) == 260.0
    assert iteration_memory_mb(g, {"peak_rss_mb": 680.0, "step_mem_mb": 30.0}) == 200.0
