"""The main job: data → N → G → G_adv → N_adv → evaluation → report, one stage at a time.

Each stage writes its result under `<workdir>/<stage>/` and, last, a `DONE.json` marker (written
atomically by process 0); a rerun skips stages with a marker and resumes an unfinished training
stage from its latest checkpoint. A network given in `config.networks` (e.g. the authors'
released N, imported with `python -m mde_adv.import_torch`) is used instead of training it.
"""

import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from mde_adv import (
    alignment,
    evaluate,
    models,
    paths,
    report,
    robustness,
    run_checks,
    variables_io,
)
from mde_adv.data import pipeline
from mde_adv.evaluation import clean
from mde_adv.train import loop, parallel, precise_bn

# stage: (task, network trained, model kind, frozen network, saliency encoder override)
TRAIN_STAGES = {
    "train_depth": ("depth", "N", "depth", None, None),
    "train_saliency": ("saliency", "G", "saliency", "N", None),
    # Table 4's G with deeper DRN-D encoders, trained like G (the starts of their G_adv).
    "train_saliency_drn_d_38": ("saliency", "G_drn_d_38", "saliency", "N", "drn_d_38"),
    "train_saliency_drn_d_54": ("saliency", "G_drn_d_54", "saliency", "N", "drn_d_54"),
    "train_saliency_adv": ("saliency_adv", "G_adv", "saliency", "N", None),
    "train_depth_adv": ("depth_adv", "N_adv", "depth", None, None),
    # Table 4: G_adv with deeper DRN-D encoders.
    "train_saliency_adv_drn_d_38": ("saliency_adv", "G_adv_drn_d_38", "saliency", "N", "drn_d_38"),
    "train_saliency_adv_drn_d_54": ("saliency_adv", "G_adv_drn_d_54", "saliency", "N", "drn_d_54"),
}
NETWORKS = tuple(spec[1] for spec in TRAIN_STAGES.values())
STAGES = ("data", *TRAIN_STAGES, "evaluate", "report")
# Run only when config.stages names them: the robustness card (mde_adv/robustness/stage.py).
OPTIONAL_STAGES = ("robustness",)


def stage_done(workdir: paths.Path, stage: str) -> dict | None:
    """The summary a finished stage recorded, or None (RunConfigError on a corrupt marker)."""
    return run_checks.read_marker(workdir, stage)


def stage_inputs(config: ml_collections.ConfigDict, stage: str) -> list[str]:
    """The stages whose output `stage` reads (networks given in config.networks excepted)."""
    if stage == "report":
        return ["evaluate"]
    if stage == "robustness":
        trained = [name for name in NETWORKS if not given_network(config, name)]
        return ["data", *(_stage_of(name) for name in trained)]
    if stage in TRAIN_STAGES:
        frozen = TRAIN_STAGES[stage][3]
        needed = [frozen] if frozen and not given_network(config, frozen) else []
    elif stage == "evaluate":
        needed = [name for name in NETWORKS if not given_network(config, name)]
    else:
        return []
    return ["data", *(_stage_of(name) for name in needed)]


def mark_done(workdir: paths.Path, stage: str, summary: dict) -> None:
    """Atomically records that `stage` finished (process 0 writes; a crash leaves no marker)."""
    if jax.process_index() != 0:
        return
    marker = workdir / stage / "DONE.json"
    marker.parent.mkdir(parents=True, exist_ok=True)
    paths.write_text_atomic(marker, json.dumps(summary, indent=2, default=str))


def data_config(
    config: ml_collections.ConfigDict, workdir: paths.Path, batch_size: int | None = None
) -> pipeline.DataConfig:
    """The pipeline's DataConfig from `config.data.pipeline`; data_dir defaults to
    `<workdir>/data`; `batch_size` (a task's or the evaluation's) replaces the global batch."""
    values = config.data.pipeline.to_dict()
    values["data_dir"] = values.get("data_dir") or str(workdir / "data")
    if batch_size is not None:
        values["global_batch_size"] = batch_size
    return pipeline.DataConfig.from_mapping(values)


