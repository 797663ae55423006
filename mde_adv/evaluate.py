"""The evaluation stage: the paper's Tables 1–4 and Figs. 4–7 and the studies beyond it.

`run(eval_config, networks, batches_fn, out_dir)` attacks every eval batch as the config's
sections ask (x* = Adv(x; N), untargeted ℓ1 vs the ground truth, ε in
`eval_config.eps_space`), evaluates the methods on all ε of a section in one jitted call
(each process splits its batch over its local devices, networks replicated), gathers the
per-image results of all processes and (process 0 only) writes to out_dir:
  per_image.jsonl  one row per image × table × setting × method (see evaluation.results)
  summary.csv, summary.json  the aggregates (spec §5)
  run_info.json    the config, networks, images and every attack's settings (ε space, α, T)
  figures.npz      the arrays of Figs. 6 and 7 (first images of process 0's first batch)
`mde_adv.report.write` turns these files into report.md. With `align` (a relative N, see
`alignment.depth_range`) every attack loss and every method's scores are measured after the
per-image scale-and-shift alignment in disparity; run_info.json records it ('alignment').
"""

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mde_adv import attacks, paths
from mde_adv.evaluation import baselines, results
from mde_adv.evaluation.compute import REQUESTS, attack_requests, evaluate_group, figure_arrays
from mde_adv.evaluation.config import default_eval_config
from mde_adv.evaluation.methods import NETWORK_NAMES, Networks, network_functions
from mde_adv.evaluation.plan import AttackGroup, figure_group, plan

__all__ = ["EVALUATED_NETWORKS", "default_eval_config", "run"]

EVALUATED_NETWORKS = NETWORK_NAMES  # the networks the tables and figures can use

Batch = Mapping[str, np.ndarray]


def _check_networks(networks: Networks) -> None:
    unknown = sorted(set(networks) - set(NETWORK_NAMES))
    if unknown:
        raise ValueError(f"networks: unknown names {unknown}; expected some of {NETWORK_NAMES}")
    if "N" not in networks:
        raise ValueError("networks: 'N' (the depth network) is required")
    for name, pair in networks.items():
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise ValueError(f"networks[{name!r}] must be a (model, variables) pair")


def _batch_sharding(mesh: Mesh, batch_size: int) -> NamedSharding:
    """Splits the batch axis over this process's devices when it divides, else replicates."""
    split = batch_size % mesh.devices.size == 0
    return NamedSharding(mesh, PartitionSpec("batch" if split else None))


def _alpha(group: AttackGroup, eps: float) -> float:
    """The step size α of the group's attack at radius eps (ε-space units)."""
    return float(attacks.step_size(group.config, np.float32(eps), np.float32(group.steps)))


def _group_info(group: AttackGroup) -> dict[str, Any]:
    return {
        "table": group.table,
        "settings": list(group.settings),
        "eps": list(group.eps),
        "steps": group.steps,
        "target": group.target,
        "attack": group.config.method,
        "loss": group.config.loss,
        "eps_space": group.config.space,
        "alpha": [_alpha(group, e) for e in group.eps],
        "description": group.config.describe(),
        "align": None if group.config.align is None else list(group.config.align),
        "region": group.region,
        "methods": [m.label() for m in group.methods],
    }


def _check_batch(batch: Batch, step: int) -> None:
    missing = [k for k in ("image", "depth", "id", "valid") if k not in batch]
    if missing:
        raise ValueError(f"eval batch {step} lacks the keys {missing}")


RowKey = tuple[str, str, str]


class _Collected(NamedTuple):
    """This process's results: values[key][name] one array [B] per batch, and per batch the
    positions in the split, encoded ids, valid flags and ground truth; figures of process 0;
    wall seconds of each batch (the first compiles every program), and each batch's seconds
    per section (table: its groups; 'fig6_7': the figures' extra work)."""

    values: dict[RowKey, dict[str, list[np.ndarray]]]
    meta: dict[RowKey, dict[str, Any]]
    positions: list[np.ndarray]
    ids: list[np.ndarray]
    valid: list[np.ndarray]
    targets: list[np.ndarray]
    figures: dict[str, np.ndarray] | None
    seconds: list[float]
    table_seconds: dict[str, list[float]]


