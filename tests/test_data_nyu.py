"""The NYU-v2 builder on files the tests write in all three distributions, its errors, and the
real samples of ../shared (the `nyu_samples` fixture)."""

import io
import pathlib
import zipfile

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mde_adv.data import nyu_depth_v2, nyu_readers, pipeline
from mde_adv.data.errors import DataFormatError, DatasetNotBuiltError

H, W = 480, 640


def _rgb(rng) -> np.ndarray:
    """A compressible 480×640 RGB image: gradients plus a little noise."""
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 0.3, y * 0.4, (x + y) * 0.2], axis=-1) + rng.uniform(0, 60, 3)
    return ((base + rng.integers(0, 8, (H, W, 3))) % 256).astype(np.uint8)


def _depth_m(rng) -> np.ndarray:
    """A smooth depth map in metres, 0.7–9 m."""
    y, x = np.mgrid[0:H, 0:W]
    return (0.7 + 8.3 * (0.5 + 0.5 * np.sin(x / 97.0 + y / 61.0 + rng.uniform(0, 6)))).astype(
        np.float32
    )


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def _write_csv_png(root: pathlib.Path, split: str, count: int, seed: int) -> dict:
    """Writes the csv + PNG layout under root/data (train: JPEG RGB and 8-bit depth; test:
    PNG RGB and 16-bit mm depth). Returns {csv rgb path: (rgb, depth metres)} as expected."""
    rng = np.random.default_rng(seed)
    expected, rows = {}, []
    for i in range(count):
        rgb = _rgb(rng)
        if split == "train":
            rgb_path, depth_path = (
                f"data/nyu2_train/scene_{i}/1.jpg",
                f"data/nyu2_train/scene_{i}/1.png",
            )
            code = np.round(_depth_m(rng) / 10 * 255).astype(np.uint8)
            (root / rgb_path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / rgb_path, quality=95)
            rgb = np.asarray(Image.open(root / rgb_path))  # what JPEG decoding gives back
            depth = code.astype(np.float64) / 255 * 10
        else:
            rgb_path, depth_path = (
                f"data/nyu2_test/{i:05d}_colors.png",
                f"data/nyu2_test/{i:05d}_depth.png",
            )
            code = np.round(_depth_m(rng) * 1000).astype(np.uint16)
            (root / rgb_path).parent.mkdir(parents=True, exist_ok=True)
            (root / rgb_path).write_bytes(_png(rgb))
            depth = code.astype(np.float64) / 1000
        (root / depth_path).write_bytes(_png(code))
        rows.append(f"{rgb_path},{depth_path}\n")
        expected[rgb_path] = (rgb, depth)
    (root / "data" / f"nyu2_{split}.csv").write_text("".join(rows))
    return expected


def _zip_folder(folder: pathlib.Path, zip_path: pathlib.Path) -> None:
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())


