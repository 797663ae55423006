"""Depth Anything V2 (Yang et al. 2024): DINOv2 ViT-S/B/L encoder + DPT head, relative
(affine-invariant disparity, ReLU) or metric (max_depth · sigmoid, metres) models. NHWC.

`DepthAnythingV2` is the released network: ImageNet-normalised x[B, H, W, 3] with H, W
multiples of 14 → f32[B, H, W] (the head interpolates to 14·(H/14) = H). `DepthAnythingNet`
wraps it in N's contract (x[B, H, W, 3] → f32[B, H/2, W/2, 1]): it resizes x bilinearly to
`input_hw` (multiples of 14; None = each side rounded to the nearest multiple of 14, so
228×304 → 224×308; the NYU configs use 518×686, the released models' own rule: short side
518, long side rounded to a multiple of 14 at the same aspect ratio) and the output
bilinearly (align corners) to (H/2, W/2).

Variables are {'params'} only (no BatchNorm). Names mirror the original state_dict with N's
rule ('.' → '/', numeric parts joined with '_'): pretrained/..., depth_head/....
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mde_adv.models.depth_anything_dpt import DPTHead, head_activation
from mde_adv.models.depth_anything_vit import PATCH_SIZE, DinoVisionTransformer
from mde_adv.models.layers import Dtype, resize_bilinear_align_corners

DEPTH_KINDS = ("relative", "metric")


@dataclasses.dataclass(frozen=True)
class Size:
    """One encoder size: ViT width/depth/heads, the 4 blocks read by the head (0-based), DPT
    features and reassemble channels, side of the trained position-embedding grid."""

    embed_dim: int
    depth: int
    num_heads: int
    out_blocks: tuple[int, int, int, int]
    features: int
    out_channels: tuple[int, int, int, int]
    pos_grid: int = 37


SIZES: dict[str, Size] = {
    "vits": Size(384, 12, 6, (2, 5, 8, 11), 64, (48, 96, 192, 384)),
    "vitb": Size(768, 12, 12, (2, 5, 8, 11), 128, (96, 192, 384, 768)),
    "vitl": Size(1024, 24, 16, (4, 11, 17, 23), 256, (256, 512, 1024, 1024)),
    # the same structure, small enough for tests and the CPU (position grid 4×4 = 56² inputs)
    "tiny": Size(32, 4, 2, (0, 1, 2, 3), 16, (8, 16, 32, 32), pos_grid=4),
}
ENCODER_PREFIX = "dav2_"  # models.depth_net encoder names: dav2_vits, dav2_vitb, ...


class DepthAnythingV2(nn.Module):
    """x[B, H, W, 3] (H, W multiples of 14) → disparity (relative) or metres (metric)
    f32[B, H, W]; `pos_offset` None interpolates the position embedding as `transformers`,
    0.1 as the original code."""

    size: str = "vits"
    kind: str = "relative"
    max_depth: float = 20.0
    pos_offset: float | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        chex.assert_rank(x, 4)
        chex.assert_axis_dimension(x, 3, 3)
        if self.size not in SIZES:
            raise ValueError(f"Depth Anything V2 size {self.size!r}; expected one of {list(SIZES)}")
        if self.kind not in DEPTH_KINDS:
            raise ValueError(f"Depth Anything V2 kind {self.kind!r}; expected one of {DEPTH_KINDS}")
        size = SIZES[self.size]
        grid = (x.shape[1] // PATCH_SIZE, x.shape[2] // PATCH_SIZE)
        tokens = DinoVisionTransformer(
            size.embed_dim,
            size.depth,
            size.num_heads,
            size.out_blocks,
            size.pos_grid,
            self.pos_offset,
            self.dtype,
            name="pretrained",
        )(x.astype(self.dtype))
        head = DPTHead(size.features, size.out_channels, self.dtype, name="depth_head")
        out = head_activation(head(tokens, grid), self.kind, self.max_depth)
        return out[..., 0]


def check_input_hw(input_hw: tuple[int, int], where: str) -> tuple[int, int]:
    """(H, W) as ints, each a positive multiple of 14, or a ValueError naming `where`."""
    hw = tuple(int(s) for s in input_hw)
    if len(hw) != 2 or any(s < PATCH_SIZE or s % PATCH_SIZE for s in hw):
        raise ValueError(f"{where}: input_hw must be two positive multiples of 14, got {input_hw}")
    return hw


def nearest_multiple_hw(height: int, width: int) -> tuple[int, int]:
    """Each side rounded to the nearest multiple of 14, at least 14 (228×304 → 224×308)."""
    return tuple(max(PATCH_SIZE, PATCH_SIZE * round(s / PATCH_SIZE)) for s in (height, width))


class DepthAnythingNet(nn.Module):
    """N's contract around `DepthAnythingV2`: x f32[B, H, W, 3] → f32[B, H/2, W/2, 1]
    (metres for metric models, affine-invariant disparity for relative ones); `train` is
    accepted and ignored (no BatchNorm, no dropout)."""

    size: str = "vits"
    kind: str = "relative"
    max_depth: float = 20.0
    input_hw: tuple[int, int] | None = None
    pos_offset: float | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        del train
        chex.assert_rank(x, 4)
        chex.assert_type(x, float)
        batch, height, width, channels = x.shape
        if self.input_hw is None:
            network_hw = nearest_multiple_hw(height, width)
        else:
            network_hw = check_input_hw(self.input_hw, "DepthAnythingNet")
        if (height, width) != network_hw:
            x = jax.image.resize(
                x, (batch, *network_hw, channels), method="linear", antialias=False
            )
        out = DepthAnythingV2(
            self.size, self.kind, self.max_depth, self.pos_offset, self.dtype, name="dav2"
        )(x)
        out_size = (height // 2, width // 2)
        out = resize_bilinear_align_corners(out[..., None], out_size).astype(jnp.float32)
        chex.assert_shape(out, (batch, *out_size, 1))
        return out


def depth_anything_net(config: Mapping[str, Any]) -> DepthAnythingNet:
    """N from a depth_net config with `encoder` 'dav2_<size>' (size in SIZES), `kind`
    ('relative'|'metric', default 'relative'), `max_depth` (metres, default 20: Hypersim),
    `input_hw` (multiples of 14; absent or empty: nearest multiples of the input's size),
    `dtype` ('float32'|'bfloat16') and `pos_offset` (absent: transformers' interpolation)."""
    from mde_adv.models import COMPUTE_DTYPES  # the package imports this module first

    encoder = str(config.get("encoder", ""))
    size = encoder.removeprefix(ENCODER_PREFIX)
    if not encoder.startswith(ENCODER_PREFIX) or size not in SIZES:
        expected = [ENCODER_PREFIX + name for name in SIZES]
        raise ValueError(f"depth_net config: encoder {encoder!r}; expected one of {expected}")
    kind = config.get("kind", "relative")
    if kind not in DEPTH_KINDS:
        raise ValueError(f"depth_net config: kind must be one of {DEPTH_KINDS}, got {kind!r}")
    max_depth = float(config.get("max_depth", 20.0))
    if not max_depth > 0:
        raise ValueError(f"depth_net config: max_depth must be positive, got {max_depth}")
    input_hw = config.get("input_hw") or None
    if input_hw is not None:
        input_hw = check_input_hw(input_hw, "depth_net config")
    dtype_name = config.get("dtype", "float32")
    if dtype_name not in COMPUTE_DTYPES:
        raise ValueError(
            f"depth_net config: dtype must be one of {list(COMPUTE_DTYPES)}, got {dtype_name!r}"
        )
    pos_offset = config.get("pos_offset")
    return DepthAnythingNet(
        size=size,
        kind=kind,
        max_depth=max_depth,
        input_hw=input_hw,
        pos_offset=None if pos_offset is None else float(pos_offset),
        dtype=COMPUTE_DTYPES[dtype_name],
    )
