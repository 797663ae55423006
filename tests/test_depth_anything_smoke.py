"""The main job with N = Depth Anything V2 (small setting, configs/depth_anything_v2_smoke.py):
its data, N-training and G-training stages run and write networks that load back."""

import json

import main_job
import pytest

from mde_adv import experiment, models, variables_io

CONFIG = "configs/depth_anything_v2_smoke.py"
STAGES = ("data", "train_depth", "train_saliency")


@pytest.mark.slow
def test_study_stages_run_with_depth_anything_as_n(tmp_path):
    result = main_job.run(CONFIG, tmp_path, f"--config.stages={STAGES!r}")
    assert result.returncode == 0, result.stderr[-4000:]
    for stage in STAGES:
        assert experiment.stage_done(tmp_path, stage) is not None, stage
    variables, metadata = variables_io.load_variables(experiment.network_path(tmp_path, "N"))
    assert metadata["model"]["encoder"] == "dav2_tiny"
    assert isinstance(models.depth_net(metadata["model"]), models.DepthAnythingNet)
    assert set(variables) <= {"params", "batch_stats"} and "dav2" in variables["params"]
    rows = (tmp_path / "train_depth" / "logs" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == 4
