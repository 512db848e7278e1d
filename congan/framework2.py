"""Framework 2 (ConsistentGAN): networks, optimizers, the G/D step factories and the epoch plan.

One iteration (spec §1.5) = one G step, then ``D_iters`` D steps:

    G step:  r = E(x~') + s_r e                       (no gradient; x~' = x' + s_x e, a fresh batch)
             fake = G(T(r, n), r) + s_x e
             L_G = adv_G(D(fake)) + lambda_G (-mean cos(E(fake), r)) + lambda_D (-mean cos(Q(h(fake)), r))
             Adam steps on G and T.
    D step:  real x~ = x + s_x e; r from another batch; fake as above without gradient
             L_D = adv_D(D(x~), D(fake)) [+ w_gp GP] + lambda_D * 0.5 [-cos(Q(h(x~)), E(x~)) - cos(Q(h(fake)), r)]
             Adam steps on D (and Q when lambda_D != 0).

Terms with a zero coefficient are not built at all: each (lambda_G != 0, lambda_D != 0) pattern gets its
own traced step, so no SimSiam call on fakes happens and Q's optimizer is never applied while
lambda_D = 0 (spec §7.5). SimSiam is in no optimizer and runs with batch statistics (spec §7.3).

The loader-driven epoch (spec §1.6): an iteration draws 1 + 2 D_iters batches (with real representations)
and the epoch ends as soon as the loader is exhausted, even inside an iteration; :func:`epoch_plan`
lays this out in advance so the steps can be ``tf.function`` s fed in Python.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from common import replicas
from congan import losses, precision
from congan.data import to_signed
from congan.distribute import StepNoise, reduce_mean, sum_gradients
from congan.layers import LazyBuild
from congan.models import (
    DCGANDiscriminator,
    DCGANGenerator,
    LatentTransform,
    QNetwork,
    ResNetDiscriminator,
    ResNetGenerator,
)
from congan.optim import TorchAdam
from congan.sampling import lerp, slerp

# Loader batches consumed by one representation draw, per training-time source (spec §2.5).
REPR_BATCHES = {"real": 1, "lerp": 2, "slerp": 2, "prior_gaussian": 0, "prior_uniform": 0}


# ---------------------------------------------------------------------------------------------------
# Epoch plan
# ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IterationPlan:
    """Loader batch indices of one iteration: the G step's repr batches and each D step's (real, repr...)."""

    g_batches: tuple[int, ...]
    d_steps: tuple[tuple[int, tuple[int, ...]], ...]
    complete: bool  # False for the last, cut iteration: the notebook leaves the loop before grids/prints


def epoch_plan(num_batches: int, d_iters: int, repr_batches: int = 1) -> list[IterationPlan]:
    """Simulate the notebook's ``while True`` loop over one loader pass (spec §1.6).

    A step happens only if all its batches can be drawn; the pass stops at the first draw that fails.
    With 12 batches and D_iters 5 this gives 2 G and 5 D steps; with 781 batches, 71 and 355.
    """
    plans, p = [], 0
    while p + repr_batches <= num_batches:
        g = tuple(range(p, p + repr_batches))
        p += repr_batches
        d_steps = []
        for _ in range(d_iters):
            if p + 1 + repr_batches > num_batches:
                break
            d_steps.append((p, tuple(range(p + 1, p + 1 + repr_batches))))
            p += 1 + repr_batches
        plans.append(IterationPlan(g, tuple(d_steps), len(d_steps) == d_iters))
        if len(d_steps) < d_iters:
            break
    return plans


# ---------------------------------------------------------------------------------------------------
# Networks and optimizers
# ---------------------------------------------------------------------------------------------------


class SNResNetGAN(LazyBuild, keras.Model):
    """Container of G and D, the content of the notebook's ``model.pth.tar``."""

    def __init__(self, G, D, **kwargs):
        super().__init__(**kwargs)
        self.G, self.D = G, D

    def torch_modules(self):
        return [(f"G.{p}", layer) for p, layer in self.G.torch_modules()] + \
               [(f"D.{p}", layer) for p, layer in self.D.torch_modules()]


