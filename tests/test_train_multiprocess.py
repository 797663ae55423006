"""Two processes on localhost (one CPU device each) train exactly like one process with two."""

import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import train_setup as ts

from mde_adv.train import loop

WORKER = pathlib.Path(__file__).with_name("multiprocess_worker.py")
REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    config = ts.equality_config("pmap", batch_size=4)
    variables = ts.initial_variables(config, "depth", seed=0)
    reference = loop.train_task(
        config,
        "depth",
        tmp_path / "single",
        ts.batches_from(9, 4),
        steps_per_epoch=10,
        variables=variables,
    )
    port = _free_port()
    out = tmp_path / "multi.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(WORKER.parent)])}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(i),
                "2",
                str(port),
                str(tmp_path / "multi"),
                str(out),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    with np.load(out) as saved:
        flat = {name: saved[name] for name in saved.files}
    multi = jax.tree_util.tree_unflatten(
        jax.tree.structure(reference),
        [flat[jax.tree_util.keystr(p)] for p, _ in jax.tree_util.tree_leaves_with_path(reference)],
    )
    ts.assert_same_update(multi, reference, variables)
    assert (tmp_path / "multi" / "checkpoints").is_dir()


def test_importing_the_library_leaves_jax_uninitialised():
    """jax.distributed.initialize must come before any backend use: importing must not."""
    code = (
        "import jax\n"
        "from jax._src import xla_bridge\n"
        "import mde_adv.experiment, mde_adv.attacks, mde_adv.evaluate, mde_adv.report\n"
        "assert not xla_bridge.backends_are_initialized()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
