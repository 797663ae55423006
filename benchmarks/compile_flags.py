"""Compile and run time of the library's programs under XLA flag sets (`mde_adv.xla_flags`).

  python -m benchmarks.compile_flags                      # tiny and default, 4 flag sets
  python -m benchmarks.compile_flags --setting tiny --repeats 1

Each (setting, flag set) runs in a fresh process without a compilation cache: it initialises
N and G (`models.init_variables`), compiles the pmapped train steps of N and of G_adv
(Algorithm 1 with IFGSM-10 on every example, as `benchmarks.run`) and IFGSM-10 of N at batch
2, and times a call of each (median of `--repeats` after a warm-up). Writes
<out>/compile_flags.md and .json. The rows decide where `FAST_COMPILE` is worth it: where
compiling dominates (the tests, configs/smoke.py), not where running does.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

from benchmarks import machine, run
from mde_adv import xla_flags

FLAG_SETS = {
    "XLA defaults": (),
    "-O0 only": (xla_flags.FAST_COMPILE[0],),
    "FAST_COMPILE": xla_flags.FAST_COMPILE,
    "FAST_COMPILE but LLVM's default level": xla_flags.FAST_COMPILE[1:],
}
BATCH = 2


def child(setting_name: str, repeats: int) -> dict:
    """Seconds of this process's compiles and calls (run inside the flag set's process)."""
    import jax.numpy as jnp

    from benchmarks import jax_work

    setting = run.SETTINGS[setting_name]
    start = time.perf_counter()
    n, nv, _, gv = jax_work.networks(setting, "float32")
    row = {"init networks s": time.perf_counter() - start}
    x, y = jax_work.batch(BATCH, setting["input_hw"])
    config = jax_work.train_config(setting, BATCH, "float32", mode="pmap")
    jobs = {
        "train step N": jax_work.train_job(config, "depth", nv, None, x, y),
        "train step G_adv": jax_work.train_job(config, "saliency_adv", gv, nv, x, y),
        "IFGSM-10": jax_work.attack_job(n, nv, jnp.asarray(x), jnp.asarray(y), "ifgsm", 10),
    }
    for name, job in jobs.items():
        row[f"{name} compile s"] = job.compile_s
        row[f"{name} call s"] = run.median_seconds(job.run, job.prepare, repeats)
    return row


def measure(setting_name: str, flags: tuple[str, ...], repeats: int) -> dict:
    """child() in a fresh process with XLA_FLAGS = one host device + `flags` (those this XLA
    knows)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    known, unknown = xla_flags.merge(f"{run.HOST_DEVICES_FLAG}=1", flags)
    if unknown:
        print(f"{setting_name}: flags unknown to this XLA, dropped: {unknown}", file=sys.stderr)
    env["XLA_FLAGS"] = known
    env["JAX_PLATFORMS"] = "cpu"
    command = ["--child", setting_name, "--repeats", str(repeats)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.compile_flags", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{setting_name} with {flags}: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def to_markdown(rows: list[dict], header: str) -> str:
    columns = [k for k in rows[0] if k not in ("setting", "flags")]
    lines = [
        header,
        "",
        "Fresh process per row, no compilation cache, batch 2, one host device; call s: median "
        "after a warm-up. Flag sets: "
        + "; ".join(f"{name} = {' '.join(flags) or '(none)'}" for name, flags in FLAG_SETS.items()),
        "",
        "| setting | flags | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for r in rows:
        values = " | ".join(f"{r[c]:.3g}" for c in columns)
        lines.append(f"| {r['setting']} | {r['flags']} | {values} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", nargs="+", choices=("tiny", "default", "paper"),
                        default=["tiny", "default"])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("benchmarks/results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repeats)), flush=True)
        return
    rows = []
    for setting_name in args.setting:
        for name, flags in FLAG_SETS.items():
            row = {"setting": setting_name, "flags": name}
            row.update(measure(setting_name, flags, args.repeats))
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    header = f"## XLA compile flags: {machine.description()}"
    machine.write_atomically(args.out / "compile_flags.json", json.dumps(rows, indent=1))
    machine.write_atomically(args.out / "compile_flags.md", to_markdown(rows, header))


if __name__ == "__main__":
    main()
