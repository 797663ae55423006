"""The machine's measured peak: FLOP/s of one large matrix product, float32 and bfloat16.

The peak against which the suite reports achieved FLOP/s is not a datasheet number: it is the
median rate of an n×n by n×n product (2n³ FLOPs, float32 accumulation) on this machine with
every thread available, jitted by XLA and, where torch is installed, by torch.matmul (oneDNN or
MKL): the best dense-kernel rate either library reaches here.
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


def torch_matmul_flops_per_s(n: int = 4096, repeats: int = 5, device: str = "cpu") -> float:
    """Median FLOP/s of torch.matmul on n×n float32 matrices on `device` (CPU: all threads)."""
    import os

    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator).to(device)
    b = torch.randn(n, n, generator=generator).to(device)
    wait = torch.cuda.synchronize if device != "cpu" else lambda: None
    torch.matmul(a, b)
    wait()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        wait()
        times.append(time.perf_counter() - start)
    return 2.0 * n**3 / statistics.median(times)


def measured_peaks(
    n: int = 4096, with_torch: bool = False, torch_device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """{'float32': {'XLA': FLOP/s, 'PyTorch': FLOP/s}, 'bfloat16': {'XLA': FLOP/s}} of an n×n
    product (PyTorch's only `with_torch`: the float32 baseline's library; a CPU without bfloat16
    instructions takes minutes for its bfloat16 product); the suite's peak for a dtype is the
    best of them."""
    peaks = {dtype: {"XLA": matmul_flops_per_s(dtype, n)} for dtype in ("float32", "bfloat16")}
    if with_torch:
        peaks["float32"]["PyTorch"] = torch_matmul_flops_per_s(n, device=torch_device)
    return peaks
