"""Adaptive attacks on defences (Athalye et al. 2018; Tramèr et al. 2020): functions to attack.

Every helper returns a `jax.tree_util.Partial` x[B,H,W,3] ↦ ... over module-level functions,
so the engine's jitted entry points cache one program per structure, not per call.

- `compose(predict_fn, stage)`: the defended function x ↦ predict_fn(stage(x)), attacked end
  to end (e.g. stage = a quantising or denoising input stage; the saliency defence
  N(x⊗G(x)) is `mde_adv.evaluation.methods.attacked_function`).
- `straight_through(stage)`: stage's forward, identity backward (BPDA with the identity).
- `bpda(stage, surrogate)`: stage's forward, the gradient of a differentiable surrogate.
- `expectation_over_transforms(predict_fn, transform, keys)`: EOT, x ↦ mean_k
  predict_fn(transform(key_k, x)) over K fixed draws (vmapped); an attack on it maximises
  the loss of the expected prediction.
- `quantise(levels)`: a non-differentiable input stage (pixels rounded to `levels` levels),
  the textbook gradient-masking defence the diagnostics must catch.
"""

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

from mde_adv.normalization import denormalize, normalize


def _compose(predict_fn, stage, x):
    return predict_fn(stage(x))


def compose(predict_fn, stage) -> Partial:
    """x ↦ predict_fn(stage(x)): the defended function, attacked end to end."""
    return Partial(_compose, predict_fn, stage)


def _straight_through(stage, x):
    return x + jax.lax.stop_gradient(stage(x) - x)


def straight_through(stage) -> Partial:
    """x ↦ stage(x) in the forward pass, with the identity as its backward pass."""
    return Partial(_straight_through, stage)


def _bpda(stage, surrogate, x):
    smooth = surrogate(x)
    return smooth + jax.lax.stop_gradient(stage(x) - smooth)


def bpda(stage, surrogate) -> Partial:
    """x ↦ stage(x) forward; backward through the differentiable surrogate (BPDA)."""
    return Partial(_bpda, stage, surrogate)


def _eot(predict_fn, transform, keys, x):
    return jnp.mean(jax.vmap(lambda key: predict_fn(transform(key, x)))(keys), axis=0)


def expectation_over_transforms(predict_fn, transform, keys: jax.Array) -> Partial:
    """x ↦ mean_k predict_fn(transform(keys[k], x)): transform(key, x[B,H,W,3]) -> x', one
    draw for the batch per key; keys[K] (e.g. jax.random.split(key, K)), vmapped over K."""
    if keys.ndim != 1 and not (keys.ndim == 2 and keys.shape[-1] == 2):
        raise ValueError(f"keys must be K PRNG keys, got shape {keys.shape}")
    return Partial(_eot, predict_fn, transform, keys)


def _gaussian_noise(std, key, x):
    return x + std * jax.random.normal(key, x.shape, x.dtype)


def gaussian_noise(std: float) -> Partial:
    """transform(key, x) = x + std·N(0, 1) (normalised units): a random input transform."""
    return Partial(_gaussian_noise, jnp.float32(std))


def _quantise(levels, x):
    pixels = jnp.clip(denormalize(x), 0.0, 1.0)
    return normalize(jnp.round(pixels * levels) / levels).astype(x.dtype)


def quantise(levels: int) -> Partial:
    """x ↦ normalize(round(clip(pixels)·levels)/levels): zero gradient almost everywhere."""
    if isinstance(levels, bool) or int(levels) != levels or levels < 1:
        raise ValueError(f"quantise: levels must be an integer >= 1, got {levels!r}")
    return Partial(_quantise, jnp.float32(levels))
