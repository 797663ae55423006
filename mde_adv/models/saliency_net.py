"""The saliency (mask) network G of Hu, Zhang & Okatani (ICCV 2019), spec §2."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mde_adv.models.drn import DRNEncoder
from mde_adv.models.layers import (
    DECODER_KERNEL_INIT,
    Dtype,
    conv2d,
    scaled_channels,
)
from mde_adv.models.up_projection import UpProjection


class SaliencyDecoder(nn.Module):
    """D of G: up1..up3 (512→256→128→64, times `width`) to `sizes`, then conv 3×3 → 1 with bias.

    Returns the mask logits [B, *sizes[-1], 1] in the compute dtype.
    """

    width: float = 1.0
    dtype: Dtype = jnp.float32
    axis_name: str | None = None
    up_projection: str = "auto"

    @nn.compact
    def __call__(
        self, x: jax.Array, sizes: tuple[tuple[int, int], ...], *, train: bool
    ) -> jax.Array:
        for index, (features, size) in enumerate(zip((256, 128, 64), sizes, strict=True), start=1):
            up = UpProjection(
                scaled_channels(features, self.width),
                dtype=self.dtype,
                axis_name=self.axis_name,
                method=self.up_projection,
                name=f"up{index}",
            )
            x = up(x, size, train=train)
        return conv2d(
            1, 3, use_bias=True, dtype=self.dtype, kernel_init=DECODER_KERNEL_INIT, name="conv"
        )(x)


class SaliencyNet(nn.Module):
    """G: normalised image f32[B, H, W, 3] → mask f32[B, H, W, 1] in (0, 1) (sigmoid), spec §2.

    `encoder` is 'drn_d_22' (paper), 'drn_d_38' or 'drn_d_54'; `width` scales every channel
    count; `dtype` is the compute dtype (params float32, output float32); `axis_name` names the
    device axis over which train-mode BatchNorm averages statistics. The decoder resizes to the
    sizes of levels 3 and 2 and then to H×W, as the reference code does; `up_projection` is how
    its up-projections convolve their resized input (as in `DepthNet`).
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
        modules = dict(dtype=self.dtype, axis_name=self.axis_name)
        levels = DRNEncoder(self.encoder, self.width, **modules, name="E")(
            x.astype(self.dtype), train=train
        )
        sizes = (levels[3].shape[1:3], levels[2].shape[1:3], (height, width))
        decoder = SaliencyDecoder(self.width, **modules, up_projection=self.up_projection, name="D")
        logits = decoder(levels[-1], sizes, train=train)
        mask = nn.sigmoid(logits.astype(jnp.float32))
        chex.assert_shape(mask, (batch, height, width, 1))
        return mask
