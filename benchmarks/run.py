"""The benchmark suite: the library's hot paths against eager PyTorch and the machine's peak.

  python -m benchmarks.run                                   # default setting, batch 1 and 8
  python -m benchmarks.run --setting paper --batch 1 2       # N, G of the paper at 228×304
  python -m benchmarks.run --dtype bfloat16 --baseline none  # the bfloat16 compute path
  python -m benchmarks.run --fast                            # CI: everything once, tiny

For each setting × batch: N and G forward, FGSM, IFGSM-10, a 4-ε IFGSM-10 sweep, and the train
steps of N, G and G_adv (with IFGSM-10 on every example), each as the median of `--repeats`
runs after one warm-up run (the sweep, which follows IFGSM-10 on the same shapes, has none of
its own). Beside each: the same work in eager PyTorch (benchmarks/torch_work.py)
and the ratio PyTorch time / JAX time (> 1: JAX is faster), compile time, XLA's FLOP count,
achieved FLOP/s against the measured peak (benchmarks/peak.py) and XLA's peak memory. On a
GPU the baseline runs on the same GPU (PyTorch CUDA, synchronised) and the peak is an 8192²
product.
`--devices 1 2` adds the train step of N data-parallel (pmap) over 1 and 2 devices (child
processes with XLA's host-device count set). Writes <out>/<name>.md and .json.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "paper": dict(
        depth_net=dict(encoder="resnet50", width=1.0),
        saliency_net=dict(encoder="drn_d_22", width=1.0),
        input_hw=(228, 304),
    ),
    "default": dict(
        depth_net=dict(encoder="resnet18", width=0.25),
        saliency_net=dict(encoder="drn_d_22", width=0.25),
        input_hw=(56, 76),
    ),
    "tiny": dict(  # configs/smoke.py's networks: CI's fast mode
        depth_net=dict(encoder="resnet18", width=0.125),
        saliency_net=dict(encoder="drn_d_22", width=0.125),
        input_hw=(32, 40),
    ),
}
GROUPS = ("forward", "attack", "sweep", "train")
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
SWEEP = "IFGSM-10 sweep of 4 ε"


def median_seconds(run, prepare, repeats: int, warm_up: bool = True) -> float:
    """Median wall time of run(prepare()) over `repeats` runs after one warm-up run."""
    if warm_up:
        run(prepare())
    times = []
    for _ in range(repeats):
        args = prepare()
        start = time.perf_counter()
        run(args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def with_up_projection(setting: dict, method: str) -> dict:
    """The setting with N's and G's up-projections computed by `method` (models.resize_conv)."""
    return {
        **setting,
        "depth_net": {**setting["depth_net"], "up_projection": method},
        "saliency_net": {**setting["saliency_net"], "up_projection": method},
    }


def accelerator() -> str:
    """'gpu' where JAX's first device is a GPU, else 'cpu'."""
    import jax

    return "gpu" if jax.devices()[0].platform == "gpu" else "cpu"


def torch_device() -> str:
    """Where the PyTorch baseline runs: 'cuda' beside JAX on a GPU, else 'cpu'."""
    import torch

    return "cuda" if accelerator() == "gpu" and torch.cuda.is_available() else "cpu"


