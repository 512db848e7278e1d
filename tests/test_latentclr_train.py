"""LatentCLR train / eval / gen end to end on toy Keras generators (acceptance checks 14, 16, 19-27).

In-process runs of ``latentclr.trainer.run``, ``latentclr.evaluate.run`` and ``latentclr.generate.run`` on
configs composed by Hydra from ``latentclr/conf``; two cheap subprocess runs of the entry scripts check the
one-line errors (no TensorFlow is started for them).
"""

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from common.errors import UsageError
from common.summaries import read_metrics
from latentclr import build, evaluate, generate, models, trainer
from latentclr.checkpoints import export_directions, load_directions, save_snapshot
from latentclr.testing import identity_generator, save_model, toy_generator

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "latentclr" / "conf")


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toys")
    keras.utils.set_random_seed(0)
    return {"toy": save_model(toy_generator(latent_dim=16, size=32), folder / "toy.keras"),
            "identity": save_model(identity_generator(8), folder / "identity.keras"),
            "multi": save_model(toy_generator(latent_dim=4, size=8, n_latent=3), folder / "multi.keras")}


def config(name, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        return OmegaConf.to_container(compose(name, overrides=list(overrides)), resolve=True)


def toy_config(toys, name="train", *overrides, model="nonlinear"):
    extra = {"train": ["tb_image_dirs=2", "hparams.batch_size=4"], "eval": ["hparams.batch_size=4"]}.get(name, [])
    return config(name, "generator=keras", f"generator.model_path={toys['toy']}", "generator.feature_layer=conv8",
                  "k=4", f"model={model}", *extra, *overrides)


def identity_pieces(toys, *overrides):
    cfg = config("train", "generator=keras", f"generator.model_path={toys['identity']}",
                 "generator.feature_layer=identity", "k=4", "model=global", "model.alpha=1.0",
                 "projector.normalize=false", *overrides)
    return cfg, trainer.Pieces(cfg)


def test_pipeline_identity_gives_the_loss_minimum(toys):
    _, pieces = identity_pieces(toys)
    pieces.model.params.assign(np.eye(4, 8, dtype=np.float32))
    z = tf.constant(np.random.RandomState(0).randn(5, 8).astype(np.float32))
    acc, loss = pieces.contrastive(z, tf.ones(4), True, True, True)
    np.testing.assert_allclose([float(acc), float(loss)], [1.0, -0.5], atol=1e-6)


def test_identity_generator_converges_to_orthogonal_directions(toys):
    cfg, pieces = identity_pieces(toys, "hparams.optimizer.lr=0.01", "seed=0")
    trainer.seed_everything(cfg)
    variables = list(pieces.model.trainable_variables)
    from latentclr import optim

    opt = optim.build_optimizer(variables, cfg["hparams"]["optimizer"], cfg["hparams"]["scheduler"])
    step = trainer.make_train_step(pieces, opt, variables, len(variables), True, None)
    for _ in range(200):
        out = step(*pieces.draw(5))
    assert float(out["loss"]) < -0.49
    d = pieces.model.params.numpy()
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    cos = np.abs(d @ d.T - np.eye(4))
    assert cos.max() < 0.05


def interrupt_after_first_epoch(monkeypatch):
    original = trainer._validate
    calls = []

    def validate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)  # as Ctrl-C during epoch 0's validation
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "_validate", validate)


def read_tags(run_dir):
    tags = {}
    for path in Path(run_dir).glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


