"""python -m mde_adv.attack_image: one image attacked with a run's saved networks (the real
N and G at a tiny width), the PNG panel, and clear errors."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from mde_adv import attack_image, models, variables_io

CROP_HW = (32, 40)
MODEL_CONFIGS = {
    "depth": dict(encoder="resnet18", width=0.125, dtype="float32"),
    "saliency": dict(encoder="drn_d_22", width=0.125, dtype="float32"),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as mde_adv.experiment leaves it: config.json and networks/{N,G,G_adv}."""
    workdir = tmp_path_factory.mktemp("run")
    config = {"data": {"pipeline": {"resize_hw": [36, 48], "crop_hw": list(CROP_HW)}}}
    (workdir / "config.json").write_text(json.dumps(config))
    for seed, (name, kind) in enumerate((("N", "depth"), ("G", "saliency"))):
        cfg = MODEL_CONFIGS[kind]
        model = models.depth_net(cfg) if kind == "depth" else models.saliency_net(cfg)
        variables = models.init_variables(model, jax.random.key(seed, impl="rbg"), CROP_HW)
        for saved_as in (name, "G_adv") if name == "G" else (name,):
            variables_io.save_variables(
                workdir / "networks" / saved_as, variables, metadata={"model": cfg}
            )
    return workdir


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("image") / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_writes_a_panel_of_the_expected_size(run_dir, image_file, tmp_path):
    out = tmp_path / "panel.png"
    argv = ["--image", str(image_file), "--workdir", str(run_dir), "--out", str(out)]
    path = attack_image.main([*argv, "--eps", "0.05", "--steps", "2", "--eps-space", "pixel"])
    assert path == out
    with Image.open(out) as panel:
        height, width = CROP_HW
        expected = (
            attack_image.PANEL_COLUMNS * width,
            attack_image.PANEL_ROWS * (height + attack_image.LABEL_HEIGHT),
        )
        assert panel.size == expected
        pixels = np.asarray(panel.convert("RGB"))
    label = attack_image.LABEL_HEIGHT
    for row in range(attack_image.PANEL_ROWS):
        for column in range(attack_image.PANEL_COLUMNS):
            top, left = row * (height + label) + label, column * width
            tile = pixels[top : top + height, left : left + width]
            assert tile.std() > 0, (row, column)  # drawn, not a blank placeholder


def test_attack_stays_in_the_ball_and_changes_the_prediction(run_dir, image_file):
    arrays = attack_image.attack_image(image_file, run_dir, eps=0.05, steps=2, eps_space="pixel")
    assert arrays["x"].shape == (*CROP_HW, 3)
    assert 0 < np.abs(arrays["perturbation"]).max() <= 0.05 + 1e-6
    assert arrays["N(x*)"].shape == (CROP_HW[0] // 2, CROP_HW[1] // 2, 1)
    assert np.abs(arrays["N(x*)"] - arrays["N(x)"]).max() > 0
    for mask in ("G(x*)", "G_adv(x*)"):
        assert np.all((arrays[mask] >= 0) & (arrays[mask] <= 1))


def test_bad_inputs_name_the_file_or_field(run_dir, image_file, tmp_path):
    missing = tmp_path / "nothere.png"
    with pytest.raises(FileNotFoundError, match=r"nothere\.png"):
        attack_image.attack_image(missing, run_dir)
    with pytest.raises(ValueError, match=r"data\.pipeline\.resize_hw"):
        attack_image.attack_image(image_file, tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint of N"):
        attack_image.attack_image(image_file, tmp_path, resize_hw=(36, 48), crop_hw=CROP_HW)
    with pytest.raises(ValueError, match="eps_space 'pixels'"):
        attack_image.attack_image(image_file, run_dir, eps_space="pixels")
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.png"):
        attack_image.attack_image(text_file, run_dir)
