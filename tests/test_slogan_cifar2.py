"""slogan_cifar2.py: CLI, SimCLR, one train step (wiring, BN, schedules, two replicas), smoke run, resume,
--pretrained (spec §10 items 1, 10, 13, 17, 18, 20, 22, 23).

Everything runs on fake CIFAR arrays, stub feature extractors, latent_dim 16 and 8-channel ResNets.
"""

import dataclasses
import glob
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import slogan_cifar2
from common.errors import UsageError
from common.seeding import set_seed
from common.slogan import cifar2_data, cifar2_step, resnet, schedules
from common.slogan.cifar2 import Cifar2Config, Cifar2Run, grid_image, run
from common.slogan.cifar2_eval import Cifar2Evaluator, Extractors
from common.slogan.simclr import simclr_loss
from tests.devices import two_cpus as _two_cpus

SPEC_FLAGS = {  # spec §2.2: name -> (type, default)
    "log_dir": (str, "./logs/cifar2/"), "gpu": (str, "0"), "ratio_plane": (float, 3), "coeff": (float, 1),
    "lr_stein": (float, 2e-3), "lr": (float, 1e-4), "scale": (float, 4.0), "margin": (float, 0.5),
    "start_temp": (float, 1.0), "end_temp": (float, 0.0), "pretrained": (str, None), "num_cluster": (int, 2),
    "log_freq": (int, 1000), "iterations": (int, 100000), "batch_size": (int, 64), "save_freq": (int, 100000),
    "val_freq": (int, -1), "val_size": (int, 10000), "random_seed": (int, 0), "latent_dim": (int, 128),
    "lambda_lp": (float, 10), "eps_min": (float, 0.1), "eps_max": (float, 10.0), "xi": (float, 10.0),
    "ip": (int, 1), "K": (float, 1), "p": (float, 2), "n_critic": (int, 1), "reduce_fn": (str, "mean"),
    "reg": (str, "alp"),
}
SUMMARY_TAGS = [f"summaries/{n}/{s}" for n in ("d_true", "d_generated", "constrastive_loss", "simclr_loss")
                for s in ("mean", "std")]


def fake_cifar():
    """CIFAR-10-shaped uint8 data: 50 train + 10 test images per class; planes darker, frogs greener."""
    rng = np.random.RandomState(0)

    def split(per_class):
        y = np.repeat(np.arange(10), per_class).astype(np.uint8).reshape(-1, 1)
        x = rng.randint(0, 256, (len(y), 32, 32, 3)).astype(np.uint8)
        x[y[:, 0] == 0] //= 3
        x[y[:, 0] == 6, :, :, 1] = 255
        return x, y

    return split(50), split(10)


_PROJECTION = np.random.RandomState(1).normal(size=(32 * 32 * 3, 6)).astype(np.float32) / 40.0


def _stub_features(images):
    """A fixed random projection (spec §8.5 stub): [N, 32, 32, 3] -> [N, 6]."""
    return np.tanh(np.asarray(images, np.float32).reshape(len(images), -1) @ _PROJECTION)


STUB = Extractors(_stub_features, _stub_features, _stub_features, icfid_batch=1, name="stub")


def tiny_config(**overrides) -> Cifar2Config:
    base = dict(iterations=2, batch_size=4, val_size=100, save_freq=2, log_freq=1, latent_dim=16, channels=8,
                fid_size=40, is_size=40, val_is_size=40, icfid_real_size=60, icfid_fake_size=30, gpu="-1")
    return Cifar2Config(**{**base, **overrides})


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _state_variables(state):
    p = state.prior
    return (state.generator.weights + state.discriminator.weights + state.encoder.weights
            + [p.rho] + list(p.mu) + list(p.sigma))


# ------------------------------------------------------------------------------------------------
# CLI (§10 item 1)
# ------------------------------------------------------------------------------------------------


def test_cli_flags_names_types_defaults_and_choices():
    parser = slogan_cifar2.build_parser()
    actions = {a.dest: a for a in parser._actions}
    for name, (kind, default) in SPEC_FLAGS.items():
        assert actions[name].default == default, name
        assert (actions[name].type or str) is kind, name
    assert actions["reduce_fn"].choices == ["mean", "sum", "max"]
    assert actions["reg"].choices == ["gp", "lp", "alp"]
    args = parser.parse_args([])
    config = Cifar2Config(**vars(args)).validate()  # every flag is a config field
    for name, (_, default) in SPEC_FLAGS.items():
        assert getattr(config, name) == default
    assert config.features == "inception" and config.run_name is None and config.fid_size == 10000
    assert (config.is_size, config.icfid_real_size, config.icfid_fake_size) == (100000, 50000, 5000)
    assert parser.parse_args(["--ratio_plane", "5.0", "--gpu", "0,1"]).ratio_plane == 5.0


