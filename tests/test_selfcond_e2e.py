"""Self-Conditioned GAN end to end on tiny synthetic data: 2-D experiment, image training with exact resume,
metrics, cluster visualisation, multi-device step, and the usage-error exit of an entry script."""

import copy
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.errors import UsageError
from selfcond.config import load_config
from selfcond.models import build_models
from tests.devices import two_cpus
from tests.test_selfcond import write_tiny_mnist

REPO = Path(__file__).resolve().parents[1]


def _checkpoint_values(prefix) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "OBJECT_GRAPH" not in k}


def _assert_same_checkpoints(a, b):
    va, vb = _checkpoint_values(a), _checkpoint_values(b)
    assert va.keys() == vb.keys()
    for key in va:
        np.testing.assert_array_equal(va[key], vb[key], err_msg=key)


# --- 2-D ---------------------------------------------------------------------------------------------------


def test_2d_experiment_runs_and_resumes_exactly(in_tmp, monkeypatch):
    from selfcond.mix2d import trainer

    monkeypatch.setattr(trainer, "EVAL_EVERY", 10)
    monkeypatch.setattr(trainer, "N_CLUSTER_POINTS", 300)
    settings = dict(clusterer="selfcondgan", data_type="ring", recluster_every=5, num_clusters=4, npts=300,
                    train_batch_size=50, test_batch_size=200, nepochs=4, seed=3, show_progress=False)
    first = trainer.run(trainer.Config2D(outdir="a", **settings))
    run_dir = in_tmp / "a" / "ring_selfcondgan_5_4"
    assert first[0]["it"] == 20 and 0.0 <= first[0]["prop_real"] <= 1.0
    assert (run_dir / "done.txt").exists()
    for name in ("all/0.png", "all/20square.png", "clusters/10.png", "snapshots/model_20.index"):
        assert (run_dir / name).exists(), name
    lines = (run_dir / "log.txt").read_text().splitlines()
    assert [line.split(" dloss")[0] for line in lines] == ["[epoch 0 it 0]", "[epoch 1 it 10]", "[epoch 3 it 20]"]
    assert trainer.run(trainer.Config2D(outdir="a", **settings)) == []  # done.txt: nothing to do

    # Simulate a crash after the snapshot of iteration 10, then run the same command again.
    trainer.run(trainer.Config2D(outdir="b", **settings))
    crashed = in_tmp / "b" / "ring_selfcondgan_5_4"
    for path in crashed.glob("snapshots/model_20*"):
        path.unlink()
    (crashed / "done.txt").unlink()
    (crashed / "log.txt").write_text("\n".join(lines[:2]) + "\n")
    resumed = trainer.run(trainer.Config2D(outdir="b", **settings))
    assert resumed == first
    _assert_same_checkpoints(run_dir / "snapshots" / "model_20", crashed / "snapshots" / "model_20")
    assert (crashed / "log.txt").read_text().splitlines() == lines


def test_2d_folder_names():
    from selfcond.mix2d.trainer import Config2D, experiment_dir, run_dirs

    base = Config2D(clusterer="random_labels", data_type="grid", num_clusters=1)
    assert str(experiment_dir(base)) == "output/grid_random_labels_5000_1"
    supervised = Config2D(clusterer="supervised", data_type="ring", variance=0.01, nruns=2, outdir="o")
    assert [str(p) for p in run_dirs(supervised)] == ["o/0.01_ring_supervised_5000_8/_run_0",
                                                      "o/0.01_ring_supervised_5000_8/_run_1"]
    with pytest.raises(UsageError, match="--z_dim"):
        Config2D(clusterer="selfcondgan", data_type="ring", z_dim=3).validate()


# --- images: train, resume, metrics, visualisation ------------------------------------------------------------

TINY = """inherit_from: configs/stacked_mnist/selfcondgan.yaml
data:
  train_dir: {mnist}
generator:
  nlabels: 4
  kwargs:
    ngf: 4
discriminator:
  nlabels: 4
  kwargs:
    ndf: 4
clusterer:
  nimgs: 120
  kwargs:
    k_value: 4
training:
  out_dir: {out}
  batch_size: 20
  ntest: 16
  recluster_every: 3
  backup_every: 2
  sample_every: 4
  sample_nlabels: 2
  log_every: 2
"""


