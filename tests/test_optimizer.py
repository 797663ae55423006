"""The learning-rate schedules and the coupled-L2 Adam of spec §7."""

import itertools
import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mde_adv.train import optimizer


def _config(**overrides) -> ml_collections.ConfigDict:
    values = dict(
        learning_rate=1e-3,
        weight_decay=1e-4,
        adam_b1=0.9,
        adam_b2=0.999,
        adam_eps=1e-8,
        lr_decay_factor=0.1,
        lr_decay_every_epochs=0,
    )
    return ml_collections.ConfigDict({**values, **overrides})


def test_step_schedule_decays_by_the_factor_every_k_epochs():
    schedule = optimizer.learning_rate_schedule(_config(lr_decay_every_epochs=2), 10, 100)
    lrs = [float(schedule(step)) for step in (0, 19, 20, 39, 40)]
    np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-4, 1e-4, 1e-5], rtol=1e-6)
    constant = optimizer.learning_rate_schedule(_config(), 10, 100)
    assert float(constant(0)) == float(constant(99)) == pytest.approx(1e-3)


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    config = _config(lr_schedule="cosine", warmup_epochs=1.0)
    schedule = optimizer.learning_rate_schedule(config, 10, 110)
    assert float(schedule(0)) == 0.0
    assert float(schedule(5)) == pytest.approx(5e-4)
    assert float(schedule(10)) == pytest.approx(1e-3)
    # half-way through the decay: lr · (1 + cos(π/2)) / 2
    assert float(schedule(60)) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 2)) / 2)
    assert float(schedule(110)) == pytest.approx(0.0, abs=1e-12)
    values = [float(schedule(s)) for s in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (dict(lr_schedule="linear"), "lr_schedule"),
        (dict(lr_schedule="cosine", warmup_epochs=20.0), "warmup_epochs"),
        (dict(lr_schedule="cosine", warmup_epochs=-1.0), "warmup_epochs"),
    ],
)
def test_bad_schedule_settings_are_named(overrides, field):
    with pytest.raises(ValueError, match=field):
        optimizer.learning_rate_schedule(_config(**overrides), 10, 100)


def test_weight_decay_is_coupled_l2_before_adam():
    """PyTorch's Adam(weight_decay): the decay enters the moments, so with a zero loss
    gradient the first step is −lr·sign(θ) (Adam's normalisation of wd·θ), not −lr·wd·θ."""
    tx = optimizer.adam_coupled_l2(_config(weight_decay=0.5), 10, 100)
    params = {"w": jnp.asarray([2.0, -3.0])}
    updates, _ = tx.update({"w": jnp.zeros(2)}, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], [2.0 - 1e-3, -3.0 + 1e-3], rtol=1e-5)
