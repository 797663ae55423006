"""Import of released Depth Anything V2 weights into Flax variables of `DepthAnythingNet`.

    python -m mde_adv.import_depth_anything --size vits|vitb|vitl --kind relative|metric \
        [--max-depth 20] --checkpoint depth_anything_v2_vits.pth|model.safetensors --out DIR

Two layouts are read: the original repository's `.pth` (`pretrained.*`, `depth_head.*`;
opened with `torch.load(weights_only=True)`) and the `transformers` safetensors of
`DepthAnythingForDepthEstimation` (`backbone.*`, `neck.*`, `head.*`; both the released
files' names, `attention.attention.query`, and current `transformers`' `attention.q_proj`).
A transformers key is first renamed to the original one (its q, k, v fused into `attn.qkv`);
the original key maps to a Flax path by N's rule (`mde_adv.import_torch`: '.' → '/', numeric
parts joined with '_') under `params/dav2/`. Leaves: conv weight OIHW → kernel HWIO, the
transposed convs' [I, O, k, k] → [k, k, O, I], linear weight [O, I] → kernel [I, O],
LayerNorm weight → scale; bias, `gamma`, `cls_token`, `pos_embed`, `mask_token` keep their
names. Errors list every missing path, unexpected key and shape mismatch
(`import_torch.torch_state_dict_to_flax`), with the transformers layout's keys named after
renaming.
"""

import argparse
import os
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mde_adv import import_torch
from mde_adv.import_torch import TorchImportError, flax_location, torch_state_dict_to_flax
from mde_adv.models.depth_anything import DEPTH_KINDS, SIZES, DepthAnythingNet
from mde_adv.variables_io import save_variables

PathLike = str | os.PathLike
NAMED_LEAVES = ("bias", "gamma", "cls_token", "pos_embed", "mask_token")
MODULE_PREFIX = "dav2"
TEMPLATE_INPUT_HW = (28, 28)

# transformers name → original name, applied in order to each key (first match wins).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^backbone\.embeddings\.cls_token$", "pretrained.cls_token"),
    (r"^backbone\.embeddings\.mask_token$", "pretrained.mask_token"),
    (r"^backbone\.embeddings\.position_embeddings$", "pretrained.pos_embed"),
    (r"^backbone\.embeddings\.patch_embeddings\.projection\.", "pretrained.patch_embed.proj."),
    (r"^backbone\.encoder\.layer\.(\d+)\.norm(\d)\.", r"pretrained.blocks.\1.norm\2."),
    (
        r"^backbone\.encoder\.layer\.(\d+)\.attention\.(output\.dense|o_proj)\.",
        r"pretrained.blocks.\1.attn.proj.",
    ),
    (
        r"^backbone\.encoder\.layer\.(\d+)\.layer_scale(\d)\.lambda1$",
        r"pretrained.blocks.\1.ls\2.gamma",
    ),
    (r"^backbone\.encoder\.layer\.(\d+)\.mlp\.(fc\d)\.", r"pretrained.blocks.\1.mlp.\2."),
    (r"^backbone\.layernorm\.", "pretrained.norm."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.projection\.", r"depth_head.projects.\1."),
    (r"^neck\.reassemble_stage\.layers\.(\d)\.resize\.", r"depth_head.resize_layers.\1."),
    (r"^head\.conv1\.", "depth_head.scratch.output_conv1."),
    (r"^head\.conv2\.", "depth_head.scratch.output_conv2.0."),
    (r"^head\.conv3\.", "depth_head.scratch.output_conv2.2."),
)
_QKV = re.compile(
    r"^backbone\.encoder\.layer\.(\d+)\.attention\."
    r"(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)$"
)
_NECK_CONV = re.compile(r"^neck\.convs\.(\d)\.(.+)$")
_FUSION = re.compile(
    r"^neck\.fusion_stage\.layers\.(\d)\.(?:projection|residual_layer(\d)\.convolution(\d))\.(.+)$"
)


def _rename(key: str) -> str:
    """One transformers key → the original layout's key (unchanged when nothing matches)."""
    if match := _NECK_CONV.match(key):
        return f"depth_head.scratch.layer{int(match[1]) + 1}_rn.{match[2]}"
    if match := _FUSION.match(key):
        block = f"depth_head.scratch.refinenet{4 - int(match[1])}"
        if match[2] is None:
            return f"{block}.out_conv.{match[4]}"
        return f"{block}.resConfUnit{match[2]}.conv{match[3]}.{match[4]}"
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def is_transformers_layout(state_dict: Mapping[str, Any]) -> bool:
    """True when the keys are `DepthAnythingForDepthEstimation`'s (backbone./neck./head.)."""
    return any(key.startswith(("backbone.", "neck.", "head.")) for key in state_dict)


