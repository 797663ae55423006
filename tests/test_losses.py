"""Losses: Sobel, l_dif (Eq. 6) vs NumPy and the authors' PyTorch formulation, attack losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mde_adv import losses
from mde_adv.models import resize_bilinear_align_corners

SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float64)
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)


def numpy_sobel(depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation with zero padding 1, written out as loops over the 3×3 window."""
    padded = np.pad(depth[..., 0], ((0, 0), (1, 1), (1, 1)))
    height, width = depth.shape[1:3]
    d_x = np.zeros(depth.shape[:3])
    d_y = np.zeros(depth.shape[:3])
    for u in range(3):
        for v in range(3):
            window = padded[:, u : u + height, v : v + width]
            d_x += SOBEL_X[u, v] * window
            d_y += SOBEL_Y[u, v] * window
    return d_x[..., None], d_y[..., None]


def numpy_l_dif_parts(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    pred, target = pred.astype(np.float64), target.astype(np.float64)
    pdx, pdy = numpy_sobel(pred)
    tdx, tdy = numpy_sobel(target)
    n_p = np.concatenate([-pdx, -pdy, np.ones_like(pdx)], -1)
    n_t = np.concatenate([-tdx, -tdy, np.ones_like(tdx)], -1)
    cos = (n_p * n_t).sum(-1) / (np.linalg.norm(n_p, axis=-1) * np.linalg.norm(n_t, axis=-1))
    return {
        "l_depth": np.log(np.abs(pred - target) + 0.5).mean(),
        "l_grad": np.log(np.abs(pdx - tdx) + 0.5).mean() + np.log(np.abs(pdy - tdy) + 0.5).mean(),
        "l_normal": np.abs(1 - cos).mean(),
    }


def random_depths(seed: int, shape=(2, 6, 7, 1)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0.5, 5.0, shape).astype(np.float32),
        rng.uniform(0.5, 5.0, shape).astype(np.float32),
    )


