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


def test_cli_writes_a_readable_figure(run_dir, image_file, tmp_path):
    out = tmp_path / "panel.png"
    argv = ["--image", str(image_file), "--workdir", str(run_dir), "--out", str(out)]
    path = attack_image.main([*argv, "--eps", "0.05", "--steps", "2", "--eps-space", "pixel"])
    assert path == out
    with Image.open(out) as panel:
        assert panel.size[0] >= 1200 and panel.size[1] >= 600


def _image_of(axis) -> np.ndarray:
    (image,) = axis.get_images()
    return np.asarray(image.get_array())


def test_each_panel_holds_what_its_title_says(run_dir, image_file):
    arrays = attack_image.attack_image(image_file, run_dir, eps=0.05, steps=2)
    title = "ε = 0.05 (normalised space), α = 1, T = 2"
    figure = attack_image.panel_figure(arrays, title)
    assert figure._suptitle.get_text() == title
    panels = {axis.get_title(): axis for axis in figure.axes if axis.get_title()}
    by_start = {name.split(",")[0].split(" (")[0]: axis for name, axis in panels.items()}
    np.testing.assert_array_equal(_image_of(by_start["input x"]), arrays["input"])
    assert arrays["input"].shape == (60, 80, 3)  # the file's own resolution
    assert "input x (80×60 px)" in panels
    for name in attack_image.DEPTH_PANELS:
        np.testing.assert_array_equal(_image_of(by_start[name]), arrays[name][..., 0])
    error = np.abs(arrays["N(x*)"] - arrays["N(x)"])[..., 0]
    np.testing.assert_array_equal(_image_of(by_start["|N(x*) − N(x)|"]), error)
    assert f"|N(x*) − N(x)|, mean {error.mean():.3f} m" in panels
    for name in attack_image.MASK_PANELS:
        assert f"{name}, mean {float(arrays[name].mean()):.3f}" in panels
        np.testing.assert_array_equal(_image_of(by_start[name]), arrays[name][..., 0])
    k = attack_image.amplification(arrays["perturbation"])
    (amplified,) = [axis for name, axis in panels.items() if name.startswith("0.5 + ")]
    assert amplified.get_title().startswith(f"0.5 + {k:.3g}·(x* − x)")
    expected = np.clip(0.5 + k * arrays["perturbation"], 0, 1)
    np.testing.assert_allclose(_image_of(amplified), expected, atol=1e-6)
    assert abs(np.abs(expected - 0.5).max() - 0.5) < 1e-6  # the peak fills the range
    # one shared colour range for the four depth maps
    limits = {_clim(by_start[name]) for name in attack_image.DEPTH_PANELS}
    assert len(limits) == 1


def _clim(axis) -> tuple[float, float]:
    return axis.get_images()[0].get_clim()


def test_user_mistakes_name_the_argument_or_path(run_dir, image_file, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--workdir .*nowhere: no such directory"):
        attack_image.attack_image(image_file, tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"--networks .* has no \{name\}"):
        attack_image.attack_image(image_file, run_dir, networks_pattern=str(run_dir / "N"))
    with pytest.raises(ValueError, match=r"--steps must be an integer >= 1"):
        attack_image.attack_image(image_file, run_dir, steps=0)
    with pytest.raises(ValueError, match=r"crop = 34×40: .*multiples of 4"):
        attack_image.attack_image(image_file, run_dir, resize_hw=(36, 48), crop_hw=(34, 40))
    wrong = tmp_path / "wrong"
    (wrong / "networks").mkdir(parents=True)
    (wrong / "config.json").write_text((run_dir / "config.json").read_text())
    (wrong / "networks" / "N").symlink_to(run_dir / "networks" / "G")
    with pytest.raises(ValueError, match=r"networks/N: holds a saliency network .*loaded as N"):
        attack_image.attack_image(image_file, wrong)
    with pytest.raises(SystemExit):
        attack_image.main(
            [
                "--image",
                str(image_file),
                "--workdir",
                str(run_dir),
                "--out",
                str(tmp_path / "p.png"),
                "--steps",
                "0",
            ]
        )


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