@pytest.fixture(scope="module")
def image_runs(tmp_path_factory):
    """Two tiny Stacked-MNIST runs: one straight to iteration 6, one stopped after 1 and resumed."""
    import selfcond.data
    from selfcond.config import load_config
    from selfcond.trainer import TrainOptions, run

    root = tmp_path_factory.mktemp("selfcond_images")
    patch = pytest.MonkeyPatch()
    patch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 400)
    write_tiny_mnist(root / "mnist", n=200)
    configs = {}
    for name in ("straight", "resumed"):
        path = root / f"{name}.yaml"
        path.write_text(TINY.format(mnist=root / "mnist", out=root / name))
        configs[name] = path
    options = dict(nepochs=1, seed=5, show_progress=False)
    straight = run(load_config(configs["straight"]), TrainOptions(str(configs["straight"]), max_it=6, **options))
    run(load_config(configs["resumed"]), TrainOptions(str(configs["resumed"]), max_it=1, **options))
    early = sorted(p.name for p in (root / "resumed" / "chkpts").iterdir())
    resumed = run(load_config(configs["resumed"]), TrainOptions(str(configs["resumed"]), max_it=6, **options))
    yield {"root": root, "configs": configs, "straight": straight, "resumed": resumed, "early": early}
    patch.undo()


def test_image_training_outputs_and_exact_resume(image_runs):
    root = image_runs["root"]
    assert "model.index" not in image_runs["early"]  # no chkpts/model at it = 0
    out = root / "straight"
    for name in ("real.png", "imgs/gt/00000000.png", "imgs/all/00000004.png", "imgs/0001/00000000.png",
                 "chkpts/cluster_samples.npz", "chkpts/model_00000004.index", "chkpts/model.index", "config.json"):
        assert (out / name).exists(), name
    assert not (out / "done.txt").exists()  # stopped by --max_it, not finished
    assert np.isfinite(list(image_runs["straight"].values())).all()
    assert image_runs["straight"] == image_runs["resumed"]
    _assert_same_checkpoints(out / "chkpts" / "model_00000005", root / "resumed" / "chkpts" / "model_00000005")


def test_finished_run_is_extended_by_a_larger_nepochs(tmp_path, monkeypatch, capsys):
    """--nepochs is only the stopping bound: a finished run (done.txt removed, as in the original, where a
    done.txt makes any re-run exit) continues from its newest checkpoint to the larger bound, landing on the
    same weights as a run started with that bound; a changed config value is still refused."""
    import selfcond.data
    import selfcond.trainer
    from selfcond.trainer import TrainOptions, run, saved_iterations

    monkeypatch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 60)  # 3 batches of 20 per epoch
    # Stand-in networks: each run traces its train step, which costs seconds with the dcgan ones.
    monkeypatch.setattr(selfcond.trainer, "build_generator", lambda config, name: TinyImageG(4, name))
    monkeypatch.setattr(selfcond.trainer, "build_discriminator", lambda config, name: TinyImageD(4, name))
    write_tiny_mnist(tmp_path / "mnist", n=60)
    configs = {}
    for name in ("extended", "straight"):
        text = TINY.format(mnist=tmp_path / "mnist", out=tmp_path / name).replace("nimgs: 120", "nimgs: 40")
        (tmp_path / f"{name}.yaml").write_text(text)
        configs[name] = load_config(tmp_path / f"{name}.yaml")
    options = dict(seed=5, show_progress=False)
    extended = tmp_path / "extended"
    run(configs["extended"], TrainOptions("extended.yaml", nepochs=0, **options))  # 1 epoch: it 0..2
    assert (extended / "done.txt").exists() and saved_iterations(extended) == [0, 2]
    capsys.readouterr()
    assert run(configs["extended"], TrainOptions("extended.yaml", nepochs=1, **options)) == {}
    assert "done.txt" in capsys.readouterr().out  # a finished experiment does nothing, whatever the flags

    (extended / "done.txt").unlink()
    last = run(configs["extended"], TrainOptions("extended.yaml", nepochs=1, **options))  # 2 epochs: it 3..5
    assert "Loaded iteration 2; continuing at 3" in capsys.readouterr().out
    assert (extended / "done.txt").exists() and saved_iterations(extended) == [0, 2, 4]
    # The same 6 iterations from scratch, written as --nepochs 2 --exact_epochs (the fix of the original's
    # nepochs + 1 epochs) with --save_last (the fix of its missing final checkpoint).
    straight = run(configs["straight"], TrainOptions("straight.yaml", nepochs=2, exact_epochs=True, save_last=True,
                                                     **options))
    assert last == straight
    assert saved_iterations(tmp_path / "straight") == [0, 2, 4, 5]
    name = "chkpts/model_00000004"
    _assert_same_checkpoints(extended / name, tmp_path / "straight" / name)

    (extended / "done.txt").unlink()
    changed = copy.deepcopy(configs["extended"])
    changed["training"]["lr_g"] = 2e-4
    with pytest.raises(UsageError, match=r"different configuration .*lr_g"):
        run(changed, TrainOptions("extended.yaml", nepochs=2, **options))
    assert saved_iterations(extended) == [0, 2, 4]


