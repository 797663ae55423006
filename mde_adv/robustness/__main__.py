"""`python -m mde_adv.robustness --config configs/default.py --workdir runs/default`: the
robustness card of the networks the config gives (`--config.networks.N=ckpt/N`, ...) or the
run in the workdir trained, written to `<workdir>/robustness/`.

The card's settings are `config.robustness` where the config file has that section (override
with `--config.robustness.max_images=16`), else the `--robustness` flag's (the defaults of
`mde_adv.robustness.default_robustness_config`, e.g. `--robustness.max_images=16`).
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

from mde_adv.robustness.config import default_robustness_config
from mde_adv.robustness.stage import card_stage

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's directory (networks, data, output).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file with get_config().", lock_config=False
)
_ROBUSTNESS = config_flags.DEFINE_config_dict(
    "robustness", default_robustness_config(), "The card's settings (config has no section)."
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    config = _CONFIG.value
    if config.get("robustness") is None:
        config.robustness = _ROBUSTNESS.value
    print(json.dumps(card_stage(config, _WORKDIR.value), indent=1, ensure_ascii=False))


if __name__ == "__main__":
    app.run(main)
