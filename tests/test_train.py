"""Training: pmap = single device = jit/sharding, resume, preemption, frozen N, errors."""

import dataclasses
import functools
import os
import pathlib
import re
import signal

import jax
import numpy as np
import pytest
import train_setup as ts
from jax.sharding import NamedSharding, PartitionSpec

from mde_adv.train import checkpoints, loop, parallel, steps

GLOBAL_BATCH = 4


def _single_device_run(config, task, variables, frozen, n_steps):
    """The step body jitted on one device over the whole global batch (no axis name)."""
    spec = loop.task_spec(config, task, steps_per_epoch=10)
    spec = dataclasses.replace(spec, model=spec.model.clone(axis_name=None))
    step = jax.jit(functools.partial(steps.train_step, spec, axis_name=None))
    state = steps.init_train_state(variables, spec.tx)
    key = jax.random.fold_in(jax.random.key(config.seed), steps.TASKS.index(task))
    batches = ts.batches_from(1, GLOBAL_BATCH)(0)
    for _ in range(n_steps):
        state, metrics = step(state, next(batches), frozen, key)
    return jax.device_get(state), jax.device_get(metrics)


def _wrapped_run(config, task, variables, frozen, n_steps):
    mode = config.parallel.mode
    spec = loop.task_spec(config, task, steps_per_epoch=10)
    step = parallel.make_step(spec, mode)
    state = parallel.replicate(steps.init_train_state(variables, spec.tx), mode)
    frozen = parallel.replicate(frozen, mode) if frozen is not None else None
    key = jax.random.fold_in(jax.random.key(config.seed), steps.TASKS.index(task))
    batches = ts.batches_from(1, GLOBAL_BATCH)(0)
    for _ in range(n_steps):
        state, metrics = step(state, parallel.shard_batch(next(batches), mode), frozen, key)
    return parallel.unreplicate(state, mode), parallel.host_metrics(metrics, mode)


def _variables(state: steps.TrainState) -> dict:
    return {"params": state.params, "batch_stats": state.batch_stats}


@pytest.fixture(scope="module")
def depth_vars():
    return ts.initial_variables(ts.tiny_config(), "depth", seed=0)


@pytest.fixture(scope="module")
def saliency_vars():
    return ts.initial_variables(ts.tiny_config(), "saliency", seed=1)


@pytest.mark.parametrize("task", ["depth", "saliency_adv"])
def test_pmap_step_equals_single_device_step(task, depth_vars, saliency_vars):
    config = ts.equality_config("pmap")
    variables, frozen = (depth_vars, None) if task == "depth" else (saliency_vars, depth_vars)
    single, m_single = _single_device_run(config, task, variables, frozen, n_steps=1)
    pmapped, m_pmap = _wrapped_run(config, task, variables, frozen, n_steps=1)
    assert int(single.step) == int(pmapped.step) == 1
    ts.assert_same_update(_variables(single), _variables(pmapped), variables)
    np.testing.assert_allclose(float(m_single["loss"]), m_pmap["loss"], rtol=1e-4)


def test_jit_sharding_step_equals_pmap_step(depth_vars):
    pmapped, m_pmap = _wrapped_run(ts.equality_config("pmap"), "depth_adv", depth_vars, None, 1)
    jitted, m_jit = _wrapped_run(ts.equality_config("jit"), "depth_adv", depth_vars, None, 1)
    ts.assert_same_update(_variables(pmapped), _variables(jitted), depth_vars)
    assert m_pmap["adversarial_fraction"] == pytest.approx(m_jit["adversarial_fraction"])