@pytest.mark.parametrize("argv", [["--reg", "hinge"], ["--reduce_fn", "median"], ["--features", "vgg"]])
def test_cli_rejects_unknown_choices(argv):
    with pytest.raises(SystemExit) as info:
        slogan_cifar2.build_parser().parse_args(argv)
    assert info.value.code == 2


def test_cli_bad_value_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, "slogan_cifar2.py", "--val_size", "150", "--gpu", "-1"],
                          capture_output=True, text=True, cwd=os.path.dirname(slogan_cifar2.__file__),
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 2, proc.stderr[-800:]
    assert proc.stderr.strip().splitlines()[-1] == "error: --val_size must be a positive multiple of 100, got 150"


@pytest.mark.parametrize("field,value,flag", [
    ("num_cluster", 1, "--num_cluster"), ("ratio_plane", 10.0, "--ratio_plane"),
    ("features", "classifier", "--features"), ("batch_size", 0, "--batch_size")])
def test_config_validation_names_the_flag(field, value, flag):
    with pytest.raises(UsageError, match=flag):
        tiny_config(**{field: value}).validate()


def test_fix_flags_default_off_and_the_schedule_length():
    cfg = Cifar2Config(n_critic=5)
    assert not (cfg.fix_eval_split or cfg.fix_n_critic_schedule or cfg.fix_nmi_features)
    assert cfg.schedule_length == 100000  # the original: rates reach 0 after iterations / n_critic (§9 #15)
    assert dataclasses.replace(cfg, fix_n_critic_schedule=True).schedule_length == 500000


def test_fixed_eval_split_and_nmi_on_encoder_outputs(monkeypatch):
    monkeypatch.setattr(cifar2_data, "HELD_OUT", 20)
    cfg = tiny_config(fix_eval_split=True, fix_nmi_features=True)
    streams = cifar2_data.build_streams(cfg, fake_cifar)
    total = cifar2_data.build_streams(tiny_config(), fake_cifar).train.size
    assert streams.train.size == total - 20
    assert streams.test.size == streams.fid.size == streams.icfid.size == 20
    state = cifar2_step.build_state(cfg, networks=tiny_networks)
    evaluator = Cifar2Evaluator(state, cfg, streams, STUB, tf.random.Generator.from_seed(0))
    assert evaluator._probabilities(tf.zeros([3, 32, 32, 3])).shape == (3, cfg.latent_dim)  # raw E outputs
    scores = evaluator.clustering()
    assert 0.0 <= scores["NMI"] <= 1.0


def test_run_folder_is_a_string_concatenation():
    assert str(Cifar2Config(ratio_plane=3.7).run_dir("x")) == "logs/cifar2/3/x"
    assert str(Cifar2Config(log_dir="out", ratio_plane=5).run_dir("r")) == "out5/r"


# ------------------------------------------------------------------------------------------------
# SimCLR (§10 item 13), schedules (item 17)
# ------------------------------------------------------------------------------------------------


def _np_simclr(e, e_aug):
    a = e / np.linalg.norm(e, axis=1, keepdims=True)
    b = e_aug / np.linalg.norm(e_aug, axis=1, keepdims=True)
    cos = a @ b.T
    out = []
    for i in range(len(e)):
        den = sum(np.exp(cos[i, j]) for j in range(len(e)) if j != i)  # the positive is excluded
        out.append(-np.log(np.exp(cos[i, i]) / np.clip(den, 1e-10, 1e10)))
    return np.array(out)


def test_simclr_loss_matches_numpy():
    rng = np.random.RandomState(0)
    e, e_aug = rng.normal(size=(8, 16)).astype(np.float32), rng.normal(size=(8, 16)).astype(np.float32)
    np.testing.assert_allclose(simclr_loss(e, e_aug).numpy(), _np_simclr(e, e_aug), rtol=1e-5, atol=1e-5)
    # Identical views: cos_ii = 1 and the loss is -log(e / Σ_{j≠i} e^{cos_ij}), finite.
    assert np.all(np.isfinite(simclr_loss(e, e).numpy()))


