"""The report's summary: which of the paper's findings hold on this run, derived from the
aggregated numbers only (nothing is written in advance).

Criterion of "defends": a method recovers at least RECOVERY_THRESHOLD of the RMSE increase
that the attack causes on N, i.e. (RMSE N(x*) − RMSE M(x*)) / (RMSE N(x*) − RMSE N(x)).
"Raises", "grows", "hurts more", "exceeds", "better" and "breaks" need a MATERIAL margin
(relative for RMSE, in share points for energy shares): a ×1.00 change is not a finding.

Premises (`premises`): a finding about N needs N to beat the room-layout prior (the per-pixel
mean map of the baselines) by the material margin; one about a mask needs that mask to be
real (mean value in [MASK_MIN, MASK_MAX], not uniform: a mean within-image standard deviation
of at least MASK_MIN_SPREAD, and N(x⊗G(x)) materially better than the constant baseline);
one about a defence needs the attack to raise N's RMSE materially. A finding whose premise fails,
or cannot be checked, reads "not assessable (reason)" instead of a verdict; every verdict names
the premises it stands on.
"""

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence

from mde_adv.paper_numbers import PAPER

RECOVERY_THRESHOLD = 0.5
MATERIAL = 0.05
MASK_MIN, MASK_MAX = 0.01, 0.99
MASK_MIN_SPREAD = 0.01  # a mask whose pixels differ by less selects nothing: it only dims
DEPTH_PREMISES = ("N", "N_adv")
MASK_PREMISES = ("G", "G_adv", "G_adv_drn_d_38", "G_adv_drn_d_54")

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


@dataclasses.dataclass(frozen=True)
class Premise:
    """A condition findings stand on: holds True/False, or None when this run has no rows to
    check it; reason states the numbers."""

    name: str
    holds: bool | None
    reason: str


def _baseline(lookup: Lookup, name: str) -> float | None:
    return _value(lookup, ("baselines", "clean", name))


def _depth_premise(lookup: Lookup, net: str) -> Premise:
    clean = clean_rmse(lookup) if net == "N" else _value(lookup, ("table2", "clean", f"{net}(x)"))
    prior = _baseline(lookup, "per-pixel mean map")
    if clean is None or prior is None:
        missing = "its clean RMSE" if clean is None else "the layout-prior baseline"
        return Premise(net, None, f"{net} unchecked: no rows for {missing}")
    ratio = clean / prior
    holds = clean < prior * (1 - MATERIAL)
    verb = "beats" if holds else "does not beat"
    return Premise(
        net,
        holds,
        f"{net}(x) RMSE {clean:.3f} {verb} the per-pixel mean map {prior:.3f} (×{ratio:.2f})",
    )


def mask_rows(lookup: Lookup, net: str) -> tuple[list[Mapping], list[Mapping]]:
    """(clean, attacked) rows carrying the mask statistics of `net`: clean ones have ε = 0 or
    take the mask from the clean x; the others take it from an attacked input."""
    rows = [row for (_, _, m), row in lookup.items() if "mask_mean" in row and f"⊗{net}(" in m]
    clean = [r for r in rows if r["eps"] == 0 or r["method"].endswith(f"⊗{net}(x))")]
    return clean, [r for r in rows if r not in clean]


def _mask_premise(lookup: Lookup, net: str) -> Premise:
    clean_rows, attacked_rows = mask_rows(lookup, net)
    clean = bool(clean_rows)
    rows = clean_rows if clean else attacked_rows
    if not rows:
        return Premise(net, None, f"{net} unchecked: no rows with its mask")
    mean = sum(r["mask_mean"] for r in rows) / len(rows)
    where = "" if clean else " under attack"
    reasons, holds = [f"{net}'s mask mean {mean:.3f}{where}"], MASK_MIN <= mean <= MASK_MAX
    if not holds:
        reasons[0] += f" (degenerate: outside [{MASK_MIN}, {MASK_MAX}])"
    spreads = [r["mask_spread"] for r in rows if "mask_spread" in r]
    if spreads:
        spread = sum(spreads) / len(spreads)
        reasons[0] += f", within-image std {spread:.3f}"
        if spread < MASK_MIN_SPREAD:
            holds = False
            reasons[0] += f" (degenerate: uniform, below {MASK_MIN_SPREAD})"
    masked = [r["rmse"] for r in rows if r["eps"] == 0 and math.isfinite(r.get("rmse", math.nan))]
    constant = _baseline(lookup, "constant")
    if masked and constant is not None:
        better = masked[0] < constant * (1 - MATERIAL)
        holds = holds and better
        verb = "beats" if better else "does not beat"
        reasons.append(f"N(x⊗{net}(x)) RMSE {masked[0]:.3f} {verb} the constant {constant:.3f}")
    elif clean:
        return Premise(net, None, f"{net} unchecked: no constant baseline or clean RMSE")
    return Premise(net, holds, ", ".join(reasons))


