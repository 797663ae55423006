"""The main job's refusals: checked before a stage runs, so that no run ends in a wrong result.

- `read_marker`: a stage's DONE.json, or an error naming the file where it is empty or corrupt.
- `check_config`: the whole config, before the first stage (bad values are found before hours
  of training, and config.json is written only after).
- `check_same_settings`: a workdir with finished stages is rerun only with the settings it was
  run with (`config.json`); otherwise the differing fields are named. RERUN_FREE_FIELDS may
  differ (which stages run, on which machines, with how many reader threads).
- `check_inputs_finished`: a stage never reads the output of an unfinished stage.

Every failure raises `RunConfigError` (a ValueError) naming the field, file or stage at fault.
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from mde_adv import alignment, models, paths, variables_io
from mde_adv.evaluation.config import check_eval_config
from mde_adv.evaluation.plan import check_alignable
from mde_adv.robustness.config import check_robustness_config
from mde_adv.train.steps import SAMPLERS

CONFIG_FILE = "config.json"
MARKER = "DONE.json"
# Fields that change where and how a run executes, not its results.
RERUN_FREE_FIELDS = (
    "stages",
    "distributed",
    "parallel",
    "xla_flags",
    "data.pipeline.worker_count",
    "data.pipeline.read_threads",
)


class RunConfigError(ValueError):
    """The config, or the state of the workdir, does not allow the requested stages to run."""


def read_marker(workdir: paths.Path, stage: str) -> dict | None:
    """The summary `<workdir>/<stage>/DONE.json` records (None where the stage has not
    finished); RunConfigError naming the file where it is not a JSON object."""
    marker = workdir / stage / MARKER
    if not marker.is_file():
        return None
    text = marker.read_text()
    try:
        summary = json.loads(text)
    except json.JSONDecodeError as error:
        summary = error
    if not isinstance(summary, dict):
        problem = "is empty" if not text.strip() else f"is not a JSON object ({summary})"
        raise RunConfigError(
            f"{marker} {problem}: delete it to rerun stage {stage!r}, or restore the file"
        )
    return summary


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: tree}


def differing_fields(saved: Mapping, current: Mapping, ignore: Sequence[str] = ()) -> list[str]:
    """'field: saved → current' for every leaf (dotted path) that differs, sorted; fields in
    `ignore` (dotted paths, with everything below them) are left out."""

    def kept(key: str) -> bool:
        return not any(key == field or key.startswith(f"{field}.") for field in ignore)

    old = {k: v for k, v in _flat(saved).items() if kept(k)}
    new = {k: v for k, v in _flat(current).items() if kept(k)}
    missing = object()
    return [
        f"{key}: {old.get(key, '(absent)')!r} → {new.get(key, '(absent)')!r}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]


def config_as_json(config: ml_collections.ConfigDict) -> dict:
    """The config as config.json holds it (tuples as lists)."""
    return json.loads(config.to_json_best_effort())


def check_same_settings(
    config: ml_collections.ConfigDict, workdir: paths.Path, stages: Sequence[str]
) -> None:
    """RunConfigError naming the differing fields where some stage of `workdir` has finished
    with a config.json other than `config` (up to RERUN_FREE_FIELDS)."""
    path = workdir / CONFIG_FILE
    finished = [stage for stage in stages if read_marker(workdir, stage) is not None]
    if not finished or not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunConfigError(f"{path} is not valid JSON ({error})") from None
    fields = differing_fields(saved, config_as_json(config), RERUN_FREE_FIELDS)
    if fields:
        more = f"; and {len(fields) - 10} more" if len(fields) > 10 else ""
        shown = "; ".join(fields[:10]) + more
        raise RunConfigError(
            f"{workdir} has finished stages {finished} run with other settings ({path}): "
            f"{shown}. Use another --workdir for these settings, or rerun with the recorded ones"
        )


def check_config(
    config: ml_collections.ConfigDict,
    stages: Sequence[str],
    known_stages: Sequence[str],
    train_stages: Mapping[str, tuple],
    finished: Sequence[str],
) -> None:
    """RunConfigError naming the first field of `config` that would fail one of `stages`.

    train_stages: experiment.TRAIN_STAGES; finished: the stages whose DONE.json exists.
    """
    unknown = [s for s in stages if s not in known_stages]
    if unknown:
        raise RunConfigError(f"config.stages: unknown stages {unknown}; known: {known_stages}")
    networks = config.get("networks", {})
    for section in ("networks", "init"):
        for name, path in config.get(section, {}).items():
            if path and not paths.as_path(path).exists():
                raise RunConfigError(f"config.{section}.{name}: no checkpoint at {path}")
            if path:
                spec = next(s for s in train_stages.values() if s[1] == name)
                _check_network_kind(config, f"config.{section}.{name}", path, spec)
    _check_input_size(config)
    _check_alignment(config, stages)
    for stage in stages:
        if stage in train_stages and not networks.get(train_stages[stage][1]):
            task = train_stages[stage][0]
            if task not in config.get("train", {}):
                raise RunConfigError(f"config.train.{task}: missing (stage {stage})")
            if task.endswith("_adv"):
                _check_train_attack(config.train_attack)
    if "evaluate" in stages:
        depth_stage = next(s for s, spec in train_stages.items() if spec[1] == "N")
        if not (networks.get("N") or depth_stage in stages or depth_stage in finished):
            raise RunConfigError(
                f"config.networks.N: empty, and stage {depth_stage!r} neither runs nor has "
                "finished: the evaluation needs N (give a checkpoint, e.g. "
                "--config.networks.N=ckpt/N)"
            )
    if "robustness" in stages and config.get("robustness") is not None:
        try:
            check_robustness_config(config.robustness)
        except (ValueError, KeyError, AttributeError, TypeError) as error:
            raise RunConfigError(f"config.robustness: {error}") from None
    if "evaluate" in stages or "report" in stages:
        try:
            check_eval_config(config.eval)
        except (ValueError, KeyError, AttributeError, TypeError) as error:
            raise RunConfigError(f"config.eval: {error}") from None


def _check_alignment(config, stages: Sequence[str]) -> None:
    """A relative N (`alignment.depth_range`) is a Depth Anything V2 head with a depth range
    0 < min_depth < max_depth (metres) and no table that alignment leaves undefined."""
    if config.depth_net.get("kind") != alignment.RELATIVE_KIND:
        return
    encoder = str(config.depth_net.get("encoder", ""))
    if not encoder.startswith(models.DAV2_PREFIX):
        raise RunConfigError(
            f"config.depth_net.kind = 'relative' is a Depth Anything V2 head, but "
            f"config.depth_net.encoder = {encoder!r} is not one ({models.DAV2_PREFIX}*)"
        )
    low = config.depth_net.get("min_depth", alignment.DEFAULT_DEPTH_RANGE[0])
    high = config.depth_net.get("max_depth", alignment.DEFAULT_DEPTH_RANGE[1])
    try:
        align = alignment.depth_range(config.depth_net)
        alignment.check_depth_range(align)
    except (TypeError, ValueError):
        raise RunConfigError(
            f"config.depth_net.min_depth, config.depth_net.max_depth = {low!r}, {high!r}: the "
            "depth range (metres) of a relative N's per-image alignment must be "
            "0 < min_depth < max_depth"
        ) from None
    if "evaluate" in stages or "report" in stages:
        try:
            check_alignable(config.get("eval", {}).get("tables", ()), align)
        except ValueError as error:
            raise RunConfigError(f"config.eval.tables: {error}") from None


def _check_network_kind(config, field: str, path: str, spec: tuple) -> None:
    """The checkpoint at `path` holds the kind of network, encoder and width the config asks
    for (as far as its metadata records them)."""
    kind, encoder_override = spec[2], spec[4]
    section = "depth_net" if kind == "depth" else "saliency_net"
    wanted = dict(config[section])
    if encoder_override:
        wanted["encoder"] = encoder_override
    try:
        metadata = variables_io.read_metadata(path)
    except variables_io.CheckpointError as error:
        raise RunConfigError(f"{field}: {error}") from None
    saved = metadata.get("model")
    saved_kind = saved if isinstance(saved, str) else None
    model = saved if isinstance(saved, Mapping) else metadata
    if saved_kind is not None and saved_kind != kind:
        raise RunConfigError(
            f"{field} = {path} holds a {saved_kind} network, but {field.rsplit('.', 1)[1]} is "
            f"a {kind} network"
        )
    differ = [
        f"{key} {model[key]!r} (config.{section}.{key} = {wanted[key]!r})"
        for key in ("encoder", "width")
        if key in model and key in wanted and model[key] != wanted[key]
    ]
    if differ:
        raise RunConfigError(
            f"{field} = {path} holds a network with {', '.join(differ)}: give the matching "
            f"checkpoint, or set config.{section} to the checkpoint's network"
        )


def _check_input_size(config) -> None:
    """N's input sides must be multiples of 4 (see `attack_image.check_network_input`)."""
    crop_hw = tuple(config.data.pipeline.crop_hw)
    if str(config.depth_net.get("encoder", "")).startswith("resnet") and (
        crop_hw[0] % 4 or crop_hw[1] % 4
    ):
        raise RunConfigError(
            f"config.data.pipeline.crop_hw = {crop_hw}: N's input sides must be multiples of 4 "
            "(for a side ≡ 2 mod 4 its output would be H//2 × W//2, the authors' network gives "
            f"2·⌈H/4⌉ × 2·⌈W/4⌉), e.g. {(4 * (crop_hw[0] // 4), 4 * (crop_hw[1] // 4))}"
        )


