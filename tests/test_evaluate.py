"""The evaluation stage: per-image rows, aggregation, the attacked functions, region masks,
extra values and config errors, on tiny random-init models (32×40, 7 images)."""

import atexit
import functools
import json
import math
import pathlib
import re
import shutil
import tempfile

import flax.linen as nn
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import Partial

from mde_adv import attacks, evaluate
from mde_adv.evaluation import compute, methods, plan, results
from mde_adv.metrics import image_metrics
from mde_adv.normalization import denormalize, normalize

HW = (32, 40)
BATCH = 4
PADDED_BATCHES = 2  # the last batch has one padding row: 7 images


class TinyDepth(nn.Module):
    """A stand-in for N: [B,H,W,3] → [B,H/2,W/2,1]; some predictions are negative."""

    offset: float = 1.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        hidden = jnp.tanh(nn.Conv(4, (3, 3), strides=2)(x))
        return self.offset + nn.Conv(1, (3, 3))(hidden)


class TinySaliency(nn.Module):
    """A stand-in for G: [B,H,W,3] → [B,H,W,1] in (0, 1)."""

    features: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        hidden = jnp.tanh(nn.Conv(self.features, (3, 3))(x))
        return jax.nn.sigmoid(nn.Conv(1, (3, 3))(hidden))


def _pair(model, seed):
    return model, model.init(jax.random.key(seed), jnp.zeros((1, *HW, 3)))


@functools.cache
def tiny_networks() -> dict:
    return {
        "N": _pair(TinyDepth(), 0),
        "N_adv": _pair(TinyDepth(2.0), 1),
        "G": _pair(TinySaliency(), 2),
        "G_adv": _pair(TinySaliency(), 3),
        "G_adv_drn_d_38": _pair(TinySaliency(5), 4),
    }


def synthetic_batches():
    """Two eval batches of 4 (the last row of the second is padding), depth at full size."""
    rng = np.random.default_rng(0)
    for step in range(PADDED_BATCHES):
        yield {
            "image": rng.normal(size=(BATCH, *HW, 3)).astype(np.float32),
            "depth": rng.uniform(1.0, 5.0, (BATCH, *HW, 1)).astype(np.float32),
            "id": np.asarray([f"img{step * BATCH + i}" for i in range(BATCH)]),
            "valid": np.asarray([True, True, True, step == 0]),
        }


def tiny_eval_config():
    config = evaluate.default_eval_config()
    config.table2.eps = [0.0, 0.1]
    config.fig4.eps = [0.0, 0.1]
    config.fig5.steps = [1, 2]
    for section in ("table2", "table3", "table4", "fig6_7", "attack_variants"):
        config[section].steps = 2
    config.salient_regions.steps = 2
    config.targeted.steps = 2
    config.fig6_7.images = 2
    return config


@functools.cache
def tiny_evaluation() -> tuple[pathlib.Path, dict]:
    """The evaluation of the tiny networks (computed once per process): (out_dir, result)."""
    out_dir = pathlib.Path(tempfile.mkdtemp(prefix="mde_adv_eval_"))
    atexit.register(shutil.rmtree, out_dir, True)
    result = evaluate.run(tiny_eval_config(), tiny_networks(), synthetic_batches, out_dir)
    return out_dir, result


def valid_examples() -> tuple[np.ndarray, np.ndarray, list[str]]:
    batches = list(synthetic_batches())
    keep = np.concatenate([b["valid"] for b in batches])
    images = np.concatenate([b["image"] for b in batches])[keep]
    depths = np.concatenate([b["depth"] for b in batches])[keep]
    ids = list(np.concatenate([b["id"] for b in batches])[keep])
    return images, depths, ids


@pytest.fixture(scope="module")
def evaluation():
    out_dir, result = tiny_evaluation()
    return out_dir, result, results.read_rows(out_dir / results.PER_IMAGE_FILE)


