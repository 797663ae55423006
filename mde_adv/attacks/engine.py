"""The attack engine: FGSM / IFGSM / PGD / MI-FGSM, ℓ∞ or ℓ2, in either ε space, per-example ε
and T in one compiled loop (APGD and the square search run their own loops, apgd.py and
square.py, behind the same entry points). Used alike by training (`attack_traced` inside a
jitted step) and evaluation (`attack`, `eps_sweep`: validated and jitted).

The attacked function is any `predict_fn(x[B,H,W,3] normalised) -> depth[B,h,w,1]` (N, the
pipeline x ↦ N(x ⊗ G(x)), ...) that treats examples independently (models in inference
mode). Each iteration is ONE batched forward and backward pass: the gradient of the summed
per-example losses w.r.t. the batched δ, whose row i is ∇_{δ_i} ℓ_i because example i's
prediction does not depend on δ_j for j ≠ i. Example i takes T_i steps of (Eq. 1, for ℓ∞ and
the default α of ifgsm)

    δ ← Clip_box(Proj_ε(m ⊙ (δ + α·step(∇_δ ℓ))))

where step is sign(·) (ℓ∞) or ·/‖·‖₂ (ℓ2), m is the optional region mask (also applied to the
gradient), Proj_ε the projection onto the ε-ball, Clip_box the [0, 1] clip of pixel space;
x_adv = x + δ in normalised units. The loop (a while_loop) runs max_i T_i iterations, example i
stops changing after T_i, and T_i = 0 leaves example i unchanged; ε and T are traced values,
so new ones never recompile.
"""

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from mde_adv.attacks import geometry, spaces
from mde_adv.attacks.apgd import apgd_batch
from mde_adv.attacks.config import AttackConfig
from mde_adv.attacks.sampler import example_keys
from mde_adv.attacks.square import square_batch
from mde_adv.attacks.validation import validate_attack_args, validate_eps_values
from mde_adv.losses import attack_loss

PredictFn = Callable[[jax.Array], jax.Array]
SEARCH_BATCHES = {"apgd": apgd_batch, "square": square_batch}


def step_size(config: AttackConfig, eps: jax.Array, steps: jax.Array) -> jax.Array:
    """α of one example (in ε's units): config.alpha, else the method's default."""
    if config.alpha is not None:
        return jnp.asarray(config.alpha, jnp.float32)
    if config.method == "fgsm":
        return eps
    if config.method == "apgd":
        return 2.0 * eps  # its initial step (halved at checkpoints, apgd.py)
    if config.method == "pgd":
        return 2.5 * eps / jnp.maximum(steps, 1.0)
    if config.method == "mifgsm":
        return eps / jnp.maximum(steps, 1.0)
    return jnp.ones_like(eps)


def _per_example(fn, *args):
    """fn applied to each example of batched args (None args stay None)."""
    return jax.vmap(fn)(*args)


def _noise_batch(config, x, eps, steps, keys, region) -> jax.Array:
    """x + δ with δ a random point of the ε-ball's surface (geometry.random_surface), masked
    by the region and clipped to the pixel box like every attack; T = 0 leaves x unchanged."""
    draw = lambda key, e: geometry.random_surface(key, x.shape[1:], e, config.norm)
    delta = _per_example(draw, keys, eps)
    if region is not None:
        delta = delta * region
    if config.space == "pixel":
        delta = jnp.clip(delta, *spaces.pixel_box(x))
    delta = jnp.where((steps > 0)[:, None, None, None], delta, 0.0)
    return x + spaces.to_normalised(delta, config.space)


