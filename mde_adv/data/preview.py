"""Writes a PNG grid of procedural-room samples (RGB and colour-mapped depth).

python -m mde_adv.data.preview --out grid.png [--n 8] [--resolution small] [--first-seed 0]

Renders directly with `rooms.render_room` (train seeds first_seed, first_seed + 1, …), so it
shows exactly what the `procedural_rooms` builder stores, without building the dataset.
"""

import argparse
import pathlib

import numpy as np
from matplotlib.figure import Figure

from mde_adv.data.room_scene import MAX_ROOM_DIAGONAL_M
from mde_adv.data.rooms import render_room

RESOLUTIONS = {"tiny": (48, 64), "small": (240, 320), "full": (480, 640)}


def write_preview(out: pathlib.Path, n: int, resolution: str, first_seed: int = 0) -> None:
    """Renders `n` rooms at `resolution` and saves an n/2 × 4 grid (RGB, depth, RGB, depth)."""
    if resolution not in RESOLUTIONS or n < 1:
        raise ValueError(
            f"preview: need n ≥ 1 and resolution in {sorted(RESOLUTIONS)}, got {n=}, {resolution=}"
        )
    height, width = RESOLUTIONS[resolution]
    rows = (n + 1) // 2
    figure = Figure(figsize=(12, 2.4 * rows))
    axes = figure.subplots(rows, 4, squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for i in range(n):
        rgb, depth = render_room(first_seed + i, height, width)
        left = axes[i // 2, 2 * (i % 2)]
        left.imshow(rgb)
        left.set_title(f"seed {first_seed + i}", fontsize=8)
        shown = axes[i // 2, 2 * (i % 2) + 1].imshow(
            depth, cmap="turbo", vmin=0.0, vmax=MAX_ROOM_DIAGONAL_M
        )
        axes[i // 2, 2 * (i % 2) + 1].set_title(
            f"depth {np.min(depth):.2f}–{np.max(depth):.2f} m", fontsize=8
        )
    figure.colorbar(shown, ax=axes, fraction=0.02, label="depth (m)")
    figure.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="PNG file to write")
    parser.add_argument("--n", type=int, default=8, help="number of samples")
    parser.add_argument("--resolution", default="small", choices=sorted(RESOLUTIONS))
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_preview(args.out, args.n, args.resolution, args.first_seed)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
