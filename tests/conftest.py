"""Test set-up: two virtual CPU devices (set before JAX initialises) and shared fixtures."""

import os
import pathlib
import sys
import tempfile

from mde_adv import xla_flags

# Two virtual CPU devices so that every run exercises the multi-device code paths, and the
# flags that compile small programs faster with the same semantics (test programs are
# compile-bound). Set before JAX starts a backend; xdist workers and the subprocesses the
# tests start inherit them (and so start no probe of their own, `xla_flags.merge`).
os.environ["XLA_FLAGS"] = xla_flags.merge(
    os.environ.get("XLA_FLAGS", ""),
    ("--xla_force_host_platform_device_count=2", *xla_flags.FAST_COMPILE),
)[0]
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import pytest

# Many tests build fresh step functions around identical programs; the persistent compilation
# cache (keyed by the program, shared by xdist workers) compiles each of them once. A cache
# only: results do not depend on it.
# The same settings go to the environment, so that the main jobs, launchers and benchmarks the
# tests start as subprocesses share the cache too (the smoke run, the two-process run and its
# rerun compile many of the same programs).
CACHE = {
    "jax_compilation_cache_dir": os.path.join(tempfile.gettempdir(), "mde_adv_test_jax_cache"),
    "jax_persistent_cache_min_compile_time_secs": 1.0,
    "jax_persistent_cache_min_entry_size_bytes": 0,
}
for _name, _value in CACHE.items():
    jax.config.update(_name, _value)
    os.environ[_name.upper()] = str(_value)

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `configs/*.py` are plain files, importable as `configs.*`

# Real NYU-v2 samples live beside the repository, never inside it.
SHARED = REPO.parent / "shared"
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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """`--dist loadgroup`'s grouping on pytest ≥ 9.2: pytest-xdist 3.8 appends '@<group>' to
    `item._nodeid`, which pytest 9.2 no longer reads (the id lives in `item._id`), so the
    tests of an xdist_group (those reading the one smoke run) would spread over the workers
    and each would make the run again. Does what xdist means to, where it did not."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        groups = sorted(
            {
                str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                for mark in item.iter_markers("xdist_group")
            }
        )
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")