def measure(
    setting_name: str,
    size: int,
    dtype: str,
    groups,
    repeats: int,
    baseline: str,
    up_projection: str = "auto",
):
    """Rows for one setting and batch size."""
    import jax

    from benchmarks import jax_work

    setting = with_up_projection(SETTINGS[setting_name], up_projection)
    jobs = jax_work.work(setting, size, dtype, groups)
    # the same work with direct up-projections, lowered and never run: its FLOP count is the
    # reference formulation's (the authors' code's and the PyTorch baseline's)
    direct = with_up_projection(SETTINGS[setting_name], "direct")
    reference = jax_work.work(direct, size, dtype, groups, compile=False)
    torch_jobs = {}
    if baseline == "torch":
        from benchmarks import torch_work

        x, y = jax_work.batch(size, setting["input_hw"])
        train = jax_work.baseline_train_settings(
            jax_work.train_config(setting, size, "float32"), size
        )
        torch_jobs = torch_work.work(setting, x, y, train, torch_device())
    rows = []
    for name, job in jobs.items():
        # the sweep repeats IFGSM-10's shapes: after that job it needs no warm-up run of its own
        warm_up = not (name == SWEEP and "IFGSM-10" in jobs)
        seconds = median_seconds(job.run, job.prepare, repeats, warm_up)
        row = dict(
            setting=setting_name,
            what=name,
            batch=size,
            dtype=dtype,
            devices=jax.device_count(),
            seconds=seconds,
            images_per_s=size / seconds,
            compile_s=job.compile_s,
            gflop=None if job.flops is None else job.flops / 1e9,
            gflop_per_s=None if job.flops is None else job.flops / seconds / 1e9,
            reference_gflop=None if reference[name].flops is None else reference[name].flops / 1e9,
            up_projection=up_projection,
            memory_mb=None if job.memory_bytes is None else job.memory_bytes / 2**20,
            torch_seconds=None,
            torch_over_jax=None,
        )
        if name in torch_jobs:
            run_torch = lambda _, f=torch_jobs[name]: f()
            torch_s = median_seconds(run_torch, lambda: None, repeats, warm_up)
            row.update(torch_seconds=torch_s, torch_over_jax=torch_s / seconds)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def with_host_devices(xla_flags: str, count: int) -> str:
    """XLA_FLAGS with the host device count set to `count` (any earlier setting dropped)."""
    kept = [f for f in xla_flags.split() if not f.startswith(HOST_DEVICES_FLAG)]
    return " ".join([*kept, f"{HOST_DEVICES_FLAG}={count}"])


