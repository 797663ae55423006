"""The learning curves of a main-job run, beside the trivial baselines, as a table.

    python -m benchmarks.learning_curve --workdir runs/default_networks

A training stage with `train.<task>.eval_every > 0` logs clean test scores every few steps
(`<stage>/logs/metrics.jsonl`, `test_*`): N's RMSE and δ1, or N(x⊗G(x))'s and G's mask
statistics. This command lists them against images seen, with the constant and per-pixel
mean-map baselines of the same test split, and writes `<workdir>/learning_curve.md`.
"""

import argparse
import json
import pathlib

import numpy as np

from mde_adv.data import pipeline
from mde_adv.evaluation import baselines

STAGES = ("train_depth", "train_saliency", "train_saliency_adv", "train_depth_adv")


def curve(workdir: pathlib.Path, stage: str) -> list[dict]:
    log = workdir / stage / "logs" / "metrics.jsonl"
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return [r for r in rows if "test_rmse" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    args = parser.parse_args()
    config = json.loads((args.workdir / "config.json").read_text())
    values = dict(config["data"]["pipeline"])
    values["data_dir"] = values.get("data_dir") or str(args.workdir / "data")
    dc = pipeline.DataConfig.from_mapping(values)
    batches = pipeline.eval_batches(dc, process_index=0, process_count=1)
    targets = np.concatenate([b["depth"][b["valid"]] for b in batches])
    base = baselines.trivial_baselines(targets)
    prior = base["per-pixel mean map"]["rmse"]
    lines = [
        f"# Learning curves of {args.workdir} ({len(targets)} test images of {dc.name})",
        "",
        "Baselines: "
        + "; ".join(f"{n} RMSE {v['rmse']:.3f}, δ1 {v['delta1']:.3f}" for n, v in base.items()),
        "",
    ]
    for stage in STAGES:
        rows = curve(args.workdir, stage)
        if not rows:
            continue
        task = config["train"][stage.removeprefix("train_")]
        batch, masks = task["batch_size"], "test_mask_mean" in rows[0]
        lines += [
            f"## {stage}",
            "",
            "| step | images seen | RMSE | ×mean map | δ1 |"
            + (" mask mean | >0.5 |" if masks else ""),
            "|---:|---:|---:|---:|---:|" + ("---:|---:|" if masks else ""),
        ]
        for r in rows:
            cells = [r["step"], r["step"] * batch, f"{r['test_rmse']:.3f}"]
            cells += [f"{r['test_rmse'] / prior:.2f}", f"{r['test_delta1']:.3f}"]
            if masks:
                cells += [f"{r['test_mask_mean']:.3f}", f"{r['test_mask_above_half']:.3f}"]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        lines.append("")
    text = "\n".join(lines)
    (args.workdir / "learning_curve.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
