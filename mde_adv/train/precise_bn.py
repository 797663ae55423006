"""Precise BatchNorm statistics (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", §3):
after training, every BN layer's running mean and variance are replaced by the average of its
batch statistics over `num_batches` training batches at the final weights, instead of the
exponential moving average the training steps left (PyTorch momentum 0.1: at batch 8 it
averages ~10 recent batches of moving weights, and eval-mode scores swing with it).
"""

import functools
from collections.abc import Iterator, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from mde_adv.models import layers
from mde_adv.train import parallel


def _batch_stats_fn(model: nn.Module):
    """(variables, x) -> this batch's statistics, in the layout of variables['batch_stats'].

    A train-mode forward from zeroed running statistics leaves (1 - m) · batch statistic in
    each (layers.BatchNorm's update, momentum m), so dividing by (1 - m) recovers the batch's
    mean and unbiased variance, layer by layer, each normalised with its batch statistics as
    in training."""
    keep = 1.0 - layers.BatchNorm.momentum
    # several processes: the statistics come back replicated on every process's devices
    replicated = NamedSharding(parallel.data_mesh(), PartitionSpec())
    multi_process = jax.process_count() > 1

    @functools.partial(jax.jit, out_shardings=replicated if multi_process else None)
    def batch_stats(variables, x):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, variables["batch_stats"])
        _, updated = model.apply(
            {"params": variables["params"], "batch_stats": zeros},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return jax.tree_util.tree_map(lambda s: s / keep, updated["batch_stats"])

    return batch_stats


def _global_images(images: np.ndarray) -> jax.Array:
    """This process's images as its part of the global batch: one array over all processes'
    devices, so that every BN layer's statistics are the global batch's, as in training (whose
    BatchNorm averages over all devices), whatever the number of processes."""
    if jax.process_count() == 1:
        return jnp.asarray(images, jnp.float32)
    sharding = NamedSharding(parallel.data_mesh(), PartitionSpec(parallel.DATA_AXIS))
    return jax.make_array_from_process_local_data(sharding, np.asarray(images, np.float32))


def precise_batch_stats(
    model: nn.Module, variables: Mapping, batches: Iterator[Mapping], num_batches: int
) -> dict:
    """variables['batch_stats'] recomputed as the mean over `num_batches` global batches of
    each BN layer's batch mean and unbiased variance. `batches` yields this process's part
    ({'image': f32[B_local,H,W,3] normalised}); each global batch (all processes' parts) is
    normalised with its own statistics, as in a training step, so the result does not depend
    on how the batch is split over processes and devices. Params are not touched."""
    if num_batches < 1:
        raise ValueError(f"precise BN: num_batches must be >= 1, got {num_batches}")
    if "batch_stats" not in variables:
        raise ValueError("precise BN: the variables have no 'batch_stats' collection")
    batch_stats = _batch_stats_fn(model)
    total = None
    for i in range(num_batches):
        batch = next(batches, None)
        if batch is None:
            raise ValueError(f"precise BN: the batches ran out after {i} of {num_batches}")
        stats = batch_stats(variables, _global_images(batch["image"]))
        total = stats if total is None else jax.tree_util.tree_map(jnp.add, total, stats)
    # replicated over the processes: every process holds the whole (identical) result
    return jax.tree_util.tree_map(lambda t: np.asarray(t, np.float32) / num_batches, total)
