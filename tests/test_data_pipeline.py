"""The grain input pipeline over a built `procedural_rooms/tiny` (64 train / 16 test, 48×64)."""

import itertools

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from mde_adv.data import pipeline
from mde_adv.data.errors import DatasetNotBuiltError
from mde_adv.data.transforms import scaled_sizes

SIZES = scaled_sizes(0.2)  # resize 48×64, crop 46×61, depth 23×30


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> pipeline.DataConfig:
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds.builder("procedural_rooms/tiny", data_dir=data_dir).download_and_prepare()  # array_record
    return pipeline.DataConfig(
        name="procedural_rooms/tiny",
        data_dir=str(data_dir),
        resize_hw=SIZES.resize_hw,
        crop_hw=SIZES.crop_hw,
        depth_hw=SIZES.depth_hw,
        global_batch_size=8,
        seed=3,
        read_threads=2,
    )


def _take(iterator, count):
    return list(itertools.islice(iterator, count))


def test_batch_shapes_dtypes_and_values(config):
    batches = pipeline.train_batches(config, num_steps=2)
    assert batches.step == 0
    batch = next(batches)
    assert batches.step == 1
    assert batch["image"].shape == (8, *SIZES.crop_hw, 3) and batch["image"].dtype == np.float32
    assert batch["depth"].shape == (8, *SIZES.depth_hw, 1) and batch["depth"].dtype == np.float32
    assert batch["id"].shape == (8,) and all(i.startswith("train/") for i in batch["id"])
    assert batch["valid"].dtype == bool and batch["valid"].all()
    assert np.all(np.isfinite(batch["image"])) and 0.3 < batch["image"].std() < 3
    assert batch["depth"].min() >= 0 and 0.5 < np.median(batch["depth"]) < 10
    eval_batch = next(pipeline.eval_batches(config))
    assert eval_batch["depth"].shape == (8, *SIZES.crop_hw, 1)
    assert eval_batch["depth"].min() > 0  # no rotation: no zero corners
    assert len(_take(batches, 5)) == 1  # num_steps bounds the iterator


def test_training_is_deterministic_and_seeded(config):
    first = _take(pipeline.train_batches(config, num_steps=3), 3)
    again = _take(pipeline.train_batches(config, num_steps=3), 3)
    reseeded = _take(
        pipeline.train_batches(pipeline.DataConfig(**{**vars(config), "seed": 4}), num_steps=3), 3
    )
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert [list(b["id"]) for b in first] != [list(b["id"]) for b in reseeded]


def test_resume_at_step_k_reproduces_the_batches_across_an_epoch(config):
    steps_per_epoch = pipeline.steps_per_epoch(config)
    assert steps_per_epoch == 8
    reference = _take(pipeline.train_batches(config, num_steps=11), 11)
    resumed = pipeline.train_batches(config, start_step=6, num_steps=5)
    assert resumed.step == 6
    for expected in reference[6:]:
        batch = next(resumed)
        for key in expected:
            np.testing.assert_array_equal(batch[key], expected[key])
    assert resumed.step == 11
    epoch_0 = [i for b in reference[:8] for i in b["id"]]
    epoch_1 = [i for b in reference[8:] for i in b["id"]]
    assert sorted(epoch_0) == [f"train/{i:06d}" for i in range(64)]  # each example once
    assert epoch_1 != epoch_0[: len(epoch_1)]  # a new order in the next epoch


def test_processes_read_disjoint_shards_that_cover_each_epoch(config):
    shards = [
        _take(pipeline.train_batches(config, num_steps=8, process_index=p, process_count=2), 8)
        for p in (0, 1)
    ]
    ids = [[i for b in shard for i in b["id"]] for shard in shards]
    assert all(b["image"].shape[0] == 4 for shard in shards for b in shard)  # per-process batch
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == [f"train/{i:06d}" for i in range(64)]
    single = _take(pipeline.train_batches(config, num_steps=8), 8)
    for step in range(8):  # process p holds rows p·B..(p+1)·B of the global batch
        np.testing.assert_array_equal(
            np.concatenate([shards[0][step]["id"], shards[1][step]["id"]]), single[step]["id"]
        )


def test_eval_covers_every_example_once_with_padding(config):
    eval_config = pipeline.DataConfig(**{**vars(config), "global_batch_size": 6})
    shards = [
        list(pipeline.eval_batches(eval_config, process_index=p, process_count=2)) for p in (0, 1)
    ]
    assert [len(s) for s in shards] == [3, 3]  # ⌈16 / 6⌉ steps on every process
    valid_ids = [i for s in shards for b in s for i in b["id"][b["valid"]]]
    assert sorted(valid_ids) == sorted(set(valid_ids)) and len(valid_ids) == 16
    assert sum((~b["valid"]).sum() for s in shards for b in s) == 2


def test_split_for_devices(config):
    batch = next(pipeline.train_batches(config, num_steps=1))
    split = pipeline.split_for_devices(batch)  # the tests run with 2 virtual CPU devices
    assert split["image"].shape == (2, 4, *SIZES.crop_hw, 3)
    assert split["id"].shape == (2, 4)
    np.testing.assert_array_equal(split["depth"][1, 0], batch["depth"][4])
    with pytest.raises(ValueError, match="divisible"):
        pipeline.split_for_devices(batch, num_devices=3)


def test_config_from_mapping_and_errors(config):
    as_dict = {**vars(config), "crop_hw": list(config.crop_hw)}
    assert pipeline.DataConfig.from_mapping(ml_collections.ConfigDict(as_dict)) == config
    with pytest.raises(ValueError, match="unknown keys \\['batch'\\]"):
        pipeline.DataConfig.from_mapping({"batch": 3})
    with pytest.raises(ValueError, match="exceeds"):
        pipeline.DataConfig(resize_hw=(10, 10), crop_hw=(12, 12))
    with pytest.raises(ValueError, match="divide over 3 processes"):
        pipeline.train_batches(config, process_index=0, process_count=3)
    with pytest.raises(DatasetNotBuiltError):
        pipeline.load_split("procedural_rooms/small", "train", config.data_dir)
    version_dir = f"{config.data_dir}/procedural_rooms/tiny/1.0.0"  # a prepared folder
    assert len(pipeline.load_split(version_dir, "test")) == 16
    with pytest.raises(ValueError, match="no split 'validation'"):
        pipeline.load_split(config.name, "validation", config.data_dir)


def test_measure_throughput_counts_images(config):
    assert pipeline.measure_throughput(config, num_batches=2, warmup=1) > 0


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(config):
    with_workers = pipeline.DataConfig(**{**vars(config), "worker_count": 2})
    expected = _take(pipeline.train_batches(config, num_steps=4), 4)
    for batch, reference in zip(
        pipeline.train_batches(with_workers, num_steps=4), expected, strict=True
    ):
        for key in reference:
            np.testing.assert_array_equal(batch[key], reference[key])
