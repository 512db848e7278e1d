"""The CIFAR-2 training state and one training iteration of SLOGAN (spec §1.4-§1.9, §5).

One iteration = ``n_critic`` discriminator steps, then one joint generator / encoder / prior step:

- D step (global step s before its increment): L_D = −(mean D(x_r) − mean D(G(z_reg))) + penalty
  (``alp`` by default, or ``gp`` / ``lp``), G in BatchNorm training mode without updating its moving
  statistics; Adam(D) at 4·lr·decay(s); then s += 1.
- G/E/prior step (reads s after the increment): z_gen (2B samples) -> G -> D, E and E∘DiffAugment.
  L_G = −mean D(G(z)) + λ_t·mean Lc (U2C, cifar2 variant), E objective L_G + l_s (SimCLR) + 1e-4·Σ½‖v‖²,
  Stein estimates of μ, Σ, ρ from g = ∂(Σ_b ℓ_b)/∂z. All deltas come from the same pre-step values and are
  applied together (Adam(G), Adam(E), SGD on μ/Σ/ρ). The BN moving statistics move twice: from the z_gen
  pass and from an extra pass on a z_reg-sized batch (as the original's update ops did, spec §9 #10).

Distribution (``--gpu 0,1``): every random quantity is drawn once for the global batch (so one device and
several see the same numbers) and each replica takes its rows. Batch statistics of the generator's
BatchNorm, the U2C and SimCLR negatives and the Stein averages span the global batch (all-reduce /
all-gather); each replica's objective is scaled so that the sum over replicas is the one-device loss, the
convention of the Keras optimizer's summed gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import tensorflow as tf

from common.slogan import diffaugment, penalties, prior, resnet, schedules, simclr
from common.slogan.losses import REDUCERS, generator_adversarial_loss, u2c_loss

GUMBEL_TAU = 0.01  # slogan_cifar2.py (the synthetic script uses 0.1)
ENCODER_WEIGHT_DECAY = 1e-4
ADAM = dict(beta_1=0.0, beta_2=0.9, epsilon=1e-8)  # TF1 AdamOptimizer(lr, 0, 0.9) with its default ε


@dataclasses.dataclass
class Cifar2State:
    """Everything a CIFAR-2 run updates; all of it goes into the checkpoint (plus the data streams).

    Attributes:
        generator, discriminator, encoder: the ResNets of :mod:`common.slogan.resnet`.
        prior: ρ, μ_c, Σ_c (:class:`common.slogan.prior.GaussianMixturePrior`).
        opt_g, opt_d, opt_e: Adam(β1 = 0, β2 = 0.9, ε = 1e-8); learning rates are set every step.
        global_step: s, the number of D updates so far (int64 scalar variable).
        rng: the run's in-graph random generator (Philox); every draw of a step comes from it.
    """

    generator: resnet.Generator
    discriminator: resnet.Critic
    encoder: resnet.Critic
    prior: prior.GaussianMixturePrior
    opt_g: keras.optimizers.Optimizer
    opt_d: keras.optimizers.Optimizer
    opt_e: keras.optimizers.Optimizer
    global_step: tf.Variable
    rng: tf.random.Generator

    def trackables(self) -> dict:
        """Named objects for ``tf.train.Checkpoint`` / :class:`common.training.Checkpoints`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def resnets(cfg) -> tuple[keras.Model, keras.Model, keras.Model]:
    """The CIFAR-2 ResNets G, D, E of spec §4.2 (width ``cfg.channels``)."""
    return (resnet.build_generator(cfg.latent_dim, cfg.channels), resnet.build_discriminator(cfg.channels),
            resnet.build_encoder(cfg.latent_dim, cfg.channels))


def build_state(cfg, strategy: tf.distribute.Strategy | None = None,
                networks: Callable[..., tuple] = resnets) -> Cifar2State:
    """Create the models, prior, optimizers, step and generator (under ``strategy.scope()``).

    Args:
        cfg: needs ``latent_dim``, ``num_cluster``, ``random_seed``, ``lr`` and ``channels``.
        networks: ``networks(cfg) -> (G, D, E)`` built Keras models; G is called as
            ``G(z, training=, update_stats=)`` (tests pass smaller nets with the same interface).
    """
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        g, d, e = networks(cfg)
        mixture = prior.GaussianMixturePrior(cfg.num_cluster, cfg.latent_dim, seed=cfg.random_seed)
        optimizers = [keras.optimizers.Adam(learning_rate=cfg.lr, **ADAM) for _ in range(3)]
        for opt, model in zip(optimizers, (g, d, e)):
            opt.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    rng = tf.random.Generator.from_seed(cfg.random_seed, alg="philox")
    return Cifar2State(g, d, e, mixture, optimizers[0], optimizers[1], optimizers[2], step, rng)


