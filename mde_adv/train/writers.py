"""Metric logs of process 0: TensorBoard events (tensorboardX, no TensorFlow) and JSON lines."""

import json
import pathlib

import jax


class MetricWriter:
    """Writes scalars to `<logdir>/events.*` and `<logdir>/metrics.jsonl` on process 0 only."""

    def __init__(self, logdir: str | pathlib.Path):
        self._active = jax.process_index() == 0
        self._logdir = pathlib.Path(logdir)
        self._tb = None
        self._jsonl = None
        if self._active:
            from tensorboardX import SummaryWriter

            self._logdir.mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(self._logdir))
            self._jsonl = open(self._logdir / "metrics.jsonl", "a")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self._active:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self._active:
            self._tb.close()
            self._jsonl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
