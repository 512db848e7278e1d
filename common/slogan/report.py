"""Read a finished (or running) synthetic run folder: ``python -m common.slogan.report logs/synthetic/<run>``.

Prints the last π, the mode nearest to each G(μ_c), the last purity / ARI / NMI and the verdicts of the
long-run acceptance check (spec §10 #28), as JSON.

``--samples N`` also restores the newest checkpoint and measures what the generator produces (inference
mode, as the plots): the share of N mixture samples nearest to each true mode, and for each component c the
share of N samples of N(μ_c, Σ_c) nearest to each mode. G(μ_c) alone can mislead: a component whose samples
stretch across two modes has its centre between them.
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



def mode_shares(points: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """[M] share of ``points`` [N, 2] whose nearest mode (Euclidean) is each of ``modes`` [M, 2]."""
    nearest = np.argmin(np.linalg.norm(points[:, None, :] - modes[None], axis=-1), axis=1)
    return np.bincount(nearest, minlength=len(modes)) / len(points)


def component_owners(shares: np.ndarray, threshold: float = 0.9) -> list[int | None]:
    """For each component (row of ``shares`` [K, M]) the mode holding >= ``threshold`` of its samples, else None."""
    return [int(row.argmax()) if row.max() >= threshold else None for row in shares]


def one_component_per_mode(owners: list[int | None], num_modes: int) -> bool:
    """Figure 1d's criterion: every component owns a mode (see :func:`component_owners`), each mode exactly one."""
    owned = [o for o in owners if o is not None]
    return len(owned) == len(owners) and sorted(owned) == list(range(num_modes))


def generated_check(run_dir: str | Path, samples: int, seed: int = 0) -> dict:
    """Restore the newest checkpoint of ``run_dir`` and measure the generator's modes (see module docstring).

    Returns ``mode_mass`` [8] (mixture samples per true mode; truth 1/16, 3/16 alternating), ``component_modes``
    [K, 8] (per component), ``owner`` (the mode holding >= 90 % of a component's samples, or None) and the
    verdict ``one_component_per_mode`` (every mode owned by exactly one component and no component unowned).
    """
    import tensorflow as tf

    from common.slogan.data import build_synthetic_streams
    from common.slogan.synthetic import SyntheticConfig, SyntheticState

    run_dir = Path(run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    config = SyntheticConfig(**{k: v for k, v in saved.items() if k in SyntheticConfig.__dataclass_fields__})
    prefix = tf.train.latest_checkpoint(str(run_dir))
    if prefix is None:
        raise UsageError(f"{run_dir}: no checkpoint to restore (expected model-<step>.index)")
    train, evaluation = build_synthetic_streams(config.seed)
    state = SyntheticState(config, train, evaluation)
    tf.train.Checkpoint(**state.trackables()).read(prefix).expect_partial()
    modes = train.scaled_means
    draw_seed = tf.constant([seed, 1], tf.int32)
    mixture = state.generator(state.prior.sample(samples, seed=draw_seed), training=False).numpy()
    per_component = np.stack([
        mode_shares(state.generator(state.prior.sample_component(c, samples, seed=draw_seed + c + 1),
                                    training=False).numpy(), modes)
        for c in range(config.num_cluster)
    ])
    owners = component_owners(per_component)
    return {
        "checkpoint": prefix, "samples": samples,
        "mode_mass": mode_shares(mixture, modes).round(4).tolist(),
        "component_modes": per_component.round(3).tolist(),
        "owner": owners,
        "one_component_per_mode": one_component_per_mode(owners, len(modes)),
    }


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m common.slogan.report", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run folder of slogan_synthetic.py, e.g. logs/synthetic/demo")
    parser.add_argument("--samples", type=int, default=0,
                        help="also restore the newest checkpoint and classify this many generated samples per "
                             "component and of the mixture by their nearest true mode (default: 0, off)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not (Path(args.run_dir) / "metrics.jsonl").exists():
        raise UsageError(f"{args.run_dir}: no metrics.jsonl (expected a run folder of slogan_synthetic.py)")
    if args.samples < 0:
        raise UsageError(f"--samples {args.samples}: expected a count >= 0")
    result = final_check(args.run_dir)
    if args.samples:
        result["generated"] = generated_check(args.run_dir, args.samples)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
