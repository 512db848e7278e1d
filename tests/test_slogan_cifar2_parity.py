"""slogan_cifar2.py train step over several iterations: the tf.function (and XLA) step equals the eager one, and two
replicas equal one device (the one-iteration twin is in test_slogan_cifar2.py).

Fake CIFAR arrays and the tiny stand-in networks of test_slogan_cifar2.py (latent_dim 16, batch 4).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from common.seeding import set_seed
from common.slogan import cifar2_data, cifar2_step
from tests.devices import assert_same_run, eagerly, two_cpus
from tests.test_slogan_cifar2 import _state_variables, fake_cifar, tiny_config, tiny_networks

ITERATIONS = 2
# Adam with β1 = 0 steps by lr·g / (|g| + ε/sqrt(0.1)): with ε = 1e-8 a gradient entry at rounding-noise level
# (a bias whose true gradient is 0) becomes a step of up to ±lr, so any other summation order moves it by ~lr.
# Both sides of each comparison run with ε = 1e-2 instead (the Adam slots still hold the raw gradients, m = g for
# β1 = 0, so those are compared at full scale); every other piece of the step is the trainer's.
COMPARISON_EPSILON = 1e-2


@pytest.fixture(scope="module")
def real_batches():
    cfg = tiny_config(iterations=8)
    train = cifar2_data.build_streams(cfg, fake_cifar).train
    return [train.next()[0][None] for _ in range(ITERATIONS)]


def run_iterations(real_batches, strategy=None, mode="tf.function"):
    """ITERATIONS iterations of a fresh seeded tiny state: (every variable, the outputs of each iteration)."""
    cfg = tiny_config(iterations=8)
    set_seed(cfg.random_seed)
    strategy = strategy or tf.distribute.get_strategy()
    state = cifar2_step.build_state(cfg, strategy, networks=tiny_networks)
    for optimizer in (state.opt_g, state.opt_d, state.opt_e):
        optimizer.epsilon = COMPARISON_EPSILON
    step = cifar2_step.make_train_step(state, cfg, strategy, jit_compile=mode == "xla")
    with eagerly(mode == "eager"):
        outputs = [{k: float(v) for k, v in step(tf.constant(real)).items()} for real in real_batches]
    optimizers = [v for opt in (state.opt_g, state.opt_d, state.opt_e) for v in opt.variables]
    values = {f"{k}/{v.name}": np.array(v.numpy()) for k, v in enumerate(_state_variables(state) + optimizers)}
    return values, outputs


def assert_same(a, b, rtol=1e-4, atol=1e-6):
    """Each value within rtol of itself or of its array's largest magnitude; each output within rtol.

    rtol 1e-4 (not 1e-5 as for the synthetic nets): a critic bias gradient is a sum over B·32·32 pixels of terms of
    both signs (the WGAN loss is a difference of means), and another summation order (graph-mode kernels, two
    replicas) changes that cancelling sum by up to ~1e-4 of its value while the forward pass is bit-identical.
    """
    assert_same_run(a, b, rtol, atol)


@pytest.fixture(scope="module")
def compiled(real_batches):
    return run_iterations(real_batches)


def test_tf_function_step_matches_the_eager_step(real_batches, compiled):
    assert_same(run_iterations(real_batches, mode="eager"), compiled)


def run_updates(real_batches, mode):
    """ITERATIONS D and G/E/prior updates (``_d_replica``, ``_g_replica`` + the Stein step) fed with the same draws.

    The draws are made eagerly, outside the compiled functions: XLA's random kernels turn the generator's bits
    into other floats than TF's, so an XLA-compiled ``make_train_step`` is another sample path of the same seed.
    """
    cfg = tiny_config(iterations=8)
    set_seed(cfg.random_seed)
    state = cifar2_step.build_state(cfg, networks=tiny_networks)
    for optimizer in (state.opt_g, state.opt_d, state.opt_e):
        optimizer.epsilon = COMPARISON_EPSILON
    options = {"jit_compile": mode == "xla", "autograph": False}

    @tf.function(**options)
    def d_update(x_real, draws):
        return cifar2_step._d_replica(state, cfg, x_real, draws)

    @tf.function(**options)
    def g_update(draws):
        out = cifar2_step._g_replica(state, cfg, draws, tf.constant(0.5), tf.constant(cfg.lr_stein))
        state.prior.apply_stein_updates(out.pop("stein"), 10 * cfg.lr_stein, cfg.lr_stein, cfg.lr_stein,
                                        skip_nonfinite=False)
        return out

    outputs = []
    for real in real_batches:
        d_draws = cifar2_step._d_draws(state, cfg, cfg.batch_size)
        g_draws = cifar2_step._g_draws(state.prior, state.rng, cfg, cfg.batch_size)
        with eagerly(mode == "eager"):
            out = {**d_update(tf.constant(real[0]), d_draws), **g_update(g_draws)}
        outputs.append({k: float(v) for k, v in out.items()})
    optimizers = [v for opt in (state.opt_g, state.opt_d, state.opt_e) for v in opt.variables]
    values = {f"{k}/{v.name}": np.array(v.numpy()) for k, v in enumerate(_state_variables(state) + optimizers)}
    return values, outputs


@pytest.mark.slow
def test_xla_updates_match_the_eager_ones(real_batches):
    assert_same(run_updates(real_batches, "eager"), run_updates(real_batches, "xla"))


@pytest.mark.slow
def test_two_replicas_match_one_device_over_several_iterations(real_batches, compiled):
    assert_same(compiled, run_iterations(real_batches, tf.distribute.MirroredStrategy(two_cpus())))
