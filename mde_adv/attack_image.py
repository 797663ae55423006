"""Attack one image with the networks of a run and draw a PNG panel.

    python -m mde_adv.attack_image --image PATH.png --workdir RUN_DIR \
        [--eps 0.1 --steps 10 --eps-space normalised --alpha 1] --out panel.png

Loads N (required), G and G_adv (optional), checkpoints written by `mde_adv.variables_io`:
the path given for the network in RUN_DIR/config.json 'networks', else the `--networks`
pattern (default RUN_DIR/networks/{name}, where `mde_adv.experiment` saves them). The model
settings come from the checkpoint's metadata ('model' = {encoder, width, dtype}, or those keys
at its top level as `mde_adv.import_torch` writes them), else from config.json 'depth_net' /
'saliency_net'. The image is resized and centre-cropped as the run's test transform
(config.json 'data.pipeline.resize_hw' and 'crop_hw', or --resize and --crop). The attack
is x* = Adv(x; N): IFGSM with T steps, ℓ∞ radius ε in the given space, maximising the ℓ1
distance from the clean prediction N(x) (no ground truth is needed).

Panel (each tile the crop's size, a label strip above it), two rows of four tiles:
  x | x* − x | G(x*) | G_adv(x*)
  N(x) | N(x*) | N(x*⊗G(x*)) | N(x*⊗G_adv(x*))
Depth tiles share one colour range; a missing network leaves its tiles grey.
"""

import argparse
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from mde_adv import attacks, models, variables_io
from mde_adv.data.transforms import centre_crop, resize_rgb
from mde_adv.evaluation.methods import network_functions
from mde_adv.normalization import EPS_SPACES, IMAGENET_STD, denormalize, normalize

DEFAULT_NETWORKS = "{workdir}/networks/{name}"
PANEL_NETWORKS = ("N", "G", "G_adv")
LABEL_HEIGHT = 14
PANEL_COLUMNS = 4
PANEL_ROWS = 2
_GREY = (128, 128, 128)

HW = tuple[int, int]


def read_run_config(workdir: pathlib.Path) -> dict[str, Any]:
    """RUN_DIR/config.json as a dict ({} where the file is absent)."""
    path = workdir / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def transform_sizes(
    run_config: Mapping, resize_hw: HW | None, crop_hw: HW | None, workdir
) -> tuple[HW, HW]:
    """(resize_hw, crop_hw): the given sizes, else the run's data config."""
    data = run_config.get("data", {}).get("pipeline", {})
    sizes = []
    for name, given in (("resize_hw", resize_hw), ("crop_hw", crop_hw)):
        value = given if given is not None else data.get(name)
        if value is None:
            raise ValueError(
                f"{workdir / 'config.json'}: no field data.pipeline.{name}; "
                "pass --resize and --crop"
            )
        sizes.append((int(value[0]), int(value[1])))
    return sizes[0], sizes[1]


