"""The report's findings refuse to conclude from a broken premise: a constant N, an all-zero
mask, an ineffective attack or missing baselines give "not assessable"; a healthy run gives
verdicts that name their premises."""

import pytest

from mde_adv.evaluation import findings


def _row(table, setting, method, eps, rmse, **extra):
    row = dict(table=table, setting=setting, method=method, eps=eps, steps=10, images=100)
    return dict(row, attack="ifgsm", rmse=rmse, delta1=0.8, rel=0.1, **extra)


def synthetic_summary(
    n_clean=0.7,
    n_attacked=2.0,
    mask_mean=0.2,
    masked_clean=0.8,
    masked_attacked=0.9,
    prior=1.27,
    constant=1.42,
    baselines=True,
    mask_spread=0.1,
):
    """Rows of Table 1/2, Fig. 4 and the defence-aware section with one network each."""
    g = dict(mask_mean=mask_mean, mask_above_half=mask_mean, mask_spread=mask_spread)
    g_adv = dict(mask_mean=0.3, mask_above_half=0.3)
    rows = [
        _row("table1", "ε=0", "N(x*)", 0.0, n_clean),
        _row("table1", "ε=0", "N(x*⊗G(x))", 0.0, masked_clean, **g),
        _row("table1", "ε=0.1", "N(x*)", 0.1, n_attacked),
        _row("table1", "ε=0.1", "N(x*⊗G(x))", 0.1, masked_attacked, **g),
        _row("table2", "clean", "N(x)", 0.0, n_clean),
        _row("table2", "clean", "N(x⊗G_adv(x))", 0.0, 0.8, **g_adv),
        _row("table2", "ε=0.1", "N(x*)", 0.1, n_attacked),
        _row("table2", "ε=0.1", "N(x*⊗G_adv(x*))", 0.1, 0.9, **g_adv),
        _row("fig4", "ε=0.1", "N(x*⊗G(x*))", 0.1, 1.8, **g),
        _row("fig4", "ε=0.1", "N(x*⊗G_adv(x*))", 0.1, 0.9, **g_adv),
        _row("defence_aware", "ε=0", "N(x*)", 0.0, n_clean),
        _row("defence_aware", "ε=0.1", "N(x*)", 0.1, n_attacked),
        _row("defence_aware", "ε=0.1", "N(x*⊗G_adv(x*))", 0.1, 0.9, **g_adv),
        _row("defence_aware", "ε=0.1", "N(x**⊗G_adv(x**))", 0.1, 1.9, **g_adv),
    ]
    if baselines:
        rows += [
            _row("baselines", "clean", "constant", 0.0, constant),
            _row("baselines", "clean", "per-pixel mean map", 0.0, prior),
        ]
    return rows


def _line(lines, start):
    return next(line for line in lines if line.startswith(start))


def test_a_healthy_run_gives_verdicts_with_their_premises():
    lines = findings.derive(synthetic_summary())
    assert not [line for line in lines if "not assessable" in line]
    assert _line(lines, "FGSM raises N's RMSE").startswith("FGSM raises N's RMSE: yes")
    oracle = _line(lines, "FGSM: the G(x) mask (oracle) defends")
    assert "defends: yes" in oracle and "[premises: N, G]" in oracle
    assert "85%" in oracle  # (2.0 - 0.9) / (2.0 - 0.7) of N's RMSE increase
    assert _line(lines, "FGSM: G_adv(x*) better than G(x*)").startswith(
        "FGSM: G_adv(x*) better than G(x*): yes"
    )
    breaks = _line(lines, "x** = Adv(x; N(x⊗G_adv(x)))")
    assert ": yes —" in breaks and "0.900 → 1.900" in breaks
    premises = findings.premise_lines(synthetic_summary())
    assert all(": holds —" in line for line in premises), premises


def test_a_constant_n_makes_every_finding_about_n_not_assessable():
    lines = findings.derive(synthetic_summary(n_clean=1.27, prior=1.27))
    about_n = [line for line in lines if not line.startswith(("log10", "RMSE of N(x*) by"))]
    assert about_n
    for line in about_n:
        assert "not assessable" in line and "does not beat the per-pixel mean map" in line, line


def test_an_all_zero_mask_makes_its_findings_not_assessable():
    lines = findings.derive(synthetic_summary(mask_mean=0.0, masked_clean=1.435))
    oracle = _line(lines, "FGSM: the G(x) mask (oracle) defends")
    assert "not assessable" in oracle and "degenerate" in oracle
    assert "not assessable" in _line(lines, "FGSM: G_adv(x*) better than G(x*)")
    # a finding about G_adv alone still gets its verdict
    assert "not assessable" not in _line(lines, "IFGSM: the G_adv(x*) mask defends")


def test_a_uniform_mask_is_degenerate():
    """A mask that is the same at every pixel (it dims the input, selects nothing) gives its
    findings "not assessable", however good N(x⊗G(x)) is."""
    lines = findings.derive(synthetic_summary(mask_mean=0.35, mask_spread=0.001))
    oracle = _line(lines, "FGSM: the G(x) mask (oracle) defends")
    assert "not assessable" in oracle and "uniform" in oracle
    assert "holds" in _line(findings.premise_lines(synthetic_summary()), "G:")


def test_a_mask_no_better_than_the_constant_is_degenerate():
    lines = findings.derive(synthetic_summary(mask_mean=0.3, masked_clean=1.42))
    assert "does not beat the constant" in _line(lines, "FGSM: the G(x) mask (oracle) defends")


def test_an_ineffective_attack_makes_the_defences_not_assessable():
    lines = findings.derive(synthetic_summary(n_attacked=0.71))
    assert _line(lines, "FGSM raises N's RMSE").startswith("FGSM raises N's RMSE: no")
    for start in ("FGSM: the G(x) mask (oracle) defends", "IFGSM: the G_adv(x*) mask defends"):
        line = _line(lines, start)
        assert "not assessable" in line and "did not raise N's RMSE materially" in line


def test_without_baselines_nothing_about_n_is_concluded():
    lines = findings.derive(synthetic_summary(baselines=False))
    line = _line(lines, "FGSM raises N's RMSE")
    assert "not assessable" in line and "unchecked" in line


@pytest.mark.parametrize("rmse_under_x2, verdict", [(1.9, "yes"), (0.92, "no")])
def test_breaks_needs_a_material_rise_of_the_defended_error(rmse_under_x2, verdict):
    rows = synthetic_summary()
    for row in rows:
        if row["method"] == "N(x**⊗G_adv(x**))":
            row["rmse"] = rmse_under_x2
    assert f": {verdict} —" in _line(findings.derive(rows), "x** = Adv(x; N(x⊗G_adv(x)))")
