"""Real multi-worker runs: two processes on 127.0.0.1 with their own TF_CONFIG (MultiWorkerMirroredStrategy over
gRPC), each training the same tiny run; plus the chief / scratch-folder helpers of common.devices.

What the cluster tests check: both workers exit 0; only the chief's run folder exists and holds the
checkpoints (the non-chief trained into a scratch folder it removed); the chief's final checkpoint equals that
of a one-process run with the same global batch; a second launch with more iterations resumes on both workers.

Tolerance: the one-process and the two-worker step add the same per-example gradients in another order (two
half-batch sums all-reduced over gRPC instead of one sum), so values differ by float32 rounding: measured at
most 1.2e-7 absolute on values of magnitude ~1 (one ulp) after 4 SLOGAN iterations. The comparison allows
1e-6 + 1e-5 x the array's largest magnitude. SLOGAN's Adam epsilon is raised to 1e-2 on both sides, as in
tests/test_slogan_synthetic_distribute.py: with beta1 = 0 and epsilon = 1e-8 a rounding-level gradient (the
biases in front of BatchNorm, true gradient 0) becomes a step of up to +-lr, which no tolerance can follow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from common.devices import is_chief, worker_run_dir
from common.errors import UsageError
from tests.multiworker import run_cluster, run_single

SLOGAN_DRIVER = """
import json, sys
import slogan_synthetic
from common.slogan import synthetic_run

