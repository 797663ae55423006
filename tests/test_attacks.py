"""The attack engine: constraints, equivalences, per-example ε/T, effect, validation, sampler."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.tree_util import Partial

from mde_adv import attacks, losses
from mde_adv.attacks import geometry
from mde_adv.normalization import IMAGENET_STD, denormalize, normalize

BATCH, HEIGHT, WIDTH = 3, 8, 10


def tiny_depth(params, x):
    """A small smooth depth net: conv 3×3 → tanh → conv 3×3 stride 2 → 0.5 + softplus."""
    conv = lambda z, w, stride: jax.lax.conv_general_dilated(
        z, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    hidden = jnp.tanh(conv(x, params["w1"], 1) + params["b1"])
    return 0.5 + jax.nn.softplus(conv(hidden, params["w2"], 2) + params["b2"])


def tiny_params(key, hidden: int = 6):
    k1, k2 = jax.random.split(key)
    return {
        "w1": 0.5 * jax.random.normal(k1, (3, 3, 3, hidden)),
        "b1": jnp.zeros(hidden),
        "w2": 0.5 * jax.random.normal(k2, (3, 3, hidden, 1)),
        "b2": jnp.ones(1),
    }


PARAMS = tiny_params(jax.random.key(0))
PREDICT = Partial(tiny_depth, PARAMS)


def images(seed: int, batch: int = BATCH, height: int = HEIGHT, width: int = WIDTH):
    """Normalised images of valid pixels, some exactly 0 or 1 (so the pixel clip matters)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.uniform(-0.2, 1.2, (batch, height, width, 3)), 0, 1)
    return np.asarray(normalize(pixels), np.float32)


def depths(seed: int, batch: int = BATCH, height: int = HEIGHT // 2, width: int = WIDTH // 2):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 4.0, (batch, height, width, 1)).astype(np.float32)


def perturbation(x_adv, x, space: str) -> np.ndarray:
    """x_adv − x measured in `space` units."""
    delta = np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)
    return delta * IMAGENET_STD if space == "pixel" else delta


def radius(delta: np.ndarray, norm: str) -> np.ndarray:
    flat = delta.reshape(delta.shape[0], -1)
    return np.abs(flat).max(1) if norm == "linf" else np.linalg.norm(flat, axis=1)


def config(**kwargs) -> attacks.AttackConfig:
    if kwargs.get("method", "ifgsm") != "fgsm":
        kwargs.setdefault("t_max", 4)
    return attacks.AttackConfig(**kwargs)


ALL_SETTINGS = list(itertools.product(attacks.METHODS, attacks.NORMS, ("normalised", "pixel")))


@pytest.mark.parametrize("method, norm, space", ALL_SETTINGS)
def test_perturbation_stays_in_the_ball_per_example(method, norm, space):
    x, y = images(0), depths(1)
    x_before = x.copy()
    eps = np.array([0.0, 0.05, 0.3], np.float32)
    steps = np.ones(3, np.int32) if method == "fgsm" else np.array([1, 2, 4], np.int32)
    cfg = config(method=method, norm=norm, space=space)
    x_adv = attacks.attack(PREDICT, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(2))

    assert x_adv.shape == x.shape and x_adv.dtype == jnp.float32
    np.testing.assert_array_equal(x, x_before)  # the input is unchanged
    np.testing.assert_array_equal(x_adv[0], x[0])  # ε = 0 returns x exactly
    size = radius(perturbation(x_adv, x, space), norm)
    assert np.all(size <= eps * (1 + 1e-5) + 1e-6), (size, eps)
    assert np.all(size[1:] > 0.2 * eps[1:]), size  # the attack did move
    if space == "pixel":
        pixels = np.asarray(denormalize(x_adv))
        assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6


