"""Readers of the three common NYU Depth v2 distributions (spec §6), with strict validation.

Every reader yields `(id, rgb uint8 [480, 640, 3], depth float32 [480, 640] metres)` and
raises `DataFormatError` naming the file (and csv row) on a missing, truncated or
undecodable file, an RGB/depth size mismatch, or depth values outside [0, 20) m.

Depth holes: an exact 0 is a hole (no measurement). Holes are kept as 0 in training splits;
a test split must be hole-free (its metrics divide by the target, spec §5; the csv_png test
depths are hole-filled), and a depth map that is all holes is an error in every split.
"""

import csv
import io
import pathlib
import posixpath
import zipfile
import zlib
from collections.abc import Iterator

import h5py
import numpy as np
from PIL import Image

from mde_adv.data.errors import DataFormatError

NYU_HEIGHT, NYU_WIDTH = 480, 640
MAX_DEPTH_M = 20.0
TRAIN_PNG_MAX_DEPTH_M = 10.0  # 8-bit training depth: metres = value / 255 · 10
Example = tuple[str, np.ndarray, np.ndarray]
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, zipfile.BadZipFile)


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Encoded RGB image (PNG, JPEG…) -> uint8 [H, W, 3]; `name` is used in errors."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode != "RGB":
                raise DataFormatError(f"{name}: expected an RGB image, got mode {image.mode!r}")
            return np.asarray(image, dtype=np.uint8)
    except DataFormatError:
        raise
    except _DECODE_ERRORS as error:
        raise DataFormatError(f"{name}: cannot decode the image ({error})") from error


