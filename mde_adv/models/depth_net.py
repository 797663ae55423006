"""The depth network N = E, D, MFF, R of Hu et al. (WACV 2019), spec §1."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mde_adv.models.layers import (
    DECODER_KERNEL_INIT,
    Dtype,
    batch_norm,
    conv2d,
    scaled_channels,
)
from mde_adv.models.resnet import ResNetEncoder
from mde_adv.models.up_projection import UpProjection


class _DecoderModule(nn.Module):
    """Shared attributes and layer factories of D, MFF and R (decoder init, BN mode)."""

    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    up_projection: str = "auto"

    def _layers(self, train: bool):
        conv = functools.partial(conv2d, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT)
        norm = functools.partial(
            batch_norm, train=train, axis_name=self.axis_name, dtype=self.dtype
        )
        up = functools.partial(
            UpProjection, dtype=self.dtype, axis_name=self.axis_name, method=self.up_projection
        )
        return conv, norm, up


class DepthDecoder(_DecoderModule):
    """D: conv 1×1 num_features → num_features/2, BN, ReLU; up1..up4 halving the channels.

    up1..up3 resize to b3's, b2's, b1's sizes, up4 to `out_size`; output has num_features/32
    channels (64 for ResNet-50).
    """

    @nn.compact
    def __call__(
        self, blocks: tuple[jax.Array, ...], out_size: tuple[int, int], *, train: bool
    ) -> jax.Array:
        conv, norm, up = self._layers(train)
        b1, b2, b3, b4 = blocks
        features = max(1, b4.shape[-1] // 2)
        x = nn.relu(norm(name="bn")(conv(features, 1, name="conv")(b4)))
        sizes = (b3.shape[1:3], b2.shape[1:3], b1.shape[1:3], out_size)
        for index, size in enumerate(sizes, start=1):
            features = max(1, features // 2)
            x = up(features, name=f"up{index}")(x, size, train=train)
        return x


class MultiScaleFusion(_DecoderModule):
    """MFF: each b_k up-projected to 16·width channels at `out_size`, concatenated, conv 5×5, BN,
    ReLU (64 channels in the paper setting)."""

    width: float = 1.0

    @nn.compact
    def __call__(
        self, blocks: tuple[jax.Array, ...], out_size: tuple[int, int], *, train: bool
    ) -> jax.Array:
        conv, norm, up = self._layers(train)
        branch_features = scaled_channels(16, self.width)
        branches = [
            up(branch_features, name=f"up{k}")(block, out_size, train=train)
            for k, block in enumerate(blocks, start=1)
        ]
        x = jnp.concatenate(branches, axis=-1)
        return nn.relu(norm(name="bn")(conv(x.shape[-1], 5, name="conv")(x)))


class Refinement(_DecoderModule):
    """R: (conv 5×5, BN, ReLU) ×2 at the input width, then conv 5×5 → 1 with bias, no activation."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv, norm, _ = self._layers(train)
        features = x.shape[-1]
        for index in range(2):
            x = nn.relu(norm(name=f"bn{index}")(conv(features, 5, name=f"conv{index}")(x)))
        return conv(1, 5, use_bias=True, name="conv2")(x)


class DepthNet(nn.Module):
    """N: normalised image f32[B, H, W, 3] → depth in metres f32[B, H//2, W//2, 1] (spec §1).

    `encoder` is 'resnet18', 'resnet34' or 'resnet50' (paper); `width` scales every channel
    count; `dtype` is the compute dtype (params are float32, the output always float32);
    `axis_name` names the device axis over which train-mode BatchNorm averages statistics;
    `up_projection` how the up-projections convolve their resized input ('auto', 'direct' or
    'factored': `resize_conv`; the same function either way).
    """

    encoder: str
    width: float = 1.0
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    up_projection: str = "auto"

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        chex.assert_rank(x, 4)
        chex.assert_axis_dimension(x, 3, 3)
        chex.assert_type(x, float)
        batch, height, width = x.shape[:3]
        out_size = (height // 2, width // 2)
        modules = dict(dtype=self.dtype, axis_name=self.axis_name)
        blocks = ResNetEncoder(self.encoder, self.width, **modules, name="E")(
            x.astype(self.dtype), train=train
        )
        modules["up_projection"] = self.up_projection
        decoded = DepthDecoder(**modules, name="D")(blocks, out_size, train=train)
        fused = MultiScaleFusion(**modules, width=self.width, name="MFF")(
            blocks, out_size, train=train
        )
        depth = Refinement(**modules, name="R")(
            jnp.concatenate([decoded, fused], axis=-1), train=train
        )
        depth = depth.astype(jnp.float32)
        chex.assert_shape(depth, (batch, *out_size, 1))
        return depth
