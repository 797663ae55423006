"""mde_adv: adversarial robustness of monocular depth estimation in JAX/Flax."""

__version__ = "0.1.0"
