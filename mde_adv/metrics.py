"""Depth metrics of the tables (spec §5): per-image values and a streaming accumulator.

Per image (prediction o upsampled align-corners bilinear to the target's resolution, only NaN
targets t excluded): MSE, RMSE, REL = mean |o−t|/t, log10 = mean |log10 o − log10 t|,
δ_k = fraction of pixels with max(o/t, t/o) ≤ 1.25^k. Aggregate: every metric is the mean
over images, except RMSE = sqrt(mean over images of the per-image MSE).

Non-positive predictions: log10 of such an image is undefined (NaN per image); the aggregate
reports how many images had it undefined and averages log10 over the others. Such a pixel
never counts as within 1.25^k (the WACV code would count it: both ratios are negative).

Accumulator: `metrics_init` / `metrics_update` / `metrics_merge` / `metrics_finalize` are pure
functions over a dict of float32 sums; `merge_across_processes` sums it over hosts.
"""

import chex
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils

from mde_adv.models import resize_bilinear_align_corners

DELTA_BASE = 1.25
PER_IMAGE_NAMES = ("mse", "rmse", "rel", "log10", "delta1", "delta2", "delta3")
_SUMMED = ("mse", "rel", "delta1", "delta2", "delta3")

MetricState = dict[str, jax.Array]


def image_metrics(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Per-image metrics {name: f32[B]} (PER_IMAGE_NAMES) of pred[B,h,w,1] vs target[B,H,W,1].

    Both in metres; pred is upsampled to (H, W) with align-corners bilinear. 'log10' is NaN
    for an image with a non-positive prediction on a valid pixel; every metric is NaN for an
    image whose target is all NaN.
    """
    chex.assert_rank([pred, target], 4)
    chex.assert_axis_dimension(pred, 3, 1)
    chex.assert_axis_dimension(target, 3, 1)
    chex.assert_equal_shape_prefix([pred, target], 1)
    pred = resize_bilinear_align_corners(pred.astype(jnp.float32), target.shape[1:3])
    target = target.astype(jnp.float32)

    valid = ~jnp.isnan(target)
    axes = (1, 2, 3)
    count = jnp.sum(valid, axis=axes).astype(jnp.float32)
    safe_target = jnp.where(valid, target, 1.0)
    positive = pred > 0
    safe_pred = jnp.where(positive, pred, 1.0)

    def image_mean(values):
        return jnp.sum(jnp.where(valid, values, 0.0), axis=axes) / count

    mse = image_mean(jnp.square(pred - safe_target))
    log10_defined = jnp.all(positive | ~valid, axis=axes)
    log10 = image_mean(jnp.abs(jnp.log10(safe_pred) - jnp.log10(safe_target)))
    ratio = jnp.maximum(safe_pred / safe_target, safe_target / safe_pred)
    result = {
        "mse": mse,
        "rmse": jnp.sqrt(mse),
        "rel": image_mean(jnp.abs(pred - safe_target) / safe_target),
        "log10": jnp.where(log10_defined, log10, jnp.nan),
    }
    for k in (1, 2, 3):
        within = positive & (ratio <= DELTA_BASE**k)
        result[f"delta{k}"] = image_mean(within.astype(jnp.float32))
    return result


def metrics_init() -> MetricState:
    """Empty accumulator: float32 sums of the per-image metrics and the image counts."""
    names = (*_SUMMED, "log10", "images", "log10_images")
    return {name: jnp.zeros((), jnp.float32) for name in names}


def metrics_update(
    state: MetricState, per_image: dict[str, jax.Array], example_mask: jax.Array | None = None
) -> MetricState:
    """Add a batch of `image_metrics` output; example_mask bool[B] drops padding examples."""
    batch = per_image["mse"].shape[0]
    keep = jnp.ones((batch,), bool) if example_mask is None else example_mask.astype(bool)
    chex.assert_shape(keep, (batch,))
    log10_defined = keep & ~jnp.isnan(per_image["log10"])
    new = {name: state[name] + jnp.sum(jnp.where(keep, per_image[name], 0.0)) for name in _SUMMED}
    new["log10"] = state["log10"] + jnp.sum(jnp.where(log10_defined, per_image["log10"], 0.0))
    new["images"] = state["images"] + jnp.sum(keep)
    new["log10_images"] = state["log10_images"] + jnp.sum(log10_defined)
    return new


def metrics_merge(a: MetricState, b: MetricState) -> MetricState:
    """Accumulator of the union of two disjoint sets of images."""
    return jax.tree_util.tree_map(jnp.add, a, b)


def merge_across_processes(state: MetricState) -> MetricState:
    """Sum an accumulator over all JAX processes (multi-host evaluation).

    Every process must call it (it is a collective when jax.process_count() > 1: the states
    are gathered with `multihost_utils.process_allgather` and summed); with one process it
    returns `state` unchanged.
    """
    if jax.process_count() == 1:
        return state
    gathered = multihost_utils.process_allgather(state)
    return jax.tree_util.tree_map(lambda leaf: jnp.sum(jnp.asarray(leaf), axis=0), gathered)


def metrics_finalize(state: MetricState) -> dict[str, jax.Array]:
    """Aggregate metrics (spec §5): rmse, rel, log10, delta1..3, plus 'images' and
    'log10_undefined_images' (images left out of the log10 mean)."""
    images = state["images"]
    result = {
        "rmse": jnp.sqrt(state["mse"] / images),
        "rel": state["rel"] / images,
        "log10": state["log10"] / state["log10_images"],
    }
    for k in (1, 2, 3):
        result[f"delta{k}"] = state[f"delta{k}"] / images
    result["images"] = images
    result["log10_undefined_images"] = images - state["log10_images"]
    return result
