"""The library's hot paths as benchmark jobs: compiled ahead of time, then run.

Every job wraps the library's own functions (`models`, `attacks.attack_traced`, the train step
of `mde_adv.train`), so a speed-up measured here is a speed-up of the library. Compilation is
timed apart (`.lower(...).compile()`); FLOPs come from XLA's cost analysis of the compiled
program (of the lowered one for `work(..., compile=False)`) and peak memory from its memory
analysis (arguments + outputs + temporaries − aliased
buffers). XLA counts a while loop's body once, so the FLOPs of a T-step attack are T × those
of one gradient step (`attack_step_flops`).
"""

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.tree_util import Partial

from mde_adv import attacks, losses, models
from mde_adv.train import loop, parallel, steps

SWEEP_EPS = (0.05, 0.1, 0.15, 0.2)  # Table 2's radii (normalised units)
G_ADV = "train step G_adv (IFGSM-10 on every example)"


@dataclasses.dataclass
class Job:
    """One unit of work: `run(prepare())` does it once and blocks; `prepare` is not timed."""

    run: Callable[[Any], Any]
    prepare: Callable[[], Any]
    compile_s: float
    flops: float | None
    memory_bytes: int | None


def cost(compiled) -> tuple[float | None, int | None]:
    """(FLOPs, peak bytes) of a compiled executable, None where XLA does not say."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = float(analysis["flops"]) if analysis and "flops" in analysis else None
    memory = compiled.memory_analysis()
    if memory is None:
        return flops, None
    return flops, int(
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )


def compile_job(
    jitted, *args, prepare: Callable[[], tuple] | None = None, compile: bool = True
) -> Job:
    """Job calling the compiled `jitted` on args (or on `prepare()`, for donated arguments).

    With compile=False only the FLOPs of the lowered program (cost analysis before XLA's
    optimisation passes, milliseconds instead of a compilation) and no runnable job."""
    if not compile:
        analysis = jitted.lower(*args).cost_analysis() or {}
        flops = float(analysis["flops"]) if "flops" in analysis else None
        return Job(run=None, prepare=lambda: args, compile_s=0.0, flops=flops, memory_bytes=None)
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - start
    flops, memory = cost(compiled)
    return Job(
        run=lambda call_args: jax.block_until_ready(compiled(*call_args)),
        prepare=prepare or (lambda: args),
        compile_s=compile_s,
        flops=flops,
        memory_bytes=memory,
    )


def network(setting: dict, name: str, dtype: str):
    """(model, random variables) of the setting's 'depth_net' (N) or 'saliency_net' (G)."""
    build = {"depth_net": models.depth_net, "saliency_net": models.saliency_net}[name]
    model = build({**setting[name], "dtype": dtype})
    key = jax.random.key(0, impl="rbg")
    return model, models.init_variables(model, key, setting["input_hw"])


def networks(setting: dict, dtype: str):
    """(N, N's variables, G, G's variables) of a benchmark setting, random weights."""
    return *network(setting, "depth_net", dtype), *network(setting, "saliency_net", dtype)


