"""The project's on-disk format for model variables: an Orbax checkpoint plus a JSON record.

A checkpoint is a directory holding `variables/` (an Orbax checkpoint of the variables pytree,
nested dicts of numpy arrays, e.g. {'params': ..., 'batch_stats': ...}) and `metadata.json`
({"format": "mde_adv.variables", "format_version": 1, "metadata": {...}}). Writes go to a
temporary sibling directory that is renamed into place only once complete, so an interrupted
write never leaves something that loads as a finished checkpoint, and an existing checkpoint
at the same path is replaced only after the new one is complete.

On an object store (`gs://...`, through `mde_adv.paths`) a checkpoint is written in a local
temporary directory and uploaded file by file, `metadata.json` last: first to a sibling staging
prefix, then (once that is complete) over the old checkpoint, whose `metadata.json` goes first.
A crash leaves a complete checkpoint at the path or at the staging prefix, and nothing without
its record loads. Loading downloads the checkpoint to a temporary directory.
"""

import json
import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mde_adv import paths

FORMAT_NAME = "mde_adv.variables"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
VARIABLES_DIR = "variables"

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not match what the caller expects."""


class VariablesMismatchError(ValueError):
    """Variables differ from a template; lists every missing, unexpected and mismatched path."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str]):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = ["variables do not match the template:"]
        for title, entries in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape/dtype mismatch", mismatched),
        ):
            if entries:
                lines.append(f"  {title} ({len(entries)}):")
                lines.extend(f"    {entry}" for entry in entries)
        super().__init__("\n".join(lines))


def flatten_variables(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {'params/E/conv1/kernel': leaf}; anything not a Mapping is a leaf."""
    if not isinstance(tree, Mapping):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        if not isinstance(key, str):
            raise ValueError(f"variables key {key!r} under '{prefix or '/'}' is not a string")
        flat.update(flatten_variables(value, f"{prefix}/{key}" if prefix else key))
    return flat


def _describe(leaf: Any) -> str:
    return f"{tuple(np.shape(leaf))} {np.dtype(leaf.dtype).name}"


def check_variables_match(variables: Any, template: Any) -> None:
    """Raises VariablesMismatchError listing every path of `variables` that is missing from,
    unexpected in, or of another shape or dtype than in `template` (arrays or
    jax.ShapeDtypeStruct leaves)."""
    actual, expected = flatten_variables(variables), flatten_variables(template)
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mismatched = [
        f"{path}: {_describe(actual[path])}, expected {_describe(expected[path])}"
        for path in sorted(set(actual) & set(expected))
        if np.shape(actual[path]) != tuple(expected[path].shape)
        or np.dtype(actual[path].dtype) != np.dtype(expected[path].dtype)
    ]
    if missing or unexpected or mismatched:
        raise VariablesMismatchError(missing, unexpected, mismatched)


def error_cause(error: BaseException) -> str:
    """'Type: first line' of the innermost cause of an (Orbax, TensorStore) error."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def check_finite(variables: Any, where: str) -> None:
    """Raises CheckpointError naming `where` and the paths of every floating-point leaf of
    `variables` that holds NaN or ±Inf (a diverged or corrupt network gives NaN depth)."""
    bad = [
        f"{path} ({int(np.count_nonzero(~np.isfinite(leaf)))} of {np.size(leaf)} values)"
        for path, leaf in flatten_variables(variables).items()
        if np.issubdtype(np.asarray(leaf).dtype, np.inexact) and not np.all(np.isfinite(leaf))
    ]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise CheckpointError(f"{where}: non-finite (NaN or Inf) variables: {shown}")


def _numpy_tree(tree: Any, prefix: str = "") -> Any:
    """A copy of nested mappings of arrays as plain dicts of host numpy arrays."""
    if isinstance(tree, Mapping):
        copy = {}
        for key, value in tree.items():
            if not isinstance(key, str):
                raise ValueError(f"variables key {key!r} under '{prefix or '/'}' is not a string")
            copy[key] = _numpy_tree(value, f"{prefix}/{key}" if prefix else key)
        return copy
    if not hasattr(tree, "shape") or not hasattr(tree, "dtype"):
        raise ValueError(f"variables leaf '{prefix}' is a {type(tree).__name__}, not an array")
    return np.asarray(jax.device_get(tree))


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    if not isinstance(metadata, Mapping):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    for field, value in metadata.items():
        try:
            json.dumps({field: value}, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"metadata field {field!r} is not JSON-serialisable: {err}") from err
    record = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "metadata": dict(metadata)}
    return json.dumps(record, indent=2, sort_keys=True)


def _read_record(path: paths.Path | pathlib.Path) -> dict[str, Any]:
    """The parsed metadata.json of checkpoint `path`; CheckpointError when absent or invalid."""
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    record_file = path / METADATA_FILE
    if not record_file.is_file():
        raise CheckpointError(f"{path} is not an mde_adv variables checkpoint: no {METADATA_FILE}")
    try:
        record = json.loads(record_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{record_file} is corrupt: {err}") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{record_file}: 'format' is not {FORMAT_NAME!r}")
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{record_file}: format_version {record.get('format_version')!r} is not supported "
            f"(this code reads version {FORMAT_VERSION})"
        )
    if not isinstance(record.get("metadata"), dict):
        raise CheckpointError(f"{record_file}: 'metadata' is missing or not an object")
    return record


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The metadata of checkpoint `path` (no arrays read); CheckpointError naming the path."""
    return _read_record(paths.as_path(path))["metadata"]


def _check_replaceable(path: paths.Path | pathlib.Path) -> None:
    """Only an absent path, an empty directory or a checkpoint of this format may be replaced."""
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    try:
        _read_record(path)
    except CheckpointError as err:
        raise CheckpointError(f"refusing to overwrite {path}: {err}") from err


def _fsync(path: pathlib.Path) -> None:
    """Flushes a file's or a directory's entries to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _process_local_checkpointer() -> ocp.StandardCheckpointer:
    """An Orbax checkpointer of this process alone: saving and loading variables are local
    file operations (process 0 saves a trained network; each process loads one when it
    needs it), so they must not wait for the other processes at Orbax's barriers."""
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"variables_io_{me}"
    )
    return ocp.StandardCheckpointer(multiprocessing_options=options)


