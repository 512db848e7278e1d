"""Device selection like the originals' ``--gpu`` flag, and the ``tf.distribute`` strategy seam.

The originals set ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and ``CUDA_VISIBLE_DEVICES=<--gpu>`` before TensorFlow
starts. :func:`select_gpus` does the same and must run before TensorFlow touches a device; entry scripts
call it right after parsing their flags. Values: ``0`` (one GPU), ``0,1`` (several: a
``MirroredStrategy``), ``-1`` (CPU only). A ``TF_CONFIG`` in the environment selects
``MultiWorkerMirroredStrategy``.
"""

from __future__ import annotations

import json
import os
import re
import sys

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
    return ids


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

    tf_config = os.environ.get("TF_CONFIG")
    if tf_config:
        try:
            cluster = json.loads(tf_config).get("cluster", {})
        except json.JSONDecodeError as err:
            raise UsageError(f"TF_CONFIG: expected JSON with a 'cluster' entry ({err})") from err
        if sum(len(v) for v in cluster.values()) > 1:
            return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        return tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.OneDeviceStrategy(
            devices[0]
        )
    visible = tf.config.list_logical_devices("GPU")
    if num_gpus and num_gpus > 1 and len(visible) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in visible[:num_gpus]])
    return tf.distribute.get_strategy()
