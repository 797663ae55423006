"""Import of PyTorch weights (the authors' N and G, or ImageNet encoders) into Flax variables.

    python -m mde_adv.import_torch --model depth|saliency --encoder ENC --width W \
        (--checkpoint AUTHORS.pth.tar | --imagenet-encoder resnet50.pth|drn_d_22.pth) \
        [--seed 0] --out DIR

Torch keys map to Flax paths by one rule (spec §3): split at '.', drop a leading 'module', join
every numeric component to the one before it with '_' (`module.E.layer1.0.conv1.weight` →
E/layer1_0/conv1). Leaves: conv weight OIHW → params `kernel` HWIO, conv bias → `bias`; BN
weight/bias → params `scale`/`bias`, running_mean/running_var → batch_stats `mean`/`var`;
`num_batches_tracked` is ignored. Only file reading needs torch, imported lazily; files are
opened with `torch.load(weights_only=True)`, so no code in them can run.
"""

import argparse
import hashlib
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mde_adv import models
from mde_adv.variables_io import flatten_variables, save_variables

PathLike = str | os.PathLike
MODEL_KINDS = ("depth", "saliency")
DEFAULT_ENCODERS = {"depth": "resnet50", "saliency": "drn_d_22"}
INIT_INPUT_HW = (64, 64)  # the seeded init runs a forward pass; variables do not depend on it
IGNORED_LEAVES = ("num_batches_tracked",)


class TorchImportError(ValueError):
    """A PyTorch file cannot be read, or its keys/shapes do not fit the Flax model."""


def flax_location(torch_key: str) -> tuple[str, tuple[str, ...], str] | None:
    """'module.E.layer1.0.conv1.weight' -> ('params', ('E', 'layer1_0', 'conv1'), 'weight'):
    collection, module path and torch leaf name; None for a malformed key."""
    parts = torch_key.split(".")
    if parts[0] == "module":
        parts = parts[1:]
    if len(parts) < 2 or not all(parts) or parts[0].isdigit():
        return None
    *module_parts, leaf = parts
    path: list[str] = []
    for part in module_parts:
        if part.isdigit():
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    collection = "batch_stats" if leaf in ("running_mean", "running_var") else "params"
    return collection, tuple(path), leaf


def _flax_leaf(torch_key: str, array: np.ndarray) -> tuple[str, np.ndarray] | None:
    """Torch key and array -> Flax path 'collection/module/.../leaf' and the array in Flax
    layout (conv weight OIHW -> kernel HWIO; a 1-D 'weight' is a BatchNorm scale). None for a
    malformed key or a leaf name with no Flax counterpart."""
    location = flax_location(torch_key)
    if location is None:
        return None
    collection, module_path, leaf = location
    if leaf == "weight" and array.ndim == 1:
        name = "scale"
    elif leaf == "weight":
        name, array = "kernel", np.transpose(array, (2, 3, 1, 0)) if array.ndim == 4 else array
    elif leaf in ("bias", "running_mean", "running_var"):
        name = leaf.removeprefix("running_")
    else:
        return None
    return "/".join((collection, *module_path, name)), array


