"""Every trainer's checkpoint holds every weight of its models (repo-wide, tiny models).

For each trainer the objects are built the way the trainer builds them and handed to the trainer's own
checkpoint (``common.training.Checkpoints`` with the trainer's names, ``selfcond``'s ``RunState.checkpoint``,
LatentCLR's ``RunCheckpoints``). Every variable is then set to a fresh random value, the checkpoint is saved,
a second set of objects is built from another seed and restored, and every variable must come back. A
Keras-3 layer held in a plain Python list is invisible to ``tf.train.Checkpoint`` although ``model.weights``
lists it: its values would silently keep their fresh initialisation after a resume, and this test fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.seeding import make_generator, set_seed
from common.training import Checkpoints

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ helpers


def variables_of(obj) -> list[tf.Variable]:
    """The variables an object owns, in a fixed order (Keras ``weights``, ``tf.Module.variables``...)."""
    if isinstance(obj, tf.Variable):
        return [obj]
    if isinstance(obj, tf.random.Generator):
        return [obj.state]
    for attr in ("weights", "variables"):
        value = getattr(obj, attr, None)
        if value is not None:
            found, seen = [], set()
            for var in (value() if callable(value) else value):
                if id(var) not in seen:
                    seen.add(id(var))
                    found.append(var)
            return found
    raise TypeError(f"no variables to compare in {type(obj).__name__}")


def trainable_count(obj) -> int:
    return len(getattr(obj, "trainable_variables", None) or getattr(obj, "trainable_weights", None) or [])


def scramble(objects: dict, seed: int) -> dict[str, list[np.ndarray]]:
    """Give every float / integer variable a new random value; return the values, per object."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, obj in objects.items():
        values[name] = []
        for var in variables_of(obj):
            dtype = tf.as_dtype(var.dtype)  # Keras 3 variables name their dtype with a string
            if dtype.is_floating:
                var.assign(rng.normal(0.0, 1.0, var.shape).astype(dtype.as_numpy_dtype))
            elif dtype.is_integer:
                var.assign(rng.integers(1, 100, var.shape).astype(dtype.as_numpy_dtype))
            values[name].append(np.array(var.numpy()))
    return values


def assert_restored(expected: dict[str, list[np.ndarray]], saved_objects: dict, restored_objects: dict) -> None:
    assert sum(len(values) for values in expected.values()) > 0
    for name, values in expected.items():
        restored = variables_of(restored_objects[name])
        assert trainable_count(restored_objects[name]) == trainable_count(saved_objects[name]), name
        assert len(restored) == len(values), f"{name}: {len(restored)} variables, the saved object had {len(values)}"
        for var, value in zip(restored, values):
            np.testing.assert_array_equal(var.numpy(), value, err_msg=f"{name}: {var.name} did not round-trip")


def roundtrip_with_checkpoints(tmp_path, build, **checkpoint_kwargs) -> None:
    """Save ``build(0)`` through :class:`common.training.Checkpoints`, restore into ``build(1)``, compare."""
    saved = build(0)
    expected = scramble(saved, seed=10)
    Checkpoints(tmp_path, **checkpoint_kwargs, **saved).save(1)
    restored = build(1)
    assert Checkpoints(tmp_path, **checkpoint_kwargs, **restored).restore_latest() == 1
    assert_restored(expected, saved, restored)


def test_the_check_catches_layers_held_in_a_python_list(tmp_path):
    import keras

    class ListHeld(keras.Model):
        def __init__(self):
            super().__init__()
            self.blocks = [keras.layers.Dense(3) for _ in range(2)]  # seen by .weights, not by the checkpoint
            self.head = keras.layers.Dense(1)

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    def build(seed):
        set_seed(seed)
        model = ListHeld()
        model(tf.zeros([1, 2]))
        return {"model": model}

    with pytest.raises(AssertionError, match="did not round-trip"):
        roundtrip_with_checkpoints(tmp_path, build)


# --------------------------------------------------------------------------------------------- trainers


def test_slogan_synthetic(tmp_path):
    from common.slogan.data import build_synthetic_streams
    from common.slogan.synthetic import SyntheticConfig, SyntheticState

    train, evaluation = build_synthetic_streams(0)
    config = SyntheticConfig(eval_size=64, shuffle_buffer=256)

    def build(seed):
        set_seed(seed)
        return SyntheticState(config, train, evaluation).trackables()

    roundtrip_with_checkpoints(tmp_path, build)


def test_slogan_cifar2(tmp_path):
    from common.slogan import cifar2_step
    from common.slogan.cifar2_config import Cifar2Config

    cfg = Cifar2Config(batch_size=4, latent_dim=16, channels=8)

    def build(seed):
        set_seed(seed)
        return cifar2_step.build_state(cfg).trackables()

    roundtrip_with_checkpoints(tmp_path, build)


def test_glo(tmp_path):
    from glo.codes import CodeTable
    from glo.config import TrainConfig
    from glo.models import build_generator
    from glo.train import TrainState, make_optimizer

    def build(seed):
        # glo.train.build_state, with the code table made from an array instead of the HDF5 file.
        set_seed(seed)
        generator = build_generator(10, (28, 28, 1), "MNIST")
        optimizer = make_optimizer(TrainConfig())
        optimizer.build(generator.trainable_variables)
        codes = CodeTable(np.zeros((12, 10), np.float32), np.zeros(12, np.int32))
        return TrainState(generator, optimizer, codes, tf.Variable(0, dtype=tf.int64, name="loop_step"),
                          tf.Variable(seed, dtype=tf.int64, name="stream_seed")).trackables()

    roundtrip_with_checkpoints(tmp_path, build, prefix="model")


