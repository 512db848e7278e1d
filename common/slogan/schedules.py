"""Schedules of SLOGAN, all driven by the global step s = number of discriminator updates done (spec §1.8).

Timing inside one outer iteration i (``n_critic`` = 1): the D step reads s = i *before* it increments s,
and the joint G / E / prior step runs after the increment, reading s = i + 1. With ``n_critic`` > 1, s
advances ``n_critic`` times per outer iteration, so every rate reaches 0 after ``iterations / n_critic``
outer iterations (an oddity of the original that is reproduced).

Every function accepts Python numbers or tensors and returns float32 tensors; the arithmetic order copies
the original graph so that float32 values match it.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

D_LR_FACTOR = 4.0  # Adam(D) runs at 4x the G/E learning rate.
MU_LR_FACTOR = 10.0  # SGD on the means runs at 10x the Stein step size (paper Eq. 3 uses 1x; the code decides).


def _as_step(step) -> tf.Tensor:
    return tf.cast(step, tf.float32)


def linear_decay(step, iterations: int) -> tf.Tensor:
    """decay(s) = max(0, 1 - s / I): the factor of every learning rate.

    Args:
        step: global step s (int or scalar tensor).
        iterations: I, the ``--iterations`` flag.
    Returns:
        float32 scalar in [0, 1].
    """
    return tf.maximum(0.0, 1.0 - _as_step(step) / tf.cast(iterations, tf.float32))


def temperature(step, iterations: int, start: float, end: float) -> tf.Tensor:
    """temp(s) = max(0, start + s * (end - start) / I).

    Synthetic defaults (1 -> -4) reach 0 at s = I / 5 and switch the U2C term and its margin off for the
    rest of the run; CIFAR-2 defaults (1 -> 0) decay linearly over the whole run.
    """
    return tf.maximum(0.0, start + _as_step(step) * (end - start) / tf.cast(iterations, tf.float32))


def u2c_weight(coeff: float, temp) -> tf.Tensor:
    """λ_t = coeff * temp(s), the weight of the U2C loss in the generator objective."""
    return coeff * tf.cast(temp, tf.float32)


class LearningRates(NamedTuple):
    """Learning rates at one global step (all float32 scalars), spec §1.9 table."""

    d: tf.Tensor  # Adam(D): 4 lr decay
    g: tf.Tensor  # Adam(G): lr decay
    e: tf.Tensor  # Adam(E): lr decay
    mu: tf.Tensor  # SGD(μ): 10 lr_stein decay
    sigma: tf.Tensor  # SGD(Σ): lr_stein decay; also the γ_t inside the PD-preserving Σ step
    rho: tf.Tensor  # SGD(ρ): lr_stein decay


def learning_rates(step, iterations: int, lr: float, lr_stein: float) -> LearningRates:
    """All learning rates at global step ``step``.

    Callers pass the step each update reads: s for the D step, s + 1 (after the D increment) for the
    G / E / prior step.
    """
    decay = linear_decay(step, iterations)
    g = lr * decay
    stein = lr_stein * decay
    return LearningRates(d=D_LR_FACTOR * g, g=g, e=g, mu=stein * MU_LR_FACTOR, sigma=stein, rho=stein)
