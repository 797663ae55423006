"""Data parallelism around the single train-step body: `jax.pmap` or `jax.jit` with sharding.

Both wrap `steps.train_step`; the config's `parallel.mode` chooses ("pmap", the design's
default, or "jit"). Under pmap the step sees one device's shard and averages gradients, metrics
and BatchNorm statistics over the named data axis; under jit the step sees the global batch,
laid out over a one-axis device mesh, and XLA inserts the collectives. Multi-host: every
process calls the same wrapped step with its local data shard.
"""

import functools
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mde_adv.data import pipeline
from mde_adv.train import steps

DATA_AXIS = "data"
MODES = ("pmap", "jit")


def initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """`jax.distributed.initialize` when `config.distributed.enabled` (multi-host runs).

    Empty fields are auto-detected by JAX (TPU pods, Slurm, Open MPI); local multi-process
    runs set coordinator_address, num_processes and process_id explicitly.
    """
    dist = config.get("distributed")
    if dist is None or not dist.get("enabled", False):
        return
    kwargs = {
        k: dist.get(k)
        for k in ("coordinator_address", "num_processes", "process_id")
        if dist.get(k) not in (None, "", -1)
    }
    logging.info("jax.distributed.initialize(%s)", kwargs)
    jax.distributed.initialize(**kwargs)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown parallel mode {mode!r} (config.parallel.mode); use {MODES}")
    return mode


def model_axis_name(mode: str) -> str | None:
    """The axis name the trained model's BatchNorm synchronises over in this mode."""
    return DATA_AXIS if check_mode(mode) == "pmap" else None


def data_mesh() -> Mesh:
    """A one-axis mesh over all devices of all processes."""
    return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def make_step(spec: steps.TaskSpec, mode: str) -> Callable:
    """The wrapped step `(state, batch, frozen, key) -> (state, metrics)`.

    pmap: state and frozen are replicated with a leading device axis, batch leaves are
      [local_devices, B_device, ...], key is broadcast; metrics come back per device.
    jit: state, frozen and key are replicated over the mesh, batch leaves are global arrays
      sharded along the batch axis (see `shard_batch`).
    The state argument is donated: do not reuse it after the call.
    """
    body = functools.partial(steps.train_step, spec)
    if check_mode(mode) == "pmap":
        return jax.pmap(
            functools.partial(body, axis_name=DATA_AXIS),
            axis_name=DATA_AXIS,
            in_axes=(0, 0, 0, None),
            donate_argnums=(0,),
        )
    mesh = data_mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    return jax.jit(
        functools.partial(body, axis_name=None),
        in_shardings=(replicated, batch_sharding, replicated, replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=(0,),
    )


def replicate(tree, mode: str):
    """Places copies of a pytree (state or frozen variables) for the wrapped step.

    Always copies through the host: the step donates its state, and `jax.device_put` of an
    array already on the mesh would hand over the caller's own buffers to be deleted.
    """
    tree = jax.tree.map(np.asarray, jax.device_get(tree))
    if check_mode(mode) == "pmap":
        # Process-local copies with a leading device axis: pmap places them (this is also what
        # a multi-host pmap expects; jax.device_put_replicated is gone from jax >= 0.10).
        n = jax.local_device_count()
        tree = jax.tree.map(lambda a: np.broadcast_to(a, (n, *a.shape)), tree)
        if jax.process_count() > 1:
            return tree
        # On device, laid out as pmap lays out its outputs: the step then takes the state it
        # returned without compiling a second program, and frozen variables are not copied to
        # the devices on every step.
        local = Mesh(np.asarray(jax.local_devices()), (DATA_AXIS,))
        return jax.device_put(tree, NamedSharding(local, PartitionSpec(DATA_AXIS)))
    return jax.device_put(tree, NamedSharding(data_mesh(), PartitionSpec()))


def unreplicate(tree, mode: str):
    """The host (NumPy) copy of a replicated pytree, e.g. for checkpoints and evaluation."""
    if check_mode(mode) == "pmap":
        tree = jax.tree.map(lambda a: a[0], tree)
    return jax.device_get(tree)


def shard_batch(batch: dict, mode: str) -> dict:
    """This process's batch {name: [B_local, ...]} laid out for the wrapped step.

    Non-numeric fields (example ids) are dropped. pmap: [local_devices, B_local / local_devices,
    ...]. jit: global arrays [B_global, ...] sharded over the mesh (B_global = B_local ·
    processes).
    """
    arrays = {k: np.asarray(v) for k, v in batch.items() if np.asarray(v).dtype.kind in "biuf"}
    if check_mode(mode) == "pmap":
        return pipeline.split_for_devices(arrays)
    sharding = NamedSharding(data_mesh(), PartitionSpec(DATA_AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in arrays.items()}


def host_metrics(metrics: dict, mode: str) -> dict[str, float]:
    """Scalar metrics as Python floats (pmap returns one identical copy per device)."""
    if check_mode(mode) == "pmap":
        metrics = jax.tree.map(lambda a: a[0], metrics)
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
