"""A short lease's check: N's forward and IFGSM-10, JAX against eager PyTorch, line by line.

  python -m benchmarks.quick --setting paper --batch 8

For an accelerator held for minutes: where `benchmarks.run` compiles a dozen programs before it
writes, this compiles two (N's forward and the library's IFGSM-10, `attacks.attack_traced`),
prints and appends to <out>/quick_<setting>_b<batch>.txt each number as it is measured
(seconds since start, then the event), and ends with PyTorch's IFGSM-10 on the same device
(benchmarks/torch_work.py) and the projected time of Table 2's sweep (4 ε × 654 images).
Medians after one warm-up call.
"""

import argparse
import pathlib
import time

TABLE2_WORK = 4 * 654  # Table 2: 4 radii × NYU Depth v2's 654 test images


def main(argv=None) -> None:
    from benchmarks import run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(run.SETTINGS), default="paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", choices=["torch", "none"], default="torch")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.batch < 1 or args.repeats < 1:
        parser.error(f"--batch and --repeats must be >= 1, got {args.batch}, {args.repeats}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"quick_{args.setting}_b{args.batch}.txt"
    start = time.perf_counter()

    def report(*what) -> None:
        line = f"{time.perf_counter() - start:7.1f} s  " + " ".join(map(str, what))
        print(line, flush=True)
        with log.open("a") as f:
            f.write(line + "\n")

    import jax
    import jax.numpy as jnp

    from benchmarks import jax_work, machine

    report(machine.description())
    setting, size = run.SETTINGS[args.setting], args.batch
    n, nv = jax_work.network(setting, "depth_net", "float32")
    report("N initialised")
    x, y = jax_work.batch(size, setting["input_hw"])
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    forward = jax_work.compile_job(jax.jit(lambda v, z: n.apply(v, z, train=False)), nv, xj)
    report("N forward compiled")
    call = run.median_seconds(forward.run, forward.prepare, args.repeats)
    report(f"N forward: {call:.4g} s per call of {size} images")
    ifgsm = jax_work.attack_job(n, nv, xj, yj, "ifgsm", 10)
    report("IFGSM-10 compiled")
    call = run.median_seconds(ifgsm.run, ifgsm.prepare, args.repeats)
    report(
        f"IFGSM-10: {call:.4g} s per call of {size} images; Table 2's sweep projected "
        f"{call / size * TABLE2_WORK:.4g} s"
    )
    if args.baseline == "torch":
        import torch

        from benchmarks import torch_work

        device = run.torch_device()
        net = torch_work.frozen(torch_work.networks(setting)[0].to(device))
        xt, yt = torch_work.inputs(x, y, device)
        full = lambda value: torch.full((size,), value, device=device)
        baseline = torch_work.synchronized(
            lambda: torch_work.ifgsm(net, xt, yt, full(0.1), full(10)), device
        )
        torch_call = run.median_seconds(lambda _: baseline(), lambda: None, args.repeats)
        report(
            f"PyTorch IFGSM-10 ({device}): {torch_call:.4g} s per call; "
            f"PyTorch / JAX {torch_call / call:.2f}"
        )


if __name__ == "__main__":
    main()
