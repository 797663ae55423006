"""The optimisation problem an attack solves on a batch, shared by APGD and the square search.

For a batch x f32[B,H,W,3] (normalised) the problem is: maximise, per example i, the signed
attack loss s·ℓ_i(predict_fn(x + δ_i)) (s = −1 for a targeted attack) over δ_i in the ε_i-ball
of the config's norm, in the config's ε space, δ_i ⊙ m_i for a region mask m, and for
'pixel' inside the [0, 1] box. Same semantics as the engine's IFGSM loop (engine.py).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mde_adv.alignment import AttackLoss, aligned_loss
from mde_adv.attacks import geometry, spaces
from mde_adv.attacks.config import AttackConfig
from mde_adv.losses import attack_loss


class Problem(NamedTuple):
    """objective(δ[B,H,W,3]) -> f32[B] (to maximise); constrain(δ) -> δ in the feasible set;
    gradient(δ) -> (objective f32[B], ∇ f32[B,H,W,3]) in one forward and backward pass (the
    region mask applied to the gradient)."""

    objective: Callable[[jax.Array], jax.Array]
    constrain: Callable[[jax.Array], jax.Array]
    gradient: Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def loss_function(config: AttackConfig) -> AttackLoss:
    """The per-example loss ℓ(pred, reference, mask=None) -> f32[B] of the config: its
    `loss`, measured after the per-image alignment of pred when config.align is set."""
    loss = attack_loss(config.loss)
    return loss if config.align is None else aligned_loss(loss, config.align)


def reference_depth(predict_fn, config: AttackConfig, x: jax.Array, y) -> jax.Array:
    """The loss's reference depth: y, or the stop-gradient clean prediction; times
    config.target_scale."""
    reference = y
    if config.target == "clean_prediction":
        reference = jax.lax.stop_gradient(predict_fn(x))
    return config.target_scale * reference


def build(
    predict_fn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    region: jax.Array | None,
) -> Problem:
    """The problem of a batch: eps f32[B] in config.space units, region f32[B,H,W,1] or None."""
    loss_fn = loss_function(config)
    reference = reference_depth(predict_fn, config, x, y)
    sign = -1.0 if config.targeted else 1.0

    def objective(delta):
        depth = predict_fn(x + spaces.to_normalised(delta, config.space))
        return sign * loss_fn(depth, reference)

    box = spaces.pixel_box(x) if config.space == "pixel" else None

    def constrain_one(delta, eps, box, region):
        if region is not None:
            delta = delta * region
        delta = geometry.project(delta, eps, config.norm)
        if box is not None:
            delta = jnp.clip(delta, *box)
        return delta

    def constrain(delta):
        return jax.vmap(constrain_one)(delta, eps, box, region)

    def gradient(delta):
        values, pullback = jax.vjp(objective, delta)
        (grad,) = pullback(jnp.ones_like(values))
        if region is not None:
            grad = grad * region
        return values, grad

    return Problem(objective, constrain, gradient)


def random_starts(config: AttackConfig, keys: jax.Array, shape, eps: jax.Array) -> jax.Array:
    """δ₀ f32[B, *shape] uniform in each example's ε-ball (geometry.random_start), one key each."""
    return jax.vmap(lambda key, e: geometry.random_start(key, shape, e, config.norm))(keys, eps)