def test_train_cadence_outputs_and_exact_resume(toys, tmp_path, monkeypatch):
    # plain tf.function: XLA would compile train and validation steps once per run (4 runs); the resumption
    # below switches to XLA, which must continue the run correctly (it draws no random numbers of its own)
    cfg = toy_config(toys, "train", "hparams.iterations=25", "eval_freq=10", "eval_iters=2", "model.alpha=[-3.0,3.0]",
                     "jit_compile=false")
    straight = tmp_path / "straight"
    trainer.run(cfg, straight)
    lines = [line for line in (straight / "train.log").read_text().splitlines() if "| Epoch time:" in line]
    assert len(lines) == 3
    assert re.search(r"Epoch 2 \| Train acc: \d\.\d{3} \| Train loss: -?\d\.\d{3} \| Val acc: \d\.\d{3} \| "
                     r"Val loss: -?\d\.\d{3} \| Epoch time: \d+\.\ds", lines[-1])
    tags = read_tags(straight)
    for tag in ("Loss/train", "Acc/train", "Loss/val", "Acc/val"):
        assert sorted(tags[tag]) == [0, 1, 2]
    assert "config" in tags and "directions" in tags
    for name in ("most_recent-25.index", "best_model.ckpt/ckpt.index", "final_model.ckpt/ckpt.index"):
        assert (straight / name).exists(), name
    # best_model holds the epoch with the lowest validation loss
    best = min(read_metrics(straight), key=lambda r: r["Loss/val"])
    stored = tf.train.load_checkpoint(str(straight / "best_model.ckpt" / "ckpt")).get_tensor(
        "iteration/.ATTRIBUTES/VARIABLE_VALUE")
    assert int(stored) == best["iteration"]

    interrupted = tmp_path / "interrupted"
    cfg = dict(cfg, tb_image_dirs=0)  # TensorBoard images only (ignored by the resume check): saves test time
    interrupt_after_first_epoch(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        trainer.run(cfg, interrupted)
    assert stop.value.code == 130 and (interrupted / "most_recent-10.index").exists()
    monkeypatch.undo()
    with pytest.raises(UsageError, match="k: 4 -> 5"):  # resuming needs the same configuration
        trainer.run(dict(cfg, k=5), interrupted)
    trainer.run(dict(cfg, jit_compile=True), interrupted)  # the same command again: continues at iteration 10
    a, b = (tf.train.load_checkpoint(str(d / "final_model.ckpt" / "ckpt")) for d in (straight, interrupted))
    names = [n for n in a.get_variable_to_shape_map() if n.startswith("model/")]
    assert names
    for name in names:  # XLA's float rounding differs from tf.function's (1.4e-6 measured after 15 steps); a resume
        # that lost the optimiser moments or the NumPy RNG state changes the following Adam steps, each of which
        # moves a weight by up to lr = 1e-3, far beyond the tolerance
        np.testing.assert_allclose(a.get_tensor(name), b.get_tensor(name), atol=1e-5)
    assert trainer.run(cfg, straight) == {}  # finished runs are not trained again


def test_feed_layers_route_the_edit(toys):
    cfg = config("train", "generator=keras", f"generator.model_path={toys['multi']}", "generator.feature_layer=cat",
                 "k=2", "model=global", "model.alpha=1.0", "feed_layers=[1]")
    pieces = trainer.Pieces(cfg)
    z = tf.constant(np.random.RandomState(1).randn(3, 4).astype(np.float32))
    edited = pieces.model(z, tf.ones(2))
    inputs = pieces.generator_inputs(z, edited, use_feed=True)
    assert isinstance(inputs, list) and len(inputs) == 3
    feats = pieces.chunked_features(inputs).numpy()  # "cat" = the three latents side by side
    np.testing.assert_allclose(feats[:, :4], np.tile(z, (2, 1)), atol=1e-6)
    np.testing.assert_allclose(feats[:, 4:8], edited, atol=1e-6)
    np.testing.assert_allclose(feats[:, 8:], np.tile(z, (2, 1)), atol=1e-6)
    # validation ignores feed_layers unless val_uses_feed_layers (the original's behaviour)
    assert not isinstance(pieces.generator_inputs(z, edited, use_feed=False), list)
    single = config("train", "generator=keras", f"generator.model_path={toys['toy']}", "generator.feature_layer=fc",
                    "feed_layers=[1]")
    with pytest.raises(UsageError, match="n_latent = 1"):
        trainer.Pieces(single)


def snapshot(tmp_path, cfg, seed=0, name="model"):
    keras.utils.set_random_seed(seed)
    generator = build.build_generator(cfg)
    model = build.build_model(cfg, generator.latent_dim)
    projector = build.build_projector(cfg, int(np.prod(generator.feature_shape())))
    return save_snapshot(tmp_path, name, model, projector, 1), model


def gen_cells(path):
    image = np.asarray(Image.open(path).convert("RGB"))
    rows = (image.shape[0] - 52) // 34
    return image, [[image[52 + r * 34: 52 + r * 34 + 32, 102 + c * 34: 102 + c * 34 + 32] for c in range(5)]
                   for r in range(rows)]


def test_gen_writes_the_original_grids(toys, tmp_path):
    out = {}
    for model in ("global", "nonlinear"):
        ckpt, _ = snapshot(tmp_path, toy_config(toys, "gen", model=model), name=model)
        for iterative in ("true", "false"):
            samples = 2 if (model, iterative) == ("global", "true") else 1
            cfg = toy_config(toys, "gen", f"checkpoint={ckpt}", f"n_samples={samples}", "n_dirs=[0,1,2]",
                             "alphas=[-2,-1,0,1,2]", "image_size=32", f"iterative={iterative}", model=model)
            run_dir = tmp_path / f"{model}_{iterative}"
            paths = generate.run(cfg, run_dir)
            assert [p.name for p in paths] == [f"sample_{i}.png" for i in range(samples)]
            out[model, iterative] = gen_cells(paths[0])
    image, cells = out["global", "true"]
    assert image.shape == (154, 272, 3)  # W x H = 272 x 154
    for row in cells[1:]:
        np.testing.assert_array_equal(row[2], cells[0][2])  # the middle column is the original image
    assert not np.array_equal(cells[0][0], cells[0][2])
    np.testing.assert_array_equal(out["global", "true"][0], out["global", "false"][0])  # global: Euler = direct
    assert not np.array_equal(out["nonlinear", "true"][0], out["nonlinear", "false"][0])
    assert generate.split_alphas([-2, -1, 0, 1, 2]) == ([-2.0, -1.0], [1.0, 2.0])
    cfg = toy_config(toys, "gen", model="global")
    generator = build.build_generator(cfg)
    editor = generate.Editor(generator, build.build_model(cfg, generator.latent_dim))
    cells, titles = editor.rows(generator.sample_latent(1, seed=0), [0, 1], [2, -1, 0, -2, 1], iterative=True)
    assert cells.shape == (2, 5, 32, 32, 3)
    assert titles == ["α= -2.000", "α= -1.000", "α=0", "α= 1.000", "α= 2.000"]


def test_gen_edge_cases(toys, tmp_path):
    ckpt, _ = snapshot(tmp_path, toy_config(toys, "gen", model="global"))
    base = ("alphas=[-1,0,1]", "image_size=32", f"checkpoint={ckpt}")
    generate.run(toy_config(toys, "gen", "n_samples=1", "n_dirs=-1", *base, model="global"), tmp_path / "all")
    assert Image.open(tmp_path / "all" / "sample_0.png").size[1] == 50 + 4 * 34 + 2  # K rows
    np.random.seed(0)
    dirs = generate.choose_directions(2, 4)
    assert len(set(dirs)) == 2
    latents = tmp_path / "z.npy"
    np.save(latents, np.random.RandomState(0).randn(2, 16))
    written = generate.run(toy_config(toys, "gen", f"n_samples={latents}", "n_dirs=2", *base, model="global"),
                           tmp_path / "npy")
    assert len(written) == 2
    with pytest.raises(UsageError, match="alphas"):
        generate.run(toy_config(toys, "gen", "alphas=[-2,-1]", f"checkpoint={ckpt}", model="global"), tmp_path / "x")


def test_eval_reports_accuracy_and_loss(toys, tmp_path):
    ckpt, _ = snapshot(tmp_path, toy_config(toys, "eval"))
    cfg = toy_config(toys, "eval", f"checkpoint={ckpt}", "hparams.iterations=2")
    result = evaluate.run(cfg, tmp_path / "eval")
    assert np.isfinite(result["loss"]) and 0.0 <= result["acc"] <= 1.0
    assert re.search(r"Acc: \d\.\d{4} Loss: -?\d\.\d{4}", (tmp_path / "eval" / "eval.log").read_text())


def test_checkpoint_forms_round_trip(toys, tmp_path):
    nonlinear = toy_config(toys, "gen", model="nonlinear")
    keras.utils.set_random_seed(2)
    generator = build.build_generator(nonlinear)
    model = build.build_model(nonlinear, generator.latent_dim)
    model.nets.batchnorm_1.moving_mean.assign(tf.random.normal((4, 16)))  # BN statistics must be saved too
    projector = models.IdentityProjector()
    ckpt = save_snapshot(tmp_path, "bn", model, projector, 1)
    _, other = snapshot(tmp_path, nonlinear, seed=4, name="other")
    load_directions(ckpt, other, projector)
    assert len(model.weights) == len(other.weights) == 15
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    cfg = toy_config(toys, "gen", model="linear")
    ckpt, model = snapshot(tmp_path, cfg, seed=3)
    # the original's checkpoint layout, as a PyTorch file and as a flat .npz (weights transposed)
    export_directions(tmp_path / "best_model.pt", model, projector)
    _, third = snapshot(tmp_path, cfg, seed=5, name="third")
    load_directions(tmp_path / "best_model.pt", third, projector)
    np.testing.assert_array_equal(third.nets.linears[0].kernel.numpy(), model.nets.linears[0].kernel.numpy())
    state = models.export_state(model)
    np.savez(tmp_path / "dirs.npz", **state)
    _, fourth = snapshot(tmp_path, cfg, seed=6, name="fourth")
    load_directions(tmp_path / "dirs.npz", fourth, projector)
    np.testing.assert_array_equal(fourth.nets.linears[0].bias.numpy(), model.nets.linears[0].bias.numpy())
    fixed = models.Fixed(k=4, size=16)
    np.savez(tmp_path / "fixed.npz", params=np.arange(64, dtype=np.float32).reshape(4, 16))
    load_directions(tmp_path / "fixed.npz", fixed, projector)
    assert fixed.params.numpy()[3, 15] == 63
    with pytest.raises(UsageError, match="checkpoint="):
        load_directions(ckpt, models.Fixed(k=4, size=16), projector)


def test_error_paths(toys, tmp_path):
    cfg = toy_config(toys, "train", "projector=linear", "projector.in_features=128")
    with pytest.raises(UsageError, match=r"projector.in_features=128 .* 512 values"):
        trainer.Pieces(cfg)
    with pytest.raises(UsageError, match="model.alpha"):
        trainer.Pieces(toy_config(toys, "train", "model.alpha=[1,2,3]"))
    with pytest.raises(UsageError, match="checkpoint is required"):
        evaluate.run(toy_config(toys, "eval"), tmp_path)


def run_script(script, *args, env=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "latentclr" / script), *args], capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_one_line_errors(tmp_path):
    proc = run_script("train.py", "k=32", "generator=biggan", "generator.feature_layer=generator.layers.4",
                      "generator.class_name=bulbul", "model=nonlinear", "hparams.batch_size=16",
                      "model.alpha=[-3.0,+3.0]", f"hydra.run.dir={tmp_path / 'run'}",
                      env={"GANCONTROL_CHECKPOINT_DIR": str(tmp_path / "weights")})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "biggan-deep-256/pytorch_model.bin" in lines[0] and "download https://" in lines[0]
    proc = run_script("gen.py", f"hydra.run.dir={tmp_path / 'gen'}")
    assert proc.returncode == 2 and "checkpoint" in proc.stderr


@pytest.mark.slow
def test_cli_train_then_gen_from_the_saved_config(toys, tmp_path, monkeypatch):
    args = ["generator=keras", f"generator.model_path={toys['toy']}", "generator.feature_layer=conv8", "k=4",
            "hparams.batch_size=4", "hparams.iterations=4", "eval_freq=2", "eval_iters=1"]
    monkeypatch.chdir(tmp_path)
    proc = run_script("train.py", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "outputs" / "run" / "train" / "latentclr.generators.KerasGenerator").glob("*/*/*"))
    assert len(runs) == 1 and runs[0].parent.name == "colat.models.Fixed_colat.projectors.IdentityProjector"
    assert {p.name for p in (runs[0] / ".hydra").iterdir()} == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    proc = run_script("gen.py", f"--config-path={runs[0] / '.hydra'}", "--config-name=config",
                      f"checkpoint={runs[0] / 'best_model.ckpt'}", "+n_samples=1", "+alphas=[-1,0,1]",
                      "+iterative=False", "+image_size=32", "+n_dirs=[0,1]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list((tmp_path / "outputs").glob("*/*/sample_0.png"))) == 1