def test_per_image_rows_are_images_times_settings_times_methods(evaluation):
    _, result, rows = evaluation
    config = tiny_eval_config()
    _, _, ids = valid_examples()
    expected_entries = {
        "table1": len(config.table1.eps) * len(config.table1.methods),
        "table2": len(config.table2.eps) * len(config.table2.methods),
        "table3": len(config.table3.losses) * len(config.table3.methods),
        "table4": 2,  # G_adv and G_adv_drn_d_38 exist; G_adv_drn_d_54 is missing
        "fig4": len(config.fig4.eps) * len(config.fig4.methods),
        "fig5": len(config.fig5.steps) * len(config.fig5.methods),
        "defence_aware": len(config.defence_aware.eps)
        * (len(config.defence_aware.reference_methods) + len(config.defence_aware.targets)),
        "attack_variants": len(config.attack_variants.attacks)
        * len(config.attack_variants.methods),
        "salient_regions": 3 + 1,  # three regions, plus the energy row
        "targeted": 1,
    }
    for table, entries in expected_entries.items():
        table_rows = [r for r in rows if r["table"] == table]
        assert len(table_rows) == entries * len(ids), table
        per_entry = {}
        for row in table_rows:
            per_entry.setdefault((row["setting"], row["method"]), []).append(row["id"])
        assert all(found == ids for found in per_entry.values()), table
    assert result["images"] == len(ids) == 7
    assert "G_adv_drn_d_54" not in {r["method"] for r in rows}


def _numpy_aggregate(rows):
    mse = np.asarray([r["mse"] for r in rows])
    log10 = np.asarray([r["log10"] for r in rows])
    out = {"rmse": math.sqrt(mse.mean()), "rel": np.mean([r["rel"] for r in rows])}
    out["log10"] = float(np.nanmean(log10)) if np.isfinite(log10).any() else math.nan
    out["log10_undefined_images"] = int(np.isnan(log10).sum())
    for k in (1, 2, 3):
        out[f"delta{k}"] = np.mean([r[f"delta{k}"] for r in rows])
    return out


def test_summary_files_equal_the_aggregation_of_per_image_rows(evaluation):
    out_dir, result, rows = evaluation
    saved = json.loads((out_dir / results.SUMMARY_JSON).read_text(encoding="utf-8"))
    assert len(saved) == len(result["summary"])
    csv_lines = (out_dir / results.SUMMARY_CSV).read_text(encoding="utf-8").strip().splitlines()
    assert len(csv_lines) == len(saved) + 1
    for entry in saved:
        group = [
            r
            for r in rows
            if (r["table"], r["setting"], r["method"])
            == (entry["table"], entry["setting"], entry["method"])
        ]
        assert entry["images"] == len(group)
        if "mse" not in group[0]:
            for name in ("area_share", "perturbation_share", "gradient_share"):
                assert entry[name] == pytest.approx(np.mean([r[name] for r in group]), abs=1e-6)
            continue
        for name, value in _numpy_aggregate(group).items():
            if math.isnan(value):
                assert entry[name] is None, (entry, name)
            else:
                assert entry[name] == pytest.approx(value, abs=2e-5), (entry, name)


def test_clean_rows_equal_the_networks_on_clean_images(evaluation):
    _, _, rows = evaluation
    images, depths, ids = valid_examples()
    nets = tiny_networks()
    model, variables = nets["N"]
    depth = model.apply(variables, jnp.asarray(images))
    expected = image_metrics(depth, jnp.asarray(depths))
    saliency_model, saliency_variables = nets["G_adv"]
    masked = model.apply(variables, images * saliency_model.apply(saliency_variables, images))
    expected_masked = image_metrics(masked, jnp.asarray(depths))

    def column(table, setting, method, name):
        found = {
            r["id"]: r[name]
            for r in rows
            if (r["table"], r["setting"], r["method"]) == (table, setting, method)
        }
        return np.asarray([found[i] for i in ids])

    np.testing.assert_allclose(column("table2", "clean", "N(x)", "rmse"), expected["rmse"], 1e-5)
    np.testing.assert_allclose(
        column("table2", "clean", "N(x⊗G_adv(x))", "rel"), expected_masked["rel"], rtol=1e-5
    )
    # at ε = 0 the oracle mask G(x) and the mask G(x*) coincide, attacked or not
    np.testing.assert_array_equal(
        column("table1", "ε=0", "N(x*⊗G(x))", "mse"), column("table1", "ε=0", "N(x*⊗G(x*))", "mse")
    )
    assert not np.array_equal(
        column("table1", "ε=0.1", "N(x*)", "mse"), column("table1", "ε=0", "N(x*)", "mse")
    )


