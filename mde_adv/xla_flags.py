"""XLA flags that make compiling faster, and the check that this XLA knows a flag.

Small programs (the tests, configs/smoke.py) are compile-bound on CPU. `FAST_COMPILE`
compiles them 2-3× faster on the reference 2-core CPU with the same semantics: LLVM at -O0,
XLA:CPU's elemental emitters instead of its newer fusion emitters, no XNNPACK rewrites, one
LLVM module per program. The programs they make run 2-6× slower
(benchmarks/results/compile_flags.md: `python -m benchmarks.compile_flags`), so the default
and paper settings, whose time goes into running, do not use them; the emitters without -O0
compile slower than XLA's defaults.

XLA aborts the process on a flag it does not know ("Unknown flags in XLA_FLAGS"), and flags
come and go between jaxlib releases: `merge` probes new flags in a subprocess first and drops
the unknown ones.
"""

import os
import re
import subprocess
import sys
from collections.abc import Sequence

FAST_COMPILE: tuple[str, ...] = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_use_xnnpack=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)
_UNKNOWN = re.compile(r"Unknown flags? in XLA_FLAGS: (.*)")


def flag_name(flag: str) -> str:
    """'--name=value' -> '--name'."""
    return flag.partition("=")[0]


def unknown_flags(flags: Sequence[str]) -> list[str]:
    """The flags among `flags` that this jaxlib's XLA does not know, from a subprocess that
    starts JAX's CPU backend with them (about 2 s). RuntimeError when it fails otherwise
    (e.g. a known flag with a bad value), with XLA's message."""
    if not flags:
        return []
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", "import jax; jax.devices()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode == 0:
        return []
    match = _UNKNOWN.search(done.stderr)
    if match is None:  # XLA's reason comes first; its usage text (every flag) follows
        reason = [line for line in done.stderr.splitlines() if line[:1] in "EF"][:2]
        raise RuntimeError(
            f"XLA_FLAGS={' '.join(flags)!r}: JAX's CPU backend does not start with them: "
            + (" | ".join(reason) or done.stderr.strip()[-2000:])
        )
    named = set(match.group(1).split())
    return [f for f in flags if f in named]


def merge(current: str, extra: Sequence[str]) -> tuple[str, list[str]]:
    """(XLA_FLAGS `current` with the flags of `extra` that this XLA knows appended, the
    dropped unknown ones). A flag whose name `current` sets already keeps `current`'s value
    and is not probed, so a process that inherits merged flags starts no probe."""
    present = {flag_name(f) for f in current.split()}
    new = [f for f in extra if flag_name(f) not in present]
    unknown = unknown_flags(new)
    kept = [f for f in new if f not in unknown]
    return " ".join([*current.split(), *kept]), unknown
