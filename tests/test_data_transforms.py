"""Transforms of spec §6 against independent references (NumPy formulas, PIL, scipy.ndimage)."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mde_adv.data import transforms as T
from mde_adv.normalization import IMAGENET_MEAN, IMAGENET_STD, denormalize

ndimage = pytest.importorskip("scipy.ndimage")

NO_AUGMENTATION = T.Augmentation(0.0, 0.0, 0.0, 0.0)


def _smooth_rgb(rng, height, width):
    """A smooth random uint8 image (interpolation errors stay small on it)."""
    coarse = rng.uniform(0, 255, (4, 5, 3))
    zoomed = ndimage.zoom(coarse, (height / 4, width / 5, 1), order=1)[:height, :width]
    return np.clip(zoomed + rng.uniform(-10, 10, zoomed.shape), 0, 255).astype(np.uint8)


def _interior(shape, degrees):
    """Pixels whose rotated source lies well inside the image (away from the zero border)."""
    inside = ndimage.rotate(np.ones(shape), degrees, reshape=False, order=1) > 0.999
    return ndimage.binary_erosion(inside, iterations=1)


def _pil_style_bilinear(image: np.ndarray, out_hw) -> np.ndarray:
    """Reference: separable triangle filter widened by the downscale factor (PIL's BILINEAR),
    horizontal pass first with uint8 rounding in between, as Pillow does."""

    def resample(array, axis, out):
        size = array.shape[axis]
        scale = size / out
        support = max(scale, 1.0)
        weights = np.zeros((out, size))
        for o in range(out):
            centre = (o + 0.5) * scale
            taps = np.arange(size) + 0.5 - centre
            weights[o] = np.maximum(0.0, 1.0 - np.abs(taps) / support)
        weights /= weights.sum(axis=1, keepdims=True)
        moved = np.moveaxis(array.astype(np.float64), axis, 0)
        result = np.tensordot(weights, moved, axes=(1, 0))
        return np.clip(np.round(np.moveaxis(result, 0, axis)), 0, 255)

    return resample(resample(image, 1, out_hw[1]), 0, out_hw[0]).astype(np.uint8)


@pytest.mark.parametrize("in_hw, out_hw", [((96, 128), (48, 64)), ((60, 80), (37, 50))])
def test_resize_rgb_matches_triangle_filter_reference(in_hw, out_hw):
    rgb = np.random.default_rng(1).integers(0, 256, (*in_hw, 3), dtype=np.uint8)
    resized = T.resize_rgb(rgb, out_hw)
    assert resized.shape == (*out_hw, 3) and resized.dtype == np.uint8
    difference = np.abs(resized.astype(int) - _pil_style_bilinear(rgb, out_hw).astype(int))
    assert difference.max() <= 1


@pytest.mark.parametrize("in_hw, out_hw", [((96, 128), (48, 64)), ((60, 80), (37, 50))])
def test_resize_depth_is_nearest_at_pixel_centres(in_hw, out_hw):
    """Source index ⌊(i + ½)·in/out⌋; where (i + ½)·in/out is an integer (a tie between two
    source pixels) the lower neighbour is accepted too."""
    depth = np.random.default_rng(2).uniform(0.5, 10, in_hw).astype(np.float32)
    resized = T.resize_depth(depth, out_hw)
    assert resized.shape == out_hw and resized.dtype == np.float32

    def source_indices(axis):
        numerator = (2 * np.arange(out_hw[axis]) + 1) * in_hw[axis]
        index = numerator // (2 * out_hw[axis])
        return index, index - (numerator % (2 * out_hw[axis]) == 0)

    rows, cols = source_indices(0), source_indices(1)
    candidates = [depth[np.ix_(r, c)] for r in rows for c in cols]
    assert np.all(np.any([resized == c for c in candidates], axis=0))
    assert np.mean(resized == candidates[0]) > 0.9  # ties are rare


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(4, 40),
    width=st.integers(4, 40),
    crop_h=st.integers(1, 40),
    crop_w=st.integers(1, 40),
)
def test_centre_crop_and_flip_match_pil(height, width, crop_h, crop_w):
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    rgb = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), np.uint8)
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    reference = Image.fromarray(rgb).crop((left, top, left + crop_w, top + crop_h))
    np.testing.assert_array_equal(T.centre_crop(rgb, (crop_h, crop_w)), np.asarray(reference))
    mirrored = Image.fromarray(rgb).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    np.testing.assert_array_equal(T.hflip(rgb), np.asarray(mirrored))


def test_centre_crop_rejects_a_crop_larger_than_the_image():
    with pytest.raises(ValueError, match="larger"):
        T.centre_crop(np.zeros((10, 10)), (12, 8))


@pytest.mark.parametrize("degrees", [-5.0, -2.5, 3.7])
def test_rotation_matches_scipy_about_the_centre_with_zero_corners(degrees):
    rng = np.random.default_rng(3)
    rgb = _smooth_rgb(rng, 60, 80)
    reference = ndimage.rotate(rgb.astype(float), degrees, reshape=False, order=1, cval=0.0)
    inside = _interior((60, 80), degrees)
    rotated = T.rotate_rgb(rgb, degrees).astype(float)
    assert np.abs(rotated - reference)[inside].max() <= 1.0
    assert np.all(rotated[0, 0] == 0) and np.all(rotated[-1, -1] == 0)

    depth = rng.uniform(0.5, 10, (60, 80)).astype(np.float32)
    depth_reference = ndimage.rotate(depth, degrees, reshape=False, order=0, cval=0.0)
    rotated_depth = T.rotate_depth(depth, degrees)
    assert np.mean((rotated_depth != depth_reference)[inside]) < 0.002  # ties at half pixels
    assert rotated_depth[0, 0] == 0 and rotated_depth[-1, -1] == 0


def test_pca_lighting_adds_one_colour_along_the_eigenvectors():
    alpha = np.array([0.3, -1.2, 0.7], np.float32)
    rgb = np.random.default_rng(4).uniform(0, 1, (5, 6, 3)).astype(np.float32)
    offset = T.pca_lighting(rgb, alpha) - rgb
    np.testing.assert_allclose(offset, np.broadcast_to(offset[0, 0], offset.shape), atol=1e-6)
    # The eigenvectors are orthonormal: projecting the offset recovers alpha ⊙ eigval.
    np.testing.assert_allclose(T.PCA_EIGVEC.T @ offset[0, 0], alpha * T.PCA_EIGVAL, atol=2e-4)


def test_colour_jitter_limits_and_luma_property():
    rgb = np.random.default_rng(5).uniform(0, 1, (8, 9, 3)).astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = T.colour_jitter(rgb, np.array([2]), np.array([0, 0, 1.0], np.float32))
    np.testing.assert_allclose(grey, np.repeat(luma[..., None], 3, axis=-1), atol=1e-6)
    flat = T.colour_jitter(rgb, np.array([1]), np.array([0, 1.0, 0], np.float32))
    np.testing.assert_allclose(flat, np.full_like(rgb, luma.mean()), atol=1e-6)
    # Contrast and saturation keep the mean luma; brightness scales it by (1 − α).
    alphas = np.array([0.3, -0.4, 0.25], np.float32)
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        jittered = T.colour_jitter(rgb, np.array(order), alphas)
        jittered_luma = (jittered @ np.array([0.299, 0.587, 0.114], np.float32)).mean()
        np.testing.assert_allclose(jittered_luma, 0.7 * luma.mean(), rtol=1e-5)
    bright = T.colour_jitter(rgb, np.array([0]), np.array([-0.4, 0, 0], np.float32))
    assert bright.max() > 1.0  # brightened past 1: not clamped


def test_eval_transform_shapes_values_and_normalisation():
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 10, (480, 640)).astype(np.float32)
    image, target = T.eval_transform(rgb, depth)
    assert image.shape == (228, 304, 3) and image.dtype == np.float32
    assert target.shape == (228, 304, 1) and target.dtype == np.float32
    expected_pixels = _pil_style_bilinear(rgb, (240, 320))[6:234, 8:312] / 255.0
    np.testing.assert_allclose(denormalize(image), expected_pixels, atol=1.01 / 255)
    np.testing.assert_array_equal(target[..., 0], depth[1::2, 1::2][6:234, 8:312])
    # Uniform pixels at the resize size (an identity resize): the normalised statistics are
    # those of U{0..255}/255 through the ImageNet mean and std.
    uniform = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    image, _ = T.eval_transform(uniform, np.ones((240, 320), np.float32))
    pixel_std = np.sqrt((256**2 - 1) / 12) / 255
    np.testing.assert_allclose(image.mean((0, 1)), (0.5 - IMAGENET_MEAN) / IMAGENET_STD, atol=0.02)
    np.testing.assert_allclose(image.std((0, 1)), pixel_std / IMAGENET_STD, rtol=0.02)


def test_train_transform_without_augmentation_equals_eval_transform():
    rng = np.random.default_rng(7)
    rgb, depth = _smooth_rgb(rng, 96, 128), rng.uniform(1, 9, (96, 128)).astype(np.float32)
    sizes = T.scaled_sizes(0.2)
    image, target = T.train_transform(rgb, depth, rng, sizes, NO_AUGMENTATION)
    eval_image, eval_depth = T.eval_transform(rgb, depth, sizes)
    np.testing.assert_allclose(image, eval_image, atol=1e-6)
    expected_depth = T.resize_depth(eval_depth[..., 0], sizes.depth_hw)
    np.testing.assert_array_equal(target[..., 0], expected_depth)
    assert target.shape == (*sizes.depth_hw, 1)


def test_train_transform_flip_mirrors_and_rotation_zeroes_corners():
    rng = np.random.default_rng(8)
    rgb, depth = _smooth_rgb(rng, 96, 128), rng.uniform(1, 9, (96, 128)).astype(np.float32)
    sizes = T.TransformSizes((48, 64), (44, 60), (44, 60))  # symmetric crop, no depth resize
    flip_only = dataclasses.replace(NO_AUGMENTATION, flip_probability=1.0)
    image, target = T.train_transform(rgb, depth, rng, sizes, flip_only)
    eval_image, eval_depth = T.eval_transform(rgb, depth, sizes)
    np.testing.assert_allclose(image, eval_image[:, ::-1], atol=1e-6)
    np.testing.assert_array_equal(target, eval_depth[:, ::-1])

    rotate_only = dataclasses.replace(NO_AUGMENTATION, max_rotation_degrees=20.0)
    sizes = T.TransformSizes((48, 64), (48, 64), (48, 64))
    resized = T.resize_depth(depth, (48, 64))
    for seed in range(3):
        angle = T.draw_augmentation(np.random.default_rng(seed), rotate_only).rotation_degrees
        image, target = T.train_transform(
            rgb, depth, np.random.default_rng(seed), sizes, rotate_only
        )
        reference = ndimage.rotate(resized, angle, reshape=False, order=0, cval=0.0)
        assert np.mean((target[..., 0] != reference)[_interior((48, 64), angle)]) < 0.005
        outside = ndimage.binary_erosion(target[..., 0] == 0, iterations=1)
        assert outside.sum() > 0  # the corners rotated out, for RGB as for depth
        zero_colour = (0 - IMAGENET_MEAN) / IMAGENET_STD
        np.testing.assert_allclose(
            image[outside], np.broadcast_to(zero_colour, image[outside].shape), atol=1e-5
        )


def test_train_transform_is_deterministic_in_the_generator():
    rng = np.random.default_rng(9)
    rgb, depth = _smooth_rgb(rng, 96, 128), rng.uniform(1, 9, (96, 128)).astype(np.float32)
    sizes = T.scaled_sizes(0.3)
    first = T.train_transform(rgb, depth, np.random.default_rng([1, 2, 3]), sizes)
    again = T.train_transform(rgb, depth, np.random.default_rng([1, 2, 3]), sizes)
    other = T.train_transform(rgb, depth, np.random.default_rng([1, 2, 4]), sizes)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert first[0].shape == (*sizes.crop_hw, 3) and first[1].shape == (*sizes.depth_hw, 1)


def test_augmentation_draws_follow_their_distributions():
    rng = np.random.default_rng(10)
    draws = [T.draw_augmentation(rng, T.Augmentation()) for _ in range(2000)]
    flips = np.mean([d.flip for d in draws])
    angles = np.array([d.rotation_degrees for d in draws])
    alphas = np.array([d.lighting_alpha for d in draws])
    jitter = np.array([d.jitter_alphas for d in draws])
    assert abs(flips - 0.5) < 0.05
    assert (
        angles.min() >= -5
        and angles.max() <= 5
        and angles.std() == pytest.approx(10 / np.sqrt(12), rel=0.1)
    )
    assert alphas.std() == pytest.approx(0.1, rel=0.1)
    assert jitter.min() >= -0.4 and jitter.max() <= 0.4
    orders = {tuple(d.jitter_order) for d in draws}
    assert len(orders) == 6  # every order of the three jitters occurs


def test_scaled_sizes_and_validation():
    assert T.scaled_sizes(1.0) == T.PAPER_SIZES
    half = T.scaled_sizes(0.5)
    assert (half.resize_hw, half.crop_hw, half.depth_hw) == ((120, 160), (114, 152), (57, 76))
    with pytest.raises(ValueError, match="exceeds"):
        T.TransformSizes((100, 100), (120, 90), (60, 45))
    with pytest.raises(ValueError, match="scale"):
        T.scaled_sizes(0.0)
    with pytest.raises(ValueError, match="rgb"):
        T.eval_transform(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 11), np.float32))
