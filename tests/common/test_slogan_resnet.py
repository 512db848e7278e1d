"""CIFAR-2 ResNets of SLOGAN: sizes, shapes, ranges, initialisers, TF1 names, cross-replica BN (spec §4.2-4.4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.slogan import resnet
from common.slogan.layers import TF1BatchNorm
from tests.devices import two_cpus as _two_cpus


@pytest.fixture(scope="module")
def full_nets():
    """The full-size nets (d = 128, 128 channels), built once for the whole module."""
    keras.utils.set_random_seed(0)
    return resnet.build_generator(), resnet.build_discriminator(), resnet.build_encoder()


def _count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_parameter_counts_and_batch_norms(full_nets):
    g, d, e = full_nets
    assert (_count(g), _count(d), _count(e)) == (1_204_483, 1_053_825, 1_070_208)
    bns = [layer for layer in g._flatten_layers(include_self=False) if isinstance(layer, TF1BatchNorm)]
    assert len(bns) == 7 and len(g.batch_norms) == 7
    moving = sum(int(np.prod(b.moving_mean.shape)) + int(np.prod(b.moving_variance.shape)) for b in bns)
    assert moving == 1_792


def test_shapes_ranges_and_spatial_sizes(full_nets):
    g, d, e = full_nets
    z = tf.random.normal([2, 128], seed=1)
    for training in (False, True):
        x = g(z, training=training).numpy()
        assert x.shape == (2, 32, 32, 3) and np.all(np.abs(x) < 1.0)
    assert [s.shape[1] for s in g.stages(z)] == [4, 8, 16, 32]
    assert [s.shape[1:] for s in d.stages(tf.constant(x))] == [(16, 16, 128), (8, 8, 128), (8, 8, 128), (8, 8, 128)]
    assert d(x).shape == (2, 1) and e(x).shape == (2, 128)


def _kernels(model, predicate):
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and predicate(layer)]


def test_initialisers(full_nets):
    g, d, e = full_nets
    for model in (g, d, e):
        he = _kernels(model, lambda layer: isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3)
                      and layer.filters > 3)
        glorot = [layer for layer in _kernels(model, lambda layer: True) if layer not in he]
        assert len(he) == (6 if model is g else 8)
        for layer in he:
            w = layer.kernel.numpy()
            fan_in = np.prod(w.shape[:-1])
            assert np.abs(w).max() <= np.sqrt(6 / fan_in)
            assert np.var(w) == pytest.approx(2 / fan_in, rel=0.1)
        for layer in glorot:
            w = layer.kernel.numpy()
            receptive = np.prod(w.shape[:-2]) if w.ndim == 4 else 1
            limit = np.sqrt(6 / (receptive * (w.shape[-2] + w.shape[-1])))
            # Max |w| sits within 1% of the Glorot bound; a He kernel of the same shape would exceed it.
            assert 0.99 * limit <= np.abs(w).max() <= limit
        for layer in he + glorot:
            np.testing.assert_array_equal(layer.bias.numpy(), 0.0)
    for bn in g.batch_norms:
        for var, value in ((bn.gamma, 1), (bn.beta, 0), (bn.moving_mean, 0), (bn.moving_variance, 1)):
            np.testing.assert_array_equal(var.numpy(), value)
    assert {type(layer.kernel_initializer).__name__ for layer in _kernels(g, lambda layer: True)} == {
        "HeUniform", "GlorotUniform"}


def test_tf1_variable_names_follow_creation_order(full_nets):
    g, d, _ = full_nets
    names = resnet.tf1_variable_names(g)
    assert len(names) == len(g.weights)
    assert names["generator/dense/kernel"].shape == (128, 2048)
    assert names["generator/conv2d_2/kernel"].shape == (1, 1, 128, 128)  # first block's shortcut
    assert names["generator/conv2d_9/kernel"].shape == (3, 3, 128, 3)
    assert names["generator/BatchNorm_6/moving_mean/biased"].shape == (128,)
    assert names["generator/BatchNorm_3/moving_mean/local_step"].shape == ()
    dnames = resnet.tf1_variable_names(d)
    assert dnames["discriminator/conv2d/kernel"].shape == (3, 3, 3, 128)
    assert dnames["discriminator/conv2d_2/kernel"].shape == (1, 1, 3, 128)  # Opt shortcut
    assert dnames["discriminator/conv2d_5/kernel"].shape == (1, 1, 128, 128)  # Down shortcut
    assert dnames["discriminator/dense/kernel"].shape == (128, 1)
    assert len(dnames) == 22


def _bn_step(strategy, x):
    """One training-mode call with statistics update of a GeneratorBatchNorm, the batch split over replicas."""
    with strategy.scope():
        bn = resnet.GeneratorBatchNorm()
        bn.build(x.shape)
        bn.gamma.assign(np.linspace(0.5, 2.0, x.shape[-1]))

    @tf.function(autograph=False)
    def step():
        def replica():
            ctx = tf.distribute.get_replica_context()
            n = ctx.num_replicas_in_sync
            local = tf.reshape(x, [n, -1, *x.shape[1:]])[ctx.replica_id_in_sync_group]
            with tf.GradientTape() as tape:
                tape.watch(local)
                loss = tf.reduce_sum(bn(local, training=True, update_stats=True) ** 3)
            return tape.gradient(loss, local)

        return strategy.run(replica)

    grads = np.concatenate([v.numpy() for v in strategy.experimental_local_results(step())])
    return grads, [v.numpy() for v in (bn.moving_mean, bn.moving_variance)]


def test_batch_norm_statistics_span_every_replica():
    """Fused kernel on one device == all-reduced moments on two: outputs' gradients and moving statistics."""
    x = tf.constant(np.random.RandomState(0).normal(1.0, 2.0, size=(8, 4, 4, 3)).astype(np.float32))
    one_grad, one_stats = _bn_step(tf.distribute.get_strategy(), x)
    two_grad, two_stats = _bn_step(tf.distribute.MirroredStrategy(_two_cpus()), x)
    np.testing.assert_allclose(two_grad, one_grad, rtol=1e-4, atol=1e-4 * np.abs(one_grad).max())
    flat = x.numpy().reshape(-1, 3)
    np.testing.assert_allclose(one_stats[0], flat.mean(0), rtol=1e-5)  # zero-debiased: exactly the batch mean
    np.testing.assert_allclose(one_stats[1], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)  # unbiased variance
    for a, b in zip(one_stats, two_stats):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
