"""Precise BN: the recomputed statistics are the mean of each batch's BN statistics."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mde_adv import models
from mde_adv.models import layers
from mde_adv.train import precise_bn


class ConvBN(nn.Module):
    """conv → BN → conv → BN: the second layer's input depends on the first's batch stats."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(4, (3, 3), name="conv1")(x)
        x = layers.BatchNorm(use_running_average=not train, name="bn1")(x)
        x = nn.Conv(3, (3, 3), name="conv2")(jnp.tanh(x))
        return layers.BatchNorm(use_running_average=not train, name="bn2")(x)


def _batches(count, key):
    keys = jax.random.split(key, count)
    return [{"image": 1.0 + 2.0 * jax.random.normal(k, (3, 6, 5, 3))} for k in keys]


def _numpy_stats(variables, x):
    """bn1's and bn2's batch mean and unbiased variance, by hand (train-mode normalisation)."""
    p = variables["params"]

    def conv(name, v):
        return np.asarray(
            nn.Conv(p[name]["kernel"].shape[-1], (3, 3)).apply({"params": p[name]}, v)
        )

    def stats(h):
        n = np.prod(h.shape[:-1])
        mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))
        return mean, var * n / (n - 1), (h - mean) / np.sqrt(var + 1e-5)

    h1 = conv("conv1", x)
    m1, v1, z1 = stats(h1)
    z1 = z1 * np.asarray(p["bn1"]["scale"]) + np.asarray(p["bn1"]["bias"])
    m2, v2, _ = stats(conv("conv2", np.tanh(z1)))
    return {"bn1": {"mean": m1, "var": v1}, "bn2": {"mean": m2, "var": v2}}


def test_statistics_are_the_mean_of_each_batchs_statistics():
    model = ConvBN()
    batches = _batches(4, jax.random.key(0))
    variables = model.init(jax.random.key(1), batches[0]["image"])
    variables = {  # running statistics far from the data's, so that a no-op would fail
        "params": jax.tree_util.tree_map(lambda a: a + 0.1, variables["params"]),
        "batch_stats": jax.tree_util.tree_map(lambda a: a + 7.0, variables["batch_stats"]),
    }
    got = precise_bn.precise_batch_stats(model, variables, iter(batches), 4)
    per_batch = [_numpy_stats(variables, np.asarray(b["image"])) for b in batches]
    want = jax.tree_util.tree_map(lambda *s: np.mean(s, axis=0), *per_batch)
    jax.tree_util.tree_map(lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-4), got, want)


def test_depth_net_keeps_its_params_and_layout():
    net = models.depth_net({"encoder": "resnet18", "width": 0.125})
    variables = models.init_variables(net, jax.random.key(0), (32, 40))
    batches = [
        {"image": b["image"].repeat(6, 1).repeat(8, 2)[:, :32, :40]}
        for b in _batches(2, jax.random.key(2))
    ]
    got = precise_bn.precise_batch_stats(net, variables, iter(batches), 2)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(
        variables["batch_stats"]
    )
    changed = jax.tree_util.tree_map(
        lambda a, b: not np.allclose(a, b), got, variables["batch_stats"]
    )
    assert all(jax.tree_util.tree_leaves(changed))


def test_bad_arguments_are_named():
    model = ConvBN()
    batches = _batches(2, jax.random.key(0))
    variables = model.init(jax.random.key(1), batches[0]["image"])
    with pytest.raises(ValueError, match="num_batches must be >= 1, got 0"):
        precise_bn.precise_batch_stats(model, variables, iter(batches), 0)
    with pytest.raises(ValueError, match="ran out after 2 of 3"):
        precise_bn.precise_batch_stats(model, variables, iter(batches), 3)
    with pytest.raises(ValueError, match="no 'batch_stats'"):
        precise_bn.precise_batch_stats(model, {"params": variables["params"]}, iter(batches), 1)
