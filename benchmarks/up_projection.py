"""The up-projections' convolutions of a resized map, direct vs factored, against the cost model.

  python -m benchmarks.up_projection                 # every up-projection of N and G, paper size
  python -m benchmarks.up_projection --batch 4

For each up-projection of N (ResNet-50) and G (DRN-D-22) at 228×304: conv1 and conv2 of the
resized input (`models.resize_conv`) computed directly (resize, then two 5×5 convolutions) and
factored (mixing at the input resolution, then two interpolation contractions): forward, and
forward + gradients w.r.t. the input and both kernels (a train step's work), as the median of
`--repeats` runs after a warm-up, beside the form `factored_is_cheaper` picks in inference
(attacks) and in training (kernel gradients too). Writes
<out>/up_projection_b<batch>.md and .json.
"""

import argparse
import json
import pathlib
import platform

import jax
import jax.numpy as jnp

from benchmarks.run import median_seconds
from mde_adv.models import up_projection

# (network, module, input h×w, output h×w, input channels, output channels of each conv)
PAPER_UP_PROJECTIONS = (
    ("N", "D/up1", (8, 10), (15, 19), 1024, 512),
    ("N", "D/up2", (15, 19), (29, 38), 512, 256),
    ("N", "D/up3", (29, 38), (57, 76), 256, 128),
    ("N", "D/up4", (57, 76), (114, 152), 128, 64),
    ("N", "MFF/up1", (57, 76), (114, 152), 256, 16),
    ("N", "MFF/up2", (29, 38), (114, 152), 512, 16),
    ("N", "MFF/up3", (15, 19), (114, 152), 1024, 16),
    ("N", "MFF/up4", (8, 10), (114, 152), 2048, 16),
    ("G", "D/up1", (29, 38), (57, 76), 512, 256),
    ("G", "D/up2", (57, 76), (114, 152), 256, 128),
    ("G", "D/up3", (114, 152), (228, 304), 128, 64),
)


def _median_seconds(fn, *args, repeats: int) -> float:
    """Median wall time of the jitted fn(*args) after a warm-up call (`run.median_seconds`)."""
    return median_seconds(lambda a: jax.block_until_ready(fn(*a)), lambda: args, repeats)


def measure(batch: int, repeats: int) -> list[dict]:
    rows = []
    for net, module, in_hw, out_hw, cin, cout in PAPER_UP_PROJECTIONS:
        keys = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(keys[0], (batch, *in_hw, cin))
        kernels = [0.02 * jax.random.normal(k, (5, 5, cin, cout)) for k in keys[1:]]
        row = dict(network=net, module=module, input=in_hw, output=out_hw, cin=cin, cout=cout)
        for mode, gradient in (("inference", False), ("train", True)):
            cheaper = up_projection.factored_is_cheaper(
                in_hw, out_hw, 5, cin, 2 * cout, kernel_gradient=gradient
            )
            row[f"picked_{mode}"] = "factored" if cheaper else "direct"
        for method in ("direct", "factored"):

            def convs(x, kernels, method=method, out_hw=out_hw):
                return up_projection.resize_conv(x, kernels, out_hw, method=method)

            def objective(x, kernels, convs=convs):
                return sum(jnp.sum(jnp.sin(y)) for y in convs(x, kernels))

            forward = jax.jit(convs)
            gradients = jax.jit(jax.grad(objective, argnums=(0, 1)))
            row[f"{method}_forward_s"] = _median_seconds(forward, x, kernels, repeats=repeats)
            row[f"{method}_gradients_s"] = _median_seconds(gradients, x, kernels, repeats=repeats)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| net | module | h×w → H×W | I → 2×O | direct fwd s | factored fwd s | direct fwd+grad s "
        "| factored fwd+grad s | model picks (inference) | model picks (train) |",
        "|---|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        (h, w), (big_h, big_w) = r["input"], r["output"]
        lines.append(
            f"| {r['network']} | {r['module']} | {h}×{w} → {big_h}×{big_w} "
            f"| {r['cin']} → 2×{r['cout']} | {r['direct_forward_s']:.4f} "
            f"| {r['factored_forward_s']:.4f} | {r['direct_gradients_s']:.4f} "
            f"| {r['factored_gradients_s']:.4f} | {r['picked_inference']} "
            f"| {r['picked_train']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error(f"--batch and --repeats must be >= 1, got {args.batch}, {args.repeats}")
    from benchmarks import machine

    rows = measure(args.batch, args.repeats)
    header = (
        f"## Up-projection convolutions at the paper size, batch {args.batch}: "
        f"{machine.description()}; median of {args.repeats} after warm-up"
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"up_projection_b{args.batch}"
    result = dict(machine=machine.description(), rows=rows, python=platform.python_version())
    machine.write_atomically(out / f"{stem}.json", json.dumps(result, indent=2))
    machine.write_atomically(out / f"{stem}.md", to_markdown(rows, header))
    print(to_markdown(rows, header))


if __name__ == "__main__":
    main()