def test_cifar2_schedules():
    assert float(schedules.temperature(50_000, 100_000, 1.0, 0.0)) == pytest.approx(0.5)
    assert float(schedules.linear_decay(25_000, 100_000)) == pytest.approx(0.75)
    rates = schedules.learning_rates(0, 100_000, 1e-4, 2e-3)
    assert float(rates.d) == pytest.approx(4e-4) and float(rates.mu) == pytest.approx(2e-2)


def test_grid_is_column_major_8x8_with_tf1_scaling():
    images = np.zeros((64, 2, 2, 3), np.float32)
    images[9] = 1.0  # k = 9: column 1, row 1
    grid = grid_image(images)
    assert grid.shape == (1, 16, 16, 3)
    assert grid[0, 2:4, 2:4].min() == 1.0 and grid[0].sum() == 12.0


# ------------------------------------------------------------------------------------------------
# one training iteration (§10 items 10, 17, 18, 20) and its two-replica twin
# ------------------------------------------------------------------------------------------------


class TinyGenerator(keras.Model):
    """z [B, d] -> [B, 32, 32, 3] in (-1, 1): dense, one GeneratorBatchNorm, nearest upsampling ×8, tanh."""

    def __init__(self):
        super().__init__(name="generator")
        self.dense = keras.layers.Dense(4 * 4 * 3, name="dense")
        self.bn = resnet.GeneratorBatchNorm(name="BatchNorm")

    def call(self, z, training=False, update_stats=False):
        x = self.bn(tf.reshape(self.dense(z), [-1, 4, 4, 3]), training=training, update_stats=update_stats)
        for _ in range(3):
            x = resnet.upsample(x)
        return tf.tanh(x)


class TinyCritic(keras.Model):
    """[B, 32, 32, 3] -> [B, out]: one 3×3 conv, ReLU, spatial mean, dense."""

    def __init__(self, out_dim, name):
        super().__init__(name=name)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", name="conv2d")
        self.head = keras.layers.Dense(out_dim, name="dense")

    def call(self, x):
        return self.head(tf.reduce_mean(tf.nn.relu(self.conv(x)), axis=[1, 2]))


def tiny_networks(cfg):
    """Small stand-ins for the ResNets with their call interface: the step logic at a fraction of the cost."""
    g, d, e = TinyGenerator(), TinyCritic(1, "discriminator"), TinyCritic(cfg.latent_dim, "encoder")
    g(tf.zeros([1, cfg.latent_dim]))
    d(tf.zeros([1, 32, 32, 3]))
    e(tf.zeros([1, 32, 32, 3]))
    return g, d, e


def _step_once(cfg, strategy, real):
    """A fresh tiny state (seed 0) and one iteration under ``strategy``: (state, before, after, outputs)."""
    set_seed(cfg.random_seed)
    state = cifar2_step.build_state(cfg, strategy, networks=tiny_networks)
    before = _values(_state_variables(state))
    bn_steps = float(state.generator.bn.moving_mean_local_step.numpy())
    out = cifar2_step.make_train_step(state, cfg, strategy)(tf.constant(real))
    return dict(cfg=cfg, state=state, real=real, before=before, after=_values(_state_variables(state)),
                bn_steps=bn_steps, out={k: float(v) for k, v in out.items()})


@pytest.fixture(scope="module")
def one_step():
    """One iteration (ALP, n_critic 1) from step 0 of a tiny state on an augmented fake-CIFAR batch."""
    cfg = tiny_config(iterations=4)
    real = cifar2_data.build_streams(cfg, fake_cifar).train.next()[0][None]
    return _step_once(cfg, tf.distribute.get_strategy(), real)


def test_step_updates_every_variable_group_once(one_step):
    state, before, after = one_step["state"], one_step["before"], one_step["after"]
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    n_g, n_d, n_e = (len(m.weights) for m in (state.generator, state.discriminator, state.encoder))
    assert all(changed[:n_g])  # every G weight, and the BN moving statistics
    # D's output bias cancels in −(mean D(x_r) − mean D(x_g)) and in ALP's |D(X) − D(X̂)|: zero gradient.
    d_changed = dict(zip([v.path for v in state.discriminator.weights], changed[n_g : n_g + n_d]))
    assert d_changed.pop("discriminator/dense/bias") is False and all(d_changed.values())
    assert all(changed[n_g + n_d : n_g + n_d + n_e])
    assert all(changed[n_g + n_d + n_e :])  # ρ, μ_c, Σ_c
    assert int(state.global_step.numpy()) == 1
    assert [int(o.iterations.numpy()) for o in (state.opt_d, state.opt_g, state.opt_e)] == [1, 1, 1]
    assert all(np.isfinite(v) for v in one_step["out"].values())
    # Σ stays symmetric positive definite and Σ ρ stays 1 (spec §1.7).
    for sigma in state.prior.sigma:
        s = sigma.numpy()
        np.testing.assert_allclose(s, s.T, atol=1e-6)
        assert np.linalg.eigvalsh(s).min() > 0
    assert float(np.sum(state.prior.rho.numpy())) == pytest.approx(1.0, abs=1e-6)


