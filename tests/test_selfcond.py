"""Self-Conditioned GAN: configs, networks, layers, losses, clusterers, schedule, data and metrics (spec §11)."""

import copy
import gzip
import math
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UsageError
from selfcond import clusterers, layers, losses
from selfcond.config import PACKAGE_DIR, load_config
from selfcond.models import build_discriminator, build_generator, build_models, count_parameters

CIFAR_SELFCOND = "configs/cifar/selfcondgan.yaml"


def cfg(path=CIFAR_SELFCOND, **sections):
    """A config tree with some sections updated (``generator={"nlabels": 1}``)."""
    config = copy.deepcopy(load_config(path))
    for name, values in sections.items():
        config[name].update(values)
    return config


# --- §11.1-3 configs ---------------------------------------------------------------------------------


def test_cifar_selfcond_effective_tree():
    assert load_config(CIFAR_SELFCOND) == {
        "data": {"type": "cifar10", "train_dir": "data/CIFAR", "deterministic": False, "img_size": 32, "nlabels": 10},
        "generator": {"name": "dcgan_deep", "nlabels": 100, "conditioning": "embedding",
                      "kwargs": {"placeholder": "None"}},
        "discriminator": {"name": "dcgan_deep", "nlabels": 100, "conditioning": "mask",
                          "kwargs": {"pack_size": 1, "placeholder": "None"}},
        "clusterer": {"name": "selfcondgan", "nimgs": 25000,
                      "kwargs": {"num_components": -1, "placeholder": "None", "k_value": 100}},
        "z_dist": {"type": "gauss", "dim": 128},
        "training": {"out_dir": "output/cifar/selfcondgan", "gan_type": "standard", "reg_type": "none",
                     "reg_param": 0.0, "log_every": 1000, "batch_size": 64, "ntest": 128, "nworkers": 72,
                     "burnin_time": 0, "take_model_average": False, "model_average_beta": 0.999,
                     "monitoring": "tensorboard", "sample_every": 5000, "sample_nlabels": 20, "inception_every": 10000,
                     "inception_nsamples": 50000, "backup_every": 10000, "recluster_every": 25000,
                     "optimizer": "adam", "lr_g": 1e-4, "lr_d": 1e-4, "beta1": 0.0, "beta2": 0.99},
        "pretrained": {},
        "inherit_from": "configs/cifar/default.yaml",
    }
    assert isinstance(load_config(CIFAR_SELFCOND)["training"]["reg_param"], float)


def test_every_config_loads_with_its_values():
    files = sorted((PACKAGE_DIR / "configs").rglob("*.yaml"))
    assert len(files) == 23
    for path in files:
        assert "training" in load_config(path)
    reg = {p: load_config(f"configs/{p}.yaml")["training"]["reg_param"] for p in
           ("cifar/selfcondgan", "imagenet/selfcondgan", "imagenet/conditional")}
    assert reg == {"cifar/selfcondgan": 0.0, "imagenet/selfcondgan": 0.1, "imagenet/conditional": 10.0}
    assert load_config(CIFAR_SELFCOND)["training"]["recluster_every"] == 25000
    assert load_config("configs/pretrained/places/selfcondgan.yaml")["training"]["recluster_every"] == 10000
    assert load_config("configs/cifar/unconditional.yaml")["z_dist"]["dim"] == 128
    assert load_config("configs/imagenet/selfcondgan.yaml")["z_dist"]["dim"] == 256
    places = load_config("configs/places/unconditional.yaml")
    assert (places["generator"]["conditioning"], places["discriminator"]["nlabels"]) == ("embedding", 1)


def test_default_config_alone_has_an_unknown_model():
    with pytest.raises(UsageError, match="unknown model 'resnet'"):
        build_models(load_config("configs/default.yaml"))


def test_missing_config_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


# --- §11.4-7, 11, 32 networks ----------------------------------------------------------------------------


