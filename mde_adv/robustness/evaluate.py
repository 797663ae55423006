"""The card's computations: per-image rows of every subject under every attack of the ensemble,
the per-image worst case and the diagnostics' runs.

A subject is a function x ↦ depth evaluated and attacked end to end (N, N_adv, or a defence
such as N(x⊗G_adv(x))), optionally with the undefended network it wraps (`source`), from
which transfer attacks are run. Rows follow `mde_adv.evaluation.results` (one per image ×
table × setting × method); tables: 'robustness' (clean, each member, the worst case with
'won_by:<member>' 0/1 values) and 'diagnostics' (zero-gradient shares, APGD at smaller
budgets and at a large ε).
"""

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.tree_util import Partial

from mde_adv import attacks
from mde_adv.alignment import metric_depth
from mde_adv.attacks import square
from mde_adv.evaluation import results
from mde_adv.metrics import image_metrics
from mde_adv.robustness.config import threat_models

TABLE = "robustness"
DIAGNOSTICS_TABLE = "diagnostics"
WORST = "worst case"
CLEAN = "clean"
ZERO_GRADIENTS = "zero gradients"


@dataclasses.dataclass(frozen=True)
class Subject:
    """predict: x f32[B,H,W,3] normalised ↦ depth f32[B,h,w,1] (metres), attacked end to end;
    source: the undefended function transfer attacks run on (None: not a defence)."""

    predict: Any
    source: Any = None


def threat_label(threat) -> str:
    return f"{threat.norm} {threat.space}"


def setting_label(threat, eps: float) -> str:
    return f"{threat_label(threat)} ε={eps:g}"


def method_label(subject: str, attack: str) -> str:
    return f"{subject} | {attack}"


def members(
    rconfig: ml_collections.ConfigDict,
    threat,
    defence: bool,
    align: tuple[float, float] | None = None,
) -> list[attacks.Member]:
    """The ensemble: IFGSM (the paper's α and T), APGD with restarts and the square search, end
    to end; for a defence also IFGSM and APGD run on its undefended network ('… via N').
    align: the alignment of a relative N's output in every member's loss (None: none)."""
    common = dict(norm=threat.norm, loss=rconfig.loss, space=threat.space, align=align)
    ifgsm = attacks.AttackConfig(
        method="ifgsm", alpha=float(rconfig.ifgsm.alpha), t_max=int(rconfig.ifgsm.steps), **common
    )
    auto = attacks.AttackConfig(method="apgd", t_max=int(rconfig.apgd.steps), **common)
    search = attacks.AttackConfig(method="square", t_max=int(rconfig.square.steps), **common)
    restarts = int(rconfig.apgd.restarts)
    found = [
        attacks.Member("ifgsm", ifgsm, int(rconfig.ifgsm.steps)),
        attacks.Member("apgd", auto, int(rconfig.apgd.steps), restarts),
        attacks.Member("square", search, int(rconfig.square.steps)),
    ]
    if defence and rconfig.transfer:
        found += [
            attacks.Member("ifgsm via N", ifgsm, int(rconfig.ifgsm.steps), source="N"),
            attacks.Member("apgd via N", auto, int(rconfig.apgd.steps), restarts, source="N"),
        ]
    return found


def alpha_of(member: attacks.Member, eps: float) -> float:
    """The α recorded with a member's rows: IFGSM's step, APGD's initial step 2ε (halved at
    checkpoints), the square search's initial window share."""
    if member.config.method == "square":
        return square.P_INIT
    return float(attacks.step_size(member.config, np.float32(eps), np.float32(member.steps)))


@functools.partial(jax.jit, static_argnames=("align",))
def _metrics(
    predict: Partial, x: jax.Array, y: jax.Array, align: tuple[float, float] | None = None
) -> dict[str, jax.Array]:
    return image_metrics(metric_depth(predict(x), y, align), y)


def _as_partial(fn) -> Partial:
    return fn if isinstance(fn, Partial) else Partial(fn)


class _Collector:
    """Per-image values of this run, by row key, one array per batch."""

    def __init__(self):
        self.values: dict[tuple, dict[str, list[np.ndarray]]] = {}
        self.meta: dict[tuple, dict[str, Any]] = {}

    def add(self, key: tuple, meta: dict, values: Mapping[str, Any]) -> None:
        self.meta[key] = meta
        for name, array in values.items():
            self.values.setdefault(key, {}).setdefault(name, []).append(np.asarray(array))


def _meta(attack, target, eps, space, alpha, steps) -> dict[str, Any]:
    return dict(attack=attack, target=target, eps=eps, eps_space=space, alpha=alpha, steps=steps)


