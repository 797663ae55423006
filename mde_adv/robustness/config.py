"""The robustness card's config section (`config.robustness`) and its checks.

ε in each threat model's `space` units ('normalised' input space, or 'pixel' [0, 1]); every
attack is untargeted with `loss` against the ground truth, the worst case per image is
chosen by `criterion` (restarts.CRITERIA) on the evaluated function.
"""

from collections.abc import Sequence

import ml_collections

from mde_adv import attacks
from mde_adv.evaluation.methods import ATTACK_TARGETS
from mde_adv.losses import ATTACK_LOSSES
from mde_adv.normalization import EPS_SPACES


def default_robustness_config() -> ml_collections.ConfigDict:
    """N, N_adv and the defence N∘G_adv under the paper's IFGSM, APGD with restarts, the
    square search and (for the defence) transfer from N, at the paper's ε."""
    return ml_collections.ConfigDict(
        dict(
            subjects=("N(x)", "N_adv(x)", "N(x⊗G_adv(x))"),  # tuples: overridable by flags
            threat_models=(dict(norm="linf", space="normalised", eps=(0.05, 0.1, 0.2)),),
            loss="l1",
            criterion="rmse",
            seed=0,
            max_images=0,  # 0 = the whole eval split
            batch_size=8,
            ifgsm=dict(steps=10, alpha=1.0),  # the paper's attack
            apgd=dict(steps=10, restarts=2),
            square=dict(steps=100),  # queries
            transfer=True,  # a defence also meets IFGSM and APGD run on its undefended N
            diagnostics=dict(
                large_eps=2.0,
                steps=(1, 3),  # APGD budgets below apgd.steps, at the largest ε
                zero_gradient_max_share=attacks.diagnostics.ZERO_GRADIENT_MAX_SHARE,
                tolerance=attacks.diagnostics.RELATIVE_TOLERANCE,
                large_eps_factor=attacks.diagnostics.LARGE_EPS_FACTOR,
            ),
        )
    )


def threat_models(rconfig: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """rconfig.threat_models as ConfigDicts (norm, space, eps), whatever their container."""
    return [ml_collections.ConfigDict(dict(threat)) for threat in rconfig.threat_models]


def _fail(field: str, message: str) -> None:
    raise ValueError(f"config.robustness.{field}: {message}")


def _positive_int(field: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        _fail(field, f"must be an integer >= 1, got {value!r}")
    return int(value)


def _eps_list(field: str, values: Sequence[float]) -> None:
    if not values:
        _fail(field, "needs at least one ε")
    for value in values:
        if not 0.0 < float(value) < float("inf"):
            _fail(field, f"ε must be finite and > 0, got {value!r}")


def check_robustness_config(config: ml_collections.ConfigDict, subjects_known=None) -> None:
    """ValueError naming the first field that is unknown or out of range."""
    known = list(subjects_known or ATTACK_TARGETS)
    if not config.subjects:
        _fail("subjects", "needs at least one function to evaluate")
    for subject in config.subjects:
        if subject not in known:
            _fail("subjects", f"unknown subject {subject!r}; expected some of {known}")
    if not config.threat_models:
        _fail("threat_models", "needs at least one threat model")
    for i, threat in enumerate(threat_models(config)):
        if threat.norm not in attacks.NORMS:
            _fail(f"threat_models[{i}].norm", f"{threat.norm!r} not in {attacks.NORMS}")
        if threat.space not in EPS_SPACES:
            _fail(f"threat_models[{i}].space", f"{threat.space!r} not in {EPS_SPACES}")
        _eps_list(f"threat_models[{i}].eps", list(threat.eps))
    if config.loss not in ATTACK_LOSSES:
        _fail("loss", f"{config.loss!r} not in {sorted(ATTACK_LOSSES)}")
    if config.criterion not in ("rmse", "rel"):
        _fail("criterion", f"{config.criterion!r}; expected 'rmse' or 'rel'")
    if int(config.max_images) < 0:
        _fail("max_images", f"must be >= 0 (0 = all), got {config.max_images!r}")
    _positive_int("batch_size", config.batch_size)
    for field in ("ifgsm.steps", "apgd.steps", "apgd.restarts", "square.steps"):
        section, name = field.split(".")
        _positive_int(field, config[section][name])
    if not float(config.ifgsm.alpha) > 0:
        _fail("ifgsm.alpha", f"must be > 0, got {config.ifgsm.alpha!r}")
    diag = config.diagnostics
    _eps_list("diagnostics.large_eps", [diag.large_eps])
    for steps in diag.steps:
        if _positive_int("diagnostics.steps", steps) >= int(config.apgd.steps):
            _fail("diagnostics.steps", f"must be < apgd.steps={config.apgd.steps}, got {steps}")
    for field in ("zero_gradient_max_share", "tolerance", "large_eps_factor"):
        if not 0.0 <= float(diag[field]) < float("inf"):
            _fail(f"diagnostics.{field}", f"must be finite and >= 0, got {diag[field]!r}")
