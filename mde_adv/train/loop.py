"""The training loop shared by the four tasks: resume, step, log, checkpoint, preemption."""

import json
import time
from collections.abc import Callable, Iterator

import jax
import ml_collections
from absl import logging
from jax.experimental import multihost_utils
from tqdm import tqdm

from mde_adv import alignment, attacks, models, paths
from mde_adv.train import checkpoints, optimizer, parallel, steps
from mde_adv.train.writers import MetricWriter

BatchFactory = Callable[[int], Iterator[dict]]
Evaluator = Callable[[dict], dict[str, float]]
TIMING_FILE = "timing.json"


class Preempted(RuntimeError):
    """Raised after SIGTERM once the checkpoint is saved: rerun the same command to resume."""


def train_attack_config(config: ml_collections.ConfigDict) -> attacks.AttackConfig:
    """Algorithm 1's attack: IFGSM, α (1 in the paper), ℓ1 loss, in the configured ε space;
    its loss after the alignment of a relative N (`alignment.depth_range`)."""
    a = config.train_attack
    return attacks.AttackConfig(
        method=a.method,
        norm=a.norm,
        loss=a.loss,
        space=a.space,
        alpha=a.alpha,
        t_max=a.t_max,
        align=alignment.depth_range(config.depth_net),
    )


def task_spec(config: ml_collections.ConfigDict, task: str, steps_per_epoch: int) -> steps.TaskSpec:
    """The static settings of `task` from the config (see configs/default.py for the fields)."""
    tcfg = config.train[task]
    axis = parallel.model_axis_name(config.parallel.mode)
    depth_model = models.depth_net(config.depth_net)
    if task.startswith("saliency"):
        trained = models.saliency_net(config.saliency_net, axis_name=axis)
    else:
        trained = models.depth_net(config.depth_net, axis_name=axis)
    adversarial = task.endswith("_adv")
    return steps.TaskSpec(
        task=task,
        model=trained,
        depth_model=depth_model,
        tx=optimizer.adam_coupled_l2(tcfg, steps_per_epoch, total_steps(tcfg, steps_per_epoch)),
        sparsity_weight=float(tcfg.get("sparsity_weight", 0.0)),
        saliency_target=tcfg.get("saliency_target", "ground_truth"),
        attack=train_attack_config(config) if adversarial else None,
        p_adversarial=float(config.train_attack.p_adversarial),
        eps_range=tuple(config.train_attack.eps_range),
        steps_range=tuple(config.train_attack.steps_range),
        sampler=config.train_attack.get("sampler", "bernoulli"),
        align=alignment.depth_range(config.depth_net),
    )


def global_batch_size(tcfg: ml_collections.ConfigDict) -> int:
    """Examples per step over all processes: `per_device_batch_size` × every device when set
    (> 0; spec §7's 8 per device), else `batch_size`."""
    per_device = int(tcfg.get("per_device_batch_size", 0) or 0)
    return per_device * jax.device_count() if per_device > 0 else int(tcfg.batch_size)