def original_layout(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state_dict in either layout → the original repository's key layout (a leading
    'module.' is dropped; transformers' q, k, v of one block are concatenated along the
    output axis into attn.qkv, or passed through under their own names when one is absent)."""
    state_dict = {key.removeprefix("module."): np.asarray(v) for key, v in state_dict.items()}
    if not is_transformers_layout(state_dict):
        return state_dict
    converted: dict[str, np.ndarray] = {}
    qkv: dict[tuple[str, str], dict[str, tuple[str, np.ndarray]]] = {}
    for key, value in state_dict.items():
        if match := _QKV.match(key):
            part = (match[2] or match[3])[0]  # 'q', 'k' or 'v'
            qkv.setdefault((match[1], match[4]), {})[part] = (key, value)
        else:
            converted[_rename(key)] = value
    for (block, leaf), parts in qkv.items():
        if set(parts) == {"q", "k", "v"}:
            fused = np.concatenate([parts[p][1] for p in "qkv"], axis=0)
            converted[f"pretrained.blocks.{block}.attn.qkv.{leaf}"] = fused
        else:
            converted.update(parts.values())
    return converted


def dav2_flax_leaf(key: str, array: np.ndarray) -> tuple[str, np.ndarray] | None:
    """An original-layout key and array → ('params/dav2/...', array in Flax layout)."""
    location = flax_location(key)
    if location is None:
        return None
    _, module_path, leaf = location
    if leaf == "weight" and array.ndim == 1:
        name = "scale"
    elif leaf == "weight" and array.ndim == 2:
        name, array = "kernel", array.T
    elif leaf == "weight" and array.ndim == 4:
        name, array = "kernel", np.transpose(array, (2, 3, 1, 0))
    elif leaf in NAMED_LEAVES:
        name = leaf
    else:
        return None
    return "/".join(("params", MODULE_PREFIX, *module_path, name)), array


def dav2_torch_shape(flax_path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A Flax template shape in torch layout, for error messages."""
    if flax_path.endswith("/kernel") and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if flax_path.endswith("/kernel") and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def read_safetensors(path: PathLike) -> dict[str, np.ndarray]:
    """A .safetensors file (or a directory holding model.safetensors) → {name: float32 or
    integer numpy array}; safetensors holds only tensors, so no code can run."""
    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise TorchImportError(f"{path}: no such file")
    try:
        from safetensors import safe_open
    except ImportError as err:
        raise TorchImportError(f"reading {path} needs the 'safetensors' package") from err
    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: import_torch._to_numpy(file.get_tensor(key)) for key in file.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise TorchImportError(f"{path} is not a readable safetensors file: {err}") from err


def read_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """.safetensors → `read_safetensors`; anything else → `import_torch.read_torch_state_dict`."""
    if str(path).endswith(".safetensors") or pathlib.Path(path).is_dir():
        return read_safetensors(path)
    return import_torch.read_torch_state_dict(path)


def build_network(
    size: str, kind: str, max_depth: float = 20.0, input_hw: tuple[int, int] | None = None
) -> DepthAnythingNet:
    """The N-contract network of that size and head kind."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {list(SIZES)}, got {size!r}")
    if kind not in DEPTH_KINDS:
        raise ValueError(f"kind must be one of {DEPTH_KINDS}, got {kind!r}")
    return DepthAnythingNet(size=size, kind=kind, max_depth=max_depth, input_hw=input_hw)


def variables_template(network: DepthAnythingNet) -> Any:
    """{'params'} of `network` as jax.ShapeDtypeStruct leaves (nothing computed)."""
    images = jax.ShapeDtypeStruct((1, *TEMPLATE_INPUT_HW, 3), np.float32)
    return jax.eval_shape(lambda x: network.init(jax.random.key(0), x), images)


def state_dict_to_variables(state_dict: Mapping[str, Any], template: Any) -> dict[str, Any]:
    """Either layout → Flax variables matching `template` (TorchImportError on any misfit)."""
    return torch_state_dict_to_flax(
        original_layout(state_dict),
        template,
        flax_leaf=dav2_flax_leaf,
        torch_shape=dav2_torch_shape,
    )


def import_checkpoint(
    checkpoint: PathLike, *, size: str, kind: str, max_depth: float = 20.0
) -> dict[str, Any]:
    """A released `.pth` or `.safetensors` → Flax variables of `build_network(size, kind)`."""
    template = variables_template(build_network(size, kind, max_depth))
    state_dict = read_state_dict(checkpoint)
    layout = "transformers" if is_transformers_layout(state_dict) else "original"
    try:
        return state_dict_to_variables(state_dict, template)
    except TorchImportError as err:
        raise TorchImportError(f"{checkpoint} ({layout} layout, size {size}): {err}") from err


def import_to_checkpoint(
    out: PathLike, *, checkpoint: PathLike, size: str, kind: str, max_depth: float = 20.0
) -> pathlib.Path:
    """`import_checkpoint` written with `save_variables` at `out`; returns its path."""
    variables = import_checkpoint(checkpoint, size=size, kind=kind, max_depth=max_depth)
    metadata = {
        "model": "depth",  # N (mde_adv.run_checks compares the kind and the encoder)
        "encoder": f"dav2_{size}",
        "head": kind,
        "max_depth": max_depth,
        "source": "depth_anything_v2_release",
        "source_files": [import_torch._file_record(checkpoint)],
        "created_by": "mde_adv.import_depth_anything",
    }
    return save_variables(out, variables, metadata=metadata)


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
    """The command line described in the module docstring."""
    parser = argparse.ArgumentParser(
        prog="python -m mde_adv.import_depth_anything", description=__doc__
    )
    parser.add_argument("--size", required=True, choices=list(SIZES))
    parser.add_argument("--kind", required=True, choices=DEPTH_KINDS)
    parser.add_argument(
        "--max-depth",
        type=float,
        default=20.0,
        help="metric models: 20 (Hypersim, indoor) or 80 (Virtual KITTI)",
    )
    parser.add_argument("--checkpoint", required=True, help=".pth or .safetensors")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    args = parser.parse_args(argv)
    out = import_to_checkpoint(
        args.out,
        checkpoint=args.checkpoint,
        size=args.size,
        kind=args.kind,
        max_depth=args.max_depth,
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
