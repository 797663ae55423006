"""The shipped default-study N and G: they load, and their clean scores on the first rendered
test images equal the recorded ones (so the package's networks are the ones the record and
the README describe)."""

import sys

import numpy as np
import pytest

from mde_adv import models, pretrained, variables_io

REPO_CONFIGS = pretrained.DEFAULT_DIR.parents[2]


@pytest.fixture(scope="module")
def record():
    return pretrained.record()


def test_record_names_the_config_that_trains_the_networks(record):
    sys.path.insert(0, str(REPO_CONFIGS))
    from configs import default, default_networks

    trained = default_networks.get_config()
    assert record["config"] == "configs/default_networks.py"
    assert record["depth_net"] == trained.depth_net.to_dict()
    assert record["saliency_net"] == trained.saliency_net.to_dict()
    assert record["dataset"] == trained.data.pipeline.name
    study = default.get_config()
    assert study.networks.N == str(pretrained.path("N"))
    assert study.depth_net.to_dict() == record["depth_net"]


def test_recorded_clean_scores_are_recomputed(record):
    depth_model = models.depth_net(record["depth_net"])
    n, _ = variables_io.load_variables(pretrained.path("N"))
    sizes = record["sizes"]
    from mde_adv.data.transforms import TransformSizes

    crop = tuple(sizes["crop_hw"])
    transform = TransformSizes(tuple(sizes["resize_hw"]), crop, (crop[0] // 2, crop[1] // 2))
    x, y = pretrained.record_images(*record["render_hw"], transform, record["record_images"])
    assert record["networks"] == list(pretrained.NAMES)  # N, G and Table 4's G are shipped
    recorded = record["record_scores"]
    for name in pretrained.SALIENCY_ENCODERS:
        config = pretrained.saliency_config(record["saliency_net"], name)
        g, _ = variables_io.load_variables(pretrained.path(name))
        scores = pretrained.clean_scores(depth_model, n, models.saliency_net(config), g, x, y, name)
        for key in ("N(x)", f"N(x⊗{name}(x))", "constant", "per-pixel mean map"):
            for metric in ("rmse", "rel", "delta1"):
                np.testing.assert_allclose(
                    scores[key][metric], recorded[key][metric], rtol=1e-3, err_msg=f"{key} {metric}"
                )
        for key in (f"{name}(x) mask mean", f"{name}(x) mask above 0.5"):
            np.testing.assert_allclose(scores[key], recorded[key], rtol=1e-3, atol=1e-4)
        # what the shipped networks are for: N beats the layout prior, the masks are real
        assert scores["N(x)"]["rmse"] < 0.8 * scores["per-pixel mean map"]["rmse"]
        assert 0.02 <= scores[f"{name}(x) mask mean"] <= 0.6, name
        assert scores[f"N(x⊗{name}(x))"]["rmse"] < scores["constant"]["rmse"], name


def test_unknown_network_names_are_refused():
    with pytest.raises(ValueError, match="unknown network 'N_adv'"):
        pretrained.path("N_adv")