def test_parameter_counts_dcgan_and_2d():
    uncond = {"nlabels": 1, "conditioning": "unconditional"}
    assert count_parameters(build_generator(cfg(generator=uncond))) == 3812355
    assert count_parameters(build_generator(cfg(generator={"nlabels": 10}))) == 5912067
    assert count_parameters(build_generator(cfg())) == 5935107
    assert count_parameters(build_discriminator(cfg(discriminator=uncond))) == 2935873
    assert count_parameters(build_discriminator(cfg())) == 3746980
    shallow = "configs/stacked_mnist/selfcondgan.yaml"
    assert count_parameters(build_discriminator(cfg(shallow, discriminator=uncond))) == 2760513
    assert count_parameters(build_discriminator(cfg(shallow))) == 2963364
    assert count_parameters(build_discriminator(cfg(shallow, discriminator={"nlabels": 1000}))) == 4807464
    from selfcond.mix2d.models import build_models as build_2d

    g2, d2 = build_2d(50)
    assert (count_parameters(g2), count_parameters(d2)) == (500802, 415050)


def _zero_init(monkeypatch):
    """Build big networks fast: every PyTorch-uniform initializer becomes zeros (shapes are what count)."""
    monkeypatch.setattr(layers, "TorchUniform", lambda fan_in: keras.initializers.Zeros())


@pytest.mark.slow
def test_parameter_counts_resnet2(monkeypatch):
    _zero_init(monkeypatch)
    imagenet = "configs/imagenet/selfcondgan.yaml"
    assert count_parameters(build_generator(cfg(imagenet))) == 100305347
    assert count_parameters(build_discriminator(cfg(imagenet))) == 93514276
    uncond = {"nlabels": 1, "conditioning": "unconditional"}
    assert count_parameters(build_generator(cfg(imagenet, generator=uncond))) == 96085443
    assert count_parameters(build_discriminator(cfg(imagenet, discriminator=uncond))) == 91892161


def test_resnet2_shapes_at_128px_with_narrow_filters():
    config = cfg("configs/imagenet/selfcondgan.yaml", generator={"kwargs": {"nfilter": 2}},
                 discriminator={"kwargs": {"nfilter": 2}})
    g, d = build_models(config)
    x = g(tf.random.normal([2, 256]), tf.constant([0, 99]))
    assert x.shape == (2, 128, 128, 3)
    assert d.features(x).shape == (2, 16 * 2 * 4 * 4)  # 16 nf s0^2: 16384 at nf = 64
    assert d(x, tf.constant([0, 5])).shape == (2,)


def test_dcgan_shapes_and_ranges():
    g, d = build_models(cfg())
    x = g(tf.random.normal([3, 128]) * 5, tf.constant([0, 50, 99]))
    assert x.shape == (3, 32, 32, 3)
    assert float(tf.reduce_max(tf.abs(x))) < 1.0
    assert d.features(x).shape == (3, 8192)
    assert d(x, tf.constant([0, 50, 99])).shape == (3,)
    shallow = build_discriminator(cfg("configs/stacked_mnist/selfcondgan.yaml"))
    assert shallow.features(x).shape == (3, 2048)
    summed = build_discriminator(cfg(discriminator={"kwargs": {"features": "summed"}}))
    assert summed.features(x).shape == (3, 512)


def test_2d_shapes():
    from selfcond.mix2d.models import build_models as build_2d

    g, d = build_2d(50)
    points = g(tf.random.normal([4, 2]), tf.constant([0, 1, 2, 49]), training=True)
    assert points.shape == (4, 2)
    assert d.features(points).shape == (4, 200)
    assert d(points, tf.constant([0, 1, 2, 49])).shape == (4,)


def test_mask_head_selects_the_label_logit_and_clamps():
    d = build_discriminator(cfg())
    x = tf.random.normal([4, 32, 32, 3])
    y = np.array([0, 7, 99, 150])
    feats = d.features(x).numpy()
    kernel, bias = (v.numpy() for v in d.fc_out.fc.weights)
    expected = (feats @ kernel + bias)[np.arange(4), np.minimum(y, 99)]
    np.testing.assert_allclose(d(x, tf.constant(y)).numpy(), expected, rtol=1e-4, atol=1e-4)
    g = build_generator(cfg())
    z = tf.random.normal([2, 128])
    np.testing.assert_allclose(g(z, tf.constant([99, 99])).numpy(), g(z, tf.constant([99, 250])).numpy())