def test_depth_net_is_bit_identical_after_training_saliency(tmp_path, depth_vars, saliency_vars):
    before = jax.tree.map(np.copy, depth_vars)
    for task in ("saliency", "saliency_adv"):
        config = ts.tiny_config("pmap", GLOBAL_BATCH)
        trained = loop.train_task(
            config,
            task,
            tmp_path / task,
            ts.batches_from(2, GLOBAL_BATCH),
            steps_per_epoch=10,
            variables=saliency_vars,
            frozen=depth_vars,
        )
        assert jax.tree.structure(trained["params"]) == jax.tree.structure(saliency_vars["params"])
    jax.tree.map(np.testing.assert_array_equal, before, depth_vars)


def test_adversarial_fraction_over_steps_is_about_half(depth_vars):
    config = ts.tiny_config("pmap", GLOBAL_BATCH)
    config.train.depth_adv.learning_rate = 0.0
    spec = loop.task_spec(config, "depth_adv", steps_per_epoch=10)
    step = parallel.make_step(spec, "pmap")
    state = parallel.replicate(steps.init_train_state(depth_vars, spec.tx), "pmap")
    batches = ts.batches_from(3, GLOBAL_BATCH)(0)
    fractions = []
    for _ in range(12):
        state, m = step(state, parallel.shard_batch(next(batches), "pmap"), None, jax.random.key(5))
        fractions.append(parallel.host_metrics(m, "pmap")["adversarial_fraction"])
    assert 0.25 <= np.mean(fractions) <= 0.75, fractions
    assert len(set(fractions)) > 1, "the coin must be redrawn every step"


def _train(tmp_path, make_batches, num_steps=4, width=0.125):
    config = ts.tiny_config("pmap", GLOBAL_BATCH)
    config.train.depth.num_steps = num_steps
    config.train.depth.checkpoint_every = 2
    config.depth_net.width = width
    variables = ts.initial_variables(config, "depth", seed=0)
    return loop.train_task(
        config, "depth", tmp_path, make_batches, steps_per_epoch=10, variables=variables
    )


def _interrupting(make_batches, at_step, action):
    def make(start):
        for i, batch in enumerate(make_batches(start)):
            if start + i == at_step:
                action()
            yield batch

    return make


def test_resume_equals_uninterrupted_run(tmp_path):
    reference = _train(tmp_path / "ref", ts.batches_from(4, GLOBAL_BATCH))

    def crash():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "run", _interrupting(ts.batches_from(4, GLOBAL_BATCH), 3, crash))
    resumed = _train(tmp_path / "run", ts.batches_from(4, GLOBAL_BATCH))
    jax.tree.map(np.testing.assert_array_equal, reference, resumed)


def test_sigterm_saves_and_resumes(tmp_path):
    reference = _train(tmp_path / "ref", ts.batches_from(6, GLOBAL_BATCH), num_steps=3)
    terminate = lambda: os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(loop.Preempted):
        _train(
            tmp_path / "run",
            _interrupting(ts.batches_from(6, GLOBAL_BATCH), 0, terminate),
            num_steps=3,
        )
    mgr = checkpoints.manager(tmp_path / "run" / "checkpoints")
    assert mgr.latest_step() == 1, "the step in flight is saved before exiting"
    resumed = _train(tmp_path / "run", ts.batches_from(6, GLOBAL_BATCH), num_steps=3)
    jax.tree.map(np.testing.assert_array_equal, reference, resumed)


def test_a_relative_workdir_checkpoints_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as the README's `--workdir runs/default`
    _train(pathlib.Path("runs") / "relative", ts.batches_from(9, GLOBAL_BATCH), num_steps=1)
    assert checkpoints.manager("runs/relative/checkpoints").latest_step() == 1


