"""GLO port: the [CPU<1min] acceptance checks of specs/glo.md §9 (numbers in the test names' docstrings).

Every test makes its own tiny dataset in the download.py layout (glo/testing.py); nothing reads real data.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common import data_glo
from common.errors import UsageError
from common.seeding import set_seed
from glo import codes as code_store
from glo import data as glo_data
from glo import evaluate, losses, models, train
from glo.config import EvalConfig, TrainConfig, config_from_args, evaler_parser, train_run_name, trainer_parser
from glo.testing import make_dataset, pca_codes, shape_images, write_glo_dataset
from glo.visualize import build_training_gif, frame_from_batch

QUIET = {"no_progress": True, "summary_step": 0, "log_step": 0}


@contextlib.contextmanager
def captured_log():
    """Collect the glo logger's records (it does not propagate to the root logger)."""
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("glo")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def messages(records):
    return [r.getMessage() for r in records]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """§9 #19: 280 MNIST-shaped images (240 train / 40 test), 3 steps, checkpoint and dump at every step."""
    root = tmp_path_factory.mktemp("glo_run")
    make_dataset(root / "datasets" / "mnist", n=280, dim=10)
    cwd = Path.cwd()
    try:
        os.chdir(root)
        run_dir = train.run(TrainConfig(max_steps=3, output_save_step=1, dump_result=True, seed=0, no_progress=True))
    finally:
        os.chdir(cwd)
    return root, root / run_dir


# ------------------------------------------------------------------------------------------ model and loss


def test_generator_shapes_counts_and_range():
    """§9 #11: output shapes, intermediate sizes 2..32, parameter counts, outputs within [-1, 1]."""
    cases = [("MNIST", (28, 28, 1), 10, 119040, 362), ("SVHN", (32, 32, 3), 25, 1090035, 1184)]
    for name, shape, d, trainable, frozen in cases:
        g = models.build_generator(d, shape, name)
        assert sum(int(np.prod(v.shape)) for v in g.trainable_variables) == trainable
        assert sum(int(np.prod(v.shape)) for v in g.non_trainable_variables) == frozen
        x = tf.reshape(tf.random.normal([3, d]), [3, 1, 1, d])
        sizes = []
        for k, block in enumerate(g.blocks):
            x = block(x)
            x = g.norms[k](x, training=True) if k < 4 else x
            sizes.append(x.shape[1])
        assert sizes == [2, 4, 8, 16, 32]
        out = g(tf.random.normal([5, d])).numpy()
        assert out.shape == (5, *shape)
        assert out.min() >= -1 and out.max() <= 1
    assert models.channel_table(None, 1) == (100, 50, 25, 6, 1)
    assert models.channel_table(None, 4) == (384, 128, 64, 16, 4)


def test_legacy_resize():
    """§9 #12: TF1 sampling (no half-pixel centres); 32 -> 28 samples source row i * 32 / 28."""
    x = tf.constant([1.0, 3, 7, 15])[None, None, :, None]
    np.testing.assert_allclose(models.legacy_resize_bilinear(x, (1, 8)).numpy().ravel(), [1, 2, 3, 5, 7, 11, 15, 15])
    ramp = tf.tile(tf.range(32, dtype=tf.float32)[None, :, None, None], [1, 1, 32, 1])
    rows = models.legacy_resize_bilinear(ramp, (28, 28)).numpy()[0, :, 0, 0]
    np.testing.assert_allclose(rows, np.arange(28) * 32 / 28, atol=1e-5)
    same = tf.random.normal([2, 32, 32, 3])
    np.testing.assert_array_equal(models.legacy_resize_bilinear(same, (32, 32)).numpy(), same.numpy())
    for shape, size in (((2, 16, 16, 3), (32, 32)), ((2, 32, 32, 1), (28, 28)), ((1, 1, 1, 4), (2, 2))):
        x = tf.random.normal(shape)
        op = tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=False, half_pixel_centers=False)
        np.testing.assert_array_equal(models.legacy_resize_bilinear(x, size).numpy(), op.numpy())
        np.testing.assert_array_equal(models.legacy_resize_bilinear(x, size, xla_safe=True).numpy(), op.numpy())


