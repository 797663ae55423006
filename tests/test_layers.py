"""Shared layers of N and G: align-corners resize, PyTorch BatchNorm, up-projection."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, PartitionSpec

from mde_adv.models import UpProjection, resize_bilinear_align_corners
from mde_adv.models.layers import batch_norm, conv_nhwc, max_pool

# (input H×W, output h×w): the spec's non-integer ratios, down-sizing, size 1, identity.
RESIZE_CASES = [
    ((8, 10), (15, 19)),
    ((15, 19), (29, 38)),
    ((29, 38), (57, 76)),
    ((57, 76), (114, 152)),
    ((57, 76), (29, 38)),
    ((9, 7), (4, 3)),
    ((6, 5), (1, 1)),
    ((1, 1), (3, 4)),
    ((1, 6), (5, 1)),
    ((5, 5), (5, 5)),
]


def _source_coordinate(index: int, in_size: int, out_size: int) -> float:
    return 0.0 if out_size == 1 else index * (in_size - 1) / (out_size - 1)


def reference_resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Loop-by-pixel align-corners bilinear resize of images[B, H, W, C] in float64."""
    batch, in_h, in_w, channels = images.shape
    out = np.zeros((batch, *size, channels))
    for i in range(size[0]):
        y = _source_coordinate(i, in_h, size[0])
        y0 = min(int(np.floor(y)), in_h - 1)
        y1, wy = min(y0 + 1, in_h - 1), y - y0
        for j in range(size[1]):
            x = _source_coordinate(j, in_w, size[1])
            x0 = min(int(np.floor(x)), in_w - 1)
            x1, wx = min(x0 + 1, in_w - 1), x - x0
            top = (1 - wx) * images[:, y0, x0] + wx * images[:, y0, x1]
            bottom = (1 - wx) * images[:, y1, x0] + wx * images[:, y1, x1]
            out[:, i, j] = (1 - wy) * top + wy * bottom
    return out


def _random_images(in_hw: tuple[int, int], seed: int = 0, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, *in_hw, channels)).astype(np.float32)


@pytest.mark.parametrize(("in_hw", "out_hw"), RESIZE_CASES)
def test_resize_matches_loop_reference(in_hw, out_hw):
    images = _random_images(in_hw)
    resized = resize_bilinear_align_corners(jnp.asarray(images), out_hw)
    assert resized.shape == (2, *out_hw, 3) and resized.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(resized), reference_resize(images, out_hw), atol=1e-5)


