"""Test set-up: two virtual CPU devices (set before JAX initialises) and shared fixtures."""

import os
import pathlib
import tempfile

# Two virtual CPU devices so that every run exercises the multi-device code paths.
# This must happen before the first `import jax` anywhere in the test session.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

# Real NYU-v2 samples live beside the repository, never inside it.
SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
NYU_SAMPLES = SHARED / "fixtures" / "nyu_depth_v2_samples"


def pytest_configure(config):
    del config
    assert jax.device_count() == 2, (
        f"tests expect 2 virtual CPU devices, got {jax.devices()}; "
        "XLA_FLAGS was set too late (was jax imported before conftest?)"
    )


@pytest.fixture(scope="session")
def nyu_samples() -> pathlib.Path:
    """Folder of real NYU-v2 samples; skips the test where ../shared is absent."""
    if not NYU_SAMPLES.is_dir():
        pytest.skip(f"real NYU-v2 samples not found at {NYU_SAMPLES}")
    return NYU_SAMPLES


@pytest.fixture(scope="session")
def torch_module():
    """The torch module, or a skip where the optional torch extra is not installed."""
    return pytest.importorskip("torch")