def _attack_batch(
    predict_fn: PredictFn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    steps: jax.Array,
    keys: jax.Array | None,
    region: jax.Array | None,
) -> jax.Array:
    """The attack on a batch x[B,H,W,3] (normalised) with eps f32[B] and steps int32[B]."""
    if config.method in SEARCH_BATCHES:  # apgd, square: their own loop, same conventions
        return SEARCH_BATCHES[config.method](predict_fn, config, x, y, eps, steps, keys, region)
    if config.method == "noise":
        return _noise_batch(config, x, eps, steps, keys, region)
    loss_fn = attack_loss(config.loss)
    if config.target == "clean_prediction":
        reference = jax.lax.stop_gradient(predict_fn(x))
    else:
        reference = y
    reference = config.target_scale * reference
    direction_sign = -1.0 if config.targeted else 1.0

    def objective(delta):
        """Σ_i ±ℓ_i(δ_i): its gradient's row i is ±∇ℓ_i(δ_i) (examples are independent)."""
        depth = predict_fn(x + spaces.to_normalised(delta, config.space))
        return direction_sign * jnp.sum(loss_fn(depth, reference))

    box = spaces.pixel_box(x) if config.space == "pixel" else None

    def constrain_one(delta, eps, box, region):
        if region is not None:
            delta = delta * region
        delta = geometry.project(delta, eps, config.norm)
        if box is not None:
            delta = jnp.clip(delta, *box)
        return delta

    def constrain(delta):
        return _per_example(constrain_one, delta, eps, box, region)

    def step_direction(direction):
        return _per_example(lambda d: geometry.step_direction(d, config.norm), direction)

    alpha = jnp.broadcast_to(step_size(config, eps, steps.astype(jnp.float32)), eps.shape)
    alpha = alpha[:, None, None, None]
    zeros = jnp.zeros_like(x)
    delta = zeros
    if config.random_start:
        start = lambda key, e: geometry.random_start(key, x.shape[1:], e, config.norm)
        delta = constrain(_per_example(start, keys, eps))
        delta = jnp.where((steps > 0)[:, None, None, None], delta, 0.0)

    def body(carry):
        t, delta, velocity = carry
        gradient = jax.grad(objective)(delta)
        if region is not None:
            gradient = gradient * region
        if config.method == "mifgsm":
            normalised = _per_example(geometry.l1_normalise, gradient)
            new_velocity = config.momentum * velocity + normalised
            direction = new_velocity
        else:
            new_velocity, direction = velocity, gradient
        new_delta = constrain(delta + alpha * step_direction(direction))
        active = (t < steps)[:, None, None, None]
        velocity = jnp.where(active, new_velocity, velocity)
        return t + 1, jnp.where(active, new_delta, delta), velocity

    last = jnp.minimum(jnp.max(steps), config.t_max)
    _, delta, _ = jax.lax.while_loop(lambda c: c[0] < last, body, (0, delta, zeros))
    return x + spaces.to_normalised(delta, config.space)


def attack_traced(
    predict_fn: PredictFn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps: jax.Array | float,
    steps: jax.Array | int,
    config: AttackConfig,
    keys: jax.Array | None = None,
    region_mask: jax.Array | None = None,
) -> jax.Array:
    """x_adv f32[B,H,W,3] (normalised, under stop_gradient); traceable, no value checks.

    x: f32[B,H,W,3] normalised images. y: f32[B,h,w,1] depth in metres (ground truth, or the
    target map of a targeted attack; another size is resized to the prediction's; NaN pixels
    are ignored), None when config.target == 'clean_prediction'. eps: f32[B] or scalar radius
    in config.space units. steps: int32[B] or scalar T, 0 ≤ T ≤ config.t_max (not checked
    here; T = 0 returns the example unchanged, e.g. the clean half of Algorithm 1's batch).
    keys: one PRNG key per example ([B] typed or [B, 2] raw), needed for
    random_start. region_mask: f32[B,H,W,1] in [0, 1] restricting δ to a region.
    """
    if not isinstance(config, AttackConfig):
        raise TypeError(f"config must be an AttackConfig, got {type(config).__name__}")
    chex.assert_rank(x, 4)
    chex.assert_axis_dimension(x, 3, 3)
    chex.assert_type(x, jnp.float32)
    if (y is None) != (config.target == "clean_prediction"):
        raise ValueError(f"y must be given iff target='ground_truth' (target={config.target!r})")
    if config.random_start and keys is None:
        raise ValueError("random_start needs PRNG keys (keys=None)")
    if region_mask is not None:
        chex.assert_shape(region_mask, (*x.shape[:3], 1))
    batch = x.shape[0]
    eps = jnp.broadcast_to(jnp.asarray(eps, jnp.float32), (batch,))
    steps = jnp.broadcast_to(jnp.asarray(steps, jnp.int32), (batch,))
    keys = keys if config.random_start else None
    x_adv = _attack_batch(predict_fn, config, x, y, eps, steps, keys, region_mask)
    chex.assert_equal_shape([x_adv, x])
    return jax.lax.stop_gradient(x_adv)


