"""A gradient-free attack: square-window random search (after Andriushchenko et al., ECCV 2020)
adapted to dense depth regression, ℓ∞ and ℓ2, per-example ε and T (T = number of queries).

It never calls a gradient: the check that a gradient attack's failure is not gradient masking.
Start (ℓ∞): vertical stripes δ₀[h, w, c] = ±ε (a random sign per column and channel); (ℓ2) the
same stripes scaled to ‖δ₀‖₂ = ε. Query t of example i draws a square window of side
s = round(√(p_t·H·W)) at a uniform position and a sign per channel, and proposes
  ℓ∞: δ' = δ with the window set to ±ε per channel;
  ℓ2:  δ' = P(δ outside the window + the window filled with ±m per channel), m chosen so that
       ‖δ'‖₂² = ε² + p_t·ε² before the projection P (mass moves into the window);
then P (the engine's feasible set, problem.py) and keeps δ' iff its signed attack loss is
larger. p_t = P_INIT / 2^k, halved at the fractions 0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4,
0.6, 0.8 of T (the original schedule). One batched forward pass per query, in one jitted loop;
example i's randomness comes from keys[i] alone.
"""

import jax
import jax.numpy as jnp

from mde_adv.attacks import geometry, problem, spaces
from mde_adv.attacks.config import AttackConfig

P_INIT = 0.1  # initial share of the image a window covers
SCHEDULE = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def window_fraction(t: jax.Array, steps: jax.Array) -> jax.Array:
    """p_t f32[B] of query t for budgets steps int32[B]."""
    progress = t / jnp.maximum(steps.astype(jnp.float32), 1.0)
    halvings = sum((progress > f).astype(jnp.float32) for f in SCHEDULE)
    return P_INIT / (2.0**halvings)


def _stripes(key, shape, eps, norm):
    height, width, channels = shape
    signs = jax.random.rademacher(key, (1, width, channels), jnp.float32)
    stripes = jnp.broadcast_to(signs, shape)
    if norm == "linf":
        return eps * stripes
    return eps * stripes / jnp.sqrt(float(height * width * channels))


def _proposal(key, delta, eps, fraction, norm):
    """One example's proposal δ' (before the feasible-set projection)."""
    height, width, channels = delta.shape
    side = jnp.clip(jnp.round(jnp.sqrt(fraction * height * width)), 1, min(height, width))
    side = side.astype(jnp.int32)
    row_key, col_key, sign_key = jax.random.split(key, 3)
    row = jax.random.randint(row_key, (), 0, height - side + 1)
    col = jax.random.randint(col_key, (), 0, width - side + 1)
    rows = jnp.arange(height)[:, None, None]
    cols = jnp.arange(width)[None, :, None]
    window = (rows >= row) & (rows < row + side) & (cols >= col) & (cols < col + side)
    signs = jax.random.rademacher(sign_key, (1, 1, channels), jnp.float32)
    if norm == "linf":
        return jnp.where(window, eps * signs, delta)
    outside = jnp.where(window, 0.0, delta)
    room = jnp.maximum(eps**2 * (1.0 + fraction) - jnp.sum(jnp.square(outside)), 0.0)
    magnitude = jnp.sqrt(room / (channels * jnp.square(side.astype(jnp.float32))))
    return geometry.project(jnp.where(window, magnitude * signs, outside), eps, norm)


def square_delta(
    predict_fn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    steps: jax.Array,
    keys: jax.Array,
    region: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """(best δ f32[B,H,W,3] in config.space units, its objective f32[B]); T_i = 0 gives δ = 0."""
    task = problem.build(predict_fn, config, x, y, eps, region)
    start_keys, keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    delta = jax.vmap(lambda k, e: _stripes(k, x.shape[1:], e, config.norm))(start_keys, eps)
    delta = jnp.where((steps > 0)[:, None, None, None], task.constrain(delta), 0.0)
    value = task.objective(delta)

    def body(carry):
        t, delta, value = carry
        fractions = window_fraction(t, steps)
        query_keys = jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)
        propose = lambda k, d, e, f: _proposal(k, d, e, f, config.norm)
        candidate = task.constrain(jax.vmap(propose)(query_keys, delta, eps, fractions))
        candidate_value = task.objective(candidate)
        accept = (candidate_value > value) & (t < steps)
        delta = jnp.where(accept[:, None, None, None], candidate, delta)
        return t + 1, delta, jnp.where(accept, candidate_value, value)

    last = jnp.minimum(jnp.max(steps), config.t_max)
    _, delta, value = jax.lax.while_loop(lambda c: c[0] < last, body, (0, delta, value))
    return delta, value


def square_batch(predict_fn, config, x, y, eps, steps, keys, region) -> jax.Array:
    """x_adv f32[B,H,W,3] (normalised) of the square search; the engine's entry points call it."""
    delta, _ = square_delta(predict_fn, config, x, y, eps, steps, keys, region)
    return x + spaces.to_normalised(delta, config.space)
