#!/usr/bin/env python
"""Pretrain SimSiam in TensorFlow on the GAN's training images (the notebooks load a published checkpoint).

    python congan/pretrain_simsiam.py --dataset tiny_imagenet --data_dir tiny-imagenet-200 --image_size 64 \
        --run_dir logs/congan/simsiam
    python congan/pretrain_simsiam.py --arch resnet18_cifar --dataset folder --data_dir /tmp/cifar10_jpg \
        --image_size 32 --batch_size 256 --epochs 100 --run_dir logs/congan/simsiam_cifar

Writes ``<run_dir>/simsiam.weights.h5`` (+ ``simsiam.json``) for ``congan/train.py --simsiam_path``; the
same command resumes an interrupted run.
"""

import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import exit_on_usage_error  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    from congan.config import SimSiamConfig, as_json, parse_args, resolve

    cfg, dry_run = parse_args(SimSiamConfig, argv, prog="congan/pretrain_simsiam.py")
    cfg = resolve(cfg)
    if dry_run:
        print(json.dumps(as_json(cfg), indent=2))
        return None
    from common.devices import select_gpus

    select_gpus(cfg.gpu)
    from congan.simsiam import pretrain

    path = pretrain(cfg)
    print(f"SimSiam weights: {path}")
    return path


if __name__ == "__main__":
    main()
