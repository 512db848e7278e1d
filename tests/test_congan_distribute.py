"""ConGAN on several devices: two replicas (two logical CPUs) give one device's training to float precision.

The reference and the 2-replica run start from the same seed, see the same global batches and draw the same random
numbers (:class:`congan.distribute.StepNoise`); BatchNorm statistics are synchronised, losses are scaled to the
global batch and gradients are summed over the replicas, so only the float summation order differs.

Why the optimizers of the comparisons use Adam with eps = 1: in its first steps (beta1 = 0 in Framework 2, bias
correction in Framework 1) Adam moves every weight by about +-lr whatever the size of its gradient, so a weight
whose gradient is ~1e-9 moves by +-lr in either run and a summation-order difference in the ninth digit flips the
sign: a 2 lr difference that says nothing about the distribution. With eps = 1 the update is lr * m / (sqrt(v) + 1),
a smooth function of the gradient, and the runs agree to ~1e-5 (the same code with eps = 1e-8 differs by up to
2 lr in such weights). SimSiam's SGD needs no such change.
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from common.errors import UsageError
from common.seeding import make_generator, set_seed
from congan import framework1, framework2
from congan.config import Framework1Config, SimSiamConfig, resolve, tiny_framework2
from congan.distribute import StepNoise, make_run_strategy
from congan.optim import TorchAdam
from congan.simsiam import SimSiam, TorchSGD, make_pretrain_step
from tests.devices import two_cpus as _two_cpus

# Float32 summation order differs (halves then sum vs whole batch) and is amplified a little by each training step;
# one device alone differs by the same order between graph and eager execution. Per-replica BN statistics or
# unsummed gradients would give differences of order 1e-2 to 1.
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def eager():
    """The step functions run eagerly (strategy.run then runs the replicas in threads): no tracing cost."""
    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


def _images(n, size=32, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype(np.uint8)


def _smooth_adam(opts):
    """The same optimizers with eps = 1 (see the module docstring)."""
    return {k: TorchAdam(o.variables_, float(o.learning_rate.numpy()), (o.beta1, o.beta2), eps=1.0, name=k)
            for k, o in opts.items()}


def _replica_copies(var):
    """The per-device copies of a (Keras) variable under a MirroredStrategy."""
    return [v.numpy() for v in var.value.values]


def _assert_same(a, b, what):
    assert len(a) == len(b)
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL, err_msg=f"{what}: {name}")


def _framework2_run(strategy):
    cfg = resolve(tiny_framework2(batch_size=8, grad_penalty=1.0), check_paths=False)
    set_seed(0)
    with strategy.scope():
        simsiam = SimSiam("tiny", 64, 16).build_for(32)
        nets = framework2.build_networks(cfg, simsiam.encoder, 64)
        opts = _smooth_adam(framework2.make_optimizers(cfg, nets))
    steps = framework2.Steps(nets, opts, cfg, make_generator(0), 64, strategy)
    x = [tf.constant(_images(8, seed=k)) for k in range(3)]
    lam = tf.constant(0.5)
    outputs = [steps.g(0.5, 0.5)((x[0],), lam, lam), steps.d(0.5)(x[1], (x[2],), lam)]
    losses = [(f"{i}/{k}", v.numpy()) for i, out in enumerate(outputs) for k, v in sorted(out.items())]
    state = [(v.path, v.numpy()) for m in (nets.G, nets.D, nets.T, nets.Q, simsiam) for v in m.weights]
    return losses, state, nets


def test_framework2_two_replicas_equal_one_device(eager):
    """A G and a D step with every term on (lambda_G = lambda_D = 0.5, gradient penalty 1): losses, weights,
    BN running statistics and SN vectors of G, D, T, Q and SimSiam agree with one device."""
    devices = _two_cpus()
    one_losses, one_state, _ = _framework2_run(tf.distribute.get_strategy())
    strategy = tf.distribute.MirroredStrategy(devices)
    two_losses, two_state, nets = _framework2_run(strategy)
    assert strategy.num_replicas_in_sync == 2
    assert {k.split("/", 1)[1] for k, _ in one_losses} >= {"G repr loss", "D repr loss(G)", "D repr loss", "grad(D)"}
    _assert_same(one_losses, two_losses, "loss")
    _assert_same(one_state, two_state, "variable")
    # The replicas' copies stayed identical (each applied the same summed gradient).
    for var in nets.G.weights + nets.D.weights:
        first, second = _replica_copies(var)
        np.testing.assert_array_equal(first, second, err_msg=var.path)


def _framework1_run(strategy):
    cfg = resolve(Framework1Config(image_size=32, batch_size=8, latent_dim=8, dim=64, pred_dim=16, D_iters=1,
                                   simsiam_arch="tiny", simsiam_path="random", seed=0, gan_type="gan"))
    set_seed(0)
    with strategy.scope():
        simsiam = SimSiam("tiny", 64, 16).build_for(32)
        state = framework1.build_state(cfg, simsiam.encoder, 64, make_generator(0))
        state.opts = _smooth_adam(state.opts)
    d_step, g_step = framework1.make_batch_steps(state, cfg, strategy)
    outputs = [d_step(tf.constant(_images(8, seed=1))), g_step(tf.constant(_images(8, seed=2)))]
    losses = [(f"{i}/{k}", v.numpy()) for i, out in enumerate(outputs) for k, v in sorted(out.items())]
    return losses, [(v.path, v.numpy()) for v in state.model.weights + simsiam.weights]


def test_framework1_two_replicas_equal_one_device(eager):
    """A D batch step and a G batch step (each with its AE step), D with BatchNorm (gan_type "gan"): the BN of G,
    D, the context encoder, the decoder and SimSiam use global-batch statistics, so one device is reproduced,
    including the gradient penalty's second derivatives through D's synchronised BN."""
    devices = _two_cpus()
    one_losses, one_state = _framework1_run(tf.distribute.get_strategy())
    two_losses, two_state = _framework1_run(tf.distribute.MirroredStrategy(devices))
    _assert_same(one_losses, two_losses, "loss")
    _assert_same(one_state, two_state, "variable")


def _simsiam_run(strategy):
    set_seed(0)
    with strategy.scope():
        model = SimSiam("tiny", 64, 16).build_for(32)
        optimizer = TorchSGD({"encoder": model.encoder.trainable_variables,
                              "predictor": model.predictor.trainable_variables})
        optimizer.lr["encoder"].assign(0.05)
        optimizer.lr["predictor"].assign(0.05)
    step = make_pretrain_step(model, optimizer, make_generator(0), 32, strategy=strategy)
    outputs = [step(tf.constant(_images(8, seed=k))) for k in range(2)]
    losses = [(f"{i}/{k}", v.numpy()) for i, out in enumerate(outputs) for k, v in sorted(out.items())]
    return losses, [(v.path, v.numpy()) for v in model.weights]


def test_simsiam_pretraining_two_replicas_equal_one_device(eager):
    """Two SGD steps of the pretraining step: loss, collapse monitor (std over the gathered
    batch), weights and BN statistics equal one device's."""
    devices = _two_cpus()
    one_losses, one_state = _simsiam_run(tf.distribute.get_strategy())
    two_losses, two_state = _simsiam_run(tf.distribute.MirroredStrategy(devices))
    _assert_same(one_losses, two_losses, "output")
    _assert_same(one_state, two_state, "variable")