_init = synthetic_run.SyntheticState.__init__
def _comparison_epsilon(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    for optimizer in (self.opt_g, self.opt_d, self.opt_e):
        optimizer.epsilon = 1e-2
synthetic_run.SyntheticState.__init__ = _comparison_epsilon
result = slogan_synthetic.main(["--gpu", "-1", "--log_dir", LOG_DIR, "--run_name", "run", "--no_progress",
    "--num_cluster", "3", "--latent_dim", "8", "--batch_size", "16", "--iterations", "6",
    "--log_freq", "1000", "--checkpoint_every", "2", *STOP], eval_size=200, shuffle_buffer=1000)
print("RESULT", json.dumps(result))
"""


def driver(template: str, **values) -> str:
    return "".join(f"{k} = {v!r}\n" for k, v in values.items()) + template


def checkpoint_values(prefix: Path) -> dict:
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: np.asarray(reader.get_tensor(k)) for k in reader.get_variable_to_shape_map()}


def assert_same_checkpoint(a: Path, b: Path, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Integer values equal, float arrays within ``atol + rtol x`` the largest magnitude of the array."""
    values_a, values_b = checkpoint_values(a), checkpoint_values(b)
    assert values_a.keys() == values_b.keys()
    for key, value in values_a.items():
        if value.dtype.kind != "f":
            np.testing.assert_array_equal(values_b[key], value, err_msg=key)
            continue
        scale = float(np.abs(value).max()) if value.size else 0.0
        np.testing.assert_allclose(values_b[key], value, rtol=0, atol=atol + rtol * scale, err_msg=key)


def result_of(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, output[-2000:]
    return json.loads(lines[-1][len("RESULT "):])


def set_tf_config(monkeypatch, kind: str, index: int, chief: bool = False) -> None:
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"], **({"chief": ["127.0.0.1:3"]} if chief else {})}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))


def test_is_chief_follows_tensorflow_rule(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert is_chief()
    set_tf_config(monkeypatch, "worker", 0)
    assert is_chief()
    set_tf_config(monkeypatch, "worker", 1)
    assert not is_chief()
    set_tf_config(monkeypatch, "worker", 0, chief=True)  # an explicit chief task: worker 0 is an ordinary worker
    assert not is_chief()
    set_tf_config(monkeypatch, "chief", 0, chief=True)
    assert is_chief()


def test_non_chief_writes_into_a_removed_scratch_folder_seeded_with_the_newest_checkpoint(monkeypatch, tmp_path):
    run_dir = tmp_path / "run"
    checkpoint = tf.train.Checkpoint(v=tf.Variable(3.0))
    manager = tf.train.CheckpointManager(checkpoint, str(run_dir), max_to_keep=2, checkpoint_name="model")
    manager.save(checkpoint_number=1)
    checkpoint.v.assign(5.0)
    manager.save(checkpoint_number=2)
    (run_dir / "config.json").write_text("{}")
    set_tf_config(monkeypatch, "worker", 0)
    with worker_run_dir(run_dir) as target:
        assert target == run_dir
    set_tf_config(monkeypatch, "worker", 1)
    with worker_run_dir(run_dir) as target:
        assert target != run_dir and not str(target).startswith(str(run_dir))
        assert sorted(p.name for p in target.iterdir() if not p.name.startswith("model-2")) == ["checkpoint",
                                                                                            "config.json"]
        restored = tf.train.Checkpoint(v=tf.Variable(0.0))
        restored.restore(tf.train.latest_checkpoint(str(target))).assert_consumed()
        assert float(restored.v.numpy()) == 5.0
        (target / "events.out").write_text("x")
    assert not target.exists()
    kept = ["checkpoint", "config.json", *(p.name for p in run_dir.glob("model-*"))]
    assert sorted(os.listdir(run_dir)) == sorted(kept)


STOP_AT_4 = ["--stop_after", "4"]  # SLOGAN's schedule depends on --iterations: a run is extended by stopping early


@pytest.mark.slow
def test_slogan_synthetic_two_workers_equal_one_process_and_resume(tmp_path):
    single = result_of(run_single(driver(SLOGAN_DRIVER, LOG_DIR=f"{tmp_path}/single/", STOP=STOP_AT_4)))
    log_dir = f"{tmp_path}/multi/"
    outputs = run_cluster(driver(SLOGAN_DRIVER, LOG_DIR=log_dir, STOP=STOP_AT_4), cwd=tmp_path)
    chief, other = (result_of(out) for out in outputs)
    run_dir = tmp_path / "multi" / "run"
    assert chief["run_dir"] == str(run_dir) and other["run_dir"] != str(run_dir)
    assert not Path(other["run_dir"]).exists()  # the non-chief removed its scratch folder
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["run"]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-4")
    assert (run_dir / "config.json").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    assert_same_checkpoint(Path(single["run_dir"]) / "model-4", run_dir / "model-4")
    assert chief["pi"] == pytest.approx(single["pi"], abs=1e-6) and other["pi"] == pytest.approx(chief["pi"])

    outputs = run_cluster(driver(SLOGAN_DRIVER, LOG_DIR=log_dir, STOP=[]), cwd=tmp_path)
    for out in outputs:  # both workers restored the chief's newest checkpoint
        assert "model-4 (iteration 4 of 6)" in out, out[-2000:]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-6")
    assert result_of(outputs[0])["step"] == 6


GLO_DRIVER = """
from glo import train

_make_optimizer = train.make_optimizer
def _comparison_epsilon(cfg):
    optimizer = _make_optimizer(cfg)
    optimizer.epsilon = 1e-2
    return optimizer
train.make_optimizer = _comparison_epsilon
from glo import trainer
trainer.main(["--gpu", "-1", "--dataset", DATASET, "--run_name", "run", "--seed", "0", "--no_progress",
              "--batch_size", "8", "--max_steps", str(STEPS), "--output_save_step", "1", "--summary_step", "1"])
print("RESULT", "{}")
"""


@pytest.mark.slow
def test_glo_two_workers_equal_one_process_and_resume(tmp_path):
    from glo.testing import make_dataset

    runs = {}
    for name in ("single", "multi"):  # training rewrites the codes in the dataset file: one copy per side
        (tmp_path / name).mkdir()
        runs[name] = str(make_dataset(tmp_path / name / "data", n=32, dim=10))
    run_single(driver(GLO_DRIVER, DATASET=runs["single"], STEPS=3), cwd=tmp_path / "single")
    outputs = run_cluster(driver(GLO_DRIVER, DATASET=runs["multi"], STEPS=3), cwd=tmp_path / "multi")
    for out in outputs:
        result_of(out)
    [single_dir] = (tmp_path / "single" / "train_dir").iterdir()
    [run_dir] = (tmp_path / "multi" / "train_dir").iterdir()  # the non-chief wrote no run folder
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-3")
    assert (run_dir / "config.json").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    assert_same_checkpoint(single_dir / "model-3", run_dir / "model-3")

    outputs = run_cluster(driver(GLO_DRIVER, DATASET=runs["multi"], STEPS=5), cwd=tmp_path / "multi")
    for out in outputs:  # both workers restored the chief's newest checkpoint
        assert "model-3 at iteration" in out, out[-2000:]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-5")


def test_names_a_cluster_and_the_self_conditioned_gan_refuses_a_malformed_one(monkeypatch, tmp_path, capsys):
    """The Self-Conditioned GAN trains on a cluster (tests/test_selfcond_multiworker.py); a TF_CONFIG that is not
    JSON stops its entry script with one line and exit status 2 before anything is written."""
    from common.devices import names_a_cluster
    from selfcond import train

    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert not names_a_cluster()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"index": 0}}))
    assert not names_a_cluster()  # one task is no cluster
    cluster = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert names_a_cluster()
    monkeypatch.setenv("TF_CONFIG", "not json")
    with pytest.raises(UsageError, match="TF_CONFIG: expected JSON"):
        names_a_cluster()
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "TF_CPP_MIN_LOG_LEVEL"):  # select_gpus sets them
        monkeypatch.setenv(name, os.environ.get(name, ""))
    with pytest.raises(SystemExit) as exit_info:
        train.main([str(tmp_path / "config.yaml"), "--outdir", str(tmp_path / "out"), "--devices", "-1"])
    assert exit_info.value.code == 2
    assert "TF_CONFIG: expected JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


