"""The main job itself on two processes over localhost, as `launch/local_multiprocess.sh` runs
it: the data stage builds once, the stage decisions agree, the evaluation is sharded and merged
once, and the results equal one process's with the same two devices."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import train_setup as ts

from configs import smoke
from mde_adv import experiment, variables_io

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCHER = REPO / "launch" / "local_multiprocess.sh"
# The smoke study cut to the stages that cross processes: data, a training stage, the
# evaluation (Table 2 for N: clean and IFGSM rows) and the report.
FLAGS = (
    "--config.stages=('data','train_depth','evaluate','report')",
    "--config.eval.tables=['table2']",
)


def _single(workdir: pathlib.Path) -> subprocess.CompletedProcess:
    """One process with two CPU devices (the test session's XLA_FLAGS)."""
    command = [sys.executable, "-m", "mde_adv.main", "--config", "configs/smoke.py"]
    return subprocess.run(
        [*command, "--workdir", str(workdir), *FLAGS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _launch(workdir: pathlib.Path) -> subprocess.Popen:
    """Two processes with one CPU device each, through the launcher."""
    # the session's XLA_FLAGS: the launcher replaces their device count with one per process
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        ["bash", str(LAUNCHER), "2", "configs/smoke.py", str(workdir), *FLAGS],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    log = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, log[-4000:]
    return log


def _summary(workdir: pathlib.Path) -> dict:
    rows = json.loads((workdir / "evaluate" / "summary.json").read_text())
    return {(r["table"], r["setting"], r["method"]): r for r in rows}


def _n(workdir: pathlib.Path) -> dict:
    return variables_io.load_variables(experiment.network_path(workdir, "N"))[0]


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one_process")
    result = _single(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_two_processes_killed_and_rerun_end_like_one(single_process, tmp_path):
    """The launcher's two processes build the data once and train until process 1 is killed
    (its partner then fails, or is killed as a scheduler would); the same command again
    resumes from the last checkpoint, and the job ends with one process's results."""
    workdir = tmp_path / "two_processes"
    proc = _launch(workdir)
    checkpoints = workdir / "train_depth" / "checkpoints"
    deadline = time.monotonic() + 600
    while not (checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint was finished"
        time.sleep(0.5)
    workers = subprocess.run(
        ["pgrep", "-f", "--", f"--workdir {workdir}"], capture_output=True, text=True
    ).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[1]), signal.SIGKILL)  # process 1 dies
    # its partner waits in a collective until JAX's heartbeat timeout (100 s): after a few
    # seconds it is ended as a scheduler ends a job whose task died
    try:
        first_log = proc.communicate(timeout=5)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        first_log = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0
    assert "FileExistsError" not in first_log  # the data stage built once, then was read
    assert experiment.stage_done(workdir, "data")["splits"] == {"train": 64, "test": 16}
    assert experiment.stage_done(workdir, "train_depth") is None

    log = _finish(_launch(workdir))
    assert "resuming at step" in log
    for stage in ("data", "train_depth", "evaluate", "report"):
        assert experiment.stage_done(workdir, stage) is not None, stage
    # N trained on two processes moved its initial weights as on one process with two devices
    config = smoke.get_config()
    initial = experiment.initial_variables(config, "N", "depth", config.data.pipeline.crop_hw)
    ts.assert_same_update(_n(workdir), _n(single_process), initial)
    one, two = _summary(single_process), _summary(workdir)
    assert one.keys() == two.keys() and len(one) >= 3
    for key, row in one.items():
        assert two[key]["images"] == row["images"] == 4, key  # every image once
        # clean rows follow the weights; attacked rows add IFGSM's sign steps, which flip for a
        # few pixels when the weights differ by rounding
        tolerance = 1e-3 if row["eps"] == 0 else 2e-2
        np.testing.assert_allclose(two[key]["rmse"], row["rmse"], rtol=tolerance, err_msg=key)
    assert (workdir / "report.md").read_text(encoding="utf-8").count("## Table 2") == 1