def batch(size: int, hw) -> tuple[np.ndarray, np.ndarray]:
    """Random normalised images f32[B,H,W,3] and depths f32[B,H/2,W/2,1] in [1, 8] m."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(size, *hw, 3)).astype(np.float32)
    y = rng.uniform(1, 8, size=(size, hw[0] // 2, hw[1] // 2, 1)).astype(np.float32)
    return x, y


def attack_job(n, nv, x, y, method: str, t: int, compile: bool = True) -> Job:
    """The library's attack (`attacks.attack_traced`) of N on x, y with ε = 0.1 and T = t for
    every example (ε and T traced, as in training and evaluation)."""
    config = attacks.AttackConfig(method=method, t_max=t)
    attack = lambda v, z, d, e, s: attacks.attack_traced(
        Partial(lambda w, u: n.apply(w, u, train=False), v), z, d, eps=e, steps=s, config=config
    )
    size = x.shape[0]
    eps, steps = jnp.full((size,), 0.1), jnp.full((size,), t, jnp.int32)
    return compile_job(jax.jit(attack), nv, x, y, eps, steps, compile=compile)


def attack_step_flops(n, nv, x, y, compile: bool = True) -> float | None:
    """FLOPs of one attack iteration: the input gradient of Σ_i ℓ1_i(N(x_i))."""
    grad = jax.grad(lambda z, v: jnp.sum(losses.l1_loss(n.apply(v, z, train=False), y)))
    return compile_job(jax.jit(grad), x, nv, compile=compile).flops


def train_config(setting: dict, size: int, dtype: str, mode: str = "jit"):
    """configs/default.py with the setting's networks; G_adv attacks every example with T = 10
    (Algorithm 1's costliest draw), so that every run of its step does the same work."""
    from configs import default

    c = default.get_config()
    c.depth_net = {**setting["depth_net"], "dtype": dtype}
    c.saliency_net = {**setting["saliency_net"], "dtype": dtype}
    c.parallel.mode = mode
    c.train_attack.p_adversarial = 1.0
    c.train_attack.steps_range = (10, 10)
    for task in c.train:
        c.train[task].batch_size = size
    return c


def baseline_train_settings(config: ml_collections.ConfigDict, size: int) -> dict:
    """What the PyTorch baseline needs to do the same training work (ε of step 0's draw)."""
    spec = loop.task_spec(config, "saliency_adv", steps_per_epoch=100)
    _, eps, t, _ = steps.algorithm1_draws(spec, jax.random.fold_in(jax.random.key(0), 0), size)
    return dict(
        learning_rate=float(config.train.depth.learning_rate),
        weight_decay=float(config.train.depth.weight_decay),
        eps=np.array(eps),  # a writable copy: torch.as_tensor shares its memory
        steps=int(np.max(t)),
        sparsity_weight=float(config.train.saliency_adv.sparsity_weight),
        saliency_target=str(config.train.saliency.saliency_target),
    )


def train_job(config, task: str, variables, frozen, x, y, compile: bool = True) -> Job:
    """The library's train step (`parallel.make_step`) of `task`, from a fresh state each run."""
    mode = config.parallel.mode
    spec = loop.task_spec(config, task, steps_per_epoch=100)
    step = parallel.make_step(spec, mode)
    data = parallel.shard_batch({"image": x, "depth": y}, mode)
    frozen = parallel.replicate(frozen, mode) if frozen is not None else None
    key = jax.random.key(0)

    def prepare():  # the step donates its state: a fresh copy per run, placed before timing
        state = parallel.replicate(steps.init_train_state(variables, spec.tx), mode)
        return jax.block_until_ready(state), data, frozen, key

    return compile_job(step, *prepare(), prepare=prepare, compile=compile)


def work(
    setting: dict, size: int, dtype: str, what: tuple[str, ...], compile: bool = True
) -> dict[str, Job]:
    """name -> Job for the groups in `what` ('forward', 'attack', 'sweep', 'train'); with
    compile=False FLOP counts only (`compile_job`)."""
    build = functools.partial(compile_job, compile=compile)
    n, nv, g, gv = networks(setting, dtype)
    x, y = batch(size, setting["input_hw"])
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    apply_n = lambda v, z: n.apply(v, z, train=False)
    apply_g = lambda v, z: g.apply(v, z, train=False)
    jobs: dict[str, Job] = {}
    if "forward" in what:
        jobs["N forward"] = build(jax.jit(apply_n), nv, xj)
        jobs["G forward"] = build(jax.jit(apply_g), gv, xj)
    if {"attack", "sweep"} & set(what):
        step_flops = attack_step_flops(n, nv, xj, yj, compile)
        scaled = lambda k: None if step_flops is None else k * step_flops
    if "attack" in what:
        for name, method, t in (("FGSM", "fgsm", 1), ("IFGSM-10", "ifgsm", 10)):
            jobs[name] = attack_job(n, nv, xj, yj, method, t, compile)
            jobs[name].flops = scaled(t)
    if "sweep" in what:
        config = attacks.AttackConfig(method="ifgsm", t_max=10)

        def sweep(v, z, d, values):  # what attacks.eps_sweep compiles
            one = lambda e: attacks.attack_traced(
                Partial(apply_n, v), z, d, eps=e, steps=10, config=config
            )
            return jax.lax.map(one, values)

        values = jnp.asarray(SWEEP_EPS, jnp.float32)
        jobs["IFGSM-10 sweep of 4 ε"] = build(jax.jit(sweep), nv, xj, yj, values)
        jobs["IFGSM-10 sweep of 4 ε"].flops = scaled(10 * len(SWEEP_EPS))
    if "train" in what:
        config = train_config(setting, size, dtype)
        jobs["train step N"] = train_job(config, "depth", nv, None, x, y, compile)
        jobs["train step G"] = train_job(config, "saliency", gv, nv, x, y, compile)
        jobs[G_ADV] = train_job(config, "saliency_adv", gv, nv, x, y, compile)
        if jobs[G_ADV].flops is not None:  # the attack loop's body was counted once
            jobs[G_ADV].flops += 9 * attack_step_flops(n, nv, xj, yj, compile)
    return jobs
