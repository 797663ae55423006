"""The two ε spaces (spec §8): perturbations live in normalised or in [0, 1] pixel units.

The engine always receives and returns normalised images x; it perturbs by δ in the attack's
space and feeds x + to_normalised(δ) to the attacked function (for 'pixel', δ/std per channel,
which equals normalize(denormalize(x) + δ) without its round-off).
"""

import jax
import jax.numpy as jnp

from mde_adv.normalization import IMAGENET_STD, denormalize


def to_normalised(delta: jax.Array, space: str) -> jax.Array:
    """A perturbation [..., 3] in `space` units -> the same perturbation in normalised units."""
    if space == "pixel":
        return delta / IMAGENET_STD
    return delta


def pixel_box(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Bounds (lower, upper), like x [..., 3], on a pixel-space δ keeping denormalize(x) + δ
    in [0, 1].

    Both bounds include 0, so clipping δ to them only shrinks it (it stays in any ε-ball), and a
    pixel already outside [0, 1] by round-off is never pushed further out.
    """
    pixels = denormalize(x)
    return jnp.minimum(-pixels, 0.0), jnp.maximum(1.0 - pixels, 0.0)


def normalised_eps_to_pixel(eps) -> jax.Array:
    """An ℓ∞ radius in normalised space [...] -> per-channel radii in pixel space [..., 3]
    (inverse of `mde_adv.normalization.pixel_eps_to_normalised`)."""
    return jnp.asarray(eps)[..., None] * IMAGENET_STD


def inscribed_eps(eps, *, from_space: str, to_space: str) -> jax.Array:
    """Radius of the largest `to_space` ball inside the `from_space` ball of radius eps.

    Holds for ℓ∞ and ℓ2 alike (the change of space scales each channel by 1/std):
    normalised -> pixel is eps·min(std), pixel -> normalised is eps/max(std). An attack run
    with the converted radius is never stronger than the original one.
    """
    for name, space in (("from_space", from_space), ("to_space", to_space)):
        if space not in ("normalised", "pixel"):
            raise ValueError(f"{name}={space!r}; expected 'normalised' or 'pixel'")
    eps = jnp.asarray(eps, jnp.float32)
    if from_space == to_space:
        return eps
    if from_space == "normalised":
        return eps * float(IMAGENET_STD.min())
    return eps / float(IMAGENET_STD.max())