def test_initialisation():
    """§9 #13: truncated-normal kernels (std 0.02 before truncation), zero biases, BN gamma 1 / beta 0 / 0.9 / 1e-3."""
    g = models.build_generator(25, (32, 32, 3), "SVHN")
    kernel = g.blocks[1].conv.kernel.numpy()
    assert kernel.size >= 10**4
    assert np.abs(kernel).max() <= 0.04
    assert abs(kernel.std() - 0.0176) <= 0.002
    for block in g.blocks:
        assert not block.conv.bias.numpy().any()
    for bn in g.norms:
        assert np.all(bn.gamma.numpy() == 1) and not bn.beta.numpy().any()
        assert bn.momentum == 0.9 and bn.epsilon == 1e-3


def test_batchnorm_uses_batch_statistics_everywhere():
    """§9 #14: row 0's output depends on the other rows in the trainer call and in the evaler's decoder."""
    g = models.build_generator(10, (28, 28, 1), "MNIST")
    z = np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32)
    other = z.copy()
    other[1:] = np.random.default_rng(1).standard_normal((5, 10))
    for call in (lambda v: g(tf.constant(v), training=True).numpy(), lambda v: g(tf.constant(v)).numpy(),
                 evaluate.make_decoder(g)):
        assert np.abs(call(z)[0] - call(other)[0]).max() > 1e-4


def _np_moment_loss(x, y):
    def moments(a):
        b, h, w, c = a.shape
        hh, ww = (h - 4) // 2 + 1, (w - 4) // 2 + 1
        m, v = np.zeros((b, hh, ww, c)), np.zeros((b, hh, ww, c))
        for i in range(hh):
            for j in range(ww):
                win = a[:, 2 * i : 2 * i + 4, 2 * j : 2 * j + 4, :]
                m[:, i, j] = win.mean(axis=(1, 2))
                v[:, i, j] = (win**2).mean(axis=(1, 2)) - m[:, i, j] ** 2
        return m, v

    (mx, vx), (my, vy) = moments(x.astype(np.float64)), moments(y.astype(np.float64))
    return np.abs(mx - my).mean() + np.abs(vx - vy).mean()


def test_moment_loss():
    """§9 #15: l(X, X) = 0, l(X, X + 0.1) = 0.1, symmetric, 13x13 / 15x15 maps, equals a NumPy reference."""
    rng = np.random.default_rng(0)
    for size, maps in ((28, 13), (32, 15)):
        x = rng.uniform(-1, 1, (3, size, size, 2)).astype(np.float32)
        y = rng.uniform(-1, 1, (3, size, size, 2)).astype(np.float32)
        m, v = losses.window_moments(tf.constant(x))
        assert m.shape == v.shape == (3, maps, maps, 2)
        assert float(losses.moment_loss(x, x)) == 0.0
        np.testing.assert_allclose(float(losses.moment_loss(x, x + 0.1)), 0.1, atol=1e-6)
        np.testing.assert_allclose(float(losses.moment_loss(x, y)), float(losses.moment_loss(y, x)), atol=1e-7)
        np.testing.assert_allclose(float(losses.moment_loss(x, y)), _np_moment_loss(x, y), atol=1e-5)


def _np_lap1(x, y, levels):
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0

    def blur(a):
        p = np.pad(a, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="symmetric")
        h, w = a.shape[1:3]
        return sum(kernel[i, j] * p[:, i : i + h, j : j + w] for i in range(5) for j in range(5))

    def pyramid(a):
        out = []
        for _ in range(levels):
            b = blur(a)
            out.append(a - b)
            a = b[:, ::2, ::2]
        return out + [a]

    px, py = pyramid(x.astype(np.float64)), pyramid(y.astype(np.float64))
    return sum(4.0**-j * np.abs(a - b).sum() for j, (a, b) in enumerate(zip(px, py))) / x.size


