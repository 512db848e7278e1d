#!/usr/bin/env python
"""Reset the latent codes of datasets to their initial values (the original's ``cleaner.py``).

    python glo/cleaner.py --datasets MNIST SVHN

deletes the ``update`` entry that training wrote into every group of ``datasets/<name>/data.hdf5``; readers
then see the initial ``code`` again. A folder path works as well as a name.
"""

import argparse
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(_HERE)] + [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from common.errors import UsageError, exit_on_usage_error  # noqa: E402


@exit_on_usage_error
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True,
                        help="MNIST, SVHN, CIFAR10, or folders holding data.hdf5 (or data.hy) and id.txt")
    args = parser.parse_args(argv)
    import h5py

    from common.data_glo import find_h5_file
    from glo.codes import clean_updates
    from glo.data import dataset_folder

    for name in args.datasets:
        path = find_h5_file(dataset_folder(name, flag="--datasets"))
        try:
            with h5py.File(path, "r+", locking=False) as handle:
                removed = clean_updates(handle)
        except OSError as err:
            raise UsageError(f"--datasets {name}: cannot open {path} for writing ({err})") from None
        print(f"{path}: removed {removed} code updates")


if __name__ == "__main__":
    main()
