"""Throughput of the library's hot paths, written as a markdown table and JSON.

  python -m benchmarks.run --setting paper --batch 1 8 --what forward attack train
  python -m benchmarks.run --setting default --what all --out benchmarks/results

Each timing is the median of `--repeats` runs after one warm-up run; the compile time of each
jitted function is reported separately. Settings: `paper` (N = ResNet-50, G = DRN-D-22 at
228×304) and `default` (configs/default.py's networks and input size).
"""

import argparse
import json
import pathlib
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mde_adv import attacks, models
from mde_adv.train import loop, parallel, steps

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
}
WHAT = ("forward", "attack", "train")


def _time(fn, repeats: int) -> tuple[float, float]:
    """(compile+first-run seconds, median seconds of `repeats` later runs)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs)


def _row(what: str, batch: int, dtype: str, first: float, median: float) -> dict:
    return dict(
        what=what,
        batch=batch,
        dtype=dtype,
        seconds=median,
        images_per_s=batch / median,
        compile_s=first - median,
    )


def _networks(setting: dict, dtype: str):
    n = models.depth_net({**setting["depth_net"], "dtype": dtype})
    g = models.saliency_net({**setting["saliency_net"], "dtype": dtype})
    key = jax.random.key(0, impl="rbg")
    hw = setting["input_hw"]
    return n, models.init_variables(n, key, hw), g, models.init_variables(g, key, hw)


def _batch(batch: int, hw) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(batch, *hw, 3)), jnp.float32)
    y = jnp.asarray(rng.uniform(1, 8, size=(batch, hw[0] // 2, hw[1] // 2, 1)), jnp.float32)
    return x, y


def bench_forward(setting, batch, dtype, repeats):
    n, nv, g, gv = _networks(setting, dtype)
    x, _ = _batch(batch, setting["input_hw"])
    rows = []
    for name, model, variables in (("N forward", n, nv), ("G forward", g, gv)):
        fn = jax.jit(lambda v, x, m=model: m.apply(v, x, train=False))
        first, med = _time(lambda fn=fn, v=variables: fn(v, x), repeats)
        rows.append(_row(name, batch, dtype, first, med))
    return rows


def bench_attack(setting, batch, dtype, repeats):
    n, nv, _, _ = _networks(setting, dtype)
    x, y = _batch(batch, setting["input_hw"])
    predict = jax.tree_util.Partial(lambda v, z: n.apply(v, z, train=False), nv)
    rows = []
    for name, config, steps_ in (
        ("FGSM", attacks.AttackConfig(method="fgsm"), 1),
        ("IFGSM-10", attacks.AttackConfig(method="ifgsm", t_max=10), 10),
    ):
        fn = lambda c=config, s=steps_: attacks.attack(predict, x, y, eps=0.1, steps=s, config=c)
        first, med = _time(fn, repeats)
        rows.append(_row(name, batch, dtype, first, med))
    return rows


def _train_config(setting, batch, dtype) -> ml_collections.ConfigDict:
    from configs import default

    c = default.get_config()
    c.depth_net = {**setting["depth_net"], "dtype": dtype}
    c.saliency_net = {**setting["saliency_net"], "dtype": dtype}
    c.parallel.mode = "jit"
    for task in c.train:
        c.train[task].batch_size = batch
    return c


def bench_train(setting, batch, dtype, repeats):
    config = _train_config(setting, batch, dtype)
    _, nv, _, gv = _networks(setting, dtype)
    x, y = _batch(batch, setting["input_hw"])
    data = parallel.shard_batch({"image": np.asarray(x), "depth": np.asarray(y)}, "jit")
    rows = []
    for task, variables, frozen in (
        ("depth", nv, None),
        ("saliency", gv, nv),
        ("saliency_adv", gv, nv),
    ):
        spec = loop.task_spec(config, task, steps_per_epoch=100)
        step = parallel.make_step(spec, "jit")
        state = parallel.replicate(steps.init_train_state(variables, spec.tx), "jit")
        frozen_d = parallel.replicate(frozen, "jit") if frozen is not None else None
        key = jax.random.key(0)
        holder = [state]

        def run(step=step, frozen_d=frozen_d, key=key, holder=holder):
            holder[0], metrics = step(holder[0], data, frozen_d, key)
            return metrics

        first, med = _time(run, repeats)
        rows.append(_row(f"train step {task}", batch, dtype, first, med))
    return rows


def to_markdown(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| what | batch | dtype | s/call | images/s | compile s |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['what']} | {r['batch']} | {r['dtype']} | {r['seconds']:.3f} | "
            f"{r['images_per_s']:.2f} | {r['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="default")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--what", nargs="+", choices=[*WHAT, "all"], default=["all"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    what = WHAT if "all" in args.what else tuple(args.what)
    setting = SETTINGS[args.setting]
    rows = []
    for batch in args.batch:
        for w in what:
            new = globals()[f"bench_{w}"](setting, batch, args.dtype, args.repeats)
            for r in new:
                print(json.dumps(r), flush=True)
            rows += new
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = "-".join(str(b) for b in args.batch)
    stem = f"{args.setting}_{args.dtype}_{'-'.join(what)}_b{batches}"
    header = (
        f"## {args.setting} setting ({setting['input_hw'][0]}×{setting['input_hw'][1]}, "
        f"{setting['depth_net']['encoder']} / {setting['saliency_net']['encoder']}), "
        f"{jax.devices()[0].platform} ({platform.processor() or platform.machine()}, "
        f"{jax.device_count()} device(s)), median of {args.repeats} after warm-up"
    )
    (out / f"{stem}.md").write_text(to_markdown(rows, header))
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    print(to_markdown(rows, header))


if __name__ == "__main__":
    main()
