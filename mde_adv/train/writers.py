"""Metric logs of process 0: TensorBoard events (tensorboardX, no TensorFlow) and JSON lines.

On an object store (a `gs://` logdir, see `mde_adv.paths`) nothing appends: the events go to a
local temporary directory and, with metrics.jsonl, are uploaded whole at every write."""

import json
import pathlib
import shutil
import tempfile
import uuid

import jax

from mde_adv import paths

JSONL_FILE = "metrics.jsonl"


class MetricWriter:
    """Writes scalars to `<logdir>/events.*` and `<logdir>/metrics.jsonl` on process 0 only."""

    def __init__(self, logdir: paths.PathLike):
        self._active = jax.process_index() == 0
        self._logdir = paths.as_path(logdir)
        self._remote = paths.is_remote(self._logdir)
        self._tb = None
        self._jsonl = None
        self._lines: list[str] = []  # an object store's metrics.jsonl, rewritten whole
        self._local = None  # an object store's events, written here first
        if self._active:
            from tensorboardX import SummaryWriter

            self._logdir.mkdir(parents=True, exist_ok=True)
            jsonl = self._logdir / JSONL_FILE
            if self._remote:
                self._local = pathlib.Path(tempfile.mkdtemp(prefix="mde_adv_events_"))
                # a unique name: a resumed stage's events must not replace the earlier ones
                self._tb = SummaryWriter(str(self._local), filename_suffix=f".{uuid.uuid4().hex}")
                if jsonl.exists():  # a resumed run: keep the earlier lines
                    self._lines = jsonl.read_text().splitlines(keepends=True)
            else:
                self._tb = SummaryWriter(str(self._logdir))
                self._jsonl = open(jsonl, "a")

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self._active:
            return
        for name, value in scalars.items():
            self._tb.add_scalar(name, value, step)
        line = json.dumps({"step": step, **scalars}) + "\n"
        if not self._remote:
            self._jsonl.write(line)
            self._jsonl.flush()
            return
        self._lines.append(line)
        self._upload()

    def _upload(self) -> None:
        self._tb.flush()
        for name in paths.files_under(self._local):
            paths.write_bytes_atomic(self._logdir / name, (self._local / name).read_bytes())
        paths.write_text_atomic(self._logdir / JSONL_FILE, "".join(self._lines))

    def close(self) -> None:
        if not self._active:
            return
        if self._remote:
            self._upload()
        self._tb.close()
        if self._remote:
            shutil.rmtree(self._local, ignore_errors=True)
        else:
            self._jsonl.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
