"""TFDS builder `nyu_depth_v2_manual`: NYU Depth v2 from a manually downloaded distribution.

One config per distribution (spec §6), all with splits `train` and `test` and the features
of `mde_adv.data.features.rgbd_features(480, 640)`:
- `csv_png`: `nyu_data.zip` or its extracted folder (`nyu2_train.csv`, `nyu2_test.csv`);
  ids are the csv's RGB paths.
- `labeled_mat`: `nyu_depth_v2_labeled.mat` + `splits.mat` (795 train / 654 test); ids are
  the 1-based labeled indices.
- `h5`: the sparse-to-dense h5 folders `train/` and `val/` (→ split `test`); ids are paths.
Holes (depth 0) are allowed in `train` only (see `nyu_readers`). TFDS writes into an
`incomplete.*` folder and renames it only once every split is written, so a failed build
leaves no dataset that `tfds.data_source` or `pipeline.load_split` would accept. Files are
array_record by default (TFRecord would need TensorFlow). Build, e.g.:
`tfds.builder("nyu_depth_v2_manual/csv_png", data_dir=D).download_and_prepare(
download_config=tfds.download.DownloadConfig(manual_dir=M))`.

Test-only configs `csv_png_test`, `labeled_mat_test`, `h5_test` build split `test` alone (the
654 official test images, without the training set): what an evaluation of given networks
needs (configs/nyu/evaluate.py).
"""

import dataclasses
import pathlib
from typing import ClassVar

import tensorflow_datasets as tfds

from mde_adv.data import nyu_readers
from mde_adv.data.errors import DataFormatError
from mde_adv.data.features import rgbd_example, rgbd_features

DISTRIBUTIONS = ("csv_png", "labeled_mat", "h5")
HOLES_ALLOWED = {"train": True, "test": False}


@dataclasses.dataclass
class NyuConfig(tfds.core.BuilderConfig):
    """`distribution`: one of DISTRIBUTIONS; `splits`: which of ('train', 'test') to build."""

    distribution: str = "csv_png"
    splits: tuple[str, ...] = ("train", "test")


class NyuDepthV2Manual(tfds.core.GeneratorBasedBuilder):
    """NYU Depth v2 image/depth pairs (480×640, depth float32 metres) from manual files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        NyuConfig(
            name="csv_png",
            distribution="csv_png",
            description="csv + PNG distribution (~50K train / 654 test).",
        ),
        NyuConfig(
            name="labeled_mat",
            distribution="labeled_mat",
            description="Official labeled set with splits.mat (795 train / 654 test).",
        ),
        NyuConfig(
            name="h5",
            distribution="h5",
            description="Sparse-to-dense h5 files (47,584 train / 654 val → test).",
        ),
    ] + [
        NyuConfig(
            name=f"{distribution}_test",
            distribution=distribution,
            splits=("test",),
            description=f"The test split alone (654 images) of the {distribution} distribution.",
        )
        for distribution in DISTRIBUTIONS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Place ONE of these distributions in the manual dir (`--manual_dir`, or
    `<data_dir>/downloads/manual/`):
    - csv_png: `nyu_data.zip` (the csv + PNG distribution of the ~50K training / 654 test
      pairs), or its extracted contents: `nyu2_train.csv` and `nyu2_test.csv` (no header,
      `rgb_path,depth_path` relative to the folder holding `data/`), at the top or in `data/`,
      with the files they list. Train depth: 8-bit PNG, metres = value/255·10; test depth:
      16-bit PNG in millimetres.
    - labeled_mat: `nyu_depth_v2_labeled.mat` (MATLAB v7.3) and `splits.mat` (v5 or v7.3),
      from https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html.
    - h5: the `train/` and `val/` folders of the sparse-to-dense `nyudepthv2` archive (directly
      in the manual dir, or in `nyudepthv2/`).
    """

    def __init__(self, *, file_format: str | None = None, **kwargs):
        """As TFDS's, but stores array_record by default (readable without TensorFlow)."""
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=rgbd_features(nyu_readers.NYU_HEIGHT, nyu_readers.NYU_WIDTH),
            homepage="https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"NyuConfig.distribution {config.distribution!r} not in {DISTRIBUTIONS}"
            )
        unknown = set(config.splits) - set(HOLES_ALLOWED)
        if unknown or not config.splits:
            raise ValueError(
                f"NyuConfig.splits {config.splits} must be a non-empty subset of "
                f"{tuple(HOLES_ALLOWED)}"
            )
        manual_dir = pathlib.Path(dl_manager.manual_dir)
        return {split: self._generate_examples(manual_dir, split) for split in config.splits}

    def _generate_examples(self, manual_dir: pathlib.Path, split: str):
        for example_id, rgb, depth in _examples(
            self.builder_config.distribution, manual_dir, split
        ):
            yield example_id, rgbd_example(rgb, depth, example_id)


def _examples(distribution: str, manual_dir: pathlib.Path, split: str):
    allow_holes = HOLES_ALLOWED[split]
    if distribution == "csv_png":
        csv_name = f"nyu2_{split}.csv"
        extracted = any((manual_dir / d / csv_name).is_file() for d in (".", "data"))
        root = manual_dir if extracted else manual_dir / "nyu_data.zip"
        if not root.exists():
            raise DataFormatError(
                f"{manual_dir}: neither {csv_name} (at the top or in data/) nor nyu_data.zip"
            )
        return nyu_readers.csv_png_examples(root, csv_name, allow_holes=allow_holes)
    if distribution == "labeled_mat":
        mat_path = manual_dir / "nyu_depth_v2_labeled.mat"
        splits_path = manual_dir / "splits.mat"
        for path in (mat_path, splits_path):
            if not path.is_file():
                raise DataFormatError(f"{path}: missing")
        indices = nyu_readers.read_split_indices(splits_path)[split]
        return nyu_readers.labeled_mat_examples(mat_path, indices, allow_holes=allow_holes)
    root = manual_dir / "nyudepthv2" if (manual_dir / "nyudepthv2").is_dir() else manual_dir
    folder = {"train": "train", "test": "val"}[split]
    return nyu_readers.h5_examples(root, folder, allow_holes=allow_holes)
