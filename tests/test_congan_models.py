"""ConGAN networks: shapes, ranges, parameter counts, initialisers, spectral norm and BN (spec §9: 1-6, 16, 17, 25)."""

import numpy as np
import pytest
import tensorflow as tf

from congan import models as M
from congan.framework1 import ConsistentGAN
from congan.layers import BatchNorm, ConditionalBatchNorm, ConvTranspose2d, SNConv2d
from congan.simsiam import SimSiam


@pytest.mark.parametrize("size,h_dim,counts", [(64, 512, (1349377, 8004227, 1312768)),
                                               (32, 128, (1053825, 6659971, 1116160))])
def test_full_size_resnet_gan_shapes_ranges_and_counts(size, h_dim, counts):
    tf.random.set_seed(0)
    T = M.LatentTransform(2048, 512, 512).build_now()
    G = M.ResNetGenerator(T.output_dim, 128, size, 2048)
    D = M.ResNetDiscriminator(128, size)
    Q = M.QNetwork(512, 2048)
    z, r = tf.random.normal((3, 1024)), tf.random.normal((3, 2048))
    x = G(z, r, training=True)
    assert x.shape == (3, size, size, 3)
    assert float(tf.reduce_min(x)) >= -1.0 and float(tf.reduce_max(x)) <= 1.0
    logits, h = D(x, training=False)
    assert logits.shape == (3, 1) and h.shape == (3, h_dim)
    assert float(tf.reduce_min(h)) >= 0.0
    Q(h)
    assert (M.parameter_count(D), M.parameter_count(G), M.parameter_count(Q)) == counts
    assert M.parameter_count(T) == 1049088


def test_sn_dcgan_counts_and_shapes():
    G = M.DCGANGenerator(256, 64, 32, 2048)
    D = M.DCGANDiscriminator(64, 32)
    x = G(tf.random.normal((2, 256)), tf.random.normal((2, 2048)), training=True)
    logits, h = D(x)
    assert x.shape == (2, 32, 32, 3) and logits.shape == (2,) and h.shape == (2, 8192)
    assert (M.parameter_count(D), M.parameter_count(G)) == (2935873, 8786435)


def test_simsiam_resnet50_counts_and_output():
    model = SimSiam("resnet50", 2048, 512).build_for(64)
    assert M.parameter_count(model.encoder) == 36101184
    assert M.parameter_count(model.predictor) == 2100224
    assert model.encoder(tf.random.normal((2, 64, 64, 3)), training=True).shape == (2, 2048)
    # The projector's last bias is frozen; zero-init residual: each bottleneck's last BN gamma is 0.
    assert not model.encoder.fc[5].bias.trainable
    assert np.all(np.asarray(model.encoder.stages[0][0].layers_[5].gamma) == 0.0)


def test_latent_transform_modes():
    r, n = tf.random.normal((4, 32)), tf.random.normal((4, 8))
    partial = M.LatentTransform(32, 8, 16, "partial").build_now()
    out = partial(r, n).numpy()
    np.testing.assert_array_equal(out[:, 16:], n.numpy())
    w, b = partial.transform.kernel.numpy(), partial.transform.bias.numpy()
    np.testing.assert_allclose(out[:, :16], r.numpy() @ w + b, rtol=1e-5, atol=1e-6)
    full = M.LatentTransform(32, 8, 16, "full").build_now()
    assert full(r, n).shape == (4, 16) and full.output_dim == 16
    noop = M.LatentTransform(32, 8, 16, "noop").build_now()
    np.testing.assert_array_equal(noop(r, n).numpy(), n.numpy())
    assert noop.output_dim == 8 and not noop.weights


def test_cbn_init_is_the_notebooks_quirk():
    tf.random.set_seed(1)
    cbn = ConditionalBatchNorm(128, "original")
    cbn.build((None, 4, 4, 128), (None, 2048))
    kernel, bias = cbn.embed.kernel.numpy(), cbn.embed.bias.numpy()
    assert abs(kernel[:128].mean() - 1.0) < 0.005 and abs(kernel[:128].std() - 0.02) < 0.005
    assert np.all(kernel[128:] == 0.0)
    assert np.abs(bias).max() <= 1 / np.sqrt(2048)
    r = np.random.RandomState(0).normal(size=(3, 2048)).astype(np.float32)
    r[:, :128] = 0.0
    np.testing.assert_allclose(cbn.embed(tf.constant(r)).numpy(), np.broadcast_to(bias, (3, 256)), atol=1e-6)
    assert not cbn.bn.scale and not cbn.bn.center  # no gamma/beta variables in the BN of a CBN


def test_cbn_intended_init():
    cbn = ConditionalBatchNorm(16, "intended")
    cbn.build((None, 4, 4, 16), (None, 64))
    kernel = cbn.embed.kernel.numpy()
    assert np.all(kernel[:, 16:] == 0.0) and abs(kernel[:, :16].mean() - 1.0) < 0.01


