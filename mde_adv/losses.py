"""Training loss l_dif (Eq. 6, spec §4), the sparsity term and the per-example attack losses.

Depth maps are [B, h, w, 1] float32 in metres. Every function takes an optional valid-pixel
mask (same shape, 1 = valid); without one, means run over all pixels, as the spec requires.

Training losses (`l_depth`, `l_grad`, `l_normal`, `l_dif`, `sparsity`) return a scalar: the
mean over all pixels of the batch. Attack losses (`ATTACK_LOSSES`) return one value per
example, shape [B], and compare at the prediction's resolution: a target of another size is
resized to the prediction's with align-corners bilinear interpolation, and target pixels that
are not finite (NaN holes) are left out of the means.
"""

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mde_adv.models import resize_bilinear_align_corners

AttackLoss = Callable[..., jax.Array]

SOBEL_X = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], np.float32)
SOBEL_Y = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], np.float32)

# Below this depth (metres) `safe_log10` continues log10 along its tangent line.
LOG10_FLOOR_M = 1e-3


def sobel(depth: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sobel derivatives (d_x, d_y), each [B, h, w, 1], of depth [B, h, w, 1].

    Cross-correlation with SOBEL_X / SOBEL_Y (no kernel flip), zero padding 1, unnormalised,
    as the authors' `Sobel` module.
    """
    chex.assert_rank(depth, 4)
    chex.assert_axis_dimension(depth, 3, 1)
    kernel = jnp.asarray(np.stack([SOBEL_X, SOBEL_Y], axis=-1)[:, :, None, :], depth.dtype)
    grads = jax.lax.conv_general_dilated(
        depth, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return grads[..., :1], grads[..., 1:]


def _mean(values: jax.Array, mask: jax.Array | None, axis) -> jax.Array:
    """Mean of values over `axis`, restricted to mask > 0 when a mask is given."""
    if mask is None:
        return jnp.mean(values, axis=axis)
    weights = mask.astype(values.dtype)
    return jnp.sum(values * weights, axis=axis) / jnp.sum(weights, axis=axis)


def _log_error(error: jax.Array) -> jax.Array:
    """F(e) = ln(e + 0.5) of Eq. 6."""
    return jnp.log(error + 0.5)


def _dif_terms(pred: jax.Array, target: jax.Array) -> dict[str, jax.Array]:
    """Per-pixel terms of Eq. 6, each [B, h, w, 1]."""
    chex.assert_equal_shape([pred, target])
    pred_dx, pred_dy = sobel(pred)
    target_dx, target_dy = sobel(target)
    ones = jnp.ones_like(pred)
    pred_normal = jnp.concatenate([-pred_dx, -pred_dy, ones], axis=-1)
    target_normal = jnp.concatenate([-target_dx, -target_dy, ones], axis=-1)
    # Both normals have z = 1, so their norms are >= 1: the cosine needs no epsilon.
    cosine = jnp.sum(pred_normal * target_normal, axis=-1, keepdims=True) / (
        jnp.linalg.norm(pred_normal, axis=-1, keepdims=True)
        * jnp.linalg.norm(target_normal, axis=-1, keepdims=True)
    )
    return {
        "depth": _log_error(jnp.abs(pred - target)),
        "grad_x": _log_error(jnp.abs(pred_dx - target_dx)),
        "grad_y": _log_error(jnp.abs(pred_dy - target_dy)),
        "normal": jnp.abs(1.0 - cosine),
    }


def _dif(pred: jax.Array, target: jax.Array, mask: jax.Array | None, axis) -> jax.Array:
    terms = _dif_terms(pred, target)
    return sum(_mean(terms[name], mask, axis) for name in ("depth", "grad_x", "grad_y", "normal"))


def l_depth(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """mean ln(|d − g| + 0.5) over all pixels of the batch (Eq. 6, depth term); scalar."""
    return _mean(_dif_terms(pred, target)["depth"], mask, None)


def l_grad(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """mean ln(|d_x − g_x| + 0.5) + mean ln(|d_y − g_y| + 0.5) (Eq. 6, gradient term); scalar."""
    terms = _dif_terms(pred, target)
    return _mean(terms["grad_x"], mask, None) + _mean(terms["grad_y"], mask, None)


def l_normal(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """mean |1 − cos(n_d, n_g)| with normals n = (−d_x, −d_y, 1) (Eq. 6, normal term); scalar."""
    return _mean(_dif_terms(pred, target)["normal"], mask, None)


def l_dif(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """l_dif = l_depth + l_grad + l_normal (Eq. 6), means over all pixels of the batch; scalar.

    Can be negative (ln 0.5 ≈ −0.69 per log term when prediction equals target).
    """
    return _dif(pred, target, mask, None)


def l_dif_terms(
    pred: jax.Array, target: jax.Array, mask: jax.Array | None = None
) -> dict[str, jax.Array]:
    """l_dif and its parts as scalars: {'l_depth', 'l_grad', 'l_normal', 'l_dif'} (Eq. 6).

    One pass over the Sobel maps; for training steps that log the parts.
    """
    terms = _dif_terms(pred, target)
    parts = {
        "l_depth": _mean(terms["depth"], mask, None),
        "l_grad": _mean(terms["grad_x"], mask, None) + _mean(terms["grad_y"], mask, None),
        "l_normal": _mean(terms["normal"], mask, None),
    }
    return {**parts, "l_dif": parts["l_depth"] + parts["l_grad"] + parts["l_normal"]}


def sparsity(saliency: jax.Array) -> jax.Array:
    """(1/n)‖G(x)‖₁ of Algorithm 1 (line 17) for a mask in (0, 1): its mean; scalar."""
    return jnp.mean(saliency)


def safe_log10(depth: jax.Array) -> jax.Array:
    """log10 of depth (metres), continued linearly below LOG10_FLOOR_M.

    Below the floor the value follows the tangent of log10 at the floor, so a zero or
    negative depth gives a finite value that keeps decreasing (and the log10 attack loss
    keeps increasing, with a non-zero gradient) as the depth decreases.
    """
    floor = jnp.asarray(LOG10_FLOOR_M, depth.dtype)
    clipped = jnp.maximum(depth, floor)
    tangent = jnp.log10(floor) + (depth - floor) / (floor * jnp.log(10.0))
    return jnp.where(depth >= floor, jnp.log10(clipped), tangent)


def _prepare_attack_pair(
    pred: jax.Array, target: jax.Array, mask: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Resize target to pred's size; return (pred, finite target, valid-pixel weights)."""
    chex.assert_rank([pred, target], 4)
    chex.assert_axis_dimension(pred, 3, 1)
    chex.assert_axis_dimension(target, 3, 1)
    if target.shape[1:3] != pred.shape[1:3]:
        target = resize_bilinear_align_corners(target, pred.shape[1:3])
    chex.assert_equal_shape([pred, target])
    finite = jnp.isfinite(target)
    weights = finite.astype(pred.dtype)
    if mask is not None:
        chex.assert_equal_shape([pred, mask])
        weights = weights * mask.astype(pred.dtype)
    # Replace holes by the prediction (a constant under stop_gradient) so that they give
    # neither NaN values nor NaN gradients; their weight is zero anyway.
    target = jnp.where(finite, target, jax.lax.stop_gradient(pred))
    return pred, target, weights


_PER_EXAMPLE = (1, 2, 3)


def l1_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-example mean |d − g| over valid pixels (the paper's attack loss); [B]."""
    pred, target, weights = _prepare_attack_pair(pred, target, mask)
    return _mean(jnp.abs(pred - target), weights, _PER_EXAMPLE)


def l2_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-example mean (d − g)² over valid pixels; [B]."""
    pred, target, weights = _prepare_attack_pair(pred, target, mask)
    return _mean(jnp.square(pred - target), weights, _PER_EXAMPLE)


def rel_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-example mean |d − g| / g over valid pixels (targets positive, metres); [B]."""
    pred, target, weights = _prepare_attack_pair(pred, target, mask)
    return _mean(jnp.abs(pred - target) / target, weights, _PER_EXAMPLE)


def log10_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-example mean |safe_log10 d − safe_log10 g| over valid pixels; [B].

    `safe_log10` keeps the loss finite and increasing when the prediction is zero or negative.
    """
    pred, target, weights = _prepare_attack_pair(pred, target, mask)
    return _mean(jnp.abs(safe_log10(pred) - safe_log10(target)), weights, _PER_EXAMPLE)


def l_dif_loss(pred: jax.Array, target: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Per-example l_dif (Eq. 6, each mean over one example's valid pixels); [B]."""
    pred, target, weights = _prepare_attack_pair(pred, target, mask)
    return _dif(pred, target, weights, _PER_EXAMPLE)


ATTACK_LOSSES: dict[str, AttackLoss] = {
    "l1": l1_loss,
    "l2": l2_loss,
    "rel": rel_loss,
    "log10": log10_loss,
    "l_dif": l_dif_loss,
}


def attack_loss(name: str) -> AttackLoss:
    """The per-example attack loss called `name` (a key of ATTACK_LOSSES)."""
    if name not in ATTACK_LOSSES:
        raise ValueError(f"unknown attack loss {name!r}; expected one of {sorted(ATTACK_LOSSES)}")
    return ATTACK_LOSSES[name]