def premises(lookup: Lookup) -> dict[str, Premise]:
    """The premises of DEPTH_PREMISES and MASK_PREMISES that this run's networks have."""
    found = {net: _depth_premise(lookup, net) for net in DEPTH_PREMISES}
    found.update({net: _mask_premise(lookup, net) for net in MASK_PREMISES})
    methods = {m for (_, _, m) in lookup}

    def used(net: str) -> bool:
        if net in DEPTH_PREMISES:
            return net == "N" or any(m.startswith(f"{net}(") for m in methods)
        return any(f"⊗{net}(" in m for m in methods)

    return {net: premise for net, premise in found.items() if used(net)}


class Judge:
    """Turns a finding into its line: a verdict naming its premises, or "not assessable"."""

    def __init__(self, lookup: Lookup):
        self.premises = premises(lookup)

    def blocked(self, needs: Sequence[str]) -> str | None:
        """The reason a finding needing `needs` cannot be assessed, or None."""
        reasons = []
        for net in needs:
            premise = self.premises.get(net)
            if premise is None:
                reasons.append(f"{net} unchecked: no rows")
            elif premise.holds is not True:
                reasons.append(premise.reason)
        return "; ".join(reasons) or None

    def line(self, statement: str, needs: Sequence[str], verdict: str, detail: str) -> str:
        reason = self.blocked(needs)
        if reason is not None:
            return f"{statement}: not assessable ({reason})."
        return f"{statement}: {verdict} — {detail} [premises: {', '.join(needs)}]."

    def not_assessable(self, statement: str, reason: str) -> str:
        return f"{statement}: not assessable ({reason})."


def _mask_of(method: str) -> list[str]:
    """The saliency networks a method label uses."""
    return [net for net in MASK_PREMISES if f"⊗{net}(" in method]


def _attack_effect(judge: Judge, lookup: Lookup, table: str, clean_key, name: str) -> list[str]:
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
    verdict = _yes(all(r > 1 + MATERIAL for r in ratios))
    return [
        judge.line(f"{name} raises N's RMSE", ["N"], verdict, f"{', '.join(parts)}{paper_text}")
    ]


def _needs(method: str) -> list[str]:
    """Premises of a finding about `method`: N, and the networks the method uses."""
    depth = [net for net in DEPTH_PREMISES if method.startswith(f"{net}(") and net != "N"]
    return ["N", *depth, *_mask_of(method)]


def _defence(judge: Judge, lookup: Lookup, table: str, clean_key, method: str, name: str):
    settings = _settings(lookup, table, method)
    if not settings:
        return []
    clean = _value(lookup, clean_key)
    statement = f"{name} defends"
    found, paper_found = [], []
    for setting in settings:
        attacked_key = (table, setting, "N(x*)")
        found.append(
            recovery(clean, _value(lookup, attacked_key), _value(lookup, (table, setting, method)))
        )
        paper_found.append(
            recovery(_paper(clean_key), _paper(attacked_key), _paper((table, setting, method)))
        )
    if any(r is None for r in found):
        weak = [s for s, r in zip(settings, found, strict=True) if r is None]
        reason = judge.blocked(_needs(method))
        return [
            judge.not_assessable(
                statement,
                reason or f"the attack did not raise N's RMSE materially at {', '.join(weak)}",
            )
        ]
    verdict = _yes(all(r >= RECOVERY_THRESHOLD for r in found))
    paper_text = ""
    if all(r is not None for r in paper_found):
        paper_text = f" (paper: {', '.join(_pct(r) for r in paper_found)})"
    detail = (
        f"recovers {', '.join(_pct(r) for r in found)} of N's RMSE increase at "
        f"{', '.join(settings)}{paper_text}"
    )
    return [judge.line(statement, _needs(method), verdict, detail)]


