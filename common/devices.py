"""Device selection like the originals' ``--gpu`` flag, and the ``tf.distribute`` strategy seam.

The originals set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``CUDA_VISIBLE_DEVICES=<--gpu>`` before TensorFlow
starts. :func:`select_gpus` does the same and must run before TensorFlow touches a device; entry scripts
call it right after parsing their flags. Values: ``0`` (one GPU), ``0,1`` (several: a
``MirroredStrategy``), ``-1`` (CPU only). A ``TF_CONFIG`` in the environment selects
``MultiWorkerMirroredStrategy`` (built once, in :func:`select_gpus`); :func:`checked_strategy` adds the checks
every trainer makes, :func:`worker_run_dir` / :func:`worker_dir` keep a multi-worker run's outputs on the chief, and
:func:`from_chief` gives every worker the chief's copy of a decision or result.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from common.errors import UsageError

_GPU_LIST = re.compile(r"^\s*-?\d+\s*(,\s*\d+\s*)*$")


def parse_gpu_flag(value: str | int | None, flag: str = "--gpu") -> list[int]:
    """Parse ``--gpu``: ``"0"`` -> [0], ``"0,1"`` -> [0, 1], ``"-1"`` or ``""`` -> [] (CPU).

    Raises:
        UsageError: the value is not a comma-separated list of GPU indices, or mixes -1 with indices.
    """
    if value is None:
        return []
    text = str(value).strip()
    if text in ("", "-1"):
        return []
    if not _GPU_LIST.match(text) or text.startswith("-"):
        raise UsageError(
            f"{flag}: expected GPU indices such as 0 or 0,1 (or -1 for the CPU), got {value!r}"
        )
    ids = [int(part) for part in text.split(",")]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{flag}: GPU index listed twice in {value!r}")
    return ids


def select_gpus(value: str | int | None, flag: str = "--gpu") -> list[int]:
    """Make only the GPUs named by ``--gpu`` visible, with memory growth; return the parsed indices.

    Must run before TensorFlow initialises its devices (it sets ``CUDA_VISIBLE_DEVICES`` like the
    originals). If TensorFlow is already initialised, the visible devices are set through ``tf.config``
    when still possible. A machine without GPUs runs on the CPU with a note on stderr.
    """
    ids = parse_gpu_flag(value, flag)
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, ids)) if ids else "-1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # devices already initialised: growth can no longer change
    if ids and not gpus:
        print(f"note: {flag} {value} asked for GPU(s) but none is visible; running on the CPU", file=sys.stderr)
    _cluster_strategy()  # a TF_CONFIG cluster: build it now, before the trainer runs its first op
    return ids


_CLUSTER: list = []  # the one MultiWorkerMirroredStrategy of this process, once built


def names_a_cluster() -> bool:
    """True when the ``TF_CONFIG`` environment variable names two or more tasks (a multi-worker run)."""
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        return False
    try:
        cluster = json.loads(tf_config).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as err:
        raise UsageError(f"TF_CONFIG: expected JSON with a 'cluster' entry ({err})") from err
    return sum(len(v) for v in cluster.values()) > 1


def _cluster_strategy():
    """The process's ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several tasks, else None.

    Built once and cached: TensorFlow configures the collective ops at construction and refuses
    ("Collective ops must be configured at program startup") once any op has run, so entry scripts build it
    in :func:`select_gpus`, before seeding or data pipelines touch TensorFlow.
    """
    if _CLUSTER:
        return _CLUSTER[0]
    if not names_a_cluster():
        return None
    import tensorflow as tf

    _CLUSTER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _CLUSTER[0]


def make_strategy(num_gpus: int | None = None, devices: list[str] | None = None):
    """The distribution strategy for a run.

    Args:
        num_gpus: how many GPUs ``--gpu`` selected; more than one that are visible builds a
            ``MirroredStrategy`` over them.
        devices: explicit device names (e.g. ``["/cpu:0", "/cpu:1"]`` in tests) for a
            ``MirroredStrategy``; overrides ``num_gpus``.

    Returns:
        ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names a cluster, a ``MirroredStrategy`` for
        several devices, otherwise the default (single-device) strategy.
    """
    import tensorflow as tf

    cluster = _cluster_strategy()
    if cluster is not None:
        return cluster
    if devices:
        return tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.OneDeviceStrategy(
            devices[0]
        )
    visible = tf.config.list_logical_devices("GPU")
    if num_gpus and num_gpus > 1 and len(visible) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in visible[:num_gpus]])
    return tf.distribute.get_strategy()


def is_multi_worker(strategy) -> bool:
    """True for a ``MultiWorkerMirroredStrategy`` (several processes, one per ``TF_CONFIG`` task)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def checked_strategy(*, batch_size: int, gpu: str | int | None = None, devices: list[str] | None = None,
                     jit_compile: bool = False, seed: int | None = 0, batch_flag: str = "--batch_size",
                     gpu_flag: str = "--gpu", jit_flag: str = "--jit_compile", seed_flag: str = "--seed"):
    """:func:`make_strategy` for ``--gpu`` / ``devices``, checked against the run's flags.

    Args:
        batch_size: the GLOBAL batch (split evenly over the replicas of every worker).
        gpu: the ``--gpu`` value; devices: explicit device names (tests), overriding it.
        jit_compile: XLA is only supported on one replica.
        seed: the run's seed; ``None`` (a trainer whose seed is optional and was not given) is refused for a
            multi-worker run, since every worker must draw the same batches and random numbers.
        *_flag: the trainer's own flag names, used in the error lines.
    Raises:
        UsageError: uneven batch split, XLA on several replicas, or multi-worker without a seed.
    """
    strategy = make_strategy(num_gpus=len(parse_gpu_flag(gpu, gpu_flag)), devices=devices)
    count = strategy.num_replicas_in_sync
    if batch_size % count:
        raise UsageError(f"{batch_flag}: {batch_size} must be divisible by the {count} replicas of {gpu_flag}")
    if count > 1 and jit_compile:
        raise UsageError(f"{jit_flag}: works on one device only; drop it or give one {gpu_flag}")
    if is_multi_worker(strategy) and seed is None:
        raise UsageError(f"{seed_flag}: multi-worker training (TF_CONFIG) needs a seed, so that every worker draws "
                         "the same batches and random numbers")
    return strategy


