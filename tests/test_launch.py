"""The launch scripts parse, and each multi-host one turns on distributed initialisation."""

import pathlib
import re
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"
SCRIPTS = sorted(p for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch"))


def test_all_four_launchers_exist():
    names = {p.name for p in SCRIPTS}
    assert {"tpu_pod.sh", "gpu_node.sh", "slurm.sbatch", "local_multiprocess.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "python -m mde_adv.main" in script.read_text()


@pytest.mark.parametrize("name", ["tpu_pod.sh", "slurm.sbatch", "local_multiprocess.sh"])
def test_multi_host_launchers_enable_distributed(name):
    assert "--config.distributed.enabled=True" in (LAUNCH / name).read_text()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_config_a_script_names_exists(script):
    """Default configs (CONFIG=${...:-path}) and the configs of the usage comments."""
    named = re.findall(r"configs/[\w/]+\.py", script.read_text())
    for path in named:
        assert (LAUNCH.parent / path).is_file(), f"{script.name} names {path}, which is missing"


def test_paper_configs_state_the_per_device_batch():
    """Spec §7: 8 examples per device (global batch = 8 × devices) in every training task."""
    from configs.nyu import paper

    config = paper.get_config()
    for task, settings in config.train.items():
        assert settings.per_device_batch_size == 8, task
