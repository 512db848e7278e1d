"""Train a ``--modes`` classifier: ``python selfcond/train_classifier.py --dataset mnist|cifar [--source PATH]``.

``mnist``: the original's MLP and recipe (10 epochs; ``metrics.py --modes`` also trains it when missing);
``cifar``: the pytorch-playground VGG, whose published weights are not reachable here (port recipe: Adam
1e-3, batch 128, random flips). Weights go to ``--out`` (default ``./mnist_model.weights.h5`` or
``./cifar10_classifier.weights.h5``, where ``metrics.py --classifier_dir .`` looks).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import exit_on_usage_error  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Train the mode-counting classifier of metrics.py --modes")
    parser.add_argument("--dataset", choices=["mnist", "cifar"], required=True)
    parser.add_argument("--source", type=str, default=None, help="dataset file or folder (default: download cache)")
    parser.add_argument("--epochs", type=int, default=None, help="default: 10 (mnist) or 30 (cifar)")
    parser.add_argument("--out", type=str, default=None, help="weights file")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


@exit_on_usage_error
def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    from common.seeding import set_seed
    from selfcond import classifiers
    from selfcond.evaluation import train_mnist_classifier

    set_seed(args.seed)
    model = classifiers.build(args.dataset)
    out = Path(args.out) if args.out else classifiers.weights_path(args.dataset)
    if args.dataset == "mnist":
        accuracy = train_mnist_classifier(model, args.source, args.seed, epochs=args.epochs or 10)
    else:
        from selfcond.data import _cifar10

        images, labels = _cifar10(args.source)
        images = images.astype(np.float32) / 127.5 - 1.0
        accuracy = classifiers.train(model, images, labels, epochs=args.epochs or 30, batch_size=128, flip=True,
                                     seed=args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out))
    print(f"saved {out} (last batch accuracy {accuracy:.3f})")
    return out


if __name__ == "__main__":
    main()