@pytest.mark.torch
@pytest.mark.parametrize(("in_hw", "out_hw"), RESIZE_CASES)
def test_resize_matches_torch_align_corners(torch_module, in_hw, out_hw):
    """Pixel-range inputs: torch computes source coordinates in float32 (error ≈ 4e-6 × the
    step between neighbours at 57→114), this implementation exactly, so the gap scales with
    the data's range."""
    images = np.random.default_rng(1).uniform(size=(2, *in_hw, 3)).astype(np.float32)
    expected = torch_module.nn.functional.interpolate(
        torch_module.from_numpy(images).permute(0, 3, 1, 2),
        size=out_hw,
        mode="bilinear",
        align_corners=True,
    )
    resized = resize_bilinear_align_corners(jnp.asarray(images), out_hw)
    np.testing.assert_allclose(np.asarray(resized), expected.permute(0, 2, 3, 1).numpy(), atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(
    in_hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    out_hw=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    coefficients=st.tuples(*[st.floats(-3, 3) for _ in range(4)]),
)
def test_resize_reproduces_bilinear_functions_at_align_corners_coordinates(
    in_hw, out_hw, coefficients
):
    """f(y, x) = a + b·y + c·x + d·x·y sampled on the input grid resizes to f at the sources."""
    a, b, c, d = coefficients
    bilinear = lambda y, x: a + b * y + c * x + d * x * y
    ys, xs = np.meshgrid(np.arange(in_hw[0]), np.arange(in_hw[1]), indexing="ij")
    images = bilinear(ys, xs)[None, :, :, None].astype(np.float32)
    source_y = [_source_coordinate(i, in_hw[0], out_hw[0]) for i in range(out_hw[0])]
    source_x = [_source_coordinate(j, in_hw[1], out_hw[1]) for j in range(out_hw[1])]
    expected = bilinear(*np.meshgrid(source_y, source_x, indexing="ij"))
    resized = np.asarray(resize_bilinear_align_corners(jnp.asarray(images), out_hw))[0, :, :, 0]
    np.testing.assert_allclose(resized, expected, atol=1e-4)
    assert resized.min() >= images.min() - 1e-4 and resized.max() <= images.max() + 1e-4


def test_resize_gradient_is_the_adjoint_of_the_reference():
    """<R x, y> = <x, Rᵀ y> with R from the loop reference and Rᵀ y from JAX's VJP."""
    images = _random_images((15, 19))
    cotangent = np.random.default_rng(2).normal(size=(2, 29, 38, 3))
    _, vjp = jax.vjp(lambda x: resize_bilinear_align_corners(x, (29, 38)), jnp.asarray(images))
    (pulled_back,) = vjp(jnp.asarray(cotangent, jnp.float32))
    lhs = np.sum(reference_resize(images, (29, 38)) * cotangent)
    rhs = np.sum(images.astype(np.float64) * np.asarray(pulled_back, np.float64))
    np.testing.assert_allclose(rhs, lhs, rtol=1e-5)


def test_resize_preserves_bfloat16():
    images = _random_images((8, 10))
    resized = resize_bilinear_align_corners(jnp.asarray(images, jnp.bfloat16), (15, 19))
    assert resized.dtype == jnp.bfloat16
    expected = reference_resize(np.asarray(jnp.asarray(images, jnp.bfloat16), np.float64), (15, 19))
    np.testing.assert_allclose(np.asarray(resized, np.float64), expected, atol=0.03)


@pytest.mark.parametrize("size", [(0, 4), (3, -1)])
def test_resize_rejects_empty_sizes(size):
    with pytest.raises(ValueError, match="size"):
        resize_bilinear_align_corners(jnp.zeros((1, 4, 4, 1)), size)


def _apply_batch_norm(x: np.ndarray, *, train: bool, variables=None):
    module = batch_norm(train=train, axis_name=None)
    if variables is None:
        variables = module.init(jax.random.key(0), x)
    return module.apply(variables, x, mutable=["batch_stats"])


@pytest.mark.torch
def test_batch_norm_matches_torch_in_train_and_eval(torch_module):
    """Train-mode output, running statistics (momentum 0.1, unbiased variance) and eval output."""
    rng = np.random.default_rng(3)
    batches = [(rng.normal(size=(2, 3, 4, 5)) * 3 + 1).astype(np.float32) for _ in range(2)]
    reference = torch_module.nn.BatchNorm2d(5)
    with torch_module.no_grad():
        reference.weight.copy_(torch_module.linspace(0.5, 2.0, 5))
        reference.bias.copy_(torch_module.linspace(-1.0, 1.0, 5))
    to_nchw = lambda a: torch_module.from_numpy(a).permute(0, 3, 1, 2)
    variables = batch_norm(train=True, axis_name=None).init(jax.random.key(0), batches[0])
    variables["params"] = {
        "scale": jnp.linspace(0.5, 2.0, 5),
        "bias": jnp.linspace(-1.0, 1.0, 5),
    }
    reference.train()
    for x in batches:
        out, state = _apply_batch_norm(x, train=True, variables=variables)
        variables = {**variables, **state}
        expected = reference(to_nchw(x)).detach().permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
    np.testing.assert_allclose(
        variables["batch_stats"]["mean"], reference.running_mean.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        variables["batch_stats"]["var"], reference.running_var.numpy(), rtol=1e-5
    )
    reference.eval()
    out, _ = _apply_batch_norm(batches[0], train=False, variables=variables)
    expected = reference(to_nchw(batches[0])).detach().permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


def test_batch_norm_running_statistics_use_momentum_point_one():
    x = (np.random.default_rng(4).normal(size=(3, 4, 5, 2)) * 2 - 1).astype(np.float32)
    out, state = _apply_batch_norm(x, train=True)
    flat = x.reshape(-1, 2).astype(np.float64)
    np.testing.assert_allclose(state["batch_stats"]["mean"], 0.1 * flat.mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        state["batch_stats"]["var"], 0.9 + 0.1 * flat.var(0, ddof=1), rtol=1e-5
    )
    normalised = (flat - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5)
    np.testing.assert_allclose(np.asarray(out).reshape(-1, 2), normalised, atol=1e-5)


def test_batch_norm_averages_statistics_across_devices():
    """Under shard_map over 2 devices with axis_name, train mode equals one big-batch BN."""
    x = (np.random.default_rng(5).normal(size=(4, 3, 3, 2)) + 2).astype(np.float32)
    module = batch_norm(train=True, axis_name="data")
    variables = module.init(jax.random.key(0), x)
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    sharded = jax.shard_map(
        lambda v, xs: module.apply(v, xs, mutable=["batch_stats"]),
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("data")),
        out_specs=(PartitionSpec("data"), PartitionSpec()),
    )
    out, state = jax.jit(sharded)(variables, x)
    expected_out, expected_state = _apply_batch_norm(x, train=True)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected_out), atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            state["batch_stats"][name], expected_state["batch_stats"][name], rtol=1e-5
        )


