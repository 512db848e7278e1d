"""Direction models (global / linear / nonlinear) and projector heads (identity / linear / nonlinear).

A direction model maps latents z [B, S] to K edited copies z + alpha * d_k(z) / |d_k(z)|, stacked
direction-major into [K*B, S] (paper Sec. 3.1: global z + a*theta/|theta|, linear z + a*Mz/|Mz|, nonlinear
z + a*NN(z)/|NN(z)|). The K conditional networks are held as one stack of weights [K, in, out], which is
the same set of parameters as the original's ``ModuleList`` of K ``Sequential`` nets and runs them all in one
batched matmul. Names, shapes and initialisers follow the PyTorch original so that its checkpoints load
(``nets.{i}.linear_1.weight`` is the (out, in) matrix of net i, transposed here into a Keras kernel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from common.errors import UsageError


def torch_dense_initializers(fan_in: int):
    """PyTorch ``nn.Linear`` defaults: kernel and bias ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    kernel = keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in", distribution="uniform")
    bias = keras.initializers.RandomUniform(-bound, bound)
    return kernel, bias


def l2_normalize_rows(x: tf.Tensor, eps: float = 0.0) -> tf.Tensor:
    """x / (|x| + eps) along the last axis; eps = 0 reproduces the original (NaN for a zero row)."""
    norm = tf.norm(x, axis=-1, keepdims=True)
    return x / (norm + eps) if eps else x / norm


class StackedBatchNorm(keras.layers.Layer):
    """``torch.nn.BatchNorm1d`` for K independent nets at once: input [K, B, C], statistics over B.

    Training mode normalises with the biased batch variance and updates the running variance with the
    unbiased one, as PyTorch does; ``momentum`` follows the Keras convention (running = m * running +
    (1 - m) * batch), so PyTorch's 0.1 is 0.9 here. eps = 1e-5. Inside a multi-replica step the moments are
    taken over the rows of all replicas (all-reduced sums), so the statistics are those of the global batch.
    """

    def __init__(self, n_nets: int, features: int, momentum: float = 0.9, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.n_nets, self.features = n_nets, features
        self.momentum, self.epsilon = momentum, epsilon
        shape = (n_nets, features)
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta")
        # Every replica computes the same (global) statistics: the first replica's update stands for all.
        stat = dict(trainable=False, aggregation="only_first_replica")
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", name="moving_mean", **stat)
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", name="moving_variance", **stat)
        self.num_batches_tracked = self.add_weight(shape=(), initializer="zeros", name="num_batches_tracked",
                                                   dtype="int64", **stat)

    def call(self, x, training=False, net=None):
        """x: [K, B, C] (all nets) or [B, C] with ``net`` = the index of the one net to run."""
        gamma, beta = self.gamma, self.beta
        mean_var = (self.moving_mean, self.moving_variance)
        if net is not None:
            gamma, beta = gamma[net], beta[net]
            mean_var = (mean_var[0][net], mean_var[1][net])
        if training:
            if net is not None:
                raise ValueError("StackedBatchNorm: training mode needs all nets at once")
            mean, var, n = _batch_moments(x)
            unbiased = var * n / (n - 1.0)
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * mean[..., 0, :])
            self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * unbiased[..., 0, :])
            self.num_batches_tracked.assign_add(1)
        else:
            mean, var = mean_var
            if net is None:
                mean, var = mean[:, None, :], var[:, None, :]
        if net is None:
            gamma, beta = gamma[:, None, :], beta[:, None, :]
        return (x - mean) / tf.sqrt(var + self.epsilon) * gamma + beta


def _batch_moments(x):
    """Mean and biased variance over axis -2 of x [..., B, C] (keepdims) and the row count, over the rows of
    every replica when called inside a multi-replica step."""
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if replicas == 1:
        mean = tf.reduce_mean(x, axis=-2, keepdims=True)
        return mean, tf.reduce_mean(tf.square(x - mean), axis=-2, keepdims=True), tf.cast(tf.shape(x)[-2], x.dtype)
    total, n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [tf.reduce_sum(x, axis=-2, keepdims=True),
                                                           tf.cast(tf.shape(x)[-2], x.dtype)])
    mean = total / n
    var = ctx.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(x - mean), axis=-2, keepdims=True)) / n
    return mean, var, n


