"""Residual blocks (shared with DRN) and the ResNet-18/34/50 encoder E of N (spec §1).

Submodule names mirror the PyTorch state_dict keys: `layer1.0.downsample.0` → `layer1_0/
downsample_0` (see `mde_adv.models` for the naming rule).
"""

import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mde_adv.models.layers import Dtype, batch_norm, conv2d, max_pool, scaled_channels


def _shortcut(x: jax.Array, out_channels: int, stride: int, conv, norm) -> jax.Array:
    """Identity, or conv 1×1 (stride) + BN (`downsample_0/1`) where channels or stride change."""
    if stride == 1 and x.shape[-1] == out_channels:
        return x
    return norm(name="downsample_1")(conv(out_channels, 1, stride=stride, name="downsample_0")(x))


class BasicBlock(nn.Module):
    """Two 3×3 convs (stride on the first; dilations `dilation`) + shortcut; out = planes."""

    planes: int
    stride: int = 1
    dilation: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    expansion: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = functools.partial(conv2d, dtype=self.dtype)
        norm = functools.partial(
            batch_norm, train=train, axis_name=self.axis_name, dtype=self.dtype
        )
        y = conv(self.planes, 3, stride=self.stride, dilation=self.dilation[0], name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = norm(name="bn2")(conv(self.planes, 3, dilation=self.dilation[1], name="conv2")(y))
        return nn.relu(y + _shortcut(x, self.planes, self.stride, conv, norm))


class Bottleneck(nn.Module):
    """1×1 → 3×3 (stride and dilation[1] here: torchvision v1.5, DRN) → 1×1 to 4·planes."""

    planes: int
    stride: int = 1
    dilation: tuple[int, int] = (1, 1)
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        conv = functools.partial(conv2d, dtype=self.dtype)
        norm = functools.partial(
            batch_norm, train=train, axis_name=self.axis_name, dtype=self.dtype
        )
        out_channels = self.planes * self.expansion
        y = nn.relu(norm(name="bn1")(conv(self.planes, 1, name="conv1")(x)))
        y = conv(self.planes, 3, stride=self.stride, dilation=self.dilation[1], name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = norm(name="bn3")(conv(out_channels, 1, name="conv3")(y))
        return nn.relu(y + _shortcut(x, out_channels, self.stride, conv, norm))


def residual_stage(
    x: jax.Array,
    block: type[BasicBlock] | type[Bottleneck],
    planes: int,
    num_blocks: int,
    *,
    stride: int,
    dilation: int,
    prefix: str,
    train: bool,
    dtype: Dtype,
    axis_name: str | None,
) -> jax.Array:
    """`num_blocks` blocks named `{prefix}_{i}`; the first carries the stride.

    Must be called inside the parent's compact method (the blocks become its submodules).
    """
    for i in range(num_blocks):
        x = block(
            planes,
            stride=stride if i == 0 else 1,
            dilation=(dilation, dilation),
            dtype=dtype,
            axis_name=axis_name,
            name=f"{prefix}_{i}",
        )(x, train=train)
    return x


RESNET_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
RESNET_PLANES = (64, 128, 256, 512)


def _layout(arch: str) -> tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]:
    if arch not in RESNET_LAYOUTS:
        raise ValueError(f"unknown ResNet encoder {arch!r}; expected one of {list(RESNET_LAYOUTS)}")
    return RESNET_LAYOUTS[arch]


class ResNetEncoder(nn.Module):
    """E of N: stem (conv1 7×7/2, bn1, ReLU, max-pool 3×3/2) and layer1..4.

    x[B, H, W, 3] → (b1, b2, b3, b4); for ResNet-50 at 228×304: 57×76×256, 29×38×512,
    15×19×1024, 8×10×2048. Channels scale with `width` (max(1, round(c·width))).
    """

    arch: str
    width: float = 1.0
    dtype: Dtype = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, ...]:
        block, counts = _layout(self.arch)
        x = conv2d(scaled_channels(64, self.width), 7, stride=2, dtype=self.dtype, name="conv1")(x)
        x = batch_norm(train=train, axis_name=self.axis_name, dtype=self.dtype, name="bn1")(x)
        x = max_pool(nn.relu(x), window=3, stride=2, padding=1)
        blocks = []
        for level, (planes, count) in enumerate(zip(RESNET_PLANES, counts, strict=True), start=1):
            x = residual_stage(
                x,
                block,
                scaled_channels(planes, self.width),
                count,
                stride=1 if level == 1 else 2,
                dilation=1,
                prefix=f"layer{level}",
                train=train,
                dtype=self.dtype,
                axis_name=self.axis_name,
            )
            blocks.append(x)
        return tuple(blocks)
