"""Property-based tests of the attack engine: the ε-ball and ε = 0 invariants over shapes, ε, T,
methods, threat models and ε spaces; the sampler's ranges over keys and batch sizes."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import Partial

from mde_adv import attacks
from mde_adv.normalization import IMAGENET_STD, denormalize, normalize

T_MAX = 3


def pixelwise_depth(params, x):
    """A tiny non-linear per-pixel net followed by 2×2 subsampling: [B,H,W,3] → [B,H/2,W/2,1]."""
    hidden = jnp.tanh(jnp.einsum("bhwc,cd->bhwd", x, params["w"]))
    depth = jnp.einsum("bhwd,d->bhw", hidden, params["v"])[..., None]
    return 0.5 + jax.nn.softplus(depth[:, ::2, ::2])


PREDICT = Partial(
    pixelwise_depth,
    {
        "w": jax.random.normal(jax.random.key(0), (3, 5)),
        "v": jax.random.normal(jax.random.key(1), (5,)),
    },
)


@st.composite
def attack_cases(draw):
    batch = draw(st.integers(1, 3))
    height, width = draw(st.sampled_from([2, 4, 6])), draw(st.sampled_from([2, 4, 6]))
    eps = draw(
        st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 0.5)), min_size=batch, max_size=batch)
    )
    method = draw(st.sampled_from(attacks.METHODS))
    max_steps = 1 if method == "fgsm" else T_MAX
    steps = draw(st.lists(st.integers(1, max_steps), min_size=batch, max_size=batch))
    norm = draw(st.sampled_from(attacks.NORMS))
    space = draw(st.sampled_from(["normalised", "pixel"]))
    seed = draw(st.integers(0, 2**16))
    eps, steps = np.array(eps, np.float32), np.array(steps)
    return batch, (height, width), eps, steps, method, norm, space, seed


@settings(max_examples=12, deadline=None)
@given(attack_cases())
def test_ball_and_zero_eps_invariants(case):
    batch, (height, width), eps, steps, method, norm, space, seed = case
    rng = np.random.default_rng(seed)
    x = np.asarray(normalize(rng.uniform(0, 1, (batch, height, width, 3))), np.float32)
    y = rng.uniform(0.5, 4, (batch, height // 2, width // 2, 1)).astype(np.float32)
    cfg = attacks.AttackConfig(
        method=method, norm=norm, space=space, t_max=1 if method == "fgsm" else T_MAX
    )
    x_adv = np.asarray(
        attacks.attack(PREDICT, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(seed))
    )

    delta = x_adv.astype(np.float64) - x
    if space == "pixel":
        delta = delta * IMAGENET_STD
        pixels = np.asarray(denormalize(x_adv))
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6
    flat = delta.reshape(batch, -1)
    size = np.abs(flat).max(1) if norm == "linf" else np.linalg.norm(flat, axis=1)
    assert np.all(size <= eps * (1 + 1e-5) + 1e-6), (size, eps)
    zero = eps == 0
    np.testing.assert_array_equal(x_adv[zero], x[zero])


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    batch=st.sampled_from([1, 5]),  # few batch sizes: each one compiles the sampler
    first_index=st.integers(0, 1000),
    low=st.floats(0.0, 0.5),
    width=st.floats(0.0, 0.5),
    steps_low=st.integers(1, 5),
    steps_extra=st.integers(0, 5),
)
def test_sampler_respects_its_ranges(seed, batch, first_index, low, width, steps_low, steps_extra):
    keys = attacks.example_keys(jax.random.key(seed), batch, first_index)
    eps_range, steps_range = (low, low + width), (steps_low, steps_low + steps_extra)
    is_adv, eps, steps = attacks.sample_algorithm1(
        keys, eps_range=eps_range, steps_range=steps_range
    )
    assert is_adv.shape == eps.shape == steps.shape == (batch,)
    assert np.all(np.asarray(eps) >= np.float32(low))
    assert np.all(np.asarray(eps) <= np.float32(low + width))
    assert np.all((np.asarray(steps) >= steps_range[0]) & (np.asarray(steps) <= steps_range[1]))
    never, always = (attacks.sample_algorithm1(keys, p_adversarial=p)[0] for p in (0.0, 1.0))
    assert not np.any(never) and np.all(always)
