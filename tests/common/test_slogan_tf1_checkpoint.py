"""Loading the authors' TF1 checkpoints of slogan_cifar2.py (spec §2.4, §4.4).

The test writes a checkpoint the way the original's ``tf.train.Saver`` did (graph-mode variables with the
TF1 names, including TF1's doubled zero-debias scope, Adam slots and the global step) and loads it into
this port's models and prior.
"""

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UsageError
from common.slogan import prior as prior_lib
from common.slogan import resnet, tf1_checkpoint

LATENT, CHANNELS, K = 16, 8, 2


@pytest.fixture(scope="module")
def target():
    """One set of port models and prior; every restore below assigns all of their variables."""
    models = (resnet.build_generator(LATENT, CHANNELS), resnet.build_discriminator(CHANNELS),
              resnet.build_encoder(LATENT, CHANNELS))
    return models, prior_lib.GaussianMixturePrior(K, LATENT, seed=5)


def _tf1_name(name: str) -> str:
    """TF1 nests BatchNorm's zero-debias variables under the layer scope twice."""
    for hidden in ("moving_mean/biased", "moving_mean/local_step"):
        if name.endswith(hidden):
            scope = name[: -len(hidden) - 1]  # e.g. generator/BatchNorm_3
            return f"{scope}/{scope}/{hidden}"
    return name


def _write_tf1(path, values: dict) -> str:
    """Save ``{tf1 name: array}`` with tf.compat.v1.train.Saver, as the original (global step 100000)."""
    graph = tf.Graph()
    with graph.as_default():
        variables = {name: tf.compat.v1.Variable(value, name=name.replace("/", "_"), dtype=value.dtype)
                     for name, value in values.items()}
        saver = tf.compat.v1.train.Saver(var_list=variables)
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            return saver.save(session, str(path / "model"), global_step=100000)


def _reference_values(models, rng, skip_hidden=False):
    """Random values for every TF1 variable of a (LATENT, CHANNELS, K) model, plus extras the Saver stores."""
    values = {}
    for model in models:
        for name, variable in resnet.tf1_variable_names(model).items():
            if skip_hidden and name.endswith(("moving_mean/biased", "moving_mean/local_step")):
                continue
            value = rng.normal(size=variable.shape).astype(np.float32)
            if name.endswith(("moving_variance", "local_step")):
                value = np.abs(value) + 1.0
            values[_tf1_name(name)] = value
    values["Variable"] = rng.normal(size=[K]).astype(np.float32)
    for c in range(K):
        values[f"mu_{c}"] = rng.normal(size=[LATENT]).astype(np.float32)
        a = rng.normal(size=(LATENT, LATENT)).astype(np.float32)
        values[f"sigma_{c}"] = (a @ a.T / LATENT + np.eye(LATENT)).astype(np.float32)
    values["placeholders/global_step"] = np.array(100000, np.int64)
    values["generator/dense/kernel/Adam"] = np.zeros((LATENT, 4 * 4 * CHANNELS), np.float32)  # ignored
    values["beta1_power"] = np.array(0.0, np.float32)  # ignored
    return values


def test_tf1_checkpoint_loads_every_variable(tmp_path, target):
    models, prior = target
    values = _reference_values(models, np.random.RandomState(0))
    prefix = _write_tf1(tmp_path, values)
    assert prefix.endswith("model-100000") and tf1_checkpoint.is_tf1_checkpoint(prefix)
    step = tf.Variable(0, dtype=tf.int64)
    rebuilt = tf1_checkpoint.restore_tf1(prefix, models, prior, step)
    assert rebuilt == [] and int(step.numpy()) == 100000
    for model in models:
        for name, variable in resnet.tf1_variable_names(model).items():
            np.testing.assert_array_equal(variable.numpy(), values[_tf1_name(name)], err_msg=name)
    np.testing.assert_array_equal(prior.rho.numpy(), values["Variable"])
    for c in range(K):
        np.testing.assert_array_equal(prior.mu[c].numpy(), values[f"mu_{c}"])
        np.testing.assert_array_equal(prior.sigma[c].numpy(), values[f"sigma_{c}"])
    # The restored nets compute: inference mode uses the loaded moving statistics.
    g = models[0]
    x = g(tf.random.normal([2, LATENT], seed=1), training=False).numpy()
    assert x.shape == (2, 32, 32, 3) and np.all(np.isfinite(x))


def test_missing_zero_debias_state_is_rebuilt_from_the_moving_mean(tmp_path, target):
    models, prior = target
    values = _reference_values(models, np.random.RandomState(1), skip_hidden=True)
    prefix = _write_tf1(tmp_path, values)
    rebuilt = tf1_checkpoint.restore_tf1(prefix, models, prior)
    assert len(rebuilt) == 2 * 7
    for bn in models[0].batch_norms:
        stored = values[f"generator/{bn.name}/moving_mean"]
        np.testing.assert_array_equal(bn.moving_mean.numpy(), stored)
        # One more update from a batch must behave as after 200 000 updates: 0.9·old + 0.1·batch mean.
        x = tf.random.normal([4, 4, 4, bn.moving_mean.shape[0]], seed=2)
        bn(x, training=True, update_stats=True)
        expected = 0.9 * stored + 0.1 * x.numpy().mean(axis=(0, 1, 2))
        np.testing.assert_allclose(bn.moving_mean.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_wrong_or_foreign_checkpoints_are_usage_errors(tmp_path, target):
    models, prior = target
    values = _reference_values(models, np.random.RandomState(2))
    values["mu_0"] = np.zeros([LATENT + 1], np.float32)  # another --latent_dim
    (tmp_path / "a").mkdir()
    prefix = _write_tf1(tmp_path / "a", values)
    with pytest.raises(UsageError, match="mu_0 has shape"):
        tf1_checkpoint.restore_tf1(prefix, models, prior)
    del values["mu_0"], values["generator/conv2d_4/kernel"]
    (tmp_path / "b").mkdir()
    prefix = _write_tf1(tmp_path / "b", values)
    with pytest.raises(UsageError, match="missing"):
        tf1_checkpoint.restore_tf1(prefix, models, prior)
    own = tf.train.Checkpoint(generator=models[0]).write(str(tmp_path / "own"))
    assert not tf1_checkpoint.is_tf1_checkpoint(own)
    assert not tf1_checkpoint.is_tf1_checkpoint(str(tmp_path / "nothing"))
