"""Metrics: a hand-worked case, an independent NumPy reference, upsampling and the accumulator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mde_adv import metrics

# Two 2×2 images, worked by hand.
# Image 0: t = [[1, 2], [2, 4]], o = [[1, 2.5], [1.5, 4]]; errors 0, .5, .5, 0.
#   MSE = 0.5/4 = 0.125; REL = (.25 + .25)/4 = 0.125;
#   log10 = (log10 1.25 + log10 4/3)/4 = (0.0969100 + 0.1249387)/4 = 0.0554622;
#   ratios 1, 1.25, 4/3, 1: δ1 = 3/4 (1.25 ≤ 1.25 counts), δ2 = δ3 = 1.
# Image 1: t = [[1, 2], [2, NaN]], o = [[−1, 2], [2, 4]]; 3 valid pixels, errors 2, 0, 0.
#   MSE = 4/3; REL = 2/3; log10 undefined (o < 0); the o = −1 pixel is never within 1.25^k:
#   δ1 = δ2 = δ3 = 2/3.
# Aggregate: RMSE = sqrt((0.125 + 4/3)/2) = 0.8539126; REL = (0.125 + 2/3)/2 = 0.3958333;
#   log10 = 0.0554622 over 1 image, 1 image undefined; δ1 = (3/4 + 2/3)/2 = 0.7083333,
#   δ2 = δ3 = (1 + 2/3)/2 = 0.8333333.
HAND_TARGET = np.array([[[1, 2], [2, 4]], [[1, 2], [2, np.nan]]], np.float32)[..., None]
HAND_PRED = np.array([[[1, 2.5], [1.5, 4]], [[-1, 2], [2, 4]]], np.float32)[..., None]


def test_hand_worked_per_image_values():
    values = metrics.image_metrics(jnp.asarray(HAND_PRED), jnp.asarray(HAND_TARGET))
    np.testing.assert_allclose(values["mse"], [0.125, 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(values["rmse"], [0.125**0.5, (4 / 3) ** 0.5], rtol=1e-6)
    np.testing.assert_allclose(values["rel"], [0.125, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(values["log10"][0], 0.0554622, rtol=1e-5)
    assert np.isnan(values["log10"][1])
    np.testing.assert_allclose(values["delta1"], [0.75, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(values["delta2"], [1.0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(values["delta3"], [1.0, 2 / 3], rtol=1e-6)


def test_hand_worked_aggregate_reports_undefined_log10():
    state = metrics.metrics_update(
        metrics.metrics_init(), metrics.image_metrics(HAND_PRED, HAND_TARGET)
    )
    result = metrics.metrics_finalize(state)
    np.testing.assert_allclose(result["rmse"], 0.8539126, rtol=1e-6)
    np.testing.assert_allclose(result["rel"], 0.3958333, rtol=1e-6)
    np.testing.assert_allclose(result["log10"], 0.0554622, rtol=1e-5)
    np.testing.assert_allclose(result["delta1"], 0.7083333, rtol=1e-6)
    np.testing.assert_allclose(result["delta2"], 0.8333333, rtol=1e-6)
    np.testing.assert_allclose(result["delta3"], 0.8333333, rtol=1e-6)
    assert float(result["images"]) == 2
    assert float(result["log10_undefined_images"]) == 1


def numpy_image_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Independent per-image reference in float64 (same resolution), one image at a time."""
    out = {name: [] for name in ("mse", "rel", "log10", "delta1", "delta2", "delta3")}
    for o, t in zip(pred.astype(np.float64), target.astype(np.float64), strict=True):
        valid = ~np.isnan(t)
        o, t = o[valid], t[valid]
        out["mse"].append(np.mean((o - t) ** 2))
        out["rel"].append(np.mean(np.abs(o - t) / t))
        with np.errstate(invalid="ignore", divide="ignore"):
            log10 = np.mean(np.abs(np.log10(o) - np.log10(t)))
        out["log10"].append(log10 if np.all(o > 0) else np.nan)
        ratio = np.where(o > 0, np.maximum(o / t, t / np.where(o > 0, o, 1)), np.inf)
        for k in (1, 2, 3):
            out[f"delta{k}"].append(np.mean(ratio <= 1.25**k))
    return {name: np.array(values) for name, values in out.items()}


def random_case(seed: int, batch: int = 5, shape=(6, 8)):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.7, 9.0, (batch, *shape, 1))
    pred = target * rng.uniform(0.6, 1.6, target.shape)
    target[rng.uniform(size=target.shape) < 0.2] = np.nan
    if batch > 1:  # image 1 gets an undefined log10: a negative prediction on a valid pixel
        pred[1, 2, 3], target[1, 2, 3] = -0.4, 2.0
    return pred.astype(np.float32), target.astype(np.float32)


