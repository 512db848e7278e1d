"""LatentCLR data-parallel training: two replicas (two logical CPUs) give the one-device step.

The contrastive loss gathers the divergences of all replicas (negatives across replicas), BatchNorm
moments are global, gradients are summed: a few steps on 2 devices end at the same losses, direction and
projector weights and BatchNorm statistics as on one device (float rounding only).
"""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from common.errors import UsageError
from latentclr import distribute, optim, trainer
from latentclr.testing import save_model, toy_generator

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "latentclr" / "conf")
CPUS = [d.name for d in tf.config.list_logical_devices("CPU")]
needs_two = pytest.mark.skipif(len(CPUS) < 2, reason="needs the two logical CPU devices of tests/conftest.py")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    keras.utils.set_random_seed(0)
    return save_model(toy_generator(latent_dim=8, size=8, channels=4), tmp_path_factory.mktemp("toy") / "toy.keras")


def _config(toy, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        # SGD: a bias followed by BatchNorm has a zero gradient up to rounding, which Adam would scale up to
        # lr-sized steps. B = 8: BatchNorm over 4 rows per direction makes the step ill-conditioned (rounding
        # differences of the all-reduced moments then grow to 1e-5 in three steps; 8 rows keep them at 1e-6).
        cfg = compose("train", overrides=[
            "generator=keras", f"generator.model_path={toy}", "generator.feature_layer=conv8", "k=2",
            "+hparams/optimizer=sgd", "hparams.optimizer.lr=0.01", "model=nonlinear", "projector=linear",
            "projector.out_features=8", "hparams.batch_size=8", *overrides])
        return OmegaConf.to_container(cfg, resolve=True)


def _train(cfg, devices, steps=3):
    """Losses of ``steps`` train steps, the validation loss after them, the trained variables (and BN
    statistics) and the initial kernel of the first direction layer."""
    strategy = distribute.strategy_for({**cfg, "devices": devices})
    trainer.seed_everything(cfg)
    with strategy.scope():
        pieces = trainer.Pieces(cfg)
        model_vars = list(pieces.model.trainable_variables)
        variables = model_vars + list(pieces.projector.trainable_variables)
        optimizer = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"]["scheduler"])
    step = trainer.make_train_step(pieces, optimizer, variables, len(model_vars), True, None, strategy=strategy)
    initial = variables[0].numpy()
    losses = [float(step(*pieces.draw(8))["loss"]) for _ in range(steps)]
    val = float(trainer.make_eval_step(pieces, False, strategy=strategy)(*pieces.draw(8))["loss"])
    stats = [pieces.model.nets.batchnorm_1.moving_mean, pieces.model.nets.batchnorm_1.moving_variance]
    return losses, val, [v.numpy() for v in variables + stats], initial


@needs_two
def test_two_replicas_train_like_one_device(toy):
    cfg = _config(toy)
    losses, val, weights, initial = _train(cfg, None)
    assert not np.allclose(weights[0], initial, atol=1e-4)  # the directions did move
    losses2, val2, weights2, initial2 = _train(cfg, CPUS[:2])
    np.testing.assert_array_equal(initial2, initial)
    np.testing.assert_allclose(losses2, losses, atol=5e-6)  # losses lie in [-0.5, 0.5]
    np.testing.assert_allclose(val2, val, atol=5e-6)
    assert len(weights2) == len(weights) == 9 + 4 + 2  # nonlinear depth 3, linear head, one BN's statistics
    for a, b in zip(weights, weights2):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=2e-6)


@needs_two
def test_multi_device_config_errors(toy, tmp_path):
    two = f"devices=['{CPUS[0]}','{CPUS[1]}']"  # as on the command line
    with pytest.raises(UsageError, match="divisible by the number of replicas"):
        trainer.run(_config(toy, "hparams.batch_size=5", two), tmp_path / "odd")
    with pytest.raises(UsageError, match="jit_compile=true needs one device"):
        trainer.run(_config(toy, "jit_compile=true", two), tmp_path / "jit")
    with pytest.raises(UsageError, match="devices must be"):
        trainer.run(_config(toy, "devices=gpu0"), tmp_path / "bad")
    for name in ("odd", "jit", "bad"):  # refused before anything was written
        assert not (tmp_path / name / "config.json").exists() and not any((tmp_path / name).glob("most_recent*"))


@needs_two
def test_default_jit_compile_trains_on_two_devices(toy, tmp_path, capsys):
    # jit_compile=auto (the default) picks plain tf.function for several replicas instead of refusing XLA
    cfg = _config(toy, f"devices=['{CPUS[0]}','{CPUS[1]}']", "hparams.iterations=2", "eval_freq=2", "eval_iters=1",
                  "tb_image_dirs=0")
    assert cfg["jit_compile"] == "auto"
    last = trainer.run(cfg, tmp_path / "run")
    assert np.isfinite(last["Loss/train"]) and (tmp_path / "run" / "final_model.ckpt" / "ckpt.index").exists()
    assert "jit_compile=auto: plain tf.function train step (2 replicas" in capsys.readouterr().out
