"""One process of a two-process CPU training run (launched by test_train_multiprocess.py).

Usage: python multiprocess_worker.py PROCESS_ID NUM_PROCESSES PORT WORKDIR OUT.npz
Each process has one CPU device and feeds its own shard of every global batch.
"""

import os
import sys

# one device, and the test session's other flags (its compile flags, probed by conftest)
os.environ["XLA_FLAGS"] = " ".join(
    [
        "--xla_force_host_platform_device_count=1",
        *(f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f),
    ]
)
os.environ["JAX_PLATFORMS"] = "cpu"

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(process_id: int, num_processes: int, port: int, workdir: str, out: str) -> None:
    import numpy as np
    import train_setup as ts

    from mde_adv.train import loop, parallel

    config = ts.equality_config("pmap", batch_size=4)
    config.distributed = dict(
        enabled=True,
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=num_processes,
        process_id=process_id,
    )
    config.train.depth.checkpoint_every = 1
    parallel.initialize_distributed(config)
    assert jax.process_count() == num_processes and jax.local_device_count() == 1
    variables = ts.initial_variables(config, "depth", seed=0)
    trained = loop.train_task(
        config,
        "depth",
        workdir,
        ts.batches_from(9, 4, process_index=process_id, process_count=num_processes),
        steps_per_epoch=10,
        variables=variables,
    )
    flat = {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_leaves_with_path(trained)
    }
    if process_id == 0:
        np.savez(out, **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
