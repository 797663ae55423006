"""Algorithm 1's per-example draw (lines 4–7): adversarial or clean, ε and T, from PRNG keys."""

import jax
import jax.numpy as jnp

ALGORITHM1_P_ADVERSARIAL = 0.5  # line 5: adversarial iff p > 0.5, p ~ U(0, 1)
ALGORITHM1_EPS_RANGE = (0.01, 0.3)  # line 6: ε ~ U(0.01, 0.3)
ALGORITHM1_STEPS_RANGE = (1, 10)  # line 7: T ~ U{1, ..., 10}


def example_keys(key: jax.Array, batch_size: int, first_index: int | jax.Array = 0) -> jax.Array:
    """One key per example: fold_in(key, first_index + i), i < batch_size (keys[B]).

    An example's key depends only on its global index, not on the batch it sits in.
    """
    indices = first_index + jnp.arange(batch_size, dtype=jnp.int32)
    return jax.vmap(lambda index: jax.random.fold_in(key, index))(indices)


def _draw(key, p_adversarial, eps_range, steps_range):
    coin_key, eps_key, steps_key = jax.random.split(key, 3)
    coin = jax.random.uniform(coin_key, (), jnp.float32)
    eps = jax.random.uniform(eps_key, (), jnp.float32, eps_range[0], eps_range[1])
    steps = jax.random.randint(steps_key, (), steps_range[0], steps_range[1] + 1, jnp.int32)
    return coin > 1.0 - p_adversarial, eps, steps


def sample_algorithm1(
    keys: jax.Array,
    *,
    p_adversarial: float = ALGORITHM1_P_ADVERSARIAL,
    eps_range: tuple[float, float] = ALGORITHM1_EPS_RANGE,
    steps_range: tuple[int, int] = ALGORITHM1_STEPS_RANGE,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(is_adv bool[B], eps f32[B], steps int32[B]) from one key per example (keys[B] typed or
    [B, 2] raw, e.g. from `example_keys`): is_adv iff p > 1 − p_adversarial with p ~ U(0, 1),
    eps ~ U(eps_range), steps ~ U{steps_range[0], ..., steps_range[1]} (both ends included).
    The defaults are Algorithm 1's; a pure function of the keys.
    """
    p_adversarial = float(p_adversarial)
    if not 0.0 <= p_adversarial <= 1.0:
        raise ValueError(f"p_adversarial must be in [0, 1], got {p_adversarial}")
    eps_low, eps_high = (float(v) for v in eps_range)
    if not 0.0 <= eps_low <= eps_high < float("inf"):
        raise ValueError(f"eps_range must satisfy 0 <= low <= high < inf, got {eps_range}")
    steps_low, steps_high = (int(v) for v in steps_range)
    if not 1 <= steps_low <= steps_high or (steps_low, steps_high) != tuple(steps_range):
        raise ValueError(f"steps_range must be integers 1 <= low <= high, got {steps_range}")
    draw = lambda key: _draw(key, p_adversarial, (eps_low, eps_high), (steps_low, steps_high))
    return jax.vmap(draw)(keys)
