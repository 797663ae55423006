"""Workdir, results and checkpoint paths on local disks, shared file systems and object stores
(`gs://`, `s3://`) alike, through `etils.epath` (the path library TFDS and Orbax use).

Every file the main job writes goes through `as_path` and `write_text_atomic`, so one code path
serves a laptop and a pod whose workdir is a bucket. A local file is written whole or not at
all (a temporary sibling, fsync, `os.replace`); on an object store, which writes whole objects
(an upload that fails leaves the previous object), the text is buffered and uploaded once
complete. `gs://` needs `gcsfs` (the `gcs` extra) or TensorFlow; nothing here imports either.
"""

import contextlib
import io
import os
from collections.abc import Iterator
from typing import IO

from etils import epath

Path = epath.Path
PathLike = str | os.PathLike


def is_remote(path: PathLike) -> bool:
    """Whether `path` names an object store (a URI such as gs://bucket/dir)."""
    return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
    """`path` as an epath.Path: a URI as given, a local path made absolute."""
    if is_remote(path):
        return epath.Path(os.fspath(path))
    return epath.Path(os.path.abspath(os.fspath(path)))


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """A file opened for writing that appears at `path` whole, once the block ends without an
    exception: a crash or an error leaves the previous file (or none), never part of one."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    path = as_path(path)
    if is_remote(path):  # an object is uploaded whole at close, even after an error: buffer
        buffer = io.BytesIO() if mode == "wb" else io.StringIO(newline=kwargs.get("newline"))
        yield buffer
        data = buffer.getvalue()
        path.write_bytes(data if mode == "wb" else data.encode(kwargs.get("encoding") or "utf-8"))
        return
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **kwargs) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: PathLike, text: str) -> None:
    """Writes `text` (UTF-8) to `path` whole or not at all (see `atomic_open`)."""
    with atomic_open(path, "w", encoding="utf-8") as file:
        file.write(text)


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Writes `data` to `path` whole or not at all (see `atomic_open`)."""
    with atomic_open(path, "wb") as file:
        file.write(data)


def files_under(root: PathLike) -> list[str]:
    """The relative paths ('a/b.json') of every file below directory `root`, sorted (a walk
    of iterdir: object stores refuse recursive globs)."""
    root = as_path(root)
    found, pending = [], [root]
    while pending:
        folder = pending.pop()
        for entry in folder.iterdir():
            (pending if entry.is_dir() else found).append(entry)
    return sorted(os.path.relpath(os.fspath(f), os.fspath(root)) for f in found)