def test_per_image_values_match_numpy_reference():
    pred, target = random_case(0)
    values = metrics.image_metrics(jnp.asarray(pred), jnp.asarray(target))
    expected = numpy_image_metrics(pred, target)
    for name, ref in expected.items():
        np.testing.assert_allclose(values[name], ref, rtol=2e-5, err_msg=name)
    assert np.isnan(values["log10"][1]) and np.all(np.isfinite(np.delete(values["log10"], 1)))


def test_prediction_is_upsampled_with_aligned_corners():
    # Align-corners bilinear reproduces a linear ramp exactly, corners included: a 3×4 ramp
    # scores like the 6×8 ramp with the same corner values (half-pixel resizing would not).
    rows, cols = np.meshgrid(np.linspace(0, 1, 6), np.linspace(0, 1, 8), indexing="ij")
    high = (1.0 + rows + 2 * cols)[None, :, :, None].astype(np.float32)
    rows, cols = np.meshgrid(np.linspace(0, 1, 3), np.linspace(0, 1, 4), indexing="ij")
    low = (1.0 + rows + 2 * cols)[None, :, :, None].astype(np.float32)
    target = random_case(1, batch=1)[1]
    from_low = metrics.image_metrics(jnp.asarray(low), jnp.asarray(target))
    from_high = metrics.image_metrics(jnp.asarray(high), jnp.asarray(target))
    for name in metrics.PER_IMAGE_NAMES:
        np.testing.assert_allclose(from_low[name], from_high[name], rtol=1e-5, err_msg=name)


def assert_trees_close(a, b) -> None:
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6), a, b)


def test_streaming_equals_one_shot_and_numpy_aggregate():
    pred, target = random_case(2, batch=7)
    per_image = metrics.image_metrics(jnp.asarray(pred), jnp.asarray(target))
    one_shot = metrics.metrics_update(metrics.metrics_init(), per_image)

    chunks = [slice(0, 3), slice(3, 4), slice(4, 7)]
    states = [
        metrics.metrics_update(
            metrics.metrics_init(), metrics.image_metrics(pred[part], target[part])
        )
        for part in chunks
    ]
    merged = metrics.metrics_merge(metrics.metrics_merge(states[2], states[0]), states[1])
    assert_trees_close(one_shot, merged)

    ref = numpy_image_metrics(pred, target)
    result = metrics.metrics_finalize(merged)
    np.testing.assert_allclose(result["rmse"], np.sqrt(ref["mse"].mean()), rtol=1e-5)
    np.testing.assert_allclose(result["rel"], ref["rel"].mean(), rtol=1e-5)
    np.testing.assert_allclose(result["log10"], np.nanmean(ref["log10"]), rtol=1e-5)
    for k in (1, 2, 3):
        np.testing.assert_allclose(result[f"delta{k}"], ref[f"delta{k}"].mean(), rtol=1e-5)
    assert float(result["log10_undefined_images"]) == 1 and float(result["images"]) == 7


def test_example_mask_drops_padding_examples():
    pred, target = random_case(3, batch=4)
    per_image = metrics.image_metrics(jnp.asarray(pred), jnp.asarray(target))
    masked = metrics.metrics_update(
        metrics.metrics_init(), per_image, jnp.array([True, False, True, True])
    )
    kept = metrics.metrics_update(
        metrics.metrics_init(), metrics.image_metrics(pred[[0, 2, 3]], target[[0, 2, 3]])
    )
    assert_trees_close(masked, kept)


def test_an_image_without_valid_pixels_is_not_hidden():
    pred, target = random_case(4, batch=2)
    target[0] = np.nan
    values = metrics.image_metrics(jnp.asarray(pred), jnp.asarray(target))
    assert all(np.isnan(values[name][0]) for name in metrics.PER_IMAGE_NAMES)
    result = metrics.metrics_finalize(metrics.metrics_update(metrics.metrics_init(), values))
    assert np.isnan(result["rmse"]) and np.isnan(result["rel"])


def test_merge_across_processes(monkeypatch):
    pred, target = random_case(5, batch=3)
    state = metrics.metrics_update(metrics.metrics_init(), metrics.image_metrics(pred, target))
    assert metrics.merge_across_processes(state) is state  # a single process

    gathered = []

    def fake_allgather(tree):
        gathered.append(tree)
        return jax.tree_util.tree_map(lambda leaf: np.stack([leaf, 2 * leaf]), tree)

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(metrics.multihost_utils, "process_allgather", fake_allgather)
    merged = metrics.merge_across_processes(state)
    assert len(gathered) == 1
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, 3 * b), merged, state)


@pytest.mark.parametrize(
    "pred_shape, target_shape",
    [((2, 3, 4, 1), (3, 6, 8, 1)), ((2, 3, 4), (2, 6, 8)), ((2, 3, 4, 2), (2, 6, 8, 1))],
)
def test_bad_shapes_are_rejected(pred_shape, target_shape):
    with pytest.raises(AssertionError):
        metrics.image_metrics(jnp.ones(pred_shape), jnp.ones(target_shape))
