"""``torch.optim.Adam`` exactly, as one fused TensorFlow op per variable.

PyTorch's update (no weight decay, no amsgrad), with step t counted per optimizer:

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

TensorFlow's ``ResourceApplyAdam`` computes w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps'); with
eps' = eps * sqrt(1 - b2^t) the two are identical. (Keras' Adam adds eps to sqrt(v) without that factor:
a small difference the spec notes; this class avoids it and builds far smaller graphs.)

Like PyTorch, an optimizer only counts steps it takes: an optimizer that is never applied keeps t = 0
and zero moments (spec §7.5: Q's Adam state while lambda_D = 0).

Several replicas (:mod:`congan.distribute`): variables and slots are mirrored, the step sums the gradients over
the replicas before :meth:`TorchAdam.apply`, and each replica applies the same update to its own copy through
the variables' local handles (:func:`assign_local`, :func:`assign_add_local`), so the copies stay identical.
"""

from __future__ import annotations

import tensorflow as tf


def assign_local(var, value) -> None:
    """var = value on this replica's copy (the variable itself on one device)."""
    tf.raw_ops.AssignVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))


def assign_add_local(var, value) -> None:
    """var += value on this replica's copy."""
    tf.raw_ops.AssignAddVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))


def assign_sub_local(var, value) -> None:
    """var -= value on this replica's copy."""
    tf.raw_ops.AssignSubVariableOp(resource=var.handle, value=tf.cast(value, var.dtype))


class TorchAdam(tf.Module):
    """Adam over a fixed list of variables; ``learning_rate`` is a variable set per epoch by the trainer.

    Args:
        variables: the variables this optimizer steps (Keras or TF variables).
        learning_rate: initial lr.
        betas: (b1, b2); b1 = 0 is allowed.
        eps: PyTorch's epsilon (1e-8).
    """

    def __init__(self, variables, learning_rate, betas=(0.9, 0.999), eps=1e-8, name="adam"):
        super().__init__(name=name)
        self.variables_ = list(variables)
        self.beta1, self.beta2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)
        self.learning_rate = tf.Variable(float(learning_rate), trainable=False, name="learning_rate")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="m") for v in self.variables_]
        self.v = [tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False, name="v") for v in self.variables_]
        self.loss_scale = None  # a congan.precision.LossScale under --mixed_precision (set by the trainer)

    def set_learning_rate(self, value: float) -> None:
        self.learning_rate.assign(value)

    def apply(self, grads) -> None:
        """One step with ``grads`` (same order as the variables; None entries are skipped like PyTorch).

        Under ``strategy.run`` the gradients must already be summed over the replicas.
        """
        assign_add_local(self.iterations, 1)
        t = tf.cast(self.iterations, tf.float32)
        b1_power = tf.pow(self.beta1, t)
        b2_power = tf.pow(self.beta2, t)
        eps = self.eps * tf.sqrt(1.0 - b2_power)
        for var, m, v, grad in zip(self.variables_, self.m, self.v, grads):
            if grad is None:
                continue
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=m.handle, v=v.handle, beta1_power=b1_power, beta2_power=b2_power,
                lr=self.learning_rate, beta1=self.beta1, beta2=self.beta2, epsilon=eps, grad=grad,
                use_locking=False, use_nesterov=False)
