#!/usr/bin/env python
"""Train ConGAN (the notebooks' "Training" sections as one command; every notebook argument is a flag).

    python congan/train.py --framework 2 --preset run1 --data_dir tiny-imagenet-200 \
        --simsiam_path logs/congan/simsiam/simsiam.weights.h5 --run_dir logs/congan/run1
    python congan/train.py --framework 2 --preset run2 ... --run_dir logs/congan/run2
    python congan/train.py --framework 1 --dataset cifar10 --data_dir cifar-10-batches-py --simsiam_path ...

Running the same command again resumes from the newest checkpoint. ``--help`` lists the flags of the
chosen framework (``python congan/train.py --framework 1 --help``); ``--dry_run`` prints the configuration.
"""

import argparse
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import exit_on_usage_error  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    from congan.config import Framework1Config, Framework2Config, as_json, parse_args, resolve

    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--framework", type=int, choices=(1, 2), default=2)
    framework = peek.parse_known_args(argv)[0].framework
    cls = Framework2Config if framework == 2 else Framework1Config
    cfg, dry_run = parse_args(cls, argv, prog="congan/train.py")
    cfg = resolve(cfg, check_paths=not dry_run)  # flag errors exit before TensorFlow starts
    if dry_run:
        print(json.dumps(as_json(cfg), indent=2))
        return None
    from common.devices import select_gpus

    select_gpus(cfg.gpu)
    from congan.trainer import run_framework1, run_framework2

    return (run_framework2 if framework == 2 else run_framework1)(cfg)


if __name__ == "__main__":
    main()