def test_defence_aware_rows_attack_the_pipeline_not_n(evaluation):
    _, _, rows = evaluation
    config = tiny_eval_config()
    images, depths, ids = valid_examples()
    fns = methods.network_functions(tiny_networks())
    groups = [g for g in plan.plan(config, tiny_networks()) if g.table == "defence_aware"]
    pipeline_group = next(g for g in groups if g.target == "N(x⊗G(x))")
    reference_group = next(g for g in groups if g.target == "N(x)")
    x, y = jnp.asarray(images), jnp.asarray(depths)
    key = jax.random.key(0)
    x_double = compute.adversarial_inputs(pipeline_group, fns, x, y, key)
    x_single = compute.adversarial_inputs(reference_group, fns, x, y, key)
    assert not np.allclose(x_double[-1], x_single[-1])

    def pipeline(z):
        return fns["N"](z * fns["G"](z))

    direct = attacks.attack(Partial(pipeline), x, y, eps=0.1, steps=1, config=pipeline_group.config)
    np.testing.assert_allclose(x_double[-1], direct, atol=1e-6)
    expected = image_metrics(pipeline(direct), y)["rmse"]
    found = {
        r["id"]: r["rmse"]
        for r in rows
        if r["table"] == "defence_aware"
        and r["setting"] == "ε=0.1"
        and r["method"] == "N(x**⊗G(x**))"
    }
    np.testing.assert_allclose([found[i] for i in ids], expected, rtol=1e-4)


def test_region_attacks_keep_the_perturbation_inside_the_region():
    config = tiny_eval_config()
    nets = tiny_networks()
    fns = methods.network_functions(nets)
    images, depths, _ = valid_examples()
    x, y = jnp.asarray(images[:3]), jnp.asarray(depths[:3])
    groups = [g for g in plan.plan(config, nets) if g.table == "salient_regions"]
    eps = config.salient_regions.eps
    salient, non_salient = compute.region_masks(
        fns["G"](x), config.salient_regions.salient_fraction
    )
    masks = {"salient": salient, "non_salient": non_salient, "all": jnp.ones_like(salient)}
    for group in groups:
        region = compute.group_region_mask(group, fns, x)
        if group.region == "all":  # no restriction: the unrestricted attack itself
            assert region is None
            region = masks["all"]
        np.testing.assert_array_equal(region, masks[group.region])
        delta = compute.adversarial_inputs(group, fns, x, y, jax.random.key(1), region)
        delta = np.asarray(delta)[0] - np.asarray(x)
        outside = np.broadcast_to(np.asarray(region) == 0, delta.shape)
        assert np.all(delta[outside] == 0), group.region
        assert np.abs(delta).max() <= eps + 1e-6
        assert np.abs(delta[~outside]).min() > 0, group.region


@settings(max_examples=25, deadline=None)
@given(
    saliency=hnp.arrays(
        np.float32, (2, 5, 6, 1), elements=st.floats(0, 1, width=32, allow_subnormal=False)
    ),
    fraction=st.floats(0.05, 0.95),
)
def test_region_masks_split_each_image_by_saliency_rank(saliency, fraction):
    salient, non_salient = (np.asarray(m) for m in compute.region_masks(saliency, fraction))
    np.testing.assert_array_equal(salient + non_salient, 1.0)
    for i in range(saliency.shape[0]):
        assert salient[i].sum() == round(fraction * 30)
        inside, outside = saliency[i][salient[i] == 1], saliency[i][salient[i] == 0]
        if inside.size and outside.size:
            assert inside.min() >= outside.max()


def _first_channel(x):
    return x[:, ::2, ::2, :1]


