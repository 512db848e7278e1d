"""Framework 1 (GAN + SimSiam + autoencoder, ``GAN_+_SimSiam.ipynb`` "Training v2"; spec §1.2).

Per batch x (ImageNet-normalised, 64 px) with s = normalize(E(x)) (no gradient, batch statistics):
- batch index i with (i + 1) % (D_iters + 1) != 0: **D step** on real = s + 1e-6 e and fake = G(z) + 1e-6 e:
  L_D = BCE(D(real), y ~ U(0.7, 1.2)) + BCE(D(fake), 0) + w_gp GP (GP of D's sigmoid output);
- otherwise a **G step**: L_G = BCE(D(G(z) + 1e-6 e), 1);
- then, on every batch, an **AE step**: p = [sigmoid(W_r s + b_r); sigmoid(W_c ctx(x) + b_c)],
  x_rec = decoder(p + 1e-4 e),
  L_AE = 0.01 SSE(x, x_rec) + 1.0 mean ||p|| + 10 SSE(s, normalize(E(x_rec)))[no grad] - 1.0 KL(r_proj, c_proj)
  with PyTorch's kl_div misused on probabilities (kept, spec §8.16).
``wgan``/``wgan-gp`` use -(D(real) - D(fake)) and -D(fake) instead of the BCE terms (D still ends in a sigmoid).
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from common import replicas
from congan import losses, precision
from congan.data import to_imagenet
from congan.distribute import StepNoise, reduce_mean, sum_gradients
from congan.layers import LazyBuild, l2_normalize
from congan.models import F1Discriminator, F1Generator, FlexDCGANDecoder, FlexDCGANEncoder, Projection
from congan.optim import TorchAdam


class ConsistentGAN(LazyBuild, keras.Model):
    """The notebook's ``ConsistentGAN`` module (what ``checkpoint_<epoch>.pth.tar`` holds)."""

    def __init__(self, repr_dim, latent_dim, image_size=64, D_batchnorm=False, **kwargs):
        super().__init__(**kwargs)
        self.repr_dim, self.latent_dim = repr_dim, latent_dim
        self.D = F1Discriminator(repr_dim, D_batchnorm, name="D")
        self.G = F1Generator(latent_dim, repr_dim, name="G")
        self.ctx_encoder = FlexDCGANEncoder(256, image_size, name="ctx_encoder")
        self.repr_proj = Projection(256, "repr_proj", name="repr_proj")
        self.ctx_proj = Projection(256, "ctx_proj", name="ctx_proj")
        self.decoder = FlexDCGANDecoder(512, image_size, name="decoder")
        s = self.G(tf.zeros((2, latent_dim)))
        self.D(s)
        ctx = self.ctx_encoder(tf.zeros((2, image_size, image_size, 3)))
        self.decoder(self.proj(s, ctx))
        self.built = True

    def proj(self, s, ctx):
        """p = [repr_proj(s); ctx_proj(ctx)] in (0, 1)^512."""
        return tf.concat([self.repr_proj(s), self.ctx_proj(ctx)], axis=1)

    @property
    def ae_variables(self):
        return (self.decoder.trainable_variables + self.ctx_encoder.trainable_variables
                + self.repr_proj.trainable_variables + self.ctx_proj.trainable_variables)

    def torch_modules(self):
        mods = self.D.torch_modules() + self.G.torch_modules()
        mods += [(f"ctx_encoder.{p}", m) for p, m in self.ctx_encoder.torch_modules()]
        mods += self.repr_proj.torch_modules() + self.ctx_proj.torch_modules()
        return mods + [(f"decoder.{p}", m) for p, m in self.decoder.torch_modules()]


@dataclasses.dataclass
class F1State:
    model: ConsistentGAN
    E: keras.Model
    opts: dict
    rng: tf.random.Generator
    fixed_latent: tf.Variable


def build_state(cfg, encoder, repr_dim, rng) -> F1State:
    """Networks, Adam optimizers (PyTorch defaults: betas 0.9/0.999, eps 1e-8) and the fixed latent."""
    model = ConsistentGAN(repr_dim, cfg.latent_dim, cfg.image_size, cfg.gan_type in ("gan", "wgan"),
                          name="consistent_gan")
    opts = {}
    for name, lr, variables in (("D", cfg.D_lr, model.D.trainable_variables),
                                ("G", cfg.G_lr, model.G.trainable_variables),
                                ("ae", cfg.decoder_lr, model.ae_variables)):
        opts[name] = TorchAdam(variables, lr, (0.9, 0.999), 1e-8, name=f"adam_{name}")
        if getattr(cfg, "mixed_precision", False):
            opts[name].loss_scale = precision.LossScale(f"loss_scale_{name}")
    # 8 x 8 grid in the notebook; min(64, B) so that small batches work (spec §8.4).
    fixed = tf.Variable(rng.normal((min(64, cfg.batch_size), cfg.latent_dim)), trainable=False, name="fixed_latent")
    return F1State(model, encoder, opts, rng, fixed)


def _encode(state, x, cfg):
    return l2_normalize(state.E(x, training=cfg.simsiam_bn_mode == "batch"), axis=1)


# Random draws per batch step: D step (real noise, z, fake noise, labels, u) or G step (z, fake noise), then the
# AE step's noise on p.
_STEP_SEEDS = 8