def test_generator_input_is_z_and_a_unit_embedding():
    g = build_generator(cfg())
    z = tf.random.normal([5, 128])
    inputs = g.latent_input(z, tf.constant([0, 1, 2, 3, 99])).numpy()
    assert inputs.shape == (5, 384)
    np.testing.assert_allclose(inputs[:, :128], z.numpy())
    np.testing.assert_allclose(np.linalg.norm(inputs[:, 128:], axis=1), 1.0, rtol=1e-5)


def test_initialisers_follow_pytorch():
    g = build_generator(cfg())
    fc_kernel = g.fc.kernel.numpy()
    assert fc_kernel.shape == (384, 8192) and np.abs(fc_kernel).max() <= 1 / math.sqrt(384)
    assert np.abs(fc_kernel).max() > 0.9 / math.sqrt(384)
    assert np.abs(g.fc.bias.numpy()).max() <= 1 / math.sqrt(384)
    conv_t = g.conv1.kernel.numpy()  # ConvTranspose 512 -> 256: fan_in = 256 * 16
    assert conv_t.shape == (4, 4, 256, 512) and np.abs(conv_t).max() <= 1 / 64 and np.abs(conv_t).max() > 0.9 / 64
    embedding = g.get_latent.embedding.embeddings.numpy()
    assert abs(embedding.std() - 1.0) < 0.05


def test_no_keras_defaults_where_pytorch_differs():
    g, d = build_models(cfg("configs/stacked_mnist/selfcondgan.yaml"))
    seen = set()
    for model in (g, d):
        for layer in model._flatten_layers(include_self=False, recursive=True):
            config = layer.get_config()
            if isinstance(layer, keras.layers.LeakyReLU):
                assert config["negative_slope"] in (0.1, 0.2)
            if isinstance(layer, keras.layers.BatchNormalization):
                raise AssertionError("Keras BatchNormalization (momentum 0.99, eps 1e-3) must not be used")
            if isinstance(layer, layers.TorchBatchNorm):
                assert (config["momentum"], config["epsilon"]) == (0.1, 1e-5)
            for key in ("kernel_initializer", "bias_initializer"):
                if key in config:
                    assert config[key]["class_name"] == "RandomUniform", (layer.name, key)
            seen.add(type(layer).__name__)
    assert {"LeakyReLU", "TorchBatchNorm", "Conv2D", "Conv2DTranspose", "Dense"} <= seen


# --- §11.8-10 layers ---------------------------------------------------------------------------------------


def test_conv_transpose_matches_the_pytorch_definition():
    rng = np.random.default_rng(0)
    c_in, c_out, h = 3, 2, 3
    x = rng.normal(size=(c_in, h, h)).astype(np.float32)
    w = rng.normal(size=(c_in, c_out, 4, 4)).astype(np.float32)  # PyTorch layout [in, out, kh, kw]
    full = np.zeros((c_out, 2 * h + 2, 2 * h + 2))
    for c in range(c_in):
        for i in range(h):
            for j in range(h):
                full[:, 2 * i:2 * i + 4, 2 * j:2 * j + 4] += x[c, i, j] * w[c]
    reference = full[:, 1:-1, 1:-1]  # padding 1 crops one row/column at each border
    layer = layers.conv_transpose(c_out)
    layer.build((1, h, h, c_in))
    layer.kernel.assign(np.transpose(w, (2, 3, 1, 0)))  # -> [kh, kw, out, in], no spatial flip
    layer.bias.assign(np.zeros(c_out, np.float32))
    out = layer(x.transpose(1, 2, 0)[None]).numpy()[0].transpose(2, 0, 1)
    np.testing.assert_allclose(out, reference, atol=1e-5)


def test_resnet_pool_counts_the_padding():
    from selfcond.models import ResNetDiscriminator

    d = ResNetDiscriminator(1, 32, "unconditional", nfilter=1)
    out = d.pool(d.pool_pad(tf.ones([1, 4, 4, 1]))).numpy()[0, :, :, 0]
    np.testing.assert_allclose(out, [[4 / 9, 6 / 9], [6 / 9, 1.0]], rtol=1e-6)


