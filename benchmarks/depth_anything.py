"""Depth Anything V2 as N: forward and IFGSM-10, JAX against eager PyTorch (`transformers`).

  python -m benchmarks.depth_anything --size vits --batch 1 --repeats 1

Both sides compute the same function with the same random weights: a `transformers`
DepthAnythingForDepthEstimation (metric head, max depth 20) built from a config, its
state_dict imported by `mde_adv.import_depth_anything`. N's contract on both: a batch of
228×304 normalised images resized bilinearly (half-pixel) to the network size (518×686 by
default, the NYU config's), the output resized align-corners to 114×152. JAX runs the
library's own functions (`models.depth_net`, `attacks.attack_traced`, compiled ahead of time,
compile seconds apart); PyTorch runs `benchmarks.torch_work.ifgsm` in eager mode. Medians
after one warm-up call; the maximal |JAX − PyTorch| of N's output relative to its scale is
reported beside. Writes <out>/depth_anything_<size>_b<batch>.{md,json}.
"""

import argparse
import json
import pathlib
import time

import jax
import numpy as np

from benchmarks import jax_work, machine, run

ROWS = ("forward", "IFGSM-10")


def torch_model(size: str):
    """A random-weight transformers DepthAnythingForDepthEstimation of our `size` (metric)."""
    import torch
    import transformers

    from mde_adv.models.depth_anything import SIZES

    s = SIZES[size]
    backbone = transformers.Dinov2Config(
        hidden_size=s.embed_dim,
        num_hidden_layers=s.depth,
        num_attention_heads=s.num_heads,
        image_size=14 * s.pos_grid,
        patch_size=14,
        out_indices=[block + 1 for block in s.out_blocks],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=s.embed_dim,
        neck_hidden_sizes=list(s.out_channels),
        fusion_hidden_size=s.features,
        depth_estimation_type="metric",
        max_depth=20,
    )
    torch.manual_seed(0)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def measure(size: str, batch: int, image_hw, input_hw, repeats: int, warm_up: bool = True) -> dict:
    import torch

    from benchmarks import torch_work
    from mde_adv import import_depth_anything, models

    model = torch_model(size)
    n = models.depth_net(
        {"encoder": f"dav2_{size}", "kind": "metric", "max_depth": 20.0, "input_hw": input_hw}
    )
    template = import_depth_anything.variables_template(n)
    state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
    variables = import_depth_anything.state_dict_to_variables(state_dict, template)
    x, y = jax_work.batch(batch, image_hw)
    xt, yt = torch_work.inputs(x, y)
    out_hw = (image_hw[0] // 2, image_hw[1] // 2)

    def predict(z):
        z = torch.nn.functional.interpolate(z, size=input_hw, mode="bilinear", align_corners=False)
        depth = model(pixel_values=z).predicted_depth[:, None]
        return torch.nn.functional.interpolate(
            depth, size=out_hw, mode="bilinear", align_corners=True
        )

    forward = jax_work.compile_job(jax.jit(lambda v, z: n.apply(v, z, train=False)), variables, x)
    attack = jax_work.attack_job(n, variables, x, y, "ifgsm", 10)
    with torch.no_grad():
        reference = predict(xt).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(forward.run(forward.prepare()))
    parity = float(np.max(np.abs(got - reference)) / np.max(np.abs(reference)))
    eps, steps = torch.full((batch,), 0.1), torch.full((batch,), 10)
    torch_runs = {
        "forward": lambda: torch.no_grad()(predict)(xt),
        "IFGSM-10": lambda: torch_work.ifgsm(predict, xt, yt, eps, steps),
    }
    rows = []
    for name, job in zip(ROWS, (forward, attack), strict=True):
        jax_s = run.median_seconds(job.run, job.prepare, repeats, warm_up)
        torch_run = torch_runs[name]
        call = lambda _, torch_run=torch_run: torch_run()
        torch_s = run.median_seconds(call, lambda: None, repeats, warm_up)
        rows.append(
            {
                "work": name,
                "jax_s": jax_s,
                "torch_s": torch_s,
                "speed_up": torch_s / jax_s,
                "compile_s": job.compile_s,
                "gflop_per_call": None if job.flops is None else job.flops / 1e9,
            }
        )
    return {
        "size": size,
        "batch": batch,
        "image_hw": list(image_hw),
        "input_hw": list(input_hw),
        "repeats": repeats,
        "warm_up": warm_up,
        "forward_parity_rel": parity,
        "machine": machine.description(),
        "torch": torch.__version__,
        "rows": rows,
    }


def to_markdown(result: dict) -> str:
    lines = [
        f"Depth Anything V2 {result['size']} (metric head) as N, batch {result['batch']}, "
        f"{'×'.join(map(str, result['image_hw']))} images resized to "
        f"{'×'.join(map(str, result['input_hw']))}; {result['machine']}; torch "
        f"{result['torch']} eager; median of {result['repeats']}"
        f"{' after a warm-up' if result['warm_up'] else ' (no warm-up; JAX compiled ahead)'}. "
        f"JAX vs PyTorch output: max |Δ| / max |out| = {result['forward_parity_rel']:.1e}.",
        "",
        "| work | JAX s | PyTorch s | PyTorch / JAX | compile s | XLA GFLOP/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        gflop = "" if r["gflop_per_call"] is None else f"{r['gflop_per_call']:.1f}"
        lines.append(
            f"| {r['work']} | {r['jax_s']:.3g} | {r['torch_s']:.3g} | {r['speed_up']:.2f} | "
            f"{r['compile_s']:.1f} | {gflop} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="vits", choices=["tiny", "vits", "vitb", "vitl"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--image-hw", type=int, nargs=2, default=(228, 304))
    parser.add_argument("--input-hw", type=int, nargs=2, default=(518, 686))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-warm-up", action="store_true", help="time the first calls")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = measure(
        args.size,
        args.batch,
        tuple(args.image_hw),
        tuple(args.input_hw),
        args.repeats,
        not args.no_warm_up,
    )
    result["total_s"] = round(time.perf_counter() - start, 1)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"depth_anything_{args.size}_b{args.batch}"
    machine.write_atomically(stem.with_suffix(".json"), json.dumps(result, indent=1))
    machine.write_atomically(stem.with_suffix(".md"), to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
