"""The up-projection block (spec §1) and its convolutions of a resized map, computed at the
input resolution where that is cheaper.

The up-projection convolves R x, the align-corners resize of x, with two k×k
kernels. R acts on space only, separably (R = R_h ⊗ R_w, the same for every channel), and a
convolution's channel mixing acts on channels only, so for a 'same'-padded stride-1 kernel W
with centre c = (k − 1)/2

    conv(R x, W)[q, p] = Σ_{a,b} (R x)[q + a − c, p + b − c] · W[a, b]
                       = Σ_{a,h} M_h[q, a, h] Σ_{b,w} M_w[p, b, w] (x[h, w] · W[a, b])

with M[o, a, i] = R[o + a − c, i] (zero where o + a − c falls outside, which is the zero
padding). The channel mixing x · W runs at the input resolution into k²·O channels, followed by
two small interpolation contractions: the same function (rounding aside), the same parameters
and gradients, but e.g. MFF's 5×5 2048→16 convolution of the 8×10 block b4 resized to
114×152 costs 0.1 instead of 28 GFLOP. Its cost is more memory traffic (the k²·O-channel
intermediate), so `resize_conv` picks the cheaper of the two forms per call from a static
cost model (`factored_is_cheaper`).
"""

import functools
from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mde_adv.models.layers import (
    DECODER_KERNEL_INIT,
    Dtype,
    align_corners_weights,
    batch_norm,
    conv2d,
    conv_nhwc,
    resize_bilinear_align_corners,
)

# FLOPs that moving one byte costs, in the cost model: a CPU core does ~30-50 GFLOP/s and
# streams ~1-5 GB/s (measured on the project's reference CPU: 103 GFLOP/s and ~3 GB/s for two
# cores), an H100-class GPU ~15 FLOP per byte of HBM bandwidth.
FLOPS_PER_BYTE = 30.0
# XLA:CPU's kernel-gradient convolution runs at 1/2-1/10 of its forward convolution's rate
# (benchmarks/results/up_projection_*.md); a matrix product's gradients run at about its rate.
KERNEL_GRADIENT_COST = 3.0
METHODS = ("auto", "direct", "factored")


@functools.lru_cache(maxsize=256)
def tap_interpolation(in_size: int, out_size: int, kernel_size: int) -> np.ndarray:
    """f32[out_size, kernel_size, in_size]: M[o, a, i] = R[o + a − c, i], c = (k − 1)/2, zero
    where o + a − c is outside [0, out_size) (R: `align_corners_weights(in_size, out_size)`)."""
    resize = align_corners_weights(in_size, out_size)
    centre = (kernel_size - 1) // 2
    taps = np.zeros((out_size, kernel_size, in_size), np.float32)
    for a in range(kernel_size):
        low, high = max(0, centre - a), min(out_size, out_size + centre - a)
        taps[low:high, a] = resize[low + a - centre : high + a - centre]
    return taps


def factored_is_cheaper(
    in_hw: tuple[int, int],
    out_hw: tuple[int, int],
    kernel_size: int,
    cin: int,
    cout: int,
    *,
    kernel_gradient: bool = False,
) -> bool:
    """Whether the factored form's FLOPs + FLOPS_PER_BYTE·bytes are below the direct form's.

    Direct: resize (an H·W·cin map written and read) and a k×k convolution at the output
    resolution. Factored: mixing into h·w·k²·cout channels, a width contraction into
    h·W·k·cout, a height contraction into H·W·cout (each intermediate written, read and, by
    the contractions' layout changes, copied once: three passes). With `kernel_gradient`
    (training) each form also pays for its backward pass, the direct one for a
    kernel-gradient convolution that costs KERNEL_GRADIENT_COST forward convolutions. Never
    for a resize that does not enlarge the map.
    """
    (h, w), (big_h, big_w), k = in_hw, out_hw, kernel_size
    if big_h * big_w <= h * w:  # mixing at the input resolution saves nothing
        return False
    direct_flops = 2.0 * big_h * big_w * k * k * cin * cout
    direct_bytes = 4.0 * big_h * big_w * (2 * cin + cout)
    mixed, width_done = h * w * k * k * cout, h * big_w * k * cout
    factored_flops = (
        2.0 * h * w * cin * k * k * cout
        + 2.0 * width_done * k * w
        + 2.0 * big_h * big_w * cout * k * h
    )
    factored_bytes = 4.0 * (3 * mixed + 3 * width_done + big_h * big_w * cout)
    factored = factored_flops + FLOPS_PER_BYTE * factored_bytes
    direct = direct_flops + FLOPS_PER_BYTE * direct_bytes
    if kernel_gradient:  # forward, input gradient, kernel gradient
        return 3 * factored < (2 + KERNEL_GRADIENT_COST) * direct
    return factored < direct