@functools.partial(jax.jit, static_argnames=("config",))
def _attack_jit(predict_fn, x, y, eps, steps, key, region_mask, *, config):
    keys = None if key is None else example_keys(key, x.shape[0])
    return attack_traced(
        predict_fn, x, y, eps=eps, steps=steps, config=config, keys=keys, region_mask=region_mask
    )


@functools.partial(jax.jit, static_argnames=("config",))
def _eps_sweep_jit(predict_fn, x, y, eps_values, steps, key, region_mask, *, config):
    keys = None if key is None else example_keys(key, x.shape[0])
    one_eps = functools.partial(
        attack_traced,
        predict_fn,
        x,
        y,
        steps=steps,
        config=config,
        keys=keys,
        region_mask=region_mask,
    )
    return jax.lax.map(lambda eps: one_eps(eps=eps), eps_values)


def _as_partial(predict_fn) -> Partial:
    if not callable(predict_fn):
        raise ValueError(f"predict_fn must be callable, got {type(predict_fn).__name__}")
    return predict_fn if isinstance(predict_fn, Partial) else Partial(predict_fn)


def attack(
    predict_fn: PredictFn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps,
    steps,
    config: AttackConfig,
    key: jax.Array | None = None,
    region_mask: jax.Array | None = None,
) -> jax.Array:
    """Validated, jitted attack: x_adv f32[B,H,W,3] (normalised images), see `attack_traced`.

    Checks every value first (ValueError naming it): ε finite and ≥ 0, 1 ≤ T ≤ t_max,
    shapes, finite x, region mask in [0, 1], y vs config.target, key for random_start.
    key: ONE PRNG key; example i uses fold_in(key, i), so its result does not depend on the
    batch. Pass predict_fn as `jax.tree_util.Partial(apply_fn, variables)` with apply_fn a
    function defined once, e.g. `def apply_fn(v, x): return net.apply(v, x, train=False)`
    (the Partial's arguments are traced, so keep static flags like `train` inside apply_fn):
    new variables, ε or T then reuse the compiled program. A plain closure works but embeds
    its arrays as constants and compiles once per closure object.
    """
    eps, steps = validate_attack_args(config, x, y, eps, steps, key, region_mask)
    return _attack_jit(_as_partial(predict_fn), x, y, eps, steps, key, region_mask, config=config)


def eps_sweep(
    predict_fn: PredictFn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps_values,
    steps,
    config: AttackConfig,
    key: jax.Array | None = None,
    region_mask: jax.Array | None = None,
) -> jax.Array:
    """x_adv f32[E,B,H,W,3] for each radius of eps_values f32[E] (e.g. Table 2's 0.05..0.2),
    as one compiled computation (a sequential lax.map over ε, each a batched attack).

    Same arguments and checks as `attack`; the same keys serve every ε.
    """
    eps_values = validate_eps_values(eps_values)
    _, steps = validate_attack_args(config, x, y, 0.0, steps, key, region_mask)
    return _eps_sweep_jit(
        _as_partial(predict_fn), x, y, eps_values, steps, key, region_mask, config=config
    )
