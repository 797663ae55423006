"""The networks N (`DepthNet`) and G (`SaliencyNet`), their builders from configs and helpers.

Variable names mirror the PyTorch state_dict keys of the authors' checkpoints (spec §3) by one
rule: split the key at '.', drop a leading 'module', and join every numeric component to the
one before it with '_' (`module.E.layer1.0.downsample.0.weight` → E/layer1_0/downsample_0).
Leaves: conv `kernel` (HWIO) and `bias`; BatchNorm params `scale`/`bias`, batch_stats
`mean`/`var`.
"""

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from mde_adv.models.depth_anything import ENCODER_PREFIX as DAV2_PREFIX
from mde_adv.models.depth_anything import DepthAnythingNet, depth_anything_net
from mde_adv.models.depth_net import DepthNet
from mde_adv.models.drn import DRN_LAYOUTS
from mde_adv.models.layers import resize_bilinear_align_corners
from mde_adv.models.resnet import RESNET_LAYOUTS
from mde_adv.models.saliency_net import SaliencyNet
from mde_adv.models.up_projection import METHODS as up_projection_methods
from mde_adv.models.up_projection import UpProjection, resize_conv

__all__ = [
    "DepthAnythingNet",
    "DepthNet",
    "SaliencyNet",
    "UpProjection",
    "count_params",
    "depth_net",
    "init_variables",
    "resize_bilinear_align_corners",
    "resize_conv",
    "saliency_net",
]

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _model_kwargs(config: Mapping[str, Any], encoders: Mapping[str, Any], what: str) -> dict:
    """encoder/width/dtype/up_projection of a model config (width defaults to 1.0, dtype to
    'float32', up_projection to 'auto')."""
    if "encoder" not in config:
        raise ValueError(f"{what} config is missing the key 'encoder'")
    encoder = config["encoder"]
    if encoder not in encoders:
        raise ValueError(
            f"{what} config: unknown encoder {encoder!r}; expected one of {list(encoders)}"
        )
    width = float(config["width"]) if "width" in config else 1.0
    if not width > 0:
        raise ValueError(f"{what} config: width must be positive, got {width}")
    dtype_name = config["dtype"] if "dtype" in config else "float32"
    if dtype_name not in COMPUTE_DTYPES:
        raise ValueError(
            f"{what} config: dtype must be one of {list(COMPUTE_DTYPES)}, got {dtype_name!r}"
        )
    up_projection = config["up_projection"] if "up_projection" in config else "auto"
    if up_projection not in up_projection_methods:
        raise ValueError(
            f"{what} config: up_projection must be one of {list(up_projection_methods)}, "
            f"got {up_projection!r}"
        )
    return dict(
        encoder=encoder,
        width=width,
        dtype=COMPUTE_DTYPES[dtype_name],
        up_projection=up_projection,
    )


def depth_net(
    config: Mapping[str, Any], axis_name: str | None = None
) -> DepthNet | DepthAnythingNet:
    """N from a mapping/ConfigDict with `encoder` ('resnet18'|'resnet34'|'resnet50'), `width`,
    `dtype` ('float32'|'bfloat16') and optionally `up_projection` ('auto'|'direct'|'factored').
    An encoder 'dav2_vits'|'dav2_vitb'|'dav2_vitl'|'dav2_tiny' builds Depth Anything V2
    instead (`depth_anything_net`)."""
    if str(config.get("encoder", "")).startswith(DAV2_PREFIX):
        return depth_anything_net(config)
    return DepthNet(**_model_kwargs(config, RESNET_LAYOUTS, "depth_net"), axis_name=axis_name)


def saliency_net(config: Mapping[str, Any], axis_name: str | None = None) -> SaliencyNet:
    """G from a mapping/ConfigDict with `encoder` ('drn_d_22'|'drn_d_38'|'drn_d_54'), `width`,
    `dtype` ('float32'|'bfloat16') and optionally `up_projection` ('auto'|'direct'|'factored')."""
    return SaliencyNet(**_model_kwargs(config, DRN_LAYOUTS, "saliency_net"), axis_name=axis_name)


def init_variables(
    model: DepthNet | DepthAnythingNet | SaliencyNet, key: jax.Array, input_hw: tuple[int, int]
) -> dict[str, Any]:
    """{'params', 'batch_stats'} of `model`, initialised by a jitted init on zeros[1, H, W, 3].

    The init program is compiled once per (model, input size) and process: equal models (flax
    modules compare by their fields) reuse it, and only the key changes the values."""
    return _jitted_init(model, key, tuple(int(n) for n in input_hw))


@functools.partial(jax.jit, static_argnums=(0, 2))
def _jitted_init(model, key: jax.Array, input_hw: tuple[int, int]) -> dict[str, Any]:
    images = jnp.zeros((1, *input_hw, 3), jnp.float32)
    return model.init(key, images, train=False)


def count_params(params: Any) -> int:
    """Number of scalars in a pytree of arrays (pass `variables['params']` for trainables)."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
