"""Checks of concrete attack arguments, run by the public entry points before any computation.

Each failure raises ValueError naming the argument and the offending value.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mde_adv.attacks.config import AttackConfig


def _check_concrete(**arrays) -> None:
    traced = [name for name, value in arrays.items() if isinstance(value, jax.core.Tracer)]
    if traced:
        raise ValueError(
            f"attack/eps_sweep got traced {', '.join(traced)}: they validate concrete arrays "
            "and jit themselves, so call them outside jax.jit/vmap/grad, or call "
            "attacks.attack_traced inside your traced function"
        )


def _check_images(x) -> None:
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"x must be an image batch [B, H, W, 3], got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"x must hold at least one image (B ≥ 1), got shape {shape}")
    if x.dtype != jnp.float32:
        raise ValueError(f"x must be float32 (normalised images), got dtype {x.dtype}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("x contains NaN or Inf")


def _check_depth(y, batch: int, config: AttackConfig) -> None:
    if config.target == "clean_prediction":
        if y is not None:
            raise ValueError("y must be None when config.target='clean_prediction'")
        return
    if y is None:
        raise ValueError("y (depth in metres) is required when config.target='ground_truth'")
    shape = getattr(y, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != 1 or shape[0] != batch:
        raise ValueError(f"y must be a depth batch [{batch}, h, w, 1], got shape {shape}")
    if not jnp.issubdtype(y.dtype, jnp.floating):
        raise ValueError(f"y must be floating point (metres), got dtype {y.dtype}")
    finite = np.isfinite(np.asarray(y))
    if not finite.all():
        raise ValueError(
            f"y (depth in metres) holds {int(np.count_nonzero(~finite))} NaN or Inf values "
            f"of {finite.size}: the attack loss would be NaN and x would come back unchanged"
        )


def _per_example(name: str, value, batch: int) -> np.ndarray:
    array = np.asarray(value)
    if array.shape not in ((), (batch,)):
        raise ValueError(f"{name} must be a scalar or have shape ({batch},), got {array.shape}")
    return np.broadcast_to(array, (batch,))


def _check_eps(eps, batch: int) -> np.ndarray:
    eps = _per_example("eps", eps, batch)
    if not np.issubdtype(eps.dtype, np.number) or np.issubdtype(eps.dtype, np.complexfloating):
        raise ValueError(f"eps must be real numbers, got dtype {eps.dtype}")
    if not np.all(np.isfinite(eps)):
        raise ValueError(f"eps must be finite, got {eps}")
    if np.any(eps < 0):
        raise ValueError(f"eps must be >= 0, got {eps}")
    return eps.astype(np.float32)


def _check_steps(steps, batch: int, t_max: int) -> np.ndarray:
    steps = _per_example("steps", steps, batch)
    if not np.issubdtype(steps.dtype, np.integer):
        raise ValueError(f"steps must be integers, got dtype {steps.dtype} ({steps})")
    if np.any(steps < 1) or np.any(steps > t_max):
        raise ValueError(f"steps must satisfy 1 <= T <= t_max={t_max}, got {steps}")
    return steps.astype(np.int32)


def _check_key(key, config: AttackConfig) -> None:
    if key is None:
        if config.random_start:
            raise ValueError(f"key is required: method {config.method!r} uses a random start")
        return
    shape = getattr(key, "shape", None)
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if not ((typed and shape == ()) or (dtype == jnp.uint32 and shape == (2,))):
        raise ValueError(f"key must be one PRNG key, got shape {shape} and dtype {dtype}")


def _check_region_mask(region_mask, x_shape) -> None:
    if region_mask is None:
        return
    expected = (*x_shape[:3], 1)
    if getattr(region_mask, "shape", None) != expected:
        raise ValueError(
            f"region_mask must have shape {expected}, got {getattr(region_mask, 'shape', None)}"
        )
    if region_mask.dtype != jnp.float32:
        raise ValueError(f"region_mask must be float32, got dtype {region_mask.dtype}")
    if not bool(jnp.all((region_mask >= 0) & (region_mask <= 1))):
        raise ValueError("region_mask values must lie in [0, 1] (NaN is not allowed)")


def validate_attack_args(config, x, y, eps, steps, key, region_mask):
    """Checks of `attack`'s arguments; returns (eps f32[B], steps int32[B]) as NumPy arrays."""
    if not isinstance(config, AttackConfig):
        raise ValueError(f"config must be an AttackConfig, got {type(config).__name__}")
    _check_concrete(x=x, y=y, eps=eps, steps=steps, region_mask=region_mask)
    _check_images(x)
    batch = x.shape[0]
    _check_depth(y, batch, config)
    _check_key(key, config)
    _check_region_mask(region_mask, x.shape)
    return _check_eps(eps, batch), _check_steps(steps, batch, config.t_max)


def validate_eps_values(eps_values) -> np.ndarray:
    """The radii of an ε sweep: a non-empty 1-D array of finite values >= 0, as f32[E]."""
    array = np.asarray(eps_values)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"eps_values must be a non-empty 1-D array, got shape {array.shape}")
    return _check_eps(array, array.shape[0])