def _factored(x: jax.Array, kernel: jax.Array, size: tuple[int, int]) -> jax.Array:
    """conv(R x, kernel) by mixing at x's resolution; float32 result."""
    batch, h, w, cin = x.shape
    k, cout = kernel.shape[0], kernel.shape[-1]
    big_h, big_w = size
    # mixing: one matrix product; columns ordered (b, a, o) so that (w, b) are adjacent next
    columns = jnp.transpose(kernel, (2, 1, 0, 3)).reshape(cin, k * k * cout)
    mixed = jnp.matmul(x.reshape(-1, cin), columns, preferred_element_type=jnp.float32)
    mixed = mixed.reshape(batch, h, w * k, k * cout)  # [n, h, (w, b), (a, o)]
    highest = dict(precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    along_w = jnp.asarray(tap_interpolation(w, big_w, k).transpose(0, 2, 1).reshape(big_w, w * k))
    wide = jnp.einsum("pk,nhkc->nhpc", along_w, mixed, **highest)  # [n, h, W, (a, o)]
    wide = wide.reshape(batch, h, big_w, k, cout)
    along_h = jnp.asarray(tap_interpolation(h, big_h, k))
    return jnp.einsum("qah,nhpao->nqpo", along_h, wide, **highest)


def resize_conv(
    x: jax.Array,
    kernels: Sequence[jax.Array],
    size: tuple[int, int],
    *,
    dtype: Any = jnp.float32,
    method: str = "auto",
    kernel_gradient: bool = False,
) -> list[jax.Array]:
    """[conv(resize(x, size), k_j) for k_j in kernels], each [B, H, W, O_j] in `dtype`.

    x: [B, h, w, I]; kernels: f32[k, k, I, O_j] with one odd k, stride 1, 'same' zero padding
    (the up-projection's conv1 and conv2); resize is `resize_bilinear_align_corners`.
    method: 'direct' (resize, then `conv_nhwc`), 'factored' (module docstring) or 'auto' (the
    cheaper by `factored_is_cheaper`, told whether the kernels' gradient will be taken by
    `kernel_gradient`). Both compute in `dtype` with float32 resizing.
    """
    chex.assert_rank(x, 4)
    if method not in METHODS:
        raise ValueError(f"resize_conv method must be one of {METHODS}, got {method!r}")
    k = kernels[0].shape[0]
    if k % 2 != 1 or any(kern.shape[:3] != (k, k, x.shape[-1]) for kern in kernels):
        shapes = [tuple(kern.shape) for kern in kernels]
        raise ValueError(f"resize_conv needs odd k×k×{x.shape[-1]}×O kernels, got {shapes}")
    size = (int(size[0]), int(size[1]))
    widths = [int(kern.shape[-1]) for kern in kernels]
    if method == "auto":
        cheaper = factored_is_cheaper(
            x.shape[1:3], size, k, x.shape[-1], sum(widths), kernel_gradient=kernel_gradient
        )
        method = "factored" if cheaper else "direct"
    if method == "direct":
        resized = resize_bilinear_align_corners(x, size).astype(dtype)
        return [conv_nhwc(resized, kern.astype(dtype), 1, 1, (k - 1) // 2) for kern in kernels]
    kernel = jnp.concatenate(list(kernels), axis=-1).astype(dtype)
    out = _factored(x.astype(dtype), kernel, size).astype(dtype)
    return jnp.split(out, np.cumsum(widths)[:-1].tolist(), axis=-1)


class ConvKernel(nn.Module):
    """The parameter 'kernel' f32[k, k, I, O] of a bias-free `Conv2d` (same name, shape and
    initialisation), for a convolution computed some other way (`resize_conv`)."""

    features: int
    kernel_size: int
    kernel_init: nn.initializers.Initializer = DECODER_KERNEL_INIT

    @nn.compact
    def __call__(self, in_features: int) -> jax.Array:
        shape = (self.kernel_size, self.kernel_size, in_features, self.features)
        return self.param("kernel", self.kernel_init, shape, jnp.float32)


class UpProjection(nn.Module):
    """Up-projection (spec §1): resize to `size`, then ReLU(branch a + branch b).

    Branch a: conv1 5×5 → bn1 → ReLU → conv1_2 3×3 → bn1_2; branch b: conv2 5×5 → bn2.
    x[B, h, w, C] → [B, size[0], size[1], features]. conv1 and conv2 of the resized map are one
    `resize_conv` call (`method`: 'auto' picks direct or factored by cost, counting the
    kernels' gradient in train mode).
    """

    features: int
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    method: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, size: tuple[int, int], *, train: bool) -> jax.Array:
        norm = functools.partial(
            batch_norm, train=train, axis_name=self.axis_name, dtype=self.dtype
        )
        kernels = [
            ConvKernel(self.features, 5, name=name)(x.shape[-1]) for name in ("conv1", "conv2")
        ]
        conv1, conv2 = resize_conv(
            x, kernels, size, dtype=self.dtype, method=self.method, kernel_gradient=train
        )
        branch_a = nn.relu(norm(name="bn1")(conv1))
        conv = conv2d(
            self.features, 3, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT, name="conv1_2"
        )
        branch_a = norm(name="bn1_2")(conv(branch_a))
        branch_b = norm(name="bn2")(conv2)
        return nn.relu(branch_a + branch_b)
