"""Clean held-out scores of a network while it trains (the learning curve), no attack.

`depth_evaluator` scores N(x); `saliency_evaluator` scores N(x⊗G(x)) with N frozen and
reports G's mask statistics, so that a mask collapsing to zeros shows while G trains.
Both take the eval batches once ({'image', 'depth', 'valid'}, as `pipeline.eval_batches`)
and return `variables -> {name: float}` (metres for RMSE); with `align` (a relative N,
`alignment.depth_range`) N's output is scored after the per-image alignment to the ground
truth, as in the evaluation.
"""

from collections.abc import Callable, Iterable, Mapping

import flax.linen as nn
import jax
import numpy as np

from mde_adv.alignment import metric_depth
from mde_adv.evaluation import baselines

Evaluator = Callable[[dict], dict[str, float]]


def _valid_arrays(batches: Iterable[Mapping]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (np.asarray(b["image"])[np.asarray(b["valid"])], np.asarray(b["depth"])[b["valid"]])
        for b in batches
    ]


def depth_evaluator(
    model: nn.Module, batches: Iterable[Mapping], align: tuple[float, float] | None = None
) -> Evaluator:
    """variables of N -> {'rmse', 'rel', 'delta1'} of N(x) on the batches."""
    data = _valid_arrays(batches)
    predict = jax.jit(lambda v, x, y: metric_depth(model.apply(v, x, train=False), y, align))

    def evaluate(variables: dict) -> dict[str, float]:
        pred = np.concatenate([np.asarray(predict(variables, x, y)) for x, y in data])
        scores = baselines.aggregate(pred, np.concatenate([y for _, y in data]))
        return {k: scores[k] for k in ("rmse", "rel", "delta1")}

    return evaluate


def saliency_evaluator(
    model: nn.Module,
    depth_model: nn.Module,
    depth_variables: dict,
    batches: Iterable[Mapping],
    align: tuple[float, float] | None = None,
) -> Evaluator:
    """variables of G -> {'rmse', 'delta1'} of N(x⊗G(x)), 'mask_mean' and 'mask_above_half'
    (share of mask values > 0.5) on the batches."""
    data = _valid_arrays(batches)

    @jax.jit
    def masked(v, n, x, y):
        mask = model.apply(v, x, train=False)
        return metric_depth(depth_model.apply(n, x * mask, train=False), y, align), mask

    def evaluate(variables: dict) -> dict[str, float]:
        outputs = [jax.device_get(masked(variables, depth_variables, x, y)) for x, y in data]
        pred = np.concatenate([p for p, _ in outputs])
        masks = np.concatenate([m for _, m in outputs])
        scores = baselines.aggregate(pred, np.concatenate([y for _, y in data]))
        return {
            "rmse": scores["rmse"],
            "delta1": scores["delta1"],
            "mask_mean": float(masks.mean()),
            "mask_above_half": float((masks > 0.5).mean()),
        }

    return evaluate