def total_steps(tcfg: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """`num_steps` when set (> 0), else epochs · steps_per_epoch."""
    n = int(tcfg.get("num_steps", 0) or 0)
    return n if n > 0 else round(tcfg.epochs * steps_per_epoch)


def train_task(
    config: ml_collections.ConfigDict,
    task: str,
    workdir: paths.PathLike,
    make_batches: BatchFactory,
    *,
    steps_per_epoch: int,
    variables: dict,
    frozen: dict | None = None,
    evaluate: Evaluator | None = None,
) -> dict:
    """Trains `task` from `variables` (or resumes from `workdir`) and returns host variables.

    make_batches(step) yields this process's batches {'image', 'depth'} from data position
    `step` on. frozen: N's variables for the saliency tasks. evaluate(variables) -> scalars:
    run every `train[task].eval_every` steps (0: never) and at the end, logged as `test_*`
    (the learning curve). Writes checkpoints under `workdir/checkpoints`, logs under
    `workdir/logs` and the wall times of this run (first step, i.e. compile, vs the others,
    evaluation) to `workdir/timing.json` (process 0).
    """
    workdir = paths.as_path(workdir)
    mode = parallel.check_mode(config.parallel.mode)
    tcfg = config.train[task]
    spec = task_spec(config, task, steps_per_epoch)
    n_steps = total_steps(tcfg, steps_per_epoch)
    expected = {
        "task": task,
        "settings": checkpoints.fingerprint(
            {
                "task": task,
                # precise_bn_batches acts after the last step (experiment.train_stage)
                "train": {k: v for k, v in tcfg.to_dict().items() if k != "precise_bn_batches"},
                "depth_net": config.depth_net.to_dict(),
                "saliency_net": config.saliency_net.to_dict(),
                "train_attack": config.train_attack.to_dict(),
                "seed": config.seed,
                "steps_per_epoch": steps_per_epoch,
            }
        ),
    }
    host_state = jax.device_get(steps.init_train_state(variables, spec.tx))
    mgr = checkpoints.manager(workdir / "checkpoints")
    restored = checkpoints.restore_latest(mgr, host_state, expected)
    if restored is not None:
        host_state, _ = restored
        logging.info("%s: resuming at step %d", task, int(host_state.step))
    start = int(host_state.step)
    key = jax.random.fold_in(jax.random.key(config.seed), steps.TASKS.index(task))
    step_fn = parallel.make_step(spec, mode)
    device_state = parallel.replicate(host_state, mode)
    device_frozen = parallel.replicate(frozen, mode) if frozen is not None else None
    global_batch = global_batch_size(tcfg)
    eval_every = int(tcfg.get("eval_every", 0) or 0) if evaluate is not None else 0
    timing = {"steps": n_steps - start, "first_step_seconds": 0.0, "eval_seconds": 0.0}
    metrics: dict[str, float] = {}
    is_main = jax.process_index() == 0
    with (
        checkpoints.PreemptionFlag() as preemption,
        MetricWriter(workdir / "logs") as writer,
        tqdm(
            total=n_steps,
            initial=start,
            desc=task,
            unit="step",
            disable=not is_main,
            dynamic_ncols=True,
        ) as bar,
    ):
        batches = make_batches(start)
        t0, last = time.perf_counter(), start
        t_start = t0
        for step in range(start, n_steps):
            batch = parallel.shard_batch(next(batches), mode)
            device_state, device_metrics = step_fn(device_state, batch, device_frozen, key)
            done = step + 1
            if step == start:  # compiles the step: timed apart from the others
                jax.block_until_ready(device_metrics)
                timing["first_step_seconds"] = round(time.perf_counter() - t_start, 2)
            if eval_every and (done % eval_every == 0 or done == n_steps):
                t_eval = time.perf_counter()
                state_now = parallel.unreplicate(device_state, mode)
                scores = evaluate(
                    {"params": state_now.params, "batch_stats": state_now.batch_stats}
                )
                writer.write(done, {f"test_{k}": v for k, v in scores.items()})
                logging.info("%s step %d: %s", task, done, scores)
                timing["eval_seconds"] += time.perf_counter() - t_eval
            if done % tcfg.log_every == 0 or done == n_steps:
                metrics = parallel.host_metrics(device_metrics, mode)
                dt = time.perf_counter() - t0
                metrics["images_per_s"] = (done - last) * global_batch / max(dt, 1e-9)
                writer.write(done, metrics)
                bar.set_postfix(
                    loss=f"{metrics['loss']:.3f}", img_s=f"{metrics['images_per_s']:.1f}"
                )
                t0, last = time.perf_counter(), done
            bar.update(1)
            stop = _any_process(preemption.requested)
            if stop or done % tcfg.checkpoint_every == 0 or done == n_steps:
                host_state = parallel.unreplicate(device_state, mode)
                if not metrics:
                    metrics = parallel.host_metrics(device_metrics, mode)
                checkpoints.save(mgr, host_state, expected, metrics)
            if stop:
                mgr.wait_until_finished()
                raise Preempted(f"{task}: preempted at step {done}; checkpoint saved in {workdir}")
    mgr.wait_until_finished()
    timing["total_seconds"] = round(time.perf_counter() - t_start, 2) if n_steps > start else 0.0
    timing["eval_seconds"] = round(timing["eval_seconds"], 2)
    if is_main:
        paths.write_text_atomic(workdir / TIMING_FILE, json.dumps(timing, indent=1))
    # The last step always saves, so host_state is the final state (or the restored one).
    return {"params": host_state.params, "batch_stats": host_state.batch_stats}


def _any_process(flag: bool) -> bool:
    """True on every process when `flag` is true on any (a no-op on one process)."""
    if jax.process_count() == 1:
        return flag
    return bool(multihost_utils.process_allgather(flag).any())