def test_metrics_modes_and_cluster_metrics(image_runs, monkeypatch):
    import argparse

    import common.datasets
    import selfcond.data
    from selfcond.evaluation import cluster_scores, evaluate

    def no_cache(*args, **kwargs):
        raise AssertionError("the MNIST dataset cache must not be read")

    monkeypatch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 400)
    monkeypatch.setattr(common.datasets, "load_mnist", no_cache)
    root = image_runs["root"]
    # --source points at the generated digits, so the missing mode counter is trained on them (no dataset
    # cache, no network) and the cluster metrics label the same tiny Stacked MNIST.
    options = argparse.Namespace(
        paths=[str(image_runs["configs"]["straight"])], it=4, every=-1, fid=False, inception=False, modes=True,
        fsd=False, cluster_metrics=True, seed=0, nsamples=150, source=str(root / "mnist"),
        classifier_dir=str(root / "clf"),
        classifier_input="raw_0_255", classifier_inference_mode=False, nmi_average="arithmetic", random=False)
    tables = evaluate(options)[str(image_runs["configs"]["straight"])]
    assert set(tables["nmodes_results"]) == {"4"} and 1 <= tables["nmodes_results"]["4"] <= 1000
    assert 0.0 <= tables["kl_results"]["4"] <= 3.0 + 1e-9
    scores = tables["cluster_metrics"]["4"]
    assert 0.0 <= scores["nmi"] <= 1.0 and 0.0 < scores["purity"] <= 1.0
    with np.load(root / "straight" / "cluster_preds_4.npz") as stored:
        assert len(stored["y_reals"]) == 400 and set(np.unique(stored["y_preds"])) <= set(range(4))
        assert cluster_scores(stored["y_reals"], stored["y_preds"]) == scores
    assert (root / "clf" / "mnist_model.weights.h5").exists()  # trained because it was missing
    with np.load(root / "straight" / "results" / "samples.npz") as stored:
        assert stored["fake"].shape == (150, 32, 32, 3) and str(stored["real"]) == "stacked_mnist"
        assert stored["fake"].min() >= 0.0 and stored["fake"].max() <= 255.0


def test_visualize_clusters(image_runs, monkeypatch):
    import selfcond.data
    from selfcond.config import load_config
    from selfcond.visualize import visualize

    monkeypatch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 400)
    out = visualize(load_config(image_runs["configs"]["straight"]), model_it=4, show_clusters=True)
    names = {p.name for p in out.iterdir()}
    assert {f"{i}_gen.png" for i in range(4)} <= names
    assert any(name.endswith("_real.png") for name in names)
    page = (out / "+lightbox.html").read_text()
    assert "0_gen.png" in page


def test_inception_monitor_with_a_stand_in_network(image_runs, monkeypatch):
    import common.inception
    import selfcond.data
    from common.errors import UsageError as Usage
    from selfcond.config import load_config
    from selfcond.data import Loader, build_dataset
    from selfcond.sampling import load_run
    from selfcond.trainer import InceptionMonitor

    monkeypatch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 400)
    config = load_config(image_runs["configs"]["straight"])
    state, _ = load_run(config, 4)
    loader = Loader(build_dataset(config, seed=0), 20, 0, "eval")

    class StandIn:
        def logits(self, images):
            return np.tile([[2.0, 0.0, 1.0]], (len(images), 1))

    monkeypatch.setattr(common.inception, "load_inception", lambda which: StandIn())
    mean, std = InceptionMonitor(30)(state, loader, 10, seed=0)
    assert abs(mean - 1.0) < 1e-9 and std == 0.0  # identical predictions: IS = 1

    def missing(which):
        raise Usage("inception graph not found")

    monkeypatch.setattr(common.inception, "load_inception", missing)
    monitor = InceptionMonitor(30)
    assert monitor(state, loader, 10, seed=0) is None and monitor.disabled


# --- multi-device and CLI -------------------------------------------------------------------------------------