def build_data(config: ml_collections.ConfigDict, workdir: paths.Path) -> dict:
    """Prepares the TFDS dataset: renders the embedded one, reads NYU-v2's manual files from
    `config.data.manual_dir`, or checks a prepared dataset folder (`data.pipeline.name`)."""
    from mde_adv.data import builders

    dc = data_config(config, workdir)
    t0 = time.perf_counter()
    builder = builders.prepare(dc.name, dc.data_dir, config.data.get("manual_dir") or None)
    return {
        "dataset": dc.name,
        "data_dir": dc.data_dir,
        "splits": {k: v.num_examples for k, v in builder.info.splits.items()},
        "build_seconds": round(time.perf_counter() - t0, 1),
    }


def network(config: ml_collections.ConfigDict, kind: str) -> models.DepthNet | models.SaliencyNet:
    """N (kind 'depth') or G (kind 'saliency') of the config, for inference."""
    if kind == "depth":
        return models.depth_net(config.depth_net)
    return models.saliency_net(config.saliency_net)


def stage_config(config: ml_collections.ConfigDict, stage: str) -> ml_collections.ConfigDict:
    """The config a network's stage runs with: Table 4's stages swap G's encoder and apply
    `config.table4_train` (e.g. a shorter schedule; empty: the schedule of G or G_adv) to the
    stage's training settings."""
    task, encoder = TRAIN_STAGES[stage][0], TRAIN_STAGES[stage][4]
    if encoder is None:
        return config
    config = ml_collections.ConfigDict(config.to_dict())
    config.saliency_net.encoder = encoder
    config.train[task].update(config.get("table4_train", {}))
    return config


def _stage_of(name: str) -> str:
    return next(stage for stage, spec in TRAIN_STAGES.items() if spec[1] == name)


def _template(model, input_hw: tuple[int, int]):
    key = jax.random.key(0, impl="rbg")
    return jax.eval_shape(lambda: models.init_variables(model, key, input_hw))


def initial_variables(
    config: ml_collections.ConfigDict, name: str, kind: str, input_hw: tuple[int, int]
) -> dict:
    """Variables a training stage starts from: `config.init[name]` (a variables_io checkpoint,
    e.g. an ImageNet encoder imported by mde_adv.import_torch) or a seeded random init."""
    model = network(config, kind)
    path = config.get("init", {}).get(name)
    if path:
        variables, _ = variables_io.load_variables(path, _template(model, input_hw))
        return variables
    key = jax.random.fold_in(jax.random.key(config.seed, impl="rbg"), NETWORKS.index(name))
    return jax.device_get(models.init_variables(model, key, input_hw))


def network_path(workdir: paths.Path, name: str) -> paths.Path:
    return workdir / "networks" / name


def given_network(config: ml_collections.ConfigDict, name: str) -> str:
    """The checkpoint `config.networks[name]` names ('' when the run trains it)."""
    return config.get("networks", {}).get(name) or ""


def network_source(
    config: ml_collections.ConfigDict, workdir: paths.Path, name: str
) -> paths.Path | None:
    """Where a network's variables are: given by the config, or trained by a finished stage
    of this run; None when neither."""
    if given_network(config, name):
        return paths.as_path(given_network(config, name))
    return network_path(workdir, name) if stage_done(workdir, _stage_of(name)) else None


def load_network(
    config: ml_collections.ConfigDict,
    workdir: paths.Path,
    name: str,
    kind: str,
    input_hw: tuple[int, int],
) -> dict:
    """A network's variables from `network_source`."""
    path = network_source(config, workdir, name)
    if path is None:
        raise ValueError(
            f"network {name} is neither given (config.networks.{name}) nor trained in "
            f"{workdir} (stage {_stage_of(name)} has not finished)"
        )
    variables, _ = variables_io.load_variables(path, _template(network(config, kind), input_hw))
    return variables


