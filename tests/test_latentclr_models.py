"""Direction models, projectors, optimisers and schedules (spec §2, §3, §11.3; acceptance checks 4-8, 17, 18, 26)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UsageError
from latentclr import models, optim


def deltas(model, z, alphas, training=False):
    out = model(tf.constant(z), np.asarray(alphas, np.float32), training=training).numpy()
    return out - np.tile(z, (model.k, 1))


def test_fixed_forward_rows():
    keras.utils.set_random_seed(0)
    model = models.Fixed(k=3, size=8, alpha=0.5)
    z = np.random.RandomState(1).randn(5, 8).astype(np.float32)
    out = model(tf.constant(z), np.full(3, 0.5, np.float32)).numpy()
    theta = model.params.numpy()
    assert out.shape == (15, 8)
    for k in range(3):
        expected = z + 0.5 * theta[k] / np.linalg.norm(theta[k])
        np.testing.assert_allclose(out[5 * k: 5 * k + 5], expected, atol=1e-6)


@pytest.mark.parametrize("cls", [models.Fixed, models.LinearConditional, models.NonlinearConditional])
def test_norms_of_edits(cls):
    keras.utils.set_random_seed(1)
    model = cls(k=4, size=16, alpha=0.7)
    z = np.random.RandomState(2).randn(6, 16).astype(np.float32)
    norms = np.linalg.norm(deltas(model, z, model.sample_alphas(), training=True), axis=1)
    np.testing.assert_allclose(norms, 0.7, rtol=1e-5)


@pytest.mark.parametrize("cls", [models.Fixed, models.LinearConditional, models.NonlinearConditional])
def test_random_alpha_norms(cls):
    keras.utils.set_random_seed(3)
    np.random.seed(0)
    model = cls(k=4, size=16, alpha=[-3, 3])
    alphas = model.sample_alphas()
    z = np.random.RandomState(4).randn(5, 16).astype(np.float32)
    norms = np.linalg.norm(deltas(model, z, alphas, training=True), axis=1).reshape(4, 5)
    assert np.all(norms <= 3.0 + 1e-5)
    np.testing.assert_allclose(norms, norms[:, :1] * np.ones((1, 5)), rtol=1e-5)  # constant within a direction
    if cls is models.Fixed:
        np.testing.assert_allclose(norms, norms[0, 0], rtol=1e-5)  # one draw shared by all directions
    else:
        assert len(set(np.round(norms[:, 0], 4))) == 4  # one draw per direction


def test_unnormalised_fixed_norms():
    keras.utils.set_random_seed(5)
    model = models.Fixed(k=3, size=8, alpha=0.5, normalize=False)
    z = np.zeros((2, 8), np.float32)
    norms = np.linalg.norm(deltas(model, z, [0.5] * 3), axis=1).reshape(3, 2)
    np.testing.assert_allclose(norms[:, 0], 0.5 * np.linalg.norm(model.params.numpy(), axis=1), rtol=1e-5)


@pytest.mark.parametrize("cls", [models.Fixed, models.LinearConditional, models.NonlinearConditional])
def test_forward_single_matches_block(cls):
    keras.utils.set_random_seed(6)
    model = cls(k=3, size=12, alpha=0.4)
    model(tf.random.normal((4, 12)), np.full(3, 0.4, np.float32), training=True)  # move BN statistics
    z = np.random.RandomState(7).randn(4, 12).astype(np.float32)
    full = model(tf.constant(z), np.full(3, 0.4, np.float32), training=False).numpy()
    for k in range(3):
        single = model.forward_single(tf.constant(z), k, 0.4).numpy()
        np.testing.assert_allclose(single, full[4 * k: 4 * k + 4], atol=1e-5)


@pytest.mark.parametrize("k, s", [(32, 128), (100, 512)])
def test_parameter_counts(k, s):
    expected = {models.Fixed: (k * s, 0), models.LinearConditional: (k * (s * s + s), 0),
                models.NonlinearConditional: (k * (3 * s * s + 6 * s), k * 4 * s)}
    for cls, counts in expected.items():
        assert models.count_params(cls(k=k, size=s)) == counts


def test_initialisers_and_batchnorm_constants():
    keras.utils.set_random_seed(8)
    fixed = models.Fixed(k=100, size=512).params.numpy()
    assert abs(fixed.mean()) < 0.02 and abs(fixed.std() - 1.0) < 0.02
    net = models.NonlinearConditional(k=2, size=512).nets
    bound = 1 / np.sqrt(512)
    for linear in net.linears:
        kernel = linear.kernel.numpy()
        assert np.abs(kernel).max() <= bound + 1e-7 and kernel.std() > bound / 2
        assert not np.allclose(kernel[0], kernel[1])  # every direction has its own draw
    assert np.abs(net.linears[0].bias.numpy()).max() <= bound + 1e-7
    assert net.norms[0].epsilon == 1e-5 and net.norms[0].momentum == 0.9


def test_batchnorm_uses_torch_running_statistics():
    bn = models.StackedBatchNorm(1, 3)
    x = np.random.RandomState(9).randn(1, 5, 3).astype(np.float32)
    y = bn(tf.constant(x), training=True).numpy()
    mean, var = x.mean(axis=1), x.var(axis=1)
    np.testing.assert_allclose(y, (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5), atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * mean, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * x.var(axis=1, ddof=1), atol=1e-6)


def test_first_layer_bias_flag():
    assert models.LinearConditional(k=2, size=4).nets.linears[0].use_bias  # the original's always-on bias
    assert not models.LinearConditional(k=2, size=4, first_layer_bias_fix=True).nets.linears[0].use_bias


def test_alpha_validation():
    with pytest.raises(UsageError, match="model.alpha"):
        models.Fixed(k=2, size=4, alpha=[1, 2, 3])
    assert models.Fixed(k=2, size=4, alpha=[-3, 3]).alpha == [-3.0, 3.0]


def test_projectors():
    h = tf.random.normal((3, 2, 2, 2))
    out = models.IdentityProjector()(h).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    lin = models.LinearProjector(8, 4)
    assert lin(h, training=True).shape == (3, 4) and models.count_params(lin) == (8 * 4 + 4 + 8, 8)
    nonlin = models.NonlinearProjector(3, 8, 6, 4)
    assert nonlin(h, training=True).shape == (3, 4)
    with pytest.raises(UsageError, match="projector.in_features=128 .* 8 values"):
        models.LinearProjector(128, 32).check_feature_size(8)


def test_projector_chunks_have_their_own_batch_statistics():
    lin = models.LinearProjector(4, 2, normalize=False)
    h = tf.constant(np.random.RandomState(10).randn(6, 4).astype(np.float32))
    chunked = models.apply_projector_chunks(lin, h, 2, training=True).numpy()
    # each 3-row chunk is normalised by its own BN statistics: per chunk, per feature mean 0
    np.testing.assert_allclose(chunked.reshape(2, 3, 2).mean(axis=1), 0.0, atol=1e-5)
    assert int(lin.net.final_norm.num_batches_tracked.numpy()) == 2


def test_state_dict_round_trip_and_transpose():
    keras.utils.set_random_seed(11)
    model = models.LinearConditional(k=3, size=5)
    state = models.export_state(model)
    assert state["nets.1.linear_1.weight"].shape == (5, 5)
    np.testing.assert_allclose(state["nets.1.linear_1.weight"], model.nets.linears[0].kernel.numpy()[1].T)
    other = models.LinearConditional(k=3, size=5)
    models.import_state(other, state, "test")
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(UsageError, match="missing"):
        models.import_state(other, {"nets.0.linear_1.weight": np.zeros((5, 5))}, "test")
    projector = models.LinearProjector(6, 2)
    pstate = models.export_state(projector)
    fresh = models.LinearProjector(6, 2)
    models.import_state(fresh, {f"Projector.{k}": v for k, v in pstate.items()}, "test")
    np.testing.assert_array_equal(fresh.net.linears[0].kernel.numpy(), projector.net.linears[0].kernel.numpy())


def test_nchw_rows_to_nhwc():
    h, w, c = 2, 3, 4
    nchw = np.arange(c * h * w).reshape(c, h, w)  # value = NCHW flat index
    kernel = np.arange(c * h * w)[:, None].astype(float)
    nhwc = models.nchw_rows_to_nhwc(kernel, (h, w, c))
    np.testing.assert_array_equal(nhwc[:, 0], nchw.transpose(1, 2, 0).reshape(-1))


def test_multistep_schedule():
    schedule = optim.MultiStepLR(1e-3, [1000, 5000], 0.2)
    got = [float(schedule(t)) for t in (0, 999, 1000, 4999, 5000)]
    np.testing.assert_allclose(got, [1e-3, 1e-3, 2e-4, 2e-4, 4e-5], rtol=1e-12)


def test_adam_is_torch_form_with_coupled_l2():
    w = tf.Variable([1.0], dtype=tf.float64)
    adam = optim.Adam([w], optim.ConstantLR(1e-3), eps=1e-8, weight_decay=1e-3)
    adam.apply([tf.zeros((1,), tf.float64)])
    np.testing.assert_allclose(w.numpy()[0], 0.99900001000, atol=1e-11)


def test_adam_matches_numpy_over_steps():
    rng = np.random.RandomState(12)
    w0, grads = rng.randn(3), rng.randn(4, 3)
    w = tf.Variable(w0, dtype=tf.float64)
    adam = optim.build_optimizer([w], {"_target_": "torch.optim.Adam", "lr": 0.01, "weight_decay": "1e-3"},
                                 {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "milestones": [2],
                                  "gamma": 0.5})
    ref, m, v = w0.copy(), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        adam.apply([tf.constant(g)])
        g = g + 1e-3 * ref
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        lr = 0.01 * (0.5 if t > 2 else 1.0)
        ref = ref - lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999 ** t) + 1e-8)
    np.testing.assert_allclose(w.numpy(), ref, atol=1e-12)


def test_sgd_nesterov_matches_torch_rule():
    w = tf.Variable([1.0, -2.0], dtype=tf.float64)
    sgd = optim.build_optimizer([w], {"_target_": "torch.optim.SGD", "lr": 0.1, "weight_decay": 5e-4,
                                      "momentum": 0.1, "nesterov": True}, None)
    ref, buf = np.array([1.0, -2.0]), None
    for g in ([0.5, 0.5], [1.0, -1.0], [0.0, 2.0]):
        sgd.apply([tf.constant(g, tf.float64)])
        d = np.array(g) + 5e-4 * ref
        buf = d if buf is None else 0.1 * buf + d
        ref = ref - 0.1 * (d + 0.1 * buf)
    np.testing.assert_allclose(w.numpy(), ref, atol=1e-12)


def test_clip_by_global_norm_and_bad_targets():
    grads = optim.clip_by_global_norm([tf.constant([3.0, 4.0])], 1.0)
    np.testing.assert_allclose(np.linalg.norm(grads[0].numpy()), 1.0, rtol=1e-5)
    with pytest.raises(UsageError, match="hparams.optimizer._target_"):
        optim.build_optimizer([], {"_target_": "torch.optim.RMSprop"}, None)