def test_congan_framework2(tmp_path):
    from congan import framework2
    from congan.config import resolve, tiny_framework2
    from congan.runs import simsiam_for

    cfg = resolve(tiny_framework2(), check_paths=False)

    def build(seed):
        # The objects congan.trainer.run_framework2 hands to its Checkpoints.
        set_seed(seed)
        simsiam = simsiam_for(cfg)
        nets = framework2.build_networks(cfg, simsiam.encoder, simsiam.dim)
        opts = framework2.make_optimizers(cfg, nets)
        count = min(32, cfg.batch_size)
        return dict(G=nets.G, D=nets.D, T=nets.T, Q=nets.Q, simsiam=simsiam, rng=make_generator(seed),
                    fixed_x=tf.Variable(tf.zeros([count, cfg.image_size, cfg.image_size, 3]), trainable=False),
                    fixed_repr=tf.Variable(tf.zeros([count, simsiam.dim]), trainable=False),
                    fixed_noise=tf.Variable(tf.zeros([count, cfg.latent_noise_dim]), trainable=False),
                    **{f"opt_{k}": v for k, v in opts.items()})

    roundtrip_with_checkpoints(tmp_path, build)


def test_congan_framework1(tmp_path):
    from congan import framework1
    from congan.config import Framework1Config, resolve
    from congan.runs import simsiam_for

    cfg = resolve(Framework1Config(image_size=32, batch_size=8, latent_dim=8, dim=64, pred_dim=16, D_iters=1,
                                   simsiam_arch="tiny", simsiam_path="random", seed=0), check_paths=False)

    def build(seed):
        # The objects congan.trainer.run_framework1 hands to its Checkpoints.
        set_seed(seed)
        rng = make_generator(seed)
        simsiam = simsiam_for(cfg)
        state = framework1.build_state(cfg, simsiam.encoder, simsiam.dim, rng)
        return dict(model=state.model, simsiam=simsiam, rng=rng, fixed_latent=state.fixed_latent,
                    **{f"opt_{k}": v for k, v in state.opts.items()})

    roundtrip_with_checkpoints(tmp_path, build)


@pytest.mark.parametrize("path", ["configs/cifar/selfcondgan.yaml", "configs/stacked_mnist/selfcondgan.yaml"])
def test_selfcond(tmp_path, path):
    import copy

    from selfcond.config import load_config
    from selfcond.trainer import RunState

    config = copy.deepcopy(load_config(path))
    config["generator"].update(nlabels=4, kwargs={"ngf": 4})
    config["discriminator"].update(nlabels=4, kwargs={"ndf": 4})
    config["clusterer"]["kwargs"] = {"k_value": 4}
    config["training"]["take_model_average"] = True  # the EMA generator is checkpointed too
    x_cluster = np.random.default_rng(0).uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32)
    names = ("generator", "discriminator", "generator_test", "g_optimizer", "d_optimizer", "z_rng", "reg_rng",
             "iteration")

    saved = RunState(config, seed=0, x_cluster=x_cluster)
    saved.clusterer.recluster(saved.discriminator)  # the clusterer's state exists once it has clustered
    objects = {name: getattr(saved, name) for name in names}
    objects["clusterer"] = saved.clusterer
    expected = scramble(objects, seed=10)
    saved.save(tmp_path, 3)  # the trainer's own writer (sets the iteration): chkpts/model_00000003, chkpts/model
    expected["iteration"] = [np.array(3)]
    restored = RunState(config, seed=1, x_cluster=x_cluster)
    restored.clusterer.recluster(restored.discriminator)
    assert restored.restore(tmp_path / "chkpts" / "model_00000003") == 3
    assert_restored(expected, objects, {**{n: getattr(restored, n) for n in names}, "clusterer": restored.clusterer})


@pytest.mark.parametrize("model", ["global", "linear", "nonlinear"])
def test_latentclr_direction_models(tmp_path, model):
    import keras
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from latentclr import optim, trainer
    from latentclr.testing import identity_generator, save_model

    keras.utils.set_random_seed(0)
    path = save_model(identity_generator(8), tmp_path / "identity.keras")
    with initialize_config_dir(config_dir=str(ROOT / "latentclr" / "conf"), version_base=None):
        cfg = OmegaConf.to_container(compose("train", overrides=[
            "generator=keras", f"generator.model_path={path}", "generator.feature_layer=identity", "k=4",
            f"model={model}"]), resolve=True)

    def build(seed):
        # The objects latentclr.trainer._train hands to its RunCheckpoints.
        set_seed(seed)
        pieces = trainer.Pieces(cfg)
        variables = list(pieces.model.trainable_variables) + list(pieces.projector.trainable_variables)
        optimizer = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"].get("scheduler"))
        return dict(model=pieces.model, projector=pieces.projector, optimizer=optimizer, state=trainer.RunState())

    saved = build(0)
    expected = scramble(saved, seed=10)
    trainer.RunCheckpoints(tmp_path / "run", trainer.NumpyRNG(), **saved).save(1)
    restored = build(1)
    assert trainer.RunCheckpoints(tmp_path / "run", trainer.NumpyRNG(), **restored).restore_latest() == 1
    assert_restored(expected, saved, restored)
