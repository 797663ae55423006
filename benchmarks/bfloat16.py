"""What bfloat16 compute does to a trained N: accuracy and attack strength against float32.

  python -m benchmarks.bfloat16 --config configs/default.py --workdir runs/default

Loads the run's trained N (float32 parameters), builds it twice, computing in float32 and in
bfloat16, and on the run's test split compares: the clean RMSE of each; how far the bfloat16
depth is from the float32 one; IFGSM-10 (ℓ∞, ε in normalised units, ℓ1 loss, α = 1) computed
through each, with its x* scored by the float32 N (attack strength of a bfloat16 attack) and
by the network it was computed on; and the share of pixels whose perturbation sign agrees.
Writes <out>/bfloat16_accuracy.md and .json. Throughput: `benchmarks.run --dtype bfloat16`.
"""

import argparse
import json
import pathlib
import runpy

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import machine
from mde_adv import attacks, experiment, metrics, models
from mde_adv.data import pipeline


def _rmse(pred, target) -> np.ndarray:
    return np.asarray(metrics.image_metrics(pred, target)["rmse"])


def _per_image_mean(values) -> np.ndarray:
    return np.asarray(jnp.mean(values.astype(jnp.float32), (1, 2, 3)))


def compare(apply: dict, x, y, eps: float) -> dict[str, np.ndarray]:
    """Per-image quantities for one batch; apply: dtype -> predict function (float32 output)."""
    config = attacks.AttackConfig(method="ifgsm", t_max=10)
    f32, bf16 = apply["float32"], apply["bfloat16"]
    d32, d16 = f32(x), bf16(x)
    adv32 = attacks.attack(f32, x, y, eps=eps, steps=10, config=config)
    adv16 = attacks.attack(bf16, x, y, eps=eps, steps=10, config=config)
    return {
        "clean RMSE, float32 N": _rmse(d32, y),
        "clean RMSE, bfloat16 N": _rmse(d16, y),
        "mean ∣d_bf16 − d_f32∣ / d_f32": _per_image_mean(jnp.abs(d16 - d32) / d32),
        "IFGSM x* through float32 N, RMSE of float32 N": _rmse(f32(adv32), y),
        "IFGSM x* through bfloat16 N, RMSE of float32 N": _rmse(f32(adv16), y),
        "IFGSM x* through bfloat16 N, RMSE of bfloat16 N": _rmse(bf16(adv16), y),
        "share of pixels whose δ sign agrees": _per_image_mean(
            jnp.sign(adv16 - x) == jnp.sign(adv32 - x)
        ),
    }


def measure(config, workdir: pathlib.Path, eps: float, max_images: int) -> dict:
    """Means over the first `max_images` test images of the quantities of `compare`."""
    hw = tuple(config.data.pipeline.crop_hw)
    variables = experiment.load_network(config, workdir, "N", "depth", hw)
    apply = {}
    for dtype in ("float32", "bfloat16"):
        net = models.depth_net({**config.depth_net, "dtype": dtype})
        fn = lambda v, z, net=net: net.apply(v, z, train=False).astype(jnp.float32)
        apply[dtype] = jax.tree_util.Partial(fn, variables)
    collected: dict[str, list] = {}
    images = 0
    for batch in pipeline.eval_batches(experiment.data_config(config, workdir, 8)):
        keep = np.asarray(batch["valid"])[: max(max_images - images, 0)]
        if not keep.any():
            break
        x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["depth"])
        for name, values in compare(apply, x, y, eps).items():
            collected.setdefault(name, []).append(values[: len(keep)][keep])
        images += int(keep.sum())
    means = {name: float(np.mean(np.concatenate(v))) for name, v in collected.items()}
    return {"images": images, "eps": eps, **means}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the run's configs/*.py file")
    parser.add_argument("--workdir", required=True, help="the run's workdir (N trained there)")
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    config = runpy.run_path(args.config)["get_config"]()
    result = measure(config, pathlib.Path(args.workdir), args.eps, args.images)
    lines = [
        f"## bfloat16 vs float32 compute, trained N of {args.workdir} ({args.config}), "
        f"{result['images']} test images, IFGSM-10 ε = {args.eps} (normalised)",
        "",
        "| quantity | value |",
        "|---|---:|",
        *(f"| {k} | {v:.4f} |" for k, v in result.items() if k not in ("images", "eps")),
    ]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine.write_atomically(out / "bfloat16_accuracy.json", json.dumps(result, indent=2))
    machine.write_atomically(out / "bfloat16_accuracy.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
