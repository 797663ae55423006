"""The DPT head of Depth Anything V2 (reassemble, fusion, output convs). NHWC.

Names follow the original state_dict (`depth_head.*`): projects_i (1×1), resize_layers_{0,1,3}
(transposed conv 4×4/4, 2×2/2; conv 3×3/2; layer 2 is the identity), scratch/layerK_rn (3×3,
no bias), scratch/refinenetK/{resConfUnit1, resConfUnit2}/{conv1, conv2} and out_conv,
scratch/output_conv1, scratch/output_conv2_0 and output_conv2_2.
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mde_adv.models.layers import DECODER_KERNEL_INIT, Dtype, conv2d
from mde_adv.models.layers import resize_bilinear_align_corners as resize

HEAD_HIDDEN = 32  # channels of output_conv2's first conv in every released model


class PatchTransposedConv(nn.Module):
    """ConvTranspose2d with kernel = stride = k and no padding: each input pixel becomes a
    k×k patch. 'kernel' f32[k, k, O, I] (PyTorch's [I, O, k, k] transposed (2, 3, 1, 0)),
    'bias' f32[O]."""

    features: int
    factor: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        k = self.factor
        shape = (k, k, self.features, channels)
        kernel = self.param("kernel", DECODER_KERNEL_INIT, shape, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        y = jnp.einsum("bhwi,pqoi->bhpwqo", x.astype(self.dtype), kernel.astype(self.dtype))
        y = y.reshape(batch, height * k, width * k, self.features)
        return y + bias.astype(self.dtype)


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), 3×3 convs with bias (pre-activation)."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(
            conv2d, x.shape[-1], 3, use_bias=True, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT
        )
        return x + conv(name="conv2")(nn.relu(conv(name="conv1")(nn.relu(x))))


class FeatureFusionBlock(nn.Module):
    """(x [+ resConfUnit1(skip)]) → resConfUnit2 → bilinear (align corners) to `size` → 1×1
    out_conv. refinenet4 has no skip; its resConfUnit1 is created and never applied, as in
    the released networks."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, skip: jax.Array | None, size: tuple[int, int]) -> jax.Array:
        skip_unit = ResidualConvUnit(self.dtype, name="resConfUnit1")
        if skip is not None:
            x = x + skip_unit(skip)
        elif self.is_initializing():  # unused, but in every released state_dict
            skip_unit(x)
        x = ResidualConvUnit(self.dtype, name="resConfUnit2")(x)
        x = resize(x, size)
        conv = conv2d(
            x.shape[-1],
            1,
            use_bias=True,
            dtype=self.dtype,
            kernel_init=DECODER_KERNEL_INIT,
            name="out_conv",
        )
        return conv(x)


class Scratch(nn.Module):
    """layerK_rn convs to `features` channels, the fusion path refinenet4 → refinenet1 (each
    resized to the next finer map, the last ×2), output_conv1, bilinear to `out_hw`,
    output_conv2 (3×3 → 32, ReLU, 1×1 → 1). Returns the pre-activation f32[B, H, W, 1]."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, maps: list[jax.Array], out_hw: tuple[int, int]) -> jax.Array:
        conv = functools.partial(conv2d, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT)
        rn = [conv(self.features, 3, name=f"layer{k}_rn")(m) for k, m in enumerate(maps, 1)]
        path = None
        for k in (4, 3, 2, 1):
            finer = rn[k - 2].shape[1:3] if k > 1 else tuple(2 * s for s in rn[0].shape[1:3])
            block = FeatureFusionBlock(self.dtype, name=f"refinenet{k}")
            path = block(rn[k - 1], None, finer) if path is None else block(path, rn[k - 1], finer)
        out = conv(self.features // 2, 3, use_bias=True, name="output_conv1")(path)
        out = resize(out, out_hw)
        out = nn.relu(conv(HEAD_HIDDEN, 3, use_bias=True, name="output_conv2_0")(out))
        return conv(1, 1, use_bias=True, name="output_conv2_2")(out)


class DPTHead(nn.Module):
    """tokens (4 × [B, 1 + h·w, D], class token first) on an (h, w) patch grid → the
    pre-activation depth map f32[B, 14h, 14w, 1].

    Reassemble: drop the class token, reshape to [B, h, w, D], 1×1 projects_i to
    `out_channels[i]`, resize ×4, ×2, ×1, ×½ (resize_layers_i)."""

    features: int
    out_channels: tuple[int, int, int, int]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens: list[jax.Array], grid_hw: tuple[int, int]) -> jax.Array:
        chex.assert_equal(len(tokens), 4)
        height, width = grid_hw
        conv = functools.partial(conv2d, use_bias=True, dtype=self.dtype)
        maps = []
        for index, (token, channels) in enumerate(zip(tokens, self.out_channels, strict=True)):
            x = token[:, 1:].reshape(token.shape[0], height, width, token.shape[-1])
            x = conv(channels, 1, kernel_init=DECODER_KERNEL_INIT, name=f"projects_{index}")(x)
            if index in (0, 1):
                x = PatchTransposedConv(
                    channels, 4 // (index + 1), self.dtype, name=f"resize_layers_{index}"
                )(x)
            elif index == 3:
                x = conv(
                    channels, 3, stride=2, kernel_init=DECODER_KERNEL_INIT, name="resize_layers_3"
                )(x)
            maps.append(x)
        out_hw = (14 * height, 14 * width)
        out = Scratch(self.features, self.dtype, name="scratch")(maps, out_hw)
        return out.astype(jnp.float32)


def head_activation(pre_activation: jax.Array, kind: str, max_depth: float) -> jax.Array:
    """Relative models: ReLU (affine-invariant disparity). Metric: max_depth · sigmoid (metres)."""
    if kind == "relative":
        return jax.nn.relu(pre_activation)
    if kind == "metric":
        return max_depth * jax.nn.sigmoid(pre_activation)
    raise ValueError(f"depth kind must be 'relative' or 'metric', got {kind!r}")