def test_alpha_one_lands_every_pixel_on_the_linf_boundary():
    x, y = images(3), depths(4)
    eps = np.array([0.02, 0.1, 0.25], np.float32)
    x_adv = attacks.attack(PREDICT, x, y, eps=eps, steps=3, config=config(alpha=1.0))
    magnitude = np.abs(np.asarray(x_adv) - x)
    np.testing.assert_allclose(magnitude, np.broadcast_to(eps[:, None, None, None], x.shape), 1e-5)


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_ifgsm_with_one_step_equals_fgsm(norm):
    x, y = images(5), depths(6)
    eps = np.array([0.05, 0.1, 0.3], np.float32)
    fgsm = attacks.attack(PREDICT, x, y, eps=eps, steps=1, config=config(method="fgsm", norm=norm))
    ifgsm = attacks.attack(PREDICT, x, y, eps=eps, steps=1, config=config(norm=norm))
    np.testing.assert_allclose(fgsm, ifgsm, atol=1e-6)
    assert np.abs(np.asarray(fgsm) - x).max() > 0.04


@pytest.mark.parametrize("method", ["ifgsm", "pgd"])
def test_batch_result_equals_per_example_results(method):
    x, y = images(7), depths(8)
    eps = np.array([0.05, 0.1, 0.2], np.float32)
    steps = np.array([2, 4, 3], np.int32)
    keys = attacks.example_keys(jax.random.key(9), BATCH)
    cfg = config(method=method)
    run = jax.jit(
        lambda x, y, eps, steps, keys: attacks.attack_traced(
            PREDICT, x, y, eps=eps, steps=steps, keys=keys, config=cfg
        )
    )
    batched = run(x, y, eps, steps, keys)
    for i in range(BATCH):
        one = run(x[i : i + 1], y[i : i + 1], eps[i : i + 1], steps[i : i + 1], keys[i : i + 1])
        np.testing.assert_allclose(batched[i], one[0], atol=1e-6)


def test_public_attack_batch_equals_single_and_scalar_eps_equals_vector():
    x, y = images(10), depths(11)
    batched = attacks.attack(PREDICT, x, y, eps=0.1, steps=3, config=config())
    vector = attacks.attack(
        PREDICT, x, y, eps=np.full(3, 0.1), steps=np.full(3, 3), config=config()
    )
    np.testing.assert_array_equal(batched, vector)
    one = attacks.attack(PREDICT, x[1:2], y[1:2], eps=0.1, steps=3, config=config())
    np.testing.assert_allclose(batched[1], one[0], atol=1e-6)


def test_example_takes_exactly_its_own_number_of_steps():
    x, y = images(12), depths(13)
    cfg = dict(alpha=0.03)
    eps = np.array([0.2, 0.2, 0.2], np.float32)
    inside_ten = attacks.attack(
        PREDICT, x, y, eps=eps, steps=np.array([3, 10, 1]), config=config(t_max=10, **cfg)
    )
    alone = attacks.attack(PREDICT, x, y, eps=eps, steps=3, config=config(t_max=3, **cfg))
    np.testing.assert_allclose(inside_ten[0], alone[0], atol=1e-6)
    two = attacks.attack(PREDICT, x, y, eps=eps, steps=2, config=config(t_max=3, **cfg))
    assert np.abs(np.asarray(two[0]) - np.asarray(alone[0])).max() > 0.01


