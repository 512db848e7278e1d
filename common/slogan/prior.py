"""The learnable Gaussian-mixture prior of SLOGAN and its Stein updates (spec §1.2, §1.3, §1.7).

q(z) = Σ_c π_c N(z; μ_c, Σ_c) with π = softmax(ρ) and full covariances. The mixture parameters never
receive autodiff gradients: samples are leaves (``tf.stop_gradient``), and each step estimates the
gradients of the generator loss w.r.t. μ, Σ and ρ from the per-sample gradient g_b = ∂(Σ ℓ)/∂z_b with
the Bonnet / Price identities (paper Eqs. 3-7), then takes plain SGD steps. The Σ step keeps Σ positive
definite (paper Theorem 3).

Everything except :class:`GaussianMixturePrior` is a pure function of tensors, shapes in the docstrings:
B = batch, K = components, d = latent dimension.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions

MEAN_INIT_STD = 0.1  # μ_c ~ N(0, 0.1²) i.i.d. (the paper writes "N(0, 0.1)")
GUMBEL_EPS = 1e-20  # inside both logs of the Gumbel noise, as in the original


def symmetrize(m):
    """sym(A) = (A + Aᵀ) / 2 over the last two axes."""
    return 0.5 * (m + tf.linalg.matrix_transpose(m))


def mixture_components(means, covariances) -> list:
    """K full-covariance normals N(μ_c, Σ_c) (TFP ``MultivariateNormalTriL`` on chol(Σ_c)).

    Equivalent to the original's ``MultivariateNormalFullCovariance``: both read only the lower triangle
    of Σ_c through its Cholesky factor.

    Args:
        means: [K, d]; covariances: [K, d, d].
    """
    scale_tril = tf.linalg.cholesky(covariances)
    return [tfd.MultivariateNormalTriL(loc=means[c], scale_tril=scale_tril[c]) for c in range(means.shape[0])]


def mixture_distribution(pi, means, covariances):
    """q(z) as ``tfd.Mixture(Categorical(probs=π), [N(μ_c, Σ_c)])``; ``pi`` [K], means [K, d], covs [K, d, d]."""
    return tfd.Mixture(cat=tfd.Categorical(probs=pi), components=mixture_components(means, covariances))


def responsibility_logits(z, pi, means, covariances):
    """logit_bc = log N(z_b; μ_c, Σ_c) + log π_c - log q(z_b): normalised log-responsibilities (spec §1.3).

    Differentiable w.r.t. z (this path is part of ∂ℓ/∂z).

    Args:
        z: [B, d]; pi: [K]; means: [K, d]; covariances: [K, d, d].
    Returns:
        [B, K]; softmax over K gives r_bc = q(c | z_b).
    """
    components = mixture_components(means, covariances)
    mixture = tfd.Mixture(cat=tfd.Categorical(probs=pi), components=components)
    log_q = mixture.log_prob(z)
    log_pi = tf.math.log(pi)
    return tf.stack([components[c].log_prob(z) + log_pi[c] - log_q for c in range(len(components))], axis=1)


def gumbel_softmax(logits, tau: float, uniform):
    """Soft Gumbel-softmax pick C_b = softmax((logit_b + g_b) / τ), g = -log(-log(U + 1e-20) + 1e-20).

    Args:
        logits: [B, K].
        tau: temperature τ (0.1 in the synthetic script, 0.01 in cifar2).
        uniform: U ~ Uniform[0, 1), same shape as ``logits`` (drawn by the caller from its generator).
    Returns:
        [B, K] rows on the simplex.
    """
    gumbel = -tf.math.log(-tf.math.log(uniform + GUMBEL_EPS) + GUMBEL_EPS)
    return tf.nn.softmax((logits + gumbel) / tau)


def soft_prototypes(pick, means):
    """m_b = Σ_k C_bk μ_k: [B, K] @ [K, d] -> [B, d]."""
    return tf.matmul(pick, means)


def symmetric_precision(covariances):
    """P_c = sym(inv(Σ_c)), [K, d, d]."""
    return symmetrize(tf.linalg.inv(covariances))


def bonnet_mean_gradient(resp, dldz):
    """gμ_c = (1/B) Σ_b r_bc g_b (Bonnet's theorem, paper Eq. 3).

    Args:
        resp: r [B, K]; dldz: g [B, d].
    Returns:
        [K, d].
    """
    return tf.reduce_mean(resp[:, :, None] * dldz[:, None, :], axis=0)


def price_covariance_gradient(resp, z, means, precision, dldz):
    """N_c = sym(S_c), S_c = (1/B) Σ_b r_bc P_c (z_b - μ_c) g_bᵀ (Price's theorem, paper Eq. 4 times 2).

    The code drops the 1/2 of paper Eq. 4; with the update of :func:`pd_covariance_direction` this is
    exactly the paper's rule with step 2γ (spec §1.7). P_c is factored out of the batch sum, which is the
    same matrix as the original's [B, K, d, d] product without materialising it.

    Args:
        resp: [B, K]; z: [B, d]; means: [K, d]; precision: P [K, d, d]; dldz: [B, d].
    Returns:
        [K, d, d] symmetric.
    """
    centred = z[:, None, :] - means[None, :, :]  # [B, K, d]
    batch = tf.cast(tf.shape(z)[0], z.dtype)
    weighted = tf.transpose(resp[:, :, None] * centred, [1, 2, 0])  # [K, d, B]
    outer = tf.matmul(weighted, dldz[None]) / batch  # (1/B) Σ_b r_bc (z_b - μ_c) g_bᵀ, [K, d, d]
    return symmetrize(tf.matmul(precision, outer))


def pd_covariance_direction(nabla, precision, gamma):
    """G_c = sym(N_c - (γ/2) N_c P_c N_c); Σ_c - γ G_c stays positive definite (paper Eqs. 5-6, Thm. 3).

    With P = Σ⁻¹: Σ - γ G = ½Σ + ½(Σ - γN) Σ⁻¹ (Σ - γN).

    Args:
        nabla: N [K, d, d]; precision: P [K, d, d]; gamma: γ_t = lr_stein·decay(s), scalar.
    """
    return symmetrize(nabla - 0.5 * gamma * nabla @ precision @ nabla)


def mixing_logit_gradient(resp, pi, adversarial_loss):
    """gρ_c = (1/B) Σ_b (r_bc - π_c) ℓ_adv,b with ℓ_adv,b = -D(G(z_b)) only (paper Eq. 7).

    Σ_c gρ_c = 0, so Σ_c ρ_c keeps its initial value 1.

    Args:
        resp: [B, K]; pi: [K]; adversarial_loss: [B, 1] or [B].
    Returns:
        [K].
    """
    adversarial_loss = tf.reshape(adversarial_loss, [-1, 1])
    return tf.reduce_mean((resp - pi[None, :]) * adversarial_loss, axis=0)


class SteinGradients(NamedTuple):
    """Gradient estimates of the three SGD steps: mu [K, d], sigma [K, d, d] (= G_c), rho [K]."""

    mu: tf.Tensor
    sigma: tf.Tensor
    rho: tf.Tensor


def stein_gradients(z, dldz, resp, pi, means, covariances, adversarial_loss, gamma) -> SteinGradients:
    """All Stein estimates from one batch (spec §1.7).

    Args:
        z: the leaf samples [B, d].
        dldz: g = ∂(Σ_b ℓ_b)/∂z [B, d] (gradient of the *sum* of per-sample generator losses).
        resp: r = softmax(responsibility logits) [B, K].
        pi: [K]; means: [K, d]; covariances: [K, d, d] (pre-step values).
        adversarial_loss: -D(G(z)) [B, 1].
        gamma: γ_t = lr_stein·decay(s) (the Σ step size, also inside G_c).
    """
    precision = symmetric_precision(covariances)
    nabla = price_covariance_gradient(resp, z, means, precision, dldz)
    return SteinGradients(
        mu=bonnet_mean_gradient(resp, dldz),
        sigma=pd_covariance_direction(nabla, precision, gamma),
        rho=mixing_logit_gradient(resp, pi, adversarial_loss),
    )


def all_finite(tensors) -> tf.Tensor:
    """True when every element of every tensor is finite (the TF1 mixed-precision wrapper's test)."""
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(t)) for t in tensors])


