"""Properties of the per-image scale-and-shift alignment (mde_adv.alignment) used to evaluate
and attack relative (affine-invariant disparity) models such as Depth Anything V2's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mde_adv import losses
from mde_adv.alignment import align_disparity_to_depth, aligned_loss, fit_scale_shift

SHAPE = (2, 4, 5, 1)
seeds = st.integers(0, 2**31 - 1)
affine = st.tuples(st.floats(-5.0, 5.0).filter(lambda c: abs(c) > 0.05), st.floats(-3.0, 3.0))


def sample(seed: int):
    """Prediction, target depth in [0.5, 8] m with NaN holes, and a mask."""
    rng = np.random.default_rng(seed)
    pred = rng.uniform(0.1, 2.0, SHAPE).astype(np.float32)
    target = rng.uniform(0.5, 8.0, SHAPE).astype(np.float32)
    target[rng.uniform(size=SHAPE) < 0.2] = np.nan
    mask = (rng.uniform(size=SHAPE) < 0.8).astype(np.float32)
    return pred, target, mask


@settings(max_examples=20, deadline=None)
@given(seeds)
def test_fit_is_the_weighted_least_squares_solution(seed):
    pred, target, mask = sample(seed)
    valid = np.isfinite(target) & (mask > 0)
    inverse = np.where(valid, 1.0 / np.where(valid, target, 1.0), 0.0)
    scale, shift = fit_scale_shift(jnp.asarray(pred), jnp.asarray(inverse), jnp.asarray(valid))
    for b in range(SHAPE[0]):
        p, y = pred[b][valid[b]], inverse[b][valid[b]]
        expected, *_ = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), y, rcond=None)
        np.testing.assert_allclose([scale[b], shift[b]], expected, rtol=1e-4, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(seeds, affine)
def test_aligned_depth_is_invariant_to_affine_maps_of_the_prediction(seed, coefficients):
    """The attack on a relative model cannot gain (or lose) by scaling or shifting p."""
    c, d = coefficients
    pred, target, mask = sample(seed)
    base = align_disparity_to_depth(jnp.asarray(pred), target, mask)
    moved = align_disparity_to_depth(jnp.asarray(c * pred + d), target, mask)
    np.testing.assert_allclose(moved, base, rtol=2e-3)


@settings(max_examples=20, deadline=None)
@given(seeds, affine)
def test_affinely_related_disparity_is_recovered_exactly(seed, coefficients):
    """p = c·(1/g) + d ⇒ aligned depth = g on every pixel (inside the depth range)."""
    c, d = coefficients
    _, target, mask = sample(seed)
    full = np.random.default_rng(seed).uniform(0.5, 8.0, SHAPE).astype(np.float32)
    pred = c / full + d
    aligned = align_disparity_to_depth(
        jnp.asarray(pred), np.where(np.isnan(target), target, full), mask
    )
    np.testing.assert_allclose(aligned, full, rtol=2e-3)


@settings(max_examples=10, deadline=None)
@given(seeds)
def test_ignored_pixels_do_not_move_the_fit(seed):
    pred, target, mask = sample(seed)
    ignored = np.isnan(target) | (mask == 0)
    changed = np.where(ignored, 100.0 * pred + 7.0, pred)
    a = align_disparity_to_depth(jnp.asarray(pred), target, mask)
    b = align_disparity_to_depth(jnp.asarray(changed), target, mask)
    np.testing.assert_allclose(np.where(ignored, 0, a), np.where(ignored, 0, b), rtol=1e-5)


def test_examples_are_independent_and_degenerate_images_are_defined():
    pred, target, mask = sample(0)
    batch = align_disparity_to_depth(jnp.asarray(pred), target, mask)
    single = align_disparity_to_depth(jnp.asarray(pred[1:]), target[1:], mask[1:])
    np.testing.assert_allclose(batch[1:], single, rtol=1e-6)
    constant = jnp.full(SHAPE, 0.3)
    scale, shift = fit_scale_shift(constant, jnp.asarray(pred), jnp.ones(SHAPE))
    np.testing.assert_allclose(scale, 0.0)
    np.testing.assert_allclose(shift, pred.reshape(2, -1).mean(1), rtol=1e-6)
    scale, shift = fit_scale_shift(jnp.asarray(pred), jnp.asarray(pred), jnp.zeros(SHAPE))
    np.testing.assert_array_equal(scale, 1.0)
    np.testing.assert_array_equal(shift, 0.0)
    clipped = align_disparity_to_depth(-jnp.asarray(pred), target, depth_range=(0.5, 4.0))
    assert np.all((np.asarray(clipped) >= 0.5 - 1e-6) & (np.asarray(clipped) <= 4.0 + 1e-5))
    with pytest.raises(ValueError, match="depth_range"):
        align_disparity_to_depth(jnp.asarray(pred), target, depth_range=(1.0, 0.5))


def test_aligned_attack_losses_measure_after_alignment_and_are_differentiable():
    pred, target, mask = sample(1)
    loss = aligned_loss(losses.attack_loss("l1"))
    assert loss.__name__ == "l1_loss_aligned"
    value = loss(jnp.asarray(pred), jnp.asarray(target), jnp.asarray(mask))
    np.testing.assert_allclose(
        value,
        losses.l1_loss(
            align_disparity_to_depth(jnp.asarray(pred), target, mask), jnp.asarray(target), mask
        ),
    )
    gradient = jax.grad(lambda p: jnp.sum(loss(p, jnp.asarray(target))))(jnp.asarray(pred))
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)
    exact = aligned_loss(losses.l1_loss)(
        jnp.asarray(2.0 / np.nan_to_num(target, nan=1.0) + 1), target
    )
    np.testing.assert_allclose(exact, 0.0, atol=1e-4)
