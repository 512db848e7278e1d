"""ConGAN training: ownership of updates, SimSiam batch statistics, Run 2, end-to-end runs, files, resume,
Framework 1, SimSiam pretraining, evaluation and sampling entry points (spec §9: 10, 11, 13, 19, 26, 27)."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from common.seeding import make_generator, set_seed
from congan import checkpoints, framework1, framework2
from congan.config import Framework1Config, SimSiamConfig, resolve, tiny_framework2
from congan.simsiam import SimSiam, load_simsiam, pretrain
from congan.trainer import run_framework1, run_framework2

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def eager():
    """Run the step functions eagerly: same code, no tracing (keeps these small runs fast)."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _images(n=192, size=32, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.uint8)


def _tiny_state(**overrides):
    cfg = resolve(tiny_framework2(**overrides), check_paths=False)
    set_seed(0)
    simsiam = SimSiam("tiny", 64, 16).build_for(32)
    nets = framework2.build_networks(cfg, simsiam.encoder, 64)
    opts = framework2.make_optimizers(cfg, nets)
    rng = make_generator(0)
    return cfg, simsiam, nets, opts, rng, framework2.Steps(nets, opts, cfg, rng, 64)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_update_ownership(eager):
    cfg, simsiam, nets, opts, rng, steps = _tiny_state()
    x = tf.constant(_images(32))
    snap = {k: _values(getattr(nets, k).trainable_variables) for k in "GTDQ"}
    sim = _values(simsiam.trainable_variables)
    u = nets.D.blocks[1].conv1.sn_u.numpy().copy()
    steps.g(0.1, 0.1)((x,), tf.constant(0.1), tf.constant(0.1))
    after_g = {k: _values(getattr(nets, k).trainable_variables) for k in "GTDQ"}
    assert not _same(snap["G"], after_g["G"]) and not _same(snap["T"], after_g["T"])
    assert _same(snap["D"], after_g["D"]) and _same(snap["Q"], after_g["Q"])
    assert not np.array_equal(u, nets.D.blocks[1].conv1.sn_u.numpy())  # SN state moves in the G step
    stats = nets.G.blocks[0].bn1.bn.moving_mean.numpy().copy()
    steps.d(0.1)(x, (x,), tf.constant(0.1))
    after_d = {k: _values(getattr(nets, k).trainable_variables) for k in "GTDQ"}
    assert _same(after_g["G"], after_d["G"]) and _same(after_g["T"], after_d["T"])
    assert not _same(after_g["D"], after_d["D"]) and not _same(after_g["Q"], after_d["Q"])
    assert not np.array_equal(stats, nets.G.blocks[0].bn1.bn.moving_mean.numpy())  # G in training mode
    assert _same(sim, _values(simsiam.trainable_variables))  # SimSiam is frozen


def test_q_untouched_while_lambda_d_is_zero(eager):
    cfg, simsiam, nets, opts, rng, steps = _tiny_state()
    x = tf.constant(_images(32))
    q = _values(nets.Q.trainable_variables)
    steps.g(1.0, 0.0)((x,), tf.constant(1.0), tf.constant(0.0))
    steps.d(0.0)(x, (x,), tf.constant(0.0))
    assert _same(q, _values(nets.Q.trainable_variables))
    assert int(opts["Q"].iterations.numpy()) == 0 and int(opts["D"].iterations.numpy()) == 1
    assert all(np.all(m.numpy() == 0) for m in opts["Q"].m)


def test_simsiam_uses_batch_statistics():
    cfg, simsiam, nets, *_ = _tiny_state()
    x = tf.random.normal((16, 32, 32, 3))
    r = framework2.encode(nets, x, cfg).numpy()
    assert np.abs(r.mean(0)).max() < 1e-4 and np.abs(r.var(0) - 1.0).max() < 1e-2
    inference = framework2.encode(nets, x, dataclasses.replace(cfg, simsiam_bn_mode="inference")).numpy()
    assert np.abs(inference.var(0) - 1.0).max() > 1e-2