def test_laplacian_l1_loss():
    """The paper's Lap1 (``--loss lap1``): NumPy reference, zero on equal inputs, constant shift hand-computed."""
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(float(losses.laplacian_l1_loss(x, y, 3)), _np_lap1(x, y, 3), rtol=1e-5)
    assert float(losses.laplacian_l1_loss(x, x, 3)) == 0.0
    # A constant shift only moves the low-pass residual (4x4 after 28 -> 14 -> 7 -> 4), weighted 4^-3.
    expected = 4.0**-3 * 0.5 * (2 * 4 * 4) / x.size
    np.testing.assert_allclose(float(losses.laplacian_l1_loss(x, x + 0.5, 3)), expected, rtol=1e-3)
    assert losses.get_loss("lap1", 3) is not losses.moment_loss and losses.get_loss("moment") is losses.moment_loss


# -------------------------------------------------------------------------------------------- data layer


def test_split_order_and_sizes():
    """§9 #9: RandomState(123) shuffle of the id strings and the original's split sizes."""
    def ids(n):
        return [str(i) for i in range(n)]

    assert data_glo.split_ids(ids(100), 90)[0][:5] == ["8", "70", "82", "28", "63"]
    train_ids, test_ids = data_glo.split_ids(ids(70000), 60000)
    assert (train_ids[0], test_ids[0]) == ("21971", "32623")
    assert data_glo.split_ids(ids(99289), 73257)[0][0] == "56465"
    assert data_glo.split_ids(ids(60000), 50000)[0][0] == "29561"
    assert data_glo.default_num_train("MNIST", 70000) == 60000
    assert data_glo.default_num_train("MNIST", 280) == 240
    assert data_glo.default_num_train("CIFAR10", 60) == 50
    assert data_glo.default_num_train("", 10) == 9 and data_glo.default_num_train("", 2) == 1


def test_get_data_and_cleaner(in_tmp):
    """§9 #10 and #8: [-1, 1] images, float32 codes from update-or-code, data.hy accepted, cleaner resets."""
    images = np.zeros((10, 28, 28, 1), np.uint8)
    images[:, :14] = 255
    codes = np.random.default_rng(0).standard_normal((10, 5))
    folder = write_glo_dataset(in_tmp / "datasets" / "mnist", images, codes, file_name="data.hy")
    info = glo_data.describe("MNIST")
    assert info.path.name == "data.hy" and len(info.train_ids) == 8
    source = glo_data.DataFile(info, writable=True)
    x = source.images(["3"])
    assert x.dtype == np.float32 and x[0, 0, 0, 0] == 1.0 and x[0, 27, 0, 0] == -1.0
    z = source.codes(["3"])
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z[0], codes[3].astype(np.float32))
    code_store.write_update(source.group("3"), np.ones(5))
    np.testing.assert_array_equal(source.codes(["3"])[0], np.ones(5, np.float32))
    source.close()
    from glo import cleaner

    cleaner.main(["--datasets", "MNIST"])
    with h5py.File(folder / "data.hy", "r") as handle:
        assert not any("update" in handle[k] for k in handle)
        np.testing.assert_array_equal(code_store.read_code(handle["3"]), codes[3].astype(np.float32))
    with pytest.raises(SystemExit) as exit_info:
        cleaner.main(["--datasets", str(in_tmp / "nowhere")])
    assert exit_info.value.code == 2


def test_batch_stream_covers_each_epoch():
    """§3.3: per-epoch permutations cut into equal batches; a pure function of (seed, s)."""
    stream = glo_data.BatchStream(10, 4, seed=5)
    first = np.concatenate([stream.positions(s) for s in range(5)])  # 20 positions = 2 epochs
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:]) == list(range(10))
    again = glo_data.BatchStream(10, 4, seed=5)
    np.testing.assert_array_equal(again.positions(3), stream.positions(3))


# -------------------------------------------------------------------------------------------- training


def _state(source, store, cfg):
    g = models.build_generator(source.latent_dim, source.image_shape, "MNIST", xla_safe=cfg.jit_compile)
    opt = train.make_optimizer(cfg)
    opt.build(g.trainable_variables)
    return train.TrainState(g, opt, store.make_table(), tf.Variable(0, tf.int64), tf.Variable(0, tf.int64))


def _copy(generator):
    twin = models.build_generator(generator.latent_dim, generator.image_shape, "MNIST")
    twin.set_weights(generator.get_weights())
    return twin


