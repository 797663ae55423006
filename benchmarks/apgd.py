"""APGD's cost per iteration against IFGSM's, on N, through the library's attack entry point.

  python -m benchmarks.apgd --setting default --batch 8   # -> results/apgd_default_b8.{md,json}
  python -m benchmarks.apgd --setting tiny --batch 4 --repeats 1  # seconds: a quick check

For each method (IFGSM α = 1, APGD) and budget T ∈ {T₁, T₂}: `attacks.attack_traced` of N
(random weights; ε = 0.1, T for every example), compiled ahead of time, median wall time of
`--repeats` calls after a warm-up. The cost per iteration is (t(T₂) − t(T₁)) / (T₂ − T₁), which
cancels the fixed costs (APGD's extra forward and backward pass at the start, the final
selection); the whole-call ratio at T₁ includes them.
"""

import argparse
import json
import pathlib

from benchmarks import jax_work, machine, run

METHODS = ("ifgsm", "apgd")


def measure(setting_name: str, size: int, repeats: int, budgets: tuple[int, int]) -> dict:
    setting = run.SETTINGS[setting_name]
    n, nv = jax_work.network(setting, "depth_net", "float32")
    x, y = jax_work.batch(size, setting["input_hw"])
    seconds, compile_s = {}, {}
    for method in METHODS:
        for t in budgets:
            job = jax_work.attack_job(n, nv, x, y, method, t)
            seconds[method, t] = run.median_seconds(job.run, job.prepare, repeats)
            compile_s[method, t] = job.compile_s
    low, high = budgets
    per_iteration = {m: (seconds[m, high] - seconds[m, low]) / (high - low) for m in METHODS}
    return {
        "setting": setting_name,
        "batch": size,
        "budgets": list(budgets),
        "repeats": repeats,
        "machine": machine.description(),
        "seconds": {f"{m} T={t}": s for (m, t), s in seconds.items()},
        "compile_seconds": {f"{m} T={t}": s for (m, t), s in compile_s.items()},
        "seconds_per_iteration": per_iteration,
        "per_iteration_ratio": per_iteration["apgd"] / per_iteration["ifgsm"],
        "call_ratio": seconds["apgd", low] / seconds["ifgsm", low],
    }


def to_markdown(result: dict) -> str:
    low, high = result["budgets"]
    lines = [
        f"# APGD vs IFGSM: {result['setting']} setting, batch {result['batch']}",
        "",
        f"{result['machine']}; median of {result['repeats']} calls after a warm-up.",
        "",
        f"| method | T={low} (s) | T={high} (s) | s per iteration | compile T={low} (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in METHODS:
        lines.append(
            f"| {m} | {result['seconds'][f'{m} T={low}']:.4f} | "
            f"{result['seconds'][f'{m} T={high}']:.4f} | "
            f"{result['seconds_per_iteration'][m]:.5f} | "
            f"{result['compile_seconds'][f'{m} T={low}']:.1f} |"
        )
    lines += [
        "",
        f"APGD / IFGSM per iteration: **{result['per_iteration_ratio']:.3f}**; "
        f"whole call at T={low}: {result['call_ratio']:.3f} (APGD evaluates T + 1 points).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(run.SETTINGS), default="default")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budgets", type=int, nargs=2, default=(10, 20))
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    low, high = args.budgets
    if args.batch < 1 or args.repeats < 1 or not 1 <= low < high:
        parser.error("need --batch >= 1, --repeats >= 1 and budgets 1 <= T1 < T2")
    result = measure(args.setting, args.batch, args.repeats, (low, high))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"apgd_{args.setting}_b{args.batch}"
    machine.write_atomically(stem.with_suffix(".json"), json.dumps(result, indent=1))
    machine.write_atomically(stem.with_suffix(".md"), to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
