"""Cross-replica helpers for train steps that must give one device's numbers on several.

A step written with these helpers draws its random numbers and reads its batch once for the *global* batch (in
the cross-replica context), then runs its forward and backward passes under ``strategy.run``: each replica takes
its equal share of the rows (:func:`shard`), gathers what the objective needs from every row (:func:`gather`,
e.g. contrastive negatives, batch-wide reductions), and all-reduces batch statistics (:func:`moments`) and
gradients (:func:`all_sum`). On one device (the default strategy, or outside ``strategy.run``) every helper is
the identity, so the one-device graph is the plain single-device computation.

Convention for losses: every replica computes the *global* loss L from gathered per-example terms, and
differentiates ``L / R`` (R replicas, :func:`share`). The gather's gradient sums the upstream gradients of every
replica, so each replica's parameter gradient is the part of dL/dtheta that flows through its own rows, and the
all-reduced sum over replicas is dL/dtheta exactly; the gradient with respect to a replica's own inputs (latent
codes) is the full dL/dz of those rows.
"""

from __future__ import annotations

import tensorflow as tf


def replica_context():
    """The replica context when several replicas run this code, else None (one device, or cross-replica)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def num_replicas() -> int:
    """R, the replicas in sync (1 on one device and in the cross-replica context)."""
    context = replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def share() -> float:
    """1 / R: the factor that turns the global loss into this replica's part of the summed gradient."""
    return 1.0 / num_replicas()


def shard(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """This replica's equal share of a global-batch tensor along ``axis`` (replica order = row order).

    Args:
        x: [B, ...] with B divisible by R (``axis`` 0), or any tensor with that axis divisible by R.
    Returns:
        [B / R, ...]: rows r·B/R .. (r+1)·B/R - 1 for replica r.
    """
    context = replica_context()
    if context is None:
        return x
    size = x.shape[axis] // context.num_replicas_in_sync
    return tf.gather(x, tf.range(size) + context.replica_id_in_sync_group * size, axis=axis)


def gather(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """The rows of every replica in replica order: [b, ...] -> [R·b, ...]. Differentiable (see module docstring)."""
    context = replica_context()
    return x if context is None else context.all_gather(x, axis=axis)


def all_sum(values):
    """Sum over replicas of a tensor or a nested structure of tensors (differentiable); identity on one device."""
    context = replica_context()
    return values if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def moments(x: tf.Tensor, axes) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Mean and biased variance over ``axes`` of the global batch, and the element count per channel.

    Two passes as ``tf.nn.moments`` (the variance is taken around the stop-gradient mean), with the per-replica
    sums all-reduced, so the forward values and the gradients equal those of the whole batch on one device.

    Args:
        x: [b, ..., C] on this replica; axes: the reduction axes (every axis but the channel one).
    Returns:
        ``(mean [C], variance [C], count [])`` with count = the global number of reduced elements.
    """
    count = all_sum(tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype))
    mean = all_sum(tf.reduce_sum(x, axes)) / count
    variance = all_sum(tf.reduce_sum(tf.square(x - tf.stop_gradient(mean)), axes)) / count
    return mean, variance, count


def first_local(strategy: tf.distribute.Strategy, value):
    """The first local replica's copy of ``strategy.run``'s result (identical on every replica by construction)."""
    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], value)