def _compare(judge: Judge, lookup, table, better: str, worse: str, statement: str) -> list[str]:
    settings = [s for s in _settings(lookup, table, better) if (table, s, worse) in lookup]
    if not settings:
        return []
    wins = [
        _value(lookup, (table, s, better)) < _value(lookup, (table, s, worse)) * (1 - MATERIAL)
        for s in settings
        if _value(lookup, (table, s, better)) is not None
        and _value(lookup, (table, s, worse)) is not None
    ]
    needs = list(dict.fromkeys([*_needs(better), *_needs(worse)]))
    verdict = _yes(bool(wins) and all(wins))
    detail = f"materially lower RMSE at {sum(wins)} of {len(settings)} ε"
    return [judge.line(statement, needs, verdict, detail)]


def _defence_aware(judge: Judge, lookup: Lookup) -> list[str]:
    lines = []
    table = "defence_aware"
    for saliency in ("G", "G_adv"):
        method = f"N(x**⊗{saliency}(x**))"
        reference = f"N(x*⊗{saliency}(x*))"
        clean = _value(lookup, (table, "ε=0", "N(x*)"))
        rates, raised, settings = [], [], _settings(lookup, table, method)
        if not settings:
            continue
        statement = f"x** = Adv(x; N(x⊗{saliency}(x))) breaks the defence N(x⊗{saliency}(x))"
        materially_raised = []
        for setting in settings:
            attacked = _value(lookup, (table, setting, "N(x*)"))
            under_x2 = _value(lookup, (table, setting, method))
            rates.append(recovery(clean, attacked, under_x2))
            under_x1 = _value(lookup, (table, setting, reference))
            if under_x1 is not None and under_x2 is not None:
                raised.append(f"{under_x1:.3f} → {under_x2:.3f}")
                materially_raised.append(_clearly_above(under_x2, under_x1))
        needs = ["N", saliency]
        if any(r is None for r in rates):
            reason = judge.blocked(needs) or "the attack did not raise N's RMSE materially"
            lines.append(judge.not_assessable(statement, reason))
            continue
        breaks = all(r < RECOVERY_THRESHOLD for r in rates) and all(materially_raised)
        detail = (
            f"the pipeline recovers {', '.join(_pct(r) for r in rates)} of N's RMSE increase "
            f"at {', '.join(settings)}"
            + (f"; its RMSE under x* → x**: {', '.join(raised)}" if raised else "")
        )
        lines.append(judge.line(statement, needs, _yes(breaks), detail))
    return lines


def _table3(judge: Judge, lookup: Lookup) -> list[str]:
    clean = clean_rmse(lookup)
    settings = _settings(lookup, "table3", "N(x*)")
    if clean is None or not settings:
        return []
    ratios = [_value(lookup, ("table3", s, "N(x*)")) / clean for s in settings]
    listing = ", ".join(
        f"{s.removeprefix('loss=')} ×{r:.2f}" for s, r in zip(settings, ratios, strict=True)
    )
    verdict = _yes(all(r > 1 + MATERIAL for r in ratios))
    lines = [judge.line("Every attack loss raises N's RMSE", ["N"], verdict, listing)]
    rates = [
        recovery(
            clean,
            _value(lookup, ("table3", s, "N(x*)")),
            _value(lookup, ("table3", s, "N(x*⊗G_adv(x*))")),
        )
        for s in settings
    ]
    if ("table3", settings[0], "N(x*⊗G_adv(x*))") not in lookup:
        return lines
    statement = "G_adv defends against every loss"
    if any(r is None for r in rates):
        reason = judge.blocked(["N", "G_adv"]) or "an attack did not raise N's RMSE materially"
        return [*lines, judge.not_assessable(statement, reason)]
    verdict = _yes(all(r >= RECOVERY_THRESHOLD for r in rates))
    detail = f"recovers {', '.join(_pct(r) for r in rates)}"
    return [*lines, judge.line(statement, ["N", "G_adv"], verdict, detail)]


