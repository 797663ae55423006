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
import numpy as np
from jax.tree_util import Partial

from mde_adv.attacks import geometry, problem, spaces
from mde_adv.attacks.apgd import apgd_batch
from mde_adv.attacks.config import AttackConfig
from mde_adv.attacks.sampler import example_keys
from mde_adv.attacks.square import square_batch
from mde_adv.attacks.validation import validate_attack_args, validate_eps_values

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


def _noise_batch(config, task, x, eps, steps, keys) -> jax.Array:
    """x + δ with δ a random point of the ε-ball's surface (geometry.random_surface) in the
    feasible set like every attack (region, pixel box); T = 0 leaves x unchanged."""
    draw = lambda key, e: geometry.random_surface(key, x.shape[1:], e, config.norm)
    delta = task.constrain(_per_example(draw, keys, eps))
    delta = jnp.where((steps > 0)[:, None, None, None], delta, 0.0)
    return x + spaces.to_normalised(delta, config.space)


def _direction(config: AttackConfig, gradient: jax.Array, velocity: jax.Array):
    """(new velocity, ascent direction) of one iteration: MI-FGSM's momentum of ℓ1-normalised
    gradients, else the gradient itself."""
    if config.method != "mifgsm":
        return velocity, gradient
    velocity = config.momentum * velocity + _per_example(geometry.l1_normalise, gradient)
    return velocity, velocity


def _ascend(config, task, delta, direction, alpha) -> jax.Array:
    """δ ← P(δ + α·step(direction)), P the feasible set (Eq. 1 for ℓ∞)."""
    step = _per_example(lambda d: geometry.step_direction(d, config.norm), direction)
    return task.constrain(delta + alpha * step)


def _attack_batch(
    predict_fn: PredictFn,
    config: AttackConfig,
    x: jax.Array,
    y: jax.Array | None,
    eps: jax.Array,
    steps: jax.Array,
    keys: jax.Array | None,
    region: jax.Array | None,
    record: tuple[int, ...] | None = None,
) -> jax.Array:
    """The attack on a batch x[B,H,W,3] (normalised) with eps f32[B] and steps int32[B].
    record: None, or step counts whose iterates to return as f32[R,B,H,W,3] (the iterate
    after record[r] steps of each example; `attack_iterates`)."""
    if config.method in SEARCH_BATCHES:  # apgd, square: their own loop, same conventions
        return SEARCH_BATCHES[config.method](predict_fn, config, x, y, eps, steps, keys, region)
    task = problem.build(predict_fn, config, x, y, eps, region)
    if config.method == "noise":
        return _noise_batch(config, task, x, eps, steps, keys)
    alpha = jnp.broadcast_to(step_size(config, eps, steps.astype(jnp.float32)), eps.shape)
    alpha = alpha[:, None, None, None]
    zeros = jnp.zeros_like(x)
    delta = zeros
    if config.random_start:
        delta = task.constrain(problem.random_starts(config, keys, x.shape[1:], eps))
        delta = jnp.where((steps > 0)[:, None, None, None], delta, 0.0)
    recorded = jnp.zeros((len(record or ()), *x.shape), x.dtype)
    record_at = jnp.asarray(record or (), jnp.int32)

    def body(carry):
        t, delta, velocity, recorded = carry
        _, gradient = task.gradient(delta)
        new_velocity, direction = _direction(config, gradient, velocity)
        new_delta = _ascend(config, task, delta, direction, alpha)
        active = (t < steps)[:, None, None, None]
        velocity = jnp.where(active, new_velocity, velocity)
        delta = jnp.where(active, new_delta, delta)
        recorded = jnp.where((record_at == t + 1)[:, None, None, None, None], delta, recorded)
        return t + 1, delta, velocity, recorded

    last = jnp.minimum(jnp.max(steps), config.t_max)
    carry = (0, delta, zeros, recorded)
    _, delta, _, recorded = jax.lax.while_loop(lambda c: c[0] < last, body, carry)
    if record is not None:
        return x[None] + spaces.to_normalised(recorded, config.space)
    return x + spaces.to_normalised(delta, config.space)


