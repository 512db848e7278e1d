"""--mixed_precision: float16 compute with float32 statistics and losses, and the dynamic loss scale.

On a CPU only that a step runs and gives finite losses is checked (speed and accuracy of float16 are GPU matters).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.seeding import make_generator, set_seed
from congan import framework2, precision
from congan.config import resolve, tiny_framework2
from congan.optim import TorchAdam
from congan.simsiam import SimSiam


@pytest.fixture
def eager():
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def test_framework2_mixed_precision_step_is_finite(eager):
    cfg = resolve(tiny_framework2(batch_size=8, mixed_precision=True), check_paths=False)
    set_seed(0)
    with precision.dtype_policy(True):
        simsiam = SimSiam("tiny", 64, 16).build_for(32)
        nets = framework2.build_networks(cfg, simsiam.encoder, 64)
        opts = framework2.make_optimizers(cfg, nets)
    assert nets.G.dtype_policy.name == "mixed_float16" and nets.G.blocks[0].conv1.compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in nets.G.weights + nets.D.weights + simsiam.weights)
    steps = framework2.Steps(nets, opts, cfg, make_generator(0), 64)
    x = [tf.constant(np.random.RandomState(k).randint(0, 256, (8, 32, 32, 3)).astype(np.uint8)) for k in range(3)]
    lam = tf.constant(0.5)
    g_out = steps.g(0.5, 0.5)((x[0],), lam, lam)
    d_out = steps.d(0.5)(x[1], (x[2],), lam)
    for out in (g_out, d_out):
        assert all(v.dtype == tf.float32 and np.isfinite(v.numpy()) for v in out.values()), out
    # Finite gradients: each optimizer stepped once and the scale kept its initial value.
    assert [int(opts[k].iterations.numpy()) for k in "GTDQ"] == [1, 1, 1, 1]
    assert float(opts["G"].loss_scale.scale.numpy()) == precision.INITIAL_SCALE
    fake = framework2.generate(nets, tf.random.normal((2, 64)), tf.random.normal((2, cfg.latent_noise_dim)), True)
    assert fake.dtype == tf.float32
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored after building


def test_loss_scale_skips_non_finite_updates_and_grows(monkeypatch):
    var = tf.Variable([1.0, 2.0])
    opt = TorchAdam([var], 0.1, (0.0, 0.9))
    scale = precision.LossScale()
    finite = scale.apply([tf.constant([np.inf, 1.0])], opt.apply)
    assert not bool(finite) and int(opt.iterations.numpy()) == 0
    np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
    assert float(scale.scale.numpy()) == precision.INITIAL_SCALE / 2
    monkeypatch.setattr(precision, "GROWTH_STEPS", 2)
    for _ in range(2):
        assert bool(scale.apply([tf.constant([1.0, 1.0]) * scale.scale], opt.apply))
    assert int(opt.iterations.numpy()) == 2 and float(scale.scale.numpy()) == precision.INITIAL_SCALE
    # The update used the unscaled gradient [1, 1]: two Adam steps of -lr each with beta1 = 0.
    np.testing.assert_allclose(var.numpy(), [0.8, 1.8], rtol=1e-5)
