"""What a benchmark ran on, and writing its results without leaving half-written files."""

import os
import pathlib
import platform


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine name where that is unreadable)."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def description() -> str:
    """e.g. 'cpu: AMD EPYC (x86_64), 2 cores; jax 0.10.2' or 'gpu: NVIDIA H200; jax ...'."""
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        what = f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} cores"
    else:
        what = f"{jax.device_count()} × {device.device_kind}"
    return f"{device.platform}: {what}; jax {jax.__version__}"


def write_atomically(path: pathlib.Path, text: str) -> None:
    """Write `text` to path through a temporary file and a rename: never a half-written file."""
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(text)
    partial.replace(path)
