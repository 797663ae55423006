"""Building blocks shared by N and G (spec §1): align-corners resize, PyTorch-padded convs,
BatchNorm with PyTorch semantics, and the up-projection block. All tensors are NHWC."""

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
def _align_corners_weights(in_size: int, out_size: int) -> np.ndarray:
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
    rows = jnp.asarray(_align_corners_weights(in_h, out_h))
    cols = jnp.asarray(_align_corners_weights(in_w, out_w))
    contract = functools.partial(
        jnp.einsum, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32
    )
    resized = contract("oh,bhwc->bowc", rows, x.astype(jnp.float32))
    resized = contract("pw,bowc->bopc", cols, resized)
    return resized.astype(x.dtype)


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
) -> nn.Conv:
    """Square conv padded as in PyTorch: symmetric pad dilation·(k−1)/2 (7×7 → 3, 3×3 → dilation).

    Bias-free by default (every conv of N and G except the last of R and of G; biases start at
    zero); float32 params, `dtype` compute.
    """
    pad = dilation * (kernel_size - 1) // 2
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=stride,
        padding=((pad, pad), (pad, pad)),
        kernel_dilation=dilation,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
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


class UpProjection(nn.Module):
    """Up-projection (spec §1): resize to `size`, then ReLU(branch a + branch b).

    Branch a: conv1 5×5 → bn1 → ReLU → conv1_2 3×3 → bn1_2; branch b: conv2 5×5 → bn2.
    x[B, h, w, C] → [B, size[0], size[1], features].
    """

    features: int
    dtype: Dtype = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, size: tuple[int, int], *, train: bool) -> jax.Array:
        conv = functools.partial(
            conv2d, self.features, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT
        )
        norm = functools.partial(
            batch_norm, train=train, axis_name=self.axis_name, dtype=self.dtype
        )
        x = resize_bilinear_align_corners(x, size)
        branch_a = nn.relu(norm(name="bn1")(conv(5, name="conv1")(x)))
        branch_a = norm(name="bn1_2")(conv(3, name="conv1_2")(branch_a))
        branch_b = norm(name="bn2")(conv(5, name="conv2")(x))
        return nn.relu(branch_a + branch_b)