def make_batch_steps(state: F1State, cfg, strategy: tf.distribute.Strategy | None = None):
    """``(d_batch_step, g_batch_step)``: each takes a global uint8 batch, runs the D (or G) step and the AE step.

    With several replicas each takes B / R images (:mod:`congan.distribute`): BN statistics (SimSiam, G, the ctx
    encoder and decoder) are those of the global batch, every loss is a per-sample mean scaled by 1 / R, and the
    gradients are summed over replicas.
    """
    strategy = strategy or tf.distribute.get_strategy()
    m = state.model
    wasserstein = cfg.gan_type.startswith("wgan")
    d_vars, g_vars, ae_vars = m.D.trainable_variables, m.G.trainable_variables, m.ae_variables

    def d_step(s, batch, noise):
        def noisy(t):
            return t + cfg.noise * noise.normal(tf.shape(t))

        real = noisy(s)
        fake = tf.stop_gradient(noisy(m.G(noise.normal((batch, cfg.latent_dim)), training=True)))
        with tf.GradientTape() as tape:
            d_real = m.D(real, training=True)
            d_fake = m.D(fake, training=True)
            if wasserstein:
                loss = losses.d_wasserstein(d_real, d_fake)
            else:
                labels = 0.7 + 0.5 * noise.uniform(tf.shape(d_real))
                loss = losses.f1_d_gan(d_real, d_fake, labels)
            u = noise.uniform((batch, 1))
            x_hat = losses.interpolate(real, fake, u)
            with tf.GradientTape() as inner:
                inner.watch(x_hat)
                d_hat = m.D(x_hat, training=True)
            gp = losses.gradient_penalty(inner.gradient(d_hat, x_hat), cfg.grad_center)
            loss = loss + cfg.grad_penalty * gp
            scaled = precision.scaled(loss * replicas.share(), state.opts["D"].loss_scale)
        precision.apply_gradients(state.opts["D"].loss_scale, sum_gradients(tape.gradient(scaled, d_vars)),
                                  state.opts["D"].apply)
        return {"D(real)": tf.reduce_mean(d_real), "D(fake)": tf.reduce_mean(d_fake), "grad(D) penalty": gp,
                "loss/D": loss}

    def g_step(batch, noise):
        with tf.GradientTape() as tape:
            fake = m.G(noise.normal((batch, cfg.latent_dim)), training=True)
            fake = fake + cfg.noise * noise.normal(tf.shape(fake))
            d_fake = m.D(fake, training=True)
            loss = losses.g_wasserstein(d_fake) if wasserstein else losses.f1_g_gan(d_fake)
            scaled = precision.scaled(loss * replicas.share(), state.opts["G"].loss_scale)
        precision.apply_gradients(state.opts["G"].loss_scale, sum_gradients(tape.gradient(scaled, g_vars)),
                                  state.opts["G"].apply)
        return {"loss/G": loss, "D(fake)G": tf.reduce_mean(d_fake)}

    def ae_step(x, s, noise):
        with tf.GradientTape() as tape:
            ctx = m.ctx_encoder(x, training=True)
            r_proj, c_proj = m.repr_proj(s), m.ctx_proj(ctx)
            p = tf.concat([r_proj, c_proj], axis=1)
            x_rec = m.decoder(p + 1e-4 * noise.normal(tf.shape(p)), training=True)
            rec = cfg.rec_penalty * losses.sse(x, x_rec)
            enc_norm = tf.reduce_mean(tf.norm(p, axis=1))
            # The notebook computes the representation of x_rec under no_grad: a constant term.
            s_rec = tf.stop_gradient(_encode(state, tf.stop_gradient(x_rec), cfg))
            repr_term = cfg.repr_consistency * losses.sse(s, s_rec)
            kl = losses.kl_div_batchmean(r_proj, c_proj)
            loss = rec + cfg.norm_penalty * enc_norm + repr_term - cfg.div_penalty * kl
            scaled = precision.scaled(loss * replicas.share(), state.opts["ae"].loss_scale)
        precision.apply_gradients(state.opts["ae"].loss_scale, sum_gradients(tape.gradient(scaled, ae_vars)),
                                  state.opts["ae"].apply)
        return {"Rec loss": loss, "norm": enc_norm, "rec_sse": rec, "repr_sse": repr_term, "kl": kl}

    def prepare(images):
        images = replicas.shard(images)
        x = to_imagenet(images)
        return x, tf.stop_gradient(_encode(state, x, cfg)), tf.shape(images)[0]

    def d_replica(images, seeds):
        noise = StepNoise(seeds)
        x, s, batch = prepare(images)
        out = d_step(s, batch, noise)
        out.update(ae_step(x, s, noise))
        return out

    def g_replica(images, seeds):
        noise = StepNoise(seeds)
        x, s, batch = prepare(images)
        out = g_step(batch, noise)
        out.update(ae_step(x, s, noise))
        return out

    @tf.function(jit_compile=cfg.jit_compile, autograph=False)
    def d_batch_step(images):
        seeds = state.rng.make_seeds(_STEP_SEEDS)
        return reduce_mean(strategy, strategy.run(d_replica, args=(images, seeds)))

    @tf.function(jit_compile=cfg.jit_compile, autograph=False)
    def g_batch_step(images):
        seeds = state.rng.make_seeds(_STEP_SEEDS)
        return reduce_mean(strategy, strategy.run(g_replica, args=(images, seeds)))

    return d_batch_step, g_batch_step


def is_d_batch(index: int, d_iters: int) -> bool:
    """Batch ``index`` (0-based within the epoch) is a D step iff (index + 1) % (D_iters + 1) != 0."""
    return (index + 1) % (d_iters + 1) != 0


def make_snapshot(state: F1State):
    """Progress images decoder(proj(G(z_fixed), ctx_encoder(x[:n]))) in training mode (as the notebook)."""
    m = state.model

    @tf.function(autograph=False)
    def snapshot(images):
        n = state.fixed_latent.shape[0]
        x = to_imagenet(images[:n])
        return m.decoder(m.proj(m.G(state.fixed_latent, training=True), m.ctx_encoder(x, training=True)),
                         training=True)

    return snapshot