def test_single_step_semantics(in_tmp):
    """§9 #16 (B = 8, alpha = 5) and the write-once default of #17 through the compiled step."""
    make_dataset(in_tmp / "datasets" / "mnist", n=70, dim=10)
    info = glo_data.describe("MNIST")
    source = glo_data.DataFile(info, writable=True)
    store = code_store.CodeStore(source.file, info.train_ids)
    cfg = TrainConfig(alpha=5.0)
    state = _state(source, store, cfg)
    step = train.make_train_step(state, alpha=5.0, loss_fn=losses.moment_loss, update_mode="first_only")
    positions = np.arange(8, dtype=np.int32) * 3
    ids = [info.train_ids[p] for p in positions]
    x, z = source.images(ids), source.codes(ids)
    before = _copy(state.generator)
    out = step(tf.constant(x), tf.constant(positions))
    assert set(out) >= {"loss", "g_update", "z_update", "x_hat"} and int(out["global_step"]) == 1
    np.testing.assert_allclose(float(out["loss"]), float(losses.moment_loss(x, before(z, training=True))), atol=1e-6)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before.get_weights(), state.generator.get_weights()))

    after = _copy(state.generator)
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        g_loss = losses.moment_loss(x, after(zt, training=True))
    expected = z - 5.0 * tape.gradient(g_loss, zt).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(float(out["g_update"]), float(g_loss), atol=1e-6)
    np.testing.assert_allclose(float(out["z_update"]), float(losses.moment_loss(x, after(expected))), atol=1e-5)
    store.sync(state.codes)
    stored = np.stack([source.group(i)["update"][()] for i in ids])
    assert stored.dtype == np.float32
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-6)

    step(tf.constant(x), tf.constant(positions))  # second visit: write-once keeps the first update
    store.sync(state.codes)
    np.testing.assert_array_equal(np.stack([source.group(i)["update"][()] for i in ids]), stored)
    source.close()


def test_code_update_modes_and_duplicates(tmp_path):
    """§9 #17: first_only freezes an id after its first write; every_step overwrites; duplicates in a batch."""
    make_dataset(tmp_path / "d", n=20, dim=3, distribution="gaussian")
    with h5py.File(tmp_path / "d" / "data.hdf5", "r+") as handle:
        store = code_store.CodeStore(handle, [str(i) for i in range(6)])
        first, second = np.eye(3, dtype=np.float32)[:2]
        results = {}
        for mode in ("first_only", "every_step"):
            table = store.make_table()
            pos = tf.constant([0, 2, 0], tf.int32)
            table.store(pos, tf.constant([first, first, second]), mode)
            results[mode] = [table.table.numpy()[0].copy()]
            table.store(tf.constant([0], tf.int32), tf.constant([second]), mode)
            results[mode].append(table.table.numpy()[0].copy())
            assert table.written.numpy().tolist() == [1, 0, 1, 0, 0, 0]
        np.testing.assert_array_equal(results["first_only"], [first, first])  # first occurrence, then frozen
        np.testing.assert_array_equal(results["every_step"], [second, second])  # last occurrence, overwritten
        assert store.sync(table) == 2
        assert "update" in handle["0"] and "update" not in handle["1"]
        table.written.assign(np.zeros(6, np.int32))  # a restored checkpoint from before those writes
        store.sync(table)
        assert not any("update" in handle[str(i)] for i in range(6))


def test_optimizer_and_schedule():
    """§9 #18: Adam(0.9, 0.999, 1e-8), global clip norm 20, staircase x0.5 every 10000 steps."""
    opt = train.make_optimizer(TrainConfig())
    assert (opt.beta_1, opt.beta_2, opt.epsilon, opt.global_clipnorm) == (0.9, 0.999, 1e-8, 20.0)
    schedule = train.learning_rate(TrainConfig(lr_weight_decay=True))
    values = [float(schedule(g)) for g in (0, 9999, 10000, 19999, 20000, 29999)]
    np.testing.assert_allclose(values, [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5], rtol=1e-6)