def test_l2_step_follows_the_finite_difference_gradient():
    # One ℓ2 step inside a large ball is x + α·∇ℓ/‖∇ℓ‖: compare with central differences.
    x, y = images(14, batch=1), depths(15, batch=1) + 5.0  # far target: ℓ1 is smooth here
    alpha = 0.05
    cfg = config(norm="l2", alpha=alpha, loss="l1")
    x_adv = attacks.attack(PREDICT, x, y, eps=10.0, steps=1, config=cfg)
    direction = (np.asarray(x_adv, np.float64) - x).ravel()
    np.testing.assert_allclose(np.linalg.norm(direction), alpha, rtol=1e-5)

    loss = lambda flat: losses.l1_loss(tiny_depth(PARAMS, flat.reshape(x.shape)), y)[0]
    basis = jnp.eye(x.size, dtype=jnp.float32)
    step = 1e-2
    finite = jax.vmap(lambda e: loss(x.ravel() + step * e) - loss(x.ravel() - step * e))(basis)
    finite = np.asarray(finite, np.float64) / (2 * step)
    cosine = direction @ finite / (np.linalg.norm(direction) * np.linalg.norm(finite))
    assert cosine > 0.999, cosine


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_l2_and_linf_geometry_match_numpy(norm):
    rng = np.random.default_rng(16)
    for scale in (1.0, 1e-30, 0.0):
        g = (scale * rng.normal(size=(4, 5, 3))).astype(np.float32)
        unit = np.asarray(geometry.step_direction(jnp.asarray(g), norm))
        if norm == "linf":
            expected = np.sign(g)
        else:
            g64 = g.astype(np.float64) / (np.abs(g).max() or 1.0)
            length = np.linalg.norm(g64)
            expected = g64 / length if length > 0 else np.zeros_like(g64)
        np.testing.assert_allclose(unit, expected, rtol=1e-5, atol=1e-7)
    for eps in (0.0, 0.3, 100.0):
        delta = rng.normal(size=(4, 5, 3)).astype(np.float32)
        projected = np.asarray(geometry.project(jnp.asarray(delta), eps, norm))
        if norm == "linf":
            expected = np.clip(delta, -eps, eps)
        else:
            length = np.linalg.norm(delta.astype(np.float64))
            expected = delta * min(1.0, eps / length)
        np.testing.assert_allclose(projected, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("norm", attacks.NORMS)
def test_random_start_is_uniform_in_the_ball(norm):
    # In 2-D the fraction of a uniform ball inside half the radius is 1/4 (ℓ2 disc and ℓ∞
    # square alike); directions have mean zero; ε = 0 gives zero.
    keys = jax.random.split(jax.random.key(17), 4000)
    eps = 0.3
    samples = np.asarray(jax.vmap(lambda k: geometry.random_start(k, (2,), eps, norm))(keys))
    size = radius(samples, norm)
    assert size.max() <= eps * (1 + 1e-6)
    assert abs(np.mean(size < eps / 2) - 0.25) < 0.03
    assert np.all(np.abs(samples.mean(0)) < 0.02)
    zero = geometry.random_start(keys[0], (4, 5, 3), jnp.float32(0.0), norm)
    np.testing.assert_array_equal(zero, 0.0)


def test_pgd_random_start_differs_per_key_and_stays_in_the_ball():
    x, y = images(18), depths(19)
    eps = np.array([0.1, 0.2, 0.3], np.float32)
    cfg = config(method="pgd", t_max=1)
    runs = [
        attacks.attack(PREDICT, x, y, eps=eps, steps=1, config=cfg, key=jax.random.key(seed))
        for seed in (0, 1, 0)
    ]
    np.testing.assert_array_equal(runs[0], runs[2])
    assert np.abs(np.asarray(runs[0]) - np.asarray(runs[1])).max() > 0.05
    for run in runs:
        assert np.all(radius(np.asarray(run) - x, "linf") <= eps * (1 + 1e-6))
    deterministic = attacks.attack(PREDICT, x, y, eps=eps, steps=1, config=config(t_max=1))
    assert np.abs(np.asarray(runs[0]) - np.asarray(deterministic)).max() > 0.05


@pytest.mark.parametrize("norm, space", [("linf", "normalised"), ("l2", "pixel")])
def test_region_mask_leaves_outside_pixels_untouched(norm, space):
    x, y = images(20), depths(21)
    region = np.zeros((BATCH, HEIGHT, WIDTH, 1), np.float32)
    region[:, 2:6, 3:8] = 1.0
    region[2] = 0.0
    eps = np.array([0.2, 0.5, 0.2], np.float32)
    cfg = config(norm=norm, space=space, alpha=0.1)
    x_adv = attacks.attack(PREDICT, x, y, eps=eps, steps=4, config=cfg, region_mask=region)
    outside = np.broadcast_to(region == 0, x.shape)
    np.testing.assert_array_equal(np.asarray(x_adv)[outside], x[outside])
    assert np.abs(np.asarray(x_adv) - x)[~outside].max() > 0.01
    assert np.all(radius(perturbation(x_adv, x, space), norm) <= eps * (1 + 1e-5) + 1e-6)


def test_momentum_zero_equals_ifgsm_and_momentum_matters():
    x, y = images(22), depths(23)
    eps, steps = np.float32(0.3), 4
    ifgsm = attacks.attack(PREDICT, x, y, eps=eps, steps=steps, config=config(alpha=0.05))
    mi = lambda mu: attacks.attack(
        PREDICT, x, y, eps=eps, steps=steps, config=config(method="mifgsm", alpha=0.05, momentum=mu)
    )
    np.testing.assert_allclose(mi(0.0), ifgsm, atol=1e-6)
    assert np.abs(np.asarray(mi(1.0)) - np.asarray(ifgsm)).max() > 0.01


def test_step_size_defaults():
    eps, steps = jnp.float32(0.2), jnp.float32(4.0)
    expected = {"fgsm": 0.2, "ifgsm": 1.0, "pgd": 2.5 * 0.2 / 4, "mifgsm": 0.2 / 4}
    for method, value in expected.items():
        cfg = attacks.AttackConfig(method=method)
        np.testing.assert_allclose(attacks.step_size(cfg, eps, steps), value, rtol=1e-6)
    np.testing.assert_allclose(
        attacks.step_size(attacks.AttackConfig(method="pgd", alpha=0.7), eps, steps), 0.7
    )


def test_no_recompilation_when_eps_or_steps_change():
    traces = []

    def counted(params, x):
        traces.append(x.shape)
        return tiny_depth(params, x)

    predict = Partial(counted, PARAMS)
    x, y = images(24), depths(25)
    cfg = config(method="pgd")
    attacks.attack(predict, x, y, eps=0.1, steps=2, config=cfg, key=jax.random.key(0))
    first = len(traces)
    assert first > 0
    for eps, steps in [(0.3, 4), (np.array([0.0, 0.1, 0.2]), np.array([1, 4, 2]))]:
        attacks.attack(predict, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(1))
    new_params = Partial(counted, tiny_params(jax.random.key(5)))
    attacks.attack(new_params, x, y, eps=0.2, steps=3, config=cfg, key=jax.random.key(2))
    assert len(traces) == first


def test_eps_sweep_equals_separate_attacks_in_one_compilation():
    traces = []

    def counted(params, x):
        traces.append(x.shape)
        return tiny_depth(params, x)

    predict = Partial(counted, PARAMS)
    x, y = images(26), depths(27)
    values = np.array([0.05, 0.1, 0.15, 0.2], np.float32)
    cfg = config(method="pgd")
    key = jax.random.key(3)
    swept = attacks.eps_sweep(predict, x, y, eps_values=values, steps=3, config=cfg, key=key)
    assert swept.shape == (4, *x.shape)
    first = len(traces)
    attacks.eps_sweep(predict, x, y, eps_values=values[::-1], steps=2, config=cfg, key=key)
    assert len(traces) == first
    for e, eps in enumerate(values):
        single = attacks.attack(PREDICT, x, y, eps=eps, steps=3, config=cfg, key=key)
        np.testing.assert_allclose(swept[e], single, atol=1e-6)


def synthetic_scenes(key, batch: int, height: int = 16, width: int = 20):
    """Images whose brightness encodes depth (a learnable cue) and their depth maps (metres)."""
    plane_key, noise_key = jax.random.split(key)
    rows = jnp.linspace(-1, 1, height)[None, :, None, None]
    cols = jnp.linspace(-1, 1, width)[None, None, :, None]
    slopes = jax.random.uniform(plane_key, (2, batch, 1, 1, 1), minval=-1, maxval=1)
    depth = 2.5 + slopes[0] * rows + slopes[1] * cols
    brightness = 1.0 - depth / 5.0
    pixels = jnp.concatenate([brightness, 0.8 * brightness + 0.1, 0.6 * brightness + 0.2], -1)
    pixels = pixels + 0.02 * jax.random.normal(noise_key, pixels.shape)
    return normalize(jnp.clip(pixels, 0, 1)), depth[:, ::2, ::2]


@pytest.fixture(scope="module")
def trained_tiny_net():
    """tiny_depth trained with Adam on synthetic scenes (a tiny conv net, not DepthNet, to fit
    the default test budget; see test_attack_breaks_a_trained_depth_net for DepthNet)."""
    tx = optax.adam(1e-2)

    @jax.jit
    def train_step(params, opt_state, key):
        x, depth = synthetic_scenes(key, 16)
        loss, grads = jax.value_and_grad(
            lambda p: jnp.mean(losses.l1_loss(tiny_depth(p, x), depth))
        )(params)
        updates, opt_state = tx.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, loss

    params = tiny_params(jax.random.key(30), hidden=8)
    opt_state = tx.init(params)
    for step in range(300):
        params, opt_state, _ = train_step(params, opt_state, jax.random.key(step))
    return Partial(tiny_depth, params)


def assert_attack_breaks(predict, x, depth, *, clean_error_limit: float, eps: float):
    """IFGSM (the paper's: α = 1, ℓ1, 10 steps) triples every example's error and beats random
    sign noise of the same ε; a targeted attack moves the prediction to its target."""
    clean = losses.l1_loss(predict(x), depth)
    assert float(clean.mean()) < clean_error_limit, clean  # the model did learn
    x_adv = attacks.attack(predict, x, depth, eps=eps, steps=10, config=attacks.AttackConfig())
    attacked = losses.l1_loss(predict(x_adv), depth)
    noise = eps * jnp.sign(jax.random.normal(jax.random.key(31), x.shape))
    noisy = losses.l1_loss(predict(x + noise), depth)
    assert np.all(np.asarray(attacked) > 3 * np.asarray(clean)), (clean, attacked)
    assert float(attacked.mean()) > 2 * float(noisy.mean()), (noisy, attacked)

    # Targeted: pull the prediction towards 0.7 × the clean depth (everything closer).
    closer = 0.7 * predict(x)
    targeted = attacks.AttackConfig(
        targeted=True, target="clean_prediction", target_scale=0.7, alpha=0.05, loss="l2"
    )
    x_target = attacks.attack(predict, x, eps=0.3, steps=10, config=targeted)
    before = losses.l2_loss(predict(x), closer)
    after = losses.l2_loss(predict(x_target), closer)
    assert np.all(np.asarray(after) < 0.2 * np.asarray(before)), (before, after)


def test_attack_breaks_a_trained_tiny_net(trained_tiny_net):
    x, depth = synthetic_scenes(jax.random.key(10**6), 4)
    assert_attack_breaks(trained_tiny_net, x, depth, clean_error_limit=0.15, eps=0.1)


@pytest.mark.slow
def test_attack_breaks_a_trained_depth_net():
    from mde_adv import models

    net = models.DepthNet(encoder="resnet18", width=0.125)
    variables = models.init_variables(net, jax.random.key(0), (32, 40))
    tx = optax.adam(1e-3)

    @jax.jit
    def train_step(variables, opt_state, key):
        x, depth = synthetic_scenes(key, 8, 32, 40)

        def loss_fn(params):
            pred, updates = net.apply(
                {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(losses.l1_loss(pred, depth)), updates

        grads, updates = jax.grad(loss_fn, has_aux=True)(variables["params"])
        step, opt_state = tx.update(grads, opt_state)
        params = optax.apply_updates(variables["params"], step)
        return {"params": params, **updates}, opt_state

    opt_state = tx.init(variables["params"])
    for step in range(300):
        variables, opt_state = train_step(variables, opt_state, jax.random.key(step))
    predict = Partial(lambda v, x: net.apply(v, x, train=False), variables)
    x, depth = synthetic_scenes(jax.random.key(10**6), 4, 32, 40)
    assert_attack_breaks(predict, x, depth, clean_error_limit=0.3, eps=0.2)


def test_sampler_statistics_and_determinism():
    keys = attacks.example_keys(jax.random.key(40), 4000)
    is_adv, eps, steps = attacks.sample_algorithm1(keys)
    assert is_adv.dtype == jnp.bool_ and eps.dtype == jnp.float32 and steps.dtype == jnp.int32
    assert abs(float(is_adv.mean()) - 0.5) < 0.03
    assert float(eps.min()) >= 0.01 and float(eps.max()) <= 0.3
    assert abs(float(eps.mean()) - 0.155) < 0.01
    counts = np.bincount(np.asarray(steps), minlength=12)
    assert counts[0] == 0 and counts[11] == 0 and np.all(counts[1:11] > 300), counts
    again = attacks.sample_algorithm1(keys)
    for a, b in zip((is_adv, eps, steps), again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = attacks.sample_algorithm1(attacks.example_keys(jax.random.key(41), 4000))
    assert np.mean(np.asarray(other[1]) != np.asarray(eps)) > 0.99


def test_example_keys_depend_only_on_the_global_index():
    key = jax.random.key(42)
    five = attacks.example_keys(key, 5)
    np.testing.assert_array_equal(
        jax.random.key_data(five[:3]), jax.random.key_data(attacks.example_keys(key, 3))
    )
    np.testing.assert_array_equal(
        jax.random.key_data(five[2:]),
        jax.random.key_data(attacks.example_keys(key, 3, first_index=2)),
    )
    raw = attacks.sample_algorithm1(jax.random.split(jax.random.PRNGKey(0), 3))
    assert raw[0].shape == raw[1].shape == raw[2].shape == (3,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(p_adversarial=1.5), "p_adversarial"),
        (dict(eps_range=(0.3, 0.1)), "eps_range"),
        (dict(steps_range=(0, 10)), "steps_range"),
        (dict(steps_range=(1.5, 10)), "steps_range"),
    ],
)
def test_sampler_rejects_bad_ranges(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attacks.sample_algorithm1(attacks.example_keys(jax.random.key(0), 2), **kwargs)


def test_inscribed_eps_is_the_tight_inner_radius():
    for from_space, to_space in [("pixel", "normalised"), ("normalised", "pixel")]:
        inner = float(attacks.inscribed_eps(0.1, from_space=from_space, to_space=to_space))
        corner = np.full(3, inner)  # the worst case of both ℓ∞ and (per channel) ℓ2
        back = corner * IMAGENET_STD if to_space == "normalised" else corner / IMAGENET_STD
        assert back.max() <= 0.1 * (1 + 1e-6) and back.max() >= 0.1 * (1 - 1e-6)
    assert float(attacks.inscribed_eps(0.1, from_space="pixel", to_space="pixel")) == np.float32(
        0.1
    )
    np.testing.assert_allclose(attacks.normalised_eps_to_pixel(0.5), 0.5 * IMAGENET_STD)
    with pytest.raises(ValueError, match="to_space"):
        attacks.inscribed_eps(0.1, from_space="pixel", to_space="rgb")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="cw"), "method"),
        (dict(norm="l1"), "norm"),
        (dict(loss="huber"), "loss"),
        (dict(space="lab"), "space"),
        (dict(target="depth"), "target"),
        (dict(t_max=0), "t_max"),
        (dict(t_max=2.5), "t_max"),
        (dict(method="fgsm", t_max=3), "fgsm"),
        (dict(alpha=0.0), "alpha"),
        (dict(momentum=-1.0), "momentum"),
    ],
)
def test_bad_config_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        attacks.AttackConfig(**kwargs)