def test_run2_generator_ignores_the_representation():
    cfg, simsiam, nets, *_ = _tiny_state(conditioning="none")
    assert nets.T.mode == "noop" and not nets.T.weights
    noise = tf.random.normal((4, cfg.latent_noise_dim))
    a = framework2.generate(nets, tf.random.normal((4, 64)), noise, training=False).numpy()
    b = framework2.generate(nets, 10 * tf.random.normal((4, 64)), noise, training=False).numpy()
    np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """The spec's tiny end-to-end run through the entry point (graph mode): 192 synthetic 32-px PNGs,
    B 32 (6 batches, D_iters 1: 2 G / 2 D steps per epoch), 2 epochs, lambda 0 -> 0.1 at epoch 1."""
    from congan.train import main

    base = tmp_path_factory.mktemp("congan_run")
    data = base / "data" / "train" / "synthetic"
    data.mkdir(parents=True)
    for k, image in enumerate(_images()):
        Image.fromarray(image).save(data / f"{k:03d}.png")
    run_dir = base / "run"
    args = ["--framework", "2", "--dataset", "folder", "--data_dir", str(base / "data"), "--image_size", "32",
            "--batch_size", "32", "--num_features", "8", "--latent_noise_dim", "16", "--latent_hidden_dim", "16",
            "--Q_hidden_dim", "16", "--dim", "64", "--pred_dim", "16", "--simsiam_arch", "tiny",
            "--simsiam_path", "random", "--D_iters", "1", "--epochs", "2", "--seed", "0", "--print_freq", "1",
            "--G_consistency_schedule", "0:0,1:0.1", "--D_consistency_schedule", "0:0,1:0.1",
            "--run_dir", str(run_dir), "--gpu", "-1"]
    main(args)
    return run_dir, args


