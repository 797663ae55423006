"""TFDS builder `procedural_rooms`: an embedded dataset of rendered rooms with exact depth.

Nothing is downloaded: every example is rendered by `rooms.render_room(seed, height, width)`
with seed = index in `train` and TEST_SEED_OFFSET + index in `test`, so an example depends on
its split and index only (not on the build order or on the number of workers), and the same
index shows the same scene at every resolution. Features: `rgbd_features(height, width)`,
ids `"train/000042"`. Configs: `small` (240×320), `study` (`small`'s first 320 train
examples: the default study), `full` (480×640) and `tiny` (48×64, for CPU tests); a custom
size or count is a `ProceduralRoomsConfig` passed as `ProceduralRooms(config=...)`. Files are
array_record by default (readable without TensorFlow).
"""

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from concurrent import futures
from typing import ClassVar

import tensorflow_datasets as tfds

from mde_adv.data.features import rgbd_example, rgbd_features
from mde_adv.data.rooms import render_room

TEST_SEED_OFFSET = 2**31


@dataclasses.dataclass
class ProceduralRoomsConfig(tfds.core.BuilderConfig):
    """Image size in pixels, examples per split, and render processes (0: one per CPU).

    More than one worker renders in spawned processes: a script that builds must guard its
    entry point with `if __name__ == "__main__":` (as for any multiprocessing spawn).
    """

    height: int = 240
    width: int = 320
    num_train: int = 640
    num_test: int = 100
    workers: int = 0


def example_seed(split: str, index: int) -> int:
    """Seed of `render_room` for example `index` of `split` ('train' or 'test')."""
    if split not in ("train", "test") or index < 0:
        raise ValueError(f"example_seed: bad split {split!r} or index {index}")
    return index if split == "train" else TEST_SEED_OFFSET + index


def render_split(
    split: str, count: int, height: int, width: int, workers: int
) -> Iterator[tuple[int, tuple]]:
    """(index, render_room output) for indices 0..count-1, rendered by `workers` processes."""
    seeds = [example_seed(split, index) for index in range(count)]
    if workers <= 1:
        for index, seed in enumerate(seeds):
            yield index, render_room(seed, height, width)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a multi-threaded parent
    with futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        sizes = [height] * count, [width] * count
        yield from enumerate(pool.map(render_room, seeds, *sizes, chunksize=4))


class ProceduralRooms(tfds.core.GeneratorBasedBuilder):
    """Procedurally rendered indoor rooms: RGB uint8 and exact z-depth float32 in metres."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        ProceduralRoomsConfig(name="small", description="240×320, 640 train / 100 test."),
        ProceduralRoomsConfig(
            name="study",
            num_train=320,
            description="240×320, the first 320 train / 100 test examples of `small`: the CPU "
            "default study (its shipped N and G trained on `small`).",
        ),
        ProceduralRoomsConfig(
            name="full",
            height=480,
            width=640,
            description="480×640 (NYU-v2 size), 640 train / 100 test.",
        ),
        ProceduralRoomsConfig(
            name="tiny",
            height=48,
            width=64,
            num_train=64,
            num_test=16,
            workers=1,
            description="48×64, 64 train / 16 test: CPU tests.",
        ),
    ]

    def __init__(self, *, file_format: str | None = None, **kwargs):
        """As TFDS's, but stores array_record by default (readable without TensorFlow)."""
        super().__init__(file_format=file_format or "array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(features=rgbd_features(config.height, config.width))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager
        config = self.builder_config
        if min(config.num_train, config.num_test) < 1:
            raise ValueError(
                f"ProceduralRoomsConfig {config.name!r}: need ≥ 1 example per "
                f"split, got {config.num_train=}, {config.num_test=}"
            )
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, count: int):
        config = self.builder_config
        workers = min(config.workers or os.cpu_count() or 1, count)
        for index, (rgb, depth) in render_split(split, count, config.height, config.width, workers):
            example_id = f"{split}/{index:06d}"
            yield example_id, rgbd_example(rgb, depth, example_id)