def test_incompatible_checkpoint_is_a_clear_error(tmp_path):
    _train(tmp_path, ts.batches_from(7, GLOBAL_BATCH), num_steps=2)
    with pytest.raises(checkpoints.CheckpointError, match=r"other settings.*width"):
        _train(tmp_path, ts.batches_from(7, GLOBAL_BATCH), num_steps=2, width=0.25)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    _train(tmp_path, ts.batches_from(8, GLOBAL_BATCH), num_steps=2)
    step_dir = tmp_path / "checkpoints" / "2"
    for f in (step_dir / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0:
            f.write_bytes(b"\x00garbage")
    with pytest.raises(checkpoints.CheckpointError, match=re.escape(str(step_dir))):
        _train(tmp_path, ts.batches_from(8, GLOBAL_BATCH), num_steps=4)


def test_replicate_never_hands_the_callers_buffers_to_the_donating_step(depth_vars):
    config = ts.tiny_config("jit", GLOBAL_BATCH)
    spec = loop.task_spec(config, "depth", steps_per_epoch=10)
    # Already laid out as the step wants it: a plain device_put would be a no-op.
    replicated = NamedSharding(parallel.data_mesh(), PartitionSpec())
    on_device = jax.device_put(steps.init_train_state(depth_vars, spec.tx), replicated)
    step = parallel.make_step(spec, "jit")
    batch = parallel.shard_batch(ts.synthetic_batch(0, GLOBAL_BATCH), "jit")
    step(parallel.replicate(on_device, "jit"), batch, None, jax.random.key(0))
    assert all(not leaf.is_deleted() for leaf in jax.tree.leaves(on_device))


def _paired_spec():
    spec = loop.task_spec(ts.tiny_config(), "depth_adv", steps_per_epoch=10)
    return dataclasses.replace(spec, sampler="paired")


def test_paired_sampler_attacks_one_example_of_each_pair():
    """One of examples 2j, 2j+1 is adversarial, each with probability 1/2 over steps, and a
    device's draws are its slice of the global batch's (any even split)."""
    spec = _paired_spec()
    draws = [steps.algorithm1_draws(spec, jax.random.key(s), 8)[0] for s in range(200)]
    is_adv = np.asarray(draws)
    np.testing.assert_array_equal(is_adv[:, 0::2] ^ is_adv[:, 1::2], True)
    assert np.all(np.abs(is_adv.mean(axis=0) - 0.5) < 0.12), is_adv.mean(axis=0)
    key = jax.random.key(7)
    plain = lambda v: (
        jax.random.key_data(v) if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key) else v
    )
    whole = [plain(v) for v in steps.algorithm1_draws(spec, key, 8)]
    halves = [
        [plain(v) for v in steps.algorithm1_draws(spec, key, 4, first_index)]
        for first_index in (0, 4)
    ]
    for whole_part, *parts in zip(whole, *halves, strict=True):
        np.testing.assert_array_equal(whole_part, np.concatenate(parts))
    with pytest.raises(ValueError, match="even batch"):
        steps.algorithm1_draws(spec, key, 3)
    with pytest.raises(ValueError, match="p_adversarial"):
        dataclasses.replace(spec, p_adversarial=0.3)


def test_paired_sampler_attacks_only_the_chosen_half_with_the_same_result(depth_vars):
    """Attacking the B/2 chosen examples gives the x' of attacking the whole batch with the
    clean examples at T = 0 (the Bernoulli path's computation on the same coins)."""
    spec = _paired_spec()
    model = spec.depth_model
    predict = lambda z: model.apply(depth_vars, z, train=False)
    batch = next(ts.batches_from(4, 4)(0))
    x, depth = batch["image"], batch["depth"]
    key, first = jax.random.key(11), jax.numpy.int32(0)
    x_prime, is_adv = steps.adversarial_inputs(spec, predict, x, depth, key, first)
    flags, eps, t, keys = steps.algorithm1_draws(spec, key, 4)
    np.testing.assert_array_equal(is_adv, flags)
    full = steps.attacks.attack_traced(
        predict, x, depth, eps=eps, steps=np.where(flags, t, 0), keys=keys, config=spec.attack
    )
    expected = np.where(np.asarray(flags)[:, None, None, None], full, x)
    np.testing.assert_allclose(x_prime, expected, atol=1e-5)
    assert np.any(np.asarray(x_prime) != np.asarray(x))