# ------------------------------------------------------------------------------------------------
# cross-replica helpers (identity on one device)
# ------------------------------------------------------------------------------------------------


def _replica_context():
    """The replica context when several replicas run this code, else None (one device, or cross-replica)."""
    ctx = tf.distribute.get_replica_context()
    return ctx if ctx is not None and ctx.num_replicas_in_sync > 1 else None


def _shard(x: tf.Tensor, axis: int = 0) -> tf.Tensor:
    """This replica's equal share of a global-batch tensor along ``axis``."""
    ctx = _replica_context()
    if ctx is None:
        return x
    size = x.shape[axis] // ctx.num_replicas_in_sync
    return tf.gather(x, tf.range(size) + ctx.replica_id_in_sync_group * size, axis=axis)


def _gather(x: tf.Tensor) -> tf.Tensor:
    """Rows of every replica in replica order (differentiable; its gradient sums over replicas)."""
    ctx = _replica_context()
    return x if ctx is None else ctx.all_gather(x, axis=0)


def _replicas() -> float:
    ctx = _replica_context()
    return 1.0 if ctx is None else float(ctx.num_replicas_in_sync)


def global_reduce(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """``--reduce_fn`` over the per-example terms of the whole global batch."""
    reduce = REDUCERS[name]
    return lambda values: reduce(_gather(values))


def stateless_seed(rng: tf.random.Generator) -> tf.Tensor:
    """A fresh [2] int32 seed for TFP's stateless samplers, drawn from ``rng``."""
    return rng.uniform_full_int([2], dtype=tf.int32)


# ------------------------------------------------------------------------------------------------
# the steps
# ------------------------------------------------------------------------------------------------


def _d_draws(state: Cifar2State, cfg, batch: int) -> dict:
    """Random quantities of one D step for the global batch (cross-replica context)."""
    draws = {"z_reg": state.prior.sample(batch, seed=stateless_seed(state.rng))}
    if cfg.reg == "alp":
        # X = concat(x_r, G(z_reg)): radius and probe direction per row of X (spec §1.4).
        draws["eps"] = cfg.eps_min + (cfg.eps_max - cfg.eps_min) * state.rng.uniform([2 * batch])
        draws["direction"] = state.rng.uniform([2 * batch, 32, 32, 3]) - 0.5
    else:
        draws["eps"] = state.rng.uniform([batch])
    return draws


def _d_replica(state: Cifar2State, cfg, x_real, draws):
    """One D update on this replica's share; returns the replica's (local) loss parts."""
    g, d = state.generator, state.discriminator
    x_real, z_reg = _shard(x_real), _shard(draws["z_reg"])
    reduce = global_reduce(cfg.reduce_fn)
    scale = 1.0 / _replicas()
    with tf.GradientTape() as tape:
        x_fake = g(z_reg, training=True, update_stats=False)
        # One critic pass over X = concat(x_r, G(z_reg)) serves the WGAN loss and ALP's D(X).
        x_both = tf.concat([x_real, x_fake], 0)
        d_both = d(x_both)
        d_real, d_fake = tf.split(d_both, 2)
        wgan = -(tf.reduce_mean(d_real) - tf.reduce_mean(d_fake))
        if cfg.reg == "alp":
            eps = tf.reshape(_shard(tf.reshape(draws["eps"], [2, -1]), axis=1), [-1])
            direction = tf.reshape(_shard(tf.reshape(draws["direction"], [2, -1, 32, 32, 3]), axis=1),
                                   [-1, 32, 32, 3])
            penalty, _ = penalties.adversarial_lipschitz_penalty(
                d, x_both, eps, direction, d_x=d_both, xi=cfg.xi, ip=cfg.ip,
                lambda_lp=cfg.lambda_lp, lipschitz=cfg.K, p=cfg.p, reduce_fn=reduce)
        else:
            penalty, _ = penalties.gradient_penalty(
                d, x_real, x_fake, _shard(draws["eps"]), one_sided=cfg.reg == "lp",
                lambda_lp=cfg.lambda_lp, lipschitz=cfg.K, p=cfg.p, reduce_fn=reduce)
        loss = (wgan + penalty) * scale
    grads = tape.gradient(loss, d.trainable_variables)
    state.opt_d.apply_gradients(zip(grads, d.trainable_variables))
    return {"d_loss": wgan + penalty, "penalty": penalty}


def _g_draws(mixture: prior.GaussianMixturePrior, rng: tf.random.Generator, cfg, batch: int) -> dict:
    """Random quantities of one G/E/prior step for the global batch (cross-replica context)."""
    n = 2 * batch
    return {
        "z_gen": mixture.sample(n, seed=stateless_seed(rng)),
        "z_reg": mixture.sample(batch, seed=stateless_seed(rng)),
        "gumbel": rng.uniform([n, cfg.num_cluster]),
        "augment": diffaugment.draw(rng, n),
    }


def contrastive_terms(state: Cifar2State, cfg, z, x, gumbel, augment, temp):
    """U2C and SimCLR terms of generated images (spec §1.5, §1.6) for this replica's rows.

    Args:
        z: [b, d] latent leaves; x: [b, 32, 32, 3] = G(z); gumbel: [b, K] uniforms; augment: the
            DiffAugment draws of these rows; temp: temp(s).
    Returns:
        dict with ``logits`` [b, K] responsibilities' logits, ``lc`` [B] U2C losses and ``ls`` [B] SimCLR
        losses of the *global* batch (negatives from every replica).
    """
    means, covs, pi = state.prior.means(), state.prior.covariances(), state.prior.pi
    logits = prior.responsibility_logits(z, pi, means, covs)
    prototypes = prior.soft_prototypes(prior.gumbel_softmax(logits, GUMBEL_TAU, gumbel), means)
    enc = state.encoder(x)
    enc_aug = state.encoder(diffaugment.diff_augment(x, augment))
    enc_all = _gather(enc)
    lc = u2c_loss(enc_all, _gather(prototypes), scale=cfg.scale, margin=cfg.margin, temperature=temp,
                  variant="cifar2")
    ls = simclr.simclr_loss(enc_all, _gather(enc_aug))
    return {"logits": logits, "lc": lc, "ls": ls}


def _g_replica(state: Cifar2State, cfg, draws, temp, gamma):
    """The joint G/E/prior step on this replica's rows; returns Stein estimates and loss parts."""
    g, d, e = state.generator, state.discriminator, state.encoder
    z = _shard(draws["z_gen"])
    augment = diffaugment.AugmentDraws(*(_shard(t) for t in draws["augment"]))
    weight = schedules.u2c_weight(cfg.coeff, temp)
    scale = 1.0 / _replicas()
    # The extra generator pass whose only effect is the second moving-statistics update (§1.9, §9 #10).
    g(_shard(draws["z_reg"]), training=True, update_stats=True)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        x = g(z, training=True, update_stats=True)
        adversarial = -d(x)  # ℓ_adv,b, [b, 1]
        terms = contrastive_terms(state, cfg, z, x, _shard(draws["gumbel"]), augment, temp)
        lc_mean, ls_mean = tf.reduce_mean(terms["lc"]), tf.reduce_mean(terms["ls"])
        # L_G; summed over replicas it is the one-device L_G (spec §1.7).
        g_objective = tf.reduce_mean(adversarial) * scale + weight * lc_mean * scale
        # What the E objective adds to L_G: l_s + 1e-4·Σ½‖v‖² (l_s trains the encoder only).
        decay = ENCODER_WEIGHT_DECAY * tf.add_n([tf.nn.l2_loss(v) for v in e.trainable_variables])
        e_extra = (ls_mean + decay) * scale
    # One backward pass of L_G gives the G and E gradients and ∂L_G/∂z. Σ_b ℓ_b = B·L_G over the global
    # batch, so the Stein g = B·∂L_G/∂z (B = 2·batch, a power of two in the original: the scaling is exact).
    g_grads, e_grads, dlgdz = tape.gradient(g_objective, (g.trainable_variables, e.trainable_variables, z))
    e_grads = [a + b for a, b in zip(e_grads, tape.gradient(e_extra, e.trainable_variables))]
    del tape
    dldz = dlgdz * float(draws["z_gen"].shape[0])
    stein = prior.stein_gradients(
        _gather(z), _gather(dldz), _gather(tf.nn.softmax(terms["logits"])), state.prior.pi,
        state.prior.means(), state.prior.covariances(), _gather(adversarial), gamma)
    state.opt_g.apply_gradients(zip(g_grads, g.trainable_variables))
    state.opt_e.apply_gradients(zip(e_grads, e.trainable_variables))
    return {"stein": stein, "g_loss": generator_adversarial_loss(-adversarial), "lc": lc_mean, "ls": ls_mean}


def make_train_step(state: Cifar2State, cfg, strategy: tf.distribute.Strategy | None = None,
                    jit_compile: bool = False):
    """One outer iteration as a ``tf.function``: ``step(real) -> dict`` of scalar losses.

    Args:
        state: from :func:`build_state` (same strategy).
        cfg: the run configuration (``batch_size``, ``n_critic``, ``reg``, … of spec §2.2).
        strategy: a ``tf.distribute`` strategy; the default (one device) when None.
        jit_compile: compile the step with XLA (one device only).

    The returned function takes ``real`` [n_critic, B, 32, 32, 3]: the augmented real batches of the D
    steps in [−1, 1) (spec §3.3), and returns ``d_loss`` (of the last D step), ``g_loss`` (adversarial part
    of L_G), ``lc`` (mean U2C loss), ``ls`` (SimCLR loss) and ``penalty``.
    """
    strategy = strategy or tf.distribute.get_strategy()
    batch = cfg.batch_size

    def d_step(x_real):
        s = state.global_step
        state.opt_d.learning_rate.assign(schedules.learning_rates(s, cfg.schedule_length, cfg.lr, cfg.lr_stein).d)
        draws = _d_draws(state, cfg, batch)
        out = strategy.run(lambda: _d_replica(state, cfg, x_real, draws))
        state.global_step.assign_add(1)
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

    def g_step():
        s = state.global_step
        rates = schedules.learning_rates(s, cfg.schedule_length, cfg.lr, cfg.lr_stein)
        temp = schedules.temperature(s, cfg.schedule_length, cfg.start_temp, cfg.end_temp)
        state.opt_g.learning_rate.assign(rates.g)
        state.opt_e.learning_rate.assign(rates.e)
        draws = _g_draws(state.prior, state.rng, cfg, batch)
        out = strategy.run(lambda: _g_replica(state, cfg, draws, temp, rates.sigma))
        # Every replica computed the same estimates from the gathered batch; apply them once.
        stein = prior.SteinGradients(*(strategy.experimental_local_results(t)[0] for t in out.pop("stein")))
        state.prior.apply_stein_updates(stein, rates.mu, rates.sigma, rates.rho, skip_nonfinite=False)
        return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in out.items()}

    def step(real):
        for j in range(cfg.n_critic):
            d_out = d_step(real[j])
        return {**d_out, **g_step()}

    if jit_compile and strategy.num_replicas_in_sync > 1:
        raise ValueError("jit_compile is supported on one device only")
    # autograph=False: no tensor-dependent Python control flow here, and converting Keras/TFP costs seconds.
    return tf.function(step, jit_compile=jit_compile, autograph=False)


