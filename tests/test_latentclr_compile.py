"""LatentCLR's train step compiled (tf.function, XLA) equals the same step run eagerly.

Three steps from the same seed with the same NumPy draws; losses and every trained variable (and the
BatchNorm running statistics) must agree to float rounding.
"""

from pathlib import Path

import keras
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from common.errors import UsageError
from latentclr import optim, trainer
from latentclr.testing import TINY_STYLEGAN2, save_model, toy_generator

CONF = str(Path(__file__).resolve().parent.parent / "latentclr" / "conf")
SETTINGS = {
    # the defaults: global directions, identity projector, torch-form Adam with coupled weight decay
    "global-adam": ["model=global", "model.alpha=[-3.0,3.0]"],
    # BatchNorm in the direction nets and the projector head; SGD, because Adam would turn the rounding noise
    # of a bias followed by BatchNorm (zero gradient in exact arithmetic) into lr-sized steps
    "nonlinear-sgd": ["model=nonlinear", "projector=linear", "projector.out_features=8", "+hparams/optimizer=sgd",
                      "hparams.optimizer.lr=0.01"],
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    keras.utils.set_random_seed(0)
    # S = 16: with 8 ReLU units a direction net can output an exact zero for a sample (its ReLU layer all
    # off), and the original's normalisation then gives NaN (no epsilon, spec §10 #13).
    return save_model(toy_generator(latent_dim=16, size=8, channels=4), tmp_path_factory.mktemp("toy") / "toy.keras")


def _run(cfg, mode: str, steps: int = 3):
    trainer.seed_everything(cfg)
    pieces = trainer.Pieces(cfg)
    model_vars = list(pieces.model.trainable_variables)
    variables = model_vars + list(pieces.projector.trainable_variables)
    opt = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"]["scheduler"])
    step = trainer.make_train_step(pieces, opt, variables, len(model_vars), True, None,
                                   jit_compile=mode == "xla", compiled=mode != "eager")
    losses = [float(step(*pieces.draw(8))["loss"]) for _ in range(steps)]
    state = variables + [v for v in pieces.model.non_trainable_variables + pieces.projector.non_trainable_variables
                         if "moving" in v.path]
    return losses, [v.numpy() for v in state]


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_compiled_steps_equal_the_eager_step(toy, setting):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_container(compose("train", overrides=[
            "generator=keras", f"generator.model_path={toy}", "generator.feature_layer=conv8", "k=2",
            "hparams.batch_size=8", *SETTINGS[setting]]), resolve=True)
    eager_losses, eager_state = _run(cfg, "eager")
    assert len(set(eager_losses)) == 3  # the steps change the loss: the comparison is not of constants
    for mode in ("tf.function", "xla"):
        losses, state = _run(cfg, mode)
        np.testing.assert_allclose(losses, eager_losses, atol=2e-6, err_msg=mode)
        assert len(state) == len(eager_state)
        for got, want in zip(state, eager_state):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=mode)


def test_jit_compile_auto_resolves_by_device_count(capsys):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        default = compose("train")["jit_compile"]
    assert default == "auto"
    assert trainer.resolve_jit_compile(default, 1) is True
    assert "jit_compile=auto: XLA train step (one device)" in capsys.readouterr().out
    assert trainer.resolve_jit_compile(default, 2) is False
    assert "plain tf.function train step (2 replicas" in capsys.readouterr().out
    # true / false keep their meaning and print nothing; YAML-quoted strings are read the same way
    assert trainer.resolve_jit_compile(True, 1) is True and trainer.resolve_jit_compile("false", 2) is False
    assert capsys.readouterr().out == ""
    with pytest.raises(UsageError, match="jit_compile=true needs one device"):
        trainer.resolve_jit_compile(True, 2)
    for bad in ("yes", 1, None):
        with pytest.raises(UsageError, match=r"jit_compile must be auto, true or false, got"):
            trainer.resolve_jit_compile(bad, 1)


@pytest.mark.slow
def test_xla_step_equals_the_eager_step_on_stylegan2():
    # a second generator type: modulated convolutions, noise inputs and upfirdn2d upsampling of a tiny random
    # StyleGAN2 (every generator type was checked by hand to compile under XLA; this one keeps it checked)
    with initialize_config_dir(config_dir=CONF, version_base=None):
        cfg = OmegaConf.to_container(compose("train", overrides=[
            "generator=stylegan2", "model.size=null", "k=2", "hparams.batch_size=8"]), resolve=True)
    cfg["generator"].update(TINY_STYLEGAN2)
    eager_losses, eager_state = _run(cfg, "eager")
    assert len(set(eager_losses)) == 3
    losses, state = _run(cfg, "xla")
    # looser than the toy's: the losses of XLA and eager steps differed by up to 2e-6 here (float32 rounding)
    np.testing.assert_allclose(losses, eager_losses, atol=1e-5)
    for got, want in zip(state, eager_state):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