def _evaluate_batches(eval_config, networks, batches_fn, groups, figures_attack) -> _Collected:
    max_images = int(eval_config.max_images)
    process_index, process_count = jax.process_index(), jax.process_count()
    base_key = jax.random.key(int(eval_config.seed))
    mesh = Mesh(np.asarray(jax.local_devices()), ("batch",))
    replicated = NamedSharding(mesh, PartitionSpec())
    fns = network_functions(
        {name: (model, jax.device_put(v, replicated)) for name, (model, v) in networks.items()}
    )
    collected = _Collected({}, {}, [], [], [], [], None, [], {})
    # what every group will ask of each attack family, so that the first computes it at once
    requests = attack_requests([*groups, *([figures_attack] if figures_attack else [])])
    batches = tqdm.tqdm(batches_fn(), desc="evaluate", disable=process_index != 0)
    for step, batch in enumerate(batches):
        t0 = time.perf_counter()
        _check_batch(batch, step)
        local = batch["image"].shape[0]
        if max_images and step * local * process_count >= max_images:
            break
        sharding = _batch_sharding(mesh, local)
        x = jax.device_put(np.asarray(batch["image"], np.float32), sharding)
        y = jax.device_put(np.asarray(batch["depth"], np.float32), sharding)
        first = step * local * process_count + process_index * local
        collected.positions.append(np.arange(first, first + local))
        collected.ids.append(results.encode_ids(list(batch["id"])))
        collected.valid.append(np.asarray(batch["valid"], bool))
        collected.targets.append(np.asarray(batch["depth"], np.float32))
        key = jax.random.fold_in(base_key, step * process_count + process_index)
        # this batch's attacks, masks and scores, shared by the groups asking for them
        cache = {REQUESTS: requests}
        spent = dict.fromkeys([g.table for g in groups], 0.0)
        for index, group in enumerate(groups):
            t_group = time.perf_counter()
            eps_of = dict(zip(group.settings, group.eps, strict=True))
            group_key = jax.random.fold_in(key, index)
            group_values = evaluate_group(group, fns, x, y, group_key, cache)
            for (setting, method), named in group_values.items():
                row_key = (group.table, setting, method)
                collected.meta[row_key] = dict(
                    attack=group.config.method,
                    target=group.target,
                    eps=eps_of[setting],
                    eps_space=group.config.space,
                    alpha=_alpha(group, eps_of[setting]),
                    steps=group.steps,
                )
                for name, array in named.items():
                    collected.values.setdefault(row_key, {}).setdefault(name, []).append(array)
            spent[group.table] += time.perf_counter() - t_group  # values are on the host
        if collected.figures is None and figures_attack is not None and process_index == 0:
            t_figures = time.perf_counter()
            keep = np.flatnonzero(batch["valid"])[: int(eval_config.fig6_7.images)]
            figures = figure_arrays(figures_attack, fns, x, y, key, keep, cache)
            figures["ids"] = np.asarray(batch["id"])[keep].astype(np.str_)
            collected = collected._replace(figures=figures)
            spent["fig6_7"] = time.perf_counter() - t_figures
        collected.seconds.append(time.perf_counter() - t0)
        for table, seconds in spent.items():
            collected.table_seconds.setdefault(table, []).append(seconds)
    if not collected.positions:
        raise ValueError("batches_fn() yielded no batches (or max_images is 0 of them)")
    return collected


