"""The per-image worst case over an ensemble of attacks, and which attack produced it.

Every member attacks the same images with the same ε; member m's input for image i is scored
by the criterion on the EVALUATED function (restarts.CRITERIA, larger = stronger) and, per
image, the highest-scoring member wins (ties: the first in the list). A member may attack
another function than the evaluated one (`source`, e.g. the undefended N for a transfer
attack on a defence), so the ensemble covers the paper's x* = Adv(x; N) as well as
end-to-end attacks through the defence.
"""

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mde_adv.attacks import restarts as restarts_lib
from mde_adv.attacks.config import AttackConfig


@dataclasses.dataclass(frozen=True)
class Member:
    """One attack of an ensemble: `name` (unique, shown in cards), its config, T (steps),
    random restarts and the name of the function it attacks (None: the evaluated one)."""

    name: str
    config: AttackConfig
    steps: int
    restarts: int = 1
    source: str | None = None


class WorstCase(NamedTuple):
    """x_adv f32[B,H,W,3] (the winning member's input per image), winner int32[B] (index
    into the members), scores f32[M,B] (criterion per member and image), inputs (each
    member's x_adv, a list of f32[B,H,W,3]) and seconds f64[M] (wall time of each member's
    attack and scoring, compilation included on a first call)."""

    x_adv: jax.Array
    winner: np.ndarray
    scores: np.ndarray
    inputs: list[jax.Array]
    seconds: np.ndarray


def check_members(members: Sequence[Member], criterion: str, sources) -> None:
    """ValueError for an empty list, repeated names, unknown sources, or an 'attack_loss'
    criterion over members whose losses differ (their values would not be comparable)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"ensemble member names must be unique, got {names}")
    for member in members:
        if not isinstance(member, Member):
            raise ValueError(f"ensemble members must be Member, got {type(member).__name__}")
        if member.source is not None and member.source not in sources:
            raise ValueError(
                f"member {member.name!r}: source {member.source!r} is not among {sorted(sources)}"
            )
    if criterion == "attack_loss":
        losses = {
            (m.config.loss, m.config.target, m.config.targeted, m.config.align) for m in members
        }
        if len(losses) > 1:
            raise ValueError(
                f"criterion 'attack_loss' needs one loss for all members, got {sorted(losses)}"
            )


_METRIC_SCORER = AttackConfig()


@functools.partial(jax.jit, static_argnames=("criterion", "config"))
def _scores(predict_fn, x, x_adv, y, *, criterion, config):
    return restarts_lib.scores(criterion, predict_fn, config, x, x_adv, y)


def worst_case(
    predict_fn,
    x: jax.Array,
    y: jax.Array | None,
    *,
    members: Sequence[Member],
    eps,
    key: jax.Array,
    criterion: str = "rmse",
    sources: Mapping[str, object] | None = None,
    region_mask: jax.Array | None = None,
) -> WorstCase:
    """Runs every member (validated, jitted; member m with key fold_in(key, m)) on x
    f32[B,H,W,3] with ε (scalar or f32[B]) and returns the per-image worst case.

    y: ground-truth depth (for criteria 'rmse' / 'rel' and members whose target is the
    ground truth). sources: {name: function} that members may attack instead of predict_fn.
    """
    sources = dict(sources or {})
    check_members(members, criterion, sources)
    predict_fn = predict_fn if isinstance(predict_fn, Partial) else Partial(predict_fn)
    inputs, member_scores, seconds = [], [], []
    for index, member in enumerate(members):
        start = time.perf_counter()
        restarts_lib.check_criterion(criterion, member.config, y)
        attacked = sources[member.source] if member.source is not None else predict_fn
        x_adv, _, _ = restarts_lib.attack_with_restarts(
            attacked,
            x,
            y,
            eps=eps,
            steps=member.steps,
            config=member.config,
            key=jax.random.fold_in(key, index),
            region_mask=region_mask,
            restarts=member.restarts,
            criterion=criterion if member.source is None else "attack_loss",
        )
        inputs.append(x_adv)
        # a metric criterion reads only the alignment: one compiled scorer for every member
        scorer_config = (
            member.config
            if criterion == "attack_loss"
            else dataclasses.replace(_METRIC_SCORER, align=member.config.align)
        )
        score = _scores(predict_fn, x, x_adv, y, criterion=criterion, config=scorer_config)
        member_scores.append(np.asarray(score))
        seconds.append(time.perf_counter() - start)
    scores = np.stack(member_scores)
    winner = np.argmax(scores, axis=0).astype(np.int32)
    stacked = jnp.stack(inputs)
    x_adv = jnp.take_along_axis(stacked, jnp.asarray(winner)[None, :, None, None, None], 0)[0]
    return WorstCase(x_adv, winner, scores, inputs, np.asarray(seconds))
