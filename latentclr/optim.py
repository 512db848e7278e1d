"""Optimisers and learning-rate schedules in PyTorch's exact form (the original trains with torch.optim).

Why not Keras's: torch's ``weight_decay`` is coupled L2 (wd * w is added to the gradient before the
moments), while Keras 3 decays the weights directly; and Keras's Adam adds epsilon to the uncorrected
sqrt(v), torch to the bias-corrected one. Both change the trajectory, so the updates are written out here.
The ``_target_`` strings of the original configs (``torch.optim.Adam``, ``torch.optim.SGD``,
``torch.optim.lr_scheduler.MultiStepLR``, ``colat.scheduler.*``) select these classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import tensorflow as tf

from common.errors import UsageError


class MultiStepLR:
    """lr(t) = lr * gamma ** #{milestones m : m <= t} at 0-based iteration t (stepped every iteration).

    With milestones [1000, 5000] and gamma 0.2: 1e-3 for t < 1000, 2e-4 up to 4999, then 4e-5.
    """

    def __init__(self, lr: float, milestones: Sequence[int] = (), gamma: float = 0.1):
        self.lr, self.milestones, self.gamma = float(lr), [int(m) for m in milestones], float(gamma)

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        passed = tf.add_n([tf.cast(step >= m, tf.float64) for m in self.milestones]) if self.milestones else 0.0
        return self.lr * tf.pow(tf.constant(self.gamma, tf.float64), passed)


class ConstantLR:
    """``colat.scheduler.ConstantLR``: the learning rate never changes."""

    def __init__(self, lr: float):
        self.lr = float(lr)

    def __call__(self, step):
        return tf.constant(self.lr, tf.float64)


class ExponentialDecayLR:
    """``colat.scheduler.ExponentialDecayLR``: lr * rate ** (t / decay_steps), floored if ``staircase``."""

    def __init__(self, lr: float, decay_steps: int, decay_rate: float, staircase: bool = False):
        self.lr, self.decay_steps, self.decay_rate, self.staircase = float(lr), int(decay_steps), float(
            decay_rate), bool(staircase)

    def __call__(self, step):
        power = tf.cast(step, tf.float64) / self.decay_steps
        if self.staircase:
            power = tf.floor(power)
        return self.lr * tf.pow(tf.constant(self.decay_rate, tf.float64), power)


class _TorchOptimizer(tf.Module):
    """Slots are variables of this module, so a ``tf.train.Checkpoint`` holding it resumes exactly."""

    def __init__(self, variables, schedule, weight_decay: float = 0.0, name=None):
        super().__init__(name=name)
        self.variables_ = list(variables)
        self.schedule = schedule
        self.weight_decay = float(weight_decay)
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")

    def learning_rate(self):
        """The rate used by the next :meth:`apply` (0-based iteration = number of updates so far)."""
        return self.schedule(self.iterations)

    def _slot(self, var, suffix):
        return tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False, name=f"{_short(var)}_{suffix}")

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        """One update of every variable; ``grads`` in the order of the constructor's variables."""
        lr = self.learning_rate()
        for i, (grad, var) in enumerate(zip(grads, self.variables_)):
            if grad is None:
                continue
            grad = tf.convert_to_tensor(grad)
            if self.weight_decay:
                grad = grad + self.weight_decay * var  # coupled L2, as torch.optim
            self._update(i, grad, var, tf.cast(lr, var.dtype))
        self.iterations.assign_add(1)