def _sn_kernel(singular_values, out=64, cin=3, k=3, seed=0):
    rng = np.random.RandomState(seed)
    u, _ = np.linalg.qr(rng.normal(size=(out, out)))
    v, _ = np.linalg.qr(rng.normal(size=(cin * k * k, cin * k * k)))
    s = np.zeros((out, cin * k * k))
    s[np.arange(len(singular_values)), np.arange(len(singular_values))] = singular_values
    w = (u @ s @ v.T).astype(np.float32)  # PyTorch matrix [out, in*kh*kw]
    return w, w.reshape(out, cin, k, k).transpose(2, 3, 1, 0)  # and the Keras HWIO kernel


def _normalize(x):
    return x / max(np.linalg.norm(x), 1e-12)


def test_spectral_norm_matches_pytorch_power_iteration():
    sv = [5.0, 1.0] + [0.5] * 25
    w, hwio = _sn_kernel(sv)
    layer = SNConv2d(64, 3, 1, 1, kernel_initializer=lambda shape, dtype=None: tf.constant(hwio))
    x = tf.random.normal((2, 8, 8, 3))
    layer(x, training=False)
    # 15 warm-up iterations at creation already give sigma within 1e-3 of the top singular value.
    assert abs(float(layer.sigma(False)) - 5.0) < 1e-3
    np.testing.assert_allclose(layer.weight_matrix().numpy(), w)
    u, v = layer.sn_u.numpy(), layer.sn_v.numpy()
    before = u.copy()
    layer(x, training=False)
    np.testing.assert_array_equal(layer.sn_u.numpy(), before)  # inference does not move u
    for _ in range(3):  # every training call: u <- normalize(W v), then v <- normalize(W^T u)
        layer(x, training=True)
        u = _normalize(w @ v)
        v = _normalize(w.T @ u)
        np.testing.assert_allclose(layer.sn_u.numpy(), u, atol=1e-5)
        np.testing.assert_allclose(layer.sn_v.numpy(), v, atol=1e-5)
    with tf.GradientTape() as tape:
        sigma = layer.sigma(False)
    grad = tape.gradient(sigma, layer.kernel)
    assert float(tf.norm(grad)) > 0.1  # W / sigma keeps sigma in the graph


def test_batchnorm_unbiased_running_variance_and_settings():
    bn = BatchNorm()
    x = np.random.RandomState(0).normal(2.0, 3.0, size=(5, 2, 2, 4)).astype(np.float32)
    y = bn(tf.constant(x), training=True).numpy()
    flat = x.reshape(-1, 4)
    np.testing.assert_allclose(y.reshape(-1, 4), (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5), atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(bn(tf.constant(x), training=False).numpy(),
                               (x - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + 1e-5), rtol=1e-5)


def _all_batchnorms(model):
    return [layer for _, layer in model.torch_modules() if isinstance(layer, BatchNorm)]


def test_every_bn_uses_pytorch_constants():
    G = M.ResNetGenerator(32, 16, 32, 64)
    G(tf.zeros((2, 32)), tf.zeros((2, 64)))
    simsiam = SimSiam("tiny", 64, 16).build_for(32)
    f1 = ConsistentGAN(64, 8, 32)
    bns = _all_batchnorms(G) + _all_batchnorms(simsiam) + _all_batchnorms(f1)
    assert len(bns) > 20
    assert all(bn.epsilon == 1e-5 and bn.momentum == 0.9 for bn in bns)
    assert not simsiam.encoder.fc[6].scale and not simsiam.encoder.fc[6].center
    assert all(not bn.scale and not bn.center for bn in _all_batchnorms(G))  # CBN: normalisation only


def test_conv_transpose_matches_pytorch_definition():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(1, 3, 3, 2)).astype(np.float32)
    layer = ConvTranspose2d(4, 4, 2, 1, use_bias=False)
    y = layer(tf.constant(x)).numpy()
    w = layer.kernel.numpy().transpose(3, 2, 0, 1)  # PyTorch (in, out, kh, kw)
    full = np.zeros((1, 8, 8, 4), np.float32)
    for i in range(3):
        for j in range(3):
            full[0, 2 * i:2 * i + 4, 2 * j:2 * j + 4, :] += np.einsum("c,cokl->klo", x[0, i, j], w)
    np.testing.assert_allclose(y, full[:, 1:7, 1:7, :], atol=1e-5)


def test_framework1_networks():
    model = ConsistentGAN(2048, 256, 64)
    assert M.parameter_count(model) == 13536957
    z = tf.random.normal((3, 256))
    s = model.G(z, training=True)
    assert s.shape == (3, 2048)
    np.testing.assert_allclose(np.linalg.norm(s.numpy(), axis=1), 1.0, atol=1e-5)
    d = model.D(s).numpy()
    assert d.shape == (3, 1) and np.all((d > 0) & (d < 1))
    ctx = model.ctx_encoder(tf.random.normal((3, 64, 64, 3)), training=True).numpy()
    assert ctx.shape == (3, 256) and np.all((ctx > 0) & (ctx < 1))
    x = model.decoder(model.proj(s, ctx), training=True).numpy()
    assert x.shape == (3, 64, 64, 3) and x.min() >= -1 and x.max() <= 1
