"""SLOGAN on the synthetic 8-Gaussian mixture (``slogan_synthetic.py``): networks, config, train steps.

Networks (spec §4.1, K = 8, d = 64): G is Dense-BN-ReLU x 2 then Dense(2) and tanh; D and E are
Dense-LeakyReLU(0.2) x 2 then a linear Dense; E's kernels carry the spectral-norm projection. One outer
iteration (spec §1.9): ``n_critic`` D steps, each reading the global step s before incrementing it, then
one joint G / E / prior step at the incremented s, with every update computed from the same pre-step
values. The run loop, plots and evaluation are in :mod:`common.slogan.synthetic_run`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from common import replicas
from common.errors import UsageError
from common.slogan import losses, prior, schedules
from common.slogan.data import SHUFFLE_BUFFER, ShuffledStream, SyntheticMixture
from common.slogan.layers import SpectralNormProjection, TF1BatchNorm

GUMBEL_TAU = 0.1  # slogan_synthetic.py (the cifar2 script and the paper use 0.01)
U2C_VARIANT = "synthetic"
ADAM = {"beta_1": 0.0, "beta_2": 0.9, "epsilon": 1e-8}  # TF1 AdamOptimizer(lr, 0, 0.9) with its 1e-8
HIDDEN = 128
DATA_DIM = 2
REDUCE_CHOICES = ("mean", "sum", "max")
REG_CHOICES = ("gp", "lp")


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Every flag of the original ``slogan_synthetic.py`` (same names and defaults) plus the port's additions.

    Original flags (spec §2.1); ``save_freq``, ``val_size`` and ``random_seed`` are accepted and ignored
    like in the original unless a fix flag says otherwise. ``K`` is the Lipschitz target, not the
    number of components (that is ``num_cluster``).

    Port additions: ``run_name`` (fixed run folder, so that a rerun resumes), ``stop_after`` (stop this
    invocation after that many iterations with a checkpoint, e.g. the first 3 000 iterations of the default
    100 000-iteration schedule; running again with a larger value or none continues), ``checkpoint_every``,
    ``use_random_seed`` (make ``random_seed`` effective; the original hard-codes 0), ``fix_gp`` (make
    ``--reg gp`` add the gradient penalty it names), ``skip_nonfinite`` (the original's mixed-precision
    wrappers skipped non-finite updates), ``jit_compile``; and, for tests and benchmarks only, the sizes
    of the evaluation batch, the plot sample counts, the clustering cadence and the shuffle buffer.
    """

    log_dir: str = "./logs/synthetic/"
    gpu: str = "3"
    ckpt_path: str | None = None
    num_cluster: int = 8
    lr_stein: float = 1e-2
    lr: float = 1e-3
    coeff: float = 4.0
    scale: float = 2.0
    margin: float = 0.5
    start_temp: float = 1.0
    end_temp: float = -4.0
    log_freq: int = 100
    iterations: int = 100_000
    batch_size: int = 128
    save_freq: int = 1000
    val_size: int = 100
    random_seed: int = 0
    latent_dim: int = 64
    lambda_lp: float = 10.0
    K: float = 1.0
    p: float = 2.0
    n_critic: int = 1
    reduce_fn: str = "mean"
    reg: str = "lp"
    # --- port additions ---
    run_name: str | None = None
    stop_after: int | None = None  # end this invocation after that many iterations; the schedule keeps I
    checkpoint_every: int = 1000
    use_random_seed: bool = False
    fix_gp: bool = False
    skip_nonfinite: bool = True
    jit_compile: bool = False
    show_progress: bool = True
    devices: str | None = None  # explicit tf.distribute devices, e.g. "/cpu:0,/cpu:1" (tests); --gpu otherwise
    eval_size: int = 10_000  # the original's "10k" evaluation / plotting batch
    plot_mixture_samples: int = 8000
    plot_component_total: int = 80_000
    metrics_every: int = 1000  # clustering metrics when i % 1000 == 0 (0-based iteration i)
    shuffle_buffer: int = SHUFFLE_BUFFER

    @property
    def seed(self) -> int:
        """The seed in force: 0 as in the original, ``random_seed`` with ``use_random_seed``."""
        return int(self.random_seed) if self.use_random_seed else 0

    @property
    def last_iteration(self) -> int:
        """Where this invocation stops: ``iterations``, or ``stop_after`` when that is smaller."""
        return min(self.iterations, self.stop_after or self.iterations)

    @property
    def penalty(self) -> str | None:
        """The critic penalty actually added: ``lp``; ``gp`` only with ``fix_gp`` (spec §9 #1)."""
        if self.reg == "lp":
            return "lp"
        return "gp" if self.fix_gp else None

    def validate(self) -> None:
        """Raise :class:`UsageError` naming the flag when a value cannot work."""
        positive = {"--num_cluster": self.num_cluster, "--iterations": self.iterations, "--log_freq": self.log_freq,
                    "--latent_dim": self.latent_dim, "--n_critic": self.n_critic,
                    "--checkpoint_every": self.checkpoint_every}
        for flag, value in positive.items():
            if value < 1:
                raise UsageError(f"{flag}: expected a positive integer, got {value}")
        if self.batch_size < 2:
            raise UsageError(f"--batch_size: expected at least 2 (batch statistics), got {self.batch_size}")
        if self.p < 1:
            raise UsageError(f"--p: expected a norm order >= 1, got {self.p}")
        if self.reduce_fn not in REDUCE_CHOICES:
            raise UsageError(f"--reduce_fn: expected one of {', '.join(REDUCE_CHOICES)}, got {self.reduce_fn!r}")
        if self.reg not in REG_CHOICES:
            raise UsageError(f"--reg: expected one of {', '.join(REG_CHOICES)}, got {self.reg!r}")
        if self.run_name is not None and (not self.run_name or "/" in self.run_name or self.run_name in ".."):
            raise UsageError(f"--run_name: expected a folder name without '/', got {self.run_name!r}")
        if self.stop_after is not None and self.stop_after < 1:
            raise UsageError(f"--stop_after: expected a positive number of iterations, got {self.stop_after}")
        if self.eval_size < 2 or self.shuffle_buffer < 1:
            raise UsageError("eval_size must be >= 2 and shuffle_buffer >= 1")


