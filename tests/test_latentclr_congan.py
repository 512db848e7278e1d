"""LatentCLR on ConGAN run folders (``generator=congan``): both frameworks, written by ConGAN's own trainer.

The run folders come from ``congan.trainer.run_framework2`` / ``run_framework1``
of one epoch at toy sizes on 16 generated 32-px PNGs (steps run eagerly: tracing would cost more than the step).
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from common.errors import UsageError
from latentclr import trainer
from latentclr.generators.project import ProjectGenerator

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "latentclr" / "conf")
REPR_DIM, NOISE_DIM = 64, 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from congan.config import Framework1Config, resolve, tiny_framework2
    from congan.trainer import run_framework1, run_framework2

    base = tmp_path_factory.mktemp("congan_runs")
    folder = base / "data" / "train" / "synthetic"
    folder.mkdir(parents=True)
    images = np.random.RandomState(0).randint(0, 256, (16, 32, 32, 3)).astype(np.uint8)
    for k, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{k:03d}.png")
    data = str(base / "data")
    tf.config.run_functions_eagerly(True)
    try:
        f2 = resolve(tiny_framework2(batch_size=4, epochs=1, data_dir=data, run_dir=str(base / "f2"),
                                     latent_noise_dim=NOISE_DIM, dim=REPR_DIM), check_paths=False)
        run_framework2(f2, show_progress=False)  # 16 images, B 4: one full iteration and a cut one
        f1 = resolve(Framework1Config(image_size=32, batch_size=4, latent_dim=8, dim=REPR_DIM, pred_dim=16, D_iters=1,
                                      simsiam_arch="tiny", simsiam_path="random", seed=0, epochs=1, dataset="folder",
                                      subset=8, data_dir=data, run_dir=str(base / "f1")))
        run_framework1(f1, show_progress=False)
    finally:
        tf.config.run_functions_eagerly(False)
    return {"f2": base / "f2", "f1": base / "f1", "images": images, "data": data}


def test_framework2_stages_latents_and_feed_layers(runs):
    g = ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1")
    assert g.latent_dim == REPR_DIM + NOISE_DIM and g.n_latent() == 3 + 2  # T, block1..3, final bn
    assert g.source.names == ["latent_transform", "dense", "block1", "block2", "block3", "bn", "final", "output"]
    z = g.sample_latent(6, seed=3)
    np.testing.assert_array_equal(z, g.sample_latent(6, seed=3))
    z = tf.constant(z)
    nets = g.source.networks
    r, n = z[:, :REPR_DIM], z[:, REPR_DIM:]
    np.testing.assert_allclose(g.partial_forward(z, "output"), nets.G(nets.T(r, n), r, training=False), atol=1e-6)
    np.testing.assert_allclose(g(z), 0.5 * (nets.G(nets.T(r, n), r) + 1.0), atol=1e-6)
    assert g.get_features(z).shape == (6, 8, 8, 16)
    assert g.partial_forward(z, "dense").shape == (6, 4, 4, 16)
    # The noise half is N(0, I) as ConGAN draws it; the representation half is E(x) + 1e-5 e of training images,
    # so all of it comes from the SimSiam encoder's (no-affine) BN output.
    assert abs(float(tf.math.reduce_std(n)) - 1.0) < 0.35
    # feed_layers: latent 2 conditions only block2 onward.
    other = tf.constant(g.sample_latent(6, seed=4))
    fed = [z, z, other, z, z]
    np.testing.assert_allclose(g.partial_forward(fed, "block1"), g.partial_forward(z, "block1"), atol=1e-6)
    assert np.abs(g.partial_forward(fed, "block2") - g.partial_forward(z, "block2")).max() > 1e-4
    np.testing.assert_allclose(g.partial_forward([z] * 5, "output"), g.partial_forward(z, "output"), atol=1e-6)
    with pytest.raises(UsageError, match="block1"):
        g.partial_forward(z, "block9")


def test_framework2_samplers_spaces_and_weight_files(runs):
    gauss = ProjectGenerator("congan", str(runs["f2"]), feature_layer="dense", sample_repr="gaussian")
    r = gauss.sample_latent(400, seed=0)[:, :REPR_DIM]
    assert abs(r.mean()) < 0.05 and abs(r.std() - 1.0) < 0.05
    noise = ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1", latent_space="noise",
                             checkpoint=str(runs["f2"] / "results"))
    assert noise.latent_dim == NOISE_DIM and noise.n_latent() == 1
    z = tf.constant(noise.sample_latent(2, seed=0))
    transformed = noise.partial_forward(z, "latent_transform")  # [W r + b ; n]: r is one fixed representation
    np.testing.assert_allclose(transformed[0, :-NOISE_DIM], transformed[1, :-NOISE_DIM], atol=1e-6)
    np.testing.assert_array_equal(transformed[:, -NOISE_DIM:], z)
    with pytest.raises(UsageError, match="generator.data_dir"):
        ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1", data_dir=str(runs["f2"] / "nothing"))
    with pytest.raises(UsageError, match="sample_repr"):
        ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1", sample_repr="spherical")
    with pytest.raises(UsageError, match="fix_slerp=true"):  # the notebook's slerp gives NaN
        ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1", sample_repr="slerp")
    slerped = ProjectGenerator("congan", str(runs["f2"]), feature_layer="block1", sample_repr="slerp", fix_slerp=True)
    assert np.isfinite(slerped.sample_latent(3, seed=0)).all()


def test_framework1_stages_and_context(runs):
    from congan.data import to_imagenet

    g = ProjectGenerator("congan", str(runs["f1"]), feature_layer="G")
    assert g.latent_dim == 8 and g.n_latent() == 1
    assert g.source.names[:7] == ["G.bn1", "G.bn4", "G.bn7", "G.bn10", "G.bn13", "G.bn16", "G"]
    z = tf.constant(g.sample_latent(3, seed=0))
    m = g.source.model
    np.testing.assert_allclose(g.get_features(z), m.G(z, training=False), atol=1e-6)
    x = to_imagenet(tf.constant(np.repeat(runs["images"][:1], 3, axis=0)))  # subset=8 keeps image 0 first
    expected = m.decoder(m.proj(m.G(z), m.ctx_encoder(x)), training=False)
    np.testing.assert_allclose(g.partial_forward(z, "output"), expected, atol=1e-5)
    weights = sorted((runs["f1"] / "results").glob("checkpoint_*.weights.h5"))[-1]
    from_file = ProjectGenerator("congan", str(runs["f1"]), feature_layer="G", checkpoint=str(weights))
    np.testing.assert_allclose(from_file.get_features(z), g.get_features(z), atol=1e-6)


def _config(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return OmegaConf.to_container(compose("train", overrides=list(overrides)), resolve=True)


def test_train_on_a_congan_run(runs, tmp_path):
    cfg = _config("generator=congan", f"generator.run_dir={runs['f2']}", "generator.feature_layer=block1", "k=2",
                  "model=linear", "hparams.batch_size=2", "hparams.iterations=2", "eval_freq=2", "eval_iters=1",
                  "tb_image_dirs=2", "feed_layers=[0,1]", "jit_compile=false")  # XLA: checked elsewhere
    assert cfg["model"]["size"] is None and cfg["generator"]["paper"] == "congan"
    last = trainer.run(cfg, tmp_path / "run")
    assert np.isfinite(last["Loss/train"]) and np.isfinite(last["Loss/val"])
    assert (tmp_path / "run" / "final_model.ckpt" / "ckpt.index").exists()
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Epoch 0 | Train acc:" in log