class GaussianMixturePrior(tf.Module):
    """The variables of q(z): one ρ [K], and K separate μ_c [d] and Σ_c [d, d] (checkpoint names mu_c, sigma_c).

    Initial values: ρ = 1/K (π uniform), μ_c ~ N(0, 0.1²) with a stateless draw seeded by (seed, c),
    Σ_c = I.

    Args:
        num_components: K (``--num_cluster``).
        latent_dim: d (``--latent_dim``).
        seed: seed of the μ initialisation.
    """

    def __init__(self, num_components: int, latent_dim: int, seed: int = 0, name: str = "prior"):
        super().__init__(name=name)
        self.num_components = int(num_components)
        self.latent_dim = int(latent_dim)
        self.rho = tf.Variable(tf.fill([self.num_components], 1.0 / self.num_components), name="rho")
        self.mu = [
            tf.Variable(
                MEAN_INIT_STD * tf.random.stateless_normal([self.latent_dim], seed=[int(seed), c]), name=f"mu_{c}"
            )
            for c in range(self.num_components)
        ]
        self.sigma = [tf.Variable(tf.eye(self.latent_dim), name=f"sigma_{c}") for c in range(self.num_components)]

    @property
    def pi(self):
        """π = softmax(ρ), [K]."""
        return tf.nn.softmax(self.rho)

    def means(self):
        """[K, d] stack of the current μ_c."""
        return tf.stack([m.read_value() for m in self.mu])

    def covariances(self):
        """[K, d, d] stack of the current Σ_c."""
        return tf.stack([s.read_value() for s in self.sigma])

    def distribution(self):
        """q(z) built from the current values (rebuild it after every update)."""
        return mixture_distribution(self.pi, self.means(), self.covariances())

    def sample(self, n: int, seed):
        """n samples of q(z) as a gradient-free leaf [n, d]; ``seed`` is a stateless [2] int seed."""
        return tf.stop_gradient(self.distribution().sample(n, seed=seed))

    def sample_component(self, c: int, n, seed):
        """n samples of component c, [n, d]."""
        component = mixture_components(self.means(), self.covariances())[c]
        return tf.stop_gradient(component.sample(n, seed=seed))

    def apply_stein_updates(self, grads: SteinGradients, lr_mu, lr_sigma, lr_rho, skip_nonfinite: bool = True):
        """SGD steps μ_c -= lr_mu gμ_c, Σ_c -= lr_sigma G_c, ρ -= lr_rho gρ (spec §1.7 and §1.9).

        Each of the three groups is skipped as a whole when one of its gradients is non-finite and
        ``skip_nonfinite`` is True (what the original's mixed-precision wrappers did).

        Returns:
            dict of bool tensors ``{"mu": applied, "sigma": applied, "rho": applied}``.
        """
        applied = {}
        groups = (("mu", self.mu, grads.mu, lr_mu), ("sigma", self.sigma, grads.sigma, lr_sigma),
                  ("rho", [self.rho], grads.rho[None], lr_rho))
        for name, variables, gradient, lr in groups:
            ok = all_finite([gradient]) if skip_nonfinite else tf.constant(True)
            gradient = tf.where(ok, gradient, tf.zeros_like(gradient))
            for c, variable in enumerate(variables):
                variable.assign_sub(lr * gradient[c])
            applied[name] = ok
        return applied
