"""Trivial depth predictors that every network is held against (no network, no input).

constant: one depth for every pixel of every image, the mean valid test depth (m).
per-pixel mean map: the same map for every image, the per-pixel mean of the test depths: it
  knows the room layout prior (floor below, far wall in the middle) and nothing of the image.
Both are fitted on the evaluated targets themselves, so they are the strongest predictors of
their kind: a network that does not beat the mean map by a material margin learned the layout,
not depth.
"""

import jax.numpy as jnp
import numpy as np

from mde_adv import metrics

NAMES = ("constant", "per-pixel mean map")


def aggregate(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Aggregate metrics (spec §5) of pred[N,h,w,1] vs target[N,H,W,1] (metres, NaN invalid)."""
    state = metrics.metrics_update(
        metrics.metrics_init(), metrics.image_metrics(jnp.asarray(pred), jnp.asarray(target))
    )
    return {k: float(v) for k, v in metrics.metrics_finalize(state).items()}


def predictions(targets: np.ndarray) -> dict[str, np.ndarray]:
    """{name: f32[N,H,W,1]} of the NAMES predictors fitted on targets f32[N,H,W,1] (m, NaN
    invalid)."""
    targets = np.asarray(targets, np.float32)
    if targets.ndim != 4 or targets.shape[-1] != 1 or len(targets) == 0:
        raise ValueError(f"baselines: need targets [N>0, H, W, 1], got {targets.shape}")
    overall = np.nanmean(targets)
    mean_map = np.broadcast_to(np.nanmean(targets, axis=0, keepdims=True), targets.shape)
    return {
        "constant": np.full_like(targets, overall),
        "per-pixel mean map": np.where(np.isnan(mean_map), overall, mean_map),
    }


def per_image_baselines(targets: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """{name: per-image metrics {metric: f32[N]}} (metrics.image_metrics) of the predictors."""
    target = jnp.asarray(targets, jnp.float32)
    return {
        name: {k: np.asarray(v) for k, v in metrics.image_metrics(jnp.asarray(p), target).items()}
        for name, p in predictions(targets).items()
    }


def trivial_baselines(targets: np.ndarray) -> dict[str, dict[str, float]]:
    """{name: aggregate metrics} of the predictors on targets f32[N,H,W,1]."""
    return {name: aggregate(p, targets) for name, p in predictions(targets).items()}