def _bad_calls():
    x, y = images(50), depths(51)
    nan_x = x.copy()
    nan_x[0, 0, 0, 0] = np.nan
    region = np.ones((BATCH, HEIGHT, WIDTH, 1), np.float32)
    ok = dict(eps=0.1, steps=2, config=config())
    return [
        ("eps", dict(ok, eps=-0.1)),
        ("eps", dict(ok, eps=np.array([0.1, np.nan, 0.1]))),
        ("eps", dict(ok, eps=np.inf)),
        ("eps", dict(ok, eps=np.array([0.1, 0.2]))),
        ("steps", dict(ok, steps=0)),
        ("steps", dict(ok, steps=5)),
        ("steps", dict(ok, steps=2.0)),
        ("steps", dict(ok, steps=np.array([1, 2]))),
        ("steps", dict(ok, steps=2, config=config(method="fgsm"))),
        ("NaN or Inf", dict(ok, x=nan_x)),
        ("x must be", dict(ok, x=x[..., :2])),
        ("float32", dict(ok, x=x.astype(np.float64))),
        ("y must be a depth batch", dict(ok, y=y[:2])),
        ("y must be a depth batch", dict(ok, y=y[..., 0])),
        ("y .* required", dict(ok, y=None)),
        ("y must be None", dict(ok, config=config(target="clean_prediction"))),
        ("key is required", dict(ok, config=config(method="pgd"))),
        ("one PRNG key", dict(ok, key=attacks.example_keys(jax.random.key(0), 3))),
        ("region_mask must have shape", dict(ok, region_mask=region[..., 0])),
        ("region_mask values", dict(ok, region_mask=2 * region)),
        ("config must be", dict(ok, config="ifgsm")),
    ], (x, y)


