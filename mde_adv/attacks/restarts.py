"""Random restarts stacked on the batch axis, the per-image best kept by a named criterion.

R restarts of a batch of B images run as attacks on the batch axis (x tiled, ε and T
repeated), one compiled program, not a Python loop. Restart 0 is the attack as configured
(e.g. APGD from x itself); restarts 1..R−1 start at a uniform random point of the ε-ball
(the config with random_start=True, one batched call on (R−1)·B examples). Restart r of
image i uses the key fold_in(k_i, r) for r ≥ 1 and k_i itself for r = 0, with k_i the
image's key from `example_keys`: one restart is the plain attack, bit for bit.

Criteria (larger = stronger attack), per image, on the attacked function's prediction:
  'attack_loss'  the config's signed attack loss (−loss for a targeted attack);
  'rmse', 'rel'  the metrics of `mde_adv.metrics.image_metrics` against y (the ground truth;
                 untargeted attacks only), after the alignment of config.align when set.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from mde_adv.alignment import metric_depth
from mde_adv.attacks import engine, problem
from mde_adv.attacks.config import AttackConfig
from mde_adv.attacks.sampler import example_keys
from mde_adv.attacks.validation import validate_attack_args
from mde_adv.metrics import image_metrics

CRITERIA: tuple[str, ...] = ("attack_loss", "rmse", "rel")


def check_criterion(criterion: str, config: AttackConfig, y) -> None:
    """ValueError when `criterion` is unknown or cannot rank this attack's results."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion={criterion!r} is unknown; expected one of {CRITERIA}")
    if criterion != "attack_loss":
        if y is None:
            raise ValueError(f"criterion={criterion!r} needs the ground-truth depth y")
        if config.targeted:
            raise ValueError(f"criterion={criterion!r} ranks untargeted attacks only")


def scores(
    criterion: str, predict_fn, config: AttackConfig, x: jax.Array, x_adv: jax.Array, y
) -> jax.Array:
    """f32[B]: how strong each adversarial input x_adv[B,H,W,3] is (larger = stronger);
    x is the clean batch (the reference of a 'clean_prediction' loss). NaN counts as −∞."""
    depth = predict_fn(x_adv)
    if criterion == "attack_loss":
        reference = problem.reference_depth(predict_fn, config, x, y)
        value = problem.loss_function(config)(depth, reference)
        value = -value if config.targeted else value
    else:
        value = image_metrics(metric_depth(depth, y, config.align), y)[criterion]
    return jnp.where(jnp.isnan(value), -jnp.inf, value)


def restart_keys(keys: jax.Array, restarts: int) -> jax.Array:
    """keys[R·B]: restart r of example i at index r·B + i (r = 0: the example's own key)."""
    fold = lambda r: jax.vmap(lambda k: jax.random.fold_in(k, r))(keys)
    return jnp.concatenate([keys, *(fold(r) for r in range(1, restarts))])


def restarts_traced(
    predict_fn,
    x: jax.Array,
    y: jax.Array | None,
    *,
    eps: jax.Array,
    steps: jax.Array,
    config: AttackConfig,
    keys: jax.Array | None,
    region_mask: jax.Array | None,
    restarts: int,
    criterion: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(x_adv f32[B,H,W,3], score f32[B], chosen restart int32[B]); traceable.

    eps f32[B], steps int32[B], keys[B] (one per example; needed by random starts).
    """
    batch = x.shape[0]
    attack_y = None if config.target == "clean_prediction" else y

    def run(config, copies, keys):
        tile = lambda a: None if a is None else jnp.concatenate([a] * copies)
        return engine.attack_traced(
            predict_fn,
            tile(x),
            tile(attack_y),
            eps=tile(eps),
            steps=tile(steps),
            config=config,
            keys=keys,
            region_mask=tile(region_mask),
        )

    keys = None if keys is None else restart_keys(keys, restarts)
    if config.random_start or restarts == 1:
        x_adv = run(config, restarts, keys)
    else:
        first = run(config, 1, None if keys is None else keys[:batch])
        randomised = dataclasses.replace(config, random_start=True)
        x_adv = jnp.concatenate([first, run(randomised, restarts - 1, keys[batch:])])
    tile = lambda a: None if a is None else jnp.concatenate([a] * restarts)
    score = scores(criterion, predict_fn, config, tile(x), x_adv, tile(y))
    score = score.reshape(restarts, batch)
    chosen = jnp.argmax(score, axis=0).astype(jnp.int32)
    x_adv = x_adv.reshape(restarts, *x.shape)
    best = jnp.take_along_axis(x_adv, chosen[None, :, None, None, None], axis=0)[0]
    return best, jnp.max(score, axis=0), chosen


@functools.partial(jax.jit, static_argnames=("config", "restarts", "criterion"))
def _restarts_jit(predict_fn, x, y, eps, steps, key, region_mask, *, config, restarts, criterion):
    keys = None if key is None else example_keys(key, x.shape[0])
    return restarts_traced(
        predict_fn,
        x,
        y,
        eps=eps,
        steps=steps,
        config=config,
        keys=keys,
        region_mask=region_mask,
        restarts=restarts,
        criterion=criterion,
    )


def attack_with_restarts(
    predict_fn,
    x: jax.Array,
    y: jax.Array | None = None,
    *,
    eps,
    steps,
    config: AttackConfig,
    key: jax.Array | None = None,
    region_mask: jax.Array | None = None,
    restarts: int = 1,
    criterion: str = "attack_loss",
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Validated, jitted: (x_adv f32[B,H,W,3], score f32[B], chosen restart int32[B]).

    Same arguments and checks as `attacks.attack`; restarts ≥ 1 (more than one needs `key`:
    restarts after the first start at random); criterion in CRITERIA.
    For criterion 'rmse' / 'rel', y is the ground truth also when the attack's own
    reference is the clean prediction.
    """
    if isinstance(restarts, bool) or int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if restarts > 1 and key is None:
        raise ValueError(
            f"restarts={restarts} need a PRNG key (restarts after the first are random)"
        )
    attack_y = None if config.target == "clean_prediction" else y
    check_criterion(criterion, config, y)
    eps, steps = validate_attack_args(config, x, attack_y, eps, steps, key, region_mask)
    predict_fn = predict_fn if isinstance(predict_fn, Partial) else Partial(predict_fn)
    return _restarts_jit(
        predict_fn,
        x,
        y,
        eps,
        steps,
        key,
        region_mask,
        config=config,
        restarts=int(restarts),
        criterion=criterion,
    )
