"""ConGAN losses, schedules, epoch plans, sampling and metric rules against hand-computed values (spec §9)."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from common import metrics as M
from common.errors import UsageError
from congan import losses
from congan.config import PRESETS, Framework2Config, parse_args, resolve
from congan.evaluation import num_generated, to_png_uint8
from congan.framework1 import is_d_batch
from congan.framework2 import epoch_plan
from congan.optim import TorchAdam
from congan.sampling import lerp, sample_representations, slerp
from congan.schedules import exponential_lr, parse_schedule


def test_hinge_on_constructed_inputs():
    d_real, d_fake = tf.constant([[2.0], [0.5], [-1.0]]), tf.constant([[-2.0], [0.0], [1.0]])
    np.testing.assert_allclose(float(losses.d_hinge(d_real, d_fake)), 0.833333 + 1.0, atol=1e-6)
    np.testing.assert_allclose(float(losses.g_hinge(d_fake)), 1 / 3, atol=1e-6)


def test_other_adversarial_criteria():
    d_real, d_fake = tf.constant([1.0, -1.0]), tf.constant([0.0, 2.0])
    sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
    np.testing.assert_allclose(float(losses.d_non_saturating(d_real, d_fake)),
                               np.mean(sp(-np.array([1.0, -1.0])) + sp(np.array([0.0, 2.0]))), rtol=1e-6)
    np.testing.assert_allclose(float(losses.d_least_squares(d_real, d_fake)), np.mean([0 + 0, 2.0 + 2.0]), rtol=1e-6)
    np.testing.assert_allclose(float(losses.d_wasserstein(d_real, d_fake)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(losses.g_least_squares(d_fake)), np.mean([0.5, 0.5]), rtol=1e-6)


def test_consistency_terms():
    a = tf.constant([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_allclose(float(losses.negative_cosine(a, a)), -1.0, atol=1e-6)
    np.testing.assert_allclose(float(losses.negative_cosine(a, tf.constant([[0.0, 1.0], [5.0, 0.0], [0.0, 1.0]]))),
                               0.0, atol=1e-6)
    np.testing.assert_allclose(float(losses.negative_cosine(a, -a)), 1.0, atol=1e-6)
    q_real, e_real, q_fake, r = a, a, a, -a
    expected = 0.5 * (float(losses.negative_cosine(q_real, e_real)) + float(losses.negative_cosine(q_fake, r)))
    assert float(losses.d_consistency(q_real, e_real, q_fake, r)) == pytest.approx(expected)
    assert expected == pytest.approx(0.0)


def test_gradient_penalty_of_a_linear_critic():
    w = np.array([0.3, -1.2, 2.0], np.float32)
    x = tf.constant(np.random.RandomState(0).normal(size=(5, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(x * w, axis=1)
    gp = float(losses.gradient_penalty(tape.gradient(out, x), 1.0))
    assert gp == pytest.approx((np.linalg.norm(w) - 1.0) ** 2, rel=1e-5)


def test_framework1_losses():
    p, y = tf.constant([[0.9], [0.2]]), tf.constant([[1.1], [0.7]])
    manual = -np.mean([1.1 * np.log(0.9) + (1 - 1.1) * np.log(0.1), 0.7 * np.log(0.2) + 0.3 * np.log(0.8)])
    assert float(losses.binary_cross_entropy(p, y)) == pytest.approx(manual, rel=1e-5)
    assert float(losses.binary_cross_entropy(tf.constant([0.0]), tf.constant([1.0]))) == pytest.approx(100.0)
    a = tf.constant([[1.0, 2.0], [0.0, 0.0]])
    assert float(losses.sse(a, tf.zeros_like(a))) == pytest.approx((1 + 4 + 0) / 2)
    r, c = tf.constant([[0.2, 0.5]]), tf.constant([[0.4, 0.9]])
    manual_kl = 0.4 * (np.log(0.4) - 0.2) + 0.9 * (np.log(0.9) - 0.5)
    assert float(losses.kl_div_batchmean(r, c)) == pytest.approx(manual_kl, rel=1e-5)


def test_simsiam_loss_bounds():
    z = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    assert float(losses.simsiam_loss(z, z, z, z)) == pytest.approx(-1.0)


def test_step_counts_follow_the_loader():
    plan = epoch_plan(12, 5)
    assert (len(plan), sum(len(p.d_steps) for p in plan)) == (2, 5)
    assert plan[0].complete and not plan[1].complete
    for batches, counts in ((781, (71, 355)), (390, (36, 177)), (6, (2, 2))):
        d_iters = 1 if batches == 6 else 5
        plan = epoch_plan(batches, d_iters)
        assert (len(plan), sum(len(p.d_steps) for p in plan)) == counts
    used = [k for p in epoch_plan(12, 5) for k in p.g_batches + tuple(i for d in p.d_steps for i in (d[0], *d[1]))]
    assert used == list(range(12))


def test_framework1_schedule():
    kinds = ["D" if is_d_batch(i, 3) else "G" for i in range(8)]
    assert kinds == ["D", "D", "D", "G", "D", "D", "D", "G"]


def test_run_presets_and_piecewise_schedules():
    cfg, _ = parse_args(Framework2Config, ["--preset", "run1", "--simsiam_path", "random"])
    cfg = resolve(cfg)
    lam_g, lam_d = parse_schedule(cfg.G_consistency_schedule, "g"), parse_schedule(cfg.D_consistency_schedule, "d")
    assert cfg.epochs == 90
    for e, expected in ((0, 0.0), (29, 0.0), (30, 0.1), (59, 0.1), (60, 1.0), (89, 1.0)):
        assert lam_g(e) == expected and lam_d(e) == expected
    run2, _ = parse_args(Framework2Config, ["--preset", "run2", "--epochs", "7"])
    assert run2.conditioning == "none" and run2.epochs == 7 and PRESETS["run2"]["epochs"] == 90
    independent = parse_schedule("0:0,10:1,20:0.6", "--D_consistency_schedule")
    assert [independent(e) for e in (0, 9, 10, 19, 20, 99)] == [0, 0, 1, 1, 0.6, 0.6]
    ramp = parse_schedule("0:0,10~1", "x")
    assert ramp(5) == pytest.approx(0.5) and ramp(12) == 1.0
    assert parse_schedule("0.1", "x")(50) == 0.1
    with pytest.raises(UsageError, match="--G_consistency_schedule"):
        parse_schedule("0:0,bad", "--G_consistency_schedule")


def test_learning_rates_and_adam():
    cfg = resolve(Framework2Config(simsiam_path="random"))
    assert (cfg.D_lr, cfg.G_lr, cfg.Q_lr, cfg.latent_transform_lr) == (5e-4,) * 4
    assert cfg.betas == (0.0, 0.9)
    assert exponential_lr(1.0, 0.02, 90) == pytest.approx(0.16231, abs=1e-5)
    with pytest.raises(UsageError, match="--wgan"):
        resolve(dataclasses.replace(cfg, wgan=True, resnetgan=False))


def test_torch_adam_matches_pytorch_formula():
    var = tf.Variable([1.0, -2.0])
    opt = TorchAdam([var], 0.1, (0.0, 0.9), 1e-8)
    m, v, w = np.zeros(2), np.zeros(2), np.array([1.0, -2.0])
    for t, g in enumerate(([0.5, -1.0], [0.1, 0.3], [-0.2, 0.05]), start=1):
        opt.apply([tf.constant(g)])
        g = np.array(g)
        m = 0.0 * m + g
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.1 / (1 - 0.0**t) * m / (np.sqrt(v) / np.sqrt(1 - 0.9**t) + 1e-8)
        np.testing.assert_allclose(var.numpy(), w, rtol=1e-5)
    assert int(opt.iterations.numpy()) == 3


def test_sampling_methods():
    rng = tf.random.Generator.from_seed(0)
    uniform = sample_representations("uniform", 16, rng=rng, repr_dim=2048).numpy()
    assert uniform.dtype == np.float32 and uniform.shape == (16, 2048) and np.abs(uniform).max() <= 1
    gaussian = sample_representations("gaussian", 16, rng=rng, repr_dim=2048).numpy()
    assert abs(gaussian.mean()) < 0.02 and abs(gaussian.std() - 1) < 0.02
    images = tf.random.normal((8, 4, 4, 3))

    def encode(x):
        return tf.reshape(x, (tf.shape(x)[0], -1)) * 40.0

    real = sample_representations("real", 4, rng=rng, repr_dim=48, encode=encode, images=images).numpy()
    np.testing.assert_allclose(real, encode(images[:4]).numpy(), atol=1e-4)
    for method, fix in (("slerp", True), ("lerp", False)):
        out = sample_representations(method, 4, rng=rng, repr_dim=48, encode=encode, images=images,
                                     fix_slerp=fix).numpy()
        assert out.shape == (4, 48) and np.all(np.isfinite(out))
    # The default is the notebook's slerp: NaN on these unnormalised representations (norm ~ 40 sqrt(48)).
    notebook = sample_representations("slerp", 4, rng=rng, repr_dim=48, encode=encode, images=images).numpy()
    assert notebook.shape == (4, 48) and np.all(np.isnan(notebook))


def test_slerp_and_lerp_definitions():
    """Spec §9.15: the fixed slerp (--fix_slerp) references, and the notebook's slerp (the default)."""
    a, b = tf.constant([[1.0, 0.0, 0.0]]), tf.constant([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(slerp(a, b, [0.0], fix=True).numpy(), a.numpy(), atol=1e-6)
    np.testing.assert_allclose(slerp(a, b, [1.0], fix=True).numpy(), b.numpy(), atol=1e-6)
    np.testing.assert_allclose(slerp(a, b, [0.5], fix=True).numpy(), (a + b).numpy() / math.sqrt(2), atol=1e-6)
    # On unit vectors the notebook's formula is already right.
    np.testing.assert_allclose(slerp(a, b, [0.5]).numpy(), (a + b).numpy() / math.sqrt(2), atol=1e-6)
    np.testing.assert_allclose(slerp(a, b, [0.25]).numpy(), slerp(a, b, [0.25], fix=True).numpy(), atol=1e-6)
    np.testing.assert_allclose(lerp(a, b, [1.0]).numpy(), a.numpy())
    big_a, big_b = 45.0 * tf.constant([[0.6, 0.8, 0.0]]), 45.0 * tf.constant([[0.0, 0.6, 0.8]])
    fixed = slerp(big_a, big_b, [0.3], fix=True).numpy()
    assert np.all(np.isfinite(fixed))
    # The fixed slerp weights the raw vectors with the angle of the normalised ones (here cos w = 0.48).
    w = math.acos(0.48)
    expected = (math.sin(0.7 * w) * big_a.numpy() + math.sin(0.3 * w) * big_b.numpy()) / math.sin(w)
    np.testing.assert_allclose(fixed, expected, rtol=1e-5)
    assert np.all(np.isnan(slerp(big_a, big_b, [0.3]).numpy()))  # default: the notebook's NaN (spec §8.1)
    np.testing.assert_allclose(slerp(big_a, big_a, [0.3], fix=True).numpy(), big_a.numpy(), rtol=1e-5)  # lerp fallback


def test_metric_sample_count_and_png_mapping():
    assert num_generated(100, 32) == 128 and num_generated(10000, 128) == 10112
    assert num_generated(100, 32, "exact") == 100
    np.testing.assert_array_equal(to_png_uint8(np.array([-1.0, 0.0, 1.0, 7.0])), [0, 128, 255, 255])


def test_inception_score_and_fid_rules_used_by_congan():
    uniform = np.full((10, 5), 0.2)
    assert M.inception_score_from_probs(uniform, splits=1, drop_remainder=True) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(4)[np.arange(12) % 4]
    score, std = M.inception_score_from_probs(one_hot, splits=1, drop_remainder=True)
    assert score == pytest.approx(4.0) and std == 0.0
    feats = np.random.RandomState(0).normal(size=(2000, 4))
    assert abs(M.fid_from_activations(feats, feats, method="scipy")) < 1e-6
    shift = np.array([1.0, -2.0, 0.5, 0.0])
    assert M.fid_from_activations(feats, feats + shift, method="scipy") == pytest.approx(shift @ shift, rel=0.01)
