"""Read a finished (or running) synthetic run folder: ``python -m common.slogan.report logs/synthetic/<run>``.

Prints the last π, the mode nearest to each G(μ_c), the last purity / ARI / NMI and the verdicts of the
long-run acceptance check (spec §10 #28), as JSON.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

from common.errors import UsageError, exit_on_usage_error


def final_check(run_dir: str | Path) -> dict:
    """Spec §10 #28 on a finished run folder, from ``metrics.jsonl``.

    Returns a dict with the last π, G(μ_c)'s nearest modes, the last NMI and the verdicts:
    ``distinct_modes`` (each mode matched by exactly one component), ``pi_close`` (sorted π within
    ±0.03 of [1/16 x4, 3/16 x4]), ``majority_above_minority`` and ``nmi_ok`` (>= 0.9).
    """
    records = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line torn by a kill
            continue
    plots = [r for r in records if "nearest_mode" in r]
    scores = [r for r in records if "nmi" in r]
    if not plots or not scores:
        return {"error": f"{run_dir}: no metrics recorded yet"}
    last_plot, last_scores = plots[-1], scores[-1]
    pi = np.asarray(last_plot["pi"])
    modes = last_plot["nearest_mode"]
    target = np.array([1 / 16] * 4 + [3 / 16] * 4)
    result = {
        "plot_step": last_plot["step"], "score_step": last_scores["step"], "pi": pi.round(4).tolist(),
        "nearest_mode": modes, "nmi": last_scores["nmi"], "ari": last_scores["ari"],
        "purity": last_scores["purity"],
    }
    if len(pi) == len(target):
        majority = [c for c, m in enumerate(modes) if m % 2 == 1]  # modes 1, 3, 5, 7 carry 3/16
        minority = [c for c, m in enumerate(modes) if m % 2 == 0]
        result["distinct_modes"] = sorted(modes) == list(range(8))
        result["pi_close"] = bool(np.all(np.abs(np.sort(pi) - target) <= 0.03))
        result["majority_above_minority"] = bool(
            majority and minority and min(pi[majority]) > max(pi[minority])
        )
    result["nmi_ok"] = bool(last_scores["nmi"] >= 0.9 and math.isfinite(last_scores["nmi"]))
    return result



@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise UsageError("usage: python -m common.slogan.report <run folder, e.g. logs/synthetic/demo>")
    if not (Path(argv[0]) / "metrics.jsonl").exists():
        raise UsageError(f"{argv[0]}: no metrics.jsonl (expected a run folder of slogan_synthetic.py)")
    print(json.dumps(final_check(argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
