"""The robustness card: card.json and card.md, every number recomputed from per-image rows.

`build_card(rows, rconfig, context, timing)` aggregates the rows with the evaluation's
protocol (`evaluation.results.aggregate`: each metric the mean over images, RMSE the square
root of the mean per-image MSE), counts per-attack wins from the worst-case rows'
'won_by:<member>' values and evaluates the diagnostics (`attacks.diagnostics`) on the
aggregates; a subject with any flag is marked as flagged. `write_card` writes
per_image.jsonl, card.json and card.md into one folder and returns the card built from the
file it just wrote.
"""

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from mde_adv import attacks, paths
from mde_adv.attacks import diagnostics
from mde_adv.evaluation import results
from mde_adv.normalization import IMAGENET_STD
from mde_adv.robustness import evaluate as ev
from mde_adv.robustness.config import threat_models

CARD_JSON = "card.json"
CARD_MD = "card.md"
METRICS = results.DEPTH_METRICS
GRADIENT_MEMBERS = ("ifgsm", "apgd")
TRANSFER_MEMBERS = ("ifgsm via N", "apgd via N")


def eps_in_pixels(eps: float, space: str) -> dict[str, Any]:
    """The [0, 1]-pixel equivalent of a radius: per-channel radii and the inscribed ball."""
    if space == "pixel":
        return {"per_channel": [eps] * 3, "inscribed": eps}
    per_channel = [float(eps * s) for s in IMAGENET_STD]
    inscribed = float(attacks.inscribed_eps(eps, from_space="normalised", to_space="pixel"))
    return {"per_channel": per_channel, "inscribed": inscribed}


def _summaries(rows: Sequence[results.Row]) -> dict[tuple, results.Row]:
    return {tuple(s[f] for f in results.KEY_FIELDS): s for s in results.aggregate(rows)}


def _metrics(summary: results.Row) -> dict[str, float]:
    return {name: summary[name] for name in (*METRICS, "images")}


def _win_counts(rows, subject: str, setting: str, names: Sequence[str]) -> dict[str, int]:
    method = ev.method_label(subject, ev.WORST)
    chosen = [r for r in rows if r["setting"] == setting and r["method"] == method]
    return {name: int(sum(r[f"won_by:{name}"] for r in chosen)) for name in names}


def _threat_diagnostics(rconfig, subject, threat, error, clean, defence) -> list:
    diag, tag = rconfig.diagnostics, ev.threat_label(threat)
    tol = float(diag.tolerance)

    def member(eps, name):
        return error(
            (ev.TABLE, ev.setting_label(threat, float(eps)), ev.method_label(subject, name))
        )

    def budget(eps, steps):
        return error((ev.DIAGNOSTICS_TABLE, f"{ev.setting_label(threat, eps)} T={steps}", subject))

    points = [(0.0, clean)] + [(float(e), member(e, ev.WORST)) for e in threat.eps]
    found = [diagnostics.non_decreasing(f"non_decreasing_in_eps[{tag}]", points, tol)]
    largest = float(max(threat.eps))
    steps = [(int(t), budget(largest, int(t))) for t in diag.steps]
    steps.append((int(rconfig.apgd.steps), member(largest, "apgd")))
    found.append(diagnostics.non_decreasing(f"non_decreasing_in_steps[{tag}]", steps, tol))
    large = float(diag.large_eps)
    sanity = diagnostics.large_eps(
        clean, budget(large, int(rconfig.apgd.steps)), large, float(diag.large_eps_factor)
    )
    found.append(_renamed(sanity, f"large_eps[{tag}]"))
    checks = {"gradient_free_wins": {}, "transfer_wins": {}}
    transfer = defence and rconfig.transfer
    for eps in threat.eps:
        names = ["square", *GRADIENT_MEMBERS] + (list(TRANSFER_MEMBERS) if transfer else [])
        errors = {name: member(eps, name) for name in names}
        checks["gradient_free_wins"][f"{float(eps):g}"] = diagnostics.not_beaten(
            "gradient_free_wins", "square", errors, GRADIENT_MEMBERS, tol
        )
        if transfer:
            strongest = max(TRANSFER_MEMBERS, key=lambda n: errors[n])
            checks["transfer_wins"][f"{float(eps):g}"] = diagnostics.not_beaten(
                "transfer_wins", strongest, errors, GRADIENT_MEMBERS, tol
            )
    for name, parts in checks.items():
        if parts:
            rule = next(iter(parts.values())).rule + " at any ε"
            flag = any(d.flag for d in parts.values())
            values = {eps: d.values for eps, d in parts.items()}
            found.append(diagnostics.Diagnostic(f"{name}[{tag}]", flag, values, rule))
    return found


