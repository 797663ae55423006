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
        torch_work._frozen(n_torch), xt, yt, torch.from_numpy(eps), torch.from_numpy(steps)
    )
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    # sign steps of size α = 1 saturate at ±ε; a gradient component near 0 may take the other sign
    agree = np.isclose(np.asarray(ours), theirs, atol=1e-4)
    assert agree.mean() > 0.99
