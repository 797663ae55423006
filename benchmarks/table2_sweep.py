"""The time of the paper's Table 2 sweep: IFGSM-10 at 4 ε on every test image, N of the setting.

  python -m benchmarks.table2_sweep --setting paper --batch 8             # all 654 images
  python -m benchmarks.table2_sweep --setting paper --batch 1 --max_seconds 600  # estimate

Runs the compiled 4-ε sweep of `jax_work` (the library's `attacks.attack_traced` under
`lax.map` over ε, as `attacks.eps_sweep` compiles it) on ⌈images / batch⌉ batches of random
images (the time does not depend on the pixels), after one warm-up batch, and reports the
measured time and its projection to the 654 images of NYU Depth v2's test split. With
--max_seconds it stops after the batch that passes that time (one batch at least) and
projects from the batches run. Writes
<out>/<name>.md and .json.
"""

import argparse
import json
import math
import pathlib
import time

TEST_IMAGES = 654  # NYU Depth v2's official test split (the paper's Table 2)


def measure(
    setting_name: str, size: int, images: int, dtype: str, max_seconds: float = math.inf
) -> dict:
    """Seconds for the sweep on `images` images in batches of `size` (fewer once max_seconds
    have passed), and the projection to the test split."""
    from benchmarks import jax_work, run

    job = jax_work.work(run.SETTINGS[setting_name], size, dtype, ("sweep",))[run.SWEEP]
    job.run(job.prepare())  # warm-up
    batches, seconds = 0, 0.0
    start = time.perf_counter()
    while batches == 0 or (batches < math.ceil(images / size) and seconds < max_seconds):
        job.run(job.prepare())
        batches += 1
        seconds = time.perf_counter() - start
    per_image = seconds / (batches * size)
    return dict(
        setting=setting_name,
        batch=size,
        dtype=dtype,
        images=batches * size,
        seconds=seconds,
        seconds_per_image=per_image,
        projected_test_split_s=per_image * TEST_IMAGES,
        compile_s=job.compile_s,
        gflop_per_s=None if job.flops is None else job.flops * batches / seconds / 1e9,
    )


def to_markdown(row: dict, header: str) -> str:
    rate = "–" if row["gflop_per_s"] is None else f"{row['gflop_per_s']:.0f}"
    return (
        f"{header}\n\n"
        "| setting | batch | dtype | images run | seconds | s/image | 654 images (h) "
        "| compile s | GFLOP/s |\n|---|---:|---|---:|---:|---:|---:|---:|---:|\n"
        f"| {row['setting']} | {row['batch']} | {row['dtype']} | {row['images']} "
        f"| {row['seconds']:.1f} | {row['seconds_per_image']:.3g} "
        f"| {row['projected_test_split_s'] / 3600:.3g} | {row['compile_s']:.1f} | {rate} |\n"
    )


def main(argv=None) -> None:
    from benchmarks import machine, run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(run.SETTINGS), default="paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=TEST_IMAGES, help="images to run")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--max_seconds", type=float, default=math.inf, help="then project")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.images < 1 or args.max_seconds < 0:
        parser.error(
            f"--batch and --images must be >= 1 and --max_seconds >= 0, got {args.batch}, "
            f"{args.images}, {args.max_seconds}"
        )
    row = measure(args.setting, args.batch, args.images, args.dtype, args.max_seconds)
    header = (
        f"## Table 2's sweep (IFGSM-10, ε ∈ 0.05–0.2, {TEST_IMAGES} test images): "
        f"{machine.description()}"
    )
    table = to_markdown(row, header)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"table2_sweep_{args.setting}_{args.dtype}_b{args.batch}"
    result = dict(machine=machine.description(), row=row)
    machine.write_atomically(out / f"{stem}.json", json.dumps(result, indent=2))
    machine.write_atomically(out / f"{stem}.md", table)
    print(table)


if __name__ == "__main__":
    main()
