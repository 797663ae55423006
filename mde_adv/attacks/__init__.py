"""Adversarial attacks on depth estimation: one engine for training and evaluation (spec §8).

`attack` (validated, jitted), `attack_traced` (inside your own jit), `eps_sweep` (several ε in
one computation), `AttackConfig` (method, threat model, loss, ε space, ...), Algorithm 1's
`sample_algorithm1` and the ε-space helpers. Reliable evaluation: method 'apgd' (Auto-PGD)
and 'square' (gradient-free search) through the same entry points, `attack_with_restarts`
(restarts on the batch axis, a named selection criterion), `worst_case` over an ensemble of
`Member`s, `adaptive` (end-to-end composition, BPDA / straight-through, EOT) and
`diagnostics` (gradient-masking checks).
"""

from mde_adv.attacks import adaptive, diagnostics
from mde_adv.attacks.config import (
    DEFAULT_T_MAX,
    METHODS,
    NORMS,
    SEARCH_METHODS,
    TARGETS,
    AttackConfig,
)
from mde_adv.attacks.engine import (
    attack,
    attack_iterates,
    attack_traced,
    eps_sweep,
    one_step_sweep,
    step_size,
)
from mde_adv.attacks.ensemble import Member, WorstCase, worst_case
from mde_adv.attacks.restarts import CRITERIA, attack_with_restarts
from mde_adv.attacks.sampler import (
    ALGORITHM1_EPS_RANGE,
    ALGORITHM1_P_ADVERSARIAL,
    ALGORITHM1_STEPS_RANGE,
    example_keys,
    sample_algorithm1,
)
from mde_adv.attacks.spaces import inscribed_eps, normalised_eps_to_pixel, to_normalised

__all__ = [
    "ALGORITHM1_EPS_RANGE",
    "ALGORITHM1_P_ADVERSARIAL",
    "ALGORITHM1_STEPS_RANGE",
    "CRITERIA",
    "DEFAULT_T_MAX",
    "METHODS",
    "NORMS",
    "SEARCH_METHODS",
    "TARGETS",
    "AttackConfig",
    "Member",
    "WorstCase",
    "adaptive",
    "attack",
    "attack_iterates",
    "attack_traced",
    "attack_with_restarts",
    "diagnostics",
    "eps_sweep",
    "example_keys",
    "inscribed_eps",
    "normalised_eps_to_pixel",
    "one_step_sweep",
    "sample_algorithm1",
    "step_size",
    "to_normalised",
    "worst_case",
]
