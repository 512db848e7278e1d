"""Run the ORIGINAL ``slogan_synthetic.py`` (TF 1.14 code) here, under ``tf.compat.v1``, and judge it like the port.

    python -m common.slogan.original_check /path/to/SLOGAN/slogan_synthetic.py --seed 1 --stop_after 20000

Why: the port does not reach the paper's Figure 1d (one mixture component per mode) with the default flags. To
tell a porting bug from the method's own behaviour, this runs the authors' file itself, with the fewest changes
that let TF 1.14 code run on TensorFlow 2.21 (the file is patched in memory; nothing of it is copied into this
repository, get it from github.com/shinyflight/SLOGAN):

- ``tensorflow`` becomes ``tensorflow.compat.v1`` with v2 behaviour off (graph mode, reference variables and
  their unordered updates, as in TF 1.14);
- ``tf.layers.dense`` and ``tf.contrib.layers.batch_norm`` (removed from TF 2) become the TF1 layer functions
  kept in ``tf_keras`` (dense with the same constraint handling; batch norm with the same momentum, epsilon and
  update-op collection, without ``zero_debias_moving_mean``, which only changes inference-mode plots early on);
  ``tf.contrib.layers.flatten`` becomes a reshape; the iterator constructor moves to ``tf.data``;
- TF 1.14's mixed-precision graph-rewrite wrapper (gone from TF 2) is dropped: on a CPU it only skipped updates
  with non-finite gradients, which a healthy run never has;
- matplotlib is replaced by a no-op (the PNGs are not needed), the hard-coded seed 0 by ``--seed``;
- with ``--resource_variables`` (an experiment, not the original), every variable is a resource variable: each
  ``sess.run`` of the joint G / E / prior step then differentiates one snapshot of the weights, as the port does,
  instead of backward passes that may read weights another update of the same run already changed in place;
- after ``--stop_after`` iterations the run stops and prints, as JSON, π and for each component the share of
  its generated samples nearest to each true mode: the same measurement as
  ``python -m common.slogan.report <run> --samples N`` makes for a port run.

Every training line of the original runs unchanged. Each patch is a search-and-replace that must match exactly
once, so a different version of the file fails loudly instead of running something else.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np

from common.errors import UsageError, exit_on_usage_error
from common.slogan.report import component_owners, mode_shares, one_component_per_mode

# (what the original says, what runs instead). Fragments only: API names and the lines around them.
PATCHES = (
    ("import tensorflow as tf\n", "import tensorflow.compat.v1 as tf\ntf.disable_v2_behavior()\n"
                                  "from common.slogan.original_check import tf1_layers, no_plots as plt\n"
                                  "import sklearn.preprocessing\n"),
    ("import matplotlib.pyplot as plt\n", ""),
    ("tf.contrib.layers.batch_norm(", "tf1_layers.batch_norm("),
    ("tf.contrib.layers.flatten(x)", "tf.reshape(x, [tf.shape(x)[0], -1])"),
    ("data.make_initializable_iterator()", "tf.data.make_initializable_iterator(data)"),
    ("    np.random.seed(0)\n    tf.set_random_seed(0)\n\n    sess",
     "    np.random.seed(_SEED)\n    tf.set_random_seed(_SEED)\n\n    sess"),
    ("        i += 1", "        i += 1\n        if _probe(globals(), i):\n            break"),
)
REPEATED = {"tf.layers.dense": "tf1_layers.dense",  # nine calls
            "tf.train.experimental.enable_mixed_precision_graph_rewrite(": "("}  # six optimizers


class tf1_layers:  # noqa: N801 - stands in for the TF1 module paths the original calls
    """The TF1 ``tf.layers.dense`` and ``tf.contrib.layers.batch_norm`` as TF 2.21 still ships them (tf_keras)."""

    @staticmethod
    def dense(*args, **kwargs):
        from tf_keras.src.legacy_tf_layers import core

        return core.dense(*args, **kwargs)

    @staticmethod
    def batch_norm(x, decay, center, scale, epsilon, zero_debias_moving_mean, is_training):
        from tf_keras.src.legacy_tf_layers import normalization

        del zero_debias_moving_mean  # not in the TF1 layer; affects inference-mode outputs of the first steps only
        return normalization.batch_normalization(x, momentum=decay, epsilon=epsilon, center=center, scale=scale,
                                                 training=is_training)


no_plots = types.SimpleNamespace(scatter=lambda *a, **k: None, savefig=lambda *a, **k: None,
                                 close=lambda *a, **k: None)


RESOURCE_VARIABLES = ("tf.disable_v2_behavior()\n", "tf.disable_v2_behavior()\ntf.enable_resource_variables()\n")


def patch_source(text: str, resource_variables: bool = False) -> str:
    """The original's source with :data:`PATCHES` applied; UsageError when a fragment does not match once.

    ``resource_variables`` adds :data:`RESOURCE_VARIABLES` (snapshot reads instead of TF1's in-place ones).
    """
    for old, new in PATCHES + ((RESOURCE_VARIABLES,) if resource_variables else ()):
        if text.count(old) != 1:
            raise UsageError(f"original file: expected the fragment {old.strip()[:50]!r} exactly once, found "
                             f"{text.count(old)} (a different version of slogan_synthetic.py?)")
        text = text.replace(old, new)
    for old, new in REPEATED.items():
        if old not in text:
            raise UsageError(f"original file: expected {old!r} calls, found none")
        text = text.replace(old, new)
    return text


def judge(namespace: dict, samples: int) -> dict:
    """π and each component's nearest-mode shares, from the original's own graph objects in ``namespace``."""
    sess, tf = namespace["sess"], namespace["tf"]
    generator, is_training = namespace["generator"], namespace["is_training"]
    x_eval, y_eval = sess.run([namespace["x_10k_ph"], namespace["y_10k_ph"]])
    modes = np.stack([x_eval[y_eval.argmax(-1) == k].mean(0) for k in range(y_eval.shape[1])])

    def generated(z):
        return sess.run(generator(z, is_training, reuse=True), feed_dict={is_training: False})

    per_component = np.stack([mode_shares(generated(component.sample(samples)), modes)
                              for component in namespace["components"]])
    owners = component_owners(per_component)
    return {"pi": [round(float(p), 4) for p in sess.run(namespace["pi"])],
            "mode_mass": mode_shares(generated(namespace["mvn"].sample(samples)), modes).round(4).tolist(),
            "component_modes": per_component.round(3).tolist(), "owner": owners,
            "one_component_per_mode": one_component_per_mode(owners, len(modes)),
            "tensorflow": tf.__version__}


def run(original: Path, seed: int, stop_after: int, samples: int, argv: list[str],
        resource_variables: bool = False) -> dict:
    """Execute the patched original as ``__main__`` with ``argv``; return :func:`judge` at ``stop_after``."""
    code = compile(patch_source(original.read_text(), resource_variables), str(original), "exec")
    result = {}

    def probe(namespace, iteration):
        if int(iteration) < stop_after:
            return False
        result.update(iteration=int(iteration), seed=seed, resource_variables=resource_variables,
                      **judge(namespace, samples))
        return True

    saved_argv = sys.argv
    sys.argv = [str(original), *argv]
    try:
        exec(code, {"__name__": "__main__", "__file__": str(original), "_SEED": seed, "_probe": probe})
    finally:
        sys.argv = saved_argv
    return result


@exit_on_usage_error
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m common.slogan.original_check", description=__doc__.splitlines()[0])
    parser.add_argument("original", help="path of the original slogan_synthetic.py")
    parser.add_argument("--seed", type=int, default=0, help="replaces the original's hard-coded seed 0")
    parser.add_argument("--stop_after", type=int, default=20_000,
                        help="iterations to run (the U2C term is off from 20 000 on with the default flags)")
    parser.add_argument("--samples", type=int, default=10_000, help="generated samples per component to classify")
    parser.add_argument("--resource_variables", action="store_true",
                        help="experiment: resource variables instead of TF1 reference variables (snapshot reads)")
    parser.add_argument("--log_dir", default="./logs/original_synthetic/",
                        help="the original's --log_dir (it writes an empty run folder there)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    original = Path(args.original)
    if not original.is_file():
        raise UsageError(f"{original}: no such file (expected the original slogan_synthetic.py)")
    if args.stop_after < 1 or args.samples < 1:
        raise UsageError("--stop_after and --samples: expected positive counts")
    result = run(original, args.seed, args.stop_after, args.samples,
                 ["--gpu", "-1", "--log_freq", str(10 ** 9), "--log_dir", args.log_dir, *rest],
                 resource_variables=args.resource_variables)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
