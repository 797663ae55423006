"""Copies the N and G (and Table 4's G) a configs/default_networks.py run trained into the
package, with their record:
`python -m mde_adv.pretrained --workdir runs/default_networks [--out DIR]`.

The record (record.json) states the config, the training stages' steps and times, the clean
scores on the whole test split (from the run's learning curve) and on the first
RECORD_IMAGES rendered test images (recomputed here, and again by the tests).
"""

import argparse
import json
import os
import pathlib
import shutil
import sys

import jax

from mde_adv import models, pretrained, variables_io


def _last_test_scores(workdir: pathlib.Path, stage: str, done: dict) -> dict:
    """The saved network's test scores: after precise BN when the stage applied it (`done`,
    its DONE.json), else the learning curve's last row."""
    precise = done.get("precise_bn", {})
    if "test_after" in precise:
        scores = {f"test_{k}": v for k, v in precise["test_after"].items()}
        return {"step": done["steps"], "precise_bn_batches": precise["batches"], **scores}
    log = workdir / stage / "logs" / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    tests = [r for r in rows if any(k.startswith("test_") for k in r)]
    return tests[-1] if tests else {}


def export(workdir: pathlib.Path, out: pathlib.Path) -> dict:
    """Checks and copies workdir/networks/<name> of N, G and the Table 4 G the run trained
    (pretrained.NAMES) to out/<name> and writes out/record.json (its 'networks')."""
    config_file = workdir / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} missing: is {workdir} a main-job workdir?")
    config = json.loads(config_file.read_text())
    done = {}
    # N and G, and Table 4's G where the run trained them (configs/default_networks.py does)
    stages = {
        name: f"train_saliency{_suffix(name)}"
        for name in pretrained.SALIENCY_ENCODERS
        if name == "G" or (workdir / f"train_saliency{_suffix(name)}").exists()
    }
    names = ("N", *stages)
    for stage in ("data", "train_depth", *stages.values()):
        marker = workdir / stage / "DONE.json"
        if not marker.is_file():
            raise FileNotFoundError(f"{marker} missing: stage {stage} has not finished")
        done[stage] = json.loads(marker.read_text())
    depth_model = models.depth_net(config["depth_net"])
    variables = {}
    for name in names:
        variables[name], _ = variables_io.load_variables(workdir / "networks" / name)
    data = config["data"]["pipeline"]
    height, width = _render_size(data["name"])
    sizes = _sizes(data)
    x, y = pretrained.record_images(height, width, sizes)
    scores = {}
    for name in stages:
        model = models.saliency_net(pretrained.saliency_config(config["saliency_net"], name))
        scores.update(
            pretrained.clean_scores(depth_model, variables["N"], model, variables[name], x, y, name)
        )
    record = {
        "config": "configs/default_networks.py",
        "command": "python -m mde_adv.main --config configs/default_networks.py "
        "--workdir runs/default_networks && python -m mde_adv.pretrained "
        "--workdir runs/default_networks",
        "dataset": data["name"],
        "render_hw": [height, width],
        "sizes": {"resize_hw": sizes.resize_hw, "crop_hw": sizes.crop_hw},
        "depth_net": config["depth_net"],
        "saliency_net": config["saliency_net"],
        "train": {s: {k: done[s].get(k) for k in ("steps", "seconds", "timing")} for s in done},
        "test_split_scores": {
            "N": _last_test_scores(workdir, "train_depth", done["train_depth"]),
            **{
                name: _last_test_scores(workdir, stage, done[stage])
                for name, stage in stages.items()
            },
        },
        "networks": list(names),
        "record_images": pretrained.RECORD_IMAGES,
        "record_scores": scores,
        "jax": jax.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        tmp = out / f".{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(workdir / "networks" / name, tmp)
        shutil.rmtree(out / name, ignore_errors=True)
        os.replace(tmp, out / name)
    tmp = out / f".{pretrained.RECORD_FILE}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False))
    os.replace(tmp, out / pretrained.RECORD_FILE)
    return record


def _suffix(name: str) -> str:
    """'' for G, '_drn_d_38' for G_drn_d_38: the suffix of the network's training stage."""
    return name.removeprefix("G")


def _render_size(name: str) -> tuple[int, int]:
    from mde_adv.data.procedural_rooms import ProceduralRooms

    config_name = name.split("/", 1)[1]
    config = next(c for c in ProceduralRooms.BUILDER_CONFIGS if c.name == config_name)
    return config.height, config.width


def _sizes(data: dict):
    from mde_adv.data.transforms import TransformSizes

    return TransformSizes(tuple(data["resize_hw"]), tuple(data["crop_hw"]), tuple(data["depth_hw"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=pretrained.DEFAULT_DIR)
    args = parser.parse_args(argv)
    record = export(args.workdir, args.out)
    print(json.dumps(record["record_scores"], indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