def test_targeted_values_measure_ratio_and_distance_to_target():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(0.5, 2.0, (2, 4, 6, 3)), jnp.float32)
    x_adv = x.at[:, :, :, 0].multiply(2.0)
    values = compute.targeted_values(Partial(_first_channel), x, x_adv, 2.0)
    np.testing.assert_allclose(values["depth_ratio"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(values["target_rmse"], 0.0, atol=1e-6)
    clean = np.asarray(_first_channel(x))
    np.testing.assert_allclose(
        values["clean_target_rmse"], np.sqrt((clean**2).mean(axis=(1, 2, 3))), rtol=1e-5
    )


def test_energy_shares_follow_the_region():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 4, 6, 3)), jnp.float32)
    y = jnp.asarray(rng.uniform(1, 2, (2, 2, 3, 1)), jnp.float32)
    half = np.zeros((2, 4, 6, 1), np.float32)
    half[:, :, :3] = 1.0
    x_adv = x + 0.1 * jnp.asarray(half)  # perturbed only in the left half
    fn = Partial(_first_channel)

    def shares(region):
        return compute.energy_shares(
            fn, x, y, x_adv, jnp.asarray(region), loss="l1", space="normalised"
        )

    left, right, everything = shares(half), shares(1 - half), shares(np.ones_like(half))
    np.testing.assert_allclose(left["perturbation_share"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(right["perturbation_share"], 0.0, atol=1e-6)
    np.testing.assert_allclose(everything["gradient_share"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(left["gradient_share"] + right["gradient_share"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(left["area_share"], 0.5)


def test_groups_sharing_an_attack_share_its_inputs_and_scores():
    """The per-batch cache changes no value: each group evaluated alone (its own attacks)
    equals the groups evaluated in order with one shared cache, and the groups whose attacks
    coincide (Table 2's ε = 0.1, Fig. 5's T = 10, the IFGSM variant) reuse one input."""
    config = tiny_eval_config()
    nets = tiny_networks()
    fns = methods.network_functions(nets)
    images, depths, _ = valid_examples()
    x, y = jnp.asarray(images[:BATCH]), jnp.asarray(depths[:BATCH])
    key = jax.random.key(0)
    cache = {}
    for index, group in enumerate(plan.plan(config, nets)):
        group_key = jax.random.fold_in(key, index)
        shared = compute.evaluate_group(group, fns, x, y, group_key, cache)
        alone = compute.evaluate_group(group, fns, x, y, group_key)
        assert shared.keys() == alone.keys()
        for row in shared:
            for name in shared[row]:
                np.testing.assert_array_equal(shared[row][name], alone[row][name], err_msg=row)
    ifgsm = [
        g
        for g in plan.plan(config, nets)
        if g.config.method == "ifgsm"
        and g.target == "N(x)"
        and g.config.loss == "l1"
        and g.region in (None, "all")
        and not g.config.targeted
        and g.steps == config.table2.steps
    ]
    keys = {compute.attack_key(g, 0.1) for g in ifgsm if 0.1 in g.eps}
    assert len(ifgsm) >= 2 and len(keys) == 1 and next(iter(keys)) in cache
    pgd = next(g for g in plan.plan(config, nets) if g.config.method == "pgd")
    assert compute.attack_key(pgd, 0.1) is None  # random start: never shared


def test_attack_families_are_computed_together_and_change_no_value():
    """With the batch's requests in the cache, the one-step attacks of a family (Table 1 and
    Fig. 4's FGSM) come from one gradient and Fig. 5's budgets from one IFGSM loop; every
    value equals the group evaluated alone within float rounding, and masks of the clean x
    are computed once per network."""
    config = tiny_eval_config()
    config.fig4.eps = [0.0, 0.05, 0.1]
    nets = tiny_networks()
    fns = methods.network_functions(nets)
    images, depths, _ = valid_examples()
    x, y = jnp.asarray(images[:BATCH]), jnp.asarray(depths[:BATCH])
    key = jax.random.key(0)
    groups = plan.plan(config, nets)
    requests = compute.attack_requests(groups)
    fgsm = next(g for g in groups if g.table == "fig4")
    assert requests[compute.attack_family(fgsm)] == {0.05: {1}, 0.1: {1}}
    fig5 = [g for g in groups if g.table == "fig5"]
    assert requests[compute.attack_family(fig5[0])][0.1] >= {1, 2}
    cache = {compute.REQUESTS: requests}
    calls = []
    original = attacks.attack

    def counted(*args, **kwargs):
        calls.append(kwargs["config"].method)
        return original(*args, **kwargs)

    attacks.attack = counted
    try:
        shared = {g: compute.evaluate_group(g, fns, x, y, key, cache) for g in groups}
    finally:
        attacks.attack = original
    for group, values in shared.items():
        alone = compute.evaluate_group(group, fns, x, y, key)
        for row in values:
            for name in values[row]:
                np.testing.assert_allclose(
                    values[row][name], alone[row][name], rtol=1e-5, atol=1e-6, err_msg=row
                )
    assert "fgsm" not in calls  # Table 1 and Fig. 4: one one_step_sweep
    ifgsm_families = {compute.attack_family(g) for g in fig5}
    assert all((*f, t, 0.1) in cache for f in ifgsm_families for t in (1, 2))
    clean_masks = [k for k in cache if k[0] == "mask" and k[2] == compute.CLEAN]
    assert {k[1] for k in clean_masks} <= set(nets) and len(clean_masks) == len(set(clean_masks))


def test_figure_arrays_hold_the_attack_of_fig6_and_fig7(evaluation):
    out_dir, _, _ = evaluation
    arrays = np.load(out_dir / results.FIGURES_FILE)
    config = tiny_eval_config()
    assert arrays["image"].shape == (2, *HW, 3)
    assert list(arrays["ids"]) == ["img0", "img1"]
    assert 0 < np.abs(arrays["perturbation"]).max() <= config.fig6_7.eps + 1e-6
    for key in ("depth:N(x)", "depth:N(x*)", "depth:N_adv(x*)", "depth:N(x*⊗G_adv(x*))"):
        assert arrays[key].shape == (2, HW[0] // 2, HW[1] // 2, 1), key
    for key in ("mask:G(x)", "mask:G(x*)", "mask:G_adv(x)", "mask:G_adv(x*)"):
        assert arrays[key].shape == (2, *HW, 1), key
    assert not np.allclose(arrays["mask:G(x)"], arrays["mask:G(x*)"])


def test_missing_networks_drop_their_rows_from_the_plan():
    groups = plan.plan(evaluate.default_eval_config(), {"N", "G"})
    labels = {m.label() for g in groups for m in g.methods}
    assert labels and not any("adv" in label for label in labels)
    assert "table4" not in {g.table for g in groups}
    assert {g.target for g in groups if g.table == "defence_aware"} == {"N(x)", "N(x⊗G(x))"}
    with_everything = plan.plan(evaluate.default_eval_config(), methods.NETWORK_NAMES)
    assert len(next(g for g in with_everything if g.table == "table4").methods) == 3


def test_default_config_plans_the_papers_attacks():
    groups = plan.plan(evaluate.default_eval_config(), methods.NETWORK_NAMES)
    by_table = {}
    for group in groups:
        by_table.setdefault(group.table, []).append(group)
    (table2,) = by_table["table2"]
    assert (table2.config.method, table2.steps, table2.config.alpha) == ("ifgsm", 10, 1.0)
    assert table2.settings == ("clean", "ε=0.05", "ε=0.1", "ε=0.15", "ε=0.2")
    assert {g.config.loss for g in by_table["table3"]} == {"l1", "l2", "rel", "log10", "l_dif"}
    assert all(g.steps == 5 and g.eps == (0.1,) for g in by_table["table3"])
    assert [g.steps for g in by_table["fig5"]] == list(range(1, 11))
    assert all(g.config.space == "normalised" for g in groups)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("tables", ["table1", "table9"], "table9"),
        ("table2.methods", ["N(x*)", "N(y)"], "N(y)"),
        ("table3.losses", ["l1", "huber"], "huber"),
        ("attack_variants.attacks", ["pgd", "cw"], "cw"),
        ("eps_space", "pixels", "pixels"),
        ("table1.eps", [0.0, -0.1], "-0.1"),
    ],
)
def test_bad_config_values_are_named(field, value, message):
    config = evaluate.default_eval_config()
    section, _, name = field.rpartition(".")
    (config[section] if section else config)[name] = value
    with pytest.raises(
        ValueError, match=re.escape(f"eval_config.{field}") + ".*" + re.escape(message)
    ):
        plan.plan(config, methods.NETWORK_NAMES)


def test_bad_networks_and_batches_are_named(tmp_path):
    config = tiny_eval_config()
    nets = tiny_networks()
    with pytest.raises(ValueError, match="G_huge"):
        evaluate.run(config, {**nets, "G_huge": nets["G"]}, synthetic_batches, tmp_path)
    with pytest.raises(ValueError, match="'N'"):
        evaluate.run(config, {"G": nets["G"]}, synthetic_batches, tmp_path)
    with pytest.raises(ValueError, match="no batches"):
        evaluate.run(config, nets, lambda: iter([]), tmp_path)


def test_pixel_space_attacks_stay_in_the_pixel_ball_and_range():
    config = tiny_eval_config()
    config.eps_space = "pixel"
    fns = methods.network_functions(tiny_networks())
    (group,) = [g for g in plan.plan(config, tiny_networks()) if g.table == "table1"]
    rng = np.random.default_rng(5)
    pixels = rng.uniform(0, 1, (2, *HW, 3)).astype(np.float32)
    x = jnp.asarray(normalize(pixels))
    y = jnp.asarray(rng.uniform(1, 5, (2, *HW, 1)), jnp.float32)
    adversarial = np.asarray(denormalize(compute.adversarial_inputs(group, fns, x, y, None)))
    for eps, attacked in zip(group.eps, adversarial, strict=True):
        assert np.abs(attacked - pixels).max() <= eps + 1e-5
        assert attacked.min() >= -1e-6 and attacked.max() <= 1 + 1e-6
    assert np.abs(adversarial[-1] - pixels).max() > 0.5 * group.eps[-1]
