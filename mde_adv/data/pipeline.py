"""Input pipeline: TFDS array_record data source → grain → transformed per-process batches.

Positions are explicit: batch `step` of process p holds, for j < B (the per-process batch),
the example at global position g = step·G + p·B + j, G = B · process_count. Training visits
epoch e = g // (S·G), S = ⌊N / G⌋ steps per epoch (the remainder of each epoch is skipped),
in the permutation of the N examples drawn from (seed, e), and augments example i with a
generator of (seed, e, i) (`augment_rng`) — so processes read disjoint examples
that together cover each epoch, and `train_batches(config, start_step=k)` reproduces exactly
the batches from step k on (the step counter is the whole data position to checkpoint).
Evaluation reads every example once in order, ⌈N / G⌉ steps, the last batch padded with
`valid = False` rows.

Batches: {'image': f32[B, h, w, 3] normalised, 'depth': f32[B, dh, dw, 1] metres,
'id': str[B], 'valid': bool[B]}; `split_for_devices` reshapes them to [D, B/D, ...] for pmap.
"""

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import grain
import jax
import numpy as np
from absl import flags

from mde_adv.data import builders
from mde_adv.data.errors import DatasetNotBuiltError
from mde_adv.data.transforms import TransformSizes, eval_transform, train_transform

