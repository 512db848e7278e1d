"""LatentCLR on several devices: the strategy of a run, and the collectives that keep the loss global.

Data parallelism over the latent batch: every replica gets the same [B, S] latents and step sizes (drawn
on the host from NumPy's RNG, as on one device) and keeps its own B / R rows. It computes the edited
features of those rows for all K directions, then the divergences of all replicas are gathered, so every
replica sees the full [K*B, F] matrix in the one-device row order (direction-major, samples in batch order)
and the contrastive loss has all K*B - N negatives. Each replica differentiates loss / R: the gather's
gradient sums the replicas' upstream gradients and hands every replica the slice of its own rows, so the
per-replica parameter gradients add up (all-reduce SUM) to the one-device gradient. BatchNorm layers of the
direction nets and projector heads take their batch moments over all replicas
(:class:`latentclr.models.StackedBatchNorm`), so the step equals the one-device step up to float rounding.

Devices: the config key ``devices`` (a list of TensorFlow device names, e.g. ``["/gpu:0", "/gpu:1"]``, or
``["/cpu:0", "/cpu:1"]`` for tests), else ``device=cuda:0,1`` (several GPU indices); a ``TF_CONFIG`` naming a
cluster selects ``MultiWorkerMirroredStrategy`` (``common.devices.make_strategy``).
"""

from __future__ import annotations

import tensorflow as tf

from common.devices import is_chief as is_chief  # re-exported: the trainer asks distribute.is_chief()
from common.devices import make_strategy, parse_gpu_flag
from common.devices import worker_dir as worker_dir  # re-exported: the trainer asks distribute.worker_dir()
from common.errors import UsageError


def strategy_for(cfg) -> tf.distribute.Strategy:
    """The strategy of ``cfg``: ``devices`` list, else the GPU indices of ``device`` (``cuda:0,1``)."""
    devices = cfg.get("devices")
    if devices is not None:
        if isinstance(devices, str) or not all(isinstance(d, str) for d in devices) or not devices:
            raise UsageError(f"devices must be a non-empty list of device names such as ['/gpu:0','/gpu:1'], "
                             f"got {devices!r}")
        return make_strategy(devices=list(devices))
    device = str(cfg.get("device", "cpu") or "cpu")
    gpus = parse_gpu_flag(device.partition(":")[2] or "0", flag="device") if device.startswith("cuda") else []
    return make_strategy(num_gpus=len(gpus))


def replicas() -> tuple[tf.distribute.ReplicaContext | None, int]:
    """The current replica context and the number of replicas in sync (1 outside a multi-device run)."""
    ctx = tf.distribute.get_replica_context()
    return ctx, (ctx.num_replicas_in_sync if ctx is not None else 1)


def local_rows(x: tf.Tensor, ctx, n_replicas: int) -> tf.Tensor:
    """This replica's contiguous block of B / R rows of x [B, ...] (replica r gets rows r*B/R ..)."""
    per = x.shape[0] // n_replicas
    start = ctx.replica_id_in_sync_group * per
    return x[start:start + per]


def gather_direction_major(features: tf.Tensor, k: int, ctx, n_replicas: int) -> tf.Tensor:
    """[K*b, F] per replica (direction-major over its b local samples) -> [K*R*b, F] on every replica, in the
    one-device order: row k*B + r*b + i is sample r*b + i of direction k."""
    gathered = ctx.all_gather(features, axis=0)  # [R*K*b, F], replica-major
    b = features.shape[0] // k
    blocks = tf.reshape(gathered, (n_replicas, k, b, -1))
    return tf.reshape(tf.transpose(blocks, (1, 0, 2, 3)), (k * n_replicas * b, -1))


def sum_gradients(grads: list, ctx, n_replicas: int) -> list:
    """All-reduce SUM of the per-replica gradients (a list of tensors)."""
    if n_replicas == 1 or not grads:
        return list(grads)
    return list(ctx.all_reduce(tf.distribute.ReduceOp.SUM, list(grads)))


def check_batch(batch_size: int, strategy: tf.distribute.Strategy, flag: str = "hparams.batch_size") -> None:
    n = strategy.num_replicas_in_sync
    if batch_size % n:
        raise UsageError(f"{flag}={batch_size} must be divisible by the number of replicas ({n})")
