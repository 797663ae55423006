"""Robustness cards: clean and adversarial metrics of depth networks and defences under the
paper's IFGSM, APGD with restarts, a gradient-free search and transfer attacks, the per-image
worst case over that ensemble, with diagnostics of gradient masking.

`python -m mde_adv.robustness --config configs/default.py --workdir runs/default` (or the main
job's stage 'robustness', `card_stage`) writes `<workdir>/robustness/card.{json,md}`.
"""

from mde_adv.robustness.card import build_card, card_markdown, write_card
from mde_adv.robustness.config import check_robustness_config, default_robustness_config
from mde_adv.robustness.evaluate import Subject, evaluate
from mde_adv.robustness.stage import card_stage, checkpoint_digest

__all__ = [
    "Subject",
    "build_card",
    "card_markdown",
    "card_stage",
    "check_robustness_config",
    "checkpoint_digest",
    "default_robustness_config",
    "evaluate",
    "write_card",
]