Batch = dict[str, np.ndarray]
_SHUFFLE_STREAM, _AUGMENT_STREAM = 1, 0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the pipeline reads and how.

    name: a TFDS 'builder/config' (e.g. 'procedural_rooms/small', 'nyu_depth_v2_manual/csv_png')
      or the folder of a prepared dataset version (holding dataset_info.json).
    data_dir: TFDS data_dir (None: TFDS's default). Sizes: see `transforms.TransformSizes`.
    global_batch_size: examples per step over all processes (eval too), divisible by
      the process count. worker_count: grain worker processes (0: read in this process with
      `read_threads` threads).
    """

    name: str = "procedural_rooms/small"
    data_dir: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    resize_hw: tuple[int, int] = (240, 320)
    crop_hw: tuple[int, int] = (228, 304)
    depth_hw: tuple[int, int] = (114, 152)
    global_batch_size: int = 8
    seed: int = 0
    worker_count: int = 0
    read_threads: int = 4

    def __post_init__(self):
        for field in ("resize_hw", "crop_hw", "depth_hw"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        TransformSizes(self.resize_hw, self.crop_hw, self.depth_hw)  # raises on bad sizes
        if self.global_batch_size < 1 or self.worker_count < 0 or self.read_threads < 1:
            raise ValueError(
                f"DataConfig: bad global_batch_size, worker_count or read_threads in {self}"
            )

    @property
    def sizes(self) -> TransformSizes:
        return TransformSizes(self.resize_hw, self.crop_hw, self.depth_hw)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "DataConfig":
        """From a dict or an ml_collections ConfigDict; unknown keys are an error."""
        values = dict(mapping.to_dict() if hasattr(mapping, "to_dict") else mapping)
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"DataConfig: unknown keys {sorted(unknown)}")
        return cls(**values)


def load_split(name: str, split: str, data_dir: str | None = None):
    """The random-access TFDS data source of a prepared split (see DataConfig.name).

    Raises DatasetNotBuiltError where the dataset was never built or its build failed,
    UnknownDatasetError where `name` is neither a known 'builder/config' nor a folder.
    """
    builder = builders.dataset_builder(name, data_dir)
    if not builder.is_prepared():
        raise DatasetNotBuiltError(
            f"no finished dataset {name!r} in {builder.data_dir}: build it first (the main "
            f"job's 'data' stage, or mde_adv.data.builders.prepare({name!r}, data_dir, "
            "manual_dir))"
        )
    if split not in builder.info.splits:
        raise ValueError(
            f"dataset {name!r} has no split {split!r}; it has {sorted(builder.info.splits)}"
        )
    return builder.as_data_source(split=split)


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """The order [N] in which training epoch `epoch` visits the examples."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SHUFFLE_STREAM, epoch)))
    return rng.permutation(num_examples)


def augment_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of the augmentation of example `index` in epoch `epoch`."""
    key = (_AUGMENT_STREAM, epoch, index)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclasses.dataclass(frozen=True)
class _ExampleLoader:
    """Maps a process-local element position to a transformed example (picklable for grain)."""

    source: Any
    config: DataConfig
    training: bool
    batch_size: int  # per process
    process_index: int
    process_count: int

    def __call__(self, position: int) -> dict[str, Any]:
        step, row = divmod(position, self.batch_size)
        global_batch = self.batch_size * self.process_count
        g = step * global_batch + self.process_index * self.batch_size + row
        num_examples = len(self.source)
        if self.training:
            epoch, offset = divmod(g, (num_examples // global_batch) * global_batch)
            index = int(epoch_permutation(self.config.seed, epoch, num_examples)[offset])
            example = self.source[index]
            rng = augment_rng(self.config.seed, epoch, index)
            image, depth = train_transform(
                example["image"], example["depth"], rng, self.config.sizes
            )
            valid = True
        else:
            valid = g < num_examples
            example = self.source[min(g, num_examples - 1)]
            image, depth = eval_transform(example["image"], example["depth"], self.config.sizes)
        example_id = example["id"]
        if isinstance(example_id, bytes):
            example_id = example_id.decode("utf-8")
        return {"image": image, "depth": depth, "id": example_id, "valid": valid}


def _stack(examples) -> Batch:
    return {
        "image": np.stack([e["image"] for e in examples]),
        "depth": np.stack([e["depth"] for e in examples]),
        "id": np.asarray([e["id"] for e in examples], dtype=np.str_),
        "valid": np.asarray([e["valid"] for e in examples], dtype=bool),
    }


class BatchIterator(Iterator[Batch]):
    """Iterator over batches that knows its position: `step` is the next batch's step."""

    def __init__(self, dataset: grain.IterDataset, start_step: int):
        self._iterator = iter(dataset)
        self.step = start_step

    def __next__(self) -> Batch:
        batch = next(self._iterator)
        self.step += 1
        return batch


def _process_shape(config: DataConfig, process_index, process_count) -> tuple[int, int, int]:
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if config.global_batch_size % count or not 0 <= index < count:
        raise ValueError(
            f"global_batch_size {config.global_batch_size} must divide over "
            f"{count} processes (process {index})"
        )
    return index, count, config.global_batch_size // count


def steps_per_epoch(config: DataConfig, split: str | None = None) -> int:
    """Full training steps per epoch, ⌊N / global_batch_size⌋."""
    source = load_split(config.name, split or config.train_split, config.data_dir)
    return len(source) // config.global_batch_size


def _batches(config, source, training, first_step, last_step, process_index, process_count):
    index, count, batch_size = _process_shape(config, process_index, process_count)
    loader = _ExampleLoader(source, config, training, batch_size, index, count)
    positions = grain.MapDataset.range(first_step * batch_size, last_step * batch_size)
    # Batch before reading, so that threads and worker processes each make whole batches
    # (workers take every worker_count-th element: batches stay as the positions define them).
    batches = positions.map(loader).batch(batch_size, drop_remainder=True, batch_fn=_stack)
    read_options = grain.ReadOptions(
        num_threads=config.read_threads, prefetch_buffer_size=config.read_threads
    )
    dataset = batches.to_iter_dataset(read_options)
    if config.worker_count:
        if not flags.FLAGS.is_parsed():  # grain ≤ 0.2.x reads absl flags (google/grain#1355)
            flags.FLAGS.mark_as_parsed()
        options = grain.MultiprocessingOptions(num_workers=config.worker_count)
        dataset = dataset.mp_prefetch(options)
    return BatchIterator(dataset, first_step)


def train_batches(
    config: DataConfig,
    *,
    start_step: int = 0,
    num_steps: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> BatchIterator:
    """Augmented, shuffled training batches of this process from `start_step` on, for
    `num_steps` steps (None: endless). process_index/count default to JAX's."""
    source = load_split(config.name, config.train_split, config.data_dir)
    if len(source) < config.global_batch_size:
        raise ValueError(
            f"{config.name}/{config.train_split}: {len(source)} examples < "
            f"global_batch_size {config.global_batch_size}"
        )
    if start_step < 0:
        raise ValueError(f"train_batches: start_step must be ≥ 0, got {start_step}")
    _, _, batch_size = _process_shape(config, process_index, process_count)
    endless = sys.maxsize // (2 * batch_size)
    last_step = endless if num_steps is None else start_step + num_steps
    return _batches(config, source, True, start_step, last_step, process_index, process_count)


def eval_batches(
    config: DataConfig,
    *,
    split: str | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> BatchIterator:
    """Every example of `split` (default config.eval_split) once, in order, test transform;
    ⌈N / G⌉ batches per process, padding rows marked `valid = False`."""
    source = load_split(config.name, split or config.eval_split, config.data_dir)
    num_steps = math.ceil(len(source) / config.global_batch_size)
    return _batches(config, source, False, 0, num_steps, process_index, process_count)


def split_for_devices(batch: Batch, num_devices: int | None = None) -> Batch:
    """Reshapes every array [B, ...] to [D, B/D, ...] for pmap (D: local devices by default)."""
    devices = jax.local_device_count() if num_devices is None else num_devices
    sizes = {value.shape[0] for value in batch.values()}
    if len(sizes) != 1 or next(iter(sizes)) % devices:
        raise ValueError(
            f"split_for_devices: batch sizes {sizes} must be one size divisible "
            f"by {devices} devices"
        )
    return {key: value.reshape(devices, -1, *value.shape[1:]) for key, value in batch.items()}


def measure_throughput(config: DataConfig, *, num_batches: int = 20, warmup: int = 2) -> float:
    """Training images per second of this process's pipeline over `num_batches` batches
    (after `warmup` batches that start the threads/workers)."""
    batches = train_batches(config, num_steps=warmup + num_batches)
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    images = sum(next(batches)["image"].shape[0] for _ in range(num_batches))
    return images / (time.perf_counter() - start)
