"""APGD (Croce & Hein, ICML 2020) for dense depth regression, ℓ∞ and ℓ2, per-example ε and T.

Example i runs T_i iterations from δ₀ = 0 or, with config.random_start, a uniform point of its
ε_i-ball (AutoAttack's start; `attack_with_restarts` adds random restarts), with the initial
step η₀ = 2ε_i (or config.alpha). Iteration t, with g the gradient at δ_t and a = 1 at t = 0,
else the momentum weight (config.momentum, 0.75):

    z       = P(δ_t + η·step(g))                      step: sign (ℓ∞) or g/‖g‖₂ (ℓ2)
    δ_{t+1} = P(δ_t + a·(z − δ_t) + (1 − a)·(δ_t − δ_{t−1}))

P is the engine's feasible set (region mask, ε-ball, [0, 1] box in pixel space; problem.py).
The best iterate (largest signed attack loss) is kept. Checkpoints: the first after
w₁ = max(⌊0.22·T⌋, 1) iterations, then every w_j = max(w_{j−1} − max(⌊0.03·T⌋, 1),
max(⌊0.06·T⌋, 1)) iterations. At a checkpoint the step η is halved and the iterate reset to
the best one when (1) the loss increased in at most ρ·w (ρ = 0.75) of the iterations since
the last checkpoint, or (2) the step was not halved at the last checkpoint and the best loss
did not improve since. Every counter is per example, in one jitted while loop bounded by the
batch's largest T; each iteration is one batched forward and backward pass (plus one at the
start: T + 1 passes in all).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mde_adv.attacks import geometry, problem, spaces
from mde_adv.attacks.config import AttackConfig

INITIAL_STEP = 2.0  # η₀ = 2ε (AutoAttack, ℓ∞ and ℓ2)
FIRST_CHECKPOINT = 0.22  # w₁ = ⌊0.22·T⌋
PERIOD_DECREMENT = 0.03  # w_j shrinks by ⌊0.03·T⌋ ...
MIN_PERIOD = 0.06  # ... down to ⌊0.06·T⌋
RHO = 0.75  # condition (1): at most ρ·w increases


class _State(NamedTuple):
    delta: jax.Array  # [B,H,W,3] current iterate
    previous: jax.Array  # [B,H,W,3] the iterate before it (momentum)
    value: jax.Array  # [B] objective at delta
    grad: jax.Array  # [B,H,W,3] its gradient
    best_delta: jax.Array
    best_value: jax.Array
    best_grad: jax.Array
    step: jax.Array  # [B] η
    counter: jax.Array  # [B] iterations since the last checkpoint
    period: jax.Array  # [B] w_j
    increases: jax.Array  # [B] loss increases since the last checkpoint
    halved_last: jax.Array  # [B] bool: η was halved at the last checkpoint
    best_at_check: jax.Array  # [B] best value at the last checkpoint


def _fraction(steps: jax.Array, fraction: float) -> jax.Array:
    return jnp.maximum(jnp.floor(fraction * steps.astype(jnp.float32)).astype(jnp.int32), 1)


def _where(mask: jax.Array, new, old):
    """Per-example select of two pytrees of [B, ...] leaves."""

    def one(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(one, new, old)


def apgd_delta(
    predict_fn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    steps: jax.Array,
    keys: jax.Array | None,
    region: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """(best δ f32[B,H,W,3] in config.space units, its objective f32[B]); T_i = 0 gives δ = 0."""
    task = problem.build(predict_fn, config, x, y, eps, region)
    per_example = lambda v: v[:, None, None, None]
    delta = jnp.zeros_like(x)
    if config.random_start:
        delta = task.constrain(problem.random_starts(config, keys, x.shape[1:], eps))
    delta = jnp.where(per_example(steps > 0), delta, 0.0)
    value, grad = task.gradient(delta)
    step = INITIAL_STEP * eps if config.alpha is None else jnp.full_like(eps, config.alpha)
    zeros = jnp.zeros_like(steps)
    state = _State(
        delta, delta, value, grad, delta, value, grad, step,
        counter=zeros,
        period=_fraction(steps, FIRST_CHECKPOINT),
        increases=zeros,
        halved_last=jnp.zeros(steps.shape, bool),
        best_at_check=value,
    )  # fmt: skip
    decrement = _fraction(steps, PERIOD_DECREMENT)
    min_period = _fraction(steps, MIN_PERIOD)
    direction_of = jax.vmap(lambda g: geometry.step_direction(g, config.norm))

    def body(carry):
        t, s = carry
        z = task.constrain(s.delta + per_example(s.step) * direction_of(s.grad))
        a = jnp.where(t == 0, 1.0, config.momentum)
        candidate = task.constrain(s.delta + a * (z - s.delta) + (1.0 - a) * (s.delta - s.previous))
        value, grad = task.gradient(candidate)
        improved = value > s.best_value
        best_delta, best_value, best_grad = _where(
            improved, (candidate, value, grad), (s.best_delta, s.best_value, s.best_grad)
        )
        counter = s.counter + 1
        increases = s.increases + (value > s.value).astype(jnp.int32)
        at_check = counter >= s.period
        oscillating = increases.astype(jnp.float32) <= RHO * s.period.astype(jnp.float32)
        stalled = ~s.halved_last & (s.best_at_check >= best_value)
        halve = at_check & (oscillating | stalled)
        delta, grad = _where(halve, (best_delta, best_grad), (candidate, grad))
        new = _State(
            delta=delta,
            previous=s.delta,
            value=value,
            grad=grad,
            best_delta=best_delta,
            best_value=best_value,
            best_grad=best_grad,
            step=jnp.where(halve, s.step / 2.0, s.step),
            counter=jnp.where(at_check, 0, counter),
            period=jnp.where(at_check, jnp.maximum(s.period - decrement, min_period), s.period),
            increases=jnp.where(at_check, 0, increases),
            halved_last=jnp.where(at_check, halve, s.halved_last),
            best_at_check=jnp.where(at_check, best_value, s.best_at_check),
        )
        return t + 1, _where(t < steps, new, s)

    last = jnp.minimum(jnp.max(steps), config.t_max)
    _, state = jax.lax.while_loop(lambda c: c[0] < last, body, (0, state))
    return state.best_delta, state.best_value


def apgd_batch(predict_fn, config, x, y, eps, steps, keys, region) -> jax.Array:
    """x_adv f32[B,H,W,3] (normalised) of APGD; the engine's entry points call it."""
    delta, _ = apgd_delta(predict_fn, config, x, y, eps, steps, keys, region)
    return x + spaces.to_normalised(delta, config.space)