def test_batch_norm_has_pytorch_semantics():
    bn = layers.TorchBatchNorm()
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(8, 5, 5, 4)).astype(np.float32)
    out = bn(x, training=True).numpy()
    m, v = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * m, rtol=1e-5)
    n = 8 * 5 * 5
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 + 0.1 * v * n / (n - 1), rtol=1e-5)
    np.testing.assert_allclose(out, (x - m) / np.sqrt(v + 1e-5), atol=1e-4)
    before = bn.moving_mean.numpy().copy()
    bn(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), before)


# --- §11.12-14 losses, R1, EMA ----------------------------------------------------------------------------


def test_gan_losses_at_zero_logits():
    zeros = tf.zeros([6])
    d_loss = losses.adversarial_loss(zeros, 1.0) + losses.adversarial_loss(zeros, 0.0)
    np.testing.assert_allclose(float(d_loss), 2 * math.log(2), rtol=1e-6)
    np.testing.assert_allclose(float(losses.adversarial_loss(zeros, 1.0)), 0.693147, rtol=1e-5)
    np.testing.assert_allclose(float(losses.adversarial_loss(tf.constant([1.0, 3.0]), 1.0, "wgan")), 2.0)


def test_r1_of_a_linear_discriminator():
    gamma = 10.0
    w = tf.Variable(np.random.default_rng(2).normal(size=(5,)).astype(np.float32))
    x = tf.random.normal([4, 5])
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(x)
            total = tf.reduce_sum(tf.linalg.matvec(x, w) + 0.5)
        grads = inner.gradient(total, x)
        reg = losses.gradient_penalty(losses.grad_squared_norm(grads), gamma)
    np.testing.assert_allclose(float(reg), gamma * float(tf.reduce_sum(w * w)), rtol=1e-5)
    np.testing.assert_allclose(outer.gradient(reg, w).numpy(), 2 * gamma * w.numpy(), rtol=1e-5)


