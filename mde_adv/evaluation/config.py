"""The evaluation config: the paper's settings (`default_eval_config`) and their checks.

ε and α are in `eps_space` units ('normalised' input space by default, as the authors' code;
or 'pixel' [0, 1]). Every attack is untargeted ℓ∞ with the ℓ1 loss against the ground truth
unless a section says otherwise; x* = Adv(x; N) throughout (paper §4).
"""

from collections.abc import Sequence

import ml_collections

from mde_adv import attacks
from mde_adv.evaluation.methods import ATTACK_TARGETS, METHODS, SALIENCY_NETS
from mde_adv.losses import ATTACK_LOSSES
from mde_adv.normalization import EPS_SPACES

# Sections of the evaluation, in report order (each a key of the config).
TABLES: tuple[str, ...] = (
    "table1",
    "table2",
    "noise",
    "table3",
    "table4",
    "fig4",
    "fig5",
    "fig6_7",
    "defence_aware",
    "attack_variants",
    "salient_regions",
    "targeted",
)


def default_eval_config() -> ml_collections.ConfigDict:
    """The paper's evaluation (Tables 1–4, Figs. 4–7) plus the sections beyond the paper.

    Shrink it with `max_images` (0 = all), `batch_size` (the global eval batch: the experiment
    passes it to the data pipeline), `tables` and the ε lists.
    """
    fig4_eps = [round(0.02 * i, 2) for i in range(11)]
    return ml_collections.ConfigDict(
        dict(
            tables=list(TABLES),
            eps_space="normalised",
            alpha=1.0,  # α of FGSM/IFGSM (paper §3.2); PGD and MI-FGSM use the engine defaults
            seed=0,
            max_images=0,
            batch_size=8,
            table1=dict(
                attack="fgsm",
                eps=[0.0, 0.05, 0.1],
                methods=["N(x*)", "N(x*⊗G(x*))", "N(x*⊗G(x))"],
            ),
            table2=dict(
                attack="ifgsm",
                eps=[0.0, 0.05, 0.1, 0.15, 0.2],
                steps=10,
                methods=["N(x*)", "N_adv(x*)", "N(x*⊗G(x))", "N(x*⊗G_adv(x*))"],
            ),
            # the baseline of Table 2's attack: random noise of the same ε (no gradient)
            noise=dict(
                attack="noise",
                eps=[0.0, 0.05, 0.1, 0.15, 0.2],
                methods=["N(x*)", "N(x*⊗G_adv(x*))"],
            ),
            table3=dict(
                attack="ifgsm",
                eps=0.1,
                steps=5,
                losses=["l1", "l2", "rel", "log10", "l_dif"],
                methods=["N(x*)", "N(x*⊗G_adv(x*))"],
            ),
            table4=dict(
                attack="ifgsm",
                eps=0.1,
                steps=5,
                saliency_nets=["G_adv", "G_adv_drn_d_38", "G_adv_drn_d_54"],
            ),
            fig4=dict(
                attack="fgsm",
                eps=fig4_eps,
                methods=["N(x*)", "N(x*⊗G(x*))", "N(x*⊗G_adv(x*))"],
            ),
            fig5=dict(
                attack="ifgsm",
                eps=0.1,
                steps=list(range(1, 11)),
                methods=["N(x*)", "N(x*⊗G_adv(x*))"],
            ),
            fig6_7=dict(attack="ifgsm", eps=0.1, steps=10, images=4),
            defence_aware=dict(
                attack="fgsm",
                eps=[0.0, 0.05, 0.1],
                steps=1,
                targets=["N(x⊗G(x))", "N(x⊗G_adv(x))"],
                reference_methods=["N(x*)", "N(x*⊗G(x*))", "N(x*⊗G_adv(x*))"],
            ),
            attack_variants=dict(
                attacks=["ifgsm", "pgd", "mifgsm"],
                eps=0.1,
                steps=10,
                methods=["N(x*)", "N(x*⊗G(x))", "N(x*⊗G_adv(x*))"],
            ),
            salient_regions=dict(
                attack="ifgsm", eps=0.1, steps=10, saliency_net="G", salient_fraction=0.5
            ),
            targeted=dict(attack="ifgsm", eps=0.1, steps=10, scale=2.0),
        )
    )


def _fail(field: str, message: str) -> None:
    raise ValueError(f"eval_config.{field}: {message}")


def _check_choices(field: str, values: Sequence[str], choices: Sequence[str]) -> None:
    for value in values:
        if value not in choices:
            _fail(field, f"unknown value {value!r}; expected one of {list(choices)}")


def _check_eps(field: str, values: Sequence[float]) -> None:
    if not values:
        _fail(field, "needs at least one ε")
    for value in values:
        if not 0.0 <= float(value) < float("inf"):
            _fail(field, f"ε must be finite and >= 0, got {value!r}")


def _check_steps(field: str, values: Sequence[int], attack: str) -> None:
    for value in values:
        if isinstance(value, bool) or int(value) != value or value < 1:
            _fail(field, f"T must be an integer >= 1, got {value!r}")
        if attack in ("fgsm", "noise") and value != 1:
            _fail(field, f"{attack} takes exactly one step, got T={value}")


def _as_list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def check_eval_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first field of `config` that is unknown or out of range."""
    _check_choices("tables", config.tables, TABLES)
    _check_choices("eps_space", [config.eps_space], EPS_SPACES)
    if not float(config.alpha) > 0:
        _fail("alpha", f"must be > 0, got {config.alpha!r}")
    if int(config.max_images) < 0:
        _fail("max_images", f"must be >= 0 (0 = all), got {config.max_images!r}")
    if int(config.batch_size) < 1:
        _fail("batch_size", f"must be >= 1, got {config.batch_size!r}")
    for table in config.tables:
        section = config[table]
        attack_field = "attacks" if "attacks" in section else "attack"
        attack_names = _as_list(section[attack_field])
        _check_choices(f"{table}.{attack_field}", attack_names, attacks.METHODS)
        _check_eps(f"{table}.eps", _as_list(section.eps))
        for attack in attack_names:
            _check_steps(f"{table}.steps", _as_list(section.get("steps", 1)), attack)
        for field in ("methods", "reference_methods"):
            if field in section:
                _check_choices(f"{table}.{field}", section[field], list(METHODS))
    if "table3" in config.tables:
        _check_choices("table3.losses", config.table3.losses, list(ATTACK_LOSSES))
    if "table4" in config.tables:
        _check_choices("table4.saliency_nets", config.table4.saliency_nets, SALIENCY_NETS)
    if "defence_aware" in config.tables:
        _check_choices("defence_aware.targets", config.defence_aware.targets, ATTACK_TARGETS)
    if "salient_regions" in config.tables:
        regions = config.salient_regions
        _check_choices("salient_regions.saliency_net", [regions.saliency_net], SALIENCY_NETS)
        if not 0.0 < float(regions.salient_fraction) < 1.0:
            _fail(
                "salient_regions.salient_fraction",
                f"must be in (0, 1), got {regions.salient_fraction}",
            )
    if "fig6_7" in config.tables and int(config.fig6_7.images) < 1:
        _fail("fig6_7.images", f"must be >= 1, got {config.fig6_7.images!r}")
