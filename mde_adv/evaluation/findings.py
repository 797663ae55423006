"""The report's summary: which of the paper's findings hold on this run, derived from the
aggregated numbers only (nothing is written in advance).

Criterion of "defends": a method recovers at least RECOVERY_THRESHOLD of the RMSE increase
that the attack causes on N, i.e. (RMSE N(x*) − RMSE M(x*)) / (RMSE N(x*) − RMSE N(x)).
"Raises", "grows", "hurts more" and "exceeds" need a MATERIAL margin (relative for RMSE, in
share points for energy shares): a ×1.00 change is not a finding.
"""

import itertools
import math
from collections.abc import Mapping, Sequence

from mde_adv.paper_numbers import PAPER

RECOVERY_THRESHOLD = 0.5
MATERIAL = 0.05

Lookup = Mapping[tuple[str, str, str], Mapping]


def make_lookup(summary: Sequence[Mapping]) -> dict[tuple[str, str, str], Mapping]:
    return {(row["table"], row["setting"], row["method"]): row for row in summary}


def _value(lookup: Lookup, key: tuple[str, str, str], name: str = "rmse") -> float | None:
    row = lookup.get(key)
    if row is None or name not in row or not math.isfinite(row[name]):
        return None
    return float(row[name])


def _paper(key: tuple[str, str, str]) -> float | None:
    table, setting, method = key
    return PAPER.get(table, {}).get((setting, method), {}).get("rmse")


def recovery(clean: float | None, attacked: float | None, defended: float | None) -> float | None:
    """Share of N's RMSE increase (clean → attacked) that a defence removes; None when the
    attack did not raise the error materially or a value is missing."""
    if None in (clean, attacked, defended) or not _clearly_above(attacked, clean):
        return None
    return (attacked - defended) / (attacked - clean)


def _clearly_above(value: float, reference: float) -> bool:
    return value > reference * (1 + MATERIAL)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _settings(lookup: Lookup, table: str, method: str) -> list[str]:
    """Settings of `table` with a row for `method`, in order, attacked ones (ε > 0) only."""
    return [s for (t, s, m), row in lookup.items() if t == table and m == method and row["eps"] > 0]


def clean_rmse(lookup: Lookup) -> float | None:
    """RMSE of N on the clean images, from whichever section computed it."""
    for key in (
        ("table2", "clean", "N(x)"),
        ("table1", "ε=0", "N(x*)"),
        ("fig4", "ε=0", "N(x*)"),
        ("defence_aware", "ε=0", "N(x*)"),
    ):
        if (value := _value(lookup, key)) is not None:
            return value
    return None


def _attack_effect(lookup: Lookup, table: str, clean_key, name: str) -> list[str]:
    attacked = _settings(lookup, table, "N(x*)")
    clean, paper_clean = _value(lookup, clean_key), _paper(clean_key)
    if clean is None or not attacked:
        return []
    parts, paper_parts, ratios = [], [], []
    for setting in attacked:
        key = (table, setting, "N(x*)")
        ratio = _value(lookup, key) / clean
        ratios.append(ratio)
        parts.append(f"×{ratio:.2f} at {setting}")
        if (paper := _paper(key)) is not None and paper_clean:
            paper_parts.append(f"×{paper / paper_clean:.2f}")
    paper_text = f" (paper: {', '.join(paper_parts)})" if paper_parts else ""
    return [
        f"{name} raises N's RMSE: {_yes(all(r > 1 + MATERIAL for r in ratios))} — "
        f"{', '.join(parts)}{paper_text}."
    ]


def _defence(lookup: Lookup, table: str, clean_key, method: str, name: str) -> list[str]:
    settings = _settings(lookup, table, method)
    clean = _value(lookup, clean_key)
    found, paper_found = [], []
    for setting in settings:
        attacked_key = (table, setting, "N(x*)")
        found.append(
            recovery(clean, _value(lookup, attacked_key), _value(lookup, (table, setting, method)))
        )
        paper_found.append(
            recovery(_paper(clean_key), _paper(attacked_key), _paper((table, setting, method)))
        )
    if not found or any(r is None for r in found):
        return [] if not found else [f"{name}: not assessable (the attack did not raise N's RMSE)."]
    verdict = all(r >= RECOVERY_THRESHOLD for r in found)
    paper_text = ""
    if all(r is not None for r in paper_found):
        paper_text = f" (paper: {', '.join(_pct(r) for r in paper_found)})"
    return [
        f"{name} defends: {_yes(verdict)} — recovers {', '.join(_pct(r) for r in found)} of "
        f"N's RMSE increase at {', '.join(settings)}{paper_text}."
    ]


