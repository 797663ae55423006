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

The panel is a figure at least 1,200 pixels wide, its title the settings (ε and its space,
α, T, the checkpoints):
  row 1: the input at its own resolution | x* − x amplified (scale in the title) |
         |N(x*) − N(x)| in metres (own colour bar) | G(x*) and G_adv(x*) with their mean
  row 2: N(x) | N(x*) | N(x*⊗G(x*)) | N(x*⊗G_adv(x*)), one shared colour bar in metres
A missing G or G_adv leaves its panels marked "not given".

Sizes: N's output is half its input; H and W of the crop must be multiples of 4 (for H or
W ≡ 2 (mod 4) N's output would be H//2 × W//2 where the authors' network gives
2·⌈H/4⌉ × 2·⌈W/4⌉, so such sizes are refused).
"""

import argparse
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from mde_adv import attacks, models, variables_io
from mde_adv.data.transforms import centre_crop, resize_rgb
from mde_adv.evaluation.methods import network_functions
from mde_adv.normalization import EPS_SPACES, IMAGENET_STD, normalize

DEFAULT_NETWORKS = "{workdir}/networks/{name}"
PANEL_NETWORKS = ("N", "G", "G_adv")
DEPTH_PANELS = ("N(x)", "N(x*)", "N(x*⊗G(x*))", "N(x*⊗G_adv(x*))")
MASK_PANELS = ("G(x*)", "G_adv(x*)")
FIGURE_SIZE_IN, FIGURE_DPI = (16.0, 7.5), 100  # 1,600 × 750 pixels
_KINDS = {"depth": ("N", "resnet"), "saliency": ("G", "drn")}

HW = tuple[int, int]


def read_run_config(workdir: pathlib.Path) -> dict[str, Any]:
    """RUN_DIR/config.json as a dict ({} where the file is absent); the folder must exist."""
    if not workdir.is_dir():
        raise FileNotFoundError(f"--workdir {workdir}: no such directory")
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
    """(resize_hw, crop_hw): the given sizes, else the run's data config. Crop sides must be
    multiples of 4 (see the module docstring)."""
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
    check_network_input(sizes[1], "--crop" if crop_hw is not None else "data.pipeline.crop_hw")
    return sizes[0], sizes[1]


def check_network_input(hw: HW, field: str) -> None:
    """ValueError naming `field` unless both sides of the network input are multiples of 4."""
    if hw[0] % 4 or hw[1] % 4:
        raise ValueError(
            f"{field} = {hw[0]}×{hw[1]}: N's input sides must be multiples of 4 (for a side "
            "≡ 2 mod 4 its output would be H//2 × W//2, the authors' network gives "
            f"2·⌈H/4⌉ × 2·⌈W/4⌉), e.g. {4 * (hw[0] // 4)}×{4 * (hw[1] // 4)}"
        )


def _rgb_uint8(image: Image.Image, path: pathlib.Path) -> np.ndarray:
    """uint8 [H, W, 3] of an image; 16-bit greyscale scaled by 255/65535 (PIL's own RGB
    conversion clips it, which turns almost every 16-bit image white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise ValueError(
                f"{path}: a {image.mode} image with values in [{values.min()}, {values.max()}] "
                "is not a 16-bit photo; give an 8-bit RGB (or 16-bit greyscale) image"
            )
        grey = np.round(values * (255.0 / 65535.0)).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "F":
        raise ValueError(f"{path}: a floating-point image (mode 'F') is not a photo")
    return np.asarray(image.convert("RGB"))


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """uint8 [H, W, 3] of an image file at its own resolution."""
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return _rgb_uint8(image, path)
    except OSError as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err


def load_image(path: pathlib.Path, resize_hw: HW, crop_hw: HW) -> np.ndarray:
    """f32[1, *crop_hw, 3] normalised: the test transform of an RGB image file."""
    rgb = read_rgb(path)
    if crop_hw[0] > resize_hw[0] or crop_hw[1] > resize_hw[1]:
        raise ValueError(f"crop {crop_hw} is larger than the resize {resize_hw}")
    rgb = centre_crop(resize_rgb(rgb, resize_hw), crop_hw)
    return normalize(rgb.astype(np.float32) / np.float32(255.0)).astype(np.float32)[None]


def _check_kind(path: pathlib.Path, name: str, metadata: Mapping, model_config: Mapping) -> None:
    """ValueError naming the path when a checkpoint holds another kind of network than `name`."""
    expected = "depth" if name.startswith("N") else "saliency"
    kind = metadata.get("model") if isinstance(metadata.get("model"), str) else None
    encoder = str(model_config.get("encoder", ""))
    if kind is None and encoder:
        kind = next((k for k, (_, prefix) in _KINDS.items() if encoder.startswith(prefix)), None)
    if kind is not None and kind != expected:
        raise ValueError(
            f"{path}: holds a {kind} network ({_KINDS[kind][0]}, encoder {encoder or '?'}), "
            f"but it is loaded as {name}, a {expected} network ({_KINDS[expected][1]}* encoder); "
            "check --networks or config.json 'networks'"
        )


def load_network(path: pathlib.Path, name: str, run_config: Mapping) -> tuple[Any, Any]:
    """(model, variables) of network `name` ('N...' depth, 'G...' saliency) saved at path."""
    variables, metadata = variables_io.load_variables(path)
    section = "depth_net" if name.startswith("N") else "saliency_net"
    if isinstance(metadata.get("model"), Mapping):
        model_config = metadata["model"]
    elif "encoder" in metadata:
        model_config = {k: v for k, v in metadata.items() if k in ("encoder", "width", "dtype")}
    elif section in run_config:
        model_config = run_config[section]
    else:
        raise ValueError(
            f"{path}: metadata has no 'model' or 'encoder' and config.json has no "
            f"{section!r} section"
        )
    _check_kind(path, name, metadata, model_config)
    build = models.depth_net if section == "depth_net" else models.saliency_net
    return build(model_config), variables


def network_paths(
    workdir: pathlib.Path, run_config: Mapping, networks_pattern: str
) -> dict[str, pathlib.Path]:
    """{name: checkpoint path} of N, G, G_adv: config.json 'networks', else the pattern."""
    if "{name}" not in networks_pattern:
        raise ValueError(
            f"--networks {networks_pattern!r} has no {{name}}: the pattern names one checkpoint "
            "per network, e.g. runs/x/networks/{name} (N, G, G_adv)"
        )
    paths = {}
    for name in PANEL_NETWORKS:
        given = run_config.get("networks", {}).get(name)
        paths[name] = pathlib.Path(given or networks_pattern.format(workdir=workdir, name=name))
    return paths


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
    """Attacks one image with the run's N; returns {'input' (uint8 [H0, W0, 3], the file at its
    own resolution), 'x', 'perturbation' (x* − x in ε-space units), 'N(x)', 'N(x*)', and for
    each of G, G_adv found: '<G>(x*)', 'N(x*⊗<G>(x*))'}, arrays without the batch axis (depth
    in metres at half the crop's resolution)."""
    if eps_space not in EPS_SPACES:
        raise ValueError(f"eps_space {eps_space!r} is unknown; expected one of {EPS_SPACES}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"--steps must be an integer >= 1 (IFGSM iterations T), got {steps!r}")
    if not 0 <= eps < float("inf"):
        raise ValueError(f"--eps must be finite and >= 0, got {eps!r}")
    if not 0 < alpha < float("inf"):
        raise ValueError(f"--alpha must be finite and > 0, got {alpha!r}")
    workdir = pathlib.Path(workdir)
    run_config = read_run_config(workdir)
    resize_hw, crop_hw = transform_sizes(run_config, resize_hw, crop_hw, workdir)
    paths = network_paths(workdir, run_config, networks_pattern)
    image_path = pathlib.Path(image_path)
    x = jnp.asarray(load_image(image_path, resize_hw, crop_hw))
    networks = {}
    for name, path in paths.items():
        if path.exists():
            networks[name] = load_network(path, name, run_config)
        elif name == "N":
            raise FileNotFoundError(f"no checkpoint of N at {path}")
    fns = network_functions(networks)
    config = attacks.AttackConfig(
        method="ifgsm", space=eps_space, alpha=alpha, t_max=int(steps), target="clean_prediction"
    )
    x_adv = attacks.attack(fns["N"], x, eps=eps, steps=int(steps), config=config)
    delta = x_adv - x
    arrays = {
        "x": x,
        "perturbation": delta * IMAGENET_STD if eps_space == "pixel" else delta,
        **_panel_arrays(fns, x, x_adv),
    }
    out = {name: np.asarray(value)[0] for name, value in arrays.items()}
    return {"input": read_rgb(image_path), **out}


def amplification(perturbation: np.ndarray) -> float:
    """The factor k that maps max |x* − x| to 0.5: the panel shows 0.5 + k·(x* − x)."""
    peak = float(np.abs(perturbation).max())
    return 0.5 / peak if peak > 0 else 1.0


def panel_figure(arrays: Mapping[str, np.ndarray], title: str = "") -> Figure:
    """The figure of `attack_image`'s arrays (layout in the module docstring); each image axis
    holds exactly the array its title names."""
    figure = Figure(figsize=FIGURE_SIZE_IN, dpi=FIGURE_DPI)
    axes = figure.subplots(2, 5, width_ratios=(1, 1, 1, 1, 0.08))
    for axis in axes.flat:
        axis.set_axis_off()
    top, bottom = axes[0], axes[1]
    top[0].imshow(arrays["input"])
    height, width = arrays["input"].shape[:2]
    top[0].set_title(f"input x ({width}×{height} px)")
    k = amplification(arrays["perturbation"])
    top[1].imshow(np.clip(0.5 + k * arrays["perturbation"], 0, 1))
    peak = float(np.abs(arrays["perturbation"]).max())
    top[1].set_title(f"0.5 + {k:.3g}·(x* − x), max |x* − x| = {peak:.3g}")
    error = np.abs(arrays["N(x*)"] - arrays["N(x)"])[..., 0]
    shown = top[2].imshow(error, cmap="magma", vmin=0)
    top[2].set_title(f"|N(x*) − N(x)|, mean {error.mean():.3f} m")
    figure.colorbar(shown, ax=top[2], fraction=0.046, label="m")
    for axis, name in zip(top[3:5], MASK_PANELS, strict=True):
        axis.set_axis_off()
        if name in arrays:
            axis.set_axis_on()
            axis.imshow(arrays[name][..., 0], cmap="gray", vmin=0, vmax=1)
            axis.set_title(f"{name}, mean {float(arrays[name].mean()):.3f}")
        else:
            axis.set_title(f"{name}: not given")
    depths = [arrays[name] for name in DEPTH_PANELS if name in arrays]
    low, high = min(float(d.min()) for d in depths), max(float(d.max()) for d in depths)
    for axis, name in zip(bottom[:4], DEPTH_PANELS, strict=True):
        if name in arrays:
            shown = axis.imshow(arrays[name][..., 0], cmap="viridis", vmin=low, vmax=high)
            axis.set_title(f"{name}, mean {float(arrays[name].mean()):.2f} m")
        else:
            axis.set_title(f"{name}: not given")
    bottom[4].set_axis_on()
    figure.colorbar(shown, cax=bottom[4], label="depth (m)")
    for axis in (*top[:3], *bottom[:4]):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def panel_title(
    eps: float, eps_space: str, alpha: float, steps: int, paths: Mapping[str, pathlib.Path]
) -> str:
    """The settings line of the figure: attack, ε and its space, α, T and the checkpoints."""
    found = ", ".join(f"{name}: {path}" for name, path in paths.items() if path.exists())
    return (
        f"x* = IFGSM(x; N), ℓ∞ ε = {eps:g} ({eps_space} space), α = {alpha:g}, T = {steps}, "
        f"target N(x)\n{found}"
    )


def render_panel(
    arrays: Mapping[str, np.ndarray], out: str | pathlib.Path, title: str = ""
) -> pathlib.Path:
    """Writes `panel_figure` as a PNG (1,600 × 750 pixels) at `out`."""
    figure = panel_figure(arrays, title)
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=FIGURE_DPI)
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
    try:
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
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    workdir = pathlib.Path(args.workdir)
    paths = network_paths(workdir, read_run_config(workdir), args.networks)
    title = panel_title(args.eps, args.eps_space, args.alpha, args.steps, paths)
    path = render_panel(arrays, args.out, title)
    print(
        f"IFGSM ε={args.eps:g} ({args.eps_space}) α={args.alpha:g} T={args.steps}: mean depth "
        + ", ".join(f"{n} {arrays[n].mean():.3f} m" for n in arrays if n.startswith("N("))
        + f"; panel {path}"
    )
    return path


if __name__ == "__main__":
    main()