def test_run_folder_checkpoints_dumps_and_summaries(trained):
    """§9 #19: folder name, model-1..3, dumps 0..2, loss/loss and the two image tags."""
    root, run_dir = trained
    assert re.fullmatch(r"default-MNIST_lr_0\.0001-\d{8}-\d{6}", run_dir.name)
    assert run_dir.parent.name == "train_dir"
    for g in (1, 2, 3):
        assert (run_dir / f"model-{g}.index").exists()
    assert tf.train.latest_checkpoint(str(run_dir)).endswith("model-3")
    for s in (0, 1, 2):
        with h5py.File(run_dir / f"dump_result_{s}.hdf5", "r") as dump:
            assert dump["image"].dtype == np.float32 and dump["image"].shape == (16, 28, 28, 1)
    tags = set()
    for events in run_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags.update(v.tag for v in event.summary.value)
    assert {"loss/loss", "img/reconstructed", "img/real"} <= tags
    assert train_run_name(TrainConfig(learning_rate=1e-5), "CIFAR10").startswith("default-CIFAR10_lr_1e-05-")
    with h5py.File(root / "datasets" / "mnist" / "data.hdf5", "r") as handle:
        assert sum("update" in handle[k] for k in handle) == 48  # 3 steps x 16 distinct train ids


def test_checkpoint_flag_warm_start(trained, monkeypatch):
    """§9 #20: --checkpoint restores generator, optimizer and step into a new folder; model-4, model-5."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    args = trainer_parser().parse_args(["--checkpoint", str(run_dir / "model-3"), "--max_steps", "2",
                                        "--output_save_step", "1", "--prefix", "resumed", "--no_progress",
                                        "--eval_step", "2", "--eval_batches", "1", "--learning_rate", "0.001"])
    with captured_log() as records:
        new_dir = train.run(config_from_args(TrainConfig, args))
    assert new_dir.name.startswith("resumed-MNIST_lr_0.001-")
    assert any("restored the learning rate 0.0001" in m for m in messages(records))  # TF1 restored it too
    assert {p.name for p in new_dir.glob("model-*.index")} == {"model-4.index", "model-5.index"}
    old, new = tf.train.load_checkpoint(str(run_dir / "model-3")), tf.train.load_checkpoint(str(new_dir / "model-4"))
    assert new.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 4
    key = "optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"  # deconv1 kernel
    assert np.abs(old.get_tensor(key) - new.get_tensor(key)).max() < 1e-3  # one Adam step, not a new init
    records = [json.loads(line) for line in (new_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval/test_mse" in r] == [4]  # --eval_step 2: at s = 0 (g = 4)
    assert all(np.isfinite(r["eval/train_mae"]) for r in records if "eval/train_mae" in r)


def _checkpoint_values(path):
    reader = tf.train.load_checkpoint(path)
    names = [n for n in reader.get_variable_to_shape_map() if "save_counter" not in n and "OBJECT_GRAPH" not in n]
    return {n: reader.get_tensor(n) for n in names}


def test_same_run_name_resumes_exactly(tmp_path, monkeypatch):
    """Extension: rerunning with the same --run_name continues bit-for-bit, even after post-checkpoint writes."""
    finals = {}
    for name in ("straight", "resumed"):
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)
        make_dataset(Path("datasets/mnist"), n=70, dim=6)
        base = dict(run_name="r", output_save_step=2, seed=7, **QUIET)
        if name == "resumed":
            train.run(TrainConfig(max_steps=3, **base))
            with h5py.File("datasets/mnist/data.hdf5", "r+") as handle:  # writes a crash could leave behind
                touched = [k for k in handle if "update" in handle[k]]
                handle[touched[0]]["update"][...] = 0.5
                fresh = next(k for k in handle if "update" not in handle[k])
                handle[fresh].create_dataset("update", data=np.ones(6, np.float32))
            with pytest.raises(UsageError, match="alpha"):
                train.run(TrainConfig(max_steps=5, alpha=2.0, **base))
        run_dir = train.run(TrainConfig(max_steps=5, **base))
        with h5py.File("datasets/mnist/data.hdf5", "r") as handle:
            stored = {k: handle[k]["update"][()] for k in handle if "update" in handle[k]}
        finals[name] = (_checkpoint_values(str(run_dir / "model-5")), stored)
    (ckpt_a, h5_a), (ckpt_b, h5_b) = finals["straight"], finals["resumed"]
    assert ckpt_a.keys() == ckpt_b.keys() and h5_a.keys() == h5_b.keys()
    for key in ckpt_a:
        np.testing.assert_array_equal(ckpt_a[key], ckpt_b[key], err_msg=key)
    for key in h5_a:
        np.testing.assert_array_equal(h5_a[key], h5_b[key], err_msg=key)


def test_learning_signal(in_tmp):
    """§9 #21: 256 shapes, PCA d = 10, B 16, lr 1e-4, alpha 5, 200 steps: last-10 mean <= 0.75 x first-10 mean."""
    images = shape_images(256, 28, 1, seed=3)
    write_glo_dataset(in_tmp / "datasets" / "mnist", images, pca_codes(images, 10))
    with captured_log() as records:
        train.run(TrainConfig(alpha=5.0, max_steps=200, output_save_step=0, seed=1, no_progress=True,
                              summary_step=0, log_step=1))
    lines = [r for r in records if "[train step" in r.msg]
    values = np.array([r.args[1] for r in lines] + [r.args[2] for r in lines] + [r.args[3] for r in lines])
    loss = np.array([r.args[1] for r in lines])
    assert len(loss) == 200 and np.isfinite(values).all()
    assert loss[-10:].mean() <= 0.75 * loss[:10].mean(), (loss[:10].mean(), loss[-10:].mean())


