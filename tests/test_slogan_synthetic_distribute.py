"""slogan_synthetic.py train step: two replicas equal one device; eager, tf.function and XLA iterations agree;
the --gpu/--devices wiring, and an old run folder's config.json still resumes.

Tiny sizes (K = 3, d = 8, batch 16); the two-replica tests use the 2 logical CPUs of conftest.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import slogan_synthetic
from common.config import prepare_run_dir
from common.errors import UsageError
from common.seeding import set_seed
from common.slogan import synthetic_run
from common.slogan.data import build_synthetic_streams
from common.slogan.synthetic import SyntheticConfig, SyntheticState, make_train_steps
from tests.devices import assert_same_run, eagerly, two_cpus

TINY = dict(num_cluster=3, latent_dim=8, batch_size=16, eval_size=200, shuffle_buffer=1000, iterations=100)
ITERATIONS = 3
# Adam with β1 = 0 steps by lr·g / (|g| + ε/sqrt(0.1)): with ε = 1e-8 a gradient entry at rounding-noise level
# (1e-8, e.g. the dense biases in front of G's BatchNorms, whose true gradient is 0) becomes a step of up to ±lr,
# so another summation order (two replicas, another kernel) moves such an entry by ~lr. The comparisons run both
# sides with ε = 1e-2, which keeps such steps proportional to the gradient (the Adam slots still hold the raw
# gradients: m = g for β1 = 0, so they are compared at full scale); every other piece of the step is
# the trainer's.
COMPARISON_EPSILON = 1e-2


def state_values(state: SyntheticState) -> dict:
    """Every checkpointed value of the state by its checkpoint key (models, optimizers, prior, step, RNG states)."""
    values = {}
    for name, obj in state.trackables().items():
        variables = obj.variables if hasattr(obj, "variables") else [obj]
        if isinstance(obj, tf.random.Generator):
            variables = [obj.state]
        for k, v in enumerate(variables):
            values[f"{name}/{k}/{getattr(v, 'path', v.name)}"] = np.array(v.numpy())
    return values


def run_iterations(strategy=None, mode="tf.function", **overrides):
    """ITERATIONS outer iterations from the seeded initial state; (values, outputs)."""
    config = SyntheticConfig(**{**TINY, "jit_compile": mode == "xla", **overrides})
    set_seed(config.seed)
    train, evaluation = build_synthetic_streams(config.seed)
    state = SyntheticState(config, train, evaluation, strategy)
    for optimizer in (state.opt_g, state.opt_d, state.opt_e):
        optimizer.epsilon = COMPARISON_EPSILON
    step = make_train_steps(state, config).iteration
    with eagerly(mode == "eager"):
        outputs = [{k: float(v) for k, v in step().items()} for _ in range(ITERATIONS)]
    for model in (state.generator, state.discriminator, state.encoder):
        for weight in model.weights:
            copies = getattr(weight.value, "values", None)
            for other in (copies or ())[1:]:  # mirrored copies never drift apart
                np.testing.assert_array_equal(other.numpy(), copies[0].numpy(), err_msg=weight.path)
    return state_values(state), outputs


def assert_same(a, b, rtol, atol):
    """Every value within rtol of itself or of its array's largest magnitude (gradients summed in another order
    differ by rounding relative to the whole vector, not to each entry), and every output within rtol."""
    assert_same_run(a, b, rtol, atol)


@pytest.fixture(scope="module")
def one_device():
    return run_iterations()


def test_two_replicas_match_one_device(one_device):
    """Global draws sharded over 2 replicas, BatchNorm over the global batch, gathered hinge/LP/U2C terms,
    summed gradients and gathered Stein inputs: the iterations equal the one-device ones."""
    two = run_iterations(tf.distribute.MirroredStrategy(two_cpus()))
    assert_same(one_device, two, rtol=1e-5, atol=1e-6)
    assert one_device[1][-1]["skipped/joint"] == 0 and one_device[1][-1]["skipped/d"] == 0


@pytest.mark.slow
def test_two_replicas_match_one_device_with_sum_reduction_and_two_critic_steps():
    strategy = tf.distribute.MirroredStrategy(two_cpus())
    assert_same(run_iterations(reduce_fn="sum", n_critic=2), run_iterations(strategy, reduce_fn="sum", n_critic=2),
                rtol=1e-5, atol=1e-6)


def test_tf_function_iterations_match_eager_ones(one_device):
    assert_same(run_iterations(mode="eager"), one_device, rtol=1e-5, atol=1e-6)


class FixedNormals:
    """Stand-in for the spectral-norm projection's random generator: fixed start vectors u, v that XLA and TF
    compute alike (their random kernels map the same Philox bits to different floats)."""

    def normal(self, shape):
        return tf.sin(1.3 * tf.cast(tf.range(shape[0]), tf.float32) + 0.5)


def run_updates(mode: str):
    """ITERATIONS D and joint updates fed with the same NumPy draws (real batch, z, ε, Gumbel uniforms)."""
    config = SyntheticConfig(**TINY, jit_compile=mode == "xla")
    set_seed(config.seed)
    train, evaluation = build_synthetic_streams(config.seed)
    state = SyntheticState(config, train, evaluation)
    for optimizer in (state.opt_g, state.opt_d, state.opt_e):
        optimizer.epsilon = COMPARISON_EPSILON
    for layer in state.encoder.layers:
        if getattr(layer, "kernel_constraint", None) is not None:
            layer.kernel_constraint.generator = FixedNormals()
    steps = make_train_steps(state, config)
    rng = np.random.default_rng(0)
    batch, dim, k = config.batch_size, config.latent_dim, config.num_cluster

    def draw(*shape, scale=1.0, low=None):
        values = rng.uniform(size=shape) if low is not None else scale * rng.normal(size=shape)
        return tf.constant(values, tf.float32)

    outputs = []
    with eagerly(mode == "eager"):
        for _ in range(ITERATIONS):
            d_loss, parts, _ = steps.d_update(draw(batch, 2, scale=0.5), draw(batch, dim, scale=0.3),
                                              draw(batch, 1, low=0))
            terms, _, _, applied = steps.joint_update(draw(batch, dim, scale=0.3), draw(batch, k, low=0))
            outputs.append({"d": float(d_loss), "d_real": float(parts["d_real"]), "g_total": float(terms.loss),
                            "lc": float(tf.reduce_mean(terms.lc)), "applied": float(tf.reduce_sum(
                                tf.cast(applied, tf.float32)))})
    return state_values(state), outputs


@pytest.mark.slow
def test_xla_updates_match_eager_ones():
    """With the same random draws, the XLA-compiled D and joint updates give the eager updates' values.

    (The XLA-compiled ``iteration`` itself draws other numbers from the same seed: XLA's random kernels turn the
    generator's bits into floats differently, so --jit_compile runs are another sample path of the same seed.)
    """
    assert_same(run_updates("eager"), run_updates("xla"), rtol=1e-5, atol=1e-6)


def test_strategy_checks():
    devices = ",".join(two_cpus())
    with pytest.raises(UsageError, match="divisible"):
        synthetic_run.make_run_strategy(SyntheticConfig(**{**TINY, "batch_size": 15}, devices=devices))
    with pytest.raises(UsageError, match="one device"):
        synthetic_run.make_run_strategy(SyntheticConfig(**TINY, jit_compile=True, devices=devices))
    assert synthetic_run.make_run_strategy(SyntheticConfig(**TINY, devices=devices)).num_replicas_in_sync == 2
    assert synthetic_run.make_run_strategy(SyntheticConfig(**TINY, gpu="-1")).num_replicas_in_sync == 1


def test_a_config_json_written_before_the_devices_flag_still_resumes(tmp_path):
    """A run folder whose config.json predates --devices (the key is absent) is resumed by the same command."""
    args = vars(slogan_synthetic.build_parser().parse_args(["--gpu", "-1", "--run_name", "old"]))
    config = SyntheticConfig(**args)
    saved = {k: v for k, v in json.loads(json.dumps(config.__dict__)).items() if k != "devices"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    _, resuming = prepare_run_dir(tmp_path, config, ignore=synthetic_run.RESUME_IGNORED)
    assert resuming
    two = SyntheticConfig(**{**args, "gpu": "0,1", "devices": "/cpu:0,/cpu:1"})  # devices never block a resume
    assert prepare_run_dir(tmp_path, two, ignore=synthetic_run.RESUME_IGNORED)[1]