def _check_train_attack(attack: ml_collections.ConfigDict) -> None:
    low, high = (int(v) for v in attack.steps_range)
    if not 1 <= low <= high <= int(attack.t_max):
        raise RunConfigError(
            f"config.train_attack.steps_range {tuple(attack.steps_range)} must satisfy "
            f"1 <= low <= high <= t_max = {attack.t_max}: Algorithm 1 would otherwise train "
            "on another T distribution than the one recorded (raise t_max or lower the range)"
        )
    eps_low, eps_high = (float(v) for v in attack.eps_range)
    if not 0 <= eps_low <= eps_high < float("inf"):
        raise RunConfigError(
            f"config.train_attack.eps_range {tuple(attack.eps_range)} must satisfy "
            "0 <= low <= high < inf"
        )
    sampler = attack.get("sampler", "bernoulli")
    if sampler not in SAMPLERS:
        raise RunConfigError(
            f"config.train_attack.sampler = {sampler!r}: expected one of {list(SAMPLERS)}"
        )
    if sampler == "paired" and float(attack.p_adversarial) != 0.5:
        raise RunConfigError(
            f"config.train_attack.sampler = 'paired' makes exactly one example of each pair "
            f"adversarial (p = 0.5), but p_adversarial = {attack.p_adversarial}"
        )


def check_inputs_finished(
    workdir: paths.Path,
    stage: str,
    inputs: Sequence[str],
) -> None:
    """RunConfigError where one of the stages `stage` reads (`inputs`) has started (its folder
    exists) but not finished, or where `stage` is 'report' and 'evaluate' has not finished."""
    for upstream in inputs:
        started = (workdir / upstream).exists()
        done = read_marker(workdir, upstream) is not None
        if (started or stage == "report") and not done:
            raise RunConfigError(
                f"stage {stage!r} reads the output of stage {upstream!r}, which has not "
                f"finished ({workdir / upstream / MARKER} is missing): run {upstream!r} first "
                f"(put it in config.stages), or delete {workdir / upstream} to do without it"
            )