# ------------------------------------------------------------------------------------------------
# Networks (spec §4.1)
# ------------------------------------------------------------------------------------------------


class SyntheticGenerator(keras.Model):
    """G: z [B, d] -> x [B, 2] in (-1, 1). Dense(128)-BN-ReLU, Dense(128)-BN-ReLU, Dense(2), tanh.

    Call args: ``training`` selects batch statistics in the two BN layers, ``update_stats`` also updates
    their moving statistics (only the G step does, spec §4.3).
    """

    def __init__(self, latent_dim: int, name: str = "generator", **kwargs):
        super().__init__(name=name, **kwargs)
        self.latent_dim = latent_dim
        self.dense = keras.layers.Dense(HIDDEN, name="dense")
        self.bn = TF1BatchNorm(name="BatchNorm")
        self.dense_1 = keras.layers.Dense(HIDDEN, name="dense_1")
        self.bn_1 = TF1BatchNorm(name="BatchNorm_1")
        self.dense_2 = keras.layers.Dense(DATA_DIM, name="dense_2")

    def call(self, z, training=False, update_stats=False):
        x = tf.nn.relu(self.bn(self.dense(z), training=training, update_stats=update_stats))
        x = tf.nn.relu(self.bn_1(self.dense_1(x), training=training, update_stats=update_stats))
        return tf.tanh(self.dense_2(x))


def _mlp(out_dim: int, name: str, constraint_factory=None) -> keras.Sequential:
    def dense(units, layer_name):
        constraint = constraint_factory() if constraint_factory else None
        return keras.layers.Dense(units, kernel_constraint=constraint, name=layer_name)

    return keras.Sequential(
        [
            keras.Input((DATA_DIM,)),
            dense(HIDDEN, "dense"),
            keras.layers.LeakyReLU(negative_slope=0.2),  # TF1 leaky_relu default (Keras' layer default is 0.3)
            dense(HIDDEN, "dense_1"),
            keras.layers.LeakyReLU(negative_slope=0.2),
            dense(out_dim, "dense_2"),
        ],
        name=name,
    )


def build_networks(latent_dim: int, projection_noise: tf.random.Generator | None = None):
    """(G, D, E) built and ready; trainable parameters 25 602 / 17 025 / 25 152 for d = 64.

    Args:
        projection_noise: generator of the spectral-norm projection's u, v (in the checkpoint).
    """
    generator = SyntheticGenerator(latent_dim)
    generator(tf.zeros([2, latent_dim]))
    discriminator = _mlp(1, "discriminator")
    encoder = _mlp(latent_dim, "encoder", lambda: SpectralNormProjection(2, projection_noise))
    return generator, discriminator, encoder