def test_folder_dataset_trains_and_evaluates(in_tmp):
    """§9 #28: --dataset <folder> with data.hy, 32x32x1 images: 2 steps, then the evaler, no code edits.

    The run also uses the paper's options (Lap1 loss, codes updated at every visit)."""
    from glo import trainer

    make_dataset(in_tmp / "my_faces", n=30, size=32, channels=1, dim=8, file_name="data.hy")
    trainer.main(["--dataset", "my_faces", "--max_steps", "2", "--output_save_step", "1", "--gpu", "-1",
                  "--no_progress", "--summary_step", "0", "--loss", "lap1", "--code_update_mode", "every_step"])
    (run_dir,) = Path("train_dir").iterdir()
    assert run_dir.name.startswith("default-my_faces_lr_0.0001-")
    assert {p.name for p in run_dir.glob("model-*.index")} == {"model-1.index", "model-2.index"}
    out = evaluate.run(EvalConfig(dataset=str(in_tmp / "my_faces"), train_dir=str(run_dir), batch_size=4,
                                  reconstruct=True, generate=True))
    assert out["reconstruct"]["batches"] == 3 // 4 + 1 and np.isfinite(out["reconstruct"]["average_loss"])
    assert Image.open("generate_default.png").size == (2048, 2048)


# ------------------------------------------------------------------------------------------- evaluation


def test_generate(trained, monkeypatch, tmp_path):
    """§9 #22: 2048x2048 greyscale (RGB for 3 channels) in the working directory; unit-norm columns by default."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    out = evaluate.run(EvalConfig(checkpoint_path=str(run_dir / "model-3"), batch_size=64, prefix="t22",
                                  generate=True))
    image = Image.open(root / "generate_t22.png")
    assert image.size == (2048, 2048) and image.mode == "L"
    np.testing.assert_allclose(np.linalg.norm(out["generate"]["z"], axis=0), 1.0, atol=1e-5)
    assert not np.allclose(np.linalg.norm(out["generate"]["z"], axis=1), 1.0, atol=1e-3)
    make_dataset(tmp_path / "rgb", n=12, size=32, channels=3, dim=5)
    monkeypatch.chdir(tmp_path)
    out = evaluate.run(EvalConfig(dataset="rgb", batch_size=9, prefix="rgb", generate=True, sample_mode="row_norm"))
    assert Image.open(tmp_path / "generate_rgb.png").mode == "RGB"
    np.testing.assert_allclose(np.linalg.norm(out["generate"]["z"], axis=1), 1.0, atol=1e-5)


def test_full_covariance_sampling():
    """--sample_mode full_cov: samples follow the Gaussian fitted to the codes (the paper's sampler)."""
    rng = np.random.default_rng(0)
    codes = rng.standard_normal((4000, 3)) @ np.array([[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 0.2]]) + [0.3, 0, 0]
    np.random.seed(0)
    z = evaluate.sample_codes("full_cov", 20000, 3, codes)
    np.testing.assert_allclose(z.mean(axis=0), codes.mean(axis=0), atol=0.03)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.cov(codes, rowvar=False), atol=0.04)


