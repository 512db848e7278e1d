"""Generators behind the LatentCLR interface (spec §5, §11.1-11.2; acceptance checks 15, 28, 29 at toy size).

Pre-trained weights cannot be downloaded here, so every loader is tested on small networks of the published
layouts written by the test as PyTorch files (zip and legacy format, via common.torchfile) or
.npz files; layouts are cross-checked against NumPy references written in PyTorch's NCHW convention.
"""

import json
import math
import pickle
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common import torchfile
from common.errors import UsageError
from latentclr.generators import imagenet, locate
from latentclr.generators.biggan import BigGANGenerator, SelfAttn, truncation_stats
from latentclr.generators.keras_generator import KerasGenerator
from latentclr.generators.ops import SNConv2d, upfirdn2d
from latentclr.generators.stylegan import StyleGANGenerator
from latentclr.generators.stylegan2 import ModulatedConv2d, StyleGAN2Generator
from latentclr.testing import TINY_BIGGAN, TINY_STYLEGAN, TINY_STYLEGAN2, toy_generator

ROOT = Path(__file__).resolve().parent.parent


def conv2d_nchw(x, w, pad):
    """NumPy cross-correlation in PyTorch's layout: x [B, C, H, W], w [O, C, kh, kw]."""
    b, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((b, o, h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", xp[:, :, i: i + kh, j: j + kw], w)
    return out


def nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


# ---------------------------------------------------------------------------------------------------
# PyTorch file reader / writer


@pytest.mark.parametrize("legacy", [False, True])
def test_torchfile_round_trip(tmp_path, legacy):
    obj = {"g_ema": {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(7, np.int64)},
           "latent_avg": np.ones(4, np.float16), "iteration": 5, "nested": [1.5, None, "x", (1, 2)]}
    path = torchfile.save(obj, tmp_path / "f.pt", legacy=legacy)
    back = torchfile.load(path)
    np.testing.assert_array_equal(back["g_ema"]["w"], obj["g_ema"]["w"])
    assert back["g_ema"]["n"].shape == () and int(back["g_ema"]["n"]) == 7
    assert back["latent_avg"].dtype == np.float16 and back["iteration"] == 5
    assert back["nested"] == [1.5, None, "x", (1, 2)]


def test_torchfile_refuses_code(tmp_path):
    path, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    command = f"touch {marker}".encode()
    with open(path, "wb") as f:  # a pickle that would run a shell command if unpickled freely
        f.write(pickle.PROTO + b"\x02" + pickle.GLOBAL + b"os\nsystem\n" + pickle.SHORT_BINUNICODE
                + bytes([len(command)]) + command + pickle.TUPLE1 + pickle.REDUCE + pickle.STOP)
    with pytest.raises(UsageError, match="refusing to load os.system"):
        torchfile.load(path)
    assert not marker.exists()
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(UsageError):
        torchfile.load(tmp_path / "text.pt")


# ---------------------------------------------------------------------------------------------------
# BigGAN-deep


def tiny_biggan(**kw):
    keras.utils.set_random_seed(0)
    return BigGANGenerator(config=dict(TINY_BIGGAN), class_name=3, **kw)


def test_biggan_structure_and_names():
    g = tiny_biggan()
    assert g.n_latent() == 5  # len(config.layers) + 1
    z = tf.constant(g.sample_latent(2, seed=1))
    assert g.partial_forward(z, "generator.gen_z").shape == (2, 4, 4, 64)
    assert g.partial_forward(z, "generator.layers.0").shape == (2, 8, 8, 32)
    assert g.partial_forward(z, "generator.layers.1").shape == (2, 8, 8, 32)  # the attention block
    assert g.partial_forward(z, "generator.layers.4.conv_1").shape == (2, 32, 32, 4)  # suffix ignored
    # an unknown name runs len(config.layers) = 4 of the 5 modules (the original's off-by-one, spec §10 #9)
    np.testing.assert_array_equal(g.partial_forward(z, "anything"), g.partial_forward(z, "generator.layers.3"))
    image = g(z).numpy()
    assert image.shape == (2, 32, 32, 3) and image.min() >= 0.0 and image.max() <= 1.0
    # per-block latents: changing only latent 2 leaves gen_z and block 0 untouched
    other = [z] * 5
    other[2] = z + 1.0
    np.testing.assert_array_equal(g.partial_forward(other, "generator.layers.0"),
                                  g.partial_forward(z, "generator.layers.0"))
    assert not np.allclose(g.partial_forward(other, "generator.layers.2"), g.partial_forward(z, "generator.layers.2"))
    with pytest.raises(UsageError, match="generator.layers"):
        g.partial_forward(z, "generator.layers.9")


@pytest.mark.slow
def test_biggan_deep_256_structure_random_weights():
    from latentclr.generators.biggan import biggan_config

    g = BigGANGenerator(config=biggan_config(256), class_name="bulbul")
    z = tf.constant(g.sample_latent(1, seed=0))
    assert g.n_latent() == 13
    assert g.partial_forward(z, "generator.layers.0").shape == (1, 4, 4, 2048)
    assert g.partial_forward(z, "generator.layers.4").shape == (1, 16, 16, 1024)
    assert g.partial_forward(z, "generator.layers.8").shape == (1, 64, 64, 512)  # the attention block
    image = g(z).numpy()
    assert image.shape == (1, 256, 256, 3) and -0.01 <= image.min() and image.max() <= 1.01


def test_biggan_sampler_is_truncated_normal():
    g = BigGANGenerator(config=dict(TINY_BIGGAN, z_dim=128), class_name=0, truncation=0.4)
    z = g.sample_latent(64, seed=3)
    assert z.shape == (64, 128) and z.dtype == np.float32
    assert np.abs(z).max() <= 0.8 and np.abs(z).max() > 0.7


def test_truncation_statistics_weights_are_swapped():
    running = tf.constant(np.arange(51, dtype=np.float32)[:, None] * 10.0)
    assert float(truncation_stats(running, 1.0, 0.02)[0]) == 500.0
    coef, start = math.modf(0.025 / 0.02)
    # row `start` gets weight coef (not 1 - coef), as pytorch_pretrained_biggan computes it
    np.testing.assert_allclose(float(truncation_stats(running, 0.025, 0.02)[0]),
                               10 * start * coef + 10 * (start + 1) * (1 - coef), rtol=1e-6)


def test_biggan_weights_round_trip(tmp_path):
    g = tiny_biggan()
    state = g.model.export_torch()
    assert "generator.layers.1.snconv1x1_theta.weight_orig" in state and "embeddings.weight" in state
    assert state["generator.layers.0.conv_1.weight_orig"].shape == (16, 16, 3, 3)  # (out, in, kh, kw)
    assert state["generator.layers.0.conv_3.weight_orig"].shape == (32, 16, 1, 1)
    z = tf.constant(g.sample_latent(2, seed=4))
    reference = g(z).numpy()
    # the published pytorch_model.bin files are in the legacy format; .npz is the converted alternative
    torchfile.save(state, tmp_path / "pytorch_model.bin", legacy=True)
    np.savez(tmp_path / "pytorch_model.npz", **state)
    for name in ("pytorch_model.bin", "pytorch_model.npz"):
        keras.utils.set_random_seed(1)
        loaded = BigGANGenerator(config=dict(TINY_BIGGAN), class_name=3, weights=str(tmp_path / name))
        np.testing.assert_allclose(loaded(z), reference, atol=1e-5)
    del state["generator.gen_z.bias"]
    torchfile.save(state, tmp_path / "broken.bin")
    with pytest.raises(UsageError, match="generator.gen_z.bias"):
        BigGANGenerator(config=dict(TINY_BIGGAN), class_name=3, weights=str(tmp_path / "broken.bin"))


def test_spectral_conv_matches_numpy_in_torch_layout():
    rng = np.random.RandomState(5)
    w, u, v = rng.randn(4, 3, 3, 3), rng.randn(4), rng.randn(27)
    conv = SNConv2d(3, 4, 3, name="c")
    bias = rng.randn(4)
    conv.load_torch({"weight_orig": w, "weight_u": u, "weight_v": v, "bias": bias})
    x = rng.randn(2, 3, 5, 5)
    sigma = u @ (w.reshape(4, -1) @ v)
    expected = conv2d_nchw(x, w / sigma, 1) + bias[None, :, None, None]
    np.testing.assert_allclose(conv(tf.constant(nhwc(x), tf.float32)), nhwc(expected), atol=1e-4)


def test_self_attention_matches_numpy():
    rng = np.random.RandomState(6)
    ch, h = 16, 4
    weights = {name: rng.randn(o, i, 1, 1) * 0.3 for name, o, i in
               [("snconv1x1_theta", 2, 16), ("snconv1x1_phi", 2, 16), ("snconv1x1_g", 8, 16),
                ("snconv1x1_o_conv", 16, 8)]}
    state = {"gamma": np.array([0.7])}
    for name, w in weights.items():
        u = rng.randn(w.shape[0])
        v = w.reshape(w.shape[0], -1).T @ u
        v /= (v @ v)  # sigma = 1: the effective weight is weight_orig itself
        state.update({f"{name}.weight_orig": w, f"{name}.weight_u": u, f"{name}.weight_v": v})
    attn = SelfAttn(ch, name="a")
    attn.load_torch(state)
    x = rng.randn(1, ch, h, h)

    def conv1(x, w):
        return np.einsum("bchw,oc->bohw", x, w[:, :, 0, 0])

    def pool(t):
        return t.reshape(t.shape[0], t.shape[1], h // 2, 2, h // 2, 2).max(axis=(3, 5))

    theta = conv1(x, weights["snconv1x1_theta"]).reshape(1, 2, h * h)
    phi = pool(conv1(x, weights["snconv1x1_phi"])).reshape(1, 2, h * h // 4)
    logits = theta.transpose(0, 2, 1) @ phi
    att = np.exp(logits - logits.max(-1, keepdims=True))
    att /= att.sum(-1, keepdims=True)
    g = pool(conv1(x, weights["snconv1x1_g"])).reshape(1, 8, h * h // 4)
    o = conv1((g @ att.transpose(0, 2, 1)).reshape(1, 8, h, h), weights["snconv1x1_o_conv"])
    np.testing.assert_allclose(attn(tf.constant(nhwc(x), tf.float32)), nhwc(x + 0.7 * o), atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# StyleGAN2 / StyleGAN


def test_sampler_parity_with_the_original():
    np.random.seed(0)
    assert np.random.randint(np.iinfo(np.int32).max) == 209652396
    np.random.seed(0)
    g = StyleGAN2Generator(use_w=False, **TINY_STYLEGAN2)
    z = g.sample_latent(2)
    np.testing.assert_allclose(z[0, :4], [1.98197037, -0.14890661, 0.31013361, 0.05382797], atol=1e-6)


def test_stylegan2_layer_names():
    keras.utils.set_random_seed(0)
    g = StyleGAN2Generator(**TINY_STYLEGAN2)
    z = tf.constant(g.sample_latent(2, seed=0))
    assert g.partial_forward(z, "conv1").shape == (2, 4, 4, 16)
    assert g.partial_forward(z, "style").shape == (2, g.n_latent(), 16) and g.n_latent() == 8
    assert g.partial_forward(z, "to_rgb1").shape == (2, 4, 4, 3)
    assert g.partial_forward(z, "to_rgbs.0").shape == (2, 8, 8, 16)  # conv features, not RGB (spec §10 #10)
    np.testing.assert_array_equal(g.partial_forward(z, "convs.10"), g.partial_forward(z, "convs.1"))
    with pytest.raises(UsageError, match="not encountered"):
        g.partial_forward(z, "mapping")
    exact = StyleGAN2Generator(exact_layer_names=True, **TINY_STYLEGAN2)
    with pytest.raises(UsageError, match="convs.10"):
        exact.partial_forward(z, "convs.10")
    image = g(z).numpy()
    assert image.shape == (2, 32, 32, 3) and np.isfinite(image).all()


def test_stylegan2_truncation_only_on_images(tmp_path):
    keras.utils.set_random_seed(2)
    g = StyleGAN2Generator(**TINY_STYLEGAN2)
    state = g.model.export_torch()
    avg = np.random.RandomState(0).randn(16).astype(np.float32)
    torchfile.save({"g_ema": state, "latent_avg": avg}, tmp_path / "sg2.pt", legacy=True)
    loaded = StyleGAN2Generator(weights=str(tmp_path / "sg2.pt"), **{**TINY_STYLEGAN2, "random_init": False})
    w = tf.constant(g.sample_latent(2, seed=1))
    np.testing.assert_allclose(loaded.get_features(w), g.get_features(w), atol=1e-5)  # features: no truncation
    truncated = avg + 0.7 * (w - avg)
    np.testing.assert_allclose(loaded(w), 0.5 * (loaded._synthesis(loaded._latent([truncated]), None) + 1),
                               atol=1e-5)


def test_modulated_conv_matches_numpy_grouped_conv():
    rng = np.random.RandomState(7)
    layer = ModulatedConv2d(3, 2, 3, 4, name="m")
    weight, mod_w, mod_b = rng.randn(1, 2, 3, 3, 3), rng.randn(3, 4), rng.randn(3)
    layer.load_torch({"weight": weight, "modulation.weight": mod_w, "modulation.bias": mod_b})
    x, style = rng.randn(2, 3, 5, 5), rng.randn(2, 4)
    s = style @ (mod_w / 2.0).T + mod_b  # EqualLinear: scale 1/sqrt(4), lr_mul 1
    expected = []
    for b in range(2):
        w = weight[0] / np.sqrt(27) * s[b][None, :, None, None]
        w = w / np.sqrt((w ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        expected.append(conv2d_nchw(x[b: b + 1], w, 1)[0])
    got = layer(tf.constant(nhwc(x), tf.float32), style=tf.constant(style, tf.float32))
    np.testing.assert_allclose(got, nhwc(np.stack(expected)), atol=1e-4)


def test_upfirdn2d_upsample_matches_numpy():
    x = np.random.RandomState(8).randn(1, 3, 3, 1).astype(np.float32)
    kernel = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(np.float32) / 64 * 4
    up = np.zeros((1, 6, 6, 1), np.float32)
    up[:, ::2, ::2] = x
    padded = np.pad(up, ((0, 0), (2, 1), (2, 1), (0, 0)))
    ref = np.zeros((6, 6))
    for i in range(6):
        for j in range(6):
            ref[i, j] = (padded[0, i: i + 4, j: j + 4, 0] * kernel[::-1, ::-1]).sum()
    np.testing.assert_allclose(upfirdn2d(tf.constant(x), kernel, up=2, pad=(2, 1))[0, :, :, 0], ref, atol=1e-5)


def test_stylegan_v1_names_and_weights(tmp_path):
    keras.utils.set_random_seed(3)
    g = StyleGANGenerator(**TINY_STYLEGAN)
    z = tf.constant(g.sample_latent(2, seed=0))
    assert g.n_latent() == 18
    assert g.partial_forward(z, "g_mapping").shape == (2, 18, 16)
    assert g.partial_forward(z, "g_synthesis.blocks.1").shape == (2, 16, 16, 8)  # substring: the 16x16 block
    assert g.partial_forward(z, "conv1").shape == (2, 8, 8, 16)
    with pytest.raises(UsageError, match="not encountered"):
        g.partial_forward(z, "g_synthesis.torgb")
    state = g.model.export_torch()
    assert state["g_synthesis.blocks.4x4.const"].shape == (1, 16, 4, 4)
    assert "g_synthesis.blocks.32x32.epi2.style_mod.lin.weight" in state
    torchfile.save(state, tmp_path / "sg.pt")
    loaded = StyleGANGenerator(weights=str(tmp_path / "sg.pt"), **{**TINY_STYLEGAN, "random_init": False})
    np.testing.assert_allclose(loaded(z), g(z), atol=1e-5)


def test_weights_missing_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("GANCONTROL_CHECKPOINT_DIR", str(tmp_path))
    cfg = {"generator": {"_target_": "colat.generators.BigGANGenerator", "resolution": 256}}
    with pytest.raises(UsageError, match="biggan-deep-256/pytorch_model.bin; download https://s3"):
        locate.preflight(cfg)
    cfg = {"generator": {"_target_": "colat.generators.StyleGAN2Generator", "class_name": "ffhq"}}
    with pytest.raises(UsageError, match="stylegan2_ffhq_1024.pt; download https://drive.google.com"):
        locate.preflight(cfg)
    with pytest.raises(UsageError, match="not a StyleGAN2 class"):
        locate.preflight({"generator": {"_target_": "colat.generators.StyleGAN2Generator", "class_name": "dogs"}})


def test_imagenet_names():
    assert imagenet.class_index("bulbul") == 16 and imagenet.class_index("husky") == 248
    assert imagenet.class_index(207) == 207 and imagenet.class_index("golden retriever") == 207
    with pytest.raises(UsageError, match="134 .*517"):
        imagenet.class_index("crane")
    with pytest.raises(UsageError, match="not an ImageNet class"):
        imagenet.class_index("unicorn")


# ---------------------------------------------------------------------------------------------------
# Keras generators (generic and this project's)


def test_keras_generator_layers_and_latents():
    keras.utils.set_random_seed(4)
    g = KerasGenerator(toy_generator(latent_dim=8, size=16), feature_layer="conv8")
    z = tf.constant(g.sample_latent(3, seed=0))
    assert g.get_features(z).shape == (3, 8, 8, 8) and g.n_latent() == 1
    assert g(z).shape == (3, 16, 16, 3) and float(tf.reduce_min(g(z))) >= 0.0
    with pytest.raises(UsageError, match="no such layer.*fc"):
        g.partial_forward(z, "nope")
    with pytest.raises(UsageError, match="n_latent = 1"):
        g.partial_forward([z, z], "fc")
    multi = KerasGenerator(toy_generator(latent_dim=4, size=8, n_latent=3), feature_layer="cat")
    parts = [tf.fill((2, 4), float(i)) for i in range(3)]
    np.testing.assert_array_equal(multi.get_features(parts), tf.concat(parts, axis=1))


def test_keras_generator_nested_layer():
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(6, name="b")(keras.layers.Dense(5, name="a")(inner_in)),
                        name="block")
    z = keras.Input((4,))
    model = keras.Model(z, keras.layers.Dense(3, name="out")(inner(keras.layers.Dense(8, name="pre")(z))))
    g = KerasGenerator(model, feature_layer="block.a")
    x = tf.random.normal((2, 4))
    expected = inner.get_layer("a")(model.get_layer("pre")(x))
    np.testing.assert_allclose(g.get_features(x), expected, atol=1e-6)


def make_glo_run(run_dir, latent_dim=4):
    from common.training import Checkpoints
    from glo.codes import CodeTable
    from glo.models import build_generator

    generator = build_generator(latent_dim, (28, 28, 1), "MNIST")
    codes = np.random.RandomState(0).randn(20, latent_dim).astype(np.float32)
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    Checkpoints(run_dir, prefix="model", generator=generator, codes=CodeTable(codes, np.ones(20, np.int32))).save(3)
    (run_dir / "config.json").write_text(json.dumps({"dataset": "MNIST"}))
    return generator


def test_glo_run_folder_adapter(tmp_path):
    from latentclr.generators.project import ProjectGenerator

    keras.utils.set_random_seed(5)
    original = make_glo_run(tmp_path)
    g = ProjectGenerator("glo", str(tmp_path), feature_layer="deconv2", image_context=4)
    z = g.sample_latent(5, seed=1)
    assert z.shape == (5, 4) and g.latent_dim == 4
    assert g.get_features(tf.constant(z)).shape == (5, 4, 4, 50)
    np.testing.assert_allclose(g.partial_forward(tf.constant(z), "output"), original(tf.constant(z)), atol=1e-5)
    assert g(tf.constant(z[:1])).shape == (1, 28, 28, 1)
    with pytest.raises(UsageError, match="deconv1"):
        g.partial_forward(tf.constant(z), "conv9")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no checkpoint"):
        ProjectGenerator("glo", str(tmp_path / "empty"), feature_layer="deconv2")


def test_slogan_run_folder_adapter(tmp_path):
    from common.slogan.prior import GaussianMixturePrior
    from common.slogan.resnet import build_generator
    from common.training import Checkpoints
    from latentclr.generators.project import ProjectGenerator

    keras.utils.set_random_seed(6)
    generator, prior = build_generator(8, 8), GaussianMixturePrior(2, 8)
    prior.mu[1].assign(tf.fill((8,), 5.0))
    Checkpoints(tmp_path, prefix="model", generator=generator, prior=prior).save(10)
    (tmp_path / "config.json").write_text(json.dumps({"latent_dim": 8, "channels": 8, "num_cluster": 2}))
    g = ProjectGenerator("slogan", str(tmp_path), feature_layer="up1")
    z = tf.constant(g.sample_latent(4, seed=2))
    assert g.get_features(z).shape == (4, 8, 8, 8) and g(z).shape == (4, 32, 32, 3)
    one = ProjectGenerator("slogan", str(tmp_path), feature_layer="dense", class_name=1)
    assert np.abs(one.sample_latent(50, seed=0).mean() - 5.0) < 0.5  # component 1 only


def test_selfcond_run_folder_adapter(tmp_path):
    from latentclr.generators.project import ProjectGenerator
    from selfcond.config import load_config
    from selfcond.models import build_generator

    config = load_config(ROOT / "selfcond" / "configs" / "stacked_mnist" / "selfcondgan.yaml")
    config["generator"].update(nlabels=3, conditioning="embedding", kwargs={"ngf": 4, "embed_dim": 4})
    config["z_dist"]["dim"] = 8
    config["training"]["take_model_average"] = False
    keras.utils.set_random_seed(7)
    generator = build_generator(config, "generator")
    tf.train.Checkpoint(generator=generator).write(str(tmp_path / "chkpts" / "model"))
    (tmp_path / "config.json").write_text(json.dumps({"config": config}))
    g = ProjectGenerator("selfcond", str(tmp_path), feature_layer="conv1", class_name=2)
    z = tf.constant(g.sample_latent(3, seed=0))
    labels = tf.fill([3], 2)
    np.testing.assert_allclose(g(z), 0.5 * (generator(z, labels) + 1.0), atol=1e-6)
    expected = generator.get_layer("conv1")(tf.reshape(generator.fc(generator.latent_input(z, labels)),
                                                       [-1, 4, 4, 32]))
    np.testing.assert_allclose(g.get_features(z), expected, atol=1e-5)  # captured while the model runs
    with pytest.raises(UsageError, match="cluster index"):
        ProjectGenerator("selfcond", str(tmp_path), feature_layer="conv1", class_name=5)