BAD_CALLS, XY = _bad_calls()


@pytest.mark.parametrize("match, kwargs", BAD_CALLS, ids=[str(i) for i in range(len(BAD_CALLS))])
def test_bad_arguments_raise_before_any_computation(match, kwargs):
    calls = []
    predict = Partial(lambda params, x: calls.append(1) or tiny_depth(params, x), PARAMS)
    kwargs = dict(kwargs)
    x, y = kwargs.pop("x", XY[0]), kwargs.pop("y", XY[1])
    with pytest.raises(ValueError, match=match):
        attacks.attack(predict, x, y, **kwargs)
    assert calls == []


@pytest.mark.parametrize(
    "eps_values, match", [([], "non-empty"), ([[0.1]], "1-D"), ([0.1, -0.2], "eps")]
)
def test_bad_eps_sweep_values(eps_values, match):
    with pytest.raises(ValueError, match=match):
        attacks.eps_sweep(PREDICT, *XY, eps_values=eps_values, steps=1, config=config())


def test_describe_names_the_eps_space():
    line = attacks.AttackConfig(space="pixel", norm="l2").describe()
    assert "eps_space=pixel" in line and "l2" in line and "alpha=default" in line


@pytest.mark.parametrize("method", ["ifgsm", "pgd", "mifgsm"])
def test_zero_steps_leave_the_example_unchanged(method):
    x, y = images(30), depths(31)
    keys = attacks.example_keys(jax.random.key(4), BATCH)
    x_adv = attacks.attack_traced(
        PREDICT, x, y, eps=0.2, steps=np.array([0, 3, 0]), keys=keys, config=config(method=method)
    )
    np.testing.assert_array_equal(x_adv[0], x[0])
    np.testing.assert_array_equal(x_adv[2], x[2])
    assert np.abs(np.asarray(x_adv[1]) - x[1]).max() > 0.1


