"""The DINOv2 ViT encoder of Depth Anything V2 (patch 14, learned position embedding
interpolated bicubically to the input's patch grid). NHWC in, tokens [B, 1 + h·w, D] out.

Module and parameter names follow the original repository's state_dict (`pretrained.*`):
patch_embed/proj, cls_token, pos_embed, mask_token, blocks_i/{norm1, attn/{qkv, proj}, ls1,
norm2, mlp/{fc1, fc2}, ls2}, norm (`mde_adv.import_depth_anything` maps both released layouts
onto them).
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mde_adv.models.layers import Dtype

PATCH_SIZE = 14
LAYER_NORM_EPS = 1e-6
CUBIC_A = -0.75  # PyTorch's bicubic coefficient
TRUNC_NORMAL = nn.initializers.truncated_normal(0.02)


def _cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys cubic-convolution weights (A = −0.75) of the taps at offsets −1, 0, 1, 2 from
    floor(source) for fractional parts t[n]; f64[n, 4]."""
    a = CUBIC_A

    def near(s):  # |s| <= 1
        return ((a + 2) * s - (a + 3)) * s * s + 1

    def far(s):  # 1 < |s| < 2
        return ((a * s - 5 * a) * s + 8 * a) * s - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=64)
def bicubic_weights(in_size: int, out_size: int, scale: float | None = None) -> np.ndarray:
    """f32[out_size, in_size] matrix of PyTorch's `interpolate(mode='bicubic',
    align_corners=False)` along one axis: output i samples source (i + ½)·r − ½ with r =
    in/out, or r = 1/scale when the caller passed `scale_factor=scale`; taps clamp at the
    border."""
    ratio = in_size / out_size if scale is None else 1.0 / scale
    source = (np.arange(out_size) + 0.5) * ratio - 0.5
    floor = np.floor(source)
    taps = _cubic_weights(source - floor)
    index = np.clip(floor[:, None].astype(np.int64) + np.arange(-1, 3)[None, :], 0, in_size - 1)
    weights = np.zeros((out_size, in_size))
    np.add.at(weights, (np.repeat(np.arange(out_size), 4), index.ravel()), taps.ravel())
    return weights.astype(np.float32)


def interpolate_pos_embed(
    pos_embed: jax.Array, grid_hw: tuple[int, int], offset: float | None = None
) -> jax.Array:
    """pos_embed f32[1, 1 + M², D] (a square M×M grid after the class position) → f32[1, 1 +
    h·w, D] for a patch grid (h, w), bicubic, in float32; unchanged when (h, w) == (M, M).

    offset None resizes to the size (h, w), as `transformers`; a number resizes by the scale
    factor ((h + offset)/M, (w + offset)/M), as the original DINOv2/Depth Anything V2 code
    (offset 0.1), whose sampling grid differs slightly.
    """
    chex.assert_rank(pos_embed, 3)
    num_positions = pos_embed.shape[1] - 1
    side = round(num_positions**0.5)
    if side * side != num_positions:
        raise ValueError(f"pos_embed holds {num_positions} patch positions, not a square grid")
    height, width = grid_hw
    if (height, width) == (side, side):
        return pos_embed
    scales = (None, None) if offset is None else ((height + offset) / side, (width + offset) / side)
    rows = jnp.asarray(bicubic_weights(side, height, scales[0]))
    cols = jnp.asarray(bicubic_weights(side, width, scales[1]))
    grid = pos_embed[0, 1:].astype(jnp.float32).reshape(side, side, -1)
    contract = functools.partial(jnp.einsum, precision=jax.lax.Precision.HIGHEST)
    resized = contract("pj,oi,ijd->opd", cols, rows, grid).reshape(1, height * width, -1)
    return jnp.concatenate([pos_embed[:, :1].astype(jnp.float32), resized], axis=1)


class PatchEmbed(nn.Module):
    """Conv 14×14 stride 14 of x[B, H, W, 3] (H, W multiples of 14) as a matrix product;
    'proj' kernel f32[14, 14, 3, D] (HWIO) and bias f32[D]; returns [B, h·w, D]."""

    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, channels = x.shape
        p = PATCH_SIZE
        h, w = height // p, width // p
        proj = {
            "kernel": (nn.initializers.lecun_normal(), (p, p, channels, self.features)),
            "bias": (nn.initializers.zeros, (self.features,)),
        }
        params = ProjParams(proj, name="proj")()
        patches = x.reshape(batch, h, p, w, p, channels).transpose(0, 1, 3, 2, 4, 5)
        patches = patches.reshape(batch, h * w, p * p * channels).astype(self.dtype)
        kernel = params["kernel"].reshape(p * p * channels, self.features).astype(self.dtype)
        return patches @ kernel + params["bias"].astype(self.dtype)