def _subject_diagnostics(rconfig, subject, summaries, rows, defence) -> list:
    error = lambda key: summaries[key][rconfig.criterion]
    clean = error((ev.TABLE, ev.CLEAN, ev.method_label(subject, ev.CLEAN)))
    shares = [
        r["zero_share"]
        for r in rows
        if (r["table"], r["setting"], r["method"])
        == (ev.DIAGNOSTICS_TABLE, ev.ZERO_GRADIENTS, subject)
    ]
    max_share = float(rconfig.diagnostics.zero_gradient_max_share)
    found = [diagnostics.zero_gradients(shares, max_share)]
    for threat in threat_models(rconfig):
        found += _threat_diagnostics(rconfig, subject, threat, error, clean, defence)
    return found


def _renamed(diagnostic: diagnostics.Diagnostic, name: str) -> diagnostics.Diagnostic:
    return diagnostics.Diagnostic(name, diagnostic.flag, diagnostic.values, diagnostic.rule)


def _conventions(rconfig, context, images) -> dict[str, Any]:
    threats = []
    for threat in threat_models(rconfig):
        threats.append(
            {
                "norm": threat.norm,
                "eps_space": threat.space,
                "eps": [float(e) for e in threat.eps],
                "eps_in_pixels": {
                    f"{float(e):g}": eps_in_pixels(float(e), threat.space) for e in threat.eps
                },
            }
        )
    return {
        "threat_models": threats,
        "loss": rconfig.loss,
        "criterion": rconfig.criterion,
        "attacks": {
            "ifgsm": {"steps": int(rconfig.ifgsm.steps), "alpha": float(rconfig.ifgsm.alpha)},
            "apgd": {
                "steps": int(rconfig.apgd.steps),
                "restarts": int(rconfig.apgd.restarts),
                "alpha": "2ε initially, halved at checkpoints",
                "momentum": 0.75,
            },
            "square": {"steps": int(rconfig.square.steps), "p_init": attacks.square.P_INIT},
            "transfer": bool(rconfig.transfer),
        },
        "images": images,
        "seed": int(rconfig.seed),
        **dict(context),
    }


def build_card(
    rows: Sequence[results.Row],
    rconfig: ml_collections.ConfigDict,
    context: Mapping[str, Any],
    timing: Mapping[tuple, Mapping[str, Any]],
    subjects: Mapping[str, bool],
) -> dict[str, Any]:
    """The card of `rows`; subjects {label: is a defence (has transfer members)}."""
    summaries = _summaries(rows)
    images = len({r["position"] for r in rows})
    card = {"conventions": _conventions(rconfig, context, images), "subjects": {}}
    for subject, defence in subjects.items():
        clean = summaries[(ev.TABLE, ev.CLEAN, ev.method_label(subject, ev.CLEAN))]
        entries, wins = [], {}
        for threat in threat_models(rconfig):
            names = [m.name for m in ev.members(rconfig, threat, defence)]
            paper = "ifgsm via N" if defence and rconfig.transfer else "ifgsm"
            for eps in threat.eps:
                setting = ev.setting_label(threat, float(eps))
                for attack in (*names, ev.WORST):
                    summary = summaries[(ev.TABLE, setting, ev.method_label(subject, attack))]
                    attack_set = {paper: "paper", "apgd": "apgd", ev.WORST: "ensemble"}
                    entries.append(
                        {
                            "threat_model": ev.threat_label(threat),
                            "eps": float(eps),
                            "attack": attack,
                            "attack_set": attack_set.get(attack, "member"),
                            "alpha": summary["alpha"],
                            "steps": summary["steps"],
                            **_metrics(summary),
                        }
                    )
                wins[setting] = _win_counts(rows, subject, setting, names)
        found = _subject_diagnostics(rconfig, subject, summaries, rows, defence)
        flags = [d.name for d in found if d.flag]
        card["subjects"][subject] = {
            "defence": defence,
            "clean": _metrics(clean),
            "results": entries,
            "win_counts": wins,
            "diagnostics": [d.to_dict() for d in found],
            "flagged": flags,
            "seconds_per_image": {
                f"{threat}: {member}": value
                for (label, threat, member), value in timing.items()
                if label == subject
            },
        }
    return card


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "—" if not math.isfinite(value) else f"{value:.3f}"
    return str(value)