def test_noise_is_a_random_corner_of_the_ball_whatever_the_network():
    """The baseline attack: every entry ±ε (normalised ℓ∞), independent of the attacked
    function, fresh per key, and ε = 0 leaves the example unchanged."""
    x, y = images(5), depths(6)
    eps = np.array([0.05, 0.1, 0.0], np.float32)
    steps = np.ones(3, np.int32)
    cfg = config(method="noise")
    first = attacks.attack(PREDICT, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(0))
    other_net = Partial(lambda z: -z[:, ::2, ::2, :1])
    same = attacks.attack(other_net, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(0))
    fresh = attacks.attack(PREDICT, x, y, eps=eps, steps=steps, config=cfg, key=jax.random.key(1))
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first[:2], fresh[:2])
    magnitude = np.abs(np.asarray(first) - x)
    np.testing.assert_allclose(
        magnitude[:2], np.broadcast_to(eps[:2, None, None, None], x[:2].shape), 1e-5
    )
    np.testing.assert_array_equal(first[2], x[2])
    with pytest.raises(ValueError, match="random"):
        attacks.AttackConfig(method="noise", random_start=False)


NESTED = [
    ("ifgsm", None, "linf", "normalised"),
    ("ifgsm", None, "l2", "pixel"),
    ("mifgsm", 0.05, "linf", "pixel"),
    ("pgd", 0.05, "l2", "normalised"),
]


