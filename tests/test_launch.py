"""The launch scripts parse, and each multi-host one turns on distributed initialisation."""

import pathlib
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