def _build(config, manual_dir: pathlib.Path, data_dir: pathlib.Path) -> dict:
    """Builds and reads back {split: {id: example}}."""
    builder = nyu_depth_v2.NyuDepthV2Manual(config=config, data_dir=data_dir)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    )
    return {
        split: {_text(example["id"]): example for example in source}
        for split, source in builder.as_data_source().items()
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _assert_examples(built: dict, expected: dict, depth_atol: float = 1e-6) -> None:
    assert set(built) == set(expected)
    for example_id, (rgb, depth) in expected.items():
        example = built[example_id]
        assert example["image"].shape == (H, W, 3) and example["image"].dtype == np.uint8
        assert example["depth"].shape == (H, W) and example["depth"].dtype == np.float32
        np.testing.assert_array_equal(example["image"], rgb)
        np.testing.assert_allclose(example["depth"], depth, rtol=1e-6, atol=depth_atol)


# ----------------------------------------------------------------------------- good data


def test_csv_png_from_folder_and_from_zip(tmp_path):
    extracted = tmp_path / "extracted"
    expected = {
        "train": _write_csv_png(extracted, "train", 3, seed=0),
        "test": _write_csv_png(extracted, "test", 2, seed=1),
    }
    from_folder = _build("csv_png", extracted, tmp_path / "tfds_folder")
    for split in ("train", "test"):
        _assert_examples(from_folder[split], expected[split])

    zipped = tmp_path / "zipped"
    zipped.mkdir()
    _zip_folder(extracted, zipped / "nyu_data.zip")
    from_zip = _build("csv_png", zipped, tmp_path / "tfds_zip")
    for split in ("train", "test"):
        _assert_examples(from_zip[split], expected[split])


def _write_labeled_mat(path: pathlib.Path, count: int, seed: int):
    """MATLAB v7.3 layout as h5py sees it: images [N, 3, W, H] uint8, depths [N, W, H]."""
    rng = np.random.default_rng(seed)
    rgbs = np.stack([_rgb(rng) for _ in range(count)])
    depths = np.stack([_depth_m(rng) for _ in range(count)])
    with h5py.File(path, "w", userblock_size=512) as mat:
        mat["images"] = rgbs.transpose(0, 3, 2, 1)
        mat["depths"] = depths.transpose(0, 2, 1)
    with open(path, "r+b") as file:  # MATLAB's text header in the user block
        file.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")
    return rgbs, depths


def _write_splits(path: pathlib.Path, train, test, matlab_format: str) -> None:
    train = np.asarray(train, np.float64)[:, None]  # MATLAB column vectors of doubles
    test = np.asarray(test, np.float64)[:, None]
    if matlab_format == "v5":
        import scipy.io

        scipy.io.savemat(path, {"trainNdxs": train, "testNdxs": test})
    else:
        with h5py.File(path, "w") as mat:
            mat["trainNdxs"], mat["testNdxs"] = train.T, test.T


def test_labeled_mat_with_v73_splits(tmp_path):
    rgbs, depths = _write_labeled_mat(tmp_path / "nyu_depth_v2_labeled.mat", 5, seed=2)
    _write_splits(tmp_path / "splits.mat", [1, 3, 4], [2, 5], "v7.3")
    built = _build("labeled_mat", tmp_path, tmp_path / "tfds")
    for split, indices in (("train", [1, 3, 4]), ("test", [2, 5])):
        expected = {str(i): (rgbs[i - 1], depths[i - 1]) for i in indices}
        _assert_examples(built[split], expected)


@pytest.mark.parametrize("matlab_format", ["v5", "v7.3"])
def test_split_indices_in_both_mat_formats(tmp_path, matlab_format):
    path = tmp_path / "splits.mat"
    _write_splits(path, [1, 2, 7], [3, 9], matlab_format)
    indices = nyu_readers.read_split_indices(path)
    np.testing.assert_array_equal(indices["train"], [1, 2, 7])
    np.testing.assert_array_equal(indices["test"], [3, 9])
    assert indices["train"].dtype == np.int64


def _write_h5(path: pathlib.Path, rgb: np.ndarray, depth: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file["rgb"] = rgb.transpose(2, 0, 1)
        file["depth"] = depth


def test_h5_train_and_val_folders(tmp_path):
    rng = np.random.default_rng(3)
    expected = {"train": {}, "test": {}}
    for name, split in (
        ("train/kitchen/00001.h5", "train"),
        ("train/office/00007.h5", "train"),
        ("val/official/00001.h5", "test"),
    ):
        rgb, depth = _rgb(rng), _depth_m(rng)
        _write_h5(tmp_path / "nyudepthv2" / name, rgb, depth)
        expected[split][name] = (rgb, depth)
    built = _build("h5", tmp_path, tmp_path / "tfds")
    for split in ("train", "test"):
        _assert_examples(built[split], expected[split])


def test_train_split_keeps_holes_as_zero(tmp_path):
    _write_csv_png(tmp_path, "train", 1, seed=4)
    depth_file = tmp_path / "data/nyu2_train/scene_0/1.png"
    code = np.asarray(Image.open(depth_file)).copy()
    code[:10, :20] = 0
    depth_file.write_bytes(_png(code))
    [(_, _, depth)] = nyu_readers.csv_png_examples(tmp_path, "nyu2_train.csv", allow_holes=True)
    assert np.all(depth[:10, :20] == 0) and depth[10:].min() > 0


# ----------------------------------------------------------------------------- bad data


def _corrupt_csv_png(root: pathlib.Path, fault: str) -> str:
    """Writes a 2-row test csv with one fault; returns a regex the error must match."""
    _write_csv_png(root, "test", 2, seed=5)
    data = root / "data"
    depth = data / "nyu2_test/00001_depth.png"
    if fault == "row_points_nowhere":
        (data / "nyu2_test.csv").write_text(
            "data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n"
            "data/nyu2_test/00001_colors.png,data/nyu2_test/missing_depth.png\n"
        )
        return r"nyu2_test\.csv row 2: 'data/nyu2_test/missing_depth\.png' points to no file"
    if fault == "missing_file":
        (data / "nyu2_test/00001_colors.png").unlink()
        return r"nyu2_test\.csv row 2: 'data/nyu2_test/00001_colors\.png' points to no file"
    if fault == "bad_row":
        (data / "nyu2_test.csv").write_text("a.png,b.png,c.png\n")
        return r"nyu2_test\.csv row 1: expected 2 fields"
    if fault == "truncated_png":
        depth.write_bytes(depth.read_bytes()[:5000])
        return r"00001_depth\.png .*row 2.*cannot decode"
    if fault == "undecodable_rgb":
        (data / "nyu2_test/00001_colors.png").write_bytes(b"not an image at all")
        return r"00001_colors\.png .*row 2.*cannot decode"
    if fault == "size_mismatch":
        depth.write_bytes(_png(np.full((240, 320), 2000, np.uint16)))
        return r"00001_colors\.png .*640×480 but .*00001_depth\.png .*320×240"
    if fault == "depth_out_of_range":
        depth.write_bytes(_png(np.full((H, W), 25000, np.uint16)))
        return r"00001_depth\.png .*outside \[0, 20\) m"
    assert fault == "hole_in_test_split"
    code = np.full((H, W), 3000, np.uint16)
    code[5, 5] = 0
    depth.write_bytes(_png(code))
    return r"00001_depth\.png .*1 zero-depth holes"


@pytest.mark.parametrize(
    "fault",
    [
        "row_points_nowhere",
        "missing_file",
        "bad_row",
        "truncated_png",
        "undecodable_rgb",
        "size_mismatch",
        "depth_out_of_range",
        "hole_in_test_split",
    ],
)
def test_csv_png_errors_name_the_file_and_row(tmp_path, fault):
    pattern = _corrupt_csv_png(tmp_path, fault)
    with pytest.raises(DataFormatError, match=pattern):
        list(nyu_readers.csv_png_examples(tmp_path, "nyu2_test.csv", allow_holes=False))


def test_errors_inside_a_zip_name_the_member(tmp_path):
    folder = tmp_path / "folder"
    _corrupt_csv_png(folder, "truncated_png")
    _zip_folder(folder, tmp_path / "nyu_data.zip")
    with pytest.raises(DataFormatError, match=r"nyu_data\.zip:data/nyu2_test/00001_depth\.png"):
        list(
            nyu_readers.csv_png_examples(
                tmp_path / "nyu_data.zip", "nyu2_test.csv", allow_holes=False
            )
        )
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(DataFormatError, match=r"broken\.zip: not a readable zip"):
        list(
            nyu_readers.csv_png_examples(
                tmp_path / "broken.zip", "nyu2_test.csv", allow_holes=False
            )
        )


def test_labeled_mat_errors(tmp_path):
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as file:  # depths not in MATLAB's transposed layout
        file["images"] = np.zeros((2, 3, W, H), np.uint8)
        file["depths"] = np.ones((2, H, W), np.float32)
    with pytest.raises(DataFormatError, match=r"labeled\.mat: 'depths' must be \[2, 640, 480\]"):
        list(nyu_readers.labeled_mat_examples(mat, np.array([1]), allow_holes=False))
    with h5py.File(mat, "w") as file:
        file["images"] = np.zeros((2, 3, W, H), np.uint8)
        file["depths"] = np.ones((2, W, H), np.float32)
    with pytest.raises(DataFormatError, match=r"labeled\.mat: split index 3 > 2 images"):
        list(nyu_readers.labeled_mat_examples(mat, np.array([1, 3]), allow_holes=False))
    splits = tmp_path / "splits.mat"
    with h5py.File(splits, "w") as file:
        file["trainNdxs"] = np.ones((1, 3))
    with pytest.raises(DataFormatError, match=r"splits\.mat: missing field 'testNdxs'"):
        nyu_readers.read_split_indices(splits)


def test_h5_errors(tmp_path):
    rng = np.random.default_rng(6)
    good = tmp_path / "val/official/00001.h5"
    _write_h5(good, _rgb(rng), _depth_m(rng))
    with h5py.File(tmp_path / "val/official/00002.h5", "w") as file:
        file["rgb"] = np.zeros((3, H, W), np.uint8)
    with pytest.raises(DataFormatError, match=r"00002\.h5: needs datasets 'rgb' and 'depth'"):
        list(nyu_readers.h5_examples(tmp_path, "val", allow_holes=False))
    (tmp_path / "val/official/00002.h5").write_bytes(good.read_bytes()[:4000])
    with pytest.raises(DataFormatError, match=r"00002\.h5: not a readable HDF5 file"):
        list(nyu_readers.h5_examples(tmp_path, "val", allow_holes=False))
    with pytest.raises(DataFormatError, match=r"train: no \.h5 files"):
        list(nyu_readers.h5_examples(tmp_path, "train", allow_holes=True))


@pytest.mark.parametrize(
    "config, pattern",
    [
        ("csv_png", r"manual: neither nyu2_train\.csv .* nor nyu_data\.zip"),
        ("labeled_mat", r"nyu_depth_v2_labeled\.mat: missing"),
        ("h5", r"manual/train: no \.h5 files"),
        (nyu_depth_v2.NyuConfig(name="bad", distribution="kinect"), r"'kinect' not in"),
    ],
)
def test_missing_distribution_is_a_clear_error(tmp_path, config, pattern):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "README.txt").write_text("not a dataset")  # TFDS refuses an empty manual dir
    with pytest.raises(ValueError, match=pattern):
        _build(config, manual, tmp_path / "tfds")


def test_failed_build_leaves_no_dataset_and_a_rebuild_works(tmp_path):
    manual, data_dir = tmp_path / "manual", tmp_path / "tfds"
    _write_csv_png(manual, "test", 3, seed=7)
    depth = manual / "data/nyu2_test/00002_depth.png"
    good_bytes = depth.read_bytes()
    depth.write_bytes(good_bytes[:3000])
    config = "csv_png_test"  # the registered test-only config
    with pytest.raises(DataFormatError, match=r"00002_depth\.png .*row 3"):
        _build(config, manual, data_dir)
    assert not list(data_dir.rglob("dataset_info.json"))
    assert not nyu_depth_v2.NyuDepthV2Manual(config=config, data_dir=data_dir).is_prepared()
    version_dir = data_dir / "nyu_depth_v2_manual/csv_png_test/1.0.0"
    with pytest.raises(DatasetNotBuiltError, match="no finished dataset"):
        pipeline.load_split(str(version_dir), "test")
    with pytest.raises(DatasetNotBuiltError):
        pipeline.load_split("nyu_depth_v2_manual/csv_png", "test", str(data_dir))

    depth.write_bytes(good_bytes)
    assert len(_build(config, manual, data_dir)["test"]) == 3


# ------------------------------------------------------------------------- real samples


def test_real_csv_png_samples(nyu_samples, tmp_path):
    config = "csv_png_test"  # the registered test-only config
    built = _build(config, nyu_samples, tmp_path)["test"]
    rows = [line.split(",") for line in (nyu_samples / "nyu2_test.csv").read_text().split()]
    assert set(built) == {rgb for rgb, _ in rows}
    for rgb_path, depth_path in rows:
        example = built[rgb_path]
        files = (
            nyu_samples / rgb_path.removeprefix("data/"),
            nyu_samples / depth_path.removeprefix("data/"),
        )
        assert example["image"].shape == (H, W, 3) and example["depth"].shape == (H, W)
        np.testing.assert_array_equal(example["image"], np.asarray(Image.open(files[0])))
        millimetres = np.asarray(Image.open(files[1])).astype(np.float64)
        np.testing.assert_allclose(example["depth"], millimetres / 1000, rtol=1e-7)
        assert 0.5 < example["depth"].min() and example["depth"].max() < 10.5


def test_real_h5_sample_equals_its_png_pair(nyu_samples, tmp_path):
    config = "h5_test"
    built = _build(config, nyu_samples / "h5", tmp_path)["test"]
    assert set(built) == {"val/official/00001.h5"}
    example = built["val/official/00001.h5"]
    # The h5 files are numbered from 1: 00001.h5 is the first test pair, 00000_*.png.
    rgb = np.asarray(Image.open(nyu_samples / "nyu2_test/00000_colors.png"))
    millimetres = np.asarray(Image.open(nyu_samples / "nyu2_test/00000_depth.png"))
    np.testing.assert_array_equal(example["image"], rgb)
    assert np.abs(example["depth"] - millimetres / 1000).max() <= 0.001 + 1e-6