# Preamble of the drivers below: each process makes its temporary folders (a non-chief's scratch run folder) in a
# folder of its own under SCRATCH, and reports which scratch run folders existed at its end (scratch_folders()).
SCRATCH_PREAMBLE = """
import json, os, tempfile
tempfile.tempdir = os.path.join(SCRATCH, str(os.getpid()))
os.makedirs(tempfile.tempdir)
def scratch_folders():
    return [name for name in os.listdir(tempfile.tempdir) if name.startswith("worker_")]
"""

LATENTCLR_DRIVER = SCRATCH_PREAMBLE + """
import logging, signal
logging.basicConfig(level=logging.INFO)  # the trainer's log lines on stderr too (the test reads them)
from common.devices import select_gpus
select_gpus("-1")  # builds the cluster's strategy before any other TensorFlow work, as latentclr/cli.py does
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from latentclr import trainer
with initialize_config_dir(config_dir=CONF, version_base=None):
    cfg = OmegaConf.to_container(compose("train", overrides=OVERRIDES), resolve=True)
if STOP_IN_FIRST_EPOCH:
    _validate = trainer._validate
    def _interrupting(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C on every worker during epoch 0's validation
        return _validate(*args, **kwargs)
    trainer._validate = _interrupting
try:
    result = trainer.run(cfg, RUN_DIR)
except SystemExit as stop:
    result = {"exit": stop.code}
print("RESULT", json.dumps({**result, "scratch": scratch_folders()}))
"""