def test_sobel_matches_loop_reference():
    depth, _ = random_depths(0)
    d_x, d_y = losses.sobel(jnp.asarray(depth))
    ref_x, ref_y = numpy_sobel(depth)
    np.testing.assert_allclose(d_x, ref_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_y, ref_y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("slope_x, slope_y", [(1.0, 0.0), (0.0, 1.0), (0.5, -2.0)])
def test_sobel_of_a_plane_is_cross_correlation(slope_x, slope_y):
    # d(i, j) = slope_x·j + slope_y·i. Cross-correlation (no flip) sums k[u, v]·d(i+u−1, j+v−1):
    # d_x = 4·d(·, j−1) − 4·d(·, j+1) = −8·slope_x in the interior (a flipped kernel gives +8),
    # and d_y = −8·slope_y likewise.
    rows, cols = np.meshgrid(np.arange(6.0), np.arange(7.0), indexing="ij")
    depth = (slope_x * cols + slope_y * rows)[None, :, :, None].astype(np.float32)
    d_x, d_y = losses.sobel(jnp.asarray(depth))
    np.testing.assert_allclose(d_x[0, 1:-1, 1:-1, 0], -8 * slope_x, atol=1e-5)
    np.testing.assert_allclose(d_y[0, 1:-1, 1:-1, 0], -8 * slope_y, atol=1e-5)


def test_l_dif_parts_match_numpy_reference():
    pred, target = random_depths(1)
    ref = numpy_l_dif_parts(pred, target)
    parts = losses.l_dif_terms(jnp.asarray(pred), jnp.asarray(target))
    for name in ("l_depth", "l_grad", "l_normal"):
        np.testing.assert_allclose(parts[name], ref[name], rtol=1e-5, err_msg=name)
    total = sum(ref.values())
    np.testing.assert_allclose(parts["l_dif"], total, rtol=1e-5)
    np.testing.assert_allclose(losses.l_dif(pred, target), total, rtol=1e-5)
    np.testing.assert_allclose(losses.l_depth(pred, target), ref["l_depth"], rtol=1e-5)
    np.testing.assert_allclose(losses.l_grad(pred, target), ref["l_grad"], rtol=1e-5)
    np.testing.assert_allclose(losses.l_normal(pred, target), ref["l_normal"], rtol=1e-5)


def test_l_dif_of_identical_maps_is_three_log_half():
    # Zero error everywhere: each of the three log terms is ln 0.5, the normal term 0.
    depth, _ = random_depths(2)
    np.testing.assert_allclose(losses.l_dif(depth, depth), 3 * np.log(0.5), rtol=1e-6)


@pytest.mark.torch
def test_l_dif_matches_authors_pytorch_formulation(torch_module):
    torch = torch_module
    pred, target = random_depths(3, (2, 9, 11, 1))

    # The Sobel module and loss of Revisiting_Single_Depth_Estimation (NCHW, float64).
    sobel = torch.nn.Conv2d(1, 2, kernel_size=3, stride=1, padding=1, bias=False)
    weight = np.stack([SOBEL_X, SOBEL_Y])[:, None]
    sobel.weight = torch.nn.Parameter(torch.from_numpy(weight), requires_grad=False)
    cos = torch.nn.CosineSimilarity(dim=1, eps=0)
    output = torch.from_numpy(pred.transpose(0, 3, 1, 2).astype(np.float64))
    depth = torch.from_numpy(target.transpose(0, 3, 1, 2).astype(np.float64))
    ones = torch.ones_like(depth)
    depth_grad, output_grad = sobel(depth), sobel(output)
    depth_dx, depth_dy = depth_grad[:, 0:1], depth_grad[:, 1:2]
    output_dx, output_dy = output_grad[:, 0:1], output_grad[:, 1:2]
    depth_normal = torch.cat((-depth_dx, -depth_dy, ones), 1)
    output_normal = torch.cat((-output_dx, -output_dy, ones), 1)
    loss_depth = torch.log(torch.abs(output - depth) + 0.5).mean()
    loss_dx = torch.log(torch.abs(output_dx - depth_dx) + 0.5).mean()
    loss_dy = torch.log(torch.abs(output_dy - depth_dy) + 0.5).mean()
    loss_normal = torch.abs(1 - cos(output_normal, depth_normal)).mean()
    expected = (loss_depth + loss_normal + (loss_dx + loss_dy)).item()

    np.testing.assert_allclose(losses.l_dif(pred, target), expected, rtol=1e-5)


def test_mask_restricts_the_means():
    pred, target = random_depths(4)
    mask = np.zeros_like(pred)
    mask[:, 1:4, 2:6] = 1.0
    depth_term = np.log(np.abs(pred.astype(np.float64) - target) + 0.5)
    np.testing.assert_allclose(
        losses.l_depth(pred, target, mask), depth_term[mask.astype(bool)].mean(), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.l_dif(pred, target, np.ones_like(pred)), losses.l_dif(pred, target), rtol=1e-6
    )
    assert abs(float(losses.l_dif(pred, target, mask)) - float(losses.l_dif(pred, target))) > 1e-4


def test_sparsity_is_the_mean_of_the_mask():
    mask = np.random.default_rng(5).uniform(size=(2, 4, 5, 1)).astype(np.float32)
    np.testing.assert_allclose(losses.sparsity(mask), np.abs(mask).sum() / mask.size, rtol=1e-6)


NUMPY_ATTACK_LOSSES = {
    "l1": lambda d, g: np.abs(d - g),
    "l2": lambda d, g: (d - g) ** 2,
    "rel": lambda d, g: np.abs(d - g) / g,
    "log10": lambda d, g: np.abs(np.log10(d) - np.log10(g)),
}


@pytest.mark.parametrize("name", sorted(NUMPY_ATTACK_LOSSES))
def test_pointwise_attack_losses_per_example(name):
    pred, target = random_depths(6, (3, 4, 5, 1))
    values = losses.attack_loss(name)(jnp.asarray(pred), jnp.asarray(target))
    expected = NUMPY_ATTACK_LOSSES[name](pred.astype(np.float64), target).mean(axis=(1, 2, 3))
    assert values.shape == (3,)
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_attack_l_dif_is_per_example():
    pred, target = random_depths(7, (3, 6, 7, 1))
    values = losses.attack_loss("l_dif")(jnp.asarray(pred), jnp.asarray(target))
    for i in range(3):
        np.testing.assert_allclose(
            values[i], losses.l_dif(pred[i : i + 1], target[i : i + 1]), rtol=1e-5
        )


@pytest.mark.parametrize("name", sorted(losses.ATTACK_LOSSES))
def test_attack_losses_mask_nan_targets_and_resize(name):
    loss_fn = losses.attack_loss(name)
    pred, target = random_depths(8, (2, 5, 6, 1))
    high_res = resize_bilinear_align_corners(jnp.asarray(target), (9, 11))
    np.testing.assert_allclose(
        loss_fn(jnp.asarray(pred), high_res),
        loss_fn(jnp.asarray(pred), resize_bilinear_align_corners(high_res, (5, 6))),
        rtol=1e-6,
    )
    holed = target.copy()
    holed[0, 1, 2] = np.nan
    mask = np.isfinite(holed).astype(np.float32)
    value, grad = jax.value_and_grad(lambda p: loss_fn(p, jnp.asarray(holed)).sum())(
        jnp.asarray(pred)
    )
    assert np.all(np.isfinite(grad)) and np.isfinite(value)
    filled = np.where(np.isfinite(holed), holed, pred)
    np.testing.assert_allclose(value, loss_fn(pred, filled, mask).sum(), rtol=1e-6)


def test_log10_loss_is_finite_and_increasing_for_non_positive_predictions():
    target = jnp.full((1, 2, 2, 1), 2.0)
    preds = jnp.array([1.0, 1e-2, 1e-3, 0.0, -0.5, -3.0])
    loss_fn = lambda d: losses.log10_loss(jnp.full((1, 2, 2, 1), d), target)[0]
    values = jax.vmap(loss_fn)(preds)
    grads = jax.vmap(jax.grad(loss_fn))(preds)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
    assert np.all(np.diff(np.asarray(values)) > 0), values
    assert np.all(np.asarray(grads) < 0), grads
    np.testing.assert_allclose(values[0], np.log10(2.0), rtol=1e-6)


def test_unknown_attack_loss_is_a_value_error():
    assert set(losses.ATTACK_LOSSES) == {"l1", "l2", "rel", "log10", "l_dif"}
    with pytest.raises(ValueError, match="'huber'"):
        losses.attack_loss("huber")
