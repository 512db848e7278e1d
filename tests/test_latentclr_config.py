"""Hydra configuration of LatentCLR (spec §8; acceptance checks 1-3, 20 layout, 27 alpha), without TensorFlow."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

CONF = str(Path(__file__).resolve().parent.parent / "latentclr" / "conf")


def composed(name, overrides=(), hydra=False):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return compose(name, overrides=list(overrides), return_hydra_config=hydra)


def test_train_defaults():
    cfg = composed("train")
    assert cfg.hparams.iterations == 10000 and cfg.hparams.batch_size == 32
    assert cfg.model.size == 128 and cfg.model._target_ == "colat.models.Fixed"
    assert cfg.model.alpha == 0.1 and cfg.model.normalize is True
    assert cfg.loss.temp == 0.5 and cfg.loss.abs is True and cfg.loss.reduce == "mean"
    assert isinstance(cfg.hparams.optimizer.weight_decay, float) and cfg.hparams.optimizer.weight_decay == 0.001
    assert cfg.hparams.optimizer._target_ == "torch.optim.Adam" and cfg.hparams.optimizer.lr == 0.001
    assert list(cfg.hparams.scheduler.milestones) == [1000, 5000] and cfg.hparams.scheduler.gamma == 0.2
    assert cfg.generator.feature_layer == "generator.layers.0" and cfg.generator.truncation == 0.4
    assert cfg.generator.class_name == "husky" and cfg.generator.resolution == 256
    assert cfg.k == 32 and cfg.checkpoint is None and cfg.eval_freq == 1000 and cfg.eval_iters == 100
    assert cfg.feed_layers is None and cfg.train_projector is True and cfg.tensorboard is True
    assert cfg.hparams.grad_clip_max_norm is None and cfg.mixed_precision is False and cfg.save is True
    assert cfg.projector._target_ == "colat.projectors.IdentityProjector"
    # the port's bug-compat flags default to the original's behaviour
    assert cfg.loss.divide_by_temp is False and cfg.norm_eps == 0.0 and cfg.val_uses_feed_layers is False


def test_overrides_compose_like_the_original():
    cfg = composed("train", ["generator=stylegan2", "projector=linear"])
    assert cfg.model.size == 512 and cfg.projector.in_features == 512 and cfg.projector.out_features == 128
    assert cfg.generator.use_w is True and cfg.generator.truncation == 0.7 and cfg.generator.feature_layer == "conv1"
    assert composed("train", ["model=nonlinear"]).model.depth == 3
    sgd = composed("train", ["+hparams/optimizer=sgd"]).hparams.optimizer
    assert sgd._target_ == "torch.optim.SGD" and sgd.lr == 0.1 and sgd.weight_decay == 5e-4
    assert sgd.momentum == 0.1 and sgd.nesterov is True
    nonlinear = composed("train", ["generator=stylegan", "projector=nonlinear"])
    assert nonlinear.projector.middle_features == 256 and nonlinear.generator.feature_layer == "g_synthesis.blocks.1"
    readme = composed("train", ["k=32", "generator=biggan", "generator.feature_layer=generator.layers.4",
                                "generator.class_name=bulbul", "model=nonlinear", "hparams.batch_size=16",
                                "model.alpha=[-3.0,+3.0]"])
    assert list(readme.model.alpha) == [-3.0, 3.0] and readme.hparams.batch_size == 16


def test_eval_and_gen_defaults():
    gen = composed("gen")
    assert gen.n_samples == 10 and gen.n_dirs == 10 and len(gen.alphas) == 7 and gen.iterative is True
    assert gen.image_size == 256 and OmegaConf.is_missing(gen, "checkpoint") and "loss" not in gen
    ev = composed("eval")
    assert ev.hparams.batch_size == 32 and ev.hparams.iterations == 100 and OmegaConf.is_missing(ev, "checkpoint")


def test_run_folder_layout():
    cfg = composed("train", ["generator.feature_layer=generator.layers.4", "generator.class_name=bulbul",
                             "model=nonlinear"], hydra=True)
    run_dir = cfg.hydra.run.dir
    prefix = ("outputs/run/${hydra.job.name}/colat.generators.BigGANGenerator/generator.layers.4_bulbul_32/"
              "colat.models.NonlinearConditional_colat.projectors.IdentityProjector/")
    resolved = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
    assert resolved.startswith("outputs/run/${hydra.job.name}/${generator._target_}")
    with initialize_config_dir(config_dir=CONF, version_base=None, job_name="train"):
        full = compose("train", overrides=["generator.feature_layer=generator.layers.4",
                                           "generator.class_name=bulbul", "model=nonlinear"],
                       return_hydra_config=True)
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(full)
        run_dir = OmegaConf.to_container(full.hydra.run, resolve=True)["dir"]
    assert run_dir.startswith(prefix.replace("${hydra.job.name}", "train"))
    assert cfg.hydra.job.chdir is True
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == ["seed", "device", "generator.device"]


@pytest.mark.parametrize("group", ["keras", "glo", "slogan"])
def test_port_generator_groups_compose(group):
    cfg = composed("train", [f"generator={group}", "projector=nonlinear"])
    assert cfg.model.size is None and cfg.projector.in_features is None