# ------------------------------------------------------------------------------------------------
# Objectives (spec §1.4, §1.5, §1.7)
# ------------------------------------------------------------------------------------------------


def _identity(x):
    return x


def discriminator_objective(discriminator, x_real, x_fake, epsilon, config: SyntheticConfig, gather=_identity):
    """L_D = mean relu(1 - D(x_r)) + mean relu(1 + D(x_g)) + penalty (LP by default; nothing for gp).

    Args:
        x_real, x_fake: [b, 2]; epsilon: [b, 1] interpolation weights ~ U[0, 1).
        gather: per-example critic values and gradient norms [b, 1] -> [B, 1] of the global batch
            (:func:`common.replicas.gather` under ``tf.distribute``; the identity on one device), so the means and
            ``--reduce_fn`` run over the whole batch.
    Returns:
        (loss, parts) with parts ``d_real``, ``d_fake`` (means) and ``penalty``, all of the global batch.
    """
    loss, parts = losses.hinge_discriminator_loss(gather(discriminator(x_real)), gather(discriminator(x_fake)))
    penalty = tf.constant(0.0)
    if config.penalty is not None:
        norms, _ = losses.interpolate_gradient_norms(
            discriminator, x_real, x_fake, epsilon, losses.dual_norm_order(config.p)
        )
        penalty = losses.lipschitz_penalty(
            gather(norms), lipschitz=config.K, weight=config.lambda_lp, reduce=config.reduce_fn, kind=config.penalty
        )
    return loss + penalty, {**parts, "penalty": penalty}


class GeneratorTerms(NamedTuple):
    """Everything the joint G / E / prior step needs from one forward pass."""

    loss: tf.Tensor  # L_G = -mean D(G(z)) + λ_t mean Lc, scalar
    per_sample: tf.Tensor  # ℓ_b = -D(G(z_b)) + λ_t Lc_b, [B, 1]
    adversarial: tf.Tensor  # -D(G(z_b)), [B, 1]
    lc: tf.Tensor  # Lc_b, [B]
    logits: tf.Tensor  # responsibility logits of this replica's rows, [b, K] (b = B on one device)


def generator_objective(generator, discriminator, encoder, z, pi, means, covariances, uniform, temperature,
                        weight, config: SyntheticConfig, update_stats: bool = True, gather=_identity) -> GeneratorTerms:
    """The generator / encoder objective of one batch of leaf samples z [b, d] (spec §1.7).

    The soft component pick C = GumbelSoftmax(logits, τ = 0.1) uses ``uniform`` [b, K]; the U2C loss
    compares E(G(z)) with the prototypes C @ stack(μ). ``gather`` ([b, ...] -> [B, ...]) brings the rows of every
    replica together before the U2C loss and the means, so its negatives and L_G span the global batch (the
    identity on one device).
    """
    x_fake = generator(z, training=True, update_stats=update_stats)
    adversarial = gather(-discriminator(x_fake))
    logits = prior.responsibility_logits(z, pi, means, covariances)
    prototypes = prior.soft_prototypes(prior.gumbel_softmax(logits, GUMBEL_TAU, uniform), means)
    lc = losses.u2c_loss(gather(encoder(x_fake)), gather(prototypes), scale=config.scale, margin=config.margin,
                         temperature=temperature, variant=U2C_VARIANT)
    loss = tf.reduce_mean(adversarial) + weight * tf.reduce_mean(lc)
    return GeneratorTerms(loss, adversarial + weight * lc[:, None], adversarial, lc, logits)


# ------------------------------------------------------------------------------------------------
# State and train steps
# ------------------------------------------------------------------------------------------------


