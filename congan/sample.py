#!/usr/bin/env python
"""Generate from a trained run with each representation sampling method (the notebook's "Training/Results").

    python congan/sample.py --run_dir logs/congan/run1                      # real, slerp, lerp, uniform, gaussian
    python congan/sample.py --run_dir RUN --methods slerp --fix_slerp       # the notebook's slerp gives NaN images

Framework 2 writes ``<run_dir>/results/samples/<method>.png`` (real: [x | G]; slerp/lerp: [x1 | x2 | two
draws]; priors: G only), Framework 1 ``decoded.png``; plus an ``index.html``.
"""

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import UsageError, exit_on_usage_error  # noqa: E402

METHODS = ("real", "slerp", "lerp", "uniform", "gaussian")


def build_parser():
    p = argparse.ArgumentParser(prog="congan/sample.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run_dir", required=True, help="run folder written by congan/train.py")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--num", type=int, default=16, help="samples per grid (the notebook: 16)")
    p.add_argument("--fix_slerp", action=argparse.BooleanOptionalAction, default=None,
                   help="fixed slerp (the notebook's gives NaN on SimSiam representations); default: the run's "
                        "--fix_slerp setting")
    p.add_argument("--load", default=None, help="weights folder instead of the newest checkpoint (Framework 2)")
    p.add_argument("--out_dir", default=None, help="output folder (default <run_dir>/results/samples)")
    p.add_argument("--seed", type=int, default=0, help="seed")
    p.add_argument("--gpu", default="0", help="GPU index or -1")
    return p


@exit_on_usage_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or set(methods) - set(METHODS):
        raise UsageError(f"--methods: expected a comma-separated subset of {','.join(METHODS)}, got {args.methods!r}")
    if args.num < 1:
        raise UsageError("--num: must be >= 1")
    if not os.path.isdir(args.run_dir):
        raise UsageError(f"--run_dir: {args.run_dir} is not a folder")
    from common.devices import select_gpus

    select_gpus(args.gpu)
    from congan.evaluation import run_sampling

    paths = run_sampling(args.run_dir, methods=methods, n=args.num, seed=args.seed, out_dir=args.out_dir,
                         load=args.load, fix_slerp=args.fix_slerp)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths


if __name__ == "__main__":
    main()