class StackedDense(keras.layers.Layer):
    """K independent ``nn.Linear(in, out)`` layers: [K, B, in] -> [K, B, out] (PyTorch initialisation)."""

    def __init__(self, n_nets: int, in_features: int, out_features: int, use_bias: bool, **kwargs):
        super().__init__(**kwargs)
        self.n_nets, self.in_features, self.out_features, self.use_bias = n_nets, in_features, out_features, use_bias
        # One fresh initialiser per net: fan_in is `in_features` (not K * in_features), and Keras
        # initialisers without a seed repeat their values when called twice.
        self.kernel = self.add_weight(shape=(n_nets, in_features, out_features), name="kernel",
                                      initializer=_per_net(in_features, 0, (in_features, out_features)))
        self.bias = (self.add_weight(shape=(n_nets, out_features), name="bias",
                                     initializer=_per_net(in_features, 1, (out_features,)))
                     if use_bias else None)

    def call(self, x, net=None):
        if net is not None:
            y = tf.matmul(x, self.kernel[net])
            return y + self.bias[net] if self.use_bias else y
        y = tf.matmul(x, self.kernel)
        return y + self.bias[:, None, :] if self.use_bias else y


def _per_net(fan_in, which, shape):
    def init(full_shape, dtype=None):
        return tf.stack([torch_dense_initializers(fan_in)[which](shape, dtype=dtype) for _ in range(full_shape[0])])

    return init


class StackedMLP(keras.layers.Layer):
    """K copies of the original's ``create_mlp`` stack, run together on [K, B, in].

    Layers: ``linear_1`` (in -> out if depth == 1 else middle; it always has a bias in the original,
    which ignores ``bias`` here - ``first_layer_bias_fix`` honours it), then for i = 1 .. depth-1:
    ``batchnorm_i``, ReLU, ``linear_{i+1}`` (the last one without bias, the middle ones with ``bias``),
    and ``batchnorm_{depth}`` at the end if ``final_norm``. BatchNorm layers are always there between
    linears (the original's ``batchnorm`` argument is not used by ``create_mlp`` either).
    """

    def __init__(self, n_nets, depth, in_features, middle_features, out_features, bias=True, final_norm=False,
                 first_layer_bias_fix=False, **kwargs):
        super().__init__(**kwargs)
        if depth < 1:
            raise UsageError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        first_out = out_features if depth == 1 else middle_features
        # One attribute per layer (linear_1, batchnorm_1, ...): Keras 3 does not show layers held in Python
        # lists to tf.train.Checkpoint, which would silently drop them (BatchNorm statistics included).
        self.linear_1 = StackedDense(n_nets, in_features, first_out, bias if first_layer_bias_fix else True,
                                     name="linear_1")
        for i in range(depth - 1):
            last = i == depth - 2
            setattr(self, f"batchnorm_{i + 1}", StackedBatchNorm(n_nets, middle_features, name=f"batchnorm_{i + 1}"))
            setattr(self, f"linear_{i + 2}", StackedDense(n_nets, middle_features,
                                                          out_features if last else middle_features,
                                                          False if last else bias, name=f"linear_{i + 2}"))
        self.final_norm = StackedBatchNorm(n_nets, out_features, name=f"batchnorm_{depth}") if final_norm else None

    @property
    def linears(self) -> list[StackedDense]:
        return [getattr(self, f"linear_{i + 1}") for i in range(self.depth)]

    @property
    def norms(self) -> list[StackedBatchNorm]:
        return [getattr(self, f"batchnorm_{i + 1}") for i in range(self.depth - 1)]

    def call(self, x, training=False, net=None):
        x = self.linears[0](x, net=net)
        for norm, linear in zip(self.norms, self.linears[1:]):
            x = tf.nn.relu(norm(x, training=training, net=net))
            x = linear(x, net=net)
        if self.final_norm is not None:
            x = self.final_norm(x, training=training, net=net)
        return x

    def torch_state(self, prefix: str, net: int):
        """(torch name, variable, index, transpose) for every tensor of net ``net`` under ``prefix``."""
        rows = []
        for i, linear in enumerate(self.linears):
            rows.append((f"{prefix}linear_{i + 1}.weight", linear.kernel, net, True))
            if linear.use_bias:
                rows.append((f"{prefix}linear_{i + 1}.bias", linear.bias, net, False))
        norms = list(self.norms) + ([self.final_norm] if self.final_norm is not None else [])
        for norm in norms:
            name = f"{prefix}{norm.name}"
            rows += [(f"{name}.weight", norm.gamma, net, False), (f"{name}.bias", norm.beta, net, False),
                     (f"{name}.running_mean", norm.moving_mean, net, False),
                     (f"{name}.running_var", norm.moving_variance, net, False),
                     (f"{name}.num_batches_tracked", norm.num_batches_tracked, None, False)]
        return rows