class SyntheticState:
    """Models, optimizers, the prior, the global step, data streams and random generators of one run.

    Everything :meth:`trackables` returns goes into the checkpoint, so a resumed run continues exactly.

    With a ``tf.distribute`` strategy the networks and their optimizers are created under ``strategy.scope()``
    (mirrored on every replica); the prior, the step, the random generators and the data streams are ordinary
    variables used in the cross-replica context only (the checkpoint is the same for any number of devices).
    """

    def __init__(self, config: SyntheticConfig, train: SyntheticMixture, evaluation: SyntheticMixture,
                 strategy: tf.distribute.Strategy | None = None):
        seed = config.seed
        self.strategy = strategy or tf.distribute.get_strategy()
        # Separate streams: training noise (z, Gumbel, LP ε), the projection's u / v, plots and evaluation.
        self.noise = tf.random.Generator.from_seed(seed * 1000 + 1, alg="philox")
        self.projection_noise = tf.random.Generator.from_seed(seed * 1000 + 2, alg="philox")
        self.eval_noise = tf.random.Generator.from_seed(seed * 1000 + 3, alg="philox")
        keras.utils.set_random_seed(seed)
        with self.strategy.scope():
            self.generator, self.discriminator, self.encoder = build_networks(config.latent_dim,
                                                                              self.projection_noise)
        self.prior = prior.GaussianMixturePrior(config.num_cluster, config.latent_dim, seed=seed)
        with self.strategy.scope():
            self.opt_g = keras.optimizers.Adam(config.lr, name="adam_g", **ADAM)
            self.opt_d = keras.optimizers.Adam(4 * config.lr, name="adam_d", **ADAM)
            self.opt_e = keras.optimizers.Adam(config.lr, name="adam_e", **ADAM)
            self.opt_g.build(self.generator.trainable_variables)
            self.opt_d.build(self.discriminator.trainable_variables)
            self.opt_e.build(self.encoder.trainable_variables)
        self.step = tf.Variable(tf.constant(0, tf.int64), name="global_step")
        self.train_data = tf.constant(train.data)
        self.eval_data = tf.constant(evaluation.data)
        self.eval_classes = evaluation.classes
        self.eval_classes_tensor = tf.constant(evaluation.classes, tf.int32)
        self.train_stream = ShuffledStream(len(train.data), config.batch_size, seed * 1000 + 4,
                                           buffer_size=config.shuffle_buffer, name="train_stream")
        self.eval_stream = ShuffledStream(len(evaluation.data), config.eval_size, seed * 1000 + 5,
                                          buffer_size=config.shuffle_buffer, name="eval_stream")
        self.plot_real = tf.Variable(tf.zeros([config.eval_size, DATA_DIM]), name="plot_real")

    def trackables(self) -> dict:
        return {
            "generator": self.generator, "discriminator": self.discriminator, "encoder": self.encoder,
            "prior": self.prior, "opt_g": self.opt_g, "opt_d": self.opt_d, "opt_e": self.opt_e,
            "global_step": self.step, "noise": self.noise, "projection_noise": self.projection_noise,
            "eval_noise": self.eval_noise, "train_stream": self.train_stream, "eval_stream": self.eval_stream,
            "plot_real": self.plot_real,
        }

    def eval_batch(self):
        """The next batch of the evaluation stream: (x [eval_size, 2], classes [eval_size] int32)."""
        indices = self.eval_stream.next_indices()
        return tf.gather(self.eval_data, indices), tf.gather(self.eval_classes_tensor, indices)


def stateless_seed(generator: tf.random.Generator):
    """A fresh [2] int32 seed for TFP's stateless samplers, drawn from ``generator``."""
    return generator.uniform_full_int([2], tf.int32)


def apply_if_finite(optimizer, grads, variables, learning_rate, skip_nonfinite: bool = True):
    """One optimizer update at ``learning_rate``, skipped when a gradient is non-finite; returns the flag."""
    optimizer.learning_rate.assign(learning_rate)
    if not skip_nonfinite:
        optimizer.apply(grads, variables)
        return tf.constant(True)
    ok = prior.all_finite(grads)

    def update():
        optimizer.apply(grads, variables)
        return tf.constant(True)

    return tf.cond(ok, update, lambda: tf.constant(False))


class TrainSteps(NamedTuple):
    """The compiled steps of a run: ``iteration`` is the one the loop calls; the parts serve tests."""

    iteration: Callable  # n_critic D steps, then the joint step; returns a dict of scalar tensors
    d_step: Callable  # one D step; returns (L_D, parts, applied)
    joint_step: Callable  # one G / E / prior step; returns (GeneratorTerms, temperature, rates, applied [5])
    d_update: Callable  # the D step after its draws: (x_real [B, 2], z [B, d], epsilon [B, 1]) -> as d_step
    joint_update: Callable  # the joint step after its draws: (z [B, d], uniform [B, K]) -> as joint_step