def _torch_shape(flax_path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A template shape in torch layout, for error messages (HWIO kernel -> OIHW)."""
    if flax_path.endswith("/kernel") and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return shape


def torch_state_dict_to_flax(
    state_dict: Mapping[str, Any],
    template: Any,
    *,
    flax_leaf: Callable[[str, np.ndarray], tuple[str, np.ndarray] | None] = _flax_leaf,
    torch_shape: Callable[[str, tuple[int, ...]], tuple[int, ...]] = _torch_shape,
) -> dict[str, Any]:
    """A torch state_dict (names -> numpy arrays; 'module.' prefix optional) -> Flax variables
    {'params': ..., 'batch_stats': ...} matching `template` (arrays or jax.ShapeDtypeStruct
    leaves), cast to the template's dtypes. Raises one TorchImportError listing every missing
    path, unexpected key, shape mismatch and tensor holding NaN or Inf. `flax_leaf` maps a key
    and its array to a Flax path and array (None: no counterpart), `torch_shape` a Flax path
    and shape to torch's layout for messages (defaults: N and G's rule)."""
    expected = flatten_variables(template)
    converted: dict[str, np.ndarray] = {}
    covered: set[str] = set()
    unexpected, mismatched, non_finite = [], [], []
    for torch_key, value in state_dict.items():
        if torch_key.rsplit(".", 1)[-1] in IGNORED_LEAVES:
            continue
        array = np.asarray(value)
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            bad = int(np.count_nonzero(~np.isfinite(array)))
            non_finite.append(f"{torch_key}: {bad} of {array.size} values are NaN or Inf")
        leaf = flax_leaf(torch_key, array)
        if leaf is None or leaf[0] not in expected or leaf[0] in covered:
            unexpected.append(f"{torch_key} {array.shape}")
            continue
        path, flax_array = leaf
        covered.add(path)
        want = tuple(expected[path].shape)
        if flax_array.shape != want:
            mismatched.append(f"{torch_key}: {array.shape}, expected {torch_shape(path, want)}")
            continue
        converted[path] = flax_array.astype(expected[path].dtype)
    missing = sorted(set(expected) - covered)
    if missing or unexpected or mismatched or non_finite:
        lines = ["torch weights do not fit the Flax model:"]
        for title, entries in (
            ("missing (Flax paths)", missing),
            ("unexpected torch keys", unexpected),
            ("shape mismatches (torch layout)", mismatched),
            ("non-finite values", non_finite),
        ):
            if entries:
                lines.append(f"  {title} ({len(entries)}):")
                lines.extend(f"    {entry}" for entry in entries)
        raise TorchImportError("\n".join(lines))
    return _unflatten(converted)


def _unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """{'params/E/conv1/kernel': array} -> nested dicts."""
    tree: dict[str, Any] = {}
    for path, array in flat.items():
        *parents, name = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = array
    return tree


def read_torch_state_dict(path: PathLike) -> dict[str, np.ndarray]:
    """A .pth/.pth.tar file -> {name: numpy array}. Accepts a plain state_dict or a dict with a
    'state_dict' entry; opened with torch.load(weights_only=True), so no pickled code runs."""
    try:
        import torch  # optional dependency, needed only to read files
    except ImportError as err:
        raise TorchImportError(
            f"reading {path} needs torch; install the 'torch' extra of mde_adv"
        ) from err
    if not os.path.isfile(path):
        raise TorchImportError(f"{path}: no such file")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for unreadable or unsafe files
        raise TorchImportError(
            f"{path} is not a PyTorch checkpoint that can be loaded safely "
            f"(torch.load weights_only=True): {err}"
        ) from err
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise TorchImportError(
            f"{path}: expected a state_dict or a dict with a 'state_dict' entry, "
            f"got {type(loaded).__name__}"
        )
    not_tensors = [
        repr(key)
        for key, value in loaded.items()
        if not (isinstance(key, str) and isinstance(value, torch.Tensor))
    ]
    if not_tensors:
        raise TorchImportError(
            f"{path}: entries that are not named tensors: {', '.join(not_tensors)}"
        )
    return {key: _to_numpy(value) for key, value in loaded.items()}


def _to_numpy(tensor: Any) -> np.ndarray:
    """Host numpy copy; floating tensors as float32 (numpy has no bfloat16)."""
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()


def imagenet_encoder_keys(state_dict: Mapping[str, Any], model: str) -> dict[str, Any]:
    """ImageNet classifier keys -> the encoder E's keys of N or G; the classifier `fc.*` is
    dropped. torchvision ResNet (model 'depth'): `conv1`, `bn1`, `layerK.i.*` -> `E.*`.
    DRN (model 'saliency'): `layerK.*` -> `E.base.K.*`."""
    mapped = {}
    for key, value in state_dict.items():
        if key.startswith(("fc.", "module.fc.")):
            continue
        key = key.removeprefix("module.")
        head, _, rest = key.partition(".")
        if model == "saliency" and head.startswith("layer") and head[5:].isdigit() and rest:
            key = f"base.{head[5:]}.{rest}"
        mapped[f"E.{key}"] = value
    return mapped


def build_model(model: str, encoder: str, width: float) -> models.DepthNet | models.SaliencyNet:
    """N ('depth') or G ('saliency') with the given encoder and width multiplier."""
    config = {"encoder": encoder, "width": width}
    if model == "depth":
        return models.depth_net(config)
    if model == "saliency":
        return models.saliency_net(config)
    raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")


def variables_template(network: models.DepthNet | models.SaliencyNet) -> Any:
    """{'params', 'batch_stats'} of `network` as jax.ShapeDtypeStruct leaves (nothing computed)."""
    return jax.eval_shape(lambda: models.init_variables(network, jax.random.key(0), INIT_INPUT_HW))


def import_authors_checkpoint(
    checkpoint: PathLike, *, model: str, encoder: str, width: float = 1.0
) -> dict[str, Any]:
    """The authors' released N or G (`.pth.tar`) -> full Flax variables of that model."""
    template = variables_template(build_model(model, encoder, width))
    state_dict = read_torch_state_dict(checkpoint)
    try:
        return torch_state_dict_to_flax(state_dict, template)
    except TorchImportError as err:
        raise TorchImportError(f"{checkpoint}: {err}") from err