def _compare(lookup, table, better: str, worse: str, statement: str) -> list[str]:
    settings = [s for s in _settings(lookup, table, better) if (table, s, worse) in lookup]
    if not settings:
        return []
    wins = [
        _value(lookup, (table, s, better)) < _value(lookup, (table, s, worse))
        for s in settings
        if _value(lookup, (table, s, better)) is not None
        and _value(lookup, (table, s, worse)) is not None
    ]
    return [f"{statement}: {_yes(bool(wins) and all(wins))} — at {sum(wins)} of {len(settings)} ε."]


def _defence_aware(lookup: Lookup) -> list[str]:
    lines = []
    table = "defence_aware"
    for saliency in ("G", "G_adv"):
        method = f"N(x**⊗{saliency}(x**))"
        reference = f"N(x*⊗{saliency}(x*))"
        clean = _value(lookup, (table, "ε=0", "N(x*)"))
        rates, raised, settings = [], [], _settings(lookup, table, method)
        for setting in settings:
            attacked = _value(lookup, (table, setting, "N(x*)"))
            under_x2 = _value(lookup, (table, setting, method))
            rates.append(recovery(clean, attacked, under_x2))
            under_x1 = _value(lookup, (table, setting, reference))
            if under_x1 is not None and under_x2 is not None:
                raised.append(f"{under_x1:.3f} → {under_x2:.3f}")
        if not settings or any(r is None for r in rates):
            continue
        breaks = all(r < RECOVERY_THRESHOLD for r in rates)
        lines.append(
            f"x** = Adv(x; N(x⊗{saliency}(x))) breaks the defence N(x⊗{saliency}(x)): "
            f"{_yes(breaks)} — the pipeline recovers {', '.join(_pct(r) for r in rates)} "
            f"of N's RMSE increase at {', '.join(settings)}"
            + (f"; its RMSE under x* → x**: {', '.join(raised)}" if raised else "")
            + "."
        )
    return lines


def _table3(lookup: Lookup) -> list[str]:
    clean = clean_rmse(lookup)
    settings = _settings(lookup, "table3", "N(x*)")
    if clean is None or not settings:
        return []
    ratios = [_value(lookup, ("table3", s, "N(x*)")) / clean for s in settings]
    lines = [
        f"Every attack loss raises N's RMSE: {_yes(all(r > 1 + MATERIAL for r in ratios))} — "
        + ", ".join(
            f"{s.removeprefix('loss=')} ×{r:.2f}" for s, r in zip(settings, ratios, strict=True)
        )
        + "."
    ]
    rates = [
        recovery(
            clean,
            _value(lookup, ("table3", s, "N(x*)")),
            _value(lookup, ("table3", s, "N(x*⊗G_adv(x*))")),
        )
        for s in settings
    ]
    if rates and all(r is not None for r in rates):
        verdict = all(r >= RECOVERY_THRESHOLD for r in rates)
        lines.append(
            f"G_adv defends against every loss: {_yes(verdict)} — recovers "
            f"{', '.join(_pct(r) for r in rates)}."
        )
    return lines


def _table4(lookup: Lookup) -> list[str]:
    rows = [(m, _value(lookup, (t, s, m))) for (t, s, m) in lookup if t == "table4"]
    rows = [(m, v) for m, v in rows if v is not None]
    if len(rows) < 2:
        return []
    deeper_better = all(b < a for (_, a), (_, b) in itertools.pairwise(rows))
    listing = ", ".join(f"{m} {v:.3f}" for m, v in rows)
    return [f"Deeper G_adv encoders give lower RMSE: {_yes(deeper_better)} — {listing}."]


def _fig5(lookup: Lookup) -> list[str]:
    lines = []
    for method in ("N(x*)", "N(x*⊗G_adv(x*))"):
        points = sorted(
            (row["steps"], row["rmse"])
            for (t, _, m), row in lookup.items()
            if t == "fig5" and m == method and math.isfinite(row.get("rmse", math.nan))
        )
        if len(points) >= 2:
            spread = max(v for _, v in points) - min(v for _, v in points)
            lines.append(
                f"{method} RMSE grows from T={points[0][0]} to T={points[-1][0]}: "
                f"{_yes(_clearly_above(points[-1][1], points[0][1]))} — {points[0][1]:.3f} → "
                f"{points[-1][1]:.3f} (range over T {spread:.3f})."
            )
    return lines


def _regions(lookup: Lookup) -> list[str]:
    table = "salient_regions"
    everywhere = _value(lookup, (table, "all pixels", "N(x*)"))
    salient = _value(lookup, (table, "salient only", "N(x*)"))
    non_salient = _value(lookup, (table, "non-salient only", "N(x*)"))
    lines = []
    if salient is not None and non_salient is not None:
        lines.append(
            "The same ε on non-salient pixels only hurts N more than on salient pixels only: "
            f"{_yes(_clearly_above(non_salient, salient))} — "
            f"RMSE {non_salient:.3f} vs {salient:.3f}"
            + (f" (whole image {everywhere:.3f})" if everywhere is not None else "")
            + "."
        )
    energy = lookup.get((table, "all pixels", "energy in non-salient pixels"))
    if energy is not None:
        area, gradient = energy["area_share"], energy["gradient_share"]
        lines.append(
            f"Input-gradient energy in non-salient pixels exceeds their area share: "
            f"{_yes(gradient > area + MATERIAL)} — {_pct(gradient)} of the energy on "
            f"{_pct(area)} of the pixels; the whole-image perturbation puts "
            f"{_pct(energy['perturbation_share'])} of its energy there."
        )
    return lines


