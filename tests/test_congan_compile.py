"""ConGAN's Framework-2 train steps give the same numbers run eagerly, as a tf.function graph and XLA-compiled.

The runs build the same tiny networks from the same seed, feed the same batches and draw the same random numbers
(the seeds come from the run's generator, the draws are stateless; for XLA see its test), so only kernel choice
and summation order differ. The optimizers use Adam with eps = 1 for the reason given in
tests/test_congan_distribute.py: with eps = 1e-8 Adam's first steps move weights with a ~0 gradient by +-lr, and
a ninth-digit difference flips the sign.
"""

import dataclasses

import pytest
import tensorflow as tf

from common.seeding import make_generator, set_seed
from congan import framework2
from congan.config import resolve, tiny_framework2
from congan.distribute import StepNoise
from congan.simsiam import SimSiam
from tests.test_congan_distribute import _assert_same, _images, _smooth_adam


def _run(jit_compile: bool):
    cfg = resolve(tiny_framework2(batch_size=8, grad_penalty=1.0, jit_compile=jit_compile), check_paths=False)
    set_seed(0)
    simsiam = SimSiam("tiny", 64, 16).build_for(32)
    nets = framework2.build_networks(cfg, simsiam.encoder, 64)
    opts = _smooth_adam(framework2.make_optimizers(cfg, nets))
    steps = framework2.Steps(nets, opts, cfg, make_generator(0), 64)
    x = [tf.constant(_images(8, seed=k)) for k in range(3)]
    lam = tf.constant(0.5)
    outputs = [steps.g(0.5, 0.5)((x[0],), lam, lam), steps.d(0.5)(x[1], (x[2],), lam),
               steps.g(0.5, 0.5)((x[2],), lam, lam)]
    losses = [(f"{i}/{k}", v.numpy()) for i, out in enumerate(outputs) for k, v in sorted(out.items())]
    return losses, [(v.path, v.numpy()) for m in (nets.G, nets.D, nets.T, nets.Q, simsiam) for v in m.weights]


@pytest.fixture(scope="module")
def eager_reference():
    """G, D, G steps with every term on, the step functions run as plain Python (tf.config.run_functions_eagerly)."""
    tf.config.run_functions_eagerly(True)
    try:
        return _run(jit_compile=False)
    finally:
        tf.config.run_functions_eagerly(False)


def test_tf_function_steps_equal_eager_steps(eager_reference):
    losses, state = _run(jit_compile=False)
    _assert_same(eager_reference[0], losses, "loss")
    _assert_same(eager_reference[1], state, "variable")


class _PatternNoise(StepNoise):
    """Deterministic stand-in for the random draws: sin of the element index, different for every draw."""

    def _pattern(self, shape):
        local, full = self._global_shape(shape)
        self.used += 1
        size = tf.reduce_prod(tf.convert_to_tensor(full))
        x = tf.sin(0.7 * tf.cast(tf.range(size), tf.float32) + 1.3 * self.used)
        return self._rows(tf.reshape(x, full), local)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32):
        return mean + stddev * self._pattern(shape)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
        return minval + (maxval - minval) * 0.5 * (self._pattern(shape) + 1.0)


@pytest.mark.slow
def test_xla_steps_equal_eager_steps(monkeypatch):
    """XLA compiles each step (minutes on a loaded CPU): marked slow.

    TensorFlow's XLA kernels of the stateless Philox draws give other numbers than its CPU kernels for the same
    seed (so a --jit_compile run is not bit-for-bit the run without it), hence the draws are replaced by a
    deterministic pattern here, in the eager reference and in the compiled run alike.
    """
    monkeypatch.setattr(framework2, "StepNoise", _PatternNoise)
    tf.config.run_functions_eagerly(True)
    try:
        reference = _run(jit_compile=False)
    finally:
        tf.config.run_functions_eagerly(False)
    losses, state = _run(jit_compile=True)
    _assert_same(reference[0], losses, "loss")
    _assert_same(reference[1], state, "variable")


def test_jit_compile_flag_is_offered_and_off_by_default():
    """The trainer's --jit_compile (default from benchmarks/bench_congan.py's measurements, see the notes)."""
    from congan.config import Framework1Config, Framework2Config, SimSiamConfig, build_parser

    for cls in (Framework2Config, Framework1Config, SimSiamConfig):
        assert build_parser(cls).parse_args(["--jit_compile"]).jit_compile is True
        assert {f.name: f.default for f in dataclasses.fields(cls)}["jit_compile"] is False
