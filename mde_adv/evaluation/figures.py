"""The report's PNG figures, drawn with matplotlib's object API (no pyplot state).

Fig. 4: RMSE vs ε (FGSM); Fig. 5: RMSE vs IFGSM iterations; both from the aggregated rows,
with the paper's values where its tables give them. Fig. 6: depth maps under attack;
Fig. 7: input, perturbation, saliency maps and their changes (one colour range shared by
the four maps, another by the two differences, as in the paper).
"""

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mde_adv import paths

DPI = 100


def plot_curves(
    summary: Sequence[Mapping],
    table: str,
    x_field: str,
    x_label: str,
    paper_points: Mapping[str, Sequence[tuple[float, float]]],
    path: paths.Path,
) -> paths.Path:
    """RMSE of each method of `table` against the rows' `x_field` ('eps' or 'steps')."""
    figure = Figure(figsize=(5, 3.5), dpi=DPI)
    axes = figure.subplots()
    methods = list(dict.fromkeys(row["method"] for row in summary if row["table"] == table))
    for method in methods:
        points = sorted(
            (row[x_field], row["rmse"])
            for row in summary
            if row["table"] == table and row["method"] == method
        )
        line = axes.plot(*zip(*points, strict=True), marker="o", label=f"{method} (this run)")
        if method in paper_points:
            xs, ys = zip(*paper_points[method], strict=True)
            axes.plot(
                xs, ys, "x", color=line[0].get_color(), markersize=9, label=f"{method} (paper)"
            )
    axes.set_xlabel(x_label)
    axes.set_ylabel("RMSE (m)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return _save(figure, path)


def _save(figure: Figure, path: paths.PathLike) -> paths.Path:
    """Writes `figure` to `path` (format from its suffix) whole or not at all."""
    path = paths.as_path(path)
    with paths.atomic_open(path, "wb") as file:
        figure.savefig(file, format=path.suffix.removeprefix(".") or "png")
    return path


def _show(axes, image, title: str, **kwargs) -> None:
    axes.imshow(np.squeeze(image), **kwargs)
    axes.set_title(title, fontsize=7)
    axes.set_axis_off()


def _grid(rows: int, columns: int):
    figure = Figure(figsize=(1.6 * columns, 1.4 * rows), dpi=DPI)
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    return figure, axes


def plot_depth_maps(arrays: Mapping[str, np.ndarray], path: paths.Path) -> paths.Path:
    """Fig. 6: x, N(x), the methods' depth under attack and the ground truth, one row per
    image; depth colours share the ground truth's range in each row."""
    depth_keys = [k for k in arrays if k.startswith("depth:")]
    images = arrays["image"].shape[0]
    figure, axes = _grid(images, len(depth_keys) + 2)
    for i in range(images):
        truth = arrays["ground_truth"][i]
        low, high = np.nanmin(truth), np.nanmax(truth)
        _show(axes[i, 0], arrays["image"][i], "x")
        for j, key in enumerate(depth_keys, 1):
            _show(axes[i, j], arrays[key][i], key.removeprefix("depth:"), vmin=low, vmax=high)
        _show(axes[i, -1], truth, "ground truth", vmin=low, vmax=high)
    figure.tight_layout()
    return _save(figure, path)


def plot_saliency_maps(arrays: Mapping[str, np.ndarray], path: paths.Path) -> paths.Path:
    """Fig. 7: x, x* − x, G(x), G(x*), G_adv(x), G_adv(x*), |G(x) − G(x*)|,
    |G_adv(x) − G_adv(x*)| (those the networks allow), one row per image. Masks on the fixed
    scale [0, 1] (a dim mask looks dim) with each panel's mean in its title; the differences
    share one scale whose maximum the titles give."""
    nets = [k[5:-3] for k in arrays if k.startswith("mask:") and k.endswith("(x)")]
    masks = [f"mask:{n}({s})" for n in nets for s in ("x", "x*")]
    differences = {n: np.abs(arrays[f"mask:{n}(x)"] - arrays[f"mask:{n}(x*)"]) for n in nets}
    difference_max = max((d.max() for d in differences.values()), default=1.0) or 1.0
    images = arrays["image"].shape[0]
    figure, axes = _grid(images, 2 + len(masks) + len(differences))
    for i in range(images):
        _show(axes[i, 0], arrays["image"][i], "x")
        delta = arrays["perturbation"][i]
        scale = 2 * np.abs(delta).max() or 1.0
        _show(axes[i, 1], np.clip(delta / scale + 0.5, 0, 1), "x* − x")
        for j, key in enumerate(masks, 2):
            title = f"{key.removeprefix('mask:')} μ={arrays[key][i].mean():.2f}"
            _show(axes[i, j], arrays[key][i], title, vmin=0.0, vmax=1.0)
        for j, (name, difference) in enumerate(differences.items(), 2 + len(masks)):
            title = f"|{name}(x) − {name}(x*)| ≤{difference_max:.2f}"
            _show(axes[i, j], difference[i], title, vmin=0, vmax=difference_max, cmap="magma")
    figure.tight_layout()
    return _save(figure, path)