def _table4(judge: Judge, lookup: Lookup) -> list[str]:
    rows = [(m, _value(lookup, (t, s, m))) for (t, s, m) in lookup if t == "table4"]
    rows = [(m, v) for m, v in rows if v is not None]
    if len(rows) < 2:
        return []
    deeper_better = all(b < a * (1 - MATERIAL) for (_, a), (_, b) in itertools.pairwise(rows))
    listing = ", ".join(f"{m} {v:.3f}" for m, v in rows)
    needs = list(dict.fromkeys(["N", *(net for m, _ in rows for net in _mask_of(m))]))
    return [
        judge.line(
            "Deeper G_adv encoders give materially lower RMSE", needs, _yes(deeper_better), listing
        )
    ]


def _fig5(judge: Judge, lookup: Lookup) -> list[str]:
    lines = []
    for method in ("N(x*)", "N(x*⊗G_adv(x*))"):
        points = sorted(
            (row["steps"], row["rmse"])
            for (t, _, m), row in lookup.items()
            if t == "fig5" and m == method and math.isfinite(row.get("rmse", math.nan))
        )
        if len(points) >= 2:
            spread = max(v for _, v in points) - min(v for _, v in points)
            detail = f"{points[0][1]:.3f} → {points[-1][1]:.3f} (range over T {spread:.3f})"
            lines.append(
                judge.line(
                    f"{method} RMSE grows from T={points[0][0]} to T={points[-1][0]}",
                    _needs(method),
                    _yes(_clearly_above(points[-1][1], points[0][1])),
                    detail,
                )
            )
    return lines


def _regions(judge: Judge, lookup: Lookup) -> list[str]:
    table = "salient_regions"
    everywhere = _value(lookup, (table, "all pixels", "N(x*)"))
    salient = _value(lookup, (table, "salient only", "N(x*)"))
    non_salient = _value(lookup, (table, "non-salient only", "N(x*)"))
    region_net = (
        next((row.get("region_net") for (t, _, _), row in lookup.items() if t == table), None)
        or "G"
    )
    needs = ["N", region_net]
    lines = []
    if salient is not None and non_salient is not None:
        lines.append(
            judge.line(
                "The same ε on non-salient pixels only hurts N more than on salient pixels only",
                needs,
                _yes(_clearly_above(non_salient, salient)),
                f"RMSE {non_salient:.3f} vs {salient:.3f}"
                + (f" (whole image {everywhere:.3f})" if everywhere is not None else ""),
            )
        )
    energy = lookup.get((table, "all pixels", "energy in non-salient pixels"))
    if energy is not None:
        area, gradient = energy["area_share"], energy["gradient_share"]
        lines.append(
            judge.line(
                "Input-gradient energy in non-salient pixels exceeds their area share",
                needs,
                _yes(gradient > area + MATERIAL),
                f"{_pct(gradient)} of the energy on {_pct(area)} of the pixels; the "
                f"whole-image perturbation puts {_pct(energy['perturbation_share'])} of its "
                "energy there",
            )
        )
    return lines


def _targeted(judge: Judge, lookup: Lookup) -> list[str]:
    rows = [row for (t, _, _), row in lookup.items() if t == "targeted" and "depth_ratio" in row]
    lines = []
    for row in rows:
        moved = row["target_rmse"] < row["clean_target_rmse"] * (1 - MATERIAL)
        lines.append(
            judge.line(
                f"Targeted attack ({row['setting']}) moves N towards its target",
                ["N"],
                _yes(moved),
                f"mean N(x*)/N(x) {row['depth_ratio']:.3f}; RMSE to the target "
                f"{row['clean_target_rmse']:.3f} → {row['target_rmse']:.3f} m",
            )
        )
    return lines