def _evaluate_subject(rconfig, label, subject, x, y, key, out: _Collector, timing, align):
    predict = _as_partial(subject.predict)
    sources = {} if subject.source is None else {"N": _as_partial(subject.source)}
    clean_config = attacks.AttackConfig(loss=rconfig.loss, align=align)
    out.add(
        (TABLE, CLEAN, method_label(label, CLEAN)),
        _meta("none", label, 0.0, "none", 0.0, 0),
        _metrics(predict, x, y, align),
    )
    shares = attacks.diagnostics.zero_gradient_share(predict, x, y, config=clean_config)
    out.add(
        (DIAGNOSTICS_TABLE, ZERO_GRADIENTS, label),
        _meta("gradient", label, 0.0, "none", 0.0, 0),
        {"zero_share": shares},
    )
    for t_index, threat in enumerate(threat_models(rconfig)):
        ensemble = members(rconfig, threat, subject.source is not None, align)
        for e_index, eps in enumerate(threat.eps):
            eps = float(eps)
            result = attacks.worst_case(
                predict, x, y, members=ensemble, eps=eps, criterion=rconfig.criterion,
                key=jax.random.fold_in(key, 1000 * t_index + e_index), sources=sources,
            )  # fmt: skip
            setting = setting_label(threat, eps)
            for index, member in enumerate(ensemble):
                target = "N" if member.source else label
                meta = _meta(
                    member.config.method, target, eps, threat.space, alpha_of(member, eps),
                    member.steps,
                )  # fmt: skip
                values = _metrics(predict, result.inputs[index], y, align)
                out.add((TABLE, setting, method_label(label, member.name)), meta, values)
                timing.setdefault((label, threat_label(threat), member.name), []).append(
                    (x.shape[0], float(result.seconds[index]))
                )
            worst = dict(_metrics(predict, result.x_adv, y, align))
            for index, member in enumerate(ensemble):
                worst[f"won_by:{member.name}"] = (result.winner == index).astype(np.float32)
            meta = _meta("ensemble", label, eps, threat.space, 0.0, 0)
            out.add((TABLE, setting, method_label(label, WORST)), meta, worst)
        _diagnostic_runs(rconfig, label, predict, threat, ensemble[1], x, y, key, out, align)


def _diagnostic_runs(rconfig, label, predict, threat, auto, x, y, key, out, align) -> None:
    """APGD (the ensemble's member, same program: ε and T are traced) at smaller budgets at the
    largest ε, and at the large ε of the sanity check."""
    largest = float(max(threat.eps))
    runs = [(largest, int(t)) for t in rconfig.diagnostics.steps]
    runs.append((float(rconfig.diagnostics.large_eps), auto.steps))
    for index, (eps, steps) in enumerate(runs):
        x_adv, _, _ = attacks.attack_with_restarts(
            predict, x, y, eps=eps, steps=steps, config=auto.config,
            key=jax.random.fold_in(key, 10_000 + index), restarts=auto.restarts,
            criterion=rconfig.criterion,
        )  # fmt: skip
        meta = _meta("apgd", label, eps, threat.space, 2.0 * eps, steps)
        setting = f"{setting_label(threat, eps)} T={steps}"
        out.add((DIAGNOSTICS_TABLE, setting, label), meta, _metrics(predict, x_adv, y, align))


def seconds_per_image(timing) -> dict[tuple, dict[str, Any]]:
    """{(subject, threat, member): {'seconds_per_image', 'includes_compile'}}: the first batch
    (which compiles) is left out when there are more."""
    found = {}
    for key, calls in timing.items():
        warm = calls[1:] if len(calls) > 1 else calls
        images = sum(n for n, _ in warm)
        found[key] = {
            "seconds_per_image": sum(s for _, s in warm) / images,
            "includes_compile": len(calls) == 1,
        }
    return found


def evaluate(
    rconfig: ml_collections.ConfigDict,
    subjects: Mapping[str, Subject],
    batches_fn: Callable[[], Iterator[Mapping[str, np.ndarray]]],
    align: tuple[float, float] | None = None,
) -> tuple[list[results.Row], dict[tuple, dict[str, Any]]]:
    """(per-image rows, seconds per image of each (subject, threat model, member)) of every
    subject on the batches ({'image', 'depth', 'id', 'valid'}), the first
    rconfig.max_images valid images (0 = all). One process. align: None for a metric N, else
    the depth range of the alignment of its output in every attack loss and metric."""
    max_images = int(rconfig.max_images)
    base_key = jax.random.key(int(rconfig.seed))
    out, timing = _Collector(), {}
    ids, positions, valid = [], [], []
    seen = 0
    for step, batch in enumerate(batches_fn()):
        if max_images and seen >= max_images:
            break
        x = jnp.asarray(np.asarray(batch["image"], np.float32))
        y = jnp.asarray(np.asarray(batch["depth"], np.float32))
        size = x.shape[0]
        ids += [str(i) for i in batch["id"]]
        positions.append(np.arange(seen, seen + size))
        valid.append(np.asarray(batch.get("valid", np.ones(size, bool)), bool))
        seen += size
        key = jax.random.fold_in(base_key, step)
        for index, (label, subject) in enumerate(subjects.items()):
            _evaluate_subject(rconfig, label, subject, x, y, jax.random.fold_in(key, index), out,
                              timing, align)  # fmt: skip
    if not positions:
        raise ValueError("batches_fn() yielded no batches")
    keep = np.concatenate(valid)
    position = np.concatenate(positions)
    if max_images:
        keep &= position < max_images
    values = {
        key: {name: np.concatenate(arrays)[keep] for name, arrays in named.items()}
        for key, named in out.values.items()
    }
    image_ids = [i for i, k in zip(ids, keep, strict=True) if k]
    rows = results.make_rows(values, out.meta, image_ids, position[keep])
    return rows, seconds_per_image(timing)
