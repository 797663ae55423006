"""The attack engine: FGSM / IFGSM / PGD / MI-FGSM, ℓ∞ or ℓ2, in either ε space, per-example ε
and T in one compiled loop. Used alike by training (`attack_traced` inside a jitted step) and
evaluation (`attack`, `eps_sweep`: validated and jitted).

The attacked function is any `predict_fn(x[B,H,W,3] normalised) -> depth[B,h,w,1]` (N, the
pipeline x ↦ N(x ⊗ G(x)), ...). It is called per example, `predict_fn(x_i[None])[0]`, under
vmap, so one example's result never depends on its batch-mates (models must be in inference
mode). Example i takes T_i steps of (Eq. 1, for ℓ∞ and the default α of ifgsm)

    δ ← Clip_box(Proj_ε(m ⊙ (δ + α·step(∇_δ ℓ))))

where step is sign(·) (ℓ∞) or ·/‖·‖₂ (ℓ2), m is the optional region mask (also applied to the
gradient), Proj_ε the projection onto the ε-ball, Clip_box the [0, 1] clip of pixel space;
x_adv = x + δ in normalised units. The loop always runs t_max iterations; example i stops
changing after T_i, so new ε or T values never recompile.
"""

import functools
from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from mde_adv.attacks import geometry, spaces
from mde_adv.attacks.config import AttackConfig
from mde_adv.attacks.sampler import example_keys
from mde_adv.attacks.validation import validate_attack_args, validate_eps_values
from mde_adv.losses import attack_loss

PredictFn = Callable[[jax.Array], jax.Array]


def step_size(config: AttackConfig, eps: jax.Array, steps: jax.Array) -> jax.Array:
    """α of one example (in ε's units): config.alpha, else the method's default."""
    if config.alpha is not None:
        return jnp.asarray(config.alpha, jnp.float32)
    if config.method == "fgsm":
        return eps
    if config.method == "pgd":
        return 2.5 * eps / steps
    if config.method == "mifgsm":
        return eps / steps
    return jnp.asarray(1.0, jnp.float32)


def _attack_example(
    predict_fn: PredictFn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    steps: jax.Array,
    key: jax.Array | None,
    region: jax.Array | None,
) -> jax.Array:
    """The attack on ONE example x[H,W,3] (normalised) with scalar eps and steps."""
    loss_fn = attack_loss(config.loss)

    def predict_one(image):
        return predict_fn(image[None])[0]

    reference = jax.lax.stop_gradient(predict_one(x)) if config.target == "clean_prediction" else y
    reference = config.target_scale * reference
    direction_sign = -1.0 if config.targeted else 1.0

    def objective(delta):
        depth = predict_one(x + spaces.to_normalised(delta, config.space))
        return direction_sign * loss_fn(depth[None], reference[None])[0]

    box = spaces.pixel_box(x) if config.space == "pixel" else None

    def constrain(delta):
        if region is not None:
            delta = delta * region
        delta = geometry.project(delta, eps, config.norm)
        if box is not None:
            delta = jnp.clip(delta, *box)
        return delta

    alpha = step_size(config, eps, steps.astype(jnp.float32))
    zeros = jnp.zeros_like(x)
    delta = zeros
    if config.random_start:
        delta = constrain(geometry.random_start(key, x.shape, eps, config.norm))

    def body(t, carry):
        delta, velocity = carry
        gradient = jax.grad(objective)(delta)
        if region is not None:
            gradient = gradient * region
        if config.method == "mifgsm":
            new_velocity = config.momentum * velocity + geometry.l1_normalise(gradient)
            direction = new_velocity
        else:
            new_velocity, direction = velocity, gradient
        new_delta = constrain(delta + alpha * geometry.step_direction(direction, config.norm))
        active = t < steps
        return jnp.where(active, new_delta, delta), jnp.where(active, new_velocity, velocity)

    delta, _ = jax.lax.fori_loop(0, config.t_max, body, (delta, zeros))
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
    in config.space units. steps: int32[B] or scalar T, 1 ≤ T ≤ config.t_max (not checked
    here). keys: one PRNG key per example ([B] typed or [B, 2] raw), needed for
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
    one = functools.partial(_attack_example, predict_fn, config)
    x_adv = jax.vmap(one)(x, y, eps, steps, keys, region_mask)
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
