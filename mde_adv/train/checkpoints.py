"""Training checkpoints: Orbax `CheckpointManager` keeping the latest and the best, and resume.

A checkpoint holds the TrainState (host copy) and a JSON record: the task, a fingerprint of the
settings that must not change across a resume, the step (which is also the data position: the
input pipeline restarts at any step) and the base PRNG seed (per-step keys are folded from it).
Every process calls save/restore (Orbax coordinates multi-host writes). Orbax writes to a
temporary directory and renames it when complete, so an interrupted save is never restored.
"""

import json
import os
import signal
import threading
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers

from mde_adv.train.steps import TrainState
from mde_adv.variables_io import CheckpointError

__all__ = ["CheckpointError", "PreemptionFlag", "fingerprint", "manager", "restore_latest", "save"]


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
    # orbax refuses relative paths (e.g. the README's `--workdir runs/default`)
    return ocp.CheckpointManager(
        epath.Path(os.path.abspath(directory)), options=options, item_names=("state", "meta")
    )


def save(
    mgr: ocp.CheckpointManager,
    state: TrainState,
    meta: dict,
    metrics: dict[str, float],
) -> bool:
    """Saves the host TrainState at its step unless that step is already saved."""
    step = int(state.step)
    if step in mgr.all_steps():
        return False
    return mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({**meta, "step": step})
        ),
        metrics={"loss": float(metrics.get("loss", float("inf")))},
        force=True,  # the caller decides when to save
    )


def restore_latest(
    mgr: ocp.CheckpointManager, template: TrainState, expected_meta: dict
) -> tuple[TrainState, dict] | None:
    """The latest TrainState (host arrays) and its record, or None where there is none.

    Raises CheckpointError naming the directory when the record disagrees with
    `expected_meta` (another task or model) or the arrays do not fit the template.
    """
    step = mgr.latest_step()
    if step is None:
        return None
    where = epath.Path(mgr.directory) / str(step)
    try:
        meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:
        raise CheckpointError(f"checkpoint {where}: its record cannot be read ({e})") from e
    mismatched = {k: (meta.get(k), v) for k, v in expected_meta.items() if meta.get(k) != v}
    if mismatched:
        lines = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in mismatched.items())
        raise CheckpointError(
            f"checkpoint {where} was written with other settings ({lines}); "
            "use another workdir or delete it"
        )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
        restored = mgr.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {where} does not fit the model being trained or is corrupt: {e}"
        ) from e
    return restored, meta


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
