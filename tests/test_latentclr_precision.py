"""``mixed_precision=true``: float16 generator pass, float32 loss, dynamic loss scale (on CPU)."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from common.errors import UsageError
from latentclr import optim, precision, trainer
from latentclr.testing import save_model, toy_generator

CONF = str(Path(__file__).resolve().parent.parent / "latentclr" / "conf")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    keras.utils.set_random_seed(0)
    toy = save_model(toy_generator(latent_dim=16, size=16, channels=4), tmp_path_factory.mktemp("toy") / "toy.keras")
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return OmegaConf.to_container(compose("train", overrides=[
            "generator=keras", f"generator.model_path={toy}", "generator.feature_layer=conv8", "k=2",
            "model=nonlinear", "hparams.batch_size=4", "hparams.iterations=2", "eval_freq=2", "eval_iters=1",
            "tb_image_dirs=1", "mixed_precision=true"]), resolve=True)


def test_one_mixed_precision_run_is_finite(cfg, tmp_path):
    last = trainer.run(cfg, tmp_path / "run")
    assert np.isfinite(last["Loss/train"]) and np.isfinite(last["Loss/val"])
    log = (tmp_path / "run" / "train.log").read_text()
    assert "Mixed precision" in log
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "run")))
    scale = [k for k in reader.get_variable_to_shape_map() if k.startswith("loss_scale/scale")]
    assert scale and reader.get_tensor(scale[0]) == 2.0 ** 15  # two finite steps: no skip, no growth yet


def _pieces_and_step(cfg, loss_scale):
    trainer.seed_everything(cfg)
    pieces = trainer.Pieces(cfg)
    variables = list(pieces.model.trainable_variables)
    opt = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"]["scheduler"])
    step = trainer.make_train_step(pieces, opt, variables, len(variables), True, None, compiled=False,
                                   loss_scale=loss_scale)
    return pieces, variables, step


def test_float16_generator_float32_loss_and_the_scale_rule(cfg):
    scale = precision.DynamicLossScale(initial=1e30)  # the float16 backward pass overflows
    pieces, variables, step = _pieces_and_step(cfg, scale)
    z, alphas = pieces.draw(4)
    assert pieces.generator.get_features(z).dtype == tf.float16
    assert pieces.generator(z).dtype == tf.float32
    before = [v.numpy().copy() for v in variables]
    out = step(z, alphas)
    assert out["loss"].dtype == tf.float32 and np.isfinite(float(out["loss"]))
    assert bool(out["skipped"]) and float(scale.scale.numpy()) == pytest.approx(5e29, rel=1e-6)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, variables))  # the update was skipped
    grow = precision.DynamicLossScale(initial=2.0, growth_steps=2)
    pieces, variables, step = _pieces_and_step(cfg, grow)
    for expected in (2.0, 4.0):
        assert not bool(step(*pieces.draw(4))["skipped"]) and float(grow.scale.numpy()) == expected
    assert int(grow.good_steps.numpy()) == 0  # reset when the scale grew


def test_other_generators_are_refused():
    with pytest.raises(UsageError, match="generator=keras only"):
        precision.make_generator_mixed(object())