def make_train_steps(state: SyntheticState, config: SyntheticConfig) -> TrainSteps:
    """Build the ``tf.function`` steps of one run (``jit_compile`` from the config, the strategy from the state).

    D step (x ``n_critic``): fresh real batch and z, G in training mode without BN updates, Adam(D) at
    4·lr·decay(s), then s += 1 (not when the update was skipped). Joint step at the new s: fresh z, one
    forward pass and one backward pass give ∂L_G/∂(z, G, E); g = B ∂L_G/∂z = ∂(Σ_b ℓ_b)/∂z feeds the
    Stein estimates; then Adam(G), Adam(E) (+ spectral-norm projection) and the SGD steps of μ, Σ, ρ are
    applied, all from the pre-step values.

    Several replicas: the real batch and every random draw are taken once for the global batch (so they are the
    one-device numbers) and each replica runs the forward and backward pass of its rows (:mod:`common.replicas`):
    G's BatchNorm uses the statistics of the global batch, the hinge means, the LP reduction, L_G and the U2C
    loss (its negatives) span the gathered global batch, and each replica differentiates L / R. The summed
    gradients, the gathered g, responsibilities and -D(G(z)) then feed the same cross-replica updates as on
    one device (finiteness checks, Adam, the projection's u / v draws, the Stein steps), so two replicas give
    the one-device result up to summation order.
    """
    g, d, e, pr = state.generator, state.discriminator, state.encoder, state.prior
    batch, iterations = config.batch_size, config.iterations
    strategy = state.strategy
    several = strategy.num_replicas_in_sync > 1
    if several and config.jit_compile:
        raise UsageError("--jit_compile works on one device only; drop it or use one --gpu")

    def replica_objective(value):
        # Each replica differentiates L / R: the summed gradients are dL (see common.replicas).
        return value * replicas.share() if several else value

    def d_replica(x_real, z, epsilon):
        x_real, z, epsilon = replicas.shard(x_real), replicas.shard(z), replicas.shard(epsilon)
        with tf.GradientTape() as tape:
            x_fake = g(z, training=True, update_stats=False)
            loss, parts = discriminator_objective(d, x_real, x_fake, epsilon, config, gather=replicas.gather)
            objective = replica_objective(loss)
        grads = tape.gradient(objective, d.trainable_variables)
        return loss, parts, replicas.all_sum(grads)

    def d_step():
        x_real = tf.gather(state.train_data, state.train_stream.next_indices())
        z = pr.sample(batch, seed=stateless_seed(state.noise))
        epsilon = state.noise.uniform([batch, 1])
        return d_update(x_real, z, epsilon)

    def d_update(x_real, z, epsilon):
        # Everything after the draws (XLA's random kernels draw other numbers than TF's for the same seed, so
        # the compiled-vs-eager tests feed both the same draws through here).
        rates = schedules.learning_rates(state.step.read_value(), iterations, config.lr, config.lr_stein)
        loss, parts, grads = replicas.first_local(strategy, strategy.run(d_replica, args=(x_real, z, epsilon)))
        ok = apply_if_finite(state.opt_d, grads, d.trainable_variables, rates.d, config.skip_nonfinite)
        state.step.assign_add(tf.cast(ok, tf.int64))
        return loss, {**parts, "lr_d": rates.d}, ok

    def joint_replica(z, uniform, pi, means, covariances, temperature, weight):
        z, uniform = replicas.shard(z), replicas.shard(uniform)
        g_vars, e_vars = g.trainable_variables, e.trainable_variables
        with tf.GradientTape() as tape:
            tape.watch(z)
            terms = generator_objective(g, d, e, z, pi, means, covariances, uniform, temperature, weight, config,
                                        gather=replicas.gather)
            objective = replica_objective(terms.loss)
        grads = tape.gradient(objective, [z, *g_vars, *e_vars])
        # Every path from a replica's z rows to L_G passes a gather or BatchNorm's all-reduce, whose gradients sum
        # the replicas' parts: grads[0] is the full ∂L_G/∂z of these rows.
        dldz = tf.cast(batch, tf.float32) * grads[0]  # ∂(Σ_b ℓ_b)/∂z, since L_G = (1/B) Σ_b ℓ_b
        terms = terms._replace(logits=replicas.gather(terms.logits))
        return terms, replicas.gather(dldz), replicas.all_sum(grads[1:])

    def joint_step():
        pi, means, covariances = pr.pi, pr.means(), pr.covariances()
        z = tf.stop_gradient(prior.mixture_distribution(pi, means, covariances).sample(
            batch, seed=stateless_seed(state.noise)))
        uniform = state.noise.uniform([batch, config.num_cluster])
        return joint_update(z, uniform, pi, means, covariances)

    def joint_update(z, uniform, pi=None, means=None, covariances=None):
        if pi is None:
            pi, means, covariances = pr.pi, pr.means(), pr.covariances()
        step = state.step.read_value()
        rates = schedules.learning_rates(step, iterations, config.lr, config.lr_stein)
        temperature = schedules.temperature(step, iterations, config.start_temp, config.end_temp)
        weight = schedules.u2c_weight(config.coeff, temperature)
        g_vars, e_vars = g.trainable_variables, e.trainable_variables
        terms, dldz, grads = replicas.first_local(strategy, strategy.run(
            joint_replica, args=(z, uniform, pi, means, covariances, temperature, weight)))
        stein = prior.stein_gradients(z, dldz, tf.nn.softmax(terms.logits), pi, means, covariances,
                                      terms.adversarial, rates.sigma)
        ok_g = apply_if_finite(state.opt_g, grads[: len(g_vars)], g_vars, rates.g, config.skip_nonfinite)
        ok_e = apply_if_finite(state.opt_e, grads[len(g_vars) :], e_vars, rates.e, config.skip_nonfinite)
        ok_prior = pr.apply_stein_updates(stein, rates.mu, rates.sigma, rates.rho, config.skip_nonfinite)
        applied = tf.stack([ok_g, ok_e, ok_prior["mu"], ok_prior["sigma"], ok_prior["rho"]])
        return terms, temperature, rates, applied

    compile_options = {"jit_compile": config.jit_compile, "autograph": False}

    @tf.function(**compile_options)
    def iteration():
        d_applied = []
        for _ in range(config.n_critic):
            d_loss, parts, ok = d_step()
            d_applied.append(ok)
        terms, temperature, rates, applied = joint_step()
        return {
            "loss/d": d_loss,
            "loss/g": tf.reduce_mean(terms.adversarial),
            "loss/lc": tf.reduce_mean(terms.lc),
            "loss/g_total": terms.loss,
            "d/real": parts["d_real"],
            "d/fake": parts["d_fake"],
            "loss/penalty": parts["penalty"],
            "schedule/temperature": temperature,
            "schedule/lr_d": parts["lr_d"],
            "schedule/lr_g": rates.g,
            "skipped/d": tf.reduce_sum(1 - tf.cast(tf.stack(d_applied), tf.int32)),
            "skipped/joint": tf.reduce_sum(1 - tf.cast(applied, tf.int32)),
        }

    return TrainSteps(iteration, *(tf.function(f, **compile_options) for f in (d_step, joint_step, d_update,
                                                                               lambda z, u: joint_update(z, u))))


def make_train_step(state: SyntheticState, config: SyntheticConfig):
    """The ``tf.function`` of one outer iteration (see :func:`make_train_steps`)."""
    return make_train_steps(state, config).iteration


def make_loss_eval_step(state: SyntheticState, config: SyntheticConfig):
    """``--ckpt_path`` mode (spec §9 #2): evaluate L_D and -mean D(G(z)) on fresh batches, train nothing.

    The original ran ``sess.run([d_loss, g_loss_])``, one z batch for both; Lc is reported as NaN.
    """
    g, d, pr = state.generator, state.discriminator, state.prior
    batch = config.batch_size

    @tf.function(autograph=False)
    def evaluate():
        x_real = tf.gather(state.train_data, state.train_stream.next_indices())
        z = pr.sample(batch, seed=stateless_seed(state.noise))
        epsilon = state.noise.uniform([batch, 1])
        x_fake = g(z, training=True, update_stats=False)
        d_loss, parts = discriminator_objective(d, x_real, x_fake, epsilon, config)
        return {"loss/d": d_loss, "loss/g": -parts["d_fake"], "loss/lc": tf.constant(np.nan, tf.float32)}

    return evaluate