def card_markdown(card: Mapping[str, Any]) -> str:
    """card.md: conventions, one table per subject, win counts, diagnostics, timing."""
    conv = card["conventions"]
    lines = ["# Robustness card", ""]
    for threat in conv["threat_models"]:
        pixels = []
        for eps, value in threat["eps_in_pixels"].items():
            channels = ", ".join(f"{c:.4f}" for c in value["per_channel"])
            pixels.append(f"ε={eps}: {value['inscribed']:.4f} (per channel {channels})")
        pixels = "; ".join(pixels)
        lines.append(
            f"- threat model {threat['norm']}, ε in {threat['eps_space']} units {threat['eps']}; "
            f"in [0, 1] pixels: {pixels}"
        )
    a = conv["attacks"]
    lines += [
        f"- loss {conv['loss']} vs the ground truth, untargeted; worst case per image by "
        f"{conv['criterion']}",
        f"- IFGSM T={a['ifgsm']['steps']} α={a['ifgsm']['alpha']:g} (the paper's); APGD "
        f"T={a['apgd']['steps']}, {a['apgd']['restarts']} restarts, α {a['apgd']['alpha']}, "
        f"momentum {a['apgd']['momentum']}; square search {a['square']['steps']} queries, "
        f"p_init {a['square']['p_init']}; transfer from N for defences: {a['transfer']}",
        f"- images: {conv['images']}; seed {conv['seed']}",
    ]
    for key in ("dataset", "checkpoints", "scores"):
        if key in conv:
            lines.append(f"- {key}: {json.dumps(conv[key], ensure_ascii=False)}")
    for subject, entry in card["subjects"].items():
        flag = f" — **flagged: {', '.join(entry['flagged'])}**" if entry["flagged"] else ""
        lines += ["", f"## {subject}{flag}", ""]
        lines.append("| threat model | ε | attack | set | " + " | ".join(METRICS) + " |")
        lines.append("|---|---:|---|---|" + "---:|" * len(METRICS))
        clean = entry["clean"]
        lines.append(
            "| clean | 0 | none | — | " + " | ".join(_number(clean[m]) for m in METRICS) + " |"
        )
        for row in entry["results"]:
            lines.append(
                f"| {row['threat_model']} | {row['eps']:g} | {row['attack']} | "
                f"{row['attack_set']} | " + " | ".join(_number(row[m]) for m in METRICS) + " |"
            )
        lines += ["", "Wins of the worst case per attack (images): "]
        for setting, counts in entry["win_counts"].items():
            lines.append(f"- {setting}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        lines += ["", "| diagnostic | flag | rule | numbers |", "|---|---|---|---|"]
        for d in entry["diagnostics"]:
            numbers = json.dumps(d["values"], ensure_ascii=False, default=_number)
            flag = "**FLAG**" if d["flag"] else "ok"
            lines.append(f"| {d['name']} | {flag} | {d['rule']} | `{numbers}` |")
        lines += ["", "| attack | seconds per image |", "|---|---:|"]
        for name, value in entry["seconds_per_image"].items():
            note = " (includes compilation)" if value["includes_compile"] else ""
            lines.append(f"| {name} | {value['seconds_per_image']:.4f}{note} |")
    return "\n".join(lines) + "\n"


def _clean_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def write_card(
    rows: Sequence[results.Row],
    out_dir: paths.PathLike,
    rconfig: ml_collections.ConfigDict,
    context: Mapping[str, Any],
    timing: Mapping[tuple, Mapping[str, Any]],
    subjects: Mapping[str, bool],
) -> dict[str, Any]:
    """Writes per_image.jsonl, then card.json and card.md built from that file; returns the
    card."""
    out_dir = paths.as_path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / results.PER_IMAGE_FILE
    results.write_rows(rows, path)
    card = build_card(results.read_rows(path), rconfig, context, timing, subjects)
    text = json.dumps(_clean_json(card), indent=1, ensure_ascii=False, allow_nan=False)
    paths.write_text_atomic(out_dir / CARD_JSON, text)
    paths.write_text_atomic(out_dir / CARD_MD, card_markdown(card))
    return card