def _rows_of_all_processes(collected: _Collected, max_images: int) -> tuple[list[results.Row], int]:
    """(per-image rows, number of images) of every process's valid images (the first
    max_images when > 0), in the split's order."""
    local_tree = {
        "values": [
            [np.concatenate(v) for v in named.values()] for named in collected.values.values()
        ],
        "positions": np.concatenate(collected.positions),
        "ids": np.concatenate(collected.ids),
        "valid": np.concatenate(collected.valid),
        "targets": np.concatenate(collected.targets),
    }
    gathered = results.gather_across_processes(local_tree)
    order = np.argsort(gathered["positions"], kind="stable")
    keep = gathered["valid"][order]
    if max_images:
        keep &= gathered["positions"][order] < max_images
    selected = order[keep]
    final = {
        row_key: {name: arrays[i][selected] for i, name in enumerate(named)}
        for (row_key, named), arrays in zip(
            collected.values.items(), gathered["values"], strict=True
        )
    }
    image_ids = results.decode_ids(gathered["ids"][selected])
    positions = gathered["positions"][selected]
    meta = dict(collected.meta)
    for name, per_image in baselines.per_image_baselines(gathered["targets"][selected]).items():
        final["baselines", "clean", name] = per_image
        meta["baselines", "clean", name] = BASELINE_META
    return results.make_rows(final, meta, image_ids, positions), len(image_ids)


# The trivial predictors' rows: no attack, no network.
BASELINE_META = dict(attack="none", target="none", eps=0.0, eps_space="none", alpha=0.0, steps=0)


def _timing(seconds: list[float]) -> dict[str, float]:
    """The first batch compiles every program: its wall time minus a later batch's is the
    compile time; the rest is compute (this process's batches)."""
    later = seconds[1:]
    typical = float(np.median(later)) if later else 0.0
    return {
        "batches": len(seconds),
        "first_batch_seconds": round(seconds[0], 1),
        "compile_seconds": round(max(seconds[0] - typical, 0.0), 1),
        "compute_seconds": round(sum(seconds) - max(seconds[0] - typical, 0.0), 1),
    }


def _timing_by_section(collected: _Collected) -> dict[str, dict[str, float]]:
    """_timing of each section (its groups' wall time per batch; shared attacks and scores
    count for the first section that computed them)."""
    return {table: _timing(seconds) for table, seconds in collected.table_seconds.items()}


def run(
    eval_config: ml_collections.ConfigDict,
    networks: Networks,
    batches_fn: Callable[[], Iterator[Batch]],
    out_dir: paths.PathLike,
    align: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Evaluates `networks` {'N', 'N_adv', 'G', 'G_adv', 'G_adv_drn_d_38', 'G_adv_drn_d_54':
    (flax model, variables)} (a missing one skips its rows) on the batches of `batches_fn()`
    ({'image': f32[B,H,W,3] normalised, 'depth': f32[B,H,W,1] metres, 'id', 'valid'}).

    align: None for a metric N, else the depth range (metres) of the per-image alignment of
    a relative N's (and N_adv's) disparity, in every attack loss and before every metric.
    Every process must call it (the results are gathered); process 0 writes the files.
    Returns {'summary': aggregated rows, 'images': number of images, 'out_dir': path,
    'timing': this process's compile and compute seconds}.
    """
    _check_networks(networks)
    groups = plan(eval_config, networks, align)
    figures_attack = figure_group(eval_config, networks, align)
    collected = _evaluate_batches(eval_config, networks, batches_fn, groups, figures_attack)
    rows, images = _rows_of_all_processes(collected, int(eval_config.max_images))
    summary = results.aggregate(rows)
    out_dir = paths.as_path(out_dir)
    if jax.process_index() == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        results.write_rows(rows, out_dir / results.PER_IMAGE_FILE)
        results.write_summary(summary, out_dir)
        info = {
            "eval_config": eval_config.to_dict(),
            "images": images,
            "networks": sorted(networks),
            "alignment": None if align is None else list(align),
            "process_count": jax.process_count(),
            "groups": [_group_info(g) for g in groups],
            "figure_attack": None if figures_attack is None else _group_info(figures_attack),
            "timing": {**_timing(collected.seconds), "sections": _timing_by_section(collected)},
        }
        if collected.figures is not None:
            with paths.atomic_open(out_dir / results.FIGURES_FILE, "wb") as file:
                np.savez_compressed(file, **collected.figures)
        # last: the report reads run_info.json first, so it finds the others complete
        paths.write_text_atomic(out_dir / results.RUN_INFO_FILE, json.dumps(info, indent=1))
    return {
        "summary": summary,
        "images": images,
        "out_dir": str(out_dir),
        "timing": {**_timing(collected.seconds), "sections": _timing_by_section(collected)},
    }
