"""Dataset names → TFDS builders, and building them with a record of their source files.

A dataset name is a registered 'builder/config' (`nyu_depth_v2_manual/csv_png`,
`procedural_rooms/small`, ...) or the folder of a prepared dataset version (the one holding
`dataset_info.json`). Importing this module (done by `import mde_adv`) registers both builders
with TFDS.

`prepare` builds a registered dataset into a data_dir and writes `sources.json` beside its
`dataset_info.json`: the relative path, size and modification time (ns) of every file of the
manual dir it was built from. A later `prepare` into the same data_dir with a manual dir whose
files differ refuses (DatasetSourcesChangedError naming the changed files) instead of silently
reusing the old build.
"""

import json
import os
import pathlib

import tensorflow_datasets as tfds
from tensorflow_datasets.core import registered

from mde_adv import paths
from mde_adv.data import nyu_depth_v2, procedural_rooms
from mde_adv.data.errors import (
    DatasetNotBuiltError,
    DatasetSourcesChangedError,
    UnknownDatasetError,
)

SOURCES_FILE = "sources.json"
BUILDERS = (nyu_depth_v2.NyuDepthV2Manual, procedural_rooms.ProceduralRooms)


def known_names() -> list[str]:
    """Every registered 'builder/config' of this package."""
    return [f"{b.name}/{config.name}" for b in BUILDERS for config in b.BUILDER_CONFIGS]


def is_folder_name(name: str) -> bool:
    """True where `name` means a folder (absolute, or an existing relative path)."""
    folder = pathlib.Path(name)
    return folder.is_absolute() or folder.exists()


def dataset_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The builder of a dataset name (see the module docstring).

    Raises DatasetNotBuiltError for a folder without `dataset_info.json` and
    UnknownDatasetError for a name that is neither registered nor a folder.
    """
    if is_folder_name(name):
        folder = pathlib.Path(name)
        if not (folder / "dataset_info.json").is_file():
            raise DatasetNotBuiltError(
                f"no finished dataset in {folder} (no dataset_info.json): a dataset folder is "
                "the version folder a build wrote, e.g. <data_dir>/nyu_depth_v2_manual/"
                "csv_png_test/1.0.0"
            )
        return tfds.builder_from_directory(folder)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except (registered.DatasetNotFoundError, ValueError) as error:
        cause = str(error).splitlines()[0][:200]
        raise UnknownDatasetError(
            f"dataset {name!r} is neither a prepared dataset folder nor a known "
            f"'builder/config' ({cause}); known: {', '.join(known_names())}"
        ) from None


def sources_record(manual_dir: str | os.PathLike) -> dict[str, list[int]]:
    """{relative path: [size bytes, mtime ns]} of every file under `manual_dir`."""
    root = pathlib.Path(manual_dir)
    record = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            stat = path.stat()
            record[path.relative_to(root).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return record


def _differences(old: dict, new: dict, limit: int = 5) -> str:
    changed = sorted(k for k in set(old) & set(new) if old[k] != new[k])
    parts = [
        f"{label} {', '.join(names[:limit])}{' …' if len(names) > limit else ''}"
        for label, names in (
            ("changed:", changed),
            ("new:", sorted(set(new) - set(old))),
            ("gone:", sorted(set(old) - set(new))),
        )
        if names
    ]
    return "; ".join(parts)


def prepare(
    name: str, data_dir: str | None, manual_dir: str | os.PathLike | None = None
) -> tfds.core.DatasetBuilder:
    """Builds dataset `name` into `data_dir` (from `manual_dir` for NYU-v2) unless already
    there, and returns its builder. A prepared folder is only checked. Raises
    DatasetSourcesChangedError where the data_dir holds a build of other manual-dir files."""
    builder = dataset_builder(name, data_dir)
    if is_folder_name(name):
        return builder
    record_path = paths.as_path(builder.data_dir) / SOURCES_FILE
    sources = sources_record(manual_dir) if manual_dir else None
    if builder.is_prepared() and sources is not None and record_path.is_file():
        built = json.loads(record_path.read_text())
        if built.get("files") != sources:
            raise DatasetSourcesChangedError(
                f"{builder.data_dir} holds {name!r} built from other source files (in "
                f"{built.get('manual_dir')}) than those in {manual_dir} now "
                f"({_differences(built.get('files', {}), sources)}): delete "
                f"{builder.data_dir} to rebuild it from the new files, or give another data_dir"
            )
    if builder.is_prepared():
        return builder
    download_config = (
        tfds.download.DownloadConfig(manual_dir=str(manual_dir)) if manual_dir else None
    )
    builder.download_and_prepare(download_config=download_config)
    if sources is not None:
        record = {"manual_dir": str(pathlib.Path(manual_dir).absolute()), "files": sources}
        paths.write_text_atomic(record_path, json.dumps(record))
    return builder