def _write_checkpoint(
    directory: pathlib.Path, variables: dict, record_json: str, shown: PathLike
) -> None:
    """Orbax variables first, metadata.json last: without the record nothing loads. Errors
    name `shown` (the path the caller asked for, not the staging directory)."""
    try:
        directory.mkdir(parents=True)
        with _process_local_checkpointer() as checkpointer:
            checkpointer.save(directory / VARIABLES_DIR, variables)
            checkpointer.wait_until_finished()
        (directory / METADATA_FILE).write_text(record_json)
        _fsync(directory / METADATA_FILE)
        _fsync(directory)
    except OSError:  # disk full, permissions: already the cause, on one line
        raise
    except Exception as err:  # Orbax's wrappers of it: the innermost cause, on one line
        raise CheckpointError(f"cannot write {shown}: {error_cause(err)}") from err


def _copy_tree(source: paths.Path | pathlib.Path, target: paths.Path | pathlib.Path) -> None:
    """Copies checkpoint directory `source` to `target` file by file, metadata.json last."""
    files = paths.files_under(source)
    files.sort(key=lambda name: name == METADATA_FILE)  # stable: the record after the arrays
    for name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes((source / name).read_bytes())


def _save_remote(path: paths.Path, arrays: dict, record_json: str) -> paths.Path:
    """save_variables on an object store (see the module's docstring)."""
    staging = path.parent / f".{path.name}.partial-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="mde_adv_variables_") as local:
        checkpoint = pathlib.Path(local) / "checkpoint"
        _write_checkpoint(checkpoint, arrays, record_json, path)
        _copy_tree(checkpoint, staging)
    if path.exists():
        if (path / METADATA_FILE).exists():
            (path / METADATA_FILE).unlink()  # the old arrays no longer load as a checkpoint
        path.rmtree()
    _copy_tree(staging, path)
    staging.rmtree()
    return path


def save_variables(path: PathLike, variables: Any, *, metadata: Mapping[str, Any]) -> pathlib.Path:
    """Writes `variables` (nested dicts of arrays) and the JSON-serialisable `metadata` (model
    kind, encoder, width, source files, ...) as a checkpoint directory at `path`, atomically;
    replaces an existing checkpoint there only once the new one is complete. Returns the
    absolute path (an epath.Path for an object store's URI)."""
    arrays = _numpy_tree(variables)
    record_json = _metadata_json(metadata)
    if paths.is_remote(path):
        remote = paths.as_path(path)
        _check_replaceable(remote)
        return _save_remote(remote, arrays, record_json)
    path = pathlib.Path(path).absolute()
    _check_replaceable(path)
    staging = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex}")
    retired = path.with_name(f".{path.name}.replaced-{uuid.uuid4().hex}")
    try:
        _write_checkpoint(staging, arrays, record_json, path)
        if path.exists():
            path.rename(retired)
        try:
            staging.rename(path)
        except BaseException:
            if retired.exists():
                retired.rename(path)
            raise
        _fsync(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(retired, ignore_errors=True)
    return path


def load_variables(path: PathLike, template: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reads a checkpoint written by save_variables -> (variables as nested dicts of numpy
    arrays, metadata). With `template` (arrays or jax.ShapeDtypeStruct leaves), also checks
    the tree structure, shapes and dtypes against it. Raises CheckpointError naming the path
    and, on a mismatch or a NaN/Inf value, every offending key."""
    if paths.is_remote(path):
        remote = paths.as_path(path)
        _read_record(remote)
        with tempfile.TemporaryDirectory(prefix="mde_adv_variables_") as local:
            _copy_tree(remote, pathlib.Path(local))
            try:
                return load_variables(local, template)
            except CheckpointError as err:  # name the remote path, not the temporary copy
                raise CheckpointError(str(err).replace(local, str(remote))) from err
    path = pathlib.Path(path).absolute()
    record = _read_record(path)
    if not (path / VARIABLES_DIR).is_dir():
        raise CheckpointError(f"{path} is incomplete: no {VARIABLES_DIR}/ directory")
    try:
        with _process_local_checkpointer() as checkpointer:
            restored = checkpointer.restore(path / VARIABLES_DIR)
    except Exception as err:  # Orbax/TensorStore raise many types; name the path for all
        raise CheckpointError(
            f"{path}: cannot read {VARIABLES_DIR}/, the checkpoint is corrupt or truncated "
            f"({error_cause(err)})"
        ) from err
    variables = _numpy_tree(restored)
    check_finite(variables, str(path))
    if template is not None:
        try:
            check_variables_match(variables, template)
        except VariablesMismatchError as err:
            raise CheckpointError(f"{path}: {err}") from err
    return variables, record["metadata"]