def test_train_step_ema_and_discriminator_bn_in_training_mode():
    """EMA of G's parameters only (spec §11.14), and D runs in training mode in both steps (§11.32): its
    BatchNorm statistics move in the G step too, the original never freezes them."""
    from selfcond.training import build_optimizer, make_train_step

    config = cfg("configs/stacked_mnist/selfcondgan.yaml", generator={"kwargs": {"ngf": 2}},
                 discriminator={"kwargs": {"ndf": 2}})
    g, d = build_models(config)
    ema = build_generator(config, "ema")
    before = [v.numpy().copy() for v in ema.weights]
    calls = []
    original = d.call

    def spy(x, y, training=False):
        calls.append(training)
        return original(x, y, training=training)

    d.call = spy
    g_opt, d_opt = build_optimizer("adam", 1e-3), build_optimizer("adam", 1e-3)
    g_opt.build(g.trainable_variables)
    d_opt.build(d.trainable_variables)
    step = make_train_step(g, d, g_opt, d_opt, global_batch=4, ema_generator=ema, ema_beta=0.999)
    step(tf.random.normal([4, 32, 32, 3]), tf.constant([0, 1, 2, 3]), tf.random.normal([4, 128]))
    assert calls == [True, True, True]  # real and fake in the D step, fake in the G step
    trainable = {id(v) for v in ema.trainable_variables}
    for old, new, var in zip(before, ema.weights, g.weights):
        if id(new) in trainable:
            np.testing.assert_allclose(new.numpy(), 0.999 * old + 0.001 * var.numpy(), rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(new.numpy(), old)  # BN statistics are not averaged


# --- §11.15-19 clusterers -----------------------------------------------------------------------------------


def test_hungarian_matching_example():
    mapping = clusterers.hungarian_mapping(np.array([2, 2, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2, 2]), 3)
    assert mapping.tolist() == [1, 2, 0]
    assert mapping[np.array([2, 2, 0, 0, 1, 1])].tolist() == [0, 0, 1, 1, 2, 2]


def test_reinitialisation_uses_label_means():
    centers = clusterers.initial_centers(np.array([[0.0], [2.0], [10.0], [12.0]]), np.array([1, 1, 0, 0]), 2,
                                         np.random.default_rng(0))
    np.testing.assert_allclose(centers, [[11.0], [1.0]])
    starved = clusterers.initial_centers(np.array([[0.0], [2.0]]), np.array([0, 0]), 2, np.random.default_rng(0))
    assert starved[1, 0] in (0.0, 2.0)  # an empty label takes a random feature row


class StubSource:
    """A 'discriminator' whose features are a fixed function of the input rows."""

    feature_dim = 2

    def __init__(self, transform):
        self.transform = transform

    def features(self, x, training=False):
        return tf.cast(self.transform(tf.convert_to_tensor(x)), tf.float32)  # traceable: used in tf.functions


class StubSnapshot:
    def __init__(self):
        self.source = None

    def update(self, discriminator):
        self.source = discriminator

    def features(self, x):
        return self.source.features(x)


def test_selfcondgan_keeps_labels_through_reclustering():
    rng = np.random.default_rng(0)
    blob = np.repeat(np.arange(3), 30)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centers[blob] + rng.normal(0, 0.3, size=(90, 2))).astype(np.float32)
    clusterer = clusterers.build_clusterer("selfcondgan", k_value=3, x_cluster=x, snapshot=StubSnapshot(),
                                           feature_dim=2, seed=0)
    clusterer.recluster(StubSource(lambda a: a))
    first = clusterer.x_labels.numpy()
    assert sorted(set(zip(blob.tolist(), first.tolist()))) == sorted(set(zip(range(3), first[::30].tolist())))
    assert len(set(first[::30].tolist())) == 3  # a permutation of the blob ids
    clusterer.recluster(StubSource(lambda a: a[:, ::-1] * 2.0 + 5.0))  # features permuted and shifted
    np.testing.assert_array_equal(clusterer.x_labels.numpy(), first)
    np.testing.assert_array_equal(clusterer.get_labels(tf.constant(x), None).numpy(), first)
    assert clusterer.get_label_distribution().sum() == 90
    np.testing.assert_allclose(clusterer.sampling_distribution(100), [1 / 3] * 3)


