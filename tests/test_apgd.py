"""APGD, the square search, restarts and the ensemble worst case (mde_adv/attacks)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import robust_setup as rs
from jax.tree_util import Partial

from mde_adv import attacks, losses
from mde_adv.attacks import apgd
from mde_adv.metrics import image_metrics
from mde_adv.normalization import IMAGENET_STD, denormalize

PREDICT = rs.trained_predict()
X = rs.images(1, 6)
Y = rs.true_depth(X)


def l1(x_adv, predict=PREDICT):
    return np.asarray(losses.l1_loss(predict(x_adv), Y[: x_adv.shape[0]]))


def radius(x_adv, x, norm, space):
    delta = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    delta = delta * IMAGENET_STD if space == "pixel" else delta
    flat = delta.reshape(delta.shape[0], -1)
    return np.abs(flat).max(1) if norm == "linf" else np.linalg.norm(flat, axis=1)


def test_apgd_reaches_at_least_ifgsm_loss_at_the_same_budget():
    """On the trained net, APGD-10 ≥ the paper's IFGSM-10 (α = 1) in the mean and on most
    images, at several ε (traced: one program per attack)."""
    ifgsm = attacks.AttackConfig(method="ifgsm")
    auto = attacks.AttackConfig(method="apgd")
    for eps in (0.1, 0.3):
        base = l1(attacks.attack(PREDICT, X, Y, eps=eps, steps=10, config=ifgsm))
        ours = l1(attacks.attack(PREDICT, X, Y, eps=eps, steps=10, config=auto))
        assert ours.mean() >= base.mean(), (eps, ours, base)
        assert np.mean(ours >= base - 1e-6) >= 2 / 3, (eps, ours, base)
    assert ours.mean() > base.mean() * 1.02  # at ε = 0.3 it is clearly stronger


CASES = [
    ("apgd", "linf", "pixel"),
    ("apgd", "l2", "normalised"),
    ("square", "linf", "normalised"),
    ("square", "l2", "pixel"),
]


@pytest.mark.parametrize("method, norm, space", CASES)
def test_new_attacks_stay_in_each_examples_ball_box_and_region(method, norm, space):
    x, y = X[:3], Y[:3]
    eps = np.array([0.0, 0.02, 0.3], np.float32)
    steps = np.array([3, 1, 6], np.int32)
    region = np.ones((3, *x.shape[1:3], 1), np.float32)
    region[:, :, : x.shape[2] // 2] = 0.0
    config = attacks.AttackConfig(method=method, norm=norm, space=space, t_max=6)
    x_adv = attacks.attack(
        PREDICT, x, y, eps=eps, steps=steps, config=config, key=jax.random.key(3),
        region_mask=region,
    )  # fmt: skip
    np.testing.assert_array_less(radius(x_adv, x, norm, space), eps + 1e-5)
    np.testing.assert_array_equal(np.asarray(x_adv[0]), x[0])  # ε = 0: unchanged
    outside = np.asarray(x_adv - x)[:, :, : x.shape[2] // 2]
    assert np.all(outside == 0), "perturbation outside the region mask"
    assert np.all(radius(x_adv, x, norm, space)[1:] > 0), "the attack did not move"
    if space == "pixel":
        pixels = np.asarray(denormalize(x_adv))
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    if method == "apgd":  # starts at x and keeps its best iterate: never below the clean loss
        assert np.all(l1(x_adv) >= l1(x) - 1e-6)


@functools.partial(jax.jit, static_argnames="config")
def _traced(x, y, eps, steps, keys, *, config):
    return attacks.attack_traced(PREDICT, x, y, eps=eps, steps=steps, config=config, keys=keys)


@pytest.mark.parametrize("method", ["apgd", "square"])
def test_batch_equals_per_example_and_keys_decide_the_randomness(method):
    config = attacks.AttackConfig(method=method, random_start=True, t_max=5)
    x, y = X[:3], Y[:3]
    eps = jnp.array([0.05, 0.1, 0.2])
    steps = jnp.array([2, 5, 0], jnp.int32)
    keys = attacks.example_keys(jax.random.key(7), 3)
    batched = np.asarray(_traced(x, y, eps, steps, keys, config=config))
    for i in range(3):
        alone = _traced(
            x[i : i + 1], y[i : i + 1], eps[i : i + 1], steps[i : i + 1], keys[i : i + 1],
            config=config,
        )  # fmt: skip
        np.testing.assert_allclose(np.asarray(alone)[0], batched[i], atol=1e-5)
    np.testing.assert_array_equal(batched[2], x[2])  # T = 0: unchanged
    again = np.asarray(_traced(x, y, eps, steps, keys, config=config))
    np.testing.assert_array_equal(again, batched)
    other_keys = attacks.example_keys(jax.random.key(8), 3)
    other = np.asarray(_traced(x, y, eps, steps, other_keys, config=config))
    assert not np.allclose(other[:2], batched[:2])


def test_checkpoint_schedule_follows_autoattack():
    steps = jnp.array([1, 10, 100], jnp.int32)
    np.testing.assert_array_equal(apgd._fraction(steps, apgd.FIRST_CHECKPOINT), [1, 2, 22])
    np.testing.assert_array_equal(apgd._fraction(steps, apgd.MIN_PERIOD), [1, 1, 6])
    np.testing.assert_array_equal(apgd._fraction(steps, apgd.PERIOD_DECREMENT), [1, 1, 3])


def test_apgd_halves_its_step_on_a_flat_loss():
    """A constant loss never increases: at each checkpoint the step is halved, so with
    α = 1 and T = 100 the iterate ends near the start instead of at a corner."""
    config = attacks.AttackConfig(method="apgd", t_max=100, alpha=1.0)
    flat = lambda x: jnp.zeros((x.shape[0], 6, 8, 1)) + 1.0
    delta, value = apgd.apgd_delta(
        flat, config, jnp.asarray(X[:1]), jnp.asarray(Y[:1]), jnp.array([5.0]),
        jnp.array([100], jnp.int32), None, None,
    )  # fmt: skip
    assert np.all(np.asarray(delta) == 0)  # the best (first) iterate is kept
    np.testing.assert_allclose(np.asarray(value), l1(X[:1], flat), rtol=1e-6)


def test_restarts_stack_on_the_batch_and_keep_the_best_per_image():
    config = attacks.AttackConfig(method="apgd", t_max=4)
    key = jax.random.key(1)
    plain = attacks.attack(PREDICT, X, Y, eps=0.1, steps=4, config=config, key=key)
    one, score_one, chosen_one = attacks.attack_with_restarts(
        PREDICT, X, Y, eps=0.1, steps=4, config=config, key=key, restarts=1
    )
    np.testing.assert_array_equal(np.asarray(one), np.asarray(plain))
    assert np.all(np.asarray(chosen_one) == 0)
    three, score_three, chosen = attacks.attack_with_restarts(
        PREDICT, X, Y, eps=0.1, steps=4, config=config, key=key, restarts=3
    )
    assert np.all(np.asarray(score_three) >= np.asarray(score_one))
    assert set(np.asarray(chosen).tolist()) <= {0, 1, 2}
    np.testing.assert_allclose(np.asarray(score_three), l1(three), rtol=1e-5)
    np.testing.assert_array_less(radius(three, X, "linf", "normalised"), 0.1 + 1e-6)
    by_rmse, rmse, _ = attacks.attack_with_restarts(
        PREDICT, X, Y, eps=0.1, steps=4, config=config, key=key, restarts=3, criterion="rmse"
    )
    expected = np.asarray(image_metrics(PREDICT(by_rmse), jnp.asarray(Y))["rmse"])
    np.testing.assert_allclose(np.asarray(rmse), expected, rtol=1e-5)


def test_worst_case_is_at_least_every_member_per_image():
    other = Partial(rs.tiny_depth, jax.tree_util.tree_map(lambda w: 0.9 * w, rs.trained_params()))
    members = [
        attacks.Member("ifgsm", attacks.AttackConfig(method="ifgsm", t_max=4), steps=4),
        attacks.Member("apgd", attacks.AttackConfig(method="apgd", t_max=4), 4, restarts=2),
        attacks.Member("square", attacks.AttackConfig(method="square", t_max=20), steps=20),
        attacks.Member("ifgsm@other", attacks.AttackConfig(method="ifgsm", t_max=4), 4,
                       source="other"),
    ]  # fmt: skip
    result = attacks.worst_case(
        PREDICT, X, Y, members=members, eps=0.2, key=jax.random.key(0),
        sources={"other": other},
    )  # fmt: skip
    rmse = lambda x_adv: np.asarray(image_metrics(PREDICT(x_adv), jnp.asarray(Y))["rmse"])
    worst = rmse(result.x_adv)
    for index, x_member in enumerate(result.inputs):
        assert np.all(worst >= rmse(x_member) - 1e-6), members[index].name
        np.testing.assert_allclose(result.scores[index], rmse(x_member), rtol=1e-5)
    np.testing.assert_allclose(worst, result.scores.max(0), rtol=1e-5)
    np.testing.assert_array_equal(result.winner, result.scores.argmax(0))
    assert result.seconds.shape == (4,) and np.all(result.seconds > 0)


def test_bad_arguments_are_named():
    apgd_config = attacks.AttackConfig(method="apgd")
    key = jax.random.key(0)
    call = functools.partial(attacks.attack_with_restarts, PREDICT, X, Y, eps=0.1, steps=2)
    with pytest.raises(ValueError, match="restarts must be an integer"):
        call(config=apgd_config, key=key, restarts=0)
    with pytest.raises(ValueError, match="need a PRNG key"):
        call(config=apgd_config, restarts=2)
    with pytest.raises(ValueError, match="criterion='psnr' is unknown"):
        call(config=apgd_config, key=key, criterion="psnr")
    with pytest.raises(ValueError, match="untargeted attacks only"):
        call(config=attacks.AttackConfig(method="apgd", targeted=True), key=key, criterion="rmse")
    with pytest.raises(ValueError, match="square always starts at random"):
        attacks.AttackConfig(method="square", random_start=False)
    with pytest.raises(ValueError, match="momentum of apgd must be in"):
        attacks.AttackConfig(method="apgd", momentum=1.5)
    member = attacks.Member("a", apgd_config, 2)
    with pytest.raises(ValueError, match="names must be unique"):
        attacks.worst_case(PREDICT, X, Y, members=[member, member], eps=0.1, key=key)
    with pytest.raises(ValueError, match="source 'N' is not among"):
        attacks.worst_case(
            PREDICT, X, Y, members=[attacks.Member("b", apgd_config, 2, source="N")],
            eps=0.1, key=key,
        )  # fmt: skip
    l2_member = attacks.Member("c", attacks.AttackConfig(method="apgd", loss="l2"), 2)
    with pytest.raises(ValueError, match="one loss for all members"):
        attacks.worst_case(
            PREDICT, X, Y, members=[member, l2_member], eps=0.1, key=key,
            criterion="attack_loss",
        )  # fmt: skip
