"""The benchmark suite's fast mode runs end to end (no thresholds: timings are not tested)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import jax_work, run


@pytest.mark.torch
def test_fast_mode_writes_every_row_with_its_baseline(tmp_path, torch_module):
    del torch_module  # the baseline needs torch; skipped without it
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--fast",
        "--out",
        str(tmp_path),
        "--name",
        "fast",
    ]
    env = dict(os.environ, XLA_FLAGS=run.with_host_devices(os.environ.get("XLA_FLAGS", ""), 1))
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "fast.json").read_text())
    rows = {(r["what"], r["devices"]): r for r in result["rows"]}
    jobs = ["N forward", "G forward", "FGSM", "IFGSM-10", "IFGSM-10 sweep of 4 ε",
            "train step N", "train step G", jax_work.G_ADV]  # fmt: skip
    for name in jobs:
        row = rows[(name, 1)]
        assert row["seconds"] > 0 and row["torch_seconds"] > 0, name
        assert row["gflop"] > 0 and row["memory_mb"] > 0, name
    assert rows[("IFGSM-10", 1)]["gflop"] == pytest.approx(10 * rows[("FGSM", 1)]["gflop"])
    assert {("train step N (pmap)", 1), ("train step N (pmap)", 2)} <= set(rows)
    table = (tmp_path / "fast.md").read_text()
    assert "PyTorch / JAX" in table and "IFGSM-10 sweep" in table
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.torch
def test_baseline_attack_equals_the_library_attack(torch_module):
    """The PyTorch baseline does the same work: same IFGSM on the same N gives the same x*."""
    torch = torch_module
    from benchmarks import torch_work
    from mde_adv import attacks, import_torch

    setting = run.SETTINGS["tiny"]
    n_torch, _ = torch_work.networks(setting)
    n_torch.eval()
    n, _, _, _ = jax_work.networks(setting, "float32")
    state_dict = {k: v.numpy() for k, v in n_torch.state_dict().items()}
    variables = import_torch.torch_state_dict_to_flax(
        state_dict, import_torch.variables_template(n)
    )
    x, y = jax_work.batch(2, setting["input_hw"])
    eps, steps = np.array([0.05, 0.1], np.float32), np.array([3, 5])
    predict = lambda z: n.apply(variables, z, train=False)
    ours = attacks.attack(predict, x, y, eps=eps, steps=steps, config=attacks.AttackConfig(t_max=5))
    xt, yt = torch_work.inputs(x, y)
    theirs = torch_work.ifgsm(
        torch_work.frozen(n_torch), xt, yt, torch.from_numpy(eps), torch.from_numpy(steps)
    )
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    # sign steps of size α = 1 saturate at ±ε; a gradient component near 0 may take the other sign
    agree = np.isclose(np.asarray(ours), theirs, atol=1e-4)
    assert agree.mean() > 0.99


def test_table2_sweep_runs_whole_batches_and_projects_to_the_test_split(tmp_path):
    from benchmarks import table2_sweep

    args = ["--setting", "tiny", "--batch", "2", "--images", "3", "--out", str(tmp_path)]
    table2_sweep.main(args)
    row = json.loads((tmp_path / "table2_sweep_tiny_float32_b2.json").read_text())["row"]
    assert row["images"] == 4  # ⌈3 / 2⌉ batches of 2
    assert row["seconds"] > 0 and row["gflop_per_s"] > 0
    assert row["projected_test_split_s"] == pytest.approx(row["seconds"] / 4 * 654)
    assert "654 images (h)" in (tmp_path / "table2_sweep_tiny_float32_b2.md").read_text()
    stopped = table2_sweep.measure("tiny", 1, 100, "float32", max_seconds=0.0)
    assert stopped["images"] == 1  # one batch, then the time limit stops it


def test_quick_check_logs_each_measurement_as_it_is_made(tmp_path):
    from benchmarks import quick

    quick.main(["--setting", "tiny", "--batch", "1", "--repeats", "1", "--baseline", "none",
                "--out", str(tmp_path)])  # fmt: skip
    lines = (tmp_path / "quick_tiny_b1.txt").read_text().splitlines()
    assert [line.split(" s  ", 1)[1].split(":")[0] for line in lines[1:]] == [
        "N initialised", "N forward compiled", "N forward", "IFGSM-10 compiled", "IFGSM-10"
    ]  # fmt: skip
    assert "Table 2's sweep projected" in lines[-1]
