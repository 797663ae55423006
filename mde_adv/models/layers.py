"""Building blocks shared by N and G (spec §1): align-corners resize, PyTorch-padded convs and
BatchNorm with PyTorch semantics (the up-projection block is in `up_projection`). NHWC."""

import functools
import math
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

# Encoder convs: He-normal (fan_out, ReLU gain), as torchvision's ResNet and DRN initialise.
ENCODER_KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
# Decoder convs: PyTorch's default U(±1/√fan_in); the reference code does not re-initialise them.
DECODER_KERNEL_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def scaled_channels(channels: int, width: float) -> int:
    """Channel count under a width multiplier: max(1, round(channels · width))."""
    return max(1, round(channels * width))


@functools.lru_cache(maxsize=256)
def align_corners_weights(in_size: int, out_size: int) -> np.ndarray:
    """f32[out_size, in_size] interpolation matrix; output i samples source i·(in−1)/(out−1)."""
    if out_size == 1:
        source = np.zeros(1)
    else:
        source = np.arange(out_size) * ((in_size - 1) / (out_size - 1))
    lower = np.clip(np.floor(source).astype(np.int64), 0, in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    fraction = source - lower
    weights = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(weights, (rows, lower), 1.0 - fraction)
    np.add.at(weights, (rows, upper), fraction)
    return weights.astype(np.float32)


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of x[B, H, W, C] to [B, h, w, C] with align-corners semantics.

    Output pixel i along an axis samples source coordinate i·(in−1)/(out−1) (out == 1 samples
    source 0), as PyTorch's `interpolate(..., mode='bilinear', align_corners=True)` and the
    reference code's PyTorch 0.3.1 `upsample`. Works for up- and down-sizing; computed as two
    small interpolation-matrix contractions in float32, returned in x's dtype.
    """
    chex.assert_rank(x, 4)
    out_h, out_w = (int(s) for s in size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"resize target size must be positive, got size={tuple(size)}")
    _, in_h, in_w, _ = x.shape
    if (in_h, in_w) == (out_h, out_w):
        return x
    rows = jnp.asarray(align_corners_weights(in_h, out_h))
    cols = jnp.asarray(align_corners_weights(in_w, out_w))
    contract = functools.partial(
        jnp.einsum, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32
    )
    resized = contract("oh,bhwc->bowc", rows, x.astype(jnp.float32))
    resized = contract("pw,bowc->bopc", cols, resized)
    return resized.astype(x.dtype)


def max_pool(x: jax.Array, window: int = 3, stride: int = 2, padding: int = 1) -> jax.Array:
    """Max pooling of x[B, H, W, C] (PyTorch's MaxPool2d with -inf padding), as the maximum of
    window² strided slices.

    Same values as `flax.linen.max_pool`; its gradient is elementwise selects instead of XLA's
    select-and-scatter, which runs ~30× slower than the forward pass on CPU. A tie splits the
    gradient between the tied inputs (PyTorch routes it to one); ResNet pools after a ReLU,
    whose gradient at the only likely tie value, 0, is 0 either way.
    """
    chex.assert_rank(x, 4)
    _, height, width, _ = x.shape
    out_h = (height + 2 * padding - window) // stride + 1
    out_w = (width + 2 * padding - window) // stride + 1
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    padded = jnp.pad(x, pad, constant_values=-jnp.inf)
    pooled = None
    for dy in range(window):
        for dx in range(window):
            piece = padded[
                :,
                dy : dy + stride * (out_h - 1) + 1 : stride,
                dx : dx + stride * (out_w - 1) + 1 : stride,
            ]
            pooled = piece if pooled is None else jnp.maximum(pooled, piece)
    return pooled


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array, stride: int, dilation: int, pad: int) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        ((pad, pad), (pad, pad)),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_NHWC,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv_nhwc(x: jax.Array, kernel: jax.Array, stride: int, dilation: int, pad: int) -> jax.Array:
    """2-D convolution y[B,h,w,O] of x[B,H,W,I] with kernel[k,k,I,O], symmetric zero padding.

    Same values and gradients as `lax.conv_general_dilated`. The input gradient is computed
    with an explicitly flipped and transposed kernel ([k,k,O,I], kept in that layout by an
    optimisation barrier). Without it XLA:CPU folds the transpose into the convolution's
    dimension labels and, inside a while loop (every attack), runs that convolution on a slow
    generic path, about 3× slower than the same convolution outside a loop. The kernel gradient
    of a 1×1 convolution (2/3 of ResNet-50's) is computed as the matrix product it is.
    """
    return _conv(x, kernel, stride, dilation, pad)


def _conv_forward(x, kernel, stride, dilation, pad):
    return _conv(x, kernel, stride, dilation, pad), (x, kernel)


def _conv_backward(stride, dilation, pad, residuals, cotangent):
    x, kernel = residuals
    size = kernel.shape[0]
    flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2))
    flipped = jax.lax.optimization_barrier(flipped)
    low = dilation * (size - 1) - pad
    padding = [
        (low, x.shape[axis] - (cotangent.shape[axis] - 1) * stride - 1 + pad) for axis in (1, 2)
    ]
    dx = jax.lax.conv_general_dilated(
        cotangent,
        flipped,
        (1, 1),
        padding,
        lhs_dilation=(stride, stride),
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_NHWC,
    )
    if size == 1:  # a matrix product: ~5-10× faster than XLA:CPU's kernel-gradient convolution
        rows = x[:, : stride * (cotangent.shape[1] - 1) + 1 : stride]
        rows = rows[:, :, : stride * (cotangent.shape[2] - 1) + 1 : stride]
        dkernel = jnp.einsum("bhwi,bhwo->io", rows, cotangent, preferred_element_type=jnp.float32)[
            None, None
        ]
        return dx.astype(x.dtype), dkernel.astype(kernel.dtype)
    _, kernel_vjp = jax.vjp(lambda k: _conv(x, k, stride, dilation, pad), kernel)
    return dx.astype(x.dtype), kernel_vjp(cotangent)[0]


conv_nhwc.defvjp(_conv_forward, _conv_backward)


class Conv2d(nn.Module):
    """Square conv with PyTorch's padding; parameters 'kernel' f32[k,k,I,O] (and 'bias' f32[O])
    as `flax.linen.Conv`, computed in `dtype` by `conv_nhwc`."""

    features: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = ENCODER_KERNEL_INIT

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel_size, self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        pad = self.dilation * (self.kernel_size - 1) // 2
        y = conv_nhwc(
            x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.dilation, pad
        )
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


def conv2d(
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    use_bias: bool = False,
    dtype: Dtype = jnp.float32,
    kernel_init: nn.initializers.Initializer = ENCODER_KERNEL_INIT,
    name: str | None = None,
) -> Conv2d:
    """Square conv padded as in PyTorch: symmetric pad dilation·(k−1)/2 (7×7 → 3, 3×3 → dilation).

    Bias-free by default (every conv of N and G except the last of R and of G; biases start at
    zero); float32 params, `dtype` compute.
    """
    return Conv2d(
        features,
        kernel_size,
        stride=stride,
        dilation=dilation,
        use_bias=use_bias,
        dtype=dtype,
        kernel_init=kernel_init,
        name=name,
    )


class BatchNorm(nn.Module):
    """PyTorch's BatchNorm2d over the last axis of x[..., C]: momentum 0.1 (Flax 0.9), eps 1e-5.

    Train mode normalises with the biased batch variance over all but the last axis (and over
    devices along `axis_name` when set) and updates the running statistics with the UNBIASED
    variance, as PyTorch does; inference mode uses the running statistics. Statistics and the
    normalisation are computed in float32; the output has `dtype`. Variables: params
    `scale`/`bias`, batch_stats `mean`/`var` (PyTorch's weight/bias/running_mean/running_var).
    """

    use_running_average: bool
    axis_name: str | None = None
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        running_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        x = x.astype(jnp.float32)
        if self.use_running_average:
            mean, var = running_mean.value, running_var.value
        else:
            reduce_axes = tuple(range(x.ndim - 1))
            mean = self._all_devices_mean(x.mean(reduce_axes))
            var = self._all_devices_mean(jnp.square(x - mean).mean(reduce_axes))
            if not self.is_initializing():
                count = math.prod(x.shape[:-1])
                if self.axis_name is not None:
                    count = count * jax.lax.psum(1, self.axis_name)
                unbiased_var = var * count / jnp.maximum(count - 1, 1)
                momentum = self.momentum
                running_mean.value = momentum * running_mean.value + (1 - momentum) * mean
                running_var.value = momentum * running_var.value + (1 - momentum) * unbiased_var
        y = (x - mean) * (scale * jax.lax.rsqrt(var + self.epsilon)) + bias
        return y.astype(self.dtype)

    def _all_devices_mean(self, value: jax.Array) -> jax.Array:
        """Mean over the `axis_name` devices (skipped at init, which runs outside the mapping)."""
        if self.axis_name is None or self.is_initializing():
            return value
        return jax.lax.pmean(value, self.axis_name)


def batch_norm(
    *, train: bool, axis_name: str | None, dtype: Dtype = jnp.float32, name: str | None = None
) -> BatchNorm:
    """The BatchNorm of every conv in N and G: batch statistics iff `train`."""
    return BatchNorm(use_running_average=not train, axis_name=axis_name, dtype=dtype, name=name)