def test_interpolate(trained, monkeypatch):
    """§9 #23: 15x15 tiles, real endpoints from consecutive shuffled train ids, unit-norm codes, B >= 13."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    cfg = EvalConfig(checkpoint_path=str(run_dir / "model-3"), batch_size=16, prefix="t23", interpolate=True)
    out = evaluate.run(cfg)["interpolate"]
    assert Image.open(root / "interpolate_t23.png").size == (2048, 2048)
    info = glo_data.describe("MNIST")
    source = glo_data.DataFile(info)
    train_ids = list(info.train_ids)
    for row, pair, batch in zip(out["rows"], out["pairs"], out["codes"]):
        assert row.shape == (15, 28, 28, 1)
        assert train_ids.index(pair[1]) == train_ids.index(pair[0]) + 1
        np.testing.assert_array_equal(row[0], source.images([pair[0]])[0])
        np.testing.assert_array_equal(row[-1], source.images([pair[1]])[0])
        np.testing.assert_allclose(np.linalg.norm(batch[:13], axis=1), 1.0, atol=1e-5)
        assert not batch[13:].any()  # the original's zero padding
    source.close()
    with pytest.raises(UsageError, match="at least 13"):
        evaluate.run(dataclasses.replace(cfg, batch_size=12))


def test_reconstruct(trained, monkeypatch):
    """§9 #24: 40 test images, B 16: 3 batches, 3 log lines, the mean pixel MAE, no image; metrics.jsonl."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    before = set(root.iterdir())
    with captured_log() as records:
        out = evaluate.run(EvalConfig(train_dir=str(run_dir), batch_size=16, prefix="t24", reconstruct=True))
    text = messages(records)
    assert sum("Loss (test):" in m for m in text) == 3
    result = out["reconstruct"]
    assert result["batches"] == 3
    assert f"Average loss : {np.mean(result['maes']):.4f}" in text
    assert set(root.iterdir()) == before
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    record = [r for r in map(json.loads, lines) if "eval/test_mae" in r]
    assert record[-1]["step"] == 3 and record[-1]["eval/test_mae"] == pytest.approx(result["average_loss"])
    assert {"eval/train_mae", "eval/train_mse", "eval/test_mse"} <= record[-1].keys()
    evaluate.run(EvalConfig(train_dir=str(run_dir), batch_size=16, prefix="t24", reconstruct=True,
                            save_reconstruction=True))
    assert Image.open(root / "reconstruct_t24.png").size[1] == 4 * 29 + 1