class Adam(_TorchOptimizer):
    """torch.optim.Adam: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, w -= lr m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, variables, schedule, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, name="adam"):
        super().__init__(variables, schedule, weight_decay, name=name)
        self.beta1, self.beta2, self.eps = float(betas[0]), float(betas[1]), float(eps)
        self.m = [self._slot(v, "m") for v in self.variables_]
        self.v = [self._slot(v, "v") for v in self.variables_]

    def _update(self, i, grad, var, lr):
        m, v = self.m[i], self.v[i]
        t = tf.cast(self.iterations + 1, var.dtype)
        m.assign(self.beta1 * m + (1.0 - self.beta1) * grad)
        v.assign(self.beta2 * v + (1.0 - self.beta2) * tf.square(grad))
        bias1 = 1.0 - tf.pow(tf.constant(self.beta1, var.dtype), t)
        bias2 = 1.0 - tf.pow(tf.constant(self.beta2, var.dtype), t)
        denom = tf.sqrt(v) / tf.sqrt(bias2) + self.eps
        var.assign_sub(lr / bias1 * m / denom)


class SGD(_TorchOptimizer):
    """torch.optim.SGD with momentum (buffer = g at the first step, then m buf + (1 - dampening) g) and
    Nesterov (step g + m buf)."""

    def __init__(self, variables, schedule, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
                 name="sgd"):
        super().__init__(variables, schedule, weight_decay, name=name)
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise UsageError("hparams.optimizer: Nesterov momentum requires a momentum and zero dampening")
        self.buffers = [self._slot(v, "momentum") for v in self.variables_] if self.momentum else []

    def _update(self, i, grad, var, lr):
        if self.momentum:
            buf = self.buffers[i]
            first = tf.equal(self.iterations, 0)
            buf.assign(tf.where(first, grad, self.momentum * buf + (1.0 - self.dampening) * grad))
            grad = grad + self.momentum * buf if self.nesterov else buf
        var.assign_sub(lr * grad)


def _short(var) -> str:
    return var.name.replace("/", "_").replace(":", "_")


OPTIMIZERS = {
    "torch.optim.Adam": Adam, "latentclr.optim.Adam": Adam,
    "torch.optim.SGD": SGD, "latentclr.optim.SGD": SGD,
}
SCHEDULERS = {
    "torch.optim.lr_scheduler.MultiStepLR": MultiStepLR, "latentclr.optim.MultiStepLR": MultiStepLR,
    "colat.scheduler.ConstantLR": ConstantLR, "latentclr.optim.ConstantLR": ConstantLR,
    "colat.scheduler.ExponentialDecayLR": ExponentialDecayLR, "latentclr.optim.ExponentialDecayLR": ExponentialDecayLR,
}


def build_optimizer(variables, optimizer_cfg: Mapping, scheduler_cfg: Mapping | None):
    """Optimiser of ``variables`` from the ``hparams.optimizer`` / ``hparams.scheduler`` config nodes."""
    opt = dict(optimizer_cfg)
    target = opt.pop("_target_", "torch.optim.Adam")
    if target not in OPTIMIZERS:
        raise UsageError(f"hparams.optimizer._target_={target!r} is not supported; use one of {sorted(OPTIMIZERS)}")
    lr = float(opt.pop("lr", 1e-3))
    schedule = ConstantLR(lr)
    if scheduler_cfg is not None:
        sched = dict(scheduler_cfg)
        starget = sched.pop("_target_", None)
        if starget not in SCHEDULERS:
            raise UsageError(
                f"hparams.scheduler._target_={starget!r} is not supported; use one of {sorted(SCHEDULERS)}")
        sched.pop("last_epoch", None)
        try:
            schedule = SCHEDULERS[starget](lr, **sched)
        except TypeError as err:
            raise UsageError(f"hparams.scheduler: {err}") from err
    if opt.pop("amsgrad", False):
        raise UsageError("hparams.optimizer.amsgrad=true is not supported")
    try:
        return OPTIMIZERS[target](variables, schedule, **{k: _number(v) for k, v in opt.items()})
    except TypeError as err:
        raise UsageError(f"hparams.optimizer: {err}") from err


def _number(value):
    """YAML gives ``1e-3`` as a string to plain PyYAML; OmegaConf already gives a float."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__"):
        return tuple(_number(v) for v in value)
    return value


def clip_by_global_norm(grads: Sequence[tf.Tensor], max_norm: float) -> list[tf.Tensor]:
    """torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1."""
    norm = tf.linalg.global_norm([g for g in grads if g is not None])
    coef = tf.minimum(max_norm / (norm + 1e-6), 1.0)
    return [None if g is None else g * tf.cast(coef, g.dtype) for g in grads]