def test_cluster_features_in_each_mode():
    """``feature_mode`` (eager, tf.function, xla; the benchmark's switch) changes how D runs, not the features."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(250, 2)).astype(np.float32)  # chunks of 100, 100 and 50
    w = tf.constant(rng.normal(size=(2, 2)), tf.float32)
    eager_calls = []

    def transform(a):
        eager_calls.append(tf.executing_eagerly())
        return tf.tanh(tf.matmul(a, w))

    clusterer = clusterers.build_clusterer("selfcondgan", k_value=3, x_cluster=x, snapshot=StubSnapshot(),
                                           feature_dim=2, seed=0)
    clusterer.snapshot.update(StubSource(transform))
    features = {}
    for mode in ("eager", "tf.function", "xla"):
        clusterer.feature_mode = mode
        eager_calls.clear()
        features[mode] = clusterer.cluster_features()
        assert eager_calls and all(eager_calls) == (mode == "eager") and any(eager_calls) == (mode == "eager")
    np.testing.assert_allclose(features["eager"], np.tanh(x @ w.numpy()), rtol=1e-5, atol=1e-6)
    for mode in ("tf.function", "xla"):
        np.testing.assert_allclose(features[mode], features["eager"], rtol=1e-5, atol=1e-6)


def test_random_and_supervised_labels():
    rand = clusterers.build_clusterer("random_labels", k_value=2, seed=3)
    draws = rand.get_labels(tf.zeros([1000, 2]), None).numpy()
    assert draws.shape == (1000,) and set(draws.tolist()) == {0, 1}
    sup = clusterers.build_clusterer("supervised", k_value=-1)
    assert sup.get_labels(tf.zeros([3, 2]), tf.constant([4, 1, 9])).numpy().tolist() == [4, 1, 9]
    with pytest.raises(UsageError, match="unknown clusterer"):
        clusterers.build_clusterer("burnin")


def test_online_macqueen_update():
    centers = clusterers.macqueen_update(np.zeros((1, 1)), np.zeros(1, np.int64), np.array([[2.0], [4.0]]),
                                         np.array([0, 0]))
    np.testing.assert_allclose(centers, [[3.0]])  # 0 -> 2 (first item replaces it) -> 3
    one = clusterers.macqueen_update(np.zeros((1, 1)), np.zeros(1, np.int64), np.array([[2.0]]), np.array([0]))
    np.testing.assert_allclose(one, [[2.0]])


def test_online_clusterer_lifecycle():
    x = np.concatenate([np.zeros((20, 2)), np.full((20, 2), 10.0)]).astype(np.float32)
    live = StubSource(lambda a: a)
    online = clusterers.build_clusterer("online", discriminator=live, k_value=2, x_cluster=x,
                                        snapshot=StubSnapshot(), feature_dim=2, seed=0)
    online.recluster(live)  # k-means++ on the snapshot
    labels = online.x_labels.numpy().copy()
    online.recluster(live)  # burn-in: warm-started refit on the live D
    assert bool(online.burned_in.numpy()) and bool(online.live.numpy())
    online.recluster(live, x_batch=tf.constant(np.full((4, 2), 10.0, np.float32)))
    assert online.counts.numpy().sum() == 4
    np.testing.assert_array_equal(online.x_labels.numpy(), labels)  # stale after the first clustering


# --- §11.20 schedule -------------------------------------------------------------------------------------


def test_cifar_schedule():
    from selfcond.trainer import due_events, total_iterations

    training = load_config(CIFAR_SELFCOND)["training"]
    total = total_iterations(250, 781)
    assert total == 196031
    reclusters, backups = [], []
    for it in range(total):
        due = due_events(it, training)
        if due["recluster"]:
            reclusters.append(it)
        if due["backup"]:
            backups.append(it)
    assert reclusters == list(range(25000, 175001, 25000))
    assert backups == list(range(0, 190001, 10000))
    assert total_iterations(250, 781, exact_epochs=True) == 250 * 781  # --exact_epochs (spec §10.5 fix)
    assert total_iterations(0, 781) == 781 and total_iterations(0, 781, exact_epochs=True) == 0


# --- §11.21-23 data ---------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def write_tiny_mnist(folder: Path, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic MNIST in the official IDX layout (gzipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):  # a bar whose position encodes the digit, plus noise
        images[i, 4 + 2 * y:6 + 2 * y, 4:24] = 255
        images[i] = np.maximum(images[i], rng.integers(0, 40, (28, 28)))
    _write_idx(folder / "train-images-idx3-ubyte.gz", images, 2051)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", labels, 2049)
    return images, labels


def test_stacked_mnist_from_idx(tmp_path):
    from selfcond.data import Loader, build_dataset

    _, labels = write_tiny_mnist(tmp_path / "mnist")
    config = cfg("configs/stacked_mnist/selfcondgan.yaml", data={"train_dir": str(tmp_path / "mnist")})
    dataset = build_dataset(config, seed=1)
    assert len(dataset) == 100000
    triples = dataset.stacked.triples
    np.testing.assert_array_equal(dataset.labels[:50], 100 * labels[triples[:50, 0]] + 10 * labels[triples[:50, 1]]
                                  + labels[triples[:50, 2]])
    x, y = Loader(dataset, 16, seed=0).batch(3)
    assert x.shape == (16, 32, 32, 3) and x.min() >= -1.0 and x.max() <= 1.0
    np.testing.assert_allclose(x * 127.5 + 127.5, np.round(x * 127.5 + 127.5), atol=1e-3)  # no noise


def test_cifar_pipeline_and_folder_labels(tmp_path):
    from PIL import Image

    from selfcond.data import CIFAR_CLASSES, Loader, build_dataset

    rng = np.random.default_rng(0)
    for label, name in enumerate(CIFAR_CLASSES[:3]):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(6):
            image = np.zeros((32, 32, 3), np.uint8)
            image[:, :16] = 40 * label + 10  # left half bright: flips are visible
            image[:, 16:] = rng.integers(150, 250)
            Image.fromarray(image).save(tmp_path / "train" / name / f"{i}.png")
    config = cfg(data={"train_dir": str(tmp_path)})
    dataset = build_dataset(config)
    assert sorted(set(dataset.labels.tolist())) == [0, 1, 2]
    assert dataset.labels[0] == 0 and dataset.labels[-1] == 2  # airplane = 0, bird = 2
    x, _ = Loader(dataset, 18, seed=0).first(18)
    assert x.min() >= -1.0 and x.max() < 1.0 + 1.0 / 128
    flipped = np.mean(x[:, :, 0, 0] > x[:, :, -1, 0])
    assert 0.15 < 1.0 - flipped < 0.85  # about half the images are mirrored
    config["data"]["deterministic"] = True
    xd, _ = Loader(build_dataset(config), 18, seed=0).first(18)
    np.testing.assert_allclose((xd + 1) * 127.5, np.round((xd + 1) * 127.5), atol=1e-3)


def test_2d_mixtures():
    from selfcond.mix2d.data import MixtureSampler, grid_means, ring_means

    np.testing.assert_allclose(ring_means()[:3], [[0, 2], [math.sqrt(2), math.sqrt(2)], [2, 0]], atol=1e-12)
    assert grid_means()[5 * 1 + 3].tolist() == [-2.0, 2.0]
    draws = MixtureSampler(0)
    for kind, var, means in (("ring", 1e-4, ring_means()), ("grid", 0.0025, grid_means())):
        points, labels = draws.sample(kind, 100000, var)
        std = (points - means[labels]).std(axis=0)
        np.testing.assert_allclose(std, math.sqrt(var), rtol=0.05)


# --- §11.24-31 metrics ---------------------------------------------------------------------------------------


def test_2d_metrics():
    from selfcond.mix2d.data import grid_means, ring_means
    from selfcond.mix2d.evaluation import percent_good

    equal = np.repeat(ring_means(), 10, axis=0)
    prop, modes, kl = percent_good(equal, "ring", 1e-4)
    assert (prop, modes) == (1.0, 8) and abs(kl) < 1e-12
    _, modes, kl = percent_good(np.repeat(ring_means()[:1], 50, axis=0), "ring", 1e-4)
    assert modes == 1 and abs(kl - math.log(8)) < 1e-6
    _, _, kl = percent_good(np.repeat(grid_means()[:1], 50, axis=0), "grid", 0.0025)
    assert abs(kl - math.log(25)) < 1e-6
    prop, modes, _ = percent_good(equal + np.array([3.1 * 0.01, 0.0]), "ring", 1e-4)
    assert (prop, modes) == (0.0, 0)


def test_reverse_kl_log10_and_modes():
    from selfcond.evaluation import reverse_kl_and_modes

    kl, modes = reverse_kl_and_modes(np.array([0, 1] * 50), 1000)
    assert modes == 2 and abs(kl - 2.698970) < 1e-6
    assert abs(reverse_kl_and_modes(np.arange(10).repeat(3), 1000)[0] - 2.0) < 1e-9
    assert abs(reverse_kl_and_modes(np.arange(1000), 1000)[0]) < 1e-9


def test_cluster_scores():
    from selfcond.evaluation import cluster_scores

    scores = cluster_scores(np.array([0, 0, 1, 1, 1, 1]), np.array([0, 0, 0, 1, 1, 2]))
    # ARI by hand: sum C(n_kt, 2) = 2, rows 4, columns 7, C(6, 2) = 15: (2 - 28/15) / (11/2 - 28/15) = 2/54.5
    np.testing.assert_allclose([scores["nmi"], scores["purity"], scores["purity_standard"], scores["ari"]],
                               [0.386253, 0.666667, 0.833333, 2 / 54.5], atol=1e-6)


def test_frechet_and_inception_score_math():
    from common.metrics import frechet_distance, inception_score

    eye = np.eye(8)
    assert abs(frechet_distance(np.zeros(8), eye, np.zeros(8), eye, method="scipy")) < 1e-6
    assert abs(frechet_distance(np.zeros(8), eye, np.ones(8), eye, method="scipy") - 8.0) < 1e-6
    assert abs(frechet_distance(np.zeros(8), eye, np.zeros(8), 4 * eye, method="scipy") - 8.0) < 1e-6
    p = np.tile([[0.9, 0.1], [0.1, 0.9]], (5000, 1))
    mean, std = inception_score(np.log(p), splits=10)
    assert abs(mean - 1.444935) < 1e-6 and std < 1e-9
    assert abs(inception_score(np.zeros((100, 5)), splits=10)[0] - 1.0) < 1e-12


def test_seeded_sampling_draws():
    from selfcond.sampling import SeededSampler

    sampler = SeededSampler.__new__(SeededSampler)
    sampler.z_dim, sampler.probs = 4, np.array([0.2, 0.3, 0.5])
    z, y = sampler.zy([10])
    rng = np.random.RandomState(10)
    np.testing.assert_allclose(z[0], rng.standard_normal(4).astype(np.float32))
    assert y[0] == rng.choice(3, 1, replace=False, p=[0.2, 0.3, 0.5])[0]
    sampler.probs = np.array([1.0])
    assert set(sampler.zy(list(range(20)))[1].tolist()) == {0}


def test_image_grid_sizes(tmp_path):
    from PIL import Image

    from common.images import save_grid

    save_grid(tmp_path / "a.png", np.zeros((20, 32, 32, 3), np.float32), padding=2, cols=4)
    save_grid(tmp_path / "b.png", np.zeros((128, 32, 32, 3), np.float32), padding=2, cols=8)
    assert Image.open(tmp_path / "a.png").size == (138, 172)  # (W, H)
    assert Image.open(tmp_path / "b.png").size == (274, 546)


def test_results_tables_and_fsd_message(tmp_path):
    from selfcond.evaluation import FSD_MESSAGE, Results, evaluate

    results = Results(tmp_path)
    assert sorted(p.name for p in results.dir.iterdir()) == sorted(
        f"{n}.json" for n in ("fid_results", "is_results", "kl_results", "nmodes_results", "fsd_results",
                              "cluster_metrics"))
    results.put("kl_results", 5000, 0.5)
    assert Results(tmp_path).has("kl_results", "5000")
    options = type("Options", (), {"fsd": True, "paths": []})()
    with pytest.raises(UsageError, match=FSD_MESSAGE[:20]):
        evaluate(options)


def test_job_control(tmp_path):
    from selfcond.training import job_is_done_or_taken, mark_job_done

    assert job_is_done_or_taken(tmp_path / "job") is None
    assert "held by" in job_is_done_or_taken(tmp_path / "job")  # this process holds the lock
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "lockfile.pid").write_text(f"999999999@{__import__('socket').gethostname()}\n")
    assert job_is_done_or_taken(tmp_path / "stale") is None  # a dead holder's lock is taken over
    mark_job_done(tmp_path / "job")
    assert "done by" in job_is_done_or_taken(tmp_path / "job")


def test_finished_image_run_does_nothing(tmp_path, capsys):
    from selfcond.trainer import TrainOptions, run

    out = tmp_path / "finished"
    out.mkdir()
    (out / "done.txt").write_text("done by someone")
    config = cfg(training={"out_dir": str(out)}, data={"train_dir": str(tmp_path / "absent")})
    assert run(config, TrainOptions("x.yaml")) == {}  # returns before touching the (absent) data
    assert "done by someone" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["done.txt"]


def test_fid_extractor_is_the_ttur_graph_in_full_batches_of_200():
    """Spec §7.2: TTUR pool_3 features in batches of 200; images after the last full batch are skipped."""
    from selfcond.evaluation import make_fid_extractor

    net = make_fid_extractor()  # lazy: nothing is downloaded before the first call
    assert (net.name, net.batch_size, net.drop_remainder) == ("inception-ttur", 200, True)