def _noise(judge: Judge, lookup: Lookup) -> list[str]:
    """IFGSM (Table 2) against random noise of the same ε (section 'noise'): the attack's
    effect is the gradient's doing only where it is materially above the noise's."""
    clean = _value(lookup, ("table2", "clean", "N(x)"))
    common = [s for s in _settings(lookup, "noise", "N(x*)") if ("table2", s, "N(x*)") in lookup]
    if clean is None or not common:
        return []
    noise = {s: _value(lookup, ("noise", s, "N(x*)")) for s in common}
    ifgsm = {s: _value(lookup, ("table2", s, "N(x*)")) for s in common}
    detail = ", ".join(
        f"×{ifgsm[s] / clean:.2f} vs noise ×{noise[s] / clean:.2f} at {s}" for s in common
    )
    verdict = _yes(all(_clearly_above(ifgsm[s], noise[s]) for s in common))
    statement = "IFGSM raises N's RMSE materially more than random noise of the same ε"
    return [judge.line(statement, ["N"], verdict, detail)]


def _variants(judge: Judge, lookup: Lookup) -> list[str]:
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
    if (table, attacks[0], "N(x*⊗G_adv(x*))") not in lookup:
        return lines
    rates = [
        recovery(clean, values[a], _value(lookup, (table, a, "N(x*⊗G_adv(x*))"))) for a in attacks
    ]
    statement = "G_adv defends against every attack variant"
    if any(r is None for r in rates):
        reason = judge.blocked(["N", "G_adv"]) or "an attack did not raise N's RMSE materially"
        return [*lines, judge.not_assessable(statement, reason)]
    verdict = _yes(all(r >= RECOVERY_THRESHOLD for r in rates))
    detail = "recovers " + ", ".join(f"{a} {_pct(r)}" for a, r in zip(attacks, rates, strict=True))
    return [*lines, judge.line(statement, ["N", "G_adv"], verdict, detail)]


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


def premise_lines(summary: Sequence[Mapping]) -> list[str]:
    """One line per premise: holds / fails / unchecked, with its numbers."""
    status = {True: "holds", False: "FAILS", None: "unchecked"}
    return [
        f"{p.name}: {status[p.holds]} — {p.reason}."
        for p in premises(make_lookup(summary)).values()
    ]


def derive(summary: Sequence[Mapping]) -> list[str]:
    """The findings (one sentence each) that the rows of `summary` allow."""
    lookup = make_lookup(summary)
    judge = Judge(lookup)
    lines = []
    lines += _attack_effect(judge, lookup, "table1", ("table1", "ε=0", "N(x*)"), "FGSM")
    lines += _attack_effect(judge, lookup, "table2", ("table2", "clean", "N(x)"), "IFGSM")
    lines += _noise(judge, lookup)
    t1_clean, t2_clean = ("table1", "ε=0", "N(x*)"), ("table2", "clean", "N(x)")
    for table, clean, method, name in (
        ("table1", t1_clean, "N(x*⊗G(x*))", "FGSM: the G(x*) mask"),
        ("table1", t1_clean, "N(x*⊗G(x))", "FGSM: the G(x) mask (oracle)"),
        ("table2", t2_clean, "N(x*⊗G(x))", "IFGSM: the G(x) mask (oracle)"),
        ("table2", t2_clean, "N(x*⊗G_adv(x*))", "IFGSM: the G_adv(x*) mask"),
        ("table2", t2_clean, "N_adv(x*)", "IFGSM: N_adv"),
    ):
        lines += _defence(judge, lookup, table, clean, method, name)
    lines += _compare(
        judge, lookup, "fig4", "N(x*⊗G_adv(x*))", "N(x*⊗G(x*))", "FGSM: G_adv(x*) better than G(x*)"
    )
    lines += _compare(
        judge,
        lookup,
        "table2",
        "N(x*⊗G_adv(x*))",
        "N_adv(x*)",
        "IFGSM: N(x*⊗G_adv(x*)) better than N_adv(x*)",
    )
    lines += _defence_aware(judge, lookup)
    lines += _table3(judge, lookup)
    lines += _table4(judge, lookup)
    lines += _fig5(judge, lookup)
    lines += _variants(judge, lookup)
    lines += _regions(judge, lookup)
    lines += _targeted(judge, lookup)
    lines += _log10(summary)
    return lines