def load_image(path: pathlib.Path, resize_hw: HW, crop_hw: HW) -> np.ndarray:
    """f32[1, *crop_hw, 3] normalised: the test transform of an RGB image file."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
    except OSError as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err
    if crop_hw[0] > resize_hw[0] or crop_hw[1] > resize_hw[1]:
        raise ValueError(f"crop {crop_hw} is larger than the resize {resize_hw}")
    rgb = centre_crop(resize_rgb(rgb, resize_hw), crop_hw)
    return normalize(rgb.astype(np.float32) / np.float32(255.0)).astype(np.float32)[None]


def load_network(path: pathlib.Path, name: str, run_config: Mapping) -> tuple[Any, Any]:
    """(model, variables) of network `name` ('N...' depth, 'G...' saliency) saved at path."""
    variables, metadata = variables_io.load_variables(path)
    section = "depth_net" if name.startswith("N") else "saliency_net"
    if isinstance(metadata.get("model"), Mapping):
        model_config = metadata["model"]
    elif "encoder" in metadata:
        model_config = metadata
    elif section in run_config:
        model_config = run_config[section]
    else:
        raise ValueError(
            f"{path}: metadata has no 'model' or 'encoder' and config.json has no "
            f"{section!r} section"
        )
    build = models.depth_net if section == "depth_net" else models.saliency_net
    return build(model_config), variables


@jax.jit
def _panel_arrays(fns, x, x_adv):
    out = {"N(x)": fns["N"](x), "N(x*)": fns["N"](x_adv)}
    for mask in ("G", "G_adv"):
        if mask in fns:
            saliency = fns[mask](x_adv)
            out[f"{mask}(x*)"] = saliency
            out[f"N(x*⊗{mask}(x*))"] = fns["N"](x_adv * saliency)
    return out


def attack_image(
    image_path: str | pathlib.Path,
    workdir: str | pathlib.Path,
    *,
    eps: float = 0.1,
    steps: int = 10,
    eps_space: str = "normalised",
    alpha: float = 1.0,
    networks_pattern: str = DEFAULT_NETWORKS,
    resize_hw: HW | None = None,
    crop_hw: HW | None = None,
) -> dict[str, np.ndarray]:
    """Attacks one image with the run's N; returns {'x', 'perturbation' (x* − x in ε-space
    units), 'N(x)', 'N(x*)', and for each of G, G_adv found: '<G>(x*)', 'N(x*⊗<G>(x*))'},
    arrays without the batch axis (depth in metres at half the crop's resolution)."""
    if eps_space not in EPS_SPACES:
        raise ValueError(f"eps_space {eps_space!r} is unknown; expected one of {EPS_SPACES}")
    workdir = pathlib.Path(workdir)
    run_config = read_run_config(workdir)
    resize_hw, crop_hw = transform_sizes(run_config, resize_hw, crop_hw, workdir)
    x = jnp.asarray(load_image(pathlib.Path(image_path), resize_hw, crop_hw))
    networks = {}
    for name in PANEL_NETWORKS:
        given = run_config.get("networks", {}).get(name)
        path = pathlib.Path(given or networks_pattern.format(workdir=workdir, name=name))
        if path.exists():
            networks[name] = load_network(path, name, run_config)
        elif name == "N":
            raise FileNotFoundError(f"no checkpoint of N at {path}")
    fns = network_functions(networks)
    config = attacks.AttackConfig(
        method="ifgsm", space=eps_space, alpha=alpha, t_max=steps, target="clean_prediction"
    )
    x_adv = attacks.attack(fns["N"], x, eps=eps, steps=steps, config=config)
    delta = x_adv - x
    arrays = {
        "x": x,
        "perturbation": delta * IMAGENET_STD if eps_space == "pixel" else delta,
        **_panel_arrays(fns, x, x_adv),
    }
    return {name: np.asarray(value)[0] for name, value in arrays.items()}


def _colourise(values: np.ndarray, low: float, high: float, cmap: str, hw: HW) -> Image.Image:
    scaled = (np.squeeze(values, -1) - low) / max(high - low, 1e-12)
    rgb = matplotlib.colormaps[cmap](np.clip(scaled, 0, 1))[..., :3]
    image = Image.fromarray((255 * rgb).astype(np.uint8))
    return image.resize(hw[::-1], Image.Resampling.NEAREST)


def render_panel(arrays: Mapping[str, np.ndarray], out: str | pathlib.Path) -> pathlib.Path:
    """Writes the panel PNG of `attack_image`'s arrays: width 4·W, height 2·(H + 14)."""
    hw = arrays["x"].shape[:2]
    pixels = np.clip(denormalize(arrays["x"]), 0, 1)
    delta = arrays["perturbation"]
    delta_scale = 2 * float(np.abs(delta).max()) or 1.0
    depth_names = ("N(x)", "N(x*)", "N(x*⊗G(x*))", "N(x*⊗G_adv(x*))")
    depths = [arrays[n] for n in depth_names if n in arrays]
    low, high = min(float(d.min()) for d in depths), max(float(d.max()) for d in depths)
    tiles: dict[str, Image.Image] = {
        "x": Image.fromarray((255 * pixels).astype(np.uint8)),
        "x* − x": Image.fromarray(
            (255 * np.clip(delta / delta_scale + 0.5, 0, 1)).astype(np.uint8)
        ),
    }
    for name in ("G(x*)", "G_adv(x*)"):
        if name in arrays:
            tiles[name] = _colourise(arrays[name], 0.0, 1.0, "gray", hw)
    for name in depth_names:
        if name in arrays:
            tiles[name] = _colourise(arrays[name], low, high, "viridis", hw)
    layout = ("x", "x* − x", "G(x*)", "G_adv(x*)", *depth_names)
    height, width = hw
    panel = Image.new("RGB", (PANEL_COLUMNS * width, PANEL_ROWS * (height + LABEL_HEIGHT)), "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), LABEL_HEIGHT - 4)
    for index, name in enumerate(layout):
        row, column = divmod(index, PANEL_COLUMNS)
        left, top = column * width, row * (height + LABEL_HEIGHT)
        label = name if name in tiles else f"{name}: n/a"
        draw.text((left + 2, top + 1), label, fill="black", font=font)
        tile = tiles.get(name, Image.new("RGB", (width, height), _GREY))
        panel.paste(tile, (left, top + LABEL_HEIGHT))
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    panel.save(out)
    return out


def _pair(values: Sequence[int] | None) -> HW | None:
    return None if values is None else (values[0], values[1])


def main(argv: Sequence[str] | None = None) -> pathlib.Path:
    """The command line described in the module docstring; returns the panel's path."""
    parser = argparse.ArgumentParser(prog="python -m mde_adv.attack_image", description=__doc__)
    parser.add_argument("--image", required=True, help="an RGB image file")
    parser.add_argument("--workdir", required=True, help="the run's directory")
    parser.add_argument("--out", required=True, help="the panel PNG to write")
    parser.add_argument("--eps", type=float, default=0.1, help="ℓ∞ radius in --eps-space units")
    parser.add_argument("--steps", type=int, default=10, help="IFGSM iterations T")
    parser.add_argument("--eps-space", default="normalised", choices=EPS_SPACES)
    parser.add_argument("--alpha", type=float, default=1.0, help="step size (paper: 1)")
    parser.add_argument("--networks", default=DEFAULT_NETWORKS, help="checkpoint path pattern")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"))
    args = parser.parse_args(argv)
    arrays = attack_image(
        args.image,
        args.workdir,
        eps=args.eps,
        steps=args.steps,
        eps_space=args.eps_space,
        alpha=args.alpha,
        networks_pattern=args.networks,
        resize_hw=_pair(args.resize),
        crop_hw=_pair(args.crop),
    )
    path = render_panel(arrays, args.out)
    print(
        f"IFGSM ε={args.eps:g} ({args.eps_space}) α={args.alpha:g} T={args.steps}: mean depth "
        + ", ".join(f"{n} {arrays[n].mean():.3f} m" for n in arrays if n.startswith("N("))
        + f"; panel {path}"
    )
    return path


if __name__ == "__main__":
    main()
