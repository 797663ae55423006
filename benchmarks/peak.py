"""The machine's measured peak: FLOP/s of one large matrix product, float32 and bfloat16.

The peak against which the suite reports achieved FLOP/s is not a datasheet number: it is the
median rate of a jitted n×n by n×n product (2n³ FLOPs, float32 accumulation) on this machine
with every device thread available, the best dense-kernel rate XLA reaches here.
"""

import statistics
import time

import jax
import jax.numpy as jnp


def matmul_flops_per_s(dtype: str, n: int = 4096, repeats: int = 5) -> float:
    """Median FLOP/s of an n×n @ n×n product in `dtype` (float32 accumulation)."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype)
    product = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    jax.block_until_ready(product(a, b))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(product(a, b))
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times)


def measured_peaks(n: int = 4096) -> dict[str, float]:
    """{'float32': FLOP/s, 'bfloat16': FLOP/s} of `matmul_flops_per_s`."""
    return {dtype: matmul_flops_per_s(dtype, n) for dtype in ("float32", "bfloat16")}