def test_end_to_end_run_writes_the_notebook_files(trained_run):
    run_dir, _ = trained_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["lambda_G"], r["lambda_D"]) for r in records] == [(0, 0.0, 0.0), (1, 0.1, 0.1)]
    assert all(np.isfinite(v) for r in records for v in r.values() if isinstance(v, float))
    assert "D repr loss" in records[1] and "D repr loss" not in records[0]
    for stem in checkpoints.STEMS:
        assert (run_dir / "results" / f"{stem}.weights.h5").is_file()
    state = json.loads((run_dir / "results" / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["G_consistency_schedule"] == "0:0,1:0.1"
    assert json.loads((run_dir / "config.json").read_text())["D_lr"] == pytest.approx(1e-3 * 32 / 256)
    for epoch in (0, 1):
        grid = np.asarray(Image.open(run_dir / "results" / "progress" / f"grid_{epoch:04d}.png"))
        assert grid.shape == (8 * 34 + 2, 8 * 34 + 2, 3)  # 32 real then 32 fake, 8 per row, padding 2
    assert (run_dir / "results" / "progress" / "grids_per_50_iters.gif").is_file()
    assert (run_dir / "model-4.index").is_file()


def test_result_files_reload_bit_exactly(trained_run):
    from congan.evaluation import load_framework2

    run_dir, _ = trained_run
    cfg, from_ckpt, _ = load_framework2(run_dir)
    _, from_files, _ = load_framework2(run_dir, load=run_dir / "results")
    z, r = tf.random.normal((4, from_ckpt.T.output_dim)), tf.random.normal((4, 64))
    np.testing.assert_array_equal(from_ckpt.G(z, r).numpy(), from_files.G(z, r).numpy())
    ckpt_path = tf.train.latest_checkpoint(str(run_dir))
    reader = tf.train.load_checkpoint(ckpt_path)
    q_iters = [k for k in reader.get_variable_to_shape_map() if k.startswith("opt_Q/iterations")]
    assert int(reader.get_tensor(q_iters[0])) == 2  # Q's Adam only ran in epoch 1 (2 D steps)


def test_evaluate_and_sample_entry_points(trained_run, tmp_path, capsys):
    from common.classifier_features import build_classifier, save_classifier
    from congan.evaluate import main as evaluate_main
    from congan.sample import main as sample_main

    run_dir, _ = trained_run
    classifier = tmp_path / "clf.keras"
    save_classifier(build_classifier("cifar10"), classifier, {"dataset": "cifar10"})
    record = evaluate_main(["--run_dir", str(run_dir), "--features", "classifier", "--classifier", str(classifier),
                            "--num_samples", "40", "--gpu", "-1"])
    assert record["num_images"] == 64 and np.isfinite(record["classifier_fid"])  # ceil(41 / 32) * 32
    assert record["classifier_is_std"] == 0.0 and record["num_real"] == 192
    assert len(list((run_dir / "generated_samples").glob("*.png"))) == 64
    capsys.readouterr()
    paths = sample_main(["--run_dir", str(run_dir), "--num", "4", "--gpu", "-1"])
    assert sorted(paths) == ["gaussian", "lerp", "real", "slerp", "uniform"]
    real = np.asarray(Image.open(paths["real"]))
    assert real.shape[0] == 32 + 2 * 2 and np.isfinite(real).all()
    # Default = the notebook's slerp: NaN images, one warning line, the grid still written (NaN as mid-grey).
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "notebook's slerp" in warnings[0] and "--fix_slerp" in warnings[0]
    slerp_grid = np.asarray(Image.open(paths["slerp"]))
    assert slerp_grid.shape == real.shape[:1] + (4 * 34 + 2 + 3 * (8 + 4 * 34 + 2), 3)
    tiles = [slerp_grid[2:34, x:x + 32] for g in (2, 3) for x in range(g * 146 + 2, g * 146 + 138, 34)]
    assert any(np.all(tile == 128) for tile in tiles)  # a NaN sample drawn as 0 -> grey 128
    fixed = sample_main(["--run_dir", str(run_dir), "--num", "4", "--methods", "slerp", "--fix_slerp",
                         "--out_dir", str(tmp_path / "fixed"), "--gpu", "-1"])
    assert "warning:" not in capsys.readouterr().err
    assert not np.array_equal(np.asarray(Image.open(fixed["slerp"])), slerp_grid)


def test_resume_is_exact(tmp_path, eager):
    cfg = resolve(tiny_framework2(epochs=2, G_consistency_schedule="0:0,1:0.1", D_consistency_schedule="0:0,1:0.1",
                                  run_dir=str(tmp_path / "straight")), check_paths=False)
    images = _images(96)  # 3 batches: one iteration per epoch
    run_framework2(cfg, images=images, show_progress=False)
    cut = dataclasses.replace(cfg, run_dir=str(tmp_path / "cut"))
    run_framework2(cut, images=images, show_progress=False, stop_after=1)  # stopped before the lambda switch
    assert (tmp_path / "cut" / "model-1.index").is_file() and not (tmp_path / "cut" / "model-2.index").exists()
    run_framework2(cut, images=images, show_progress=False)
    a = tf.train.load_checkpoint(str(tmp_path / "straight" / "model-2"))
    b = tf.train.load_checkpoint(str(tmp_path / "cut" / "model-2"))
    keys = [k for k in a.get_variable_to_shape_map() if not k.startswith(("_CHECKPOINTABLE", "save_counter"))]
    assert len(keys) > 50
    for key in keys:
        np.testing.assert_array_equal(a.get_tensor(key), b.get_tensor(key), err_msg=key)


def test_framework1_end_to_end_and_dead_repr_term(tmp_path, eager):
    base = dict(image_size=32, batch_size=8, latent_dim=8, dim=64, pred_dim=16, D_iters=1, simsiam_arch="tiny",
                simsiam_path="random", seed=0, generate_grid_interval=2, print_freq=1, epochs=1)
    cfg = resolve(Framework1Config(**base, run_dir=str(tmp_path / "f1")))
    run_dir = run_framework1(cfg, images=_images(32), show_progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and all(np.isfinite(v) for v in records[0].values() if isinstance(v, float))
    assert (run_dir / "results" / "checkpoint_0000.weights.h5").is_file()
    assert (run_dir / "model-4.index").is_file()

    def one_step(repr_consistency):
        set_seed(0)
        simsiam = SimSiam("tiny", 64, 16).build_for(32)
        c = dataclasses.replace(cfg, repr_consistency=repr_consistency)
        state = framework1.build_state(c, simsiam.encoder, 64, make_generator(0))
        d_step, _ = framework1.make_batch_steps(state, c)
        out = d_step(tf.constant(_images(8)))
        return float(out["Rec loss"]), _values(state.model.ae_variables)

    loss_a, weights_a = one_step(10.0)
    loss_b, weights_b = one_step(0.0)
    assert loss_a != loss_b and _same(weights_a, weights_b)


def test_simsiam_pretraining_and_loading(tmp_path, eager):
    cfg = resolve(SimSiamConfig(arch="tiny", dim=64, pred_dim=16, batch_size=4, epochs=1, image_size=32, seed=0,
                                run_dir=str(tmp_path / "simsiam")))
    path = pretrain(cfg, images=_images(8), show_progress=False)
    assert path.name == "simsiam.weights.h5"
    assert json.loads((path.parent / "simsiam.json").read_text())["arch"] == "tiny"
    record = json.loads((path.parent / "metrics.jsonl").read_text().splitlines()[-1])
    assert -1.0 <= record["loss"] <= 1.0
    loaded = load_simsiam(str(path), "tiny", 64, 16, 32)
    reader = tf.train.load_checkpoint(str(path.parent / "model-2"))
    assert reader is not None and len(loaded.weights) > 10
    from common.errors import UsageError

    with pytest.raises(UsageError, match="dim=64"):
        load_simsiam(str(path), "tiny", 128, 16, 32)


def test_cli_errors_exit_2_with_one_line(tmp_path):
    inside = subprocess.run([sys.executable, "train.py", "--framework", "2", "--simsiam_path", str(tmp_path / "no")],
                            cwd=ROOT / "congan", capture_output=True, text=True)
    assert inside.returncode == 2
    assert inside.stderr.strip().splitlines() == [f"error: --simsiam_path: {tmp_path / 'no'} does not exist"]
    dry = subprocess.run([sys.executable, "congan/train.py", "--preset", "run2", "--dry_run"], cwd=ROOT,
                         capture_output=True, text=True)
    assert dry.returncode == 0 and json.loads(dry.stdout)["conditioning"] == "none"
