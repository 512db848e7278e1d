"""GLO train step: two replicas equal one device; eager, tf.function and XLA steps agree; the --gpu/--devices
wiring; --mixed_precision; old run folders still resume.

Tiny MNIST-shaped datasets written by glo/testing.py; the two-replica tests use the 2 logical CPUs of conftest.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.config import as_dict, prepare_run_dir
from common.errors import UsageError
from common.seeding import set_seed
from glo import codes as code_store
from glo import data as glo_data
from glo import losses, train
from glo.config import TrainConfig, config_from_args, trainer_parser
from glo.testing import make_dataset
from tests.devices import eagerly, two_cpus

# Adam's first steps are lr·g / (|g| + ε): with ε = 1e-8 a gradient entry near rounding-noise level becomes a step
# of up to ±lr, so another summation order (two replicas, XLA kernels) moves such an entry by up to lr. Both sides
# of each comparison run with ε = 1e-2 (the Adam slots, which hold the raw gradients, are compared as they are);
# everything else is the trainer's step.
COMPARISON_EPSILON = 1e-2
# Three batches of 8 rows; the first and the last hold an id twice, once in each replica's half.
POSITIONS = [[0, 1, 2, 3, 4, 5, 6, 0], [7, 8, 9, 10, 11, 12, 13, 14], [15, 3, 16, 17, 18, 19, 20, 3]]


def run_steps(folder, *, strategy=None, mode="tf.function", update_mode="first_only", loss="moment"):
    """Three iterations from a fresh seeded state; every variable, the code table and the outputs afterwards."""
    info = glo_data.describe(str(folder))
    source = glo_data.DataFile(info, writable=False)
    try:
        set_seed(0)
        cfg = TrainConfig(jit_compile=mode == "xla", seed=0)
        state = train.build_state(cfg, source, code_store.CodeStore(source.file, info.train_ids), strategy)
        state.optimizer.epsilon = COMPARISON_EPSILON
        step = train.make_train_step(state, alpha=5.0, loss_fn=losses.get_loss(loss), update_mode=update_mode,
                                     jit_compile=mode == "xla", strategy=strategy)
        outputs = []
        with eagerly(mode == "eager"):
            for positions in POSITIONS:
                images = source.images([info.train_ids[p] for p in positions])
                out = step(tf.constant(images), tf.constant(positions, tf.int32))
                outputs.append({k: np.asarray(v) for k, v in out.items()})
        copies = [v.value.values for v in state.generator.weights + state.optimizer.variables
                  if hasattr(v.value, "values")]
        for values in copies:  # mirrored copies never drift apart
            for other in values[1:]:
                np.testing.assert_array_equal(other.numpy(), values[0].numpy(), err_msg=values[0].name)
        variables = {v.path: np.array(v.numpy()) for v in state.generator.weights}
        variables.update({f"adam/{i}/{v.name}": np.array(v.numpy()) for i, v in enumerate(state.optimizer.variables)})
        return {"variables": variables, "codes": state.codes.table.numpy(), "written": state.codes.written.numpy(),
                "outputs": outputs}
    finally:
        source.close()


def assert_same(a, b, rtol, atol):
    """Each value, code and output within rtol of itself or of its array's largest magnitude (sums in another order
    differ by rounding relative to the whole vector, not to each entry)."""
    assert a["variables"].keys() == b["variables"].keys()
    for name, value in a["variables"].items():
        scale = float(np.abs(value).max()) if value.size and value.dtype.kind == "f" else 0.0
        np.testing.assert_allclose(b["variables"][name], value, rtol=rtol, atol=atol + rtol * scale, err_msg=name)
    np.testing.assert_allclose(b["codes"], a["codes"], rtol=rtol, atol=atol + rtol)  # unit-norm rows: scale 1
    np.testing.assert_array_equal(b["written"], a["written"])
    for out_a, out_b in zip(a["outputs"], b["outputs"]):
        for key in out_a:
            scale = float(np.abs(out_a[key]).max())
            np.testing.assert_allclose(out_b[key], out_a[key], rtol=rtol, atol=atol + rtol * scale, err_msg=key)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("glo_dist") / "d", n=40, dim=6)


@pytest.fixture(scope="module")
def one_device(dataset):
    return run_steps(dataset)


@pytest.mark.parametrize("update_mode", ["first_only", pytest.param("every_step", marks=pytest.mark.slow)])
def test_two_replicas_match_one_device(dataset, one_device, update_mode):
    """Sharded rows, BatchNorm over the global batch, summed generator gradients, per-row code steps gathered back
    in batch order (ids repeated across the two halves keep the one-device write semantics)."""
    devices = two_cpus()
    single = one_device if update_mode == "first_only" else run_steps(dataset, update_mode=update_mode)
    double = run_steps(dataset, strategy=tf.distribute.MirroredStrategy(devices), update_mode=update_mode)
    assert_same(single, double, rtol=1e-5, atol=2e-6)
    moved = [k for k, v in single["variables"].items() if "moving" in k and not np.allclose(v, v.flat[0])]
    assert moved, "the BatchNorm moving statistics should have been updated"


@pytest.mark.slow
def test_two_replicas_match_one_device_with_the_lap1_loss(dataset):
    devices = two_cpus()
    single = run_steps(dataset, loss="lap1")
    double = run_steps(dataset, strategy=tf.distribute.MirroredStrategy(devices), loss="lap1")
    assert_same(single, double, rtol=1e-5, atol=2e-6)


def test_tf_function_step_matches_the_eager_step(dataset, one_device):
    assert_same(run_steps(dataset, mode="eager"), one_device, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_xla_step_matches_the_eager_step(dataset):
    assert_same(run_steps(dataset, mode="eager"), run_steps(dataset, mode="xla"), rtol=1e-5, atol=1e-6)


def test_strategy_flags(in_tmp):
    make_dataset(in_tmp / "datasets" / "mnist", n=40, dim=6)
    devices = ",".join(two_cpus())
    with pytest.raises(UsageError, match="divisible"):
        train.make_run_strategy(TrainConfig(batch_size=7, devices=devices))
    with pytest.raises(UsageError, match="one device"):
        train.make_run_strategy(TrainConfig(jit_compile=True, devices=devices))
    assert train.make_run_strategy(TrainConfig(devices=devices)).num_replicas_in_sync == 2
    assert train.make_run_strategy(TrainConfig(gpu="-1")).num_replicas_in_sync == 1


def test_a_config_json_written_before_the_devices_flag_still_resumes(tmp_path):
    """A run folder whose config.json predates --devices (the key is absent) is resumed by the same command."""
    cfg = config_from_args(TrainConfig, trainer_parser().parse_args(["--run_name", "old", "--gpu", "0,1"]))
    saved = {k: v for k, v in as_dict(cfg).items() if k != "devices"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert prepare_run_dir(tmp_path, cfg, ignore=train.RESUME_IGNORED)[1]
    moved = dataclasses.replace(cfg, gpu="-1", devices="/cpu:0,/cpu:1")  # devices never block a resume
    assert prepare_run_dir(tmp_path, moved, ignore=train.RESUME_IGNORED)[1]


def test_mixed_precision_steps_are_finite(dataset):
    """--mixed_precision: float16 blocks, float32 variables / output / losses, dynamic loss scaling."""
    info = glo_data.describe(str(dataset))
    source = glo_data.DataFile(info, writable=False)
    try:
        set_seed(0)
        cfg = TrainConfig(mixed_precision=True, seed=0)
        state = train.build_state(cfg, source, code_store.CodeStore(source.file, info.train_ids))
        assert isinstance(state.optimizer, keras.optimizers.LossScaleOptimizer)
        assert state.generator.deconv1.conv.compute_dtype == "float16"
        assert state.generator.deconv5.conv.compute_dtype == "float32"
        step = train.make_train_step(state, alpha=5.0, loss_fn=losses.moment_loss, update_mode="first_only")
        before = state.codes.table.numpy()
        for positions in POSITIONS:
            images = source.images([info.train_ids[p] for p in positions])
            out = step(tf.constant(images), tf.constant(positions, tf.int32))
            assert out["x_hat"].dtype == tf.float32
            assert all(np.isfinite(float(out[k])) for k in ("loss", "g_update", "z_update", "gradient_norm"))
        assert int(state.optimizer.iterations.numpy()) >= 1  # at most the first steps are skipped by the scaling
        assert all(v.dtype == "float32" for v in state.generator.weights)
        written = state.codes.written.numpy() > 0
        codes = state.codes.table.numpy()
        assert written.any() and np.isfinite(codes).all()
        np.testing.assert_allclose(np.linalg.norm(codes[written], axis=1), 1.0, atol=1e-5)
        assert not np.allclose(codes[written], before[written])
    finally:
        source.close()


def test_a_config_json_written_before_the_mixed_precision_flag(tmp_path):
    """An old config.json (no mixed_precision key) resumes without the flag and is refused with it."""
    cfg = config_from_args(TrainConfig, trainer_parser().parse_args(["--run_name", "old"]))
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in as_dict(cfg).items()
                                                      if k != "mixed_precision"}))
    assert prepare_run_dir(tmp_path, cfg, ignore=train.RESUME_IGNORED, added=train.ADDED_FLAGS)[1]
    with pytest.raises(UsageError, match="mixed_precision"):
        prepare_run_dir(tmp_path, dataclasses.replace(cfg, mixed_precision=True), ignore=train.RESUME_IGNORED,
                        added=train.ADDED_FLAGS)
