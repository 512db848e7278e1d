"""Several devices for the ConGAN train steps: the strategy of ``--gpu`` / ``TF_CONFIG``, and per-step random draws
that give every replica its rows of what one device would draw.

How a step runs on R replicas (the single-device run is the case R = 1 of the same code):
- the step function (a ``tf.function``) draws one [2, count] seed tensor from the run's ``tf.random.Generator`` in
  the cross-replica context and calls ``strategy.run`` with the GLOBAL uint8 batches;
- each replica takes its equal share of the rows (:func:`common.replicas.shard`), and draws its random numbers
  through a :class:`StepNoise` built from the seeds;
- BatchNorm statistics are all-reduced over the replicas (:class:`congan.layers.BatchNorm`), i.e. computed on the
  global batch exactly as the notebooks' single GPU did;
- every loss is a mean over the replica's rows; the replica differentiates loss / R (:func:`common.replicas.share`,
  the ``tf.nn.compute_average_loss`` scaling for equal shares) and the gradients are summed over replicas
  (:func:`common.replicas.all_sum`), so each replica applies the gradient of the global-batch mean;
- reported scalars are averaged over replicas with ``strategy.reduce(MEAN)`` (equal shares: the global mean).
"""

from __future__ import annotations

import tensorflow as tf

from common import replicas


def make_run_strategy(cfg, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy of a run, built and checked by :func:`common.devices.checked_strategy`.

    Args:
        cfg: a config with ``gpu``, ``batch_size``, ``jit_compile`` and ``seed``.
        devices: explicit device names (tests: ``["/cpu:0", "/cpu:1"]``); default: the GPUs of ``--gpu``.
    Raises:
        UsageError: the batch does not split evenly, XLA with several replicas, or multi-worker without a seed.
    """
    from common.devices import checked_strategy

    return checked_strategy(batch_size=cfg.batch_size, gpu=cfg.gpu, devices=devices, jit_compile=cfg.jit_compile,
                            seed=cfg.seed)


def reduce_mean(strategy: tf.distribute.Strategy, outputs: dict) -> dict:
    """Average a dict of per-replica scalars over the replicas (the identity on one device)."""
    return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in outputs.items()}


class StepNoise:
    """The random numbers of one train step, drawn so that R replicas together get exactly one device's draws.

    Built inside the replica function from ``seeds`` [2, count] (``rng.make_seeds(count)`` in the cross-replica
    context). Every call takes the next seed, draws the GLOBAL shape (R times the local batch) with the stateless
    Philox generator and keeps this replica's rows: replica r gets rows r·b .. (r+1)·b − 1 of the draw.

    Duck-types the two methods of ``tf.random.Generator`` the steps use; ``shape`` is batch-first with the
    LOCAL batch size (a tuple of ints / scalar tensors, or a 1-D shape tensor).
    """

    def __init__(self, seeds: tf.Tensor):
        self.seeds = seeds
        self.count = int(seeds.shape[1])
        self.used = 0
        context = replicas.replica_context()
        self.num_replicas = 1 if context is None else context.num_replicas_in_sync
        self.replica_id = 0 if context is None else context.replica_id_in_sync_group

    def _next_seed(self) -> tf.Tensor:
        if self.used >= self.count:
            raise RuntimeError(f"StepNoise: the step draws more than the {self.count} seeds it was given")
        seed = self.seeds[:, self.used]
        self.used += 1
        return seed

    def _global_shape(self, shape):
        if isinstance(shape, tf.Tensor) and shape.shape.rank == 1:
            local = shape[0]
            return local, tf.concat([[local * self.num_replicas], shape[1:]], axis=0)
        shape = list(shape)
        return shape[0], [shape[0] * self.num_replicas] + shape[1:]

    def _rows(self, x, local):
        if self.num_replicas == 1:
            return x
        return x[self.replica_id * local:(self.replica_id + 1) * local]

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32):
        local, full = self._global_shape(shape)
        draw = tf.random.stateless_normal(full, self._next_seed(), mean, stddev, dtype, alg="philox")
        return self._rows(draw, local)

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=tf.float32):
        local, full = self._global_shape(shape)
        draw = tf.random.stateless_uniform(full, self._next_seed(), minval, maxval, dtype, alg="philox")
        return self._rows(draw, local)


def sum_gradients(grads: list) -> list:
    """Gradients summed over the replicas (None entries kept, as a variable without gradient is not stepped)."""
    present = [i for i, g in enumerate(grads) if g is not None]
    if not present:
        return list(grads)
    summed = replicas.all_sum([grads[i] for i in present])
    out = list(grads)
    for i, g in zip(present, summed):
        out[i] = g
    return out