class TinyG(keras.Model):
    """G(z, y) with the interface of the real generators, small enough to trace in a second."""

    def __init__(self):
        super().__init__()
        self.embed = keras.layers.Embedding(4, 3)
        self.fc = keras.layers.Dense(6)

    def call(self, z, y, training=False):
        return tf.tanh(self.fc(tf.concat([z, self.embed(y)], 1)))


class TinyD(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc1 = keras.layers.Dense(8, activation="tanh")
        self.fc2 = keras.layers.Dense(4)

    def call(self, x, y, training=False):
        return tf.gather(self.fc2(self.fc1(x)), y, axis=1, batch_dims=1)


def test_mirrored_step_matches_one_device():
    devices = two_cpus()
    from selfcond.training import build_optimizer, distribute, make_train_step

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (4, 6)).astype(np.float32)
    y = np.array([0, 1, 2, 3], np.int32)
    z = rng.normal(size=(4, 2)).astype(np.float32)
    finals = []
    for strategy in (None, tf.distribute.MirroredStrategy(devices)):
        with strategy.scope() if strategy else tf.init_scope():
            keras.utils.set_random_seed(0)
            g, d = TinyG(), TinyD()
            g(z, y), d(x, y)
            g_opt, d_opt = build_optimizer("adam", 1e-2), build_optimizer("adam", 1e-2)
            g_opt.build(g.trainable_variables)
            d_opt.build(d.trainable_variables)
        step = make_train_step(g, d, g_opt, d_opt, reg_type="real", reg_param=10.0, global_batch=4,
                               strategy=strategy)
        out = step(*distribute(strategy, x, y, z))
        finals.append(([v.numpy() for v in g.weights + d.weights], {k: float(v) for k, v in out.items()}))
    for a, b in zip(finals[0][0], finals[1][0]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for key in finals[0][1]:
        np.testing.assert_allclose(finals[0][1][key], finals[1][1][key], rtol=1e-4)


def test_compiled_step_matches_eager():
    """The train step under ``tf.function`` (default) and with ``jit_compile`` (XLA) gives, over two steps
    of the Stacked-MNIST networks (BatchNorm in G and D) with R1 (double backprop), the weights, BN
    statistics and losses of the step run eagerly."""
    from selfcond.training import make_train_step

    config = load_config("configs/stacked_mnist/selfcondgan.yaml")
    for name, width in (("generator", "ngf"), ("discriminator", "ndf")):
        config[name]["kwargs"] = {width: 2}
    rng = np.random.default_rng(0)
    batches = [(rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32), rng.integers(0, 100, 4).astype(np.int32),
                rng.normal(size=(4, 128)).astype(np.float32)) for _ in range(2)]
    results = {}
    for mode in ("eager", "tf.function", "xla"):
        keras.utils.set_random_seed(0)
        g, d = build_models(config)
        # Adam with a large epsilon: the biases in front of BatchNorm have gradients that are zero up to
        # rounding noise, which Adam's default epsilon would blow up to steps of size lr in either direction.
        g_opt, d_opt = (keras.optimizers.Adam(1e-3, beta_1=0.0, beta_2=0.99, epsilon=1e-3) for _ in range(2))
        g_opt.build(g.trainable_variables)
        d_opt.build(d.trainable_variables)
        start = [v.numpy() for v in g.weights + d.weights]
        step = make_train_step(g, d, g_opt, d_opt, reg_type="real", reg_param=10.0, global_batch=4,
                               jit_compile=mode == "xla")
        if mode == "eager":
            step = step.python_function
        losses = [{k: float(v) for k, v in step(*map(tf.constant, batch)).items()} for batch in batches]
        results[mode] = (start, [v.numpy() for v in g.weights + d.weights], losses)
    initial, eager_weights, eager_losses = results["eager"]
    assert all(not np.array_equal(a, b) for a, b in zip(initial, eager_weights))  # every weight and statistic moved
    assert all(loss["reg"] > 0 for loss in eager_losses)
    for mode in ("tf.function", "xla"):  # float reordering leaves relative differences of a few 1e-5
        start, weights, losses = results[mode]
        assert all(np.array_equal(a, b) for a, b in zip(initial, start))
        for a, b in zip(eager_weights, weights):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=mode)
        for a, b in zip(eager_losses, losses):
            for key in a:
                np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5, err_msg=f"{mode} {key}")


