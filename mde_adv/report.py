"""report.md from the files of `mde_adv.evaluate.run` only: every table beside the paper's
numbers, the figures as PNGs beside the report, and a summary of which findings hold.

`write(eval_config, results_dir, report_path, context)` recomputes every aggregate from
per_image.jsonl (so the report can be checked against the per-image rows), reads the attack
settings from run_info.json and the arrays of Figs. 6 and 7 from figures.npz. `context` holds
what is stated above every table: 'dataset' and 'checkpoints' (required; a string or a
mapping name → path) and any other entries (printed in the report's header).
"""

import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from mde_adv import alignment, paths
from mde_adv.evaluation import figures, findings, results
from mde_adv.evaluation.config import TABLES, check_eval_config
from mde_adv.paper_numbers import FIG4_POINTS, FIG5_POINTS, PAPER, PAPER_NOTES

TITLES: dict[str, str] = {
    "table1": "Table 1 — FGSM: N alone and with the mask of G (RMSE)",
    "table2": "Table 2 — IFGSM: the four methods, all metrics",
    "noise": "Baseline of the attack — random noise of the same ε (every input entry ±ε)",
    "table3": "Table 3 — the loss of the attack (IFGSM)",
    "table4": "Table 4 — encoder depth of G_adv",
    "fig4": "Fig. 4 — RMSE vs ε (FGSM)",
    "fig5": "Fig. 5 — RMSE vs iterations (IFGSM)",
    "fig6_7": "Figs. 6 and 7 — depth and saliency maps under attack",
    "defence_aware": "Beyond the paper — defence-aware attack x** = Adv(x; C), C(x) = N(x⊗G(x))",
    "attack_variants": "Beyond the paper — PGD (random start) and momentum IFGSM",
    "salient_regions": "Beyond the paper — the same ε on salient vs non-salient pixels of G(x)",
    "targeted": "Beyond the paper — targeted attack towards a farther scene",
}
FIGURE_FILES: dict[str, str] = {
    "fig4": "fig4_rmse_vs_eps.png",
    "fig5": "fig5_rmse_vs_iterations.png",
    "fig6": "fig6_depth_maps.png",
    "fig7": "fig7_saliency_maps.png",
}
COLUMN_NAMES: dict[str, str] = {
    "rmse": "RMSE",
    "rel": "REL",
    "log10": "log10",
    "delta1": "δ1",
    "delta2": "δ2",
    "delta3": "δ3",
    "log10_undefined_images": "log10 undefined (images)",
    "depth_ratio": "mean N(x*)/N(x)",
    "target_rmse": "RMSE to target (m)",
    "clean_target_rmse": "RMSE of N(x) to target (m)",
    "area_share": "area share",
    "perturbation_share": "δ energy share",
    "gradient_share": "∇ℓ(x) energy share",
}
EPS_SPACE_NOTES = {
    "normalised": "normalised input units (ImageNet mean/std; 0.1 ≈ 0.023 of the [0, 1] range)",
    "pixel": "[0, 1] pixel units, adversarial image clipped to [0, 1]",
}
NOT_COMPUTED = "—"
# Above every table of a run whose N is relative (run_info's 'alignment').
ALIGNED_LINE = "N's scores after per-image scale-and-shift alignment in disparity · "


def _check_context(context: Mapping[str, Any]) -> None:
    for field in ("dataset", "checkpoints"):
        if field not in context:
            raise ValueError(f"report context lacks the field {field!r}")


def _read_run_info(results_dir: paths.Path) -> dict[str, Any]:
    path = results_dir / results.RUN_INFO_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {results.RUN_INFO_FILE} in {results_dir}: run evaluate first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def _check_same_config(eval_config: ml_collections.ConfigDict, info: Mapping, path) -> None:
    saved = info.get("eval_config", {})
    current = json.loads(json.dumps(eval_config.to_dict()))
    differing = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if differing:
        raise ValueError(
            f"results in {path} were made with another eval config: {differing} differ"
        )


