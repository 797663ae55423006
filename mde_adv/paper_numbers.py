"""The numbers the paper reports (NYU-v2 test set, 654 images; spec §9), as data.

PAPER[table][(setting, method)] = {metric: value}, with the setting and method labels that
`mde_adv.evaluate` writes ('ε=0.05', 'clean', 'loss=l2'; 'N(x*⊗G_adv(x*))', ...). Table 4's
values are not in the paper's text (only "more layers, slightly better"); Figs. 4 and 5 are
plots whose values are not given, except where they coincide with table entries
(FIG4_POINTS: Table 1's FGSM N(x*); FIG5_POINTS: Tables 2 and 3 at T = 10 and 5).
"""

METRICS: tuple[str, ...] = ("rmse", "rel", "log10", "delta1", "delta2", "delta3")


def _table2() -> dict[tuple[str, str], dict[str, float]]:
    rows = {
        ("clean", "N(x)"): (0.555, 0.126, 0.054, 0.843, 0.968, 0.991),
        ("clean", "N_adv(x)"): (0.682, 0.167, 0.071, 0.757, 0.935, 0.979),
        ("clean", "N(x⊗G(x))"): (0.683, 0.154, 0.068, 0.773, 0.939, 0.982),
        ("clean", "N(x⊗G_adv(x))"): (0.615, 0.148, 0.063, 0.792, 0.952, 0.987),
        ("ε=0.05", "N(x*)"): (1.465, 0.419, 0.200, 0.249, 0.568, 0.774),
        ("ε=0.05", "N_adv(x*)"): (0.666, 0.160, 0.067, 0.774, 0.943, 0.982),
        ("ε=0.05", "N(x*⊗G(x))"): (0.692, 0.156, 0.069, 0.768, 0.937, 0.981),
        ("ε=0.05", "N(x*⊗G_adv(x*))"): (0.644, 0.158, 0.067, 0.771, 0.945, 0.984),
        ("ε=0.1", "N(x*)"): (1.792, 0.373, 0.273, 0.161, 0.373, 0.571),
        ("ε=0.1", "N_adv(x*)"): (0.677, 0.159, 0.068, 0.769, 0.942, 0.981),
        ("ε=0.1", "N(x*⊗G(x))"): (0.706, 0.158, 0.070, 0.763, 0.934, 0.980),
        ("ε=0.1", "N(x*⊗G_adv(x*))"): (0.655, 0.160, 0.067, 0.770, 0.942, 0.983),
        ("ε=0.15", "N(x*)"): (1.988, 0.516, 0.325, 0.109, 0.263, 0.442),
        ("ε=0.15", "N_adv(x*)"): (0.724, 0.167, 0.073, 0.741, 0.931, 0.976),
        ("ε=0.15", "N(x*⊗G(x))"): (0.720, 0.159, 0.071, 0.759, 0.931, 0.978),
        ("ε=0.15", "N(x*⊗G_adv(x*))"): (0.677, 0.162, 0.068, 0.767, 0.939, 0.981),
        ("ε=0.2", "N(x*)"): (2.107, 0.541, 0.360, 0.075, 0.201, 0.370),
        ("ε=0.2", "N_adv(x*)"): (0.798, 0.180, 0.081, 0.701, 0.911, 0.970),
        ("ε=0.2", "N(x*⊗G(x))"): (0.743, 0.161, 0.074, 0.751, 0.927, 0.977),
        ("ε=0.2", "N(x*⊗G_adv(x*))"): (0.703, 0.165, 0.071, 0.754, 0.933, 0.979),
    }
    return {key: dict(zip(METRICS, values, strict=True)) for key, values in rows.items()}


def _rmse_only(rows: dict[tuple[str, str], float]) -> dict[tuple[str, str], dict[str, float]]:
    return {key: {"rmse": value} for key, value in rows.items()}


PAPER: dict[str, dict[tuple[str, str], dict[str, float]]] = {
    "table1": _rmse_only(
        {
            ("ε=0", "N(x*)"): 0.555,
            ("ε=0.05", "N(x*)"): 1.055,
            ("ε=0.1", "N(x*)"): 1.139,
            ("ε=0", "N(x*⊗G(x*))"): 0.683,
            ("ε=0.05", "N(x*⊗G(x*))"): 0.813,
            ("ε=0.1", "N(x*⊗G(x*))"): 0.943,
            ("ε=0", "N(x*⊗G(x))"): 0.683,
            ("ε=0.05", "N(x*⊗G(x))"): 0.696,
            ("ε=0.1", "N(x*⊗G(x))"): 0.712,
        }
    ),
    "table2": _table2(),
    "table3": _rmse_only(
        {
            ("loss=l1", "N(x*)"): 1.778,
            ("loss=l1", "N(x*⊗G_adv(x*))"): 0.664,
            ("loss=l2", "N(x*)"): 1.842,
            ("loss=l2", "N(x*⊗G_adv(x*))"): 0.666,
            ("loss=rel", "N(x*)"): 1.694,
            ("loss=rel", "N(x*⊗G_adv(x*))"): 0.664,
            ("loss=log10", "N(x*)"): 1.783,
            ("loss=log10", "N(x*⊗G_adv(x*))"): 0.659,
            ("loss=l_dif", "N(x*)"): 1.718,
            ("loss=l_dif", "N(x*⊗G_adv(x*))"): 0.662,
        }
    ),
    # Paper §3.1: the defence-aware attack x** = Adv(x; C), C(x) = N(x⊗G(x)) (FGSM).
    "defence_aware": _rmse_only(
        {("ε=0.05", "N(x**⊗G(x**))"): 1.052, ("ε=0.1", "N(x**⊗G(x**))"): 1.108}
    ),
}

# Qualitative statements of the paper where it gives no numbers.
PAPER_NOTES: dict[str, str] = {
    "table4": "The paper gives no values: more encoder layers in G_adv (22 → 38 → 54) are "
    "slightly better.",
    "fig4": "Paper: N(x*) error rises fast with ε; N(x*⊗G_adv(x*)) rises slowly. Markers: "
    "Table 1's FGSM N(x*) values.",
    "fig5": "Paper: N(x*) error grows with T; N(x*⊗G_adv(x*)) stays stable. Markers: Table 3 "
    "(T = 5, ℓ1) and Table 2 (T = 10) at ε = 0.1.",
    "salient_regions": "Paper's hypothesis (§1, §4.3): the attacks work mostly through "
    "non-salient pixels; not tested directly in the paper.",
}

# (ε, RMSE) of FGSM N(x*) (Table 1) and (T, RMSE) of IFGSM at ε = 0.1 (Tables 2 and 3).
FIG4_POINTS: dict[str, tuple[tuple[float, float], ...]] = {
    "N(x*)": ((0.0, 0.555), (0.05, 1.055), (0.1, 1.139)),
}
FIG5_POINTS: dict[str, tuple[tuple[int, float], ...]] = {
    "N(x*)": ((5, 1.778), (10, 1.792)),
    "N(x*⊗G_adv(x*))": ((5, 0.664), (10, 0.655)),
}
