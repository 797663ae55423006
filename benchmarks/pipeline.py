"""Input-pipeline throughput (images/s of training batches) for a prepared dataset.

python -m benchmarks.pipeline --data_dir runs/default/data --name procedural_rooms/small
"""

import argparse

from configs import default
from mde_adv.data import pipeline
from mde_adv.data.transforms import PAPER_SIZES


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--name", default="procedural_rooms/small")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    defaults = default.get_config().data.pipeline
    settings = {
        "default": (tuple(defaults.resize_hw), tuple(defaults.crop_hw), tuple(defaults.depth_hw)),
        "paper": (PAPER_SIZES.resize_hw, PAPER_SIZES.crop_hw, PAPER_SIZES.depth_hw),
    }
    print("| sizes (resize → crop → depth) | threads | images/s |\n|---|---:|---:|")
    for name, (resize, crop, depth) in settings.items():
        for threads in (1, 2):
            config = pipeline.DataConfig(
                name=args.name,
                data_dir=args.data_dir,
                resize_hw=resize,
                crop_hw=crop,
                depth_hw=depth,
                global_batch_size=8,
                read_threads=threads,
            )
            rate = pipeline.measure_throughput(config, num_batches=args.batches)
            print(f"| {name}: {resize} → {crop} → {depth} | {threads} | {rate:.0f} |", flush=True)


if __name__ == "__main__":
    main()
