"""Per-image least-squares scale and shift alignment of relative (affine-invariant) depth.

A relative model (Depth Anything V2's relative heads) predicts disparity p up to an unknown
scale s and shift t. Before metrics, and inside attack losses so that an attack is measured
after the same alignment (it cannot be undone by it), each image is aligned to its ground
truth g (metres) in disparity space, over the valid pixels i (g finite and > 0, weight w_i):

    (s, t) = argmin Σ_i w_i (s·p_i + t − 1/g_i)²
    aligned depth = 1 / clip(s·p + t, 1/max_depth, 1/min_depth)

Closed form: s = cov_w(p, 1/g) / var_w(p), t = mean_w(1/g) − s·mean_w(p); a constant
prediction gets s = 0, t = mean_w(1/g); an image without valid pixels s = 1, t = 0. Every
function is pure and differentiable in p (and in s, t through it).

The main job's one switch is `depth_range(config.depth_net)`: None for a metric N (evaluated
and attacked as it is), else the (min, max) metres of the alignment of a relative N. It flows
as `AttackConfig.align` (every attack loss, the training attack included), `TaskSpec.align`
(the training losses of N, N_adv, G and G_adv) and the evaluation's `align` (the metrics of
every method, all of which read N's or N_adv's output).
"""

from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp

from mde_adv.models import resize_bilinear_align_corners

DEFAULT_DEPTH_RANGE = (1e-3, 10.0)  # metres: clip of the aligned depth (NYU-v2's 10 m cap)
RELATIVE_KIND = "relative"
# What every table (report, card) says of a run with the switch on.
NOTE = (
    "N is relative (affine-invariant disparity): every score of N and N_adv (alone or behind "
    "a mask) is after per-image least-squares scale-and-shift alignment to the ground truth "
    "in disparity, aligned depth clipped to [{:g}, {:g}] m; every attack and training loss "
    "is measured after the same alignment (the trivial baselines are not aligned)"
)
_AXES = (1, 2, 3)
_TINY = 1e-12

AttackLoss = Callable[[jax.Array, jax.Array, jax.Array | None], jax.Array]


def fit_scale_shift(
    pred: jax.Array, target: jax.Array, weights: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Weighted least-squares (s, t), each f32[B], minimising Σ w (s·pred + t − target)² per
    image of pred, target, weights [B, H, W, 1] (weights ≥ 0; target finite where w > 0)."""
    chex.assert_rank(pred, 4)
    chex.assert_equal_shape([pred, target, weights])
    pred = pred.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    target = jnp.where(weights > 0, target.astype(jnp.float32), 0.0)
    total = jnp.sum(weights, axis=_AXES)
    safe_total = jnp.maximum(total, _TINY)
    mean_p = jnp.sum(weights * pred, axis=_AXES) / safe_total
    mean_y = jnp.sum(weights * target, axis=_AXES) / safe_total
    centred_p = pred - mean_p[:, None, None, None]
    centred_y = target - mean_y[:, None, None, None]
    var_p = jnp.sum(weights * centred_p**2, axis=_AXES) / safe_total
    cov = jnp.sum(weights * centred_p * centred_y, axis=_AXES) / safe_total
    spread = var_p > _TINY * jnp.maximum(1.0, mean_p**2)
    scale = jnp.where(spread, cov / jnp.where(spread, var_p, 1.0), 0.0)
    shift = mean_y - scale * mean_p
    has_pixels = total > 0
    return jnp.where(has_pixels, scale, 1.0), jnp.where(has_pixels, shift, 0.0)


def depth_range(depth_net_config: Mapping[str, Any]) -> tuple[float, float] | None:
    """The alignment switch of a depth-network config: None unless `kind` is 'relative'
    (Depth Anything V2's affine-invariant disparity head), else (min_depth, max_depth) in
    metres (defaults DEFAULT_DEPTH_RANGE), the clip of the aligned depth. Unchecked: see
    `check_depth_range`."""
    if depth_net_config.get("kind") != RELATIVE_KIND:
        return None
    low, high = DEFAULT_DEPTH_RANGE
    return float(depth_net_config.get("min_depth", low)), float(
        depth_net_config.get("max_depth", high)
    )


def check_depth_range(depth_range: tuple[float, float]) -> None:
    """ValueError unless depth_range = (min, max) metres with 0 < min < max < inf."""
    if len(depth_range) != 2 or not 0 < depth_range[0] < depth_range[1] < float("inf"):
        raise ValueError(f"depth_range must be (min, max) metres, 0 < min < max, got {depth_range}")


def metric_depth(
    pred: jax.Array, target: jax.Array, depth_range: tuple[float, float] | None
) -> jax.Array:
    """What the metrics score of a prediction pred[B, h, w, 1] against target (metres): pred
    itself when depth_range is None (a metric network), else `align_disparity_to_depth`."""
    if depth_range is None:
        return pred
    return align_disparity_to_depth(pred, target, None, depth_range)


def _valid_disparity(target: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """(1/target where valid else 0, weights): valid = finite and > 0 (and mask)."""
    valid = jnp.isfinite(target) & (target > 0)
    weights = valid.astype(jnp.float32)
    if mask is not None:
        weights = weights * mask.astype(jnp.float32)
    safe = jnp.where(valid, target, 1.0)
    return jnp.where(valid, 1.0 / safe, 0.0), weights


def align_disparity_to_depth(
    disparity: jax.Array,
    target: jax.Array,
    mask: jax.Array | None = None,
    depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE,
) -> jax.Array:
    """Relative disparity f32[B, h, w, 1] → aligned depth in metres [B, h, w, 1].

    `target` (metres, NaN holes) is resized to (h, w) align-corners bilinear first, as the
    attack losses do; `mask` [B, h, w, 1] weights the pixels of the fit."""
    chex.assert_rank([disparity, target], 4)
    chex.assert_axis_dimension(disparity, 3, 1)
    if target.shape[1:3] != disparity.shape[1:3]:
        target = resize_bilinear_align_corners(target, disparity.shape[1:3])
    chex.assert_equal_shape([disparity, target])
    check_depth_range(depth_range)
    min_depth, max_depth = depth_range
    inverse, weights = _valid_disparity(target, mask)
    scale, shift = fit_scale_shift(disparity, inverse, weights)
    aligned = (
        scale[:, None, None, None] * disparity.astype(jnp.float32) + shift[:, None, None, None]
    )
    return 1.0 / jnp.clip(aligned, 1.0 / max_depth, 1.0 / min_depth)


def aligned_loss(
    loss: AttackLoss, depth_range: tuple[float, float] = DEFAULT_DEPTH_RANGE
) -> AttackLoss:
    """An attack loss ℓ(pred, target, mask) → ℓ(align_disparity_to_depth(pred, target,
    mask), target, mask): the same per-example loss measured after alignment, differentiated
    through the fit."""

    def loss_after_alignment(
        pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
    ) -> jax.Array:
        return loss(align_disparity_to_depth(pred, target, mask, depth_range), target, mask)

    loss_after_alignment.__name__ = f"{getattr(loss, '__name__', 'loss')}_aligned"
    loss_after_alignment.__doc__ = f"{loss.__doc__} Measured after alignment (`aligned_loss`)."
    return loss_after_alignment
