"""The shared loop: exact resume, config checks, signals, distribution, --gpu parsing."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.config import prepare_run_dir, timestamp_run_name
from common.devices import parse_gpu_flag
from common.errors import UsageError
from common.seeding import make_generator, set_seed
from common.training import Checkpoints, Every, train_loop
from tests.devices import two_cpus


def _toy_state(seed=0):
    """A linear regressor trained on in-graph random batches: model, Adam and RNG are all state."""
    set_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam(1e-2)
    optimizer.build(model.trainable_variables)
    rng = make_generator(seed)
    target = tf.constant([[1.0], [-2.0], [0.5]])

    @tf.function
    def step():
        x = rng.normal([8, 3])
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((model(x) - x @ target) ** 2)
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return {"loss": loss}

    return model, optimizer, rng, step


def _flat_state(model, optimizer, rng):
    values = [v.numpy() for v in model.weights] + [v.numpy() for v in optimizer.variables] + [rng.state.numpy()]
    return np.concatenate([np.ravel(v).astype(np.float64) for v in values])


def _run(run_dir, total, stop_after=None):
    model, optimizer, rng, step = _toy_state()
    ckpt = Checkpoints(run_dir, model=model, optimizer=optimizer, rng=rng)
    start = ckpt.restore_latest()
    stop = stop_after if stop_after is not None else total
    train_loop(lambda i: step(), start=start, total=stop, checkpoints=ckpt, save_every=100, show_progress=False)
    return _flat_state(model, optimizer, rng), ckpt


def test_resume_is_exact(tmp_path):
    straight, _ = _run(tmp_path / "a", total=4)
    _run(tmp_path / "b", total=4, stop_after=2)
    resumed, ckpt = _run(tmp_path / "b", total=4)
    assert ckpt.latest.endswith("model-4")
    np.testing.assert_array_equal(straight, resumed)
    fresh, _ = _run(tmp_path / "c", total=2)
    assert not np.array_equal(fresh, straight)  # the comparison can fail: 2 steps differ from 4


def test_hooks_run_on_their_cadence(tmp_path):
    _, _, _, step = _toy_state()
    seen = []
    train_loop(
        lambda i: step(), start=0, total=10, checkpoints=None, save_every=0, show_progress=False,
        hooks=[Every(4, lambda it, out: seen.append(("a", it))), Every(5, lambda it, out: seen.append(("b", it)), 1)],
    )
    assert seen == [("b", 1), ("a", 4), ("b", 6), ("a", 8)]


def test_config_mismatch_on_resume_is_refused(tmp_path):
    run = tmp_path / "run"
    _, resuming = prepare_run_dir(run, {"lr": 0.1, "batch_size": 8, "gpu": "0"})
    assert not resuming
    _, resuming = prepare_run_dir(run, {"lr": 0.1, "batch_size": 8, "gpu": "1"})  # gpu may change
    assert resuming
    before = (run / "config.json").read_text()
    with pytest.raises(UsageError, match=r"lr: 0.1 -> 0.2"):
        prepare_run_dir(run, {"lr": 0.2, "batch_size": 8})
    assert (run / "config.json").read_text() == before


def test_checkpoint_from_another_config_is_a_usage_error(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4)])
    Checkpoints(tmp_path, model=model).save(1)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    with pytest.raises(UsageError, match="does not fit"):
        Checkpoints(tmp_path, model=other).restore_latest()


def test_run_name_like_the_originals():
    import datetime

    assert timestamp_run_name(datetime.datetime(2021, 6, 4, 13, 5, 59, 123456)) == "2021-06-04_13_05_59_123456"


@pytest.mark.parametrize("value,expected", [("0", [0]), ("0,1", [0, 1]), ("-1", []), ("", []), (" 2 ", [2])])
def test_gpu_flag_values(value, expected):
    assert parse_gpu_flag(value) == expected


@pytest.mark.parametrize("value", ["a", "0,,1", "-2", "0,0", "1.5"])
def test_bad_gpu_flag_is_rejected(value):
    with pytest.raises(UsageError, match="--gpu"):
        parse_gpu_flag(value)


def test_bad_gpu_flag_exits_2_with_one_line():
    code = (
        "from common.errors import exit_on_usage_error\n"
        "from common.devices import select_gpus\n"
        "exit_on_usage_error(select_gpus)('zero')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=".")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: --gpu: expected GPU indices such as 0 or 0,1 (or -1 for "
                                                "the CPU), got 'zero'"]


def _train_toy(strategy, steps=3):
    """Same toy regression under any strategy; per-replica losses are scaled to the global batch."""
    global_batch = 8
    data = np.random.RandomState(0).normal(size=(steps * global_batch, 3)).astype(np.float32)
    target = np.array([[1.0], [-2.0], [0.5]], np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((data, data @ target)).batch(global_batch)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
        optimizer = keras.optimizers.SGD(0.1)

    @tf.function
    def step(batch):
        def replica_step(x, y):
            with tf.GradientTape() as tape:
                per_example = tf.reduce_sum((model(x) - y) ** 2, axis=1)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        losses = strategy.run(replica_step, args=batch)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    for batch in strategy.experimental_distribute_dataset(dataset):
        step(batch)
    return [v.numpy() for v in model.weights]


def test_mirrored_strategy_matches_one_device():
    one = _train_toy(tf.distribute.get_strategy())
    two = _train_toy(tf.distribute.MirroredStrategy(two_cpus()))
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_sigterm_saves_a_checkpoint_and_exits_130(tmp_path):
    """A signal mid-run finishes the iteration, saves, and exits 130; the same command then resumes."""
    code = f"""
import os, signal
import tensorflow as tf
from common.training import Checkpoints, train_loop
counter = tf.Variable(0)
ckpt = Checkpoints({str(tmp_path)!r}, counter=counter)
start = ckpt.restore_latest()
def step(i):
    counter.assign_add(1)
    if i == 2 and start == 0:
        os.kill(os.getpid(), signal.SIGTERM)
    return {{"count": counter.read_value()}}
train_loop(step, start=start, total=6, checkpoints=ckpt, save_every=100, show_progress=False)
print("final", int(counter.numpy()))
"""
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert first.returncode == 130, first.stderr[-500:]
    assert (tmp_path / "model-3.index").exists()
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-500:]
    assert "final 6" in second.stdout