def train_stage(config: ml_collections.ConfigDict, workdir: paths.Path, stage: str) -> dict:
    """Trains one network (resuming from its checkpoints) and saves it with variables_io."""
    task, name, kind, frozen_name, _ = TRAIN_STAGES[stage]
    config = stage_config(config, stage)
    if given_network(config, name):
        return {"network": name, "given": given_network(config, name)}
    dc = data_config(config, workdir, loop.global_batch_size(config.train[task]))
    input_hw = dc.crop_hw
    frozen = None
    if frozen_name is not None:
        frozen = load_network(config, workdir, frozen_name, "depth", input_hw)
    steps_per_epoch = pipeline.steps_per_epoch(dc)
    evaluator = None
    if int(config.train[task].get("eval_every", 0) or 0) > 0:
        evaluator = held_out_evaluator(config, workdir, kind, frozen)
    t0 = time.perf_counter()
    variables = loop.train_task(
        config,
        task,
        workdir / stage,
        lambda start: pipeline.train_batches(dc, start_step=start),
        steps_per_epoch=steps_per_epoch,
        variables=initial_variables(config, name, kind, input_hw),
        frozen=frozen,
        evaluate=evaluator,
    )
    precise = {}
    num_batches = int(config.train[task].get("precise_bn_batches", 0) or 0)
    if num_batches > 0:  # BN statistics averaged over training batches at the final weights
        precise["batches"] = num_batches
        if evaluator is not None:
            precise["test_before"] = evaluator(variables)
        batch_stats = precise_bn.precise_batch_stats(
            network(config, kind), variables, pipeline.train_batches(dc), num_batches
        )
        variables = {**variables, "batch_stats": batch_stats}
        if evaluator is not None:
            precise["test_after"] = evaluator(variables)
    metadata = {
        "network": name,
        "task": task,
        "model": (config.depth_net if kind == "depth" else config.saliency_net).to_dict(),
        "input_hw": list(input_hw),
        "steps": loop.total_steps(config.train[task], steps_per_epoch),
    }
    if jax.process_index() != 0:  # only process 0 writes the network, the timing and DONE.json
        return metadata
    variables_io.save_variables(network_path(workdir, name), variables, metadata=metadata)
    timing = json.loads((workdir / stage / loop.TIMING_FILE).read_text())
    summary = {**metadata, "train_seconds": round(time.perf_counter() - t0, 1), "timing": timing}
    return {**summary, "precise_bn": precise} if precise else summary


def held_out_evaluator(
    config: ml_collections.ConfigDict, workdir: paths.Path, kind: str, frozen: dict | None
) -> clean.Evaluator:
    """Clean scores on the eval split (every process reads all of it) for the learning curve:
    N(x) for a depth network, N(x⊗G(x)) and G's mask statistics for a saliency network."""
    dc = data_config(config, workdir, config.eval.batch_size)
    batches = list(pipeline.eval_batches(dc, process_index=0, process_count=1))
    align = alignment.depth_range(config.depth_net)
    if kind == "depth":
        return clean.depth_evaluator(network(config, "depth"), batches, align)
    return clean.saliency_evaluator(
        network(config, "saliency"), network(config, "depth"), frozen, batches, align
    )


def agreed(flag: bool) -> bool:
    """Process 0's `flag` on every process (a broadcast), so that all take the same branch."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.broadcast_one_to_all(np.int32(flag)))


def barrier(name: str) -> None:
    """Waits until every process gets here (no-op on one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"mde_adv:{name}")


def run_stage(config: ml_collections.ConfigDict, workdir: paths.Path, stage: str) -> dict:
    """One stage's work on every process; the data stage builds on process 0 while the others
    wait, then opens what it built."""
    if stage == "data":
        if jax.process_index() == 0:
            summary = build_data(config, workdir)
        barrier("data built")
        return summary if jax.process_index() == 0 else build_data(config, workdir)
    if stage in TRAIN_STAGES:
        return train_stage(config, workdir, stage)
    return STAGE_RUNNERS[stage](config, workdir)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> None:
    """Runs the stages listed in `config.stages` (default: all), skipping finished ones.

    On several processes every decision is process 0's (whether a stage is done), every stage
    runs on all of them, and each stage ends at a barrier once process 0 has written its
    marker, so the next stage finds the files of the last."""
    parallel.initialize_distributed(config)
    workdir = paths.as_path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stages = tuple(config.get("stages", STAGES))
    finished = [stage for stage in STAGES if stage_done(workdir, stage) is not None]
    run_checks.check_config(config, stages, (*STAGES, *OPTIONAL_STAGES), TRAIN_STAGES, finished)
    data_config(config, workdir)  # raises on bad data.pipeline values
    run_checks.check_same_settings(config, workdir, STAGES)
    barrier("checked")  # every process has read the workdir before process 0 writes to it
    if jax.process_index() == 0:
        paths.write_text_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
    for stage in stages:
        if agreed(stage_done(workdir, stage) is not None):
            logging.info("stage %s: already done (%s/DONE.json), skipping", stage, stage)
            continue
        run_checks.check_inputs_finished(workdir, stage, stage_inputs(config, stage))
        logging.info("stage %s: starting", stage)
        t0 = time.perf_counter()
        summary = run_stage(config, workdir, stage)
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        mark_done(workdir, stage, summary)
        barrier(f"{stage} done")
        logging.info("stage %s: done in %.1f s", stage, summary["seconds"])