def _targeted(lookup: Lookup) -> list[str]:
    rows = [row for (t, _, _), row in lookup.items() if t == "targeted" and "depth_ratio" in row]
    lines = []
    for row in rows:
        moved = row["target_rmse"] < row["clean_target_rmse"]
        lines.append(
            f"Targeted attack ({row['setting']}) moves N towards its target: {_yes(moved)} — "
            f"mean N(x*)/N(x) {row['depth_ratio']:.3f}; RMSE to the target "
            f"{row['clean_target_rmse']:.3f} → {row['target_rmse']:.3f} m."
        )
    return lines


def _variants(lookup: Lookup) -> list[str]:
    table, clean = "attack_variants", clean_rmse(lookup)
    attacks = [s for (t, s, m) in lookup if t == table and m == "N(x*)"]
    if not attacks:
        return []
    values = {a: _value(lookup, (table, a, "N(x*)")) for a in attacks}
    strongest = max((a for a in attacks if values[a] is not None), key=values.get, default=None)
    lines = [
        "RMSE of N(x*) by attack: "
        + ", ".join(f"{a} {values[a]:.3f}" for a in attacks if values[a] is not None)
        + (f"; strongest: {strongest}." if strongest else ".")
    ]
    rates = [
        recovery(clean, values[a], _value(lookup, (table, a, "N(x*⊗G_adv(x*))"))) for a in attacks
    ]
    if all(r is not None for r in rates):
        verdict = all(r >= RECOVERY_THRESHOLD for r in rates)
        lines.append(
            f"G_adv defends against every attack variant: {_yes(verdict)} — recovers "
            + ", ".join(f"{a} {_pct(r)}" for a, r in zip(attacks, rates, strict=True))
            + "."
        )
    return lines


def _log10(summary: Sequence[Mapping]) -> list[str]:
    per_table: dict[str, list[Mapping]] = {}
    for row in summary:
        if row.get("log10_undefined_images", 0) > 0:
            per_table.setdefault(row["table"], []).append(row)
    if not per_table:
        return ["log10 is defined for every image (no non-positive prediction)."]
    listing = "; ".join(
        f"{table}: {sum(r['log10_undefined_images'] for r in rows)} image evaluations "
        f"({', '.join(dict.fromkeys(r['method'] for r in rows))})"
        for table, rows in per_table.items()
    )
    return [
        "log10 is undefined where a prediction is non-positive; those images are left out of "
        f"the log10 mean (see the tables' counts): {listing}."
    ]


def derive(summary: Sequence[Mapping]) -> list[str]:
    """The findings (one sentence each) that the rows of `summary` allow."""
    lookup = make_lookup(summary)
    lines = []
    lines += _attack_effect(lookup, "table1", ("table1", "ε=0", "N(x*)"), "FGSM")
    lines += _attack_effect(lookup, "table2", ("table2", "clean", "N(x)"), "IFGSM")
    t1_clean, t2_clean = ("table1", "ε=0", "N(x*)"), ("table2", "clean", "N(x)")
    lines += _defence(lookup, "table1", t1_clean, "N(x*⊗G(x*))", "FGSM: the G(x*) mask")
    lines += _defence(lookup, "table1", t1_clean, "N(x*⊗G(x))", "FGSM: the G(x) mask (oracle)")
    lines += _defence(lookup, "table2", t2_clean, "N(x*⊗G(x))", "IFGSM: the G(x) mask (oracle)")
    lines += _defence(lookup, "table2", t2_clean, "N(x*⊗G_adv(x*))", "IFGSM: the G_adv(x*) mask")
    lines += _defence(lookup, "table2", t2_clean, "N_adv(x*)", "IFGSM: N_adv")
    lines += _compare(
        lookup, "fig4", "N(x*⊗G_adv(x*))", "N(x*⊗G(x*))", "FGSM: G_adv(x*) better than G(x*)"
    )
    lines += _compare(
        lookup,
        "table2",
        "N(x*⊗G_adv(x*))",
        "N_adv(x*)",
        "IFGSM: N(x*⊗G_adv(x*)) better than N_adv(x*)",
    )
    lines += _defence_aware(lookup)
    lines += _table3(lookup)
    lines += _table4(lookup)
    lines += _fig5(lookup)
    lines += _variants(lookup)
    lines += _regions(lookup)
    lines += _targeted(lookup)
    lines += _log10(summary)
    return lines
