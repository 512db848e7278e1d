"""Metrics of trained runs: ``python selfcond/metrics.py CONFIG ... --fid --inception --modes --cluster_metrics``.

The original's flags (spec §2.2). Results go to ``OUT/results/*.json`` keyed by iteration; entries already
there are skipped. Port flags: ``--seed`` (the sample seeds; default unseeded like the original),
``--nsamples`` (default 50000), ``--source`` (dataset file or folder), ``--classifier_dir``,
``--classifier_input`` / ``--classifier_inference_mode`` (the original's classifier quirks are the
defaults, spec §10.1), ``--nmi_average`` (spec §10.3). ``--fsd`` stops with a message: it needs a
segmentation model the port does not ship. ``--device`` is accepted for compatibility; the metrics run on
the first visible device.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser("Computes FID, IS, reverse-KL, # modes and cluster NMI/purity per checkpoint.")
    parser.add_argument("paths", nargs="+", type=str, help="configs (or folders searched for .yaml)")
    parser.add_argument("--it", type=int, default=-1, help="only this iteration")
    parser.add_argument("--every", type=int, default=-1, help="only iterations divisible by this")
    parser.add_argument("--fid", action="store_true", help="compute FID")
    parser.add_argument("--inception", action="store_true", help="compute the Inception Score")
    parser.add_argument("--modes", action="store_true", help="compute # modes and reverse KL")
    parser.add_argument("--fsd", action="store_true", help="compute FSD (needs a segmenter the port does not ship)")
    parser.add_argument("--cluster_metrics", action="store_true", help="compute NMI and purity of the clusters")
    parser.add_argument("--device", type=int, default=None, help="accepted for compatibility (first device used)")
    parser.add_argument("--seed", type=int, default=None, help="port: seed of the sample seeds")
    parser.add_argument("--nsamples", type=int, default=50000, help="port: number of samples (original 50000)")
    parser.add_argument("--source", type=str, default=None, help="port: dataset file or folder")
    parser.add_argument("--classifier_dir", type=str, default=".", help="port: folder of the --modes classifiers")
    parser.add_argument("--classifier_input", choices=["raw_0_255", "normalized"], default="raw_0_255",
                        help="port: raw_0_255 feeds [0, 255] samples as the original (bug); normalized maps to [-1, 1]")
    parser.add_argument("--classifier_inference_mode", action="store_true",
                        help="port: classify in inference mode (the original keeps dropout / batch-stat BN on)")
    parser.add_argument("--nmi_average", choices=["arithmetic", "geometric"], default="arithmetic",
                        help="port: NMI normalisation (sklearn >= 0.22 arithmetic; <= 0.21 geometric)")
    args = parser.parse_args(argv)
    args.random = False
    return args


@exit_on_usage_error
def main(argv=None):
    args = parse_args(argv)
    if args.nsamples < 1:
        from common.errors import UsageError

        raise UsageError(f"--nsamples: expected a positive integer, got {args.nsamples}")
    from selfcond.evaluation import evaluate

    return evaluate(args)


if __name__ == "__main__":
    main()
