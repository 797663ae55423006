"""Entry point: `python -m mde_adv.main --config configs/default.py --workdir runs/default`.

Parses flags and hands the config to `mde_adv.experiment.run`, as flax's examples do.
Any config field can be overridden on the command line, e.g. `--config.seed=1`,
`--config.stages="('data','train_depth')"`, and list fields with a Python list,
`--config.eval.table2.eps="[0.0, 0.1]"`. An unknown field is an error naming it.

Errors of bad input (config, data, checkpoints) end the job with their message as the last
line (exit code 1); a preemption (SIGTERM) saves a checkpoint and exits with one line and
code 143, and rerunning the same command resumes.
"""

import ast
import logging as py_logging
import os
import sys
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from mde_adv import experiment, run_checks, variables_io, xla_flags
from mde_adv.data import errors as data_errors
from mde_adv.train import loop

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for data, checkpoints and reports.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/*.py file with get_config().", lock_config=True
)
flags.mark_flags_as_required(["config", "workdir"])
USER_ERRORS = (
    run_checks.RunConfigError,
    variables_io.CheckpointError,
    variables_io.VariablesMismatchError,
    data_errors.DataFormatError,
    data_errors.DatasetNotBuiltError,
    data_errors.UnknownDatasetError,
    data_errors.DatasetSourcesChangedError,
)
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM


class _QuietLibraries(py_logging.Filter):
    """Drops INFO chatter of orbax (a line per file written); warnings and errors pass."""

    def filter(self, record: py_logging.LogRecord) -> bool:
        return record.levelno >= py_logging.WARNING or "/orbax/" not in record.pathname


def _split_list_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(argv without them, [(field, text)]) of `--config.FIELD=[...]` list overrides, which
    ml_collections' flags do not parse."""
    rest, lists = [], []
    for arg in argv:
        name, _, value = arg.partition("=")
        if name.startswith("--config.") and value.lstrip().startswith("["):
            lists.append((name.removeprefix("--config."), value))
        else:
            rest.append(arg)
    return rest, lists


def _unknown_field(field: str) -> SystemExit:
    return SystemExit(
        f"FATAL unknown config field --config.{field}: the config has no such field "
        "(see the config file for its fields)"
    )


def _apply_list(config, field: str, text: str) -> None:
    *parents, leaf = field.split(".")
    node = config
    for parent in parents:
        if parent not in node:
            raise _unknown_field(field)
        node = node[parent]
    if leaf not in node:
        raise _unknown_field(field)
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise SystemExit(f"FATAL --config.{field}={text}: not a Python list ({error})") from None
    if not isinstance(node[leaf], list | tuple) or not isinstance(value, list):
        raise SystemExit(
            f"FATAL --config.{field}={text}: a list is given for a field of type "
            f"{type(node[leaf]).__name__}"
        )
    node[leaf] = value


def parse_flags(argv: Sequence[str]) -> list[str]:
    """absl's flag parsing, with list fields and an error that names an unknown field."""
    rest, lists = _split_list_overrides(argv)
    original_argv, sys.argv = sys.argv, rest  # config_flags reads its overrides in sys.argv
    try:
        remaining = flags.FLAGS(rest)
    except (AttributeError, KeyError) as error:
        key = str(error).strip("'\"")
        fields = [a.partition("=")[0].removeprefix("--config.") for a in rest]
        named = [f for f in fields if key in f.split(".")] or [key]
        raise _unknown_field(named[0]) from None
    except flags.Error as error:
        raise SystemExit(f"FATAL Flags parsing error: {error}") from None
    finally:
        sys.argv = original_argv
    for field, text in lists:
        _apply_list(_CONFIG.value, field, text)
    return remaining


def apply_xla_flags(extra: str) -> None:
    """Appends `config.xla_flags` to XLA_FLAGS (`xla_flags.merge`: a flag XLA_FLAGS sets
    already keeps its value; one this XLA does not know is dropped with a warning, as XLA
    would abort). XLA reads them once, when JAX first starts a backend, so this must run
    before any computation (RuntimeError if one already ran)."""
    if not extra:
        return
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        raise RuntimeError(f"config.xla_flags={extra!r}: JAX's backends already started")
    try:
        merged, unknown = xla_flags.merge(os.environ.get("XLA_FLAGS", ""), extra.split())
    except RuntimeError as error:
        raise SystemExit(f"error: config.xla_flags={extra!r}: {error}") from None
    for flag in unknown:
        logging.warning("config.xla_flags: %s is unknown to this XLA; dropped", flag)
    os.environ["XLA_FLAGS"] = merged


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_QuietLibraries())
    apply_xla_flags(_CONFIG.value.get("xla_flags", ""))
    try:
        experiment.run(_CONFIG.value, _WORKDIR.value)
    except loop.Preempted as preempted:
        print(f"{preempted}; rerun the same command to resume", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT_CODE)
    except USER_ERRORS as error:
        raise SystemExit(f"error: {type(error).__name__}: {error}") from None


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
