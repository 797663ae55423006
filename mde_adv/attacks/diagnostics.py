"""Gradient-masking and sanity checks of an evaluation (Carlini et al. 2019, Tramèr et al.
2020), each a `Diagnostic`: a flag (True = suspicious), the numbers it rests on and its rule.

Errors below are the evaluation's error measure (e.g. RMSE in metres, larger = worse):
- zero_gradients: share of exactly-zero entries of the input gradient of the attack loss at
  the clean image, mean over images, above a threshold (a quantising or otherwise
  non-differentiable stage gives ~1; a healthy network ~0);
- non_decreasing (in ε, in iterations): the error of the strongest attack falls by more than
  a tolerance as ε or the iteration budget grows;
- large_eps: an attack with a very large ε leaves the error below factor × the clean error
  (a working attack with an unbounded budget must break any network);
- gradient_free_wins: the gradient-free search beats every gradient attack by more than a
  tolerance (the gradients do not lead to the maximum: masking);
- transfer_wins: an attack transferred from the undefended network beats the white-box
  attack on the defence by more than a tolerance (the white-box attack is not adaptive).
"""

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from mde_adv.attacks import problem
from mde_adv.attacks.config import AttackConfig

ZERO_GRADIENT_MAX_SHARE = 0.5
RELATIVE_TOLERANCE = 0.02
LARGE_EPS_FACTOR = 1.5


@dataclasses.dataclass(frozen=True)
class Diagnostic:
    """name, flag (True = the check failed: the evaluation may be unreliable), values (the
    numbers behind it) and rule (the condition that sets the flag, in words)."""

    name: str
    flag: bool
    values: dict[str, Any]
    rule: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.partial(jax.jit, static_argnames=("config",))
def _zero_share(predict_fn, x, y, *, config):
    eps = jnp.zeros((x.shape[0],), jnp.float32)
    _, grad = problem.build(predict_fn, config, x, y, eps, None).gradient(jnp.zeros_like(x))
    return jnp.mean((grad == 0).astype(jnp.float32), axis=(1, 2, 3))


def zero_gradient_share(predict_fn, x: jax.Array, y, *, config: AttackConfig) -> jax.Array:
    """f32[B]: per image, the share of entries of ∇_x ℓ(predict_fn(x), reference) (the
    config's loss and reference) that are exactly zero, at the clean x f32[B,H,W,3]."""
    predict_fn = predict_fn if isinstance(predict_fn, Partial) else Partial(predict_fn)
    return _zero_share(predict_fn, x, y, config=config)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def zero_gradients(shares: Sequence[float], threshold: float = ZERO_GRADIENT_MAX_SHARE):
    mean = float(sum(shares) / len(shares)) if len(shares) else math.nan
    return Diagnostic(
        "zero_gradients",
        bool(_finite(mean) and mean > threshold),
        {"mean_zero_share": mean, "max_zero_share": float(max(shares, default=math.nan))},
        f"flag if the mean share of zero input-gradient entries > {threshold:g}",
    )


def non_decreasing(
    name: str,
    points: Sequence[tuple[float, float]],
    tolerance: float = RELATIVE_TOLERANCE,
) -> Diagnostic:
    """points: (budget, error) pairs; flag when an error falls below (1 − tolerance) × the
    largest error at a smaller budget."""
    ordered = sorted((float(b), float(e)) for b, e in points)
    worst_drop, running = 0.0, -math.inf
    for _, error in ordered:
        if running > 0 and _finite(error):
            worst_drop = max(worst_drop, (running - error) / running)
        running = max(running, error)
    return Diagnostic(
        name,
        bool(worst_drop > tolerance),
        {"points": [list(p) for p in ordered], "largest_relative_drop": worst_drop},
        f"flag if the error falls by > {tolerance:.0%} as the budget grows",
    )


def large_eps(
    clean_error: float, attacked_error: float, eps: float, factor: float = LARGE_EPS_FACTOR
) -> Diagnostic:
    ratio = attacked_error / clean_error if clean_error > 0 else math.nan
    return Diagnostic(
        "large_eps",
        bool(not (_finite(ratio) and ratio >= factor)),
        {"eps": eps, "clean": clean_error, "attacked": attacked_error, "ratio": ratio},
        f"flag if the error at ε={eps:g} is < {factor:g} × the clean error",
    )


def not_beaten(
    name: str,
    challenger: str,
    errors: Mapping[str, float],
    references: Sequence[str],
    tolerance: float = RELATIVE_TOLERANCE,
) -> Diagnostic:
    """Flag when errors[challenger] > (1 + tolerance) × max(errors[r] for r in references)."""
    best = max(errors[r] for r in references)
    margin = errors[challenger] / best - 1.0 if best > 0 else math.nan
    return Diagnostic(
        name,
        bool(_finite(margin) and margin > tolerance),
        {"errors": dict(errors), "challenger": challenger, "relative_margin": margin},
        f"flag if {challenger} beats {', '.join(references)} by > {tolerance:.0%}",
    )