def import_imagenet_encoder(
    weights: PathLike, *, model: str, encoder: str, width: float = 1.0, seed: int = 0
) -> dict[str, Any]:
    """ImageNet weights (torchvision ResNet for N, DRN for G) -> Flax variables whose encoder E
    holds them and whose other modules keep the init of jax.random.key(seed)."""
    network = build_model(model, encoder, width)
    template = variables_template(network)
    encoder_template = {
        collection: {"E": subtree["E"]}
        for collection, subtree in template.items()
        if "E" in subtree
    }
    state_dict = imagenet_encoder_keys(read_torch_state_dict(weights), model)
    try:
        encoder_variables = torch_state_dict_to_flax(state_dict, encoder_template)
    except TorchImportError as err:
        layout = "layerK.* read as E.base.K.*" if model == "saliency" else "keys read as E.*"
        raise TorchImportError(f"{weights} (ImageNet {encoder}, {layout}): {err}") from err
    variables = jax.device_get(models.init_variables(network, jax.random.key(seed), INIT_INPUT_HW))
    variables = {collection: dict(subtree) for collection, subtree in variables.items()}
    for collection, subtree in encoder_variables.items():
        variables[collection]["E"] = subtree["E"]
    return variables


def _file_record(path: PathLike) -> dict[str, str]:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return {"path": str(pathlib.Path(path).absolute()), "sha256": digest.hexdigest()}


def import_to_checkpoint(
    out: PathLike,
    *,
    model: str,
    encoder: str | None = None,
    width: float = 1.0,
    checkpoint: PathLike | None = None,
    imagenet_encoder: PathLike | None = None,
    seed: int = 0,
) -> pathlib.Path:
    """Imports exactly one of `checkpoint` (authors' N/G) or `imagenet_encoder` and writes the
    variables with save_variables at `out`; returns the checkpoint path."""
    if (checkpoint is None) == (imagenet_encoder is None):
        raise ValueError("give exactly one of checkpoint= and imagenet_encoder=")
    if model not in MODEL_KINDS:
        raise ValueError(f"model must be one of {MODEL_KINDS}, got {model!r}")
    encoder = encoder or DEFAULT_ENCODERS[model]
    if checkpoint is not None:
        source, seed_used = checkpoint, None
        variables = import_authors_checkpoint(checkpoint, model=model, encoder=encoder, width=width)
    else:
        source, seed_used = imagenet_encoder, seed
        variables = import_imagenet_encoder(
            imagenet_encoder, model=model, encoder=encoder, width=width, seed=seed
        )
    metadata = {
        "model": model,
        "encoder": encoder,
        "width": width,
        "source": "authors_checkpoint" if checkpoint is not None else "imagenet_encoder",
        "source_files": [_file_record(source)],
        "seed": seed_used,
        "created_by": "mde_adv.import_torch",
    }
    return save_variables(out, variables, metadata=metadata)


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
    """The command line described in the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m mde_adv.import_torch", description=__doc__)
    parser.add_argument("--model", required=True, choices=MODEL_KINDS)
    parser.add_argument("--encoder", help="default: resnet50 (depth), drn_d_22 (saliency)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="the authors' released N or G (.pth.tar)")
    source.add_argument("--imagenet-encoder", help="torchvision ResNet or DRN ImageNet .pth")
    parser.add_argument("--seed", type=int, default=0, help="init of all but E (ImageNet only)")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    args = parser.parse_args(argv)
    out = import_to_checkpoint(
        args.out,
        model=args.model,
        encoder=args.encoder,
        width=args.width,
        checkpoint=args.checkpoint,
        imagenet_encoder=args.imagenet_encoder,
        seed=args.seed,
    )
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
