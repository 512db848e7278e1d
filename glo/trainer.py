#!/usr/bin/env python
"""Train GLO (the original's ``trainer.py``; flags and defaults unchanged, extensions listed by ``--help``).

    python glo/trainer.py --dataset MNIST --alpha 5 --dump_result --batch_size 32
    cd glo && python trainer.py --dataset SVHN --alpha 10 --lr_weight_decay

Runs go to ``./train_dir/<prefix>-<dataset>_lr_<lr>-<date-time>``. The latent codes are stored in the dataset
file and persist across runs; ``python glo/cleaner.py --datasets MNIST`` resets them.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.devices import select_gpus  # noqa: E402
from common.errors import exit_on_usage_error  # noqa: E402
from glo.config import TrainConfig, config_from_args, trainer_parser  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    cfg = config_from_args(TrainConfig, trainer_parser().parse_args(argv))
    select_gpus(cfg.gpu)
    from glo.train import run

    run(cfg)


if __name__ == "__main__":
    main()