def test_learning_rates_read_the_step_before_and_after_the_d_increment(one_step):
    cfg, state = one_step["cfg"], one_step["state"]
    # D step at s = 0: 4·lr·(1 - 0/4); G/E step at s = 1: lr·(1 - 1/4) (spec §1.8).
    assert float(state.opt_d.learning_rate.numpy()) == pytest.approx(4 * cfg.lr)
    assert float(state.opt_g.learning_rate.numpy()) == pytest.approx(cfg.lr * 0.75)
    assert float(state.opt_e.learning_rate.numpy()) == pytest.approx(cfg.lr * 0.75)


def test_batch_norm_statistics_move_twice_per_iteration(one_step):
    # The D step uses batch statistics without updating; the G step updates from two passes (spec §4.3).
    bn = one_step["state"].generator.bn
    assert one_step["bn_steps"] == 0.0 and float(bn.moving_mean_local_step.numpy()) == 2.0


def _assert_parity(two, one, skip=()):
    for name in ("d_loss", "g_loss", "lc", "ls"):
        assert two["out"][name] == pytest.approx(one["out"][name], rel=1e-4, abs=1e-5), name
    names = [getattr(v, "path", v.name) for v in _state_variables(one["state"])]
    for name, a, b in zip(names, two["after"], one["after"]):
        if name not in skip:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-6, err_msg=name)


def test_two_replicas_match_one_device(one_step):
    """The step under MirroredStrategy on 2 CPU devices (sharded batch, cross-replica BN, gathered negatives,
    global penalty reduction, all-reduced Stein estimates) equals the one-device step."""
    two = _step_once(one_step["cfg"], tf.distribute.MirroredStrategy(_two_cpus()), one_step["real"])
    np.testing.assert_array_equal(two["before"][0], one_step["before"][0])
    _assert_parity(two, one_step)


@pytest.mark.slow
def test_two_replicas_match_one_device_with_the_resnets():
    cfg = tiny_config(iterations=4)
    real = cifar2_data.build_streams(cfg, fake_cifar).train.next()[0][None]
    results = []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(_two_cpus())):
        set_seed(cfg.random_seed)
        state = cifar2_step.build_state(cfg, strategy)
        out = cifar2_step.make_train_step(state, cfg, strategy)(tf.constant(real))
        results.append(dict(state=state, after=_values(_state_variables(state)),
                            out={k: float(v) for k, v in out.items()}))
    # Every conv bias of G feeds only BatchNorms (directly or through the residual sums), so its gradient is 0
    # up to rounding and Adam's first step turns that noise into ±lr: not comparable.
    noise = {f"generator/conv2d{'' if k == 0 else f'_{k}'}/bias" for k in range(9)}
    _assert_parity(results[1], results[0], skip=noise)


# ------------------------------------------------------------------------------------------------
# smoke run, exact resume, --pretrained (§10 items 22, 23)
# ------------------------------------------------------------------------------------------------


def _event_tags(run_dir):
    tags = set()
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """``--iterations 2 --batch_size 4 --val_size 100 --save_freq 1 --log_freq 1 --latent_dim 16``."""
    root = tmp_path_factory.mktemp("cifar2")
    cfg = tiny_config(log_dir=str(root) + "/", run_name="smoke", save_freq=1, val_freq=2)
    result = run(cfg, load_cifar10=fake_cifar, extractors=STUB, show_progress=False)
    return cfg, result