def device_scaling(setting_name: str, size: int, repeats: int, counts) -> list[dict]:
    """The N train step under pmap over k host devices, one child process per k."""
    rows = []
    for k in counts:
        env = dict(os.environ, XLA_FLAGS=with_host_devices(os.environ.get("XLA_FLAGS", ""), k))
        command = [sys.executable, "-m", "benchmarks.run", "--scaling_child", setting_name,
                   str(size), str(repeats)]  # fmt: skip
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"device-scaling child with {k} devices failed:\n{out.stderr}")
        rows += [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return rows


def scaling_child(setting_name: str, size: int, repeats: int) -> None:
    import jax

    from benchmarks import jax_work

    setting = SETTINGS[setting_name]
    _, nv = jax_work.network(setting, "depth_net", "float32")
    x, y = jax_work.batch(size, setting["input_hw"])
    config = jax_work.train_config(setting, size, "float32", mode="pmap")
    job = jax_work.train_job(config, "depth", nv, None, x, y)
    seconds = median_seconds(job.run, job.prepare, repeats)
    row = dict(setting=setting_name, what="train step N (pmap)", batch=size, dtype="float32",
               devices=jax.device_count(), seconds=seconds, images_per_s=size / seconds,
               compile_s=job.compile_s)  # fmt: skip
    print(json.dumps(row), flush=True)


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def to_markdown(
    rows: list[dict], peaks: dict[str, dict[str, float]], header: str, peak_size: int = 4096
) -> str:
    """The rows as a markdown table under `header` and a line on how the peak was measured."""
    best = {dtype: max(rates.values()) for dtype, rates in peaks.items()}
    measured = "; ".join(
        f"{dtype}: " + ", ".join(f"{who} {rate / 1e9:.0f}" for who, rate in rates.items())
        for dtype, rates in peaks.items()
    )
    lines = [
        header,
        "",
        f"Peak: the best median rate of a {peak_size}² × {peak_size}² matrix product (float32 "
        f"accumulation) on "
        f"this machine, GFLOP/s — {measured}. GFLOP/call: what XLA's cost analysis counts in the "
        f"compiled program; ref. GFLOP/call: the same work with direct up-projections (the "
        f"reference formulation, which the PyTorch baseline computes).",
        "",
        "| setting | what | batch | dtype | dev | JAX s/call | JAX img/s | PyTorch s/call "
        "| PyTorch / JAX | compile s | GFLOP/call | GFLOP/s | % peak | ref. GFLOP/call "
        "| ref. GFLOP/s | XLA peak MB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        rate = r.get("gflop_per_s")
        share = None if rate is None else 100 * rate * 1e9 / best[r["dtype"]]
        reference = r.get("reference_gflop")
        reference_rate = None if reference is None else reference / r["seconds"]
        torch_s = _fmt(r.get("torch_seconds"), ".4g")
        lines.append(
            f"| {r['setting']} | {r['what']} | {r['batch']} | {r['dtype']} | {r['devices']} "
            f"| {r['seconds']:.4g} | {r['images_per_s']:.3g} | {torch_s} "
            f"| {_fmt(r.get('torch_over_jax'), '.2f')} | {r['compile_s']:.1f} "
            f"| {_fmt(r.get('gflop'), '.3g')} | {_fmt(rate, '.0f')} | {_fmt(share, '.0f')} "
            f"| {_fmt(reference, '.3g')} | {_fmt(reference_rate, '.0f')} "
            f"| {_fmt(r.get('memory_mb'), '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", nargs="+", choices=sorted(SETTINGS), default=["default"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--what", nargs="+", choices=[*GROUPS, "all"], default=["all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", choices=["torch", "none"], default="torch")
    parser.add_argument(
        "--up_projection",
        choices=["auto", "direct", "factored"],
        default="auto",
        help="how N's and G's up-projections convolve their resized input (models.resize_conv)",
    )
    parser.add_argument("--devices", type=int, nargs="*", default=[], help="e.g. 1 2: scaling")
    parser.add_argument("--fast", action="store_true", help="CI: tiny, batch 2, once, devices 1 2")
    parser.add_argument("--name", default=None, help="output file stem (default: from the args)")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--scaling_child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fast:
        args.setting, args.batch, args.repeats, args.devices = ["tiny"], [2], 1, [1, 2]
    if min(args.batch) < 1 or args.repeats < 1:
        parser.error(f"--batch and --repeats must be >= 1, got {args.batch}, {args.repeats}")
    return args


def main(argv=None) -> None:
    args = parse(argv)
    if args.scaling_child:
        name, size, repeats = args.scaling_child
        scaling_child(name, int(size), int(repeats))
        return
    from benchmarks import machine, peak

    groups = GROUPS if "all" in args.what else tuple(args.what)
    # CI checks that the suite runs, not the peak; a GPU needs a larger product to be busy
    peak_size = 1024 if args.fast else {"cpu": 4096, "gpu": 8192}[accelerator()]
    with_torch = args.baseline == "torch"
    peaks = peak.measured_peaks(peak_size, with_torch, torch_device() if with_torch else "cpu")
    rows = []
    for setting_name in args.setting:
        for size in args.batch:
            rows += measure(
                setting_name,
                size,
                args.dtype,
                groups,
                args.repeats,
                args.baseline,
                args.up_projection,
            )
        if args.devices:
            rows += device_scaling(setting_name, max(args.batch), args.repeats, args.devices)
    stem = args.name or (
        f"{'-'.join(args.setting)}_{args.dtype}_b{'-'.join(map(str, args.batch))}"
        + ("" if args.up_projection == "auto" else f"_{args.up_projection}")
        + ("_fast" if args.fast else "")
    )
    header = (
        f"## {', '.join(args.setting)}: {machine.description()}; "
        f"median of {args.repeats} after warm-up"
    )
    table = to_markdown(rows, peaks, header, peak_size)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = dict(
        machine=machine.description(), peaks_flop_per_s=peaks, rows=rows, argv=sys.argv[1:]
    )
    machine.write_atomically(out / f"{stem}.json", json.dumps(result, indent=2))
    machine.write_atomically(out / f"{stem}.md", table)
    print(table)


if __name__ == "__main__":
    main()