@pytest.mark.parametrize("method, alpha, norm, space", NESTED)
def test_iterates_equal_the_attack_at_each_budget(method, alpha, norm, space):
    """attack_iterates' row r is the attack with T = record_steps[r] (nested budgets), in the
    order asked for, with a region mask and per-example ε."""
    x, y = images(4), depths(5)
    eps = np.array([0.02, 0.1, 0.3], np.float32)
    region = np.zeros((BATCH, HEIGHT, WIDTH, 1), np.float32)
    region[:, :, : WIDTH // 2] = 1.0
    random_start = method == "pgd"
    cfg = config(method=method, alpha=alpha, norm=norm, space=space, random_start=random_start)
    key = jax.random.key(3)
    record = [3, 1, 4]
    iterates = attacks.attack_iterates(
        PREDICT, x, y, eps=eps, record_steps=record, config=cfg, key=key, region_mask=region
    )
    assert iterates.shape == (3, *x.shape)
    for row, steps in zip(iterates, record, strict=True):
        alone = attacks.attack(
            PREDICT, x, y, eps=eps, steps=steps, config=cfg, key=key, region_mask=region
        )
        np.testing.assert_allclose(row, alone, atol=1e-5, err_msg=f"T={steps}")


def test_iterates_refuse_budget_dependent_steps():
    x, y = images(4), depths(5)
    for cfg in (config(method="pgd"), config(method="mifgsm"), config(method="apgd")):
        assert not cfg.nested_budgets
        with pytest.raises(ValueError, match="depends on the budget"):
            attacks.attack_iterates(PREDICT, x, y, eps=0.1, record_steps=[1, 2], config=cfg)
    with pytest.raises(ValueError, match="record_steps"):
        attacks.attack_iterates(PREDICT, x, y, eps=0.1, record_steps=[2, 2], config=config())
    with pytest.raises(ValueError, match="T"):  # beyond t_max = 4
        attacks.attack_iterates(PREDICT, x, y, eps=0.1, record_steps=[5], config=config())


@pytest.mark.parametrize(
    "method, norm, space",
    [
        ("fgsm", "linf", "normalised"),
        ("fgsm", "l2", "pixel"),
        ("ifgsm", "linf", "pixel"),
        ("mifgsm", "l2", "normalised"),
    ],
)
def test_one_step_sweep_equals_the_one_step_attack_at_each_radius(method, norm, space):
    x, y = images(6), depths(7)
    region = np.ones((BATCH, HEIGHT, WIDTH, 1), np.float32)
    region[:, : HEIGHT // 2] = 0.0
    cfg = config(method=method, norm=norm, space=space, alpha=None)
    radii = [0.0, 0.02, 0.1, 0.3]
    swept = attacks.one_step_sweep(PREDICT, x, y, eps_values=radii, config=cfg, region_mask=region)
    assert swept.shape == (len(radii), *x.shape)
    for row, eps in zip(swept, radii, strict=True):
        alone = attacks.attack(PREDICT, x, y, eps=eps, steps=1, config=cfg, region_mask=region)
        np.testing.assert_allclose(row, alone, atol=1e-6, err_msg=f"ε={eps}")
    with pytest.raises(ValueError, match="random_start"):
        attacks.one_step_sweep(PREDICT, x, y, eps_values=radii, config=config(method="pgd"))