@pytest.mark.slow
def test_latentclr_two_workers_equal_one_process_and_resume(tmp_path):
    """An uninterrupted one-process run against a two-worker run stopped by a signal after epoch 0 (iteration 2)
    and resumed to iteration 4: both workers must restore the chief's checkpoint (the non-chief from its scratch
    copy) or the collectives of the two processes no longer pair up. SGD, as tests/test_latentclr_distribute.py:
    Adam would scale the rounding-level gradients of the biases in front of BatchNorm up to lr-sized steps."""
    import keras

    from latentclr.testing import save_model, toy_generator

    keras.utils.set_random_seed(0)
    toy = save_model(toy_generator(latent_dim=8, size=8, channels=4), tmp_path / "toy.keras")
    # alpha = 3: with the default 0.1 an edit changes the features so little that the divergence (a difference of
    # nearly equal features) magnifies the rounding of the half-batch generator passes to 3e-5 after 4 steps
    overrides = ["generator=keras", f"generator.model_path={toy}", "generator.feature_layer=conv8", "k=2",
                 "+hparams/optimizer=sgd", "hparams.optimizer.lr=0.01", "model=linear", "model.alpha=3.0",
                 "projector=linear", "projector.out_features=8", "hparams.batch_size=8", "hparams.iterations=4",
                 "eval_freq=2", "eval_iters=1", "tb_image_dirs=0", "jit_compile=false", "device=cpu", "seed=0"]
    values = dict(CONF=str(Path(__file__).resolve().parents[1] / "latentclr" / "conf"), OVERRIDES=overrides,
                  SCRATCH=str(tmp_path / "scratch"))
    single = result_of(run_single(driver(LATENTCLR_DRIVER, RUN_DIR=str(tmp_path / "single"),
                                         STOP_IN_FIRST_EPOCH=False, **values)))
    run_dir = tmp_path / "multi" / "run"
    stopped = [result_of(out) for out in run_cluster(driver(LATENTCLR_DRIVER, RUN_DIR=str(run_dir),
                                                            STOP_IN_FIRST_EPOCH=True, **values), cwd=tmp_path)]
    assert [r["exit"] for r in stopped] == [130, 130]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "most_recent-2")
    outputs = run_cluster(driver(LATENTCLR_DRIVER, RUN_DIR=str(run_dir), STOP_IN_FIRST_EPOCH=False, **values),
                          cwd=tmp_path)
    for out in outputs:  # both workers continued from the chief's checkpoint
        assert "resuming from iteration 2" in out, out[-2000:]
    chief, other = (result_of(out) for out in outputs)
    # only the non-chief made a scratch folder, and it was removed when that process ended
    assert not stopped[0]["scratch"] and not chief["scratch"]
    assert [len(r["scratch"]) for r in (stopped[1], other)] == [1, 1] and other["scratch"][0].startswith("worker_run_")
    assert not [p for p in (tmp_path / "scratch").glob("*/worker_*")]
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["run"]
    assert (run_dir / "train.log").read_text().count("Beginning training") == 2  # the chief's two launches only
    assert (run_dir / "config.json").is_file() and list(run_dir.glob("events.out.tfevents.*"))
    for name in ("most_recent-4", "final_model.ckpt/ckpt", "best_model.ckpt/ckpt"):
        assert_same_checkpoint(tmp_path / "single" / name, run_dir / name)
    for key in ("Loss/train", "Loss/val", "Acc/val"):
        assert chief[key] == pytest.approx(single[key], abs=1e-6) and other[key] == pytest.approx(chief[key])


CONGAN_DRIVER = SCRATCH_PREAMBLE + """
import numpy as np
import tensorflow as tf
from common.devices import select_gpus
if TWO_CPUS:  # the one-process reference: two replicas on two logical CPUs, the cluster's split of each batch
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    DEVICES = [d.name for d in tf.config.list_logical_devices("CPU")]
else:
    select_gpus("-1")  # builds the cluster's strategy before any other TensorFlow work, as congan/train.py does
    DEVICES = None
from congan import framework2
from congan.config import resolve, tiny_framework2
from congan.optim import TorchAdam
from congan.trainer import run_framework2

_make_optimizers = framework2.make_optimizers
def _smooth_adam(cfg, nets):  # eps = 1, as tests/test_congan_distribute.py (its docstring says why)
    return {k: TorchAdam(o.variables_, float(o.learning_rate.numpy()), (o.beta1, o.beta2), eps=1.0, name=o.name)
            for k, o in _make_optimizers(cfg, nets).items()}
framework2.make_optimizers = _smooth_adam
cfg = resolve(tiny_framework2(batch_size=8, epochs=2, run_dir=RUN_DIR), check_paths=False)
images = np.random.RandomState(0).randint(0, 256, (24, 32, 32, 3)).astype(np.uint8)
run_dir = run_framework2(cfg, images=images, show_progress=False, stop_after=STOP_AFTER, devices=DEVICES)
print("RESULT", json.dumps({"run_dir": str(run_dir), "scratch": scratch_folders()}))
"""