@dataclasses.dataclass
class Networks:
    """The four trained networks and the frozen encoder E (SimSiam's encoder)."""

    G: keras.Model
    D: keras.Model
    T: LatentTransform
    Q: QNetwork
    E: keras.Model

    @property
    def gan(self) -> SNResNetGAN:
        if not hasattr(self, "_gan"):
            self._gan = SNResNetGAN(self.G, self.D, name="model")
            self._gan.built = True
        return self._gan


def build_networks(cfg, encoder: keras.Model, repr_dim: int) -> Networks:
    """Build T, G, D, Q for a resolved :class:`Framework2Config` (variables created eagerly)."""
    mode = "noop" if cfg.conditioning != "repr" else ("full" if cfg.latent_full_transform else "partial")
    T = LatentTransform(repr_dim, cfg.latent_noise_dim, cfg.latent_hidden_dim, mode, name="latent_transform")
    T.build_now()
    if cfg.resnetgan:
        G = ResNetGenerator(T.output_dim, 2 * cfg.num_features, cfg.image_size, repr_dim, cfg.conditioning,
                            cfg.cbn_init, name="G")
        D = ResNetDiscriminator(2 * cfg.num_features, cfg.image_size, name="D")
    else:
        G = DCGANGenerator(T.output_dim, cfg.num_features, cfg.image_size, repr_dim, cfg.conditioning,
                           cfg.cbn_init, name="G")
        D = DCGANDiscriminator(cfg.num_features // (cfg.image_size // 32), cfg.image_size, name="D")
    Q = QNetwork(cfg.Q_hidden_dim, repr_dim, name="Q")
    x = G(tf.zeros((2, T.output_dim)), tf.zeros((2, repr_dim)), training=False)
    _, h = D(x, training=False)
    Q(h)
    return Networks(G=G, D=D, T=T, Q=Q, E=encoder)


def make_optimizers(cfg, nets: Networks) -> dict[str, TorchAdam]:
    """PyTorch Adam per param group (G, T in G_optimizer; D, Q in D_optimizer); betas ``cfg.betas``, eps 1e-8.

    One optimizer per group is equivalent to the notebook's two optimizers with two groups each, because
    the groups of an optimizer always step together; Q's own step counter reproduces PyTorch's
    per-parameter state when Q gets no gradient (spec §7.5).
    """
    lrs = {"G": cfg.G_lr, "T": cfg.latent_transform_lr, "D": cfg.D_lr, "Q": cfg.Q_lr}
    opts = {name: TorchAdam(getattr(nets, name).trainable_variables, lr, cfg.betas, 1e-8, name=f"adam_{name}")
            for name, lr in lrs.items()}
    if getattr(cfg, "mixed_precision", False):  # one loss scale per step: the G step's and the D step's
        opts["G"].loss_scale = precision.LossScale("loss_scale_G")
        opts["D"].loss_scale = precision.LossScale("loss_scale_D")
    return opts


# ---------------------------------------------------------------------------------------------------
# Representations and generation
# ---------------------------------------------------------------------------------------------------


def encode(nets: Networks, x, cfg):
    """E(x) with the configured BN mode (batch statistics by default). x in [-1, 1] -> [B, repr_dim]."""
    return nets.E(x, training=cfg.simsiam_bn_mode == "batch")


def draw_representation(nets, cfg, rng, repr_images, batch_size, repr_dim):
    """One training-time representation batch [B, repr_dim] (no gradient) from 0-2 uint8 batches.

    ``real``: E(x + s_x e) + s_r e; ``lerp``/``slerp`` of two such; priors 0.01 U(0, 1) or N(0, I).
    """
    source = cfg.sample_repr
    if source == "prior_gaussian":
        return rng.normal((batch_size, repr_dim))
    if source == "prior_uniform":
        return 0.01 * rng.uniform((batch_size, repr_dim))
    reprs = []
    for images in repr_images:
        x = to_signed(images)
        x = x + cfg.im_noise * rng.normal(tf.shape(x))
        r = encode(nets, x, cfg)
        reprs.append(r + cfg.repr_noise * rng.normal(tf.shape(r)))
    if source == "real":
        return tf.stop_gradient(reprs[0])
    t = rng.uniform((batch_size,))
    if source == "lerp":
        return tf.stop_gradient(lerp(reprs[0], reprs[1], t))
    return tf.stop_gradient(slerp(reprs[0], reprs[1], t, fix=cfg.fix_slerp))


def generate(nets, r, noise, training, im_noise=0.0, rng=None):
    """G(T(r, n), r) (+ im_noise e). r [B, repr_dim], n [B, noise_dim] -> [B, S, S, 3]."""
    fake = nets.G(nets.T(r, noise), r, training=training)
    if im_noise:
        fake = fake + im_noise * rng.normal(tf.shape(fake))
    return fake


# ---------------------------------------------------------------------------------------------------
# Step factories
# ---------------------------------------------------------------------------------------------------


# Random draws per step: at most 2 x (image noise + repr noise) + t for the representations, the noise n, the
# output noise and the GP's u.
_STEP_SEEDS = 8


def make_g_step(nets: Networks, opts, cfg, rng, repr_dim, use_g_con: bool, use_d_con: bool,
                strategy: tf.distribute.Strategy | None = None):
    """The G step for one zero/non-zero pattern of (lambda_G, lambda_D).

    Returns ``g_step(repr_images: tuple of uint8 [B,S,S,3], lam_g, lam_d) -> dict`` with
    ``D(fake)1``, ``loss/G``, and ``G repr loss`` / ``D repr loss(G)`` when the terms exist. The batches are
    global; with several replicas each takes B / R rows (:mod:`congan.distribute`).
    """
    strategy = strategy or tf.distribute.get_strategy()
    g_adv = losses.ADVERSARIAL_LOSSES[cfg.loss][1]
    g_vars, t_vars = nets.G.trainable_variables, nets.T.trainable_variables
    b = cfg.batch_size // strategy.num_replicas_in_sync

    def replica_step(repr_images, lam_g, lam_d, seeds):
        noise = StepNoise(seeds)
        repr_images = tuple(replicas.shard(x) for x in repr_images)
        r = draw_representation(nets, cfg, noise, repr_images, b, repr_dim)
        n = noise.normal((b, cfg.latent_noise_dim))
        out = {}
        with tf.GradientTape() as tape:
            fake = generate(nets, r, n, True, cfg.im_noise, noise)
            d_fake, h_fake = nets.D(fake, training=True)
            loss = g_adv(d_fake)
            if use_g_con:
                out["G repr loss"] = losses.negative_cosine(encode(nets, fake, cfg), r)
                loss = loss + lam_g * out["G repr loss"]
            if use_d_con:
                out["D repr loss(G)"] = losses.negative_cosine(nets.Q(h_fake), r)
                loss = loss + lam_d * out["D repr loss(G)"]
            # The replica's part of the global-batch mean (times the loss scale under mixed precision).
            scaled = precision.scaled(loss * replicas.share(), opts["G"].loss_scale)
        grads = sum_gradients(tape.gradient(scaled, g_vars + t_vars))

        def apply(grads):
            opts["G"].apply(grads[:len(g_vars)])
            if t_vars:
                opts["T"].apply(grads[len(g_vars):])

        precision.apply_gradients(opts["G"].loss_scale, grads, apply)
        out["D(fake)1"] = tf.reduce_mean(d_fake)
        out["loss/G"] = loss
        return out

    @tf.function(jit_compile=cfg.jit_compile, autograph=False)
    def g_step(repr_images, lam_g, lam_d):
        seeds = rng.make_seeds(_STEP_SEEDS)
        return reduce_mean(strategy, strategy.run(replica_step, args=(repr_images, lam_g, lam_d, seeds)))

    return g_step


def make_d_step(nets: Networks, opts, cfg, rng, repr_dim, use_d_con: bool,
                strategy: tf.distribute.Strategy | None = None):
    """The D step; ``d_step(real_images uint8 [B,S,S,3], repr_images tuple, lam_d) -> dict``.

    Outputs ``D(real)``, ``D(fake)2``, ``loss/D`` and, when present, ``grad(D)`` and ``D repr loss``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    d_adv = losses.ADVERSARIAL_LOSSES[cfg.loss][0]
    d_vars = nets.D.trainable_variables
    q_vars = nets.Q.trainable_variables if use_d_con else []
    b = cfg.batch_size // strategy.num_replicas_in_sync

    def replica_step(real_images, repr_images, lam_d, seeds):
        noise = StepNoise(seeds)
        real = to_signed(replicas.shard(real_images))
        real = real + cfg.im_noise * noise.normal(real.shape)
        r = draw_representation(nets, cfg, noise, tuple(replicas.shard(x) for x in repr_images), b, repr_dim)
        fake = tf.stop_gradient(generate(nets, r, noise.normal((b, cfg.latent_noise_dim)), True, cfg.im_noise,
                                         noise))
        out = {}
        with tf.GradientTape() as tape:
            d_real, h_real = nets.D(real, training=True)
            d_fake, h_fake = nets.D(fake, training=True)
            loss = d_adv(d_real, d_fake)
            if cfg.grad_penalty != 0.0:
                u = noise.uniform((b, 1, 1, 1))
                x_hat = losses.interpolate(real, fake, u)
                with tf.GradientTape() as inner:
                    inner.watch(x_hat)
                    d_hat, _ = nets.D(x_hat, training=True)
                out["grad(D)"] = losses.gradient_penalty(inner.gradient(d_hat, x_hat), cfg.grad_center)
                loss = loss + cfg.grad_penalty * out["grad(D)"]
            if use_d_con:
                e_real = tf.stop_gradient(encode(nets, real, cfg))
                out["D repr loss"] = losses.d_consistency(nets.Q(h_real), e_real, nets.Q(h_fake), r)
                loss = loss + lam_d * out["D repr loss"]
            scaled = precision.scaled(loss * replicas.share(), opts["D"].loss_scale)
        grads = sum_gradients(tape.gradient(scaled, d_vars + q_vars))

        def apply(grads):
            opts["D"].apply(grads[:len(d_vars)])
            if q_vars:
                opts["Q"].apply(grads[len(d_vars):])

        precision.apply_gradients(opts["D"].loss_scale, grads, apply)
        out["D(real)"] = tf.reduce_mean(d_real)
        out["D(fake)2"] = tf.reduce_mean(d_fake)
        out["loss/D"] = loss
        return out

    @tf.function(jit_compile=cfg.jit_compile, autograph=False)
    def d_step(real_images, repr_images, lam_d):
        seeds = rng.make_seeds(_STEP_SEEDS)
        return reduce_mean(strategy, strategy.run(replica_step, args=(real_images, repr_images, lam_d, seeds)))

    return d_step


class Steps:
    """Lazily built step functions, one per zero/non-zero pattern of the coefficients."""

    def __init__(self, nets, opts, cfg, rng, repr_dim, strategy: tf.distribute.Strategy | None = None):
        self.args = (nets, opts, cfg, rng, repr_dim)
        self.strategy = strategy
        self._g, self._d = {}, {}

    def g(self, lam_g: float, lam_d: float):
        key = (lam_g != 0.0, lam_d != 0.0)
        if key not in self._g:
            self._g[key] = make_g_step(*self.args, *key, strategy=self.strategy)
        return self._g[key]

    def d(self, lam_d: float):
        key = lam_d != 0.0
        if key not in self._d:
            self._d[key] = make_d_step(*self.args, key, strategy=self.strategy)
        return self._d[key]


def run_iteration(steps: Steps, plan: IterationPlan, batch, lam_g: float, lam_d: float) -> dict[str, float]:
    """One planned iteration; ``batch(index)`` returns loader batch ``index`` of the current epoch (uint8).

    Returns the G step's outputs and the mean of the D steps' outputs (as floats).
    """
    lam_g_t, lam_d_t = tf.constant(lam_g, tf.float32), tf.constant(lam_d, tf.float32)
    g_out = steps.g(lam_g, lam_d)(tuple(tf.constant(batch(k)) for k in plan.g_batches), lam_g_t, lam_d_t)
    result = {k: float(v) for k, v in g_out.items()}
    sums: dict[str, float] = {}
    for real_index, repr_indices in plan.d_steps:
        d_out = steps.d(lam_d)(tf.constant(batch(real_index)), tuple(tf.constant(batch(k)) for k in repr_indices),
                               lam_d_t)
        for k, v in d_out.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    result.update({k: v / len(plan.d_steps) for k, v in sums.items()})
    return result