def test_step_noise_gives_each_replica_its_rows_of_one_draw():
    devices = _two_cpus()
    seeds = tf.constant([[1, 2], [3, 4]], tf.int64)
    whole = StepNoise(seeds)
    expected = np.concatenate([whole.normal((4, 3)).numpy(), whole.uniform(tf.constant([4, 2])).numpy()], axis=1)
    strategy = tf.distribute.MirroredStrategy(devices)

    @tf.function
    def per_replica():
        def replica():
            noise = StepNoise(seeds)
            return tf.concat([noise.normal((2, 3)), noise.uniform(tf.constant([2, 2]))], axis=1)
        return strategy.run(replica)

    rows = np.concatenate([v.numpy() for v in strategy.experimental_local_results(per_replica())])
    np.testing.assert_array_equal(rows, expected)


def test_trainer_runs_framework2_on_two_replicas(tmp_path, eager):
    """The entry-point path: the run builds its strategy, networks and optimizers in its scope and trains."""
    import json

    from congan.trainer import run_framework2

    cfg = resolve(tiny_framework2(batch_size=8, epochs=1, run_dir=str(tmp_path / "run")), check_paths=False)
    run_dir = run_framework2(cfg, images=_images(24), show_progress=False, devices=_two_cpus())
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(record["loss/G"]) and np.isfinite(record["loss/D"])
    assert (run_dir / "results" / "model.weights.h5").is_file() and (run_dir / "model-1.index").is_file()


def test_strategy_checks():
    devices = _two_cpus()
    with pytest.raises(UsageError, match="--batch_size: 7 must be divisible by the 2 replicas"):
        make_run_strategy(dataclasses.replace(tiny_framework2(), batch_size=7), devices)
    with pytest.raises(UsageError, match="--jit_compile: works on one device only"):
        make_run_strategy(tiny_framework2(jit_compile=True), devices)
    assert make_run_strategy(SimSiamConfig(batch_size=4), devices).num_replicas_in_sync == 2
    assert make_run_strategy(tiny_framework2(gpu="-1")).num_replicas_in_sync == 1
