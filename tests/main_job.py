"""The main job as the tests start it: `python -m mde_adv.main` in a subprocess, run in the
repository (configs are given by their path there), its output captured."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def run(
    config: str, workdir: pathlib.Path, *flags: str, timeout: int = 1800
) -> subprocess.CompletedProcess:
    """The main job on `config` (e.g. 'configs/smoke.py') in `workdir` with override `flags`.
    timeout (s): a hang guard; the smoke run takes ~2.5 min on the reference CPU."""
    command = [sys.executable, "-m", "mde_adv.main", "--config", config]
    return subprocess.run(
        [*command, "--workdir", str(workdir), *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
