"""Adaptive attacks, gradient-masking diagnostics and the robustness card (mde_adv.robustness)."""

import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import robust_setup as rs

from mde_adv import attacks, robustness
from mde_adv.attacks import adaptive, diagnostics
from mde_adv.evaluation import results

PREDICT = rs.trained_predict()
QUANTISED = adaptive.compose(PREDICT, adaptive.quantise(8))
BPDA = adaptive.compose(PREDICT, adaptive.straight_through(adaptive.quantise(8)))
X = rs.images(5, 6)
Y = rs.true_depth(X)


def small_config() -> ml_collections.ConfigDict:
    c = robustness.default_robustness_config()
    c.subjects = ["healthy", "quantised"]
    c.threat_models = [dict(norm="linf", space="normalised", eps=[0.1, 0.3])]
    c.ifgsm.steps = 3
    c.apgd.steps = 4
    c.apgd.restarts = 2
    c.square.steps = 30
    c.diagnostics.steps = [1]
    c.max_images = 5
    c.batch_size = 3
    return c


def batches():
    for start in (0, 3):
        yield {
            "image": X[start : start + 3],
            "depth": Y[start : start + 3],
            "id": [f"img{i}" for i in range(start, start + 3)],
            "valid": np.ones(3, bool),
        }


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory):
    rconfig = small_config()
    robustness.check_robustness_config(rconfig, subjects_known=["healthy", "quantised"])
    subjects = {
        "healthy": robustness.Subject(PREDICT),
        "quantised": robustness.Subject(QUANTISED, source=PREDICT),
    }
    rows, timing = robustness.evaluate(rconfig, subjects, batches)
    out = tmp_path_factory.mktemp("card")
    context = {"dataset": "tiny synthetic", "checkpoints": {}}
    robustness.write_card(
        rows, out, rconfig, context, timing, {"healthy": False, "quantised": True}
    )
    return out


def flags(card, subject):
    return {d["name"].split("[")[0]: d["flag"] for d in card["subjects"][subject]["diagnostics"]}


def test_diagnostics_fire_on_a_quantising_defence_and_stay_silent_on_a_healthy_net(card_dir):
    card = json.loads((card_dir / "card.json").read_text())
    assert not any(flags(card, "healthy").values()), card["subjects"]["healthy"]["diagnostics"]
    masked = flags(card, "quantised")
    assert masked["zero_gradients"] and masked["gradient_free_wins"] and masked["transfer_wins"]
    assert "zero_gradients[linf normalised]" not in card["subjects"]["quantised"]["flagged"]
    assert "zero_gradients" in card["subjects"]["quantised"]["flagged"]
    assert "**flagged:" in (card_dir / "card.md").read_text()


def test_card_numbers_are_recomputed_from_the_per_image_rows(card_dir):
    card = json.loads((card_dir / "card.json").read_text())
    rows = results.read_rows(card_dir / results.PER_IMAGE_FILE)
    assert card["conventions"]["images"] == 5
    assert card["conventions"]["threat_models"][0]["eps_in_pixels"]["0.1"]["inscribed"] == (
        pytest.approx(0.1 * 0.224)
    )
    for subject, entry in card["subjects"].items():
        for result in entry["results"]:
            setting = f"{result['threat_model']} ε={result['eps']:g}"
            chosen = [r for r in rows if r["setting"] == setting
                      and r["method"] == f"{subject} | {result['attack']}"]  # fmt: skip
            assert len(chosen) == result["images"] == 5
            mse = np.array([r["mse"] for r in chosen])
            assert result["rmse"] == pytest.approx(math.sqrt(mse.mean()), rel=1e-6)
            for name in ("rel", "log10", "delta1", "delta2", "delta3"):
                mean = np.mean([r[name] for r in chosen])
                assert result[name] == pytest.approx(mean, rel=1e-6, abs=1e-9), name
        for setting, counts in entry["win_counts"].items():
            assert sum(counts.values()) == 5
            worst = [r for r in rows if r["setting"] == setting
                     and r["method"] == f"{subject} | worst case"]  # fmt: skip
            for name, count in counts.items():
                assert count == sum(r[f"won_by:{name}"] for r in worst)
            members = [r for r in rows if r["setting"] == setting and r["method"].startswith(
                f"{subject} | ") and r["method"] != f"{subject} | worst case"]  # fmt: skip
            for row in worst:  # the worst case is at least every member, per image
                others = [m["rmse"] for m in members if m["position"] == row["position"]]
                assert row["rmse"] >= max(others) - 1e-6


