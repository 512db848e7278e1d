"""slogan_synthetic.py: CLI, data, networks, step semantics, schedules, smoke run, exact resume (spec §10)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import slogan_synthetic
from common.errors import UsageError
from common.slogan import schedules
from common.slogan.data import (
    SYNTHETIC_MEANS,
    ShuffledStream,
    build_synthetic_mixture,
    build_synthetic_streams,
)
from common.slogan.synthetic import (
    SyntheticConfig,
    SyntheticState,
    build_networks,
    discriminator_objective,
    generator_objective,
    make_train_steps,
)
from common.training import Every

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(num_cluster=3, latent_dim=8, batch_size=16, eval_size=200, shuffle_buffer=1000, iterations=100)


# ---- check 1: CLI ------------------------------------------------------------------------------------------

ORIGINAL_FLAGS = {
    "log_dir": "./logs/synthetic/", "gpu": "3", "ckpt_path": None, "num_cluster": 8, "lr_stein": 1e-2, "lr": 1e-3,
    "coeff": 4, "scale": 2.0, "margin": 0.5, "start_temp": 1.0, "end_temp": -4.0, "log_freq": 100,
    "iterations": 100000, "batch_size": 128, "save_freq": 1000, "val_size": 100, "random_seed": 0,
    "latent_dim": 64, "lambda_lp": 10, "K": 1, "p": 2, "n_critic": 1, "reduce_fn": "mean", "reg": "lp",
}
INT_FLAGS = {"num_cluster", "log_freq", "iterations", "batch_size", "save_freq", "val_size", "random_seed",
             "latent_dim", "n_critic"}
FLOAT_FLAGS = {"lr_stein", "lr", "coeff", "scale", "margin", "start_temp", "end_temp", "lambda_lp", "K", "p"}


def test_cli_flags_names_types_defaults():
    parser = slogan_synthetic.build_parser()
    args = vars(parser.parse_args([]))
    for flag, default in ORIGINAL_FLAGS.items():
        assert args[flag] == default, flag
    actions = {a.dest: a for a in parser._actions}
    assert all(actions[f].type is int for f in INT_FLAGS) and all(actions[f].type is float for f in FLOAT_FLAGS)
    assert actions["gpu"].type is str
    assert actions["reduce_fn"].choices == ["mean", "sum", "max"] and actions["reg"].choices == ["gp", "lp"]
    for bad in (["--reg", "alp"], ["--reduce_fn", "median"]):
        with pytest.raises(SystemExit) as err:
            parser.parse_args(bad)
        assert err.value.code == 2
    # Every parsed flag is a config field, so the CLI maps one-to-one onto the Python API.
    SyntheticConfig(**args)


def test_bad_value_is_one_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as err:
        slogan_synthetic.main(["--gpu", "-1", "--log_freq", "0"])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["error: --log_freq: expected a positive integer, got 0"]


def test_script_help_runs_from_the_root():
    out = subprocess.run([sys.executable, "slogan_synthetic.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--use_random_seed" in out.stdout and "--num_cluster" in out.stdout


def test_seed_and_penalty_flags():
    assert SyntheticConfig(random_seed=5).seed == 0  # ignored, as in the original
    assert SyntheticConfig(random_seed=5, use_random_seed=True).seed == 5
    assert SyntheticConfig(reg="gp").penalty is None and SyntheticConfig(reg="gp", fix_gp=True).penalty == "gp"
    assert SyntheticConfig().penalty == "lp"
    assert SyntheticConfig(stop_after=3000).last_iteration == 3000 and SyntheticConfig().last_iteration == 100000
    assert SyntheticConfig(iterations=50, stop_after=3000).last_iteration == 50
    with pytest.raises(UsageError, match="--stop_after"):
        SyntheticConfig(stop_after=0).validate()


# ---- checks 2-3: data ---------------------------------------------------------------------------------------


def test_synthetic_data_counts_range_and_moments():
    train, _ = build_synthetic_streams(0)
    assert train.data.shape == (80000, 2) and train.data.dtype == np.float32
    assert train.labels.shape == (80000, 8) and np.all(train.labels.sum(1) == 1)
    assert np.bincount(train.classes).tolist() == [5000, 15000] * 4
    np.testing.assert_array_equal(train.data.min(0), [-1, -1])
    np.testing.assert_array_equal(train.data.max(0), [1, 1])
    bounds = np.cumsum([0] + [5000, 15000] * 4)
    for c in range(8):
        part = train.raw[bounds[c] : bounds[c + 1]]
        assert np.all(np.abs(part.mean(0) - SYNTHETIC_MEANS[c]) < 0.01)
        assert np.all(np.abs(part.std(0) - 0.1) < 0.005)
    # The labels follow the points through the shuffle: each class sits around its scaled mean.
    for c in range(8):
        assert np.linalg.norm(train.data[train.classes == c].mean(0) - train.scaled_means[c]) < 0.01


def test_synthetic_data_determinism_and_legacy_global_rng():
    train, evaluation = build_synthetic_streams(0)
    assert not np.array_equal(train.data, evaluation.data)
    again_train, again_eval = build_synthetic_streams(0)
    np.testing.assert_array_equal(train.data, again_train.data)
    np.testing.assert_array_equal(evaluation.classes, again_eval.classes)
    # The same numbers as the original's calls on NumPy's global legacy RNG after np.random.seed(0).
    state = np.random.get_state()
    try:
        np.random.seed(0)
        first = build_synthetic_mixture(np.random.mtrand._rand)
        second = build_synthetic_mixture(np.random.mtrand._rand)
    finally:
        np.random.set_state(state)
    np.testing.assert_array_equal(first.data, train.data)
    np.testing.assert_array_equal(second.data, evaluation.data)


def test_shuffled_stream_matches_a_sequential_buffer_and_resumes():
    stream = ShuffledStream(10, 7, seed=1, buffer_size=12, chunk=4)
    buffer, position = stream.buffer.numpy().copy(), 12
    reference_generator = tf.random.Generator.from_seed(1, alg="philox")
    for _ in range(5):
        got = stream.next_indices().numpy().tolist()
        want = []
        for size in (4, 3):
            for slot in reference_generator.uniform([size], 0, 12, dtype=tf.int64).numpy():
                want.append(int(buffer[slot]))
                buffer[slot], position = position % 10, position + 1
        assert got == want
    checkpoint = tf.train.Checkpoint(stream=stream)
    saved = [v.numpy().copy() for v in (stream.buffer, stream.position)]
    snapshot = checkpoint.write(os.path.join(os.environ.get("TMPDIR", "/tmp"), f"stream-{os.getpid()}"))
    after = stream.next_indices().numpy()
    checkpoint.read(snapshot)
    np.testing.assert_array_equal(stream.buffer.numpy(), saved[0])
    np.testing.assert_array_equal(stream.next_indices().numpy(), after)


# ---- checks 7, 9: networks ----------------------------------------------------------------------------------


def test_network_shapes_ranges_and_parameter_counts():
    g, d, e = build_networks(64)
    z = tf.random.normal([5, 64]) * 10
    x = g(z, training=True)
    assert x.shape == (5, 2) and np.all(np.abs(x.numpy()) < 1)
    assert d(x).shape == (5, 1) and e(x).shape == (5, 64)
    counts = [sum(int(np.prod(v.shape)) for v in m.trainable_variables) for m in (g, d, e)]
    assert counts == [25602, 17025, 25152]
    moving = [bn.moving_mean for bn in (g.bn, g.bn_1)] + [bn.moving_variance for bn in (g.bn, g.bn_1)]
    assert sum(int(np.prod(v.shape)) for v in moving) == 512
    assert len([layer for layer in g.layers if type(layer).__name__ == "TF1BatchNorm"]) == 2


def test_initialisers():
    g, d, e = build_networks(64)
    for model in (g, d, e):
        for layer in [lay for lay in model.layers if hasattr(lay, "kernel")]:
            fan_in, fan_out = layer.kernel.shape
            kernel = layer.kernel.numpy()
            assert np.abs(kernel).max() <= math.sqrt(6 / (fan_in + fan_out))
            assert abs(kernel.var() / (2 / (fan_in + fan_out)) - 1) < 0.25 or kernel.size < 300
            np.testing.assert_array_equal(layer.bias.numpy(), 0)
    for bn in (g.bn, g.bn_1):
        np.testing.assert_array_equal(bn.gamma.numpy(), 1)
        np.testing.assert_array_equal(bn.beta.numpy(), 0)
        np.testing.assert_array_equal(bn.moving_mean.numpy(), 0)
        np.testing.assert_array_equal(bn.moving_variance.numpy(), 1)
    assert d.layers[1].negative_slope == pytest.approx(0.2)


# ---- checks 10, 17, 20: step semantics ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_state():
    config = SyntheticConfig(**TINY)
    train, evaluation = build_synthetic_streams(0)
    state = SyntheticState(config, train, evaluation)
    return state, config, make_train_steps(state, config)


def snapshot(variables):
    return [v.numpy().copy() for v in variables]


def changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables)]


def test_d_step_and_joint_step_touch_only_their_variables(tiny_state):
    state, config, steps = tiny_state
    g, d, e, pr = state.generator, state.discriminator, state.encoder, state.prior
    stats = [v for v in g.non_trainable_variables]
    groups = {"g": g.trainable_variables, "d": d.trainable_variables, "e": e.trainable_variables,
              "prior": [*pr.mu, *pr.sigma, pr.rho], "bn": stats}
    before = {k: snapshot(v) for k, v in groups.items()}
    s0 = int(state.step.numpy())
    steps.d_step()
    assert int(state.step.numpy()) == s0 + 1
    # Every D weight moves except, possibly, the output bias: its hinge gradient -1 + 1 is exactly 0 while
    # all |D| < 1 (and the LP does not depend on it).
    assert all(changed(before["d"], groups["d"])[:-1])
    for name in ("g", "e", "prior", "bn"):
        assert not any(changed(before[name], groups[name])), name

    before = {k: snapshot(v) for k, v in groups.items()}
    _, _, rates, applied = steps.joint_step()
    assert bool(tf.reduce_all(applied))
    assert int(state.step.numpy()) == s0 + 1
    assert not any(changed(before["d"], groups["d"]))
    assert all(changed(before["g"], groups["g"])) and all(changed(before["e"], groups["e"]))
    assert all(changed(before["prior"], groups["prior"]))
    assert all(changed(before["bn"], groups["bn"]))  # one EMA update of every moving statistic
    assert abs(float(tf.reduce_sum(pr.rho)) - 1.0) < 1e-5


def test_schedules_and_step_timing(tiny_state):
    assert float(schedules.temperature(0, 100000, 1.0, -4.0)) == 1.0
    assert float(schedules.temperature(10000, 100000, 1.0, -4.0)) == pytest.approx(0.5)
    assert float(schedules.temperature(20000, 100000, 1.0, -4.0)) == 0.0
    assert float(schedules.temperature(70000, 100000, 1.0, -4.0)) == 0.0
    assert float(schedules.temperature(50000, 100000, 1.0, 0.0)) == pytest.approx(0.5)
    assert float(schedules.linear_decay(25000, 100000)) == pytest.approx(0.75)
    assert float(schedules.linear_decay(200000, 100000)) == 0.0
    rates = schedules.learning_rates(30000, 100000, 1e-3, 1e-2)
    assert float(rates.d) == pytest.approx(4 * float(rates.g)) and float(rates.e) == float(rates.g)
    assert float(rates.mu) == pytest.approx(10 * float(rates.sigma)) and float(rates.rho) == float(rates.sigma)
    assert float(rates.g) == pytest.approx(1e-3 * 0.7)

    # One iteration with n_critic = 1 (the loop's ``iteration`` runs exactly these two steps in this order).
    state, config, steps = tiny_state
    s = int(state.step.numpy())
    _, parts, _ = steps.d_step()
    _, temperature, rates, _ = steps.joint_step()
    decay = lambda step: 1 - step / config.iterations  # noqa: E731
    assert float(parts["lr_d"]) == pytest.approx(4 * config.lr * decay(s), rel=1e-6)
    assert float(rates.g) == pytest.approx(config.lr * decay(s + 1), rel=1e-6)
    assert float(rates.mu) == pytest.approx(10 * config.lr_stein * decay(s + 1), rel=1e-6)
    assert float(state.opt_d.learning_rate.numpy()) == pytest.approx(4 * config.lr * decay(s), rel=1e-6)
    assert float(state.opt_e.learning_rate.numpy()) == pytest.approx(config.lr * decay(s + 1), rel=1e-6)
    assert float(temperature) == pytest.approx(1 - 5 * (s + 1) / config.iterations, rel=1e-6)
    assert int(state.step.numpy()) == s + 1


# ---- checks 16, 18: objectives ------------------------------------------------------------------------------


def test_dldz_is_the_gradient_of_the_summed_per_sample_losses():
    config = SyntheticConfig(num_cluster=2, latent_dim=4)
    g, d, e = build_networks(4)
    rng = np.random.default_rng(0)
    z = tf.constant(rng.normal(size=(6, 4)), tf.float32)
    pi, means = tf.constant([0.4, 0.6]), tf.constant(rng.normal(size=(2, 4)), tf.float32)
    covs = tf.eye(4, batch_shape=[2])
    uniform = tf.constant(rng.uniform(size=(6, 2)), tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        terms = generator_objective(g, d, e, z, pi, means, covs, uniform, 0.8, 3.2, config, update_stats=False)
        total = tf.reduce_sum(terms.per_sample)
        per_sample = terms.per_sample[:, 0]
    batch_grad = 6 * tape.gradient(terms.loss, z)
    np.testing.assert_allclose(batch_grad.numpy(), tape.gradient(total, z).numpy(), rtol=1e-4, atol=1e-6)
    jacobian = tape.jacobian(per_sample, z)  # [B, B, d]
    diagonal = tf.stack([jacobian[b, b] for b in range(6)]).numpy()
    assert np.abs(diagonal - batch_grad.numpy()).max() > 1e-4  # BN and U2C couple the samples


def linear_critic(w):
    kernel = tf.constant(w, tf.float32)[:, None]
    return lambda x: tf.matmul(x, kernel)


@pytest.mark.parametrize("reg,fix_gp,expected", [("lp", False, 10 * 1.5**2), ("gp", False, 0.0),
                                                 ("gp", True, 10 * 1.5**2)])
def test_discriminator_objective_forms(reg, fix_gp, expected):
    rng = np.random.default_rng(1)
    x_r, x_g = (tf.constant(a, tf.float32) for a in rng.normal(size=(2, 8, 2)))
    eps = tf.constant(rng.uniform(size=(8, 1)), tf.float32)
    critic = linear_critic([1.5, 2.0])
    loss, parts = discriminator_objective(critic, x_r, x_g, eps, SyntheticConfig(reg=reg, fix_gp=fix_gp))
    d_r, d_g = critic(x_r).numpy(), critic(x_g).numpy()
    hinge = np.maximum(1 - d_r, 0).mean() + np.maximum(1 + d_g, 0).mean()
    assert float(parts["penalty"]) == pytest.approx(expected, rel=1e-5)
    assert float(loss) == pytest.approx(hinge + expected, rel=1e-5)


# ---- check 19: spectral-norm projection after an encoder step -----------------------------------------------


def test_encoder_step_projects_each_kernel_with_fresh_vectors(tiny_state):
    state, config, _ = tiny_state
    _, _, encoder = build_networks(8, state.projection_noise)
    limit = math.sqrt(6 / (128 + 128))
    kernel = encoder.get_layer("dense_1").kernel.numpy()
    assert np.abs(kernel).max() <= limit and np.linalg.svd(kernel, compute_uv=False)[0] > 1.3  # unnormalised
    import keras

    optimizer = keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.9, epsilon=1e-8)
    variables = encoder.trainable_variables
    grads = [tf.random.stateless_normal(v.shape, seed=[k, 0]) for k, v in enumerate(variables)]
    before = [v.numpy().astype(np.float64) for v in variables]
    noise = state.projection_noise
    clone = tf.random.Generator.from_state(noise.state.numpy(), alg=noise.algorithm)  # a copy, not a view
    optimizer.apply(grads, variables)
    for k in range(0, len(variables), 2):  # kernels; their u, v are drawn in this order
        g = grads[k].numpy().astype(np.float64)
        adam = before[k] - 1e-3 * math.sqrt(0.1) * g / (np.sqrt(0.1 * g * g) + 1e-8)
        u, v = clone.normal([adam.shape[0]]).numpy(), clone.normal([adam.shape[1]]).numpy()
        for _ in range(2):
            v = adam.T @ u
            v = v / np.linalg.norm(v + 1e-12)
            u = adam @ v
            u = u / np.linalg.norm(u + 1e-12)
        projected = adam / (u @ adam @ v)
        np.testing.assert_allclose(variables[k].numpy(), projected, rtol=1e-5, atol=1e-6)
        top = np.linalg.svd(variables[k].numpy(), compute_uv=False)[0]
        assert 1 - 1e-4 <= top <= 1.5


# ---- checks 21 and resume: end-to-end through the CLI --------------------------------------------------------

RUN_ARGS = ["--gpu", "-1", "--iterations", "4", "--batch_size", "16", "--log_freq", "2", "--num_cluster", "3",
            "--latent_dim", "8", "--checkpoint_every", "2", "--no_progress"]  # spec §10 #21 sizes
RUN_OVERRIDES = dict(eval_size=200, plot_mixture_samples=200, plot_component_total=2000, metrics_every=3,
                     shuffle_buffer=1000)


def run_cli(name, extra=(), hooks=()):
    if hooks:
        from common.slogan import synthetic_run

        original = synthetic_run.run
        try:
            synthetic_run.run = lambda config: original(config, extra_hooks=hooks)
            return slogan_synthetic.main([*RUN_ARGS, "--run_name", name, *extra], **RUN_OVERRIDES)
        finally:
            synthetic_run.run = original
    return slogan_synthetic.main([*RUN_ARGS, "--run_name", name, *extra], **RUN_OVERRIDES)


def checkpoint_tensors(path):
    reader = tf.train.load_checkpoint(path)
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()}


def test_smoke_run_kill_and_exact_resume(in_tmp, capsys):
    base = in_tmp / "logs" / "synthetic"
    run_dir, killed_dir = base / "straight", base / "killed"
    # During iteration 3, after the checkpoint of iteration 2: the folder as a hard kill would leave it.
    kill_copy = Every(3, lambda done, outputs: shutil.copytree(run_dir, killed_dir))
    result = run_cli("straight", hooks=[kill_copy])
    out = capsys.readouterr().out
    assert result["run_dir"] == os.path.join("logs", "synthetic", "straight")
    for name in ("real_data.png", "samples_2.png", "samples_4.png", "training.gif", "config.json", "model-4.index"):
        assert (run_dir / name).exists(), name
    assert "pi:(" in out and "[purity:" in out and "[nmi:" in out
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "nmi" in r] == [1, 4]
    assert [r["step"] for r in records if "pi_entropy" in r] == [2, 4]
    for record in records:
        assert all(np.all(np.isfinite(v)) for k, v in record.items() if k.startswith("loss/"))
    final = checkpoint_tensors(str(run_dir / "model-4"))
    sigmas = [v for k, v in final.items() if "/sigma/" in k]
    assert len(sigmas) == 3
    for sigma in sigmas:
        np.testing.assert_allclose(sigma, sigma.T, atol=1e-6)
        assert np.linalg.eigvalsh(sigma).min() > 0

    # The same command on the killed folder continues from model-2 and ends with identical state.
    assert (killed_dir / "model-2.index").exists() and not (killed_dir / "model-3.index").exists()
    run_cli("killed")
    assert "resuming from" in capsys.readouterr().out
    again = checkpoint_tensors(str(killed_dir / "model-4"))
    assert again.keys() == final.keys()
    for key, value in final.items():
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH" and not key.startswith("save_counter"):
            np.testing.assert_array_equal(again[key], value, err_msg=key)

    # A different setting in the same folder is refused, naming the difference; --ckpt_path evaluates only.
    with pytest.raises(SystemExit) as err:
        run_cli("killed", ["--lr", "0.5"])
    assert err.value.code == 2 and "lr" in capsys.readouterr().err
    run_cli("evaluate", ["--ckpt_path", str(run_dir / "model-4"), "--iterations", "2"])
    evaluate_dir = base / "evaluate"
    assert "restored" in capsys.readouterr().out
    assert (evaluate_dir / "samples_2.png").exists() and not list(evaluate_dir.glob("model-*"))
    assert np.isnan(json.loads((evaluate_dir / "metrics.jsonl").read_text().splitlines()[-2])["loss/lc"])


def test_report_of_a_run_folder(tmp_path, capsys):
    from common.slogan import report

    lines = [{"step": 1000, "nmi": 0.95, "ari": 0.9, "purity": 0.97, "pi": [0.125] * 8},
             {"step": 1000, "pi": [0.06, 0.19, 0.065, 0.185, 0.07, 0.18, 0.06, 0.19], "nearest_mode": list(range(8))}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"torn')
    verdict = report.final_check(tmp_path)
    assert verdict["distinct_modes"] and verdict["pi_close"] and verdict["majority_above_minority"]
    assert verdict["nmi_ok"]
    assert report.main([str(tmp_path)]) == 0 and '"nmi": 0.95' in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        report.main([str(tmp_path / "missing")])
    assert err.value.code == 2
