"""Shared set-up of the robustness tests: a tiny conv depth net trained for a few steps on
images whose depth is a smooth function of their pixels, and its data."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.tree_util import Partial

from mde_adv import losses
from mde_adv.normalization import denormalize, normalize

HEIGHT, WIDTH = 12, 16


def tiny_depth(params, x):
    """conv 3×3 → tanh → conv 3×3 stride 2 → 0.5 + softplus: f32[B,H,W,3] -> f32[B,H/2,W/2,1]."""
    conv = lambda z, w, stride: jax.lax.conv_general_dilated(
        z, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    hidden = jnp.tanh(conv(x, params["w1"], 1) + params["b1"])
    return 0.5 + jax.nn.softplus(conv(hidden, params["w2"], 2) + params["b2"])


def images(seed: int, batch: int) -> np.ndarray:
    """Normalised images of smooth random pixel fields in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 1, (batch, HEIGHT // 4, WIDTH // 4, 3))
    pixels = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    pixels = np.clip(pixels + rng.normal(0, 0.05, pixels.shape), 0, 1)
    return np.asarray(normalize(pixels), np.float32)


def true_depth(x: np.ndarray) -> np.ndarray:
    """Depth in metres [B,H/2,W/2,1]: 1 + 3 × the 2×2-pooled brightness."""
    brightness = np.asarray(denormalize(x)).mean(-1, keepdims=True)
    pooled = brightness.reshape(x.shape[0], HEIGHT // 2, 2, WIDTH // 2, 2, 1).mean((2, 4))
    return (1.0 + 3.0 * pooled).astype(np.float32)


@functools.lru_cache(maxsize=1)
def trained_params(steps: int = 150) -> dict:
    """The tiny net after `steps` Adam steps of the ℓ1 loss on 32 images."""
    key1, key2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": 0.3 * jax.random.normal(key1, (3, 3, 3, 8)),
        "b1": jnp.zeros(8),
        "w2": 0.3 * jax.random.normal(key2, (3, 3, 8, 1)),
        "b2": jnp.ones(1),
    }
    x = images(100, 32)
    y = true_depth(x)
    optimiser = optax.adam(1e-2)

    @jax.jit
    def step(params, state):
        loss, grads = jax.value_and_grad(lambda p: jnp.mean(losses.l1_loss(tiny_depth(p, x), y)))(
            params
        )
        updates, state = optimiser.update(grads, state)
        return optax.apply_updates(params, updates), state, loss

    state = optimiser.init(params)
    for _ in range(steps):
        params, state, _ = step(params, state)
    return jax.device_get(params)


def trained_predict() -> Partial:
    return Partial(tiny_depth, trained_params())