def test_bpda_restores_the_gradient_of_a_quantising_stage():
    config = attacks.AttackConfig(method="apgd", t_max=4)
    shares = lambda fn: np.asarray(diagnostics.zero_gradient_share(fn, X, Y, config=config))
    assert np.all(shares(QUANTISED) == 1.0) and np.all(shares(BPDA) < 0.1)
    # the same forward pass, up to the round-off of x + (q(x) − x)
    np.testing.assert_allclose(np.asarray(BPDA(X)), np.asarray(QUANTISED(X)), atol=1e-5)
    l1 = lambda x_adv: np.asarray(jnp.mean(jnp.abs(QUANTISED(x_adv) - Y), axis=(1, 2, 3)))
    masked = attacks.attack(QUANTISED, X, Y, eps=0.1, steps=4, config=config)
    adaptive_x = attacks.attack(BPDA, X, Y, eps=0.1, steps=4, config=config)
    assert np.all(l1(masked) == l1(X))  # a zero gradient: APGD never leaves x
    assert l1(adaptive_x).mean() > 1.2 * l1(X).mean()


def test_eot_averages_the_prediction_over_vmapped_transforms():
    keys = jax.random.split(jax.random.key(0), 4)
    noise = adaptive.gaussian_noise(0.05)
    eot = adaptive.expectation_over_transforms(PREDICT, noise, keys)
    expected = np.mean([np.asarray(PREDICT(noise(k, X))) for k in keys], axis=0)
    np.testing.assert_allclose(np.asarray(eot(X)), expected, rtol=1e-5, atol=1e-6)
    x_adv = attacks.attack(eot, X, Y, eps=0.1, steps=2, config=attacks.AttackConfig())
    assert np.abs(np.asarray(x_adv) - X).max() <= 0.1 + 1e-6


def test_diagnostic_rules():
    assert diagnostics.non_decreasing("e", [(0, 1.0), (0.1, 1.2), (0.2, 1.1)]).flag
    assert not diagnostics.non_decreasing("e", [(0, 1.0), (0.1, 1.2), (0.2, 1.19)]).flag
    assert diagnostics.large_eps(1.0, 1.2, eps=2.0).flag
    assert not diagnostics.large_eps(1.0, 3.0, eps=2.0).flag
    errors = {"square": 1.1, "ifgsm": 1.0, "apgd": 1.05}
    assert diagnostics.not_beaten("g", "square", errors, ["ifgsm", "apgd"]).flag
    assert not diagnostics.not_beaten("g", "square", errors, ["ifgsm", "apgd"], 0.1).flag
    assert (
        diagnostics.zero_gradients([0.9, 1.0]).flag and not diagnostics.zero_gradients([0.0]).flag
    )


def test_bad_robustness_config_is_named():
    c = small_config()
    c.threat_models = [dict(norm="linf", space="normalised", eps=[0.1, -1.0])]
    with pytest.raises(ValueError, match=r"threat_models\[0\].eps"):
        robustness.check_robustness_config(c, subjects_known=["healthy", "quantised"])
    c = small_config()
    with pytest.raises(ValueError, match="unknown subject 'healthy'"):
        robustness.check_robustness_config(c)
    c = small_config()
    c.diagnostics.steps = [4]
    with pytest.raises(ValueError, match=r"diagnostics\.steps"):
        robustness.check_robustness_config(c, subjects_known=["healthy", "quantised"])
