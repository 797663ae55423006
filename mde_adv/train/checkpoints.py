"""Training checkpoints: Orbax `CheckpointManager` keeping the latest and the best, and resume.

A checkpoint holds the TrainState (host copy) and a JSON record: the task, a fingerprint of the
settings that must not change across a resume, the step (which is also the data position: the
input pipeline restarts at any step) and the base PRNG seed (per-step keys are folded from it).
Every process calls save/restore (Orbax coordinates multi-host writes). Orbax writes to a
temporary directory and renames it when complete, so an interrupted save is never restored.
"""

import json
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from orbax.checkpoint import checkpoint_managers

from mde_adv import paths
from mde_adv.run_checks import differing_fields
from mde_adv.train.steps import TrainState
from mde_adv.variables_io import CheckpointError, error_cause

__all__ = [
    "CheckpointError",
    "PreemptionFlag",
    "fingerprint",
    "manager",
    "prune",
    "restore_latest",
    "save",
]


def manager(directory: str) -> ocp.CheckpointManager:
    """A manager under `directory` keeping the latest checkpoint and the one of lowest loss.

    The training loop decides when to save (every `checkpoint_every` steps, at the end and on
    preemption) and saves with force=True, so no save interval is set here.
    """
    policy = checkpoint_managers.AnyPreservationPolicy(
        [
            checkpoint_managers.LatestN(1),
            checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics["loss"], reverse=True, n=1
            ),
        ]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        enable_async_checkpointing=False,
        create=True,
    )
    # orbax refuses relative paths (e.g. the README's `--workdir runs/default`); a gs:// URI
    # stays one (Orbax writes it through TensorStore's GCS driver)
    return ocp.CheckpointManager(
        paths.as_path(directory), options=options, item_names=("state", "meta")
    )


def save(
    mgr: ocp.CheckpointManager,
    state: TrainState,
    meta: dict,
    metrics: dict[str, float],
) -> bool:
    """Saves the host TrainState at its step unless that step is already saved, then deletes
    every checkpoint but the latest and the one of lowest loss (also those of earlier runs,
    which Orbax's policy does not see: it keeps no metrics across restarts)."""
    step = int(state.step)
    if step in mgr.all_steps():
        return False
    loss = float(metrics.get("loss", float("inf")))
    saved = mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave({**meta, "step": step, "loss": loss}),
        ),
        metrics={"loss": loss},
        force=True,  # the caller decides when to save
    )
    mgr.wait_until_finished()
    prune(mgr)
    return saved


def _recorded_loss(mgr: ocp.CheckpointManager, step: int) -> float:
    try:
        meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        loss = float(meta.get("loss", float("inf")))
    except Exception:  # an unreadable checkpoint is never the best
        return float("inf")
    return loss if loss == loss else float("inf")  # NaN is never the best


def prune(mgr: ocp.CheckpointManager) -> None:
    """Deletes every checkpoint but the latest and the one of lowest recorded loss."""
    steps = sorted(mgr.all_steps())
    if len(steps) < 2:
        return
    best = min(steps, key=lambda s: (_recorded_loss(mgr, s), -s))
    for step in steps:
        if step not in (steps[-1], best):
            mgr.delete(step)


def _mismatch(key: str, saved: Any, now: Any) -> list[str]:
    """The differing fields of one record entry; fingerprints (JSON objects) field by field."""
    try:
        saved_obj, now_obj = json.loads(saved), json.loads(now)
    except (TypeError, ValueError):
        saved_obj = now_obj = None
    if isinstance(saved_obj, dict) and isinstance(now_obj, dict):
        return [f"{key}.{field}" for field in differing_fields(saved_obj, now_obj)]
    return [f"{key}: saved {saved!r} vs now {now!r}"]


def _restore_step(
    mgr: ocp.CheckpointManager, step: int, abstract: Any, expected_meta: dict
) -> tuple[TrainState, dict]:
    where = epath.Path(mgr.directory) / str(step)
    try:
        meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:
        raise _Unreadable(
            f"checkpoint {where}: its record cannot be read ({error_cause(e)})"
        ) from e
    mismatched = [
        line
        for k, v in expected_meta.items()
        if meta.get(k) != v
        for line in _mismatch(k, meta.get(k), v)
    ]
    if mismatched:
        raise CheckpointError(
            f"checkpoint {where} was written with other settings ({'; '.join(mismatched)}); "
            "use another workdir or delete it"
        )
    try:
        restored = mgr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    except Exception as e:
        raise _Unreadable(
            f"checkpoint {where} does not fit the model being trained or is corrupt: "
            f"{error_cause(e)}"
        ) from e
    return restored, meta


class _Unreadable(CheckpointError):
    """One checkpoint cannot be read (corrupt, truncated) or does not fit the template."""


def restore_latest(
    mgr: ocp.CheckpointManager, template: TrainState, expected_meta: dict
) -> tuple[TrainState, dict] | None:
    """The latest intact TrainState (host arrays) and its record, or None where there is none.

    A checkpoint that cannot be read (corrupt, truncated) is skipped with a warning for the
    newest older one. Raises CheckpointError naming the directory and the differing fields
    when the record disagrees with `expected_meta` (another task or settings), and when no
    checkpoint can be read or fits the template.
    """
    steps = sorted(mgr.all_steps(), reverse=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    failures = []
    for step in steps:
        try:
            return _restore_step(mgr, step, abstract, expected_meta)
        except _Unreadable as error:
            failures.append(str(error))
            logging.warning("%s; trying the previous checkpoint", error)
    if failures:
        raise CheckpointError(
            f"no checkpoint in {mgr.directory} can be restored: {' | '.join(failures)}; "
            "delete the directory to start the stage afresh"
        )
    return None


def fingerprint(settings: Any) -> str:
    """A stable JSON string of settings that a resume must not change."""
    return json.dumps(settings, sort_keys=True, default=str)


class PreemptionFlag:
    """Set by SIGTERM (preemption) so the loop saves a checkpoint and exits cleanly.

    Installing replaces the SIGTERM handler for the duration of a `with` block (main thread
    only; elsewhere it is a no-op flag).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True