def test_no_task_and_checkpoint_choice(trained, monkeypatch):
    """§9 #25 and #26: the no-task error; --checkpoint_path / --checkpoint / --train_dir / random init."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    with captured_log() as records, pytest.raises(evaluate.NoTaskError, match="specify at least one task") as err:
        evaluate.run(EvalConfig())
    assert isinstance(err.value, ValueError) and isinstance(err.value, UsageError)
    assert any("No checkpoint is given" in m for m in messages(records))
    for flag in ("--checkpoint_path", "--checkpoint"):
        cfg = config_from_args(EvalConfig, evaler_parser().parse_args([flag, "a/model-1", "--generate"]))
        assert cfg.checkpoint_path == "a/model-1" and cfg.generate
    assert evaluate.resolve_checkpoint(EvalConfig(train_dir=str(run_dir))).endswith("model-3")
    explicit = EvalConfig(checkpoint_path=str(run_dir / "model-1"), train_dir=str(run_dir))
    assert evaluate.resolve_checkpoint(explicit).endswith("model-1")
    with pytest.raises(UsageError, match="no checkpoint"):
        evaluate.run(EvalConfig(checkpoint_path=str(run_dir / "model-99"), generate=True))


@pytest.mark.slow
def test_jit_compiled_step_matches(in_tmp):
    """--jit_compile: the XLA step gives the same losses and codes as the tf.function step."""
    make_dataset(in_tmp / "d", n=40, dim=6)
    info = glo_data.describe(str(in_tmp / "d"))
    outputs = []
    for jit in (False, True):
        set_seed(0)
        source = glo_data.DataFile(info, writable=True)
        store = code_store.CodeStore(source.file, info.train_ids)
        state = _state(source, store, TrainConfig(jit_compile=jit))
        step = train.make_train_step(state, alpha=5.0, loss_fn=losses.moment_loss, update_mode="first_only",
                                     jit_compile=jit)
        positions = np.arange(8, dtype=np.int32)
        out = step(tf.constant(source.images([info.train_ids[p] for p in positions])), tf.constant(positions))
        outputs.append((float(out["loss"]), float(out["z_update"]), state.codes.table.numpy()))
        source.close()
    np.testing.assert_allclose(outputs[0][:2], outputs[1][:2], rtol=1e-5)
    np.testing.assert_allclose(outputs[0][2], outputs[1][2], atol=1e-5)
    # XLA's own lowering of the legacy ResizeBilinear op gets the 32 -> 28 downscale wrong; ours does not.
    x = tf.random.normal([2, 32, 32, 1])
    compiled = tf.function(lambda t: models.legacy_resize_bilinear(t, (28, 28), xla_safe=True), jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), models.legacy_resize_bilinear(x, (28, 28)).numpy(), atol=1e-6)


def test_evaler_restores_every_generator_weight(trained, monkeypatch):
    """The evaler's restore reads all generator weights, BN moving statistics included (Keras 3 layers kept in a
    Python list would silently be left out of tf.train.Checkpoint)."""
    root, run_dir = trained
    monkeypatch.chdir(root)
    path = str(run_dir / "model-3")
    reader = tf.train.load_checkpoint(path)
    stored = [reader.get_tensor(name) for name in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in name]
    source = glo_data.DataFile(glo_data.describe("MNIST"))
    generator = evaluate.load_generator(source, path)
    fresh = models.build_generator(source.latent_dim, source.image_shape, "MNIST")
    source.close()
    assert len(generator.weights) == 26  # 5 x (kernel, bias) + 4 x (gamma, beta, moving mean, moving variance)
    for var, init in zip(generator.weights, fresh.weights):
        value = var.numpy()
        assert not np.array_equal(value, init.numpy()), var.path  # trained for 3 steps: every weight moved
        assert any(t.shape == value.shape and np.array_equal(t, value) for t in stored), var.path


@pytest.mark.parametrize("channels", [1, 3])
def test_visualize_training(tmp_path, channels):
    """§9 #27: one GIF frame per dump, (4h)x(4w) for B = 16; the PNG is the last frame; uint8."""
    rng = np.random.default_rng(channels)
    for s in range(3):
        with h5py.File(tmp_path / f"dump_result_{s}.hdf5", "w") as dump:
            dump["image"] = rng.uniform(-1, 1, (16, 7, 5, channels)).astype(np.float32)
    gif, png, count = build_training_gif(str(tmp_path), str(tmp_path / "out"))
    frames = Image.open(gif)
    assert count == 3 and frames.n_frames == 3 and frames.size == (20, 28)
    last = np.asarray(Image.open(png))
    assert last.dtype == np.uint8 and last.shape[:2] == (28, 20) and last.min() == 0 and last.max() == 255
    with h5py.File(tmp_path / "dump_result_2.hdf5", "r") as dump:
        np.testing.assert_array_equal(last, frame_from_batch(dump["image"][()]))
    frames.seek(2)
    if channels == 1:  # a grey frame survives the GIF palette exactly
        np.testing.assert_array_equal(np.asarray(frames.convert("L")), last)
    with pytest.raises(UsageError):
        build_training_gif(str(tmp_path), None)


def test_usage_errors(in_tmp, monkeypatch):
    """Bad input: one line naming the flag, exit status 2."""
    from glo import trainer

    monkeypatch.setattr(glo_data, "REPO_ROOT", in_tmp)  # no fallback to a datasets/ folder of the repository

    with pytest.raises(UsageError, match="--dataset"):
        glo_data.describe("MNIST")
    with pytest.raises(UsageError, match="--dataset nowhere"):
        glo_data.describe("nowhere")
    with pytest.raises(UsageError, match="--batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(SystemExit) as exit_info:
        trainer.main(["--dataset", "nowhere", "--gpu", "-1"])
    assert exit_info.value.code == 2
