#!/usr/bin/env python
"""Score a Framework-2 run: the notebook's "GAN Metrics" (10,000 samples from real representations, IS, FID).

    python congan/evaluate.py --run_dir logs/congan/run1 --features inception
    python congan/evaluate.py --run_dir RUN --features classifier --classifier clf_cifar.keras \
        --num_samples 2000 --reference_limit 5000

Writes ``<run_dir>/generated_samples/{idx:04d}.png`` and appends one line to ``<run_dir>/metrics.jsonl``.
Only the torchvision (IS) and pytorch-fid (FID) Inception weights give numbers comparable to the README's
5.86 / 67.74; ``--features inception`` uses the TF-GAN Inception graph, ``classifier`` the project's small
classifier (reported as classifier_fid / classifier_is).
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import UsageError, exit_on_usage_error  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="congan/evaluate.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run_dir", required=True, help="run folder written by congan/train.py --framework 2")
    p.add_argument("--load", default=None, help="score these weight files instead of the newest checkpoint "
                                                "(folder with model/latent_transform/Q .weights.h5, .pth.tar or .npz)")
    p.add_argument("--num_samples", type=int, default=10000, help="NUM_SAMPLES")
    p.add_argument("--n_samples_mode", choices=("original", "exact"), default="original",
                   help="original: ceil((N+1)/B)*B images like the notebook; exact: N")
    p.add_argument("--features", choices=("inception", "inception_ttur", "classifier"), default="inception",
                   help="feature network (see common/evaluate.py)")
    p.add_argument("--classifier", default=None, help="classifier file for --features classifier")
    p.add_argument("--inception_path", default=None, help="local Inception graph archive / .pb")
    p.add_argument("--cache_dir", default=None, help="Inception cache folder")
    p.add_argument("--splits", type=int, default=1, help="IS splits (the notebook: 1, so std 0)")
    p.add_argument("--reference_limit", type=int, default=0, help="FID reference: first N train images (0: all)")
    p.add_argument("--samples_dir", default=None, help="where the PNGs go (default <run_dir>/generated_samples)")
    p.add_argument("--write_pngs", action=argparse.BooleanOptionalAction, default=True, help="write the PNGs")
    p.add_argument("--seed", type=int, default=0, help="seed of the data pass and the noise")
    p.add_argument("--gpu", default="0", help="GPU index or -1")
    return p


@exit_on_usage_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_samples < 1 or args.splits < 1:
        raise UsageError("--num_samples and --splits must be >= 1")
    if not os.path.isdir(args.run_dir):
        raise UsageError(f"--run_dir: {args.run_dir} is not a folder")
    from common.devices import select_gpus

    select_gpus(args.gpu)
    from common.evaluate import make_extractor
    from congan.evaluation import run_evaluation

    extractor = make_extractor(args.features, classifier=args.classifier, inception_path=args.inception_path,
                               cache_dir=args.cache_dir)
    record = run_evaluation(args.run_dir, load=args.load, num_samples=args.num_samples,
                            n_samples_mode=args.n_samples_mode, extractor=extractor, splits=args.splits,
                            reference_limit=args.reference_limit, samples_dir=args.samples_dir,
                            write_pngs=args.write_pngs, seed=args.seed)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