def _format(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _seconds(value: Any) -> str:
    return _format(None if value is None else float(value), 1)


def _describe_checkpoints(checkpoints: Any) -> str:
    if isinstance(checkpoints, Mapping):
        return "; ".join(f"{name}: {path}" for name, path in checkpoints.items())
    return str(checkpoints)


def _unique(values) -> list:
    return list(dict.fromkeys(values))


def _context_line(table: str, info: Mapping, context: Mapping, images: int) -> str:
    groups = [g for g in info["groups"] if g["table"] == table]
    if table == "fig6_7" and info.get("figure_attack"):
        groups = [info["figure_attack"]]
    if not groups:
        return "*Not computed on this run: a network it needs is missing.*"
    kinds = _unique(g["attack"] for g in groups)
    alphas = _unique(
        f"{g['attack']} {a:g}" if len(kinds) > 1 else f"{a:g}"
        for g in groups
        for a, e in zip(g["alpha"], g["eps"], strict=True)
        if e > 0
    )
    prefix = ALIGNED_LINE if any(g.get("align") for g in groups) else ""
    return (
        f"*{prefix}Dataset: {context['dataset']} · images: {images} · ε space: "
        f"{', '.join(_unique(g['eps_space'] for g in groups))} · attack: {', '.join(kinds)} "
        f"(loss {', '.join(_unique(g['loss'] for g in groups))}, attacked function "
        f"{', '.join(_unique(g['target'] for g in groups))}) · α: {', '.join(alphas) or 'n/a'} · "
        f"T: {', '.join(str(s) for s in _unique(g['steps'] for g in groups))} · checkpoints: "
        f"{_describe_checkpoints(context['checkpoints'])}*"
    )


def _table_columns(table: str, rows: Sequence[Mapping]) -> list[str]:
    if table == "table2":
        return [*results.DEPTH_METRICS, "log10_undefined_images"]
    names = ["rmse"]
    for extra in ("depth_ratio", "target_rmse", "clean_target_rmse"):
        if any(extra in row for row in rows):
            names.append(extra)
    return names


def markdown_table(table: str, rows: Sequence[Mapping], columns: Sequence[str]) -> list[str]:
    """Rows (setting, method, images, each column and, where the paper gives it, the paper's
    value); the paper's rows this run did not compute are listed with '—'."""
    paper = PAPER.get(table, {})
    with_paper = [c for c in columns if any(c in v for v in paper.values())]
    header = ["setting", "method", "images"]
    for column in columns:
        header.append(COLUMN_NAMES[column])
        if column in with_paper:
            header.append(f"{COLUMN_NAMES[column]} (paper)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    done = set()
    for row in rows:
        key = (row["setting"], row["method"])
        done.add(key)
        cells = [row["setting"], row["method"], str(row["images"])]
        for column in columns:
            cells.append(_format(row.get(column)))
            if column in with_paper:
                cells.append(_format(paper.get(key, {}).get(column)))
        lines.append("| " + " | ".join(cells) + " |")
    for key, values in paper.items():
        if key not in done:
            cells = [*key, NOT_COMPUTED]
            for column in columns:
                cells.append(NOT_COMPUTED)
                if column in with_paper:
                    cells.append(_format(values.get(column)))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _section(
    table: str,
    summary: Sequence[Mapping],
    info: Mapping,
    context: Mapping,
    report_dir: paths.Path,
    figure_arrays: Mapping[str, np.ndarray] | None,
) -> list[str]:
    rows = [row for row in summary if row["table"] == table]
    images = max((row["images"] for row in rows), default=0)
    if table == "fig6_7" and figure_arrays is not None:
        images = len(figure_arrays["image"])
    lines = [f"## {TITLES[table]}", "", _context_line(table, info, context, images), ""]
    depth_rows = [row for row in rows if "rmse" in row]
    other_rows = [row for row in rows if "rmse" not in row]
    if table != "fig6_7" and (depth_rows or table in PAPER):
        lines += [*markdown_table(table, depth_rows, _table_columns(table, depth_rows)), ""]
    if other_rows:
        columns = [c for c in COLUMN_NAMES if any(c in row for row in other_rows)]
        lines += [*markdown_table(table, other_rows, columns), ""]
    if table in ("fig4", "fig5") and depth_rows:
        field, label, points = (
            ("eps", "ε", FIG4_POINTS) if table == "fig4" else ("steps", "iterations T", FIG5_POINTS)
        )
        path = figures.plot_curves(
            summary, table, field, label, points, report_dir / FIGURE_FILES[table]
        )
        lines += [f"![{TITLES[table]}]({path.name})", ""]
    if table == "fig6_7" and figure_arrays is not None:
        ids = ", ".join(str(i) for i in figure_arrays["ids"])
        fig6 = figures.plot_depth_maps(figure_arrays, report_dir / FIGURE_FILES["fig6"])
        fig7 = figures.plot_saliency_maps(figure_arrays, report_dir / FIGURE_FILES["fig7"])
        lines += [
            f"Images: {ids}.",
            "",
            f"![Fig. 6: depth maps under attack]({fig6.name})",
            "",
            f"![Fig. 7: saliency maps and their changes under attack]({fig7.name})",
            "",
        ]
    if table in PAPER_NOTES:
        lines += [f"> {PAPER_NOTES[table]}", ""]
    return lines


def _header(context: Mapping, info: Mapping, results_dir: paths.Path) -> list[str]:
    config = info["eval_config"]
    lines = [
        "# Adversarial attacks on monocular depth estimation — evaluation report",
        "",
        "Reproduction of Hu & Okatani, *Analysis of Deep Networks for Monocular Depth "
        "Estimation Through Adversarial Attacks with Proposal of a Defense Method*. Every "
        f"number below is recomputed from `{results.PER_IMAGE_FILE}` in `{results_dir}`; "
        "paper columns are the paper's values (NYU-v2 test, 654 images). x* = Adv(x; N) "
        "(untargeted, ℓ1 vs the ground truth unless stated); N, G in inference mode.",
        "",
        "| | |",
        "|---|---|",
        f"| dataset | {context['dataset']} |",
        f"| images | {info['images']} |",
        f"| ε space | {config['eps_space']}: {EPS_SPACE_NOTES[config['eps_space']]} |",
        f"| α of FGSM/IFGSM | {config['alpha']:g} |",
        f"| networks | {', '.join(info['networks'])} |",
        f"| checkpoints | {_describe_checkpoints(context['checkpoints'])} |",
    ]
    if info.get("alignment"):
        lines.append(f"| scores | {alignment.NOTE.format(*info['alignment'])} |")
    for name, value in context.items():
        if name not in ("dataset", "checkpoints", "stage_times", "robustness_card"):
            lines.append(f"| {name} | {value} |")
    return [*lines, ""]


HEADLINE_EPS = 0.1
PREMISES_TITLE = "Premises: baselines, masks, attack strength"


def _premises_section(summary: Sequence[Mapping]) -> list[str]:
    """The baselines beside N, each mask's statistics clean and attacked, and the premises
    the findings stand on (findings.premises)."""
    lookup = findings.make_lookup(summary)
    lines = [f"## {PREMISES_TITLE}", ""]
    predictors = [("baselines", "clean", name) for name in ("constant", "per-pixel mean map")]
    predictors += [("table2", "clean", "N(x)"), ("table2", "clean", "N_adv(x)")]
    prior = lookup.get(("baselines", "clean", "per-pixel mean map"), {}).get("rmse")
    lines += [
        "Clean predictions against the trivial baselines (fitted on the evaluated test depths: "
        "one constant, and the same per-pixel mean map for every image):",
        "",
        "| setting | method | images | RMSE | ×mean map | REL | δ1 | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in predictors:
        row = lookup.get(key)
        if row is None:
            continue
        ratio = row["rmse"] / prior if prior else math.nan
        cells = [key[1], key[2], str(row["images"]), _format(row["rmse"]), _format(ratio)]
        cells += [_format(row["rel"]), _format(row["delta1"]), key[0]]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Masks: mean value, share of pixels above 0.5 and within-image standard deviation "
        "(0: a uniform mask), on the clean x and under the attack x* = Adv(x; N) named in the "
        "last column:",
        "",
        "| mask | mean (x) | >0.5 (x) | std (x) | mean (x*) | >0.5 (x*) | std (x*) | x* from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for net in findings.MASK_PREMISES:
        clean, others = findings.mask_rows(lookup, net)
        if not clean and not others:
            continue
        attacked = [r for r in others if r["eps"] > 0 and r["method"].endswith(f"⊗{net}(x*))")]
        attacked.sort(key=lambda r: (abs(r["eps"] - HEADLINE_EPS), -r["steps"]))
        cells = [net]
        for chosen in (clean[:1], attacked[:1]):
            names = ("mask_mean", "mask_above_half", "mask_spread")
            cells += [_format(chosen[0].get(k)) if chosen else "n/a" for k in names]
        origin = attacked[0] if attacked else None
        cells.append(
            f"{origin['table']}, {origin['attack']} T={origin['steps']}, {origin['setting']}"
            if origin
            else "n/a"
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The findings below stand on these premises:", ""]
    lines += [f"- {line}" for line in findings.premise_lines(summary)]
    return [*lines, ""]


def _stage_times_section(stage_times: Sequence[Mapping]) -> list[str]:
    """Wall time of each finished stage, split into compile (first step or batch minus a
    typical one) and compute (the rest)."""
    lines = [
        "## Stage times",
        "",
        "| stage | wall s | compile s | compute s | notes |",
        "|---|---|---|---|---|",
    ]
    for stage in stage_times:
        cells = [stage["stage"], _seconds(stage.get("seconds"))]
        cells += [_seconds(stage.get("compile_seconds")), _seconds(stage.get("compute_seconds"))]
        cells.append(stage.get("notes", ""))
        lines.append("| " + " | ".join(cells) + " |")
    total = sum(float(s.get("seconds") or 0) for s in stage_times)
    lines += ["", f"Total of the stages above: {total:.0f} s ({total / 60:.1f} min).", ""]
    for stage in stage_times:
        if stage.get("sections"):
            lines += _section_times(stage["stage"], stage["sections"])
    return lines


def _section_times(stage: str, sections: Mapping[str, Mapping]) -> list[str]:
    """Where the evaluation's time goes: each section's wall time over the batches (an
    attack or score shared by several sections counts for the first that computed it)."""
    lines = [
        f"Time of the {stage} stage by section (first batch compiles):",
        "",
        "| section | wall s | first batch s | compile s | compute s |",
        "|---|---|---|---|---|",
    ]
    for name, t in sorted(sections.items(), key=lambda item: -item[1]["compute_seconds"]):
        wall = t["compile_seconds"] + t["compute_seconds"]
        cells = [name, _seconds(wall), _seconds(t["first_batch_seconds"])]
        cells += [_seconds(t["compile_seconds"]), _seconds(t["compute_seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


ADAPTIVE_TITLE = "Adaptive evaluation of the defence (robustness card)"


def _card_result(subject: Mapping, threat: str, eps: float, attack_set: str) -> Mapping | None:
    return next(
        (
            r
            for r in subject["results"]
            if r["threat_model"] == threat and r["eps"] == eps and r["attack_set"] == attack_set
        ),
        None,
    )


def _adaptive_section(card: Mapping) -> list[str]:
    """The paper's attack beside the per-image worst case over the card's ensemble, end to
    end, for every subject of `card` (robustness/card.json), with the attack that won most
    images and the diagnostic flags; for a defence also the undefended N's worst case."""
    conventions = card["conventions"]
    attacks_used = conventions["attacks"]
    lines = [
        f"## {ADAPTIVE_TITLE}",
        "",
        "The paper evaluates a defence with x* = Adv(x; N): IFGSM through the undefended N, a "
        "transfer attack. The card (`robustness/card.md`) attacks every function end to end "
        f"with IFGSM-{attacks_used['ifgsm']['steps']} (α = {attacks_used['ifgsm']['alpha']:g}), "
        f"APGD-{attacks_used['apgd']['steps']} with {attacks_used['apgd']['restarts']} "
        f"restarts, a {attacks_used['square']['steps']}-query square search (gradient-free) "
        "and, for a defence, IFGSM and APGD transferred from N, and keeps each image's worst "
        f"case by {conventions['criterion']} ({conventions['images']} images, loss "
        f"{conventions['loss']}).",
        "",
        "| subject | threat model | ε | clean RMSE | paper's attack | worst case | ×paper "
        "| undefended N, worst case | won most images | flags |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    undefended = card["subjects"].get("N(x)")
    for label, subject in card["subjects"].items():
        flags = ", ".join(subject.get("flagged", [])) or "none"
        for key, wins in subject["win_counts"].items():
            threat, eps_text = key.rsplit(" ε=", 1)
            eps = float(eps_text)
            paper = _card_result(subject, threat, eps, "paper")
            worst = _card_result(subject, threat, eps, "ensemble")
            if worst is None:
                continue
            base = undefended and subject.get("defence")
            base_worst = _card_result(undefended, threat, eps, "ensemble") if base else None
            ratio = worst["rmse"] / paper["rmse"] if paper else math.nan
            cells = [label, threat, f"{eps:g}", _format(subject["clean"]["rmse"])]
            cells += [_format(paper["rmse"] if paper else None), _format(worst["rmse"])]
            cells += [_format(ratio, 2), _format(base_worst["rmse"] if base_worst else None)]
            cells += [max(wins, key=wins.get), flags]
            lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def write(
    eval_config: ml_collections.ConfigDict,
    results_dir: paths.PathLike,
    report_path: paths.PathLike,
    context: Mapping[str, Any],
) -> paths.Path:
    """Writes report.md at report_path (and its PNG figures beside it) from the results of
    `evaluate.run` in results_dir, made with the same eval_config; returns report_path."""
    check_eval_config(eval_config)
    _check_context(context)
    results_dir, report_path = paths.as_path(results_dir), paths.as_path(report_path)
    info = _read_run_info(results_dir)
    _check_same_config(eval_config, info, results_dir)
    summary = results.aggregate(results.read_rows(results_dir / results.PER_IMAGE_FILE))
    figures_path = results_dir / results.FIGURES_FILE
    figure_arrays = None
    if figures_path.is_file():
        with np.load(io.BytesIO(figures_path.read_bytes())) as arrays:
            figure_arrays = dict(arrays)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    lines = _header(context, info, results_dir)
    if context.get("stage_times"):
        lines += _stage_times_section(context["stage_times"])
    lines += _premises_section(summary)
    lines += ["## Summary: which findings hold on this run", ""]
    lines += [f"- {line}" for line in findings.derive(summary)] + [""]
    if context.get("robustness_card"):
        lines += _adaptive_section(context["robustness_card"])
    for table in (t for t in TABLES if t in eval_config.tables):
        lines += _section(table, summary, info, context, report_path.parent, figure_arrays)
    # a crash leaves the previous report, never half of one
    paths.write_text_atomic(report_path, "\n".join(lines))
    return report_path
