"""ImageNet normalisation of RGB inputs, shared by the data pipeline, the models and the attacks.

Pixel space: RGB in [0, 1]. Normalised space: (pixel - mean) / std per channel (spec §6). The
networks N and G consume normalised images; the attack's ε is measured in one of these two
spaces (spec §8), named by the strings "normalised" and "pixel".
"""

from typing import Literal

import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

EpsSpace = Literal["normalised", "pixel"]
EPS_SPACES: tuple[str, ...] = ("normalised", "pixel")


def normalize(pixels):
    """Pixel-space RGB [..., 3] in [0, 1] -> normalised space. Works on NumPy and JAX arrays."""
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def denormalize(x):
    """Normalised-space RGB [..., 3] -> pixel space (not clipped)."""
    return x * IMAGENET_STD + IMAGENET_MEAN


def normalised_bounds() -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-channel [3] bounds of valid images (pixel values 0 and 1) in normalised space."""
    return jnp.asarray(normalize(np.zeros(3, np.float32))), jnp.asarray(
        normalize(np.ones(3, np.float32))
    )


def pixel_eps_to_normalised(eps):
    """An ℓ∞ radius in pixel space [...] -> per-channel radii in normalised space [..., 3]."""
    return jnp.asarray(eps)[..., None] / IMAGENET_STD
