"""Entry point: `python -m mde_adv.main --config configs/default.py --workdir runs/default`.

Parses flags and hands the config to `mde_adv.experiment.run`, as flax's examples do.
Any config field can be overridden on the command line, e.g. `--config.seed=1`.
"""

import logging as py_logging

from absl import app, flags, logging
from ml_collections import config_flags

from mde_adv import experiment

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and reports.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file with get_config().", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(py_logging.Filter):
    """Drops INFO chatter of orbax (a line per file written); warnings and errors pass."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    experiment.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