def make_summary_step(state: Cifar2State, cfg, rng: tf.random.Generator):
    """The original's periodic summary, in inference mode (BN moving statistics), spec §2.3.

    Its random draws come from ``rng`` (not the training generator), so logging does not change the
    training stream, as in the original where every random op had its own seed.

    Returns a ``tf.function`` ``summary(x_true) -> (scalars, images)`` run on one device (cross-replica
    context): ``x_true`` is an augmented real batch [B, 32, 32, 3]; ``scalars`` holds the per-example values
    whose mean/std the original logs (``d_true``, ``d_generated``, ``constrastive_loss`` [2B],
    ``simclr_loss`` []), ``images`` the batches behind the grids (``x_true``, ``x_mixture``, ``gradients``,
    ``x_cond_<c>``, each [≤64, 32, 32, 3]).
    """

    @tf.function(autograph=False)
    def summary(x_true):
        g, d = state.generator, state.discriminator
        batch = x_true.shape[0]
        temp = schedules.temperature(state.global_step, cfg.schedule_length, cfg.start_temp, cfg.end_temp)
        draws = _g_draws(state.prior, rng, cfg, batch)
        x_gen = g(draws["z_gen"], training=False)
        terms = contrastive_terms(state, cfg, draws["z_gen"], x_gen, draws["gumbel"], draws["augment"], temp)
        x_reg = g(draws["z_reg"], training=False)
        x_hat = penalties.interpolates(x_true, x_reg, rng.uniform([batch]))
        images = {"x_true": x_true[:64], "x_mixture": x_reg[:64],
                  "gradients": penalties.critic_input_gradients(d, x_hat)[:64]}
        for c in range(cfg.num_cluster):
            z_cond = state.prior.sample_component(c, 64, seed=stateless_seed(rng))
            images[f"x_cond_{c}"] = g(z_cond, training=False)
        scalars = {"d_true": d(x_true), "d_generated": d(x_gen), "constrastive_loss": terms["lc"],
                   "simclr_loss": tf.reduce_mean(terms["ls"])}
        return scalars, images

    return summary
