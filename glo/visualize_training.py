#!/usr/bin/env python
"""Make a GIF of the reconstructions dumped during training (the original's ``visualize_training.py``).

    python glo/visualize_training.py --train_dir train_dir/<run> --output_file training_mnist

writes ``training_mnist.gif`` (one frame per ``dump_result_<s>.hdf5``, 5 frames per second) and
``training_mnist.png`` (the last frame).
"""

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import exit_on_usage_error  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_dir", type=str, default=None, help="run folder holding dump_result_*.hdf5")
    parser.add_argument("--output_file", type=str, default=None, help="output name without extension")
    args = parser.parse_args(argv)
    from glo.visualize import build_training_gif

    gif, png, frames = build_training_gif(args.train_dir, args.output_file)
    print(f"{gif} ({frames} frames) and {png} written")


if __name__ == "__main__":
    main()
