"""DRN-D-22/38/54 encoder E of the saliency network G (spec §2), levels 0..8 without the head.

Submodule names mirror the authors' `module.E.base.{k}...` keys: the conv/BN/ReLU levels 0, 1,
2, 7, 8 are PyTorch Sequentials, so their j-th conv is `base_{k}_{3j}` and its BN
`base_{k}_{3j+1}`; residual levels 3–6 hold blocks `base_{k}_{i}`.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from mde_adv.models.layers import Dtype, batch_norm, conv2d, scaled_channels
from mde_adv.models.resnet import BasicBlock, Bottleneck, residual_stage

DRN_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)
DRN_LAYOUTS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "drn_d_22": (BasicBlock, (1, 1, 2, 2, 2, 2, 1, 1)),
    "drn_d_38": (BasicBlock, (1, 1, 3, 4, 6, 3, 1, 1)),
    "drn_d_54": (Bottleneck, (1, 1, 3, 4, 6, 3, 1, 1)),
}
# (level, stride of its first block, dilation) of the residual levels 3–6.
_RESIDUAL_LEVELS = ((3, 2, 1), (4, 2, 1), (5, 1, 2), (6, 1, 4))


class DRNEncoder(nn.Module):
    """DRN-D (arch D: conv levels 0–2 and 7–8, residual levels 3–6, dilations 2 and 4).

    x[B, H, W, 3] → tuple of the outputs of levels 0..8; for DRN-D-22 at 228×304: 228×304×16,
    228×304×16, 114×152×32, 57×76×64, 29×38×128, 29×38×256, 29×38×512, 29×38×512,
    29×38×512. The last entry is the encoder's output. Channels scale with `width`.
    """

    arch: str
    width: float = 1.0
    dtype: Dtype = jnp.float32
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> tuple[jax.Array, ...]:
        if self.arch not in DRN_LAYOUTS:
            raise ValueError(
                f"unknown DRN encoder {self.arch!r}; expected one of {list(DRN_LAYOUTS)}"
            )
        block, counts = DRN_LAYOUTS[self.arch]
        channels = [scaled_channels(c, self.width) for c in DRN_CHANNELS]

        def conv_level(x, level, features, num_convs, *, kernel_size=3, stride=1, dilation=1):
            for j in range(num_convs):
                x = conv2d(
                    features,
                    kernel_size,
                    stride=stride if j == 0 else 1,
                    dilation=dilation,
                    dtype=self.dtype,
                    name=f"base_{level}_{3 * j}",
                )(x)
                x = batch_norm(
                    train=train,
                    axis_name=self.axis_name,
                    dtype=self.dtype,
                    name=f"base_{level}_{3 * j + 1}",
                )(x)
                x = nn.relu(x)
            return x

        levels = [conv_level(x, 0, channels[0], 1, kernel_size=7)]
        levels.append(conv_level(levels[-1], 1, channels[0], counts[0]))
        levels.append(conv_level(levels[-1], 2, channels[1], counts[1], stride=2))
        for level, stride, dilation in _RESIDUAL_LEVELS:
            residual = residual_stage(
                levels[-1],
                block,
                channels[level - 1],
                counts[level - 1],
                stride=stride,
                dilation=dilation,
                prefix=f"base_{level}",
                train=train,
                dtype=self.dtype,
                axis_name=self.axis_name,
            )
            levels.append(residual)
        levels.append(conv_level(levels[-1], 7, channels[6], counts[6], dilation=2))
        levels.append(conv_level(levels[-1], 8, channels[7], counts[7]))
        return tuple(levels)