class ProjParams(nn.Module):
    """A bag of float32 parameters {name: (init, shape)}, returned as a dict."""

    spec: dict

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        return {
            k: self.param(k, init, shape, jnp.float32) for k, (init, shape) in self.spec.items()
        }


class LayerScale(nn.Module):
    """x · gamma with gamma f32[D] (DINOv2's ls1/ls2; init 1)."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return x * gamma.astype(self.dtype)


class Attention(nn.Module):
    """Multi-head self-attention with a fused 'qkv' projection (rows q, k, v, each heads ×
    head_dim) and an output 'proj'; softmax in float32."""

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batch, tokens, features = x.shape
        head_dim = features // self.num_heads
        dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=TRUNC_NORMAL)
        qkv = dense(3 * features, name="qkv")(x)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q * head_dim**-0.5, k)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, tokens, features)
        return dense(features, name="proj")(out)


class Mlp(nn.Module):
    """fc1 (D → 4D), exact GELU, fc2 (4D → D)."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=TRUNC_NORMAL)
        hidden = jax.nn.gelu(dense(4 * x.shape[-1], name="fc1")(x), approximate=False)
        return dense(x.shape[-1], name="fc2")(hidden)


def _layer_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=LAYER_NORM_EPS, dtype=dtype, param_dtype=jnp.float32, name=name)


class Block(nn.Module):
    """x + ls1(attn(norm1 x)); then + ls2(mlp(norm2 x)) (pre-norm ViT block of DINOv2)."""

    num_heads: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        attended = Attention(self.num_heads, self.dtype, name="attn")(
            _layer_norm(self.dtype, "norm1")(x)
        )
        x = x + LayerScale(self.dtype, name="ls1")(attended)
        mixed = Mlp(self.dtype, name="mlp")(_layer_norm(self.dtype, "norm2")(x))
        return x + LayerScale(self.dtype, name="ls2")(mixed)


class DinoVisionTransformer(nn.Module):
    """DINOv2 ViT: image x[B, H, W, 3] (H, W multiples of 14, ImageNet-normalised) → the
    final-norm'ed tokens [B, 1 + h·w, D] after each block of `out_blocks` (0-based), h = H/14.

    `pos_grid` is the side M of the trained position grid (37 for the released 518² models);
    `pos_offset` as in `interpolate_pos_embed`.
    """

    embed_dim: int
    depth: int
    num_heads: int
    out_blocks: tuple[int, ...]
    pos_grid: int = 37
    pos_offset: float | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        chex.assert_rank(x, 4)
        batch, height, width, _ = x.shape
        if height % PATCH_SIZE or width % PATCH_SIZE:
            raise ValueError(f"input {height}×{width} is not a multiple of {PATCH_SIZE}")
        grid = (height // PATCH_SIZE, width // PATCH_SIZE)
        dim = self.embed_dim
        cls_token = self.param("cls_token", TRUNC_NORMAL, (1, 1, dim), jnp.float32)
        pos_embed = self.param("pos_embed", TRUNC_NORMAL, (1, 1 + self.pos_grid**2, dim))
        self.param("mask_token", nn.initializers.zeros, (1, dim), jnp.float32)  # unused here
        tokens = PatchEmbed(dim, self.dtype, name="patch_embed")(x)
        tokens = jnp.concatenate(
            [jnp.broadcast_to(cls_token, (batch, 1, dim)).astype(self.dtype), tokens], axis=1
        )
        tokens = tokens + interpolate_pos_embed(pos_embed, grid, self.pos_offset).astype(self.dtype)
        norm = _layer_norm(self.dtype, "norm")
        outputs = []
        for index in range(self.depth):
            tokens = Block(self.num_heads, self.dtype, name=f"blocks_{index}")(tokens)
            if index in self.out_blocks:
                outputs.append(norm(tokens))
        if len(outputs) != len(self.out_blocks):
            raise ValueError(f"out_blocks {self.out_blocks} not all below depth {self.depth}")
        return outputs
