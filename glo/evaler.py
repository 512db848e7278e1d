#!/usr/bin/env python
"""Evaluate a GLO checkpoint (the original's ``evaler.py``; flags and defaults unchanged, extensions by ``--help``).

    python glo/evaler.py --dataset MNIST --checkpoint train_dir/<run>/model-1001 --prefix mnist --reconstruct --generate
    cd glo && python evaler.py --reconstruct --train_dir ../train_dir/<run>

``--generate`` and ``--interpolate`` write ``generate_<prefix>.png`` / ``interpolate_<prefix>.png`` (2048x2048)
into the working directory; ``--reconstruct`` logs the test loss and appends train/test MSE and MAE to the
run folder's ``metrics.jsonl``.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.devices import select_gpus  # noqa: E402
from common.errors import exit_on_usage_error  # noqa: E402
from glo.config import EvalConfig, config_from_args, evaler_parser  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    cfg = config_from_args(EvalConfig, evaler_parser().parse_args(argv))
    select_gpus(cfg.gpu)
    from glo.evaluate import run

    run(cfg)


if __name__ == "__main__":
    main()
