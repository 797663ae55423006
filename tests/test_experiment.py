"""The main job end to end on configs/smoke.py: stages run, finish, and are skipped on rerun."""

import json
import pathlib
import subprocess
import sys

import pytest

from mde_adv import experiment

REPO = pathlib.Path(__file__).resolve().parents[1]


def _main(workdir: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mde_adv.main",
            "--config",
            "configs/smoke.py",
            "--workdir",
            str(workdir),
            *flags,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard: ~4 min on the reference CPU, ~15 on a 4× slower one
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    result = _main(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result


def test_smoke_run_finishes_every_stage(smoke_run):
    workdir, _ = smoke_run
    for stage in experiment.STAGES:
        assert experiment.stage_done(workdir, stage) is not None, stage
    for name in experiment.NETWORKS:
        assert (experiment.network_path(workdir, name) / "metadata.json").is_file(), name
    data = experiment.stage_done(workdir, "data")
    assert data["splits"] == {"train": 64, "test": 16}
    logs = workdir / "train_saliency_adv" / "logs" / "metrics.jsonl"
    rows = [json.loads(line) for line in logs.read_text().splitlines()]
    assert rows[-1]["step"] == 4 and "adversarial_fraction" in rows[-1]


def test_rerun_skips_finished_stages(smoke_run):
    workdir, _ = smoke_run
    before = {s: experiment.stage_done(workdir, s) for s in experiment.STAGES}
    result = _main(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("already done") == len(experiment.STAGES)
    assert before == {s: experiment.stage_done(workdir, s) for s in experiment.STAGES}


def test_unknown_stage_is_a_clear_error(tmp_path):
    result = _main(tmp_path, "--config.stages=('data','train_everything')")
    assert result.returncode != 0
    assert "train_everything" in result.stderr