def test_up_projection_variables_shapes_and_relu_output():
    x = _random_images((5, 6), channels=4)
    module = UpProjection(7)
    variables = module.init(jax.random.key(0, impl="rbg"), x, (9, 11), train=False)
    kernels = {
        name: leaf["kernel"].shape
        for name, leaf in variables["params"].items()
        if name.startswith("conv")
    }
    assert kernels == {"conv1": (5, 5, 4, 7), "conv1_2": (3, 3, 7, 7), "conv2": (5, 5, 4, 7)}
    assert set(variables["params"]) == {"conv1", "bn1", "conv1_2", "bn1_2", "conv2", "bn2"}
    assert all("bias" not in variables["params"][name] for name in kernels)
    assert set(variables["batch_stats"]) == {"bn1", "bn1_2", "bn2"}
    out = module.apply(variables, x, (9, 11), train=False)
    assert out.shape == (2, 9, 11, 7)
    assert float(out.min()) >= 0.0 and float(out.max()) > 0.0


def _lax_conv(x, kernel, stride, dilation, pad):
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        ((pad, pad), (pad, pad)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


@pytest.mark.parametrize(
    "size, stride, dilation, hw",
    [(3, 1, 1, (9, 11)), (3, 2, 1, (9, 11)), (3, 2, 1, (10, 8)), (3, 1, 2, (9, 7)),
     (3, 1, 4, (12, 13)), (1, 2, 1, (7, 9)), (7, 2, 1, (13, 10)), (5, 1, 1, (6, 5))],
)  # fmt: skip
def test_conv_values_and_both_gradients_equal_lax(size, stride, dilation, hw):
    pad = dilation * (size - 1) // 2
    x = jax.random.normal(jax.random.key(0), (2, *hw, 3))
    kernel = jax.random.normal(jax.random.key(1), (size, size, 3, 4))
    probe = jax.random.normal(jax.random.key(2), _lax_conv(x, kernel, stride, dilation, pad).shape)

    def objective(conv):
        return lambda x, k: jnp.sum(probe * jnp.sin(conv(x, k, stride, dilation, pad)))

    ours = jax.value_and_grad(objective(conv_nhwc), argnums=(0, 1))(x, kernel)
    reference = jax.value_and_grad(objective(_lax_conv), argnums=(0, 1))(x, kernel)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv_input_gradient_inside_a_loop_equals_outside():
    x = jax.random.normal(jax.random.key(3), (1, 9, 8, 2))
    kernel = jax.random.normal(jax.random.key(4), (3, 3, 2, 2))
    grad = jax.grad(lambda x: jnp.sum(conv_nhwc(x, kernel, 2, 1, 1) ** 2))
    looped = jax.lax.fori_loop(0, 2, lambda _, z: grad(z), x)
    np.testing.assert_allclose(looped, grad(grad(x)), rtol=1e-5)


def test_bfloat16_conv_gradient_keeps_the_dtype():
    x = jnp.ones((1, 6, 6, 2), jnp.bfloat16)
    kernel = jnp.ones((3, 3, 2, 2), jnp.bfloat16)
    dx, dk = jax.grad(lambda x, k: jnp.sum(conv_nhwc(x, k, 2, 1, 1)), argnums=(0, 1))(x, kernel)
    assert dx.dtype == dk.dtype == jnp.bfloat16
    reference = jax.grad(lambda x, k: jnp.sum(_lax_conv(x, k, 2, 1, 1)), argnums=(0, 1))(x, kernel)
    np.testing.assert_array_equal(dx.astype(np.float32), reference[0].astype(np.float32))
    np.testing.assert_array_equal(dk.astype(np.float32), reference[1].astype(np.float32))


@pytest.mark.parametrize("hw", [(8, 10), (9, 7), (5, 5)])
def test_max_pool_equals_flax_in_values_and_gradient(hw):
    x = jax.random.normal(jax.random.key(5), (2, *hw, 3))  # continuous: no ties
    flax_pool = lambda z: nn.max_pool(z, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    np.testing.assert_array_equal(max_pool(x), flax_pool(x))
    probe = jax.random.normal(jax.random.key(6), max_pool(x).shape)
    ours = jax.grad(lambda z: jnp.sum(probe * max_pool(z)))(x)
    reference = jax.grad(lambda z: jnp.sum(probe * flax_pool(z)))(x)
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
