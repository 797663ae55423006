"""Per-batch computations of the evaluation: adversarial inputs, per-image metrics of every
method, region masks, energy shares, targeted-attack ratios and the arrays of Figs. 6 and 7.

Images are f32[B,H,W,3] normalised, depth f32[B,h,w,1] in metres; `fns` maps network names
to inference functions (`methods.network_functions`). With a group's `config.align` set (a
relative N) every method's output is scored, and shown in the figures, after the per-image
scale-and-shift alignment to the ground truth (`alignment.metric_depth`).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from mde_adv import attacks
from mde_adv.alignment import metric_depth
from mde_adv.attacks.problem import loss_function
from mde_adv.evaluation.methods import ATTACK_TARGETS, Method, NetworkFns, attacked_function
from mde_adv.evaluation.plan import AttackGroup
from mde_adv.metrics import image_metrics
from mde_adv.normalization import IMAGENET_STD, denormalize

ENERGY_LABEL = "energy in non-salient pixels"
GroupValues = dict[tuple[str, str], dict[str, np.ndarray]]
# Results of one batch shared by the groups that ask for the same thing: adversarial inputs
# by `attack_key`, method scores by (attack_key, method).
BatchCache = dict[tuple, object]
CLEAN = ("clean",)  # the attack_key of ε = 0: x itself


@jax.jit
def _call(fn: Partial, x: jax.Array) -> jax.Array:
    """fn(x) for a network `Partial`: one compiled program per network form."""
    return fn(x)


def region_masks(saliency: jax.Array, salient_fraction: float) -> tuple[jax.Array, jax.Array]:
    """(salient, non_salient), each f32[B,H,W,1] of 0/1, from saliency f32[B,H,W,1]: the
    round(salient_fraction·H·W) most salient pixels of each image, and the others (ties broken
    by position, so the areas are exact)."""
    chex.assert_rank(saliency, 4)
    flat = saliency.reshape(saliency.shape[0], -1)
    order = jnp.argsort(-flat, axis=1, stable=True)
    ranks = jnp.argsort(order, axis=1, stable=True)
    salient = (ranks < round(salient_fraction * flat.shape[1])).astype(jnp.float32)
    salient = salient.reshape(saliency.shape)
    return salient, 1.0 - salient


def group_region_mask(
    group: AttackGroup, fns: NetworkFns, x: jax.Array, cache: BatchCache | None = None
) -> jax.Array | None:
    """The region mask f32[B,H,W,1] of the group's attack (None: no region), from the saliency
    map of the clean x (`saliency_mask`, shared through cache)."""
    if group.region in (None, "all"):  # 'all': no restriction, the unrestricted attack
        return None
    saliency = saliency_mask(fns, group.region_net, x, CLEAN, cache)
    salient, non_salient = region_masks(saliency, group.salient_fraction)
    return salient if group.region == "salient" else non_salient


def attack_family(group: AttackGroup) -> tuple | None:
    """What the group's attack has in common with other groups' attacks apart from ε and T,
    hashable (None when it shares nothing: a random start's keys and a region's mask are the
    group's own)."""
    if group.config.random_start or group.region not in (None, "all"):
        return None
    return (group.target, group.config)


def attack_key(group: AttackGroup, eps: float) -> tuple | None:
    """What determines the group's adversarial input at radius eps on a given batch, hashable:
    groups with equal keys share one attack (`CLEAN` for ε = 0; None when never shared, see
    `attack_family`)."""
    if eps == 0:
        return CLEAN
    family = attack_family(group)
    return None if family is None else (*family, group.steps, float(eps))


# The cache entry holding `attack_requests` of the batch's groups.
REQUESTS = ("requests",)


def attack_requests(groups) -> dict[tuple, dict[float, frozenset[int]]]:
    """{attack family: {ε: the budgets T asked for}} over `groups` (ε > 0), so that the first
    group needing an attack of a family computes what the others will ask for at once: all
    radii of one-step attacks from one gradient (`attacks.one_step_sweep`: Table 1, Fig. 4
    and the defence-aware FGSM), all budgets at one radius from one loop
    (`attacks.attack_iterates`: Fig. 5's T = 1..10, Table 3's T = 5 and Table 2's T = 10)."""
    requests: dict[tuple, dict[float, set[int]]] = {}
    for group in groups:
        family = attack_family(group)
        for eps in group.eps if family is not None else ():
            if eps > 0:
                requests.setdefault(family, {}).setdefault(float(eps), set()).add(group.steps)
    return {f: {e: frozenset(t) for e, t in by_eps.items()} for f, by_eps in requests.items()}


def _cached(cache: BatchCache | None, name: tuple | None, compute):
    """compute(), or what it gave under `name` on this batch before (None: never shared)."""
    if cache is None or name is None:
        return compute()
    if name not in cache:
        cache[name] = compute()
    return cache[name]


def _attack_with_family(group, attacked, x, reference, eps, cache, attack) -> jax.Array:
    """The group's attack at eps; when the batch's requests ask its family for several radii
    of a one-step attack or several budgets at this radius, all of them at once (cached)."""
    family = attack_family(group)
    wanted = cache.get(REQUESTS, {}).get(family, {})
    name = attack_key(group, eps)
    if name in cache:
        return cache[name]
    if len(wanted) > 1 and all(steps == {1} for steps in wanted.values()):
        radii = sorted(wanted)
        swept = attacks.one_step_sweep(
            attacked, x, reference, eps_values=radii, config=group.config
        )
        cache.update({(*family, 1, e): x_adv for e, x_adv in zip(radii, swept, strict=True)})
    elif group.config.nested_budgets and len(wanted.get(float(eps), ())) > 1:
        budgets = sorted(wanted[float(eps)])
        iterates = attacks.attack_iterates(
            attacked, x, reference, eps=float(eps), record_steps=budgets, config=group.config
        )
        cache.update(
            {(*family, t, float(eps)): x_adv for t, x_adv in zip(budgets, iterates, strict=True)}
        )
    return _cached(cache, name, attack)


def adversarial_inputs(
    group: AttackGroup,
    fns: NetworkFns,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    region_mask: jax.Array | None = None,
    cache: BatchCache | None = None,
) -> jax.Array:
    """f32[S,B,H,W,3]: for each ε of the group, Adv(x; target) (ε = 0 gives x itself). One
    `attacks.attack` call per radius: ε is traced, so every radius and every group with the
    same attack and attacked network share one compiled program. y: ground-truth depth (unused
    by attacks whose reference is the clean prediction). key: PRNG key (random starts only).
    cache: this batch's results; an attack another group already ran is taken from it, and
    with the batch's `attack_requests` (cache[REQUESTS]) a family's attacks are computed
    together (`_attack_with_family`)."""
    attacked = attacked_function(ATTACK_TARGETS[group.target], fns)
    reference = None if group.config.target == "clean_prediction" else y
    start_key = key if group.config.random_start else None

    def attack(eps):
        return lambda: attacks.attack(
            attacked,
            x,
            reference,
            eps=float(eps),
            steps=group.steps,
            config=group.config,
            key=start_key,
            region_mask=region_mask,
        )

    inputs = []
    for eps in group.eps:
        name = attack_key(group, eps)
        if name == CLEAN:
            inputs.append(x)
        elif name is None or cache is None:
            inputs.append(attack(eps)())
        else:
            inputs.append(
                _attack_with_family(group, attacked, x, reference, eps, cache, attack(eps))
            )
    return jnp.stack(inputs)


@jax.jit
def _masked_call(depth_fn: Partial, z: jax.Array, mask: jax.Array) -> jax.Array:
    """N(z ⊗ mask): one compiled program per depth-network form."""
    return depth_fn(z * mask)


def saliency_mask(
    fns: NetworkFns,
    name: str,
    source: jax.Array,
    source_key: tuple | None = None,
    cache: BatchCache | None = None,
) -> jax.Array:
    """G(source) f32[B,H,W,1] of saliency network `name`; with the `attack_key` of source
    (CLEAN for the clean x) it is computed once per batch and taken from `cache` after."""
    name_key = None if source_key is None else ("mask", name, source_key)
    return _cached(cache, name_key, lambda: _call(fns[name], source))


def method_output(
    fns: NetworkFns,
    method: Method,
    z: jax.Array,
    clean: jax.Array,
    z_key: tuple | None = None,
    cache: BatchCache | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """(depth f32[B,h,w,1], mask f32[B,H,W,1] or None) of `method` on inputs z f32[B,H,W,3]
    (the oracle's mask from clean). The networks are arguments of the compiled programs, so
    methods of the same form (N and N_adv; G and G_adv) share one. z_key: z's `attack_key`;
    with a cache every mask (G(x) of the oracles above all) is computed once per batch."""
    if method.saliency_net is None:
        return _call(fns[method.depth_net], z), None
    source, source_key = (clean, CLEAN) if method.mask_from_clean else (z, z_key)
    mask = saliency_mask(fns, method.saliency_net, source, source_key, cache)
    return _masked_call(fns[method.depth_net], z, mask), mask


def mask_statistics(mask: jax.Array) -> dict[str, jax.Array]:
    """Per-image f32[B] of a mask f32[B,H,W,1]: 'mask_mean', 'mask_above_half' (the share
    of pixels above 0.5) and 'mask_spread' (the standard deviation over the image's pixels: 0
    for a uniform mask, which dims the input instead of selecting pixels)."""
    axes = (1, 2, 3)
    return {
        "mask_mean": jnp.mean(mask, axis=axes),
        "mask_above_half": jnp.mean((mask > 0.5).astype(jnp.float32), axis=axes),
        "mask_spread": jnp.std(mask, axis=axes),
    }


@functools.partial(jax.jit, static_argnames=("align",))
def _scores(
    depth: jax.Array, mask: jax.Array | None, y: jax.Array, align: tuple[float, float] | None
) -> dict[str, jax.Array]:
    values = image_metrics(metric_depth(depth, y, align), y)
    return values if mask is None else {**values, **mask_statistics(mask)}


def method_metrics(
    fns: NetworkFns,
    x: jax.Array,
    inputs: jax.Array,
    y: jax.Array,
    *,
    methods: tuple[Method, ...],
    input_keys: tuple[tuple | None, ...] | None = None,
    cache: BatchCache | None = None,
    align: tuple[float, float] | None = None,
) -> tuple[dict[str, np.ndarray], ...]:
    """Per-image metrics {name: f32[S,B]} (metrics.image_metrics vs y f32[B,H',W',1]) of each
    method on inputs f32[S,B,H,W,3] (the oracle masks from x f32[B,H,W,3]), and for a masked
    method its mask's `mask_statistics`. input_keys: the `attack_key` of each input; a method
    already scored on an input of the same key is taken from `cache`. align: None, or the
    depth range of the alignment of a relative output before the metrics."""
    input_keys = input_keys or (None,) * len(inputs)

    def scores(method, z, name):
        def compute():
            depth, mask = method_output(fns, method, z, x, name, cache)
            return {k: np.asarray(v) for k, v in _scores(depth, mask, y, align).items()}

        return compute

    per_method = []
    for method in methods:
        settings = [
            _cached(cache, None if name is None else (name, method), scores(method, z, name))
            for z, name in zip(inputs, input_keys, strict=True)
        ]
        per_method.append({k: np.stack([s[k] for s in settings]) for k in settings[0]})
    return tuple(per_method)


def _per_image_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
    axes = tuple(range(1, values.ndim))
    return jnp.sum(values * weights, axis=axes) / jnp.sum(weights, axis=axes)


@jax.jit
def targeted_values(depth_fn: Partial, x: jax.Array, x_adv: jax.Array, scale) -> dict:
    """Per-image f32[B] of a targeted attack towards scale·N(x): 'depth_ratio' (mean of
    N(x*)/N(x) over pixels where N(x) > 0, NaN if none), 'target_rmse' (RMSE of N(x*) vs
    the target) and 'clean_target_rmse' (of N(x) vs the target), in metres."""
    clean, attacked = depth_fn(x), depth_fn(x_adv)
    target = scale * clean
    positive = clean > 0
    ratio = jnp.where(positive, attacked / jnp.where(positive, clean, 1.0), 0.0)
    ones = jnp.ones_like(clean)
    return {
        "depth_ratio": _per_image_mean(ratio, positive.astype(jnp.float32)),
        "target_rmse": jnp.sqrt(_per_image_mean(jnp.square(attacked - target), ones)),
        "clean_target_rmse": jnp.sqrt(_per_image_mean(jnp.square(clean - target), ones)),
    }


@functools.partial(jax.jit, static_argnames=("loss", "space", "align"))
def energy_shares(
    attacked: Partial,
    x: jax.Array,
    y: jax.Array,
    x_adv: jax.Array,
    non_salient: jax.Array,
    *,
    loss: str,
    space: str,
    align: tuple[float, float] | None = None,
) -> dict[str, jax.Array]:
    """Per-image f32[B] shares in the non-salient pixels (non_salient f32[B,H,W,1]) of the
    energy (sum of squares, in ε-space units) of the perturbation x_adv − x
    ('perturbation_share') and of the input gradient ∇_x ℓ(attacked(x), y) at the clean x
    ('gradient_share'; ℓ after the alignment `align` when set), and the region's share of
    the area ('area_share')."""
    delta = x_adv - x
    loss_fn = loss_function(attacks.AttackConfig(loss=loss, align=align))
    gradient = jax.grad(lambda z: jnp.sum(loss_fn(attacked(z), y)))(x)
    if space == "pixel":  # δ_pixel = δ·std and ∂ℓ/∂δ_pixel = ∂ℓ/∂x / std
        delta, gradient = delta * IMAGENET_STD, gradient / IMAGENET_STD

    def share(values):
        energy = jnp.sum(jnp.square(values), axis=-1, keepdims=True)
        return jnp.sum(energy * non_salient, axis=(1, 2, 3)) / jnp.sum(energy, axis=(1, 2, 3))

    return {
        "perturbation_share": share(delta),
        "gradient_share": share(gradient),
        "area_share": jnp.mean(non_salient, axis=(1, 2, 3)),
    }


def evaluate_group(
    group: AttackGroup,
    fns: NetworkFns,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    cache: BatchCache | None = None,
) -> GroupValues:
    """{(setting, method label): {value name: f32[B] numpy}} of one group on one batch.
    cache: this batch's attacks and scores, shared by its groups (None: nothing shared)."""
    region = group_region_mask(group, fns, x, cache)
    inputs = adversarial_inputs(group, fns, x, y, key, region, cache)
    needed = set().union(*(m.networks for m in group.methods))
    per_method = method_metrics(
        {name: fns[name] for name in needed},
        x,
        inputs,
        y,
        methods=group.methods,
        input_keys=tuple(attack_key(group, e) for e in group.eps),
        cache=cache,
        align=group.config.align,
    )
    values: GroupValues = {}
    for s, setting in enumerate(group.settings):
        for m, method in enumerate(group.methods):
            row = {name: np.asarray(v[s]) for name, v in per_method[m].items()}
            values[setting, group.method_label(method, s)] = row
            if group.extras == "targeted" and method == Method("N"):
                scale = group.config.target_scale
                extra = targeted_values(fns["N"], x, inputs[s], scale)
                row.update({name: np.asarray(v) for name, v in extra.items()})
        if group.extras == "energy":
            saliency = saliency_mask(fns, group.region_net, x, CLEAN, cache)
            _, non_salient = region_masks(saliency, group.salient_fraction)
            shares = energy_shares(
                attacked_function(ATTACK_TARGETS[group.target], fns),
                x,
                y,
                inputs[s],
                non_salient,
                loss=group.config.loss,
                space=group.config.space,
                align=group.config.align,
            )
            values[setting, ENERGY_LABEL] = {k: np.asarray(v) for k, v in shares.items()}
    return values


FIGURE_MASKS = ("G", "G_adv")


def figure_arrays(
    group: AttackGroup,
    fns: NetworkFns,
    x: jax.Array,
    y: jax.Array,
    key: jax.Array,
    keep: np.ndarray,
    cache: BatchCache | None = None,
) -> dict[str, np.ndarray]:
    """Arrays of Figs. 6 and 7 for the images `keep` (indices) of the batch x (one ε,
    group.eps[0]; computed on the whole batch, so the tables' programs and, through cache,
    their attack serve): 'image' and 'adversarial' (pixels [0,1], [K,H,W,3]), 'perturbation'
    (x* − x in ε-space units), 'ground_truth', 'depth:N(x)' and 'depth:<method>' for the
    methods the networks allow ([K,h,w,1] metres; aligned to the ground truth when
    group.config.align), 'mask:<G>(x)' and 'mask:<G>(x*)' ([K,H,W,1])."""
    x_adv = adversarial_inputs(group, fns, x, y, key, cache=cache)[0]
    adv_key = attack_key(group, group.eps[0])
    delta = x_adv - x
    arrays = {
        "image": np.clip(np.asarray(denormalize(x)), 0, 1),
        "adversarial": np.clip(np.asarray(denormalize(x_adv)), 0, 1),
        "perturbation": np.asarray(
            delta * IMAGENET_STD if group.config.space == "pixel" else delta
        ),
        "ground_truth": np.asarray(y),
        "depth:N(x)": np.asarray(metric_depth(_call(fns["N"], x), y, group.config.align)),
    }
    for method in group.methods:
        depth, _ = method_output(fns, method, x_adv, x, adv_key, cache)
        arrays[f"depth:{method.label()}"] = np.asarray(metric_depth(depth, y, group.config.align))
    for name in FIGURE_MASKS:
        if name in fns:
            arrays[f"mask:{name}(x)"] = np.asarray(saliency_mask(fns, name, x, CLEAN, cache))
            mask = saliency_mask(fns, name, x_adv, adv_key, cache)
            arrays[f"mask:{name}(x*)"] = np.asarray(mask)
    return {name: array[keep] for name, array in arrays.items()}