# ---------------------------------------------------------------------------------------------------
# Direction models


class DirectionModel(keras.Model):
    """Common behaviour of the three direction models (``colat/models/abstract.py``).

    ``alpha`` is a number (fixed step) or ``[lo, hi]`` (a fresh U(lo, hi) draw from NumPy's global RNG at
    every scaling step, as the original). Because the train step is a compiled graph, the draws happen in
    Python (:meth:`sample_alphas`) and enter the graph as a [K] tensor.

    Every subclass provides ``call(z [B, S], alphas [K], training) -> [K*B, S]`` (direction-major: rows
    k*B .. k*B+B-1 are direction k), ``forward_single(z [B, S], k, alpha) -> [B, S]`` (used by
    generation) and ``torch_state()`` (the rows of the original's state_dict).
    """

    #: one alpha draw per forward call shared by all directions (Fixed) or one per direction.
    alpha_per_direction = True

    def __init__(self, k: int, size: int, alpha=0.1, normalize: bool = True, norm_eps: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.k, self.size, self.normalize, self.norm_eps = int(k), int(size), bool(normalize), float(norm_eps)
        self.alpha = check_alpha(alpha)

    def sample_alpha(self) -> float:
        """The original's ``sample_alpha``: alpha itself, or one ``np.random.uniform(lo, hi)`` draw."""
        if isinstance(self.alpha, (int, float)):
            return float(self.alpha)
        return float(np.random.uniform(self.alpha[0], self.alpha[1], size=1)[0])

    def sample_alphas(self) -> np.ndarray:
        """[K] float32 step sizes for one forward call, drawn in the original's order."""
        if self.alpha_per_direction:
            return np.asarray([self.sample_alpha() for _ in range(self.k)], np.float32)
        return np.full((self.k,), self.sample_alpha(), np.float32)

    def post_process(self, dz: tf.Tensor, alpha) -> tf.Tensor:
        """Normalise rows (if ``normalize``) and scale by alpha (scalar or broadcastable tensor)."""
        if self.normalize:
            dz = l2_normalize_rows(dz, self.norm_eps)
        return dz * alpha



class Fixed(DirectionModel):
    """K global directions theta_k ~ N(0, 1), the same for every z (``colat.models.Fixed``)."""

    alpha_per_direction = False

    def __init__(self, k, size, alpha=0.1, normalize=True, norm_eps=0.0, **kwargs):
        super().__init__(k, size, alpha, normalize, norm_eps, **kwargs)
        self.params = self.add_weight(shape=(self.k, self.size), name="params",
                                      initializer=keras.initializers.RandomNormal(0.0, 1.0))

    def call(self, z, alphas=None, training=False):
        alphas = self._alphas(alphas)
        dz = self.post_process(self.params, alphas[:, None])  # [K, S]
        out = z[None, :, :] + dz[:, None, :]
        return tf.reshape(out, (-1, self.size))

    def forward_single(self, z, k, alpha, training=False):
        dz = self.post_process(self.params, alpha)[k: k + 1]
        return z + dz

    def _alphas(self, alphas):
        if alphas is None:
            alphas = self.sample_alphas()
        return tf.cast(alphas, self.params.dtype)

    def torch_state(self):
        return [("params", self.params, None, False)]


class _Conditional(DirectionModel):
    """K nets d_k(z); ``call`` runs all of them on the same batch, BatchNorm statistics per net."""

    def __init__(self, k, size, alpha, normalize, norm_eps, depth, bias, final_norm, first_layer_bias_fix,
                 **kwargs):
        super().__init__(k, size, alpha, normalize, norm_eps, **kwargs)
        self.nets = StackedMLP(self.k, depth, self.size, self.size, self.size, bias=bias, final_norm=final_norm,
                               first_layer_bias_fix=first_layer_bias_fix, name="nets")

    def call(self, z, alphas=None, training=False):
        if alphas is None:
            alphas = self.sample_alphas()
        alphas = tf.cast(alphas, z.dtype)
        zk = tf.tile(z[None], (self.k, 1, 1))  # [K, B, S]
        dz = self.post_process(self.nets(zk, training=training), alphas[:, None, None])
        return tf.reshape(zk + dz, (-1, self.size))

    def forward_single(self, z, k, alpha, training=False):
        return z + self.post_process(self.nets(z, training=training, net=int(k)), alpha)

    def torch_state(self):
        rows = []
        for i in range(self.k):
            rows += self.nets.torch_state(f"nets.{i}.", i)
        return rows


class LinearConditional(_Conditional):
    """z + alpha * (M_k z + b_k) / |M_k z + b_k| (``colat.models.LinearConditional``, depth-1 MLP).

    The bias is there because the original's first dense layer ignores ``bias=False``
    (``first_layer_bias_fix=True`` removes it).
    """

    def __init__(self, k, size, alpha=0.1, normalize=True, norm_eps=0.0, bias=False, batchnorm=False,
                 first_layer_bias_fix=False, **kwargs):
        super().__init__(k, size, alpha, normalize, norm_eps, depth=1, bias=bias, final_norm=batchnorm,
                         first_layer_bias_fix=first_layer_bias_fix, **kwargs)


class NonlinearConditional(_Conditional):
    """z + alpha * NN_k(z) / |NN_k(z)| with a ``depth``-layer MLP per direction
    (``colat.models.NonlinearConditional``; depth 3: linear-BN-ReLU-linear-BN-ReLU-linear)."""

    def __init__(self, k, size, depth=3, alpha=0.1, normalize=True, norm_eps=0.0, bias=True, batchnorm=True,
                 final_norm=False, first_layer_bias_fix=False, **kwargs):
        del batchnorm  # accepted for config compatibility; create_mlp always puts BatchNorm between layers
        super().__init__(k, size, alpha, normalize, norm_eps, depth=int(depth), bias=bias, final_norm=final_norm,
                         first_layer_bias_fix=first_layer_bias_fix, **kwargs)


def check_alpha(alpha):
    """A number, or a [lo, hi] pair (list / tuple / ListConfig); anything else is a UsageError."""
    if isinstance(alpha, bool):
        raise UsageError(f"model.alpha must be a number or [lo, hi], got {alpha!r}")
    if isinstance(alpha, (int, float)):
        return alpha
    if isinstance(alpha, Sequence) or hasattr(alpha, "__len__"):
        values = list(alpha)
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise UsageError(f"model.alpha must be a number or a two-element list [lo, hi], got {values!r}")
        return [float(values[0]), float(values[1])]
    raise UsageError(f"model.alpha must be a number or [lo, hi], got {alpha!r}")


# ---------------------------------------------------------------------------------------------------
# Projectors


class Projector(keras.Model):
    """Flatten [B, ...] -> [B, F], apply the head, L2-normalise rows if ``normalize`` (``colat/projectors``).

    The identity head has no parameters. The linear head is ``linear_1`` (with the original's always-on
    bias) + ``batchnorm_1``; the nonlinear head a ``depth``-layer MLP. Features are NHWC here; with the
    identity head this changes nothing (dot products are invariant to a fixed permutation of coordinates).
    """

    def __init__(self, normalize=True, net: StackedMLP | None = None, in_features: int | None = None,
                 norm_eps: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.normalize, self.norm_eps, self.in_features = bool(normalize), float(norm_eps), in_features
        self.net = net

    def call(self, h, training=False):
        flat = tf.reshape(h, (tf.shape(h)[0], -1))
        if self.net is not None:
            flat = self.net(flat[None], training=training)[0]
        return l2_normalize_rows(flat, self.norm_eps) if self.normalize else flat

    def check_feature_size(self, size: int) -> None:
        if self.in_features is not None and int(self.in_features) != int(size):
            raise UsageError(
                f"projector.in_features={self.in_features} but the feature layer gives {size} values per sample; "
                f"set projector.in_features={size}"
            )

    def torch_state(self):
        return self.net.torch_state("", 0) if self.net is not None else []


def IdentityProjector(normalize=True, norm_eps=0.0, **kwargs):  # noqa: N802 - the original's class name
    """``colat.projectors.IdentityProjector``: flatten and (optionally) normalise."""
    return Projector(normalize=normalize, net=None, norm_eps=norm_eps, name="projector", **kwargs)


def LinearProjector(in_features, out_features, bias=False, batchnorm=True, normalize=True,  # noqa: N802
                    first_layer_bias_fix=False, norm_eps=0.0, **kwargs):
    """``colat.projectors.LinearProjector``: linear_1 (in -> out) + batchnorm_1 when ``batchnorm``."""
    net = StackedMLP(1, 1, int(in_features), -1, int(out_features), bias=bias, final_norm=batchnorm,
                     first_layer_bias_fix=first_layer_bias_fix, name="net")
    return Projector(normalize=normalize, net=net, in_features=int(in_features), norm_eps=norm_eps,
                     name="projector", **kwargs)


def NonlinearProjector(depth, in_features, middle_features, out_features, bias=True, batchnorm=True,  # noqa: N802
                       final_norm=False, normalize=True, first_layer_bias_fix=False, norm_eps=0.0, **kwargs):
    """``colat.projectors.NonlinearProjector``: a ``depth``-layer MLP in -> middle -> ... -> out."""
    del batchnorm
    net = StackedMLP(1, int(depth), int(in_features), int(middle_features), int(out_features), bias=bias,
                     final_norm=final_norm, first_layer_bias_fix=first_layer_bias_fix, name="net")
    return Projector(normalize=normalize, net=net, in_features=int(in_features), norm_eps=norm_eps,
                     name="projector", **kwargs)


def apply_projector_chunks(projector: Projector, h: tf.Tensor, k: int, training: bool) -> tf.Tensor:
    """Project [K*B, ...] features chunk by chunk (B rows per direction), as the original does.

    With a BatchNorm head in training mode every chunk has its own batch statistics and updates the
    running statistics once, in direction order; the identity head needs no loop.
    """
    if projector.net is None:
        return projector(h, training=training)
    chunks = tf.split(h, k, axis=0)
    return tf.concat([projector(chunk, training=training) for chunk in chunks], axis=0)


# ---------------------------------------------------------------------------------------------------
# PyTorch state_dict import / export (original checkpoints: ``model`` and ``projector`` entries)


def export_state(module) -> dict[str, np.ndarray]:
    """The module's tensors under the original's state_dict names, in PyTorch layout."""
    state = {}
    for name, var, index, transpose in module.torch_state():
        value = np.asarray(var.numpy())
        if index is not None:
            value = value[index]
        if transpose:
            value = value.T
        state[name] = value
    return state


def import_state(module, state: Mapping[str, np.ndarray], what: str, feature_shape=None) -> None:
    """Assign an original state_dict (names as :func:`export_state`) to ``module``.

    Projector keys may carry the ``net.`` or ``Projector.`` prefix (the original registers the head
    twice). With ``feature_shape`` (H, W, C) the first projector kernel is permuted from PyTorch's NCHW
    flattening to NHWC.

    Raises:
        UsageError: a tensor is missing or has the wrong shape (the message names ``what``).
    """
    state = _strip_projector_prefix(dict(state))
    rows = module.torch_state()
    expected = {name for name, *_ in rows}
    missing = sorted(expected - set(state))
    if missing:
        raise UsageError(f"{what}: missing tensors {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    updates = {}
    for name, var, index, transpose in rows:
        value = np.asarray(state[name])
        if transpose:
            value = value.T
            if feature_shape is not None and name.endswith("linear_1.weight") and isinstance(module, Projector):
                value = nchw_rows_to_nhwc(value, feature_shape)
        target_shape = tuple(var.shape[1:]) if index is not None else tuple(var.shape)
        if tuple(value.shape) != target_shape:
            raise UsageError(f"{what}: {name} has shape {value.shape}, expected {target_shape}")
        updates.setdefault(id(var), [var, var.numpy().copy()])
        if index is None:
            updates[id(var)][1] = value.astype(updates[id(var)][1].dtype)
        else:
            updates[id(var)][1][index] = value
    for var, value in updates.values():
        var.assign(value)


def _strip_projector_prefix(state: dict) -> dict:
    out = {}
    for name, value in state.items():
        for prefix in ("net.", "Projector."):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        out.setdefault(name, value)
    return out


def nchw_rows_to_nhwc(kernel: np.ndarray, feature_shape) -> np.ndarray:
    """Reorder the input rows of a [C*H*W, out] kernel (NCHW flattening) to NHWC flattening."""
    h, w, c = feature_shape
    return kernel.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)


def count_params(module) -> tuple[int, int]:
    """(trainable, non-trainable float) parameter counts, as the original's state_dict would have them."""
    trainable = sum(int(np.prod(v.shape)) for v in module.trainable_weights)
    stats = sum(int(np.prod(v.shape)) for v in module.non_trainable_weights if v.dtype != "int64")
    return trainable, stats
