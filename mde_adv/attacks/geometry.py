"""Per-example geometry of the threat models: step directions, ball projections, random starts.

Every function treats its whole array argument as ONE example (the engine vmaps over the
batch); ε and α are scalars in the attack's space.
"""

import jax
import jax.numpy as jnp


def _scaled(v: jax.Array) -> jax.Array:
    """v / max|v| (v itself when v == 0): norms of it neither underflow nor overflow."""
    peak = jnp.max(jnp.abs(v))
    return v / jnp.where(peak > 0, peak, 1.0)


def l2_direction(v: jax.Array) -> jax.Array:
    """v / ‖v‖₂, or zeros when v == 0 (safe for tiny and zero gradients)."""
    scaled = _scaled(v)
    norm = jnp.sqrt(jnp.sum(jnp.square(scaled)))
    return jnp.where(norm > 0, scaled / jnp.where(norm > 0, norm, 1.0), 0.0)


def l1_normalise(v: jax.Array) -> jax.Array:
    """v / ‖v‖₁, or zeros when v == 0 (MI-FGSM's gradient normalisation)."""
    scaled = _scaled(v)
    norm = jnp.sum(jnp.abs(scaled))
    return jnp.where(norm > 0, scaled / jnp.where(norm > 0, norm, 1.0), 0.0)


def step_direction(direction: jax.Array, norm: str) -> jax.Array:
    """Unit ascent step: sign(g) for 'linf', g/‖g‖₂ for 'l2'."""
    if norm == "linf":
        return jnp.sign(direction)
    return l2_direction(direction)


def l2_norm(v: jax.Array) -> jax.Array:
    """‖v‖₂ computed without underflow or overflow."""
    peak = jnp.max(jnp.abs(v))
    return peak * jnp.sqrt(jnp.sum(jnp.square(_scaled(v))))


def project(delta: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """Euclidean projection of δ onto the ε-ball: clip to [−ε, ε] ('linf') or δ·min(1, ε/‖δ‖₂)."""
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    length = l2_norm(delta)
    factor = jnp.where(length > eps, eps / jnp.where(length > 0, length, 1.0), 1.0)
    return delta * factor


def random_start(key: jax.Array, shape: tuple[int, ...], eps: jax.Array, norm: str) -> jax.Array:
    """δ₀ uniform in the ε-ball: U(−ε, ε) per coordinate ('linf'), or for 'l2' a uniform
    direction times radius ε·u^(1/n), u ~ U(0, 1), n = number of coordinates."""
    if norm == "linf":
        return eps * jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
    direction_key, radius_key = jax.random.split(key)
    direction = l2_direction(jax.random.normal(direction_key, shape, jnp.float32))
    size = 1
    for dim in shape:
        size *= dim
    radius = eps * jnp.exp(jnp.log(jax.random.uniform(radius_key, (), jnp.float32)) / size)
    return radius * direction


def random_surface(key: jax.Array, shape: tuple[int, ...], eps: jax.Array, norm: str) -> jax.Array:
    """δ on the ε-ball's boundary at random: every entry ±ε with equal odds ('linf', a random
    corner, the size of an FGSM step), or a uniform direction of length ε ('l2')."""
    if norm == "linf":
        return eps * jnp.where(jax.random.bernoulli(key, 0.5, shape), 1.0, -1.0)
    return eps * l2_direction(jax.random.normal(key, shape, jnp.float32))
