"""The up-projection's convolutions of a resized map: the factored form is the direct one."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mde_adv import models
from mde_adv.models import UpProjection, resize_bilinear_align_corners, resize_conv
from mde_adv.models.layers import conv_nhwc
from mde_adv.models.up_projection import factored_is_cheaper, tap_interpolation


def _inputs(in_hw, cin, widths, k, seed=0):
    keys = jax.random.split(jax.random.key(seed), 1 + len(widths))
    x = jax.random.normal(keys[0], (2, *in_hw, cin))
    kernels = [
        jax.random.normal(key, (k, k, cin, o)) for key, o in zip(keys[1:], widths, strict=True)
    ]
    return x, kernels


def _assert_close(ours, reference, rtol=2e-5):
    """Equal within rtol of the reference's largest magnitude (float32 summation order)."""
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference), strict=True):
        assert a.shape == b.shape
        scale = float(jnp.max(jnp.abs(b))) or 1.0
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=rtol * scale, rtol=0)


@settings(max_examples=8, deadline=None)
@given(
    in_hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    out_hw=st.tuples(st.integers(1, 17), st.integers(1, 17)),
    k=st.sampled_from([1, 3, 5]),
    cin=st.integers(1, 4),
    widths=st.lists(st.integers(1, 3), min_size=1, max_size=2),
)
def test_factored_equals_resize_then_conv_in_values_and_gradients(in_hw, out_hw, k, cin, widths):
    x, kernels = _inputs(in_hw, cin, widths, k)
    probes = [
        jax.random.normal(jax.random.key(9 + i), (2, *out_hw, o)) for i, o in enumerate(widths)
    ]

    def reference(x, kernels):
        resized = resize_bilinear_align_corners(x, out_hw)
        return [conv_nhwc(resized, kern, 1, 1, (k - 1) // 2) for kern in kernels]

    def objective(convs):
        return lambda x, ks: sum(
            jnp.sum(p * jnp.sin(y)) for p, y in zip(probes, convs(x, ks), strict=True)
        )

    for method in ("direct", "factored"):
        ours = lambda x, ks, method=method: resize_conv(x, ks, out_hw, method=method)
        _assert_close(ours(x, kernels), reference(x, kernels))
        gradients = jax.grad(objective(ours), argnums=(0, 1))(x, kernels)
        _assert_close(gradients, jax.grad(objective(reference), argnums=(0, 1))(x, kernels))


@pytest.mark.parametrize(
    ("in_size", "out_size", "k"), [(8, 15, 5), (29, 57, 5), (6, 3, 3), (1, 4, 5)]
)
def test_tap_matrix_is_the_zero_padded_shift_of_the_resize(in_size, out_size, k):
    signal = np.random.default_rng(0).normal(size=(1, in_size, 1, 1)).astype(np.float32)
    resized = np.asarray(resize_bilinear_align_corners(jnp.asarray(signal), (out_size, 1)))[
        0, :, 0, 0
    ]
    padded = np.pad(resized, (k - 1) // 2)
    taps = tap_interpolation(in_size, out_size, k)
    for a in range(k):
        np.testing.assert_allclose(
            taps[:, a] @ signal[0, :, 0, 0], padded[a : a + out_size], atol=1e-5
        )


def test_bfloat16_compute_keeps_the_dtype_and_follows_float32():
    x, kernels = _inputs((6, 7), 8, (4, 4), 5)
    exact = resize_conv(x, kernels, (11, 13), method="direct")
    for method in ("direct", "factored"):
        out = resize_conv(x, kernels, (11, 13), dtype=jnp.bfloat16, method=method)
        assert all(y.dtype == jnp.bfloat16 for y in out)
        _assert_close([y.astype(jnp.float32) for y in out], exact, rtol=2e-2)


def test_cost_model_at_the_paper_size():
    # MFF's b4 (8×10, 2048 channels → 2×16 at 114×152): the factored form is ~100× cheaper
    assert factored_is_cheaper((8, 10), (114, 152), 5, 2048, 32)
    # G's up3 (114×152 → 228×304, 128 → 2×64): its k²·O intermediate costs more than it saves,
    # unless the kernels' gradient (XLA's slow kernel-gradient convolution) is needed too
    assert not factored_is_cheaper((114, 152), (228, 304), 5, 128, 128)
    assert factored_is_cheaper((114, 152), (228, 304), 5, 128, 128, kernel_gradient=True)
    # no resize or a down-sizing: mixing at the input resolution saves nothing
    assert not factored_is_cheaper((29, 38), (29, 38), 5, 512, 512, kernel_gradient=True)
    assert not factored_is_cheaper((57, 76), (29, 38), 5, 64, 64)


def test_up_projection_methods_share_variables_and_outputs():
    x = jax.random.normal(jax.random.key(1), (2, 5, 6, 4))
    modules = {m: UpProjection(3, method=m) for m in ("direct", "factored", "auto")}
    key = jax.random.key(0)
    variables = {m: mod.init(key, x, (9, 11), train=False) for m, mod in modules.items()}
    shapes = jax.tree.map(jnp.shape, variables["direct"])
    for m in ("factored", "auto"):
        assert jax.tree.map(jnp.shape, variables[m]) == shapes
        _assert_close(variables[m], variables["direct"], rtol=0)
    for train in (False, True):
        outputs = {
            m: mod.apply(variables["direct"], x, (9, 11), train=train, mutable=["batch_stats"])
            for m, mod in modules.items()
        }
        for m in ("factored", "auto"):
            _assert_close(outputs[m], outputs["direct"])


def test_resize_conv_rejects_a_bad_method_and_bad_kernels():
    x, kernels = _inputs((4, 4), 2, (3,), 5)
    with pytest.raises(ValueError, match="method must be one of"):
        resize_conv(x, kernels, (8, 8), method="winograd")
    with pytest.raises(ValueError, match="odd k×k×2×O kernels"):
        resize_conv(x, [jnp.zeros((4, 4, 2, 3))], (8, 8))
    with pytest.raises(ValueError, match="odd k×k×2×O kernels"):
        resize_conv(x, [kernels[0], jnp.zeros((3, 3, 2, 3))], (8, 8))


@pytest.mark.parametrize(
    ("build", "encoder"), [(models.depth_net, "resnet18"), (models.saliency_net, "drn_d_22")]
)
def test_networks_compute_the_same_function_with_either_form(build, encoder):
    """N and G with every up-projection direct vs factored: outputs and parameter gradients."""
    methods = ("direct", "factored")
    nets = {m: build({"encoder": encoder, "width": 0.125, "up_projection": m}) for m in methods}
    variables = models.init_variables(nets["direct"], jax.random.key(0), (32, 40))
    x = jax.random.normal(jax.random.key(1), (2, 32, 40, 3))

    def loss(params, net):
        out, _ = net.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return jnp.mean(jnp.sin(3.0 * out))

    # jitted: one compiled program per form instead of one per eager op (compile-bound test)
    predict = jax.jit(lambda v, net: net.apply(v, x, train=False), static_argnums=1)
    gradient = jax.jit(jax.grad(loss), static_argnums=1)
    outputs = {m: predict(variables, net) for m, net in nets.items()}
    gradients = {m: gradient(variables["params"], net) for m, net in nets.items()}
    _assert_close(outputs["factored"], outputs["direct"], rtol=1e-4)
    _assert_close(gradients["factored"], gradients["direct"], rtol=1e-4)


def test_model_config_rejects_an_unknown_up_projection():
    with pytest.raises(ValueError, match="depth_net config: up_projection must be one of"):
        models.depth_net({"encoder": "resnet18", "up_projection": "fft"})
