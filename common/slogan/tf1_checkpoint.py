"""Load the authors' TF1 checkpoints of ``slogan_cifar2.py`` (``model-100000``) into this port's variables.

The original's ``tf.train.Saver`` stores variables by their TF1 names (spec §2.4, §4.4):

- ``generator/…``, ``discriminator/…``, ``encoder/…``: layers named in creation order (``dense``, ``BatchNorm``,
  ``conv2d``, ``BatchNorm_1``, ``conv2d_1``, …) with ``kernel``/``bias`` or ``beta``/``gamma``/``moving_mean``/
  ``moving_variance``; kernel layouts equal Keras 3's.
- the zero-debias state of each BatchNorm's moving mean, ``…/moving_mean/biased`` and ``…/local_step``
  (TF1 nests them under the layer scope a second time, e.g.
  ``generator/BatchNorm/generator/BatchNorm/moving_mean/biased``);
- the prior: ``Variable`` (ρ, created without a name), ``mu_<c>``, ``sigma_<c>``;
- the global step ``placeholders/global_step``; Adam slots and ``beta*_power`` (not needed to evaluate).

:func:`restore_tf1` assigns every model variable and the prior from such a file; the zero-debias state, if
absent, is rebuilt so that the moving mean stays as stored.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from common.errors import UsageError
from common.slogan.resnet import tf1_variable_names

GLOBAL_STEP = "placeholders/global_step"
RHO = "Variable"
BN_MOMENTUM = 0.9
_HIDDEN = ("moving_mean/biased", "moving_mean/local_step")


def is_tf1_checkpoint(prefix: str) -> bool:
    """True when the checkpoint at ``prefix`` holds the original's name-based TF1 variables."""
    try:
        names = {name for name, _ in tf.train.list_variables(prefix)}
    except (tf.errors.OpError, ValueError):
        return False
    return "generator/dense/kernel" in names


def _find(names: set[str], wanted: str) -> str | None:
    """``wanted`` itself, or a key ending in its layer-relative tail (TF1's doubled zero-debias scope)."""
    if wanted in names or "/" not in wanted:
        return wanted if wanted in names else None
    scope, rest = wanted.split("/", 1)
    matches = [n for n in names if n.startswith(scope + "/") and n.endswith("/" + rest)]
    return matches[0] if len(matches) == 1 else None


def tf1_assignments(prefix: str, models, prior) -> tuple[dict, list[str]]:
    """Pair this port's variables with the tensors of a TF1 checkpoint.

    Args:
        prefix: checkpoint prefix, e.g. ``logs/cifar2/3/pretrained/model-100000``.
        models: the generator, discriminator and encoder (scopes ``generator``, ``discriminator``, ``encoder``).
        prior: a :class:`common.slogan.prior.GaussianMixturePrior`.
    Returns:
        ``(pairs, rebuilt)``: ``{tf1 name: (variable, value)}`` and the names of zero-debias variables that were absent
        and are rebuilt from the moving mean.
    Raises:
        UsageError: a required variable is missing or has another shape.
    """
    reader = tf.train.load_checkpoint(prefix)
    names = set(reader.get_variable_to_shape_map())
    wanted = {}
    for model in models:
        wanted.update(tf1_variable_names(model))
    wanted[RHO] = prior.rho
    wanted.update({f"mu_{c}": v for c, v in enumerate(prior.mu)})
    wanted.update({f"sigma_{c}": v for c, v in enumerate(prior.sigma)})
    pairs, missing, rebuilt = {}, [], []
    for name, variable in wanted.items():
        key = _find(names, name)
        if key is None:
            (rebuilt if name.endswith(_HIDDEN) else missing).append(name)
            continue
        value = reader.get_tensor(key)
        if tuple(value.shape) != tuple(variable.shape):
            raise UsageError(f"{prefix}: {key} has shape {value.shape}, this model expects {tuple(variable.shape)} "
                             "(check --latent_dim and --num_cluster)")
        pairs[name] = (variable, value)
    if missing:
        raise UsageError(f"{prefix}: not a slogan_cifar2.py checkpoint of this configuration; missing "
                         f"{len(missing)} variables, e.g. {missing[0]}")
    updates = 2.0 * float(reader.get_tensor(GLOBAL_STEP)) if GLOBAL_STEP in names else 1e6
    for name in rebuilt:
        if name.endswith("local_step"):
            pairs[name] = (wanted[name], np.float32(updates))
        else:  # biased = moving_mean · (1 − 0.9^local_step), the state that reproduces the stored moving mean
            mean = pairs[name.replace("moving_mean/biased", "moving_mean")][1]
            pairs[name] = (wanted[name], (mean * (1.0 - BN_MOMENTUM**updates)).astype(np.float32))
    return pairs, rebuilt


def restore_tf1(prefix: str, models, prior, global_step: tf.Variable | None = None) -> list[str]:
    """Assign the TF1 checkpoint at ``prefix`` to the models and the prior (and the step when given).

    Returns:
        The zero-debias variables that were rebuilt (empty for a complete original checkpoint).
    """
    pairs, rebuilt = tf1_assignments(prefix, models, prior)
    for variable, value in pairs.values():
        variable.assign(value)
    if global_step is not None:
        reader = tf.train.load_checkpoint(prefix)
        if reader.has_tensor(GLOBAL_STEP):
            global_step.assign(int(reader.get_tensor(GLOBAL_STEP)))
    return rebuilt