def _first_step_sweep(predict_fn, config, x, y, eps_values, region) -> jax.Array:
    """f32[E,B,H,W,3]: one step from x at each radius of eps_values f32[E], from ONE gradient
    (at δ = 0 it does not depend on ε)."""
    batch = x.shape[0]
    per_radius = lambda e: jnp.broadcast_to(e, (batch,))
    _, gradient = problem.build(predict_fn, config, x, y, per_radius(1.0), region).gradient(
        jnp.zeros_like(x)
    )
    _, direction = _direction(config, gradient, jnp.zeros_like(x))

    def one_radius(e):
        eps = per_radius(e)
        task = problem.build(predict_fn, config, x, y, eps, region)
        alpha = jnp.broadcast_to(step_size(config, eps, jnp.ones_like(eps)), eps.shape)
        delta = _ascend(config, task, jnp.zeros_like(x), direction, alpha[:, None, None, None])
        return x + spaces.to_normalised(delta, config.space)

    return jax.lax.map(one_radius, eps_values)


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


@functools.partial(jax.jit, static_argnames=("config", "record"))
def _iterates_jit(predict_fn, x, y, eps, key, region_mask, *, config, record):
    keys = None if key is None else example_keys(key, x.shape[0])
    batch = x.shape[0]
    eps = jnp.broadcast_to(jnp.asarray(eps, jnp.float32), (batch,))
    steps = jnp.full((batch,), max(record), jnp.int32)
    iterates = _attack_batch(predict_fn, config, x, y, eps, steps, keys, region_mask, record)
    return jax.lax.stop_gradient(iterates)


def attack_iterates(
    predict_fn: PredictFn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps,
    record_steps,
    config: AttackConfig,
    key: jax.Array | None = None,
    region_mask: jax.Array | None = None,
) -> jax.Array:
    """f32[R,B,H,W,3]: the attack at every budget T of record_steps (R distinct ints), from ONE
    loop of max(record_steps) iterations: for a config with `nested_budgets` (a step that does
    not depend on T: IFGSM with α = 1, the paper's Fig. 5) the attack with budget T is the
    first T steps of any longer one, so row r equals `attack(..., steps=record_steps[r])`.

    Same arguments and checks as `attack` (eps a scalar or f32[B]); ValueError for a config
    whose steps depend on T (PGD's and MI-FGSM's default α = c·ε/T, APGD's schedule).
    """
    if not isinstance(config, AttackConfig) or not config.nested_budgets:
        described = config.describe() if isinstance(config, AttackConfig) else config
        raise ValueError(
            f"attack_iterates: the step of {described} depends on the budget T; "
            "set alpha, or call attack once per T"
        )
    wanted = [int(t) for t in np.atleast_1d(np.asarray(record_steps))]
    record = tuple(sorted(set(wanted)))
    if not wanted or len(record) != len(wanted) or record[0] < 1:
        raise ValueError(f"record_steps must be distinct integers >= 1, got {record_steps!r}")
    eps, _ = validate_attack_args(config, x, y, eps, record[-1], key, region_mask)
    iterates = _iterates_jit(
        _as_partial(predict_fn), x, y, eps, key, region_mask, config=config, record=record
    )
    return iterates[np.asarray([record.index(t) for t in wanted])]


@functools.partial(jax.jit, static_argnames=("config",))
def _one_step_sweep_jit(predict_fn, x, y, eps_values, region_mask, *, config):
    return jax.lax.stop_gradient(
        _first_step_sweep(predict_fn, config, x, y, eps_values, region_mask)
    )


def one_step_sweep(
    predict_fn: PredictFn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps_values,
    config: AttackConfig,
    region_mask: jax.Array | None = None,
) -> jax.Array:
    """x_adv f32[E,B,H,W,3]: the one-step attack (T = 1: FGSM, or the first step of IFGSM,
    MI-FGSM, PGD without a random start) at each radius of eps_values f32[E], from ONE
    gradient at x (it does not depend on ε), so row e equals
    `attack(..., eps=eps_values[e], steps=1)`. A config with a random start is refused (its
    start depends on ε), as are APGD, the square search and noise (their own loops)."""
    if not isinstance(config, AttackConfig):
        raise ValueError(f"config must be an AttackConfig, got {type(config).__name__}")
    if config.random_start or config.method in (*SEARCH_BATCHES, "noise"):
        raise ValueError(
            f"one_step_sweep: method {config.method!r} with random_start={config.random_start} "
            "has no ε-independent first gradient; call attack per ε"
        )
    eps_values = validate_eps_values(eps_values)
    validate_attack_args(config, x, y, 0.0, 1, None, region_mask)
    return _one_step_sweep_jit(
        _as_partial(predict_fn), x, y, eps_values, region_mask, config=config
    )
