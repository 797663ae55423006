"""Per-image result rows, their aggregation (spec §5) and the files of an evaluation.

A row is one image × table × setting × method: {'table', 'setting', 'method', 'id',
'position' (index in the eval split), 'attack', 'target' (the attacked function), 'eps',
'eps_space', 'alpha' (ε-space units), 'steps', and the values:
'mse', 'rmse', 'rel', 'log10' (None where a prediction is non-positive), 'delta1..3' for
depth methods; other names for the extra rows (energy shares, targeted ratios)}.
Aggregates: the metrics helpers' protocol (every metric the mean over images, RMSE the
square root of the mean per-image MSE, log10 over the images where it is defined, with the
count of the others); any other value is the mean over the images where it is finite.
"""

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from mde_adv import paths
from mde_adv.metrics import PER_IMAGE_NAMES, metrics_finalize, metrics_init, metrics_update

PER_IMAGE_FILE = "per_image.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
RUN_INFO_FILE = "run_info.json"
FIGURES_FILE = "figures.npz"

KEY_FIELDS = ("table", "setting", "method")
META_FIELDS = ("attack", "target", "eps", "eps_space", "alpha", "steps")
ROW_FIELDS = (*KEY_FIELDS, "id", "position", *META_FIELDS)
DEPTH_METRICS = ("rmse", "rel", "log10", "delta1", "delta2", "delta3")
ID_BYTES = 256

Row = dict[str, Any]


def encode_ids(ids: Sequence[str]) -> np.ndarray:
    """uint8[N, ID_BYTES]: UTF-8 ids, zero-padded (so they can be gathered across processes)."""
    encoded = np.zeros((len(ids), ID_BYTES), np.uint8)
    for i, example_id in enumerate(ids):
        data = str(example_id).encode("utf-8")
        if len(data) > ID_BYTES:
            raise ValueError(f"example id {example_id!r} is longer than {ID_BYTES} bytes")
        encoded[i, : len(data)] = np.frombuffer(data, np.uint8)
    return encoded


def decode_ids(encoded: np.ndarray) -> list[str]:
    return [bytes(row).rstrip(b"\0").decode("utf-8") for row in np.asarray(encoded, np.uint8)]


def gather_across_processes(tree: Any) -> Any:
    """Concatenates every array leaf [N_p, ...] over the JAX processes along axis 0 (process
    order); a collective that every process must call. One process: returned unchanged."""
    if jax.process_count() == 1:
        return tree
    gathered = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree_util.tree_map(np.asarray, gathered)


def _json_value(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def make_rows(
    values: Mapping[tuple[str, str, str], Mapping[str, np.ndarray]],
    meta: Mapping[tuple[str, str, str], Mapping[str, Any]],
    ids: Sequence[str],
    positions: np.ndarray,
) -> list[Row]:
    """Rows of `values` {(table, setting, method): {name: [N]}} for the N images (ids,
    positions), key by key, images in the given order; meta holds each key's META_FIELDS."""
    rows = []
    for key, named in values.items():
        for i, example_id in enumerate(ids):
            row = dict(zip(KEY_FIELDS, key, strict=True))
            row.update(id=example_id, position=int(positions[i]), **meta[key])
            row.update({name: float(array[i]) for name, array in named.items()})
            rows.append(row)
    return rows


def write_rows(rows: Iterable[Row], path: paths.PathLike) -> None:
    """The rows as JSON lines at `path`, written whole or not at all."""
    with paths.atomic_open(path, "w", encoding="utf-8") as file:
        for row in rows:
            record = {k: _json_value(v) for k, v in row.items()}
            file.write(json.dumps(record, allow_nan=False, ensure_ascii=False))
            file.write("\n")


def read_rows(path: paths.PathLike) -> list[Row]:
    """The rows of a per-image JSON-lines file; undefined values (null) become NaN."""
    path = paths.as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no per-image results at {path}")
    rows = []
    with path.open(encoding="utf-8") as file:
        for line_number, line in enumerate(file, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_number}: not a JSON row: {err}") from err
            missing = [field for field in ROW_FIELDS if field not in row]
            if missing:
                raise ValueError(f"{path}:{line_number}: row lacks the fields {missing}")
            rows.append({k: (math.nan if v is None else v) for k, v in row.items()})
    return rows


def _value_names(rows: Sequence[Row]) -> list[str]:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(k for k in row if k not in ROW_FIELDS))
    return list(names)


def _aggregate_one(rows: Sequence[Row]) -> Row:
    first = rows[0]
    summary = {field: first[field] for field in (*KEY_FIELDS, *META_FIELDS)}
    summary["images"] = len(rows)
    names = _value_names(rows)
    if "mse" in names:
        per_image = {
            name: jnp.asarray([row[name] for row in rows], jnp.float32) for name in PER_IMAGE_NAMES
        }
        final = metrics_finalize(metrics_update(metrics_init(), per_image))
        summary.update({name: float(final[name]) for name in DEPTH_METRICS})
        summary["log10_undefined_images"] = int(final["log10_undefined_images"])
    for name in names:
        if name in PER_IMAGE_NAMES:
            continue
        values = np.asarray([row[name] for row in rows], np.float64)
        finite = values[np.isfinite(values)]
        summary[name] = float(finite.mean()) if finite.size else math.nan
    return summary


def aggregate(rows: Sequence[Row]) -> list[Row]:
    """One summary row per (table, setting, method), in order of first appearance, with
    'images', the aggregated metrics and the means of the other values."""
    grouped: dict[tuple, list[Row]] = {}
    for row in rows:
        grouped.setdefault(tuple(row[f] for f in KEY_FIELDS), []).append(row)
    return [_aggregate_one(group) for group in grouped.values()]


def write_summary(summary: Sequence[Row], out_dir: paths.PathLike) -> None:
    """summary.json (a list of rows) and summary.csv (one column per value name)."""
    clean = [{k: _json_value(v) for k, v in row.items()} for row in summary]
    text = json.dumps(clean, indent=1, allow_nan=False, ensure_ascii=False)
    out_dir = paths.as_path(out_dir)
    paths.write_text_atomic(out_dir / SUMMARY_JSON, text)
    columns: dict[str, None] = {}
    for row in clean:
        columns.update(dict.fromkeys(row))
    with paths.atomic_open(out_dir / SUMMARY_CSV, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(clean)
