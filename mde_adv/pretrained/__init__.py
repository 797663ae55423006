"""The trained N and G of the default study, shipped with the package (like the paper's N and
G, which come from its authors' earlier works).

`default/N`, `default/G` (and `default/G_drn_d_38`, `default/G_drn_d_54`, the starts of Table
4's G_adv): variables_io checkpoints trained by configs/default_networks.py
(`python -m mde_adv.main --config configs/default_networks.py --workdir W`, then
`python -m mde_adv.pretrained --workdir W` copies them here and writes `default/record.json`).
The record holds their clean scores on the whole test split and on the first
RECORD_IMAGES test images rendered directly (no dataset build), which the tests recompute.
"""

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from mde_adv.data.procedural_rooms import example_seed
from mde_adv.data.rooms import render_room
from mde_adv.data.transforms import TransformSizes, eval_transform
from mde_adv.evaluation import baselines

DEFAULT_DIR = pathlib.Path(__file__).resolve().parent / "default"
RECORD_FILE = "record.json"
RECORD_IMAGES = 16
NAMES = ("N", "G", "G_drn_d_38", "G_drn_d_54")  # N, G and the G of Table 4's deeper encoders
SALIENCY_ENCODERS = {"G": None, "G_drn_d_38": "drn_d_38", "G_drn_d_54": "drn_d_54"}


def path(name: str) -> pathlib.Path:
    """The shipped checkpoint of network `name` (one of NAMES)."""
    if name not in NAMES:
        raise ValueError(f"pretrained.path: unknown network {name!r}; shipped: {NAMES}")
    return DEFAULT_DIR / name


def record() -> dict[str, Any]:
    """The shipped networks' record.json (provenance and recorded clean scores)."""
    file = DEFAULT_DIR / RECORD_FILE
    if not file.is_file():
        raise FileNotFoundError(
            f"no {RECORD_FILE} in {DEFAULT_DIR}: the package lacks its networks"
        )
    return json.loads(file.read_text())


def record_images(
    height: int, width: int, sizes: TransformSizes, count: int = RECORD_IMAGES
) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` test images of procedural_rooms at height×width, rendered and
    test-transformed: normalised f32[count,*crop_hw,3] and depth f32[count,*crop_hw,1] (m)."""
    pairs = [
        eval_transform(*render_room(example_seed("test", i), height, width), sizes)
        for i in range(count)
    ]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def clean_scores(
    depth_model, depth_variables, saliency_model, saliency_variables, x, y, name: str = "G"
) -> dict:
    """Clean scores: N(x)'s and N(x⊗G(x))'s aggregate metrics, G's mask mean and share above
    0.5 (keys named with the saliency network's `name`), and the baselines, on images
    x f32[B,H,W,3] with depth y f32[B,H,W,1]."""
    depth = jax.jit(lambda v, z: depth_model.apply(v, z, train=False))
    mask = np.asarray(
        jax.jit(lambda v, z: saliency_model.apply(v, z, train=False))(saliency_variables, x)
    )
    return {
        "N(x)": baselines.aggregate(np.asarray(depth(depth_variables, x)), y),
        f"N(x⊗{name}(x))": baselines.aggregate(np.asarray(depth(depth_variables, x * mask)), y),
        f"{name}(x) mask mean": float(mask.mean()),
        f"{name}(x) mask above 0.5": float((mask > 0.5).mean()),
        **baselines.trivial_baselines(y),
    }


def saliency_config(config: Mapping[str, Any], name: str) -> dict:
    """G's network config with the encoder of shipped saliency network `name`."""
    encoder = SALIENCY_ENCODERS[name]
    return {**config, **({"encoder": encoder} if encoder else {})}