def test_smoke_run_writes_the_original_outputs(smoke_run):
    cfg, result = smoke_run
    run_dir = result["run_dir"]
    assert run_dir == cfg.log_dir + "3/smoke"
    tags = _event_tags(run_dir)
    expected = SUMMARY_TAGS + [
        "cluster_assignment/ARI", "cluster_assignment/NMI", "pi/cluster_0", "pi/cluster_1", "ICFID/mean",
        "ICFID/cluster_0", "ICFID/cluster_1", "best_idx/cluster_0", "best_idx/cluster_1", "summaries/FID",
        "summaries/IS", "summaries/validation/inception_score", "summaries/validation/fid",
        "summaries/x_true/grid/image/0", "summaries/x_mixture/grid/image/0", "summaries/gradients/grid/image/0",
        "summaries/x_cond_0/grid/image/0", "summaries/x_cond_1/grid/image/0"]
    assert not set(expected) - tags, set(expected) - tags
    for prefix in ("model-1", "model-2"):
        assert os.path.exists(os.path.join(run_dir, prefix + ".index"))
    from common.summaries import read_metrics

    records = read_metrics(run_dir)
    assert [r["step"] for r in records if "cluster_assignment/NMI" in r] == [0, 1]
    final = [r for r in records if "ICFID/mean" in r]
    assert len(final) == 1 and final[0]["step"] == 1 and np.isfinite(final[0]["summaries/FID"])
    assert sorted(final[0][f"best_idx/cluster_{j}"] for j in range(2)) == [0, 1]
    assert result["final"]["best_idx"] in ([0, 1], [1, 0])


def test_resume_from_model_1_reproduces_model_2(smoke_run):
    cfg, result = smoke_run
    run_dir = result["run_dir"]
    copy = run_dir + "_resumed"
    shutil.copytree(run_dir, copy)
    for path in glob.glob(os.path.join(copy, "model-2.*")) + glob.glob(os.path.join(copy, "events.*")):
        os.remove(path)
    with open(os.path.join(copy, "checkpoint"), "w") as handle:
        handle.write('model_checkpoint_path: "model-1"\nall_model_checkpoint_paths: "model-1"\n')
    run(dataclasses.replace(cfg, run_name="smoke_resumed"), load_cifar10=fake_cifar, extractors=STUB,
        show_progress=False)
    straight = tf.train.load_checkpoint(os.path.join(run_dir, "model-2"))
    resumed = tf.train.load_checkpoint(os.path.join(copy, "model-2"))
    keys = [k for k in straight.get_variable_to_shape_map() if not k.startswith("_CHECKPOINTABLE")]
    assert "generator/BatchNorm_3/moving_mean_biased/.ATTRIBUTES/VARIABLE_VALUE" in keys
    assert any(k.startswith("data_train/") for k in keys) and any(k.startswith("eval_rng/") for k in keys)
    for key in keys:
        np.testing.assert_array_equal(resumed.get_tensor(key), straight.get_tensor(key), err_msg=key)


def test_pretrained_restores_bit_exact_and_prints_the_metrics(smoke_run, tmp_path, capsys):
    cfg, result = smoke_run
    prefix = os.path.join(result["run_dir"], "model-2")
    pieces = Cifar2Run(cfg, load_cifar10=fake_cifar, extractors=STUB)
    assert pieces.restore(prefix) == "port"
    rewritten = tf.train.Checkpoint(**pieces.trackables()).write(str(tmp_path / "again"))
    saved, again = tf.train.load_checkpoint(prefix), tf.train.load_checkpoint(rewritten)
    model_keys = [k for k in saved.get_variable_to_shape_map()
                  if k.split("/")[0] in ("generator", "discriminator", "encoder", "prior")]
    # Every weight and BN statistic of G, D, E (also those inside the residual blocks) and ρ, μ_c, Σ_c.
    assert len(model_keys) == len(_state_variables(pieces.state)) == 64 + 22 + 22 + 5
    for key in model_keys:
        np.testing.assert_array_equal(again.get_tensor(key), saved.get_tensor(key), err_msg=key)
    capsys.readouterr()
    metrics = run(dataclasses.replace(cfg, pretrained=prefix, run_name="never"), load_cifar10=fake_cifar,
                  extractors=STUB)
    printed = capsys.readouterr().out
    for text in ("model loaded!", "\nICFID:", "\nBest_idx:(", "IS:", "\nFID:", "pi:(", "[ARI: ", "[NMI: "):
        assert text in printed, text
    assert np.isfinite(metrics["ICFID"]) and np.isfinite(metrics["FID"]) and len(metrics["pi"]) == 2
    assert not os.path.exists(cfg.run_dir("never"))  # evaluation only: nothing written
