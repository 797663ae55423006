"""Tiny settings of the real networks and synthetic batches for the training tests."""

import jax
import ml_collections
import numpy as np

from configs import smoke
from mde_adv import models

INPUT_HW = (32, 40)


def tiny_config(mode: str = "pmap", batch_size: int = 4) -> ml_collections.ConfigDict:
    """configs/smoke.py (32×40 inputs, width-0.125 networks, IFGSM t_max 3) for 2-step runs."""
    config = smoke.get_config()
    config.parallel.mode = mode
    for task in config.train:
        config.train[task].update(
            num_steps=2, batch_size=batch_size, log_every=1, checkpoint_every=1
        )
        config.train[task].warmup_epochs = 0.0  # 1-step runs: N's cosine decay, no warm-up
    assert tuple(config.data.pipeline.crop_hw) == INPUT_HW
    return config


def synthetic_batch(seed: int, batch_size: int, hw=INPUT_HW) -> dict:
    """Normalised images and positive depth maps in metres at half resolution."""
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(batch_size, *hw, 3)).astype(np.float32)
    h, w = hw[0] // 2, hw[1] // 2
    ramp = np.linspace(1.0, 6.0, h, dtype=np.float32)[None, :, None, None]
    depth = ramp + 0.5 * np.abs(image[:, ::2, ::2, :1])
    return {"image": image, "depth": np.broadcast_to(depth, (batch_size, h, w, 1)).copy()}


def batches_from(seed: int, batch_size: int, process_index: int = 0, process_count: int = 1):
    """A batch factory: make(step) yields this process's shard of global batch `step`, ..."""

    def make(start: int):
        step = start
        while True:
            batch = synthetic_batch(seed * 100_003 + step, batch_size)
            per = batch_size // process_count
            yield {k: v[process_index * per : (process_index + 1) * per] for k, v in batch.items()}
            step += 1

    return make


def initial_variables(config, which: str, seed: int = 0) -> dict:
    model = (
        models.depth_net(config.depth_net)
        if which == "depth"
        else models.saliency_net(config.saliency_net)
    )
    key = jax.random.key(seed, impl="rbg")  # compiles ~4x faster than threefry on CPU
    return jax.device_get(models.init_variables(model, key, INPUT_HW))


def equality_config(mode: str, batch_size: int = 4) -> ml_collections.ConfigDict:
    """The real optimiser with adam_eps = 1, so an update is ≈ lr·gradient: Adam's
    g/(|g| + 1e-8) would turn rounding noise in near-zero gradients into O(lr) differences."""
    config = tiny_config(mode, batch_size)
    for task in config.train:
        config.train[task].adam_eps = 1.0
        config.train[task].learning_rate = 0.05
        config.train[task].num_steps = 1
    return config


def global_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.square(leaf)) for leaf in jax.tree.leaves(tree))))


def assert_same_update(a: dict, b: dict, initial: dict, rel: float = 2e-3) -> None:
    """Variables a and b ({'params', 'batch_stats'}) moved `initial` the same way:
    ‖a − b‖ ≤ rel · ‖a − initial‖ (global norms over each collection).

    A norm over all leaves, not a per-element tolerance: in these tiny networks a few BN
    biases feeding another BN have near-cancelling gradients that change by up to ~10% when
    the batch is merely permuted on ONE device (rounding), but they carry little of the
    update; a parallelism bug (a missing average, unsynchronised BatchNorm, other
    per-example keys) changes the whole update by O(1).
    """
    for name in ("params", "batch_stats"):
        moved = global_norm(jax.tree.map(np.subtract, a[name], initial[name]))
        diff = global_norm(jax.tree.map(np.subtract, a[name], b[name]))
        assert moved > 0, f"{name} did not move: the comparison would be vacuous"
        assert diff <= rel * moved, f"{name}: ‖difference‖ {diff:.3g} vs ‖update‖ {moved:.3g}"
