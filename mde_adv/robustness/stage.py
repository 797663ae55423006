"""The card as a stage of the main job (`card_stage`) and for any given networks (the CLI).

Subjects are labels of `mde_adv.evaluation.methods.ATTACK_TARGETS` ('N(x)', 'N_adv(x)',
'N(x⊗G_adv(x))', ...), each evaluated and attacked end to end; a subject with a saliency
network is a defence, and its depth network alone is the source of the transfer attacks.
Networks come from `config.networks` (given checkpoints) or this run's finished training
stages (`experiment.available_networks`); a subject whose networks are absent is skipped.
"""

import hashlib
from typing import Any

import jax
import ml_collections
from absl import logging

from mde_adv import alignment, paths
from mde_adv.evaluation.methods import ATTACK_TARGETS, attacked_function, network_functions
from mde_adv.robustness import card as card_lib
from mde_adv.robustness.config import check_robustness_config, default_robustness_config
from mde_adv.robustness.evaluate import Subject, evaluate

OUT_DIR = "robustness"


def checkpoint_digest(path: paths.PathLike) -> str:
    """sha256 over a checkpoint's files (relative paths and contents, in sorted order)."""
    path = paths.as_path(path)
    digest = hashlib.sha256()
    names = paths.files_under(path) if path.is_dir() else [path.name]
    for name in names:
        digest.update(name.encode())
        with (path / name if path.is_dir() else path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def robustness_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.robustness, or the defaults where the config has no such section."""
    section = config.get("robustness")
    return default_robustness_config() if section is None else section


def card_stage(config: ml_collections.ConfigDict, workdir: paths.PathLike) -> dict[str, Any]:
    """Evaluates the subjects of config.robustness on the eval split and writes
    `<workdir>/robustness/{per_image.jsonl, card.json, card.md}`; returns a summary."""
    from mde_adv import experiment  # the main job imports this module: import it late
    from mde_adv.data import pipeline

    workdir = paths.as_path(workdir)
    rconfig = robustness_config(config)
    check_robustness_config(rconfig)
    if jax.process_count() > 1:
        raise ValueError("the robustness card runs on one process (jax.process_count() > 1)")
    dc = experiment.data_config(config, workdir, int(rconfig.batch_size))
    networks = experiment.available_networks(config, workdir, dc.crop_hw)
    fns = network_functions(networks)
    subjects, defences = {}, {}
    for label in rconfig.subjects:
        method = ATTACK_TARGETS[label]
        if not all(name in fns for name in method.networks):
            logging.warning("robustness: skipping %s (networks %s absent)", label, method.networks)
            continue
        defence = method.saliency_net is not None
        source = fns[method.depth_net] if defence else None
        subjects[label] = Subject(attacked_function(method, fns), source)
        defences[label] = defence
    if not subjects:
        raise ValueError(
            f"config.robustness.subjects: none of {list(rconfig.subjects)} has its "
            f"networks (available: {sorted(networks)})"
        )
    align = alignment.depth_range(config.depth_net)
    rows, timing = evaluate(rconfig, subjects, lambda: pipeline.eval_batches(dc), align)
    used = sorted({n for label in subjects for n in ATTACK_TARGETS[label].networks})
    checkpoints = {}
    for name in used:
        path = experiment.network_source(config, workdir, name)
        checkpoints[name] = {"path": str(path), "sha256": checkpoint_digest(path)}
    context = {
        "dataset": f"{dc.name} ({dc.eval_split} split, {dc.crop_hw[0]}×{dc.crop_hw[1]} inputs)",
        "checkpoints": checkpoints,
    }
    if align is not None:
        context["scores"] = alignment.NOTE.format(*align)
    out_dir = workdir / OUT_DIR
    card = card_lib.write_card(rows, out_dir, rconfig, context, timing, defences)
    return {
        "card": str(out_dir / card_lib.CARD_JSON),
        "images": card["conventions"]["images"],
        "subjects": list(subjects),
        "flagged": {label: entry["flagged"] for label, entry in card["subjects"].items()},
    }