def decode_depth_png(data: bytes, name: str, *, require_16bit: bool = False) -> np.ndarray:
    """Depth PNG -> float32 [H, W] metres: 8-bit value/255·10 (train), 16-bit value/1000 (mm).

    require_16bit: the test split's depth is 16-bit millimetres by definition (spec §6); an
    8-bit map there (≤ 10 m in 1/25.5 m steps, or a plain greyscale conversion) is an error.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            values = np.asarray(image)
    except _DECODE_ERRORS as error:
        raise DataFormatError(f"{name}: cannot decode the depth PNG ({error})") from error
    if mode == "L" and require_16bit:
        raise DataFormatError(
            f"{name}: test depth must be a 16-bit PNG in millimetres (spec §6), got an 8-bit "
            "PNG (mode 'L'); use the test depth files of the distribution, not a conversion"
        )
    if mode == "L":
        return values.astype(np.float32) / 255.0 * TRAIN_PNG_MAX_DEPTH_M
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        return values.astype(np.float32) / 1000.0
    raise DataFormatError(f"{name}: expected an 8- or 16-bit grey depth PNG, got mode {mode!r}")


def check_pair(
    rgb: np.ndarray, depth: np.ndarray, rgb_name: str, depth_name: str, *, allow_holes: bool
) -> None:
    """Raises DataFormatError unless rgb is uint8 [480, 640, 3] and depth a valid map of its
    size in metres: finite, in [0, 20), zeros (holes) only where `allow_holes`, not all holes."""
    if rgb.shape[:2] != depth.shape:
        raise DataFormatError(
            f"{rgb_name} is {rgb.shape[1]}×{rgb.shape[0]} but {depth_name} is "
            f"{depth.shape[-1]}×{depth.shape[0]}: RGB/depth size mismatch"
        )
    if rgb.shape != (NYU_HEIGHT, NYU_WIDTH, 3):
        raise DataFormatError(f"{rgb_name}: expected 640×480 RGB, got shape {rgb.shape}")
    if not np.all(np.isfinite(depth)):
        raise DataFormatError(f"{depth_name}: depth has NaN or infinite values")
    low, high = float(depth.min()), float(depth.max())
    if low < 0 or high >= MAX_DEPTH_M:
        raise DataFormatError(
            f"{depth_name}: depth outside [0, {MAX_DEPTH_M:g}) m (min {low:g}, max {high:g})"
        )
    if high == 0:
        raise DataFormatError(f"{depth_name}: depth is all zeros (holes)")
    if low == 0 and not allow_holes:
        holes = int(np.count_nonzero(depth == 0))
        raise DataFormatError(f"{depth_name}: {holes} zero-depth holes in a hole-free split")


# ------------------------------------------------------------------------------ csv + PNG


class FileTree:
    """Read-only files of a folder or of a zip archive, by '/'-separated relative name."""

    def __init__(self, root: pathlib.Path):
        self.root = root
        try:
            self._zip = zipfile.ZipFile(root) if root.is_file() else None
        except (OSError, zipfile.BadZipFile) as error:
            raise DataFormatError(f"{root}: not a readable zip archive ({error})") from error
        self._names = set(self._zip.namelist()) if self._zip else None

    def exists(self, name: str) -> bool:
        if self._names is not None:
            return name in self._names
        return (self.root / name).is_file()

    def describe(self, name: str) -> str:
        return f"{self.root}:{name}" if self._zip else str(self.root / name)

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.root / name).read_bytes()
        except (OSError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            raise DataFormatError(f"{self.describe(name)}: cannot read ({error})") from error

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def find_csv(tree: FileTree, csv_name: str) -> str:
    """Name of `csv_name` in the tree: at its top or in `data/`."""
    for name in (csv_name, f"data/{csv_name}"):
        if tree.exists(name):
            return name
    raise DataFormatError(f"{tree.root}: no {csv_name} (looked at its top and in data/)")


def _resolve(tree: FileTree, csv_name: str, path: str) -> str | None:
    """A csv path is relative to the folder holding `data/`; the csv may sit in `data/` or
    beside it, and a copy may lack the `data/` level. Returns the first name that exists."""
    csv_dir = posixpath.dirname(csv_name)
    stripped = path.removeprefix("data/")
    for name in (
        posixpath.join(posixpath.dirname(csv_dir), path),
        posixpath.join(csv_dir, path),
        posixpath.join(csv_dir, stripped),
    ):
        name = posixpath.normpath(name)
        if tree.exists(name):
            return name
    return None


def read_csv_index(tree: FileTree, csv_name: str) -> list[tuple[int, str, str, str]]:
    """Rows (1-based row number, rgb path as listed, rgb name, depth name) of a headerless
    `rgb,depth` csv, the names resolved to files of the tree."""
    csv_label = tree.describe(csv_name)
    try:
        text = tree.read(csv_name).decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{csv_label}: not UTF-8 text ({error})") from error
    rows, seen = [], {}
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        if len(fields) != 2:
            raise DataFormatError(f"{csv_label} row {number}: expected 2 fields, got {fields}")
        resolved = []
        for field in fields:
            name = _resolve(tree, csv_name, field.strip())
            if name is None:
                raise DataFormatError(f"{csv_label} row {number}: {field!r} points to no file")
            resolved.append(name)
        if fields[0] in seen:
            raise DataFormatError(
                f"{csv_label} row {number}: {fields[0]!r} repeats row {seen[fields[0]]}"
            )
        seen[fields[0]] = number
        rows.append((number, fields[0].strip(), *resolved))
    if not rows:
        raise DataFormatError(f"{csv_label}: no rows")
    return rows


def csv_png_examples(root: pathlib.Path, csv_name: str, *, allow_holes: bool) -> Iterator[Example]:
    """Examples of one csv of the csv + PNG distribution in a folder or zip `root`;
    ids are the RGB paths as the csv lists them. A hole-free (test) split needs 16-bit depth."""
    tree = FileTree(root)
    try:
        csv_path = find_csv(tree, csv_name)
        for number, rgb_path, rgb_name, depth_name in read_csv_index(tree, csv_path):
            where = f"({tree.describe(csv_path)} row {number})"
            rgb_label = f"{tree.describe(rgb_name)} {where}"
            depth_label = f"{tree.describe(depth_name)} {where}"
            rgb = decode_rgb(tree.read(rgb_name), rgb_label)
            depth = decode_depth_png(
                tree.read(depth_name), depth_label, require_16bit=not allow_holes
            )
            check_pair(rgb, depth, rgb_label, depth_label, allow_holes=allow_holes)
            yield rgb_path, rgb, depth
    finally:
        tree.close()


# ------------------------------------------------------------------- labeled .mat + splits


def read_split_indices(path: pathlib.Path) -> dict[str, np.ndarray]:
    """`splits.mat` (MATLAB v5 via scipy, or v7.3 = HDF5 via h5py) -> 1-based int64 indices
    {'train': trainNdxs, 'test': testNdxs}."""
    fields = {"train": "trainNdxs", "test": "testNdxs"}
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as mat:
                raw = {field: np.asarray(mat[field]) for field in fields.values() if field in mat}
        else:
            import scipy.io  # v5 MAT files

            raw = scipy.io.loadmat(path, variable_names=list(fields.values()))
    except (OSError, ValueError, TypeError) as error:
        raise DataFormatError(f"{path}: cannot read the split indices ({error})") from error
    missing = [field for field in fields.values() if field not in raw]
    if missing:
        raise DataFormatError(f"{path}: missing field {missing[0]!r} (need trainNdxs, testNdxs)")
    raw = {split: np.asarray(raw[field]) for split, field in fields.items()}
    indices = {}
    for split, values in raw.items():
        flat = values.reshape(-1)
        if flat.size == 0 or np.any(flat != np.round(flat)) or flat.min() < 1:
            raise DataFormatError(f"{path}: {fields[split]} must hold 1-based integer indices")
        indices[split] = flat.astype(np.int64)
    return indices


def labeled_mat_examples(
    mat_path: pathlib.Path, indices: np.ndarray, *, allow_holes: bool
) -> Iterator[Example]:
    """Examples of `nyu_depth_v2_labeled.mat` (v7.3/HDF5: h5py sees `images` as [N, 3, W, H]
    uint8 and `depths` as [N, W, H] metres) at 1-based `indices`; ids are those indices."""
    try:
        mat = h5py.File(mat_path, "r")
    except OSError as error:
        raise DataFormatError(f"{mat_path}: not a readable MATLAB v7.3 file ({error})") from error
    with mat:
        for field in ("images", "depths"):
            if field not in mat:
                raise DataFormatError(f"{mat_path}: no {field!r} dataset")
        images, depths = mat["images"], mat["depths"]
        count = images.shape[0]
        if images.shape[1:] != (3, NYU_WIDTH, NYU_HEIGHT) or images.dtype != np.uint8:
            raise DataFormatError(
                f"{mat_path}: 'images' must be uint8 [N, 3, 640, 480] as h5py sees it, got "
                f"{images.dtype} {images.shape}"
            )
        if depths.shape != (count, NYU_WIDTH, NYU_HEIGHT):
            raise DataFormatError(
                f"{mat_path}: 'depths' must be [{count}, 640, 480] as h5py sees it, got "
                f"{depths.shape}"
            )
        if indices.max() > count:
            raise DataFormatError(f"{mat_path}: split index {indices.max()} > {count} images")
        for index in indices:
            label = f"{mat_path} image {index}"
            try:
                rgb = np.ascontiguousarray(images[index - 1].transpose(2, 1, 0))
                depth = np.ascontiguousarray(depths[index - 1].T, dtype=np.float32)
            except OSError as error:
                raise DataFormatError(f"{label}: cannot read ({error})") from error
            check_pair(rgb, depth, label, label, allow_holes=allow_holes)
            yield str(int(index)), rgb, depth


# ------------------------------------------------------------------------ sparse-to-dense h5


def h5_examples(root: pathlib.Path, folder: str, *, allow_holes: bool) -> Iterator[Example]:
    """Examples of every `root/folder/**/*.h5` (`rgb` uint8 [3, 480, 640], `depth` float
    [480, 640] metres), sorted by path; ids are paths relative to `root`."""
    paths = sorted((root / folder).rglob("*.h5"))
    if not paths:
        raise DataFormatError(f"{root / folder}: no .h5 files")
    for path in paths:
        try:
            with h5py.File(path, "r") as file:
                if "rgb" not in file or "depth" not in file:
                    raise DataFormatError(f"{path}: needs datasets 'rgb' and 'depth'")
                rgb, depth = np.asarray(file["rgb"]), np.asarray(file["depth"])
        except OSError as error:
            raise DataFormatError(f"{path}: not a readable HDF5 file ({error})") from error
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DataFormatError(
                f"{path}: 'rgb' must be uint8 [3, H, W], got {rgb.dtype} {rgb.shape}"
            )
        if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
            raise DataFormatError(
                f"{path}: 'depth' must be float [H, W], got {depth.dtype} {depth.shape}"
            )
        rgb = np.ascontiguousarray(rgb.transpose(1, 2, 0))
        depth = depth.astype(np.float32)
        check_pair(rgb, depth, str(path), str(path), allow_holes=allow_holes)
        yield path.relative_to(root).as_posix(), rgb, depth