def available_networks(
    config: ml_collections.ConfigDict, workdir: paths.Path, input_hw: tuple[int, int]
) -> dict[str, tuple]:
    """(model, variables) of every network the config gives or a finished stage trained."""
    networks = {}
    for name in NETWORKS:
        if network_source(config, workdir, name) is None:
            continue
        stage = _stage_of(name)
        kind = TRAIN_STAGES[stage][2]
        cfg = stage_config(config, stage)
        networks[name] = (network(cfg, kind), load_network(cfg, workdir, name, kind, input_hw))
    return networks


def evaluate_stage(config: ml_collections.ConfigDict, workdir: paths.Path) -> dict:
    """The paper's tables and figures (and ours) on the test split: per-image results,
    CSV and JSON under `<workdir>/evaluate`."""
    dc = data_config(config, workdir, config.eval.batch_size)
    networks = {
        name: pair
        for name, pair in available_networks(config, workdir, dc.crop_hw).items()
        if name in evaluate.EVALUATED_NETWORKS  # not the starts of Table 4's G_adv
    }
    result = evaluate.run(
        config.eval,
        networks,
        lambda: pipeline.eval_batches(dc),
        workdir / "evaluate",
        align=alignment.depth_range(config.depth_net),
    )
    return {"networks": sorted(networks), "images": result["images"], "timing": result["timing"]}


def report_stage(config: ml_collections.ConfigDict, workdir: paths.Path) -> dict:
    """`<workdir>/report.md` (and its figures) from the saved evaluation results."""
    dc = data_config(config, workdir, config.eval.batch_size)
    sources = {name: network_source(config, workdir, name) for name in NETWORKS}
    checkpoints = {name: str(path) for name, path in sources.items() if path is not None}
    starts = {name: path for name, path in config.get("init", {}).items() if path}
    context = {
        "dataset": f"{dc.name} ({dc.eval_split} split, {dc.crop_hw[0]}×{dc.crop_hw[1]} inputs)",
        "checkpoints": checkpoints,
        "networks": {"N": config.depth_net.to_dict(), "G": config.saliency_net.to_dict()},
        "training starts from": starts or "random initialisation (every trained network)",
        "stage_times": stage_times(workdir),
    }
    card = workdir / robustness.stage.OUT_DIR / "card.json"
    if stage_done(workdir, "robustness") is not None and card.is_file():
        context["robustness_card"] = json.loads(card.read_text())
    path = workdir / "report.md"
    if jax.process_index() == 0:  # one writer of the report and its figures
        report.write(config.eval, workdir / "evaluate", path, context)
    return {"report": str(path)}


def stage_times(workdir: paths.Path) -> list[dict]:
    """Wall, compile and compute seconds of every finished stage (from its DONE.json): a
    training stage's compile time is its first step's wall time (which compiles the step)
    minus a typical step's; the evaluation's its first batch's minus a typical batch's."""
    times = []
    for stage in (*STAGES, *OPTIONAL_STAGES):
        done = stage_done(workdir, stage)
        if done is None:
            continue
        entry = {"stage": stage, "seconds": done.get("seconds")}
        timing = done.get("timing") or {}
        if stage in TRAIN_STAGES and timing.get("steps"):
            steps = timing["steps"]
            rest = timing["total_seconds"] - timing["first_step_seconds"] - timing["eval_seconds"]
            typical = rest / max(steps - 1, 1)
            compile_s = max(timing["first_step_seconds"] - typical, 0.0)
            entry.update(compile_seconds=compile_s, compute_seconds=done["seconds"] - compile_s)
            entry["notes"] = f"{steps} steps, {typical:.3f} s/step"
        elif stage == "evaluate" and timing:
            entry.update(
                compile_seconds=timing["compile_seconds"],
                compute_seconds=done["seconds"] - timing["compile_seconds"],
                notes=f"{timing['batches']} batches",
                sections=timing.get("sections", {}),
            )
        elif done.get("given"):
            entry["notes"] = f"given: {done['given']}"
        times.append(entry)
    return times


STAGE_RUNNERS = {
    "evaluate": evaluate_stage,
    "report": report_stage,
    "robustness": robustness.card_stage,
}
