"""The Self-Conditioned GAN as a real two-process cluster (MultiWorkerMirroredStrategy over gRPC on 127.0.0.1).

One tiny image run (stand-in networks without BatchNorm, generated Stacked-MNIST) is trained three ways: one process
straight to iteration 4; two workers to iteration 2, then resumed by two workers to iteration 4. Reclusterings
happen at the start and after iterations 2 and 4. The non-chief is made to disagree with its own k-means (its labels
and permutation are shifted after every local reclustering), so the run only matches the one-process run if every
worker really adopts the chief's partition.

Tolerance: as tests/test_selfcond_e2e.py's two-device test (rtol 1e-4 of the array's largest magnitude, atol
1e-5): the workers add the two half-batch gradients in another order than one process, float32 rounding that Adam
(epsilon 1e-8) amplifies on small gradients. Integer state (labels of the clustering sample, permutation, counters,
iteration) must be equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.multiworker import run_cluster, run_single
from tests.test_multiworker import assert_same_checkpoint, driver, result_of

DRIVER = """
import json, os, tempfile
tempfile.tempdir = os.path.join(SCRATCH, str(os.getpid()))  # where a non-chief makes its scratch run folder
os.makedirs(tempfile.tempdir)
from common.devices import is_chief, select_gpus
select_gpus("-1", flag="--devices")  # builds the cluster's strategy before other TensorFlow work, as train.py does
import numpy as np
import selfcond.data, selfcond.trainer
from selfcond import clusterers
from selfcond.config import load_config
from selfcond.trainer import TrainOptions, run
from tests.test_selfcond_e2e import TinyImageD, TinyImageG

selfcond.data.STACKED_MNIST_SIZE = 100
selfcond.trainer.build_generator = lambda config, name: TinyImageG(4, name)
selfcond.trainer.build_discriminator = lambda config, name: TinyImageD(4, name)

_recluster = clusterers.SelfCondGAN.recluster
def _disagreeing(self, discriminator, x_batch=None):
    _recluster(self, discriminator, x_batch)
    if not is_chief():  # this worker's own clustering differs from the chief's
        self.mapping.assign(np.roll(self.mapping.numpy(), 1))
        self.x_labels.assign((self.x_labels.numpy() + 1) % self.k)
clusterers.SelfCondGAN.recluster = _disagreeing

partitions = []
_share = selfcond.trainer.share_chief_clustering
def _recording(clusterer, strategy):
    _share(clusterer, strategy)
    partitions.append([clusterer.x_labels.numpy().tolist(), clusterer.mapping.numpy().tolist()])
selfcond.trainer.share_chief_clustering = _recording

last = run(load_config(CONFIG), TrainOptions(CONFIG, nepochs=1, seed=3, max_it=MAX_IT, show_progress=False))
scratch = [n for n in os.listdir(tempfile.tempdir) if n.startswith("worker_")]  # (autograph puts files there too)
print("RESULT", json.dumps({"last": last, "partitions": partitions, "scratch": scratch}))
"""

TIMEOUT = 420  # per launch: TensorFlow start-up, gRPC and tracing on a shared, loaded CPU


def _config(tmp_path: Path, name: str) -> str:
    from tests.test_selfcond import write_tiny_mnist
    from tests.test_selfcond_e2e import TINY

    if not (tmp_path / "mnist").exists():
        write_tiny_mnist(tmp_path / "mnist", n=60)
    text = TINY.format(mnist=tmp_path / "mnist", out=tmp_path / name / "run")
    text = text.replace("nimgs: 120", "nimgs: 60").replace("recluster_every: 3", "recluster_every: 2")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.slow
def test_selfcond_two_workers_equal_one_process_share_the_chief_clustering_and_resume(tmp_path):
    values = dict(SCRATCH=str(tmp_path / "scratch"))
    single = result_of(run_single(driver(DRIVER, CONFIG=_config(tmp_path, "single"), MAX_IT=5, **values),
                                  timeout=TIMEOUT))
    config = _config(tmp_path, "multi")
    first = [result_of(out) for out in run_cluster(driver(DRIVER, CONFIG=config, MAX_IT=3, **values),
                                                   cwd=tmp_path, timeout=TIMEOUT)]
    outputs = run_cluster(driver(DRIVER, CONFIG=config, MAX_IT=5, **values), cwd=tmp_path, timeout=TIMEOUT)
    for out in outputs:  # both workers restored the chief's checkpoint of iteration 2
        assert "Loaded iteration 2; continuing at 3" in out, out[-2000:]
    second = [result_of(out) for out in outputs]

    # one partition on both workers (despite the non-chief's own), the one-process run's, at every reclustering
    assert [len(r["partitions"]) for r in (*first, *second)] == [2, 2, 1, 1]
    for chief, other in (first, second):
        assert other["partitions"] == chief["partitions"]
    assert first[0]["partitions"] + second[0]["partitions"] == single["partitions"]
    assert len(set(single["partitions"][-1][0])) > 1  # a real partition, not one cluster

    run_dir, single_dir = tmp_path / "multi" / "run", tmp_path / "single" / "run"
    for name in ("model_00000002", "model_00000004", "model"):
        assert_same_checkpoint(single_dir / "chkpts" / name, run_dir / "chkpts" / name, rtol=1e-4, atol=1e-5)
    for key, value in single["last"].items():
        np.testing.assert_allclose(second[0]["last"][key], value, rtol=1e-4, atol=1e-6, err_msg=key)
        assert second[1]["last"][key] == second[0]["last"][key]  # the reduced losses are the same on each worker

    # only the chief wrote the run folder; the non-chief's scratch folders are gone
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == ["run"]
    single_files = sorted(str(p.relative_to(single_dir)) for p in single_dir.rglob("*") if p.is_file())
    multi_files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())
    assert [f for f in multi_files if "tfevents" not in f] == [f for f in single_files if "tfevents" not in f]
    assert not (run_dir / "lockfile.pid").exists() and not (run_dir / "done.txt").exists()
    assert not first[0]["scratch"] and not second[0]["scratch"]
    assert [len(r["scratch"]) for r in (first[1], second[1])] == [1, 1]
    assert second[1]["scratch"][0].startswith("worker_run_")
    assert not [q for p in (tmp_path / "scratch").iterdir() for q in p.glob("worker_*")]
    assert tf.train.load_checkpoint(str(run_dir / "chkpts" / "model")).get_tensor(
        "iteration/.ATTRIBUTES/VARIABLE_VALUE") == 4


def test_a_start_refused_by_the_chief_raises_and_releases_the_job_lock(tmp_path):
    """The chief's start-up decisions (job lock, config, checkpoint to resume) are taken before any training and
    sent to the other workers; a refusal is raised after the lock is given back (one process here)."""
    from common.errors import UsageError
    from selfcond.config import load_config
    from selfcond.trainer import TrainOptions, run

    path = _config(tmp_path, "refused")
    with pytest.raises(UsageError, match="--model_it 7: no checkpoint"):
        run(load_config(path), TrainOptions(path, model_it=7, seed=1, show_progress=False))
    run_dir = tmp_path / "refused" / "run"
    assert (run_dir / "config.json").is_file() and not (run_dir / "lockfile.pid").exists()
    assert not (run_dir / "chkpts").exists()  # refused before the first clustering