@pytest.mark.slow
def test_congan_framework2_two_workers_equal_one_process_and_resume(tmp_path):
    """Framework 2 at the spec's tiny size, 24 images in batches of 8: one iteration (a G and a D step) per epoch.
    A one-process run of 2 epochs against a two-worker run stopped after epoch 0 and resumed (both workers must
    restore the chief's checkpoint, the non-chief from its scratch copy, or their collectives no longer pair up)."""
    values = dict(SCRATCH=str(tmp_path / "scratch"))
    single = result_of(run_single(driver(CONGAN_DRIVER, RUN_DIR=str(tmp_path / "single"), STOP_AFTER=None,
                                         TWO_CPUS=True, **values)))
    run_dir = tmp_path / "multi" / "run"
    values.update(TWO_CPUS=False)
    first = [result_of(out) for out in run_cluster(driver(CONGAN_DRIVER, RUN_DIR=str(run_dir), STOP_AFTER=1,
                                                          **values), cwd=tmp_path)]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-1")
    second = [result_of(out) for out in run_cluster(driver(CONGAN_DRIVER, RUN_DIR=str(run_dir), STOP_AFTER=None,
                                                           **values), cwd=tmp_path)]
    for chief, other in (first, second):
        assert chief["run_dir"] == str(run_dir) and not chief["scratch"]
        assert other["run_dir"] != str(run_dir) and [Path(other["run_dir"]).name] == other["scratch"]
        assert not Path(other["run_dir"]).exists()  # removed when the non-chief ended
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["run"]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-2")
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2  # one line per epoch, the chief's only
    assert (run_dir / "results" / "model.weights.h5").is_file()
    # The reference splits every batch as the cluster does (two replicas of 4), so the same sums are formed and only
    # the collective's reduction order can differ: the runs agree to float rounding, optimizer moments included
    # (one device against two replicas is tests/test_congan_distribute.py; there an Adam moment of a weight whose
    # gradient is rounding noise differs by a large fraction of its tiny self, measured).
    assert_same_checkpoint(Path(single["run_dir"]) / "model-2", run_dir / "model-2")


CIFAR2_DRIVER = """
import json
import tensorflow as tf
from common.devices import select_gpus
if TWO_CPUS:  # the one-process reference: two replicas on two logical CPUs, the cluster's split of each batch
    _cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(_cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    STRATEGY = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
else:
    select_gpus("-1")  # builds the cluster's strategy before any other TensorFlow work, as slogan_cifar2.py does
    STRATEGY = None
from common.slogan.cifar2 import run
from tests.test_slogan_cifar2 import STUB, fake_cifar, tiny_config
cfg = tiny_config(log_dir=LOG_DIR, run_name="run", save_freq=1, log_freq=1, val_freq=2)
result = run(cfg, load_cifar10=fake_cifar, extractors=STUB, strategy=STRATEGY, show_progress=False)
print("RESULT", json.dumps({"run_dir": result["run_dir"], "best_idx": result["final"]["best_idx"]}))
"""


@pytest.mark.slow
def test_slogan_cifar2_two_workers_equal_one_process_and_resume(tmp_path):
    """The CIFAR-2 smoke configuration of tests/test_slogan_cifar2.py (ResNets at 8 channels, batch 4, 2 iterations,
    a checkpoint after each, validation and the final evaluation with stub features) on two workers against one
    process with two replicas; then the cluster resumes from model-1 and reproduces model-2."""
    single = result_of(run_single(driver(CIFAR2_DRIVER, LOG_DIR=f"{tmp_path}/single/", TWO_CPUS=True)))
    log_dir = f"{tmp_path}/multi/"
    chief, other = (result_of(out) for out in run_cluster(driver(CIFAR2_DRIVER, LOG_DIR=log_dir, TWO_CPUS=False),
                                                          cwd=tmp_path))
    run_dir = Path(chief["run_dir"])
    assert run_dir == tmp_path / "multi" / "3" / "run" and Path(other["run_dir"]) != run_dir
    assert not Path(other["run_dir"]).exists()  # the non-chief removed its scratch folder
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["3"]
    assert tf.train.latest_checkpoint(str(run_dir)) == str(run_dir / "model-2")
    assert chief["best_idx"] == other["best_idx"] == single["best_idx"]
    assert_same_checkpoint(Path(single["run_dir"]) / "model-2", run_dir / "model-2")

    straight = checkpoint_values(run_dir / "model-2")
    for path in run_dir.glob("model-2.*"):  # as if the run had crashed after saving model-1
        path.unlink()
    (run_dir / "checkpoint").write_text('model_checkpoint_path: "model-1"\nall_model_checkpoint_paths: "model-1"\n')
    outputs = run_cluster(driver(CIFAR2_DRIVER, LOG_DIR=log_dir, TWO_CPUS=False), cwd=tmp_path)
    for out in outputs:  # both workers restored the chief's model-1
        assert "resuming after iteration 1" in out, out[-2000:]
    resumed = checkpoint_values(run_dir / "model-2")
    assert resumed.keys() == straight.keys()
    for key, value in straight.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