def is_chief() -> bool:
    """False on the non-chief workers of a multi-worker cluster (they train in lockstep but write nothing).

    The chief is the ``chief`` task, or worker 0 when the cluster has no ``chief`` entry (TensorFlow's rule).
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UsageError(f"TF_CONFIG: expected JSON with 'cluster' and 'task' entries ({err})") from err
    task, cluster = parsed.get("task", {}), parsed.get("cluster", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


#: Files a non-chief worker copies from the chief's run folder to resume: the run's config and the state file
#: of TensorFlow's CheckpointManager (it names the newest checkpoint by a path relative to the folder).
_RESUME_FILES = ("config.json", "config.yaml", "checkpoint")


@contextmanager
def worker_run_dir(run_dir: str | Path):
    """The folder this process writes its run into: ``run_dir`` on the chief, a private temporary folder on a
    non-chief worker (removed on exit).

    Why every worker still writes: saving a ``tf.train.Checkpoint`` of distributed variables can run
    collective ops (reading a sync-on-read variable all-reduces it), so every worker of a
    ``MultiWorkerMirroredStrategy`` must call save in lockstep -- TensorFlow's documented pattern sends the
    non-chief copies to a scratch folder that is deleted afterwards. The same redirection keeps the config,
    TensorBoard events, images and metrics of a non-chief out of the run folder.

    To resume, a non-chief seeds its scratch folder with the chief's config and newest checkpoint, so it
    restores the same state as the chief (the run folder must be readable by every worker: a shared file
    system, or the same machine).
    """
    run_dir = Path(run_dir)
    if is_chief():
        yield run_dir
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"worker_{run_dir.name}_"))
    try:
        _copy_resume_state(run_dir, scratch)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def worker_dir(run_dir: str | Path) -> Path:
    """:func:`worker_run_dir` for code that cannot wrap its run in a ``with`` block: ``run_dir`` on the chief; on
    a non-chief worker a scratch folder seeded the same way, removed when the process exits."""
    run_dir = Path(run_dir)
    if is_chief():
        return run_dir
    scratch = Path(tempfile.mkdtemp(prefix=f"worker_{run_dir.name}_"))
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    _copy_resume_state(run_dir, scratch)
    return scratch


def _copy_resume_state(run_dir: Path, scratch: Path) -> None:
    state = run_dir / "checkpoint"
    if not state.is_file():
        return  # a fresh run: nothing to resume from
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(run_dir))
    names = [n for n in _RESUME_FILES if (run_dir / n).is_file()]
    if latest:
        names += [p.name for p in run_dir.glob(Path(latest).name + ".*")]
    for name in names:
        shutil.copy2(run_dir / name, scratch / name)


def from_chief(strategy, values):
    """The chief's copy of each value, on every worker of a multi-worker run (the values themselves otherwise).

    For decisions only one process may take (the chief reads and writes the run folder) and for results a worker
    must not compute on its own (e.g. a clustering that every worker must share). One collective: every value is
    packed into a float64 vector, the chief's first replica contributes it and every other replica zeros to a SUM
    all-reduce, so every worker receives the chief's numbers bit for bit (x + 0 = x; float32 values and integers
    below 2**53 survive the float64 round trip). A contributor count travels along and must come back as 1.

    Args:
        strategy: the run's strategy (None or a one-process strategy: nothing is exchanged).
        values: arrays of any shapes (float, int, bool); every worker passes the same shapes (a non-chief's
            numbers are ignored).
    Returns:
        numpy arrays of the given shapes and dtypes holding the chief's numbers.
    """
    import numpy as np

    arrays = [np.asarray(v) for v in values]
    if strategy is None or not is_multi_worker(strategy):
        return arrays
    import tensorflow as tf

    for a in arrays:
        if a.dtype.kind in "iu" and a.size and int(np.abs(a).max()) >= 2**53:
            raise ValueError("from_chief: integers of 2**53 or more do not survive the float64 transport")
    packed = np.concatenate([[1.0], *(a.astype(np.float64).ravel() for a in arrays)])
    chief, calls = is_chief(), []

    def contribution(context):  # called once per local replica; only the chief's first one contributes
        calls.append(context.replica_id_in_sync_group)
        return tf.constant(packed if chief and len(calls) == 1 else np.zeros_like(packed))

    total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.experimental_distribute_values_from_function(
        contribution), axis=None).numpy()
    if total[0] != 1.0:
        raise RuntimeError(f"from_chief: {total[0]:g} replicas contributed instead of the chief's first one alone")
    out, offset = [], 1
    for a in arrays:
        out.append(total[offset:offset + a.size].reshape(a.shape).astype(a.dtype))
        offset += a.size
    return out