class TinyImageG(keras.Model):
    """G(z, y) -> [B, 32, 32, 3] images: an embedding and one dense layer (no BatchNorm)."""

    def __init__(self, nlabels, name=None):
        super().__init__(name=name)
        self.embed = keras.layers.Embedding(nlabels, 3)
        self.fc = keras.layers.Dense(32 * 32 * 3)
        self(tf.zeros([1, 128]), tf.zeros([1], tf.int32))

    def call(self, z, y, training=False):
        return tf.reshape(tf.tanh(self.fc(tf.concat([z, self.embed(y)], 1))), [-1, 32, 32, 3])


class TinyImageD(keras.Model):
    """D(x, y) with the multi-head interface and 8 penultimate features (no BatchNorm)."""

    feature_dim = 8

    def __init__(self, nlabels, name=None):
        super().__init__(name=name)
        self.fc1 = keras.layers.Dense(self.feature_dim, activation="tanh")
        self.fc_out = keras.layers.Dense(nlabels)
        self(tf.zeros([1, 32, 32, 3]), tf.zeros([1], tf.int32))

    def features(self, x, training=False):
        return self.fc1(tf.reshape(x, [tf.shape(x)[0], -1]))

    def call(self, x, y, training=False):
        return tf.gather(self.fc_out(self.features(x)), y, axis=1, batch_dims=1)


def test_two_cpu_devices_train_like_one(tmp_path, monkeypatch):
    """``--devices /cpu:0 /cpu:1`` (MirroredStrategy, half the batch per replica) ends three iterations, with a
    reclustering in between, at the checkpoint of a one-device run. The networks are tiny stand-ins without
    BatchNorm: per-replica batch statistics (unsynchronised, as in DataParallel) differ from one device's by
    design."""
    devices = two_cpus()
    import selfcond.data
    import selfcond.trainer
    from selfcond.trainer import TrainOptions, run, saved_iterations

    monkeypatch.setattr(selfcond.data, "STACKED_MNIST_SIZE", 100)
    monkeypatch.setattr(selfcond.trainer, "build_generator", lambda config, name: TinyImageG(4, name))
    monkeypatch.setattr(selfcond.trainer, "build_discriminator", lambda config, name: TinyImageD(4, name))
    strategies, make = [], selfcond.trainer._strategy

    def recording(devices, batch_size):
        strategies.append(make(devices, batch_size))
        return strategies[-1]

    monkeypatch.setattr(selfcond.trainer, "_strategy", recording)
    write_tiny_mnist(tmp_path / "mnist", n=60)
    (tmp_path / "tiny.yaml").write_text(TINY.format(mnist=tmp_path / "mnist", out=tmp_path / "unused"))
    finals = {}
    for name, chosen in (("one", ("0",)), ("two", tuple(devices))):
        config = load_config(tmp_path / "tiny.yaml")
        config["clusterer"]["nimgs"] = 60
        config["training"].update(out_dir=str(tmp_path / name), recluster_every=2)
        finals[name] = run(config, TrainOptions("tiny.yaml", nepochs=1, seed=3, devices=chosen, max_it=3,
                                                show_progress=False))
        assert saved_iterations(tmp_path / name) == [0, 2]
    assert strategies[0] is None and strategies[1].num_replicas_in_sync == 2
    for key in finals["one"]:
        np.testing.assert_allclose(finals["two"][key], finals["one"][key], rtol=1e-4, atol=1e-6, err_msg=key)
    one = _checkpoint_values(tmp_path / "one" / "chkpts" / "model_00000002")
    two = _checkpoint_values(tmp_path / "two" / "chkpts" / "model_00000002")
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5, err_msg=key)


def test_batch_norm_statistics_under_mirrored_strategy():
    """Per-replica batch statistics (unsynchronised, like DataParallel); the running copies are averaged."""
    devices = two_cpus()
    from selfcond.layers import TorchBatchNorm
    from selfcond.training import distribute

    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        bn = TorchBatchNorm()
        bn.build((None, 3))
    x = np.concatenate([np.full((2, 3), 1.0), np.full((2, 3), 5.0)]).astype(np.float32)
    out = strategy.run(tf.function(lambda v: bn(v, training=True)), args=distribute(strategy, x))
    np.testing.assert_allclose(strategy.experimental_local_results(out)[0].numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(bn.moving_mean.numpy(), [0.3, 0.3, 0.3], rtol=1e-5)  # 0.1 * mean(1, 5)


def test_entry_script_usage_error_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "selfcond" / "2d_mix" / "train.py"), "--clusterer", "kmeans",
                           "--data_type", "ring"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: --clusterer: expected one of selfcondgan")
