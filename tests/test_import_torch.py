"""Import of PyTorch weights: parity of the Flax N and G with an independent PyTorch reference,
ImageNet encoder import, and the errors for unusable files."""

import hashlib
import os
import pathlib
import re
import subprocess
import sys

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mde_adv import import_torch, models
from mde_adv.import_torch import TorchImportError, torch_state_dict_to_flax
from mde_adv.variables_io import flatten_variables, load_variables

REPO = pathlib.Path(__file__).resolve().parents[1]
PARITY_TOLERANCE = 1e-4  # max |flax − torch| / max |torch|
MASK_LOGIT_GAIN = 30.0  # scales G's last conv so that the random mask is not flat at 0.5


@pytest.fixture(scope="module")
def reference(torch_module):
    """mde_adv/torch_reference.py, imported only where torch is present."""
    del torch_module
    from mde_adv import torch_reference

    return torch_reference


def randomised_reference(reference, torch, model: str, encoder: str, width: float, seed: int = 0):
    """Torch N or G in eval mode with random weights, BN scale/offset and running statistics."""
    torch.manual_seed(seed)
    if model == "depth":
        network = reference.TorchDepthNet(encoder, width)
    else:
        network = reference.TorchSaliencyNet(encoder, width)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        if model == "saliency":
            network.D.conv.weight.mul_(MASK_LOGIT_GAIN)
    return network.eval()


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    assert actual.shape == expected.shape
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def logits(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(np.float64)
    return np.log(mask) - np.log1p(-mask)


def assert_forward_parity(torch, torch_network, model, encoder, width, variables, input_hw):
    """Both networks in inference mode on one random normalised batch [2, H, W, 3]."""
    images = np.random.default_rng(1).normal(size=(2, *input_hw, 3)).astype(np.float32)
    with torch.no_grad():
        expected = torch_network(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    expected = expected.transpose(0, 2, 3, 1)
    network = import_torch.build_model(model, encoder, width)
    actual = np.asarray(jax.jit(lambda v, x: network.apply(v, x, train=False))(variables, images))
    out_hw = (input_hw[0] // 2, input_hw[1] // 2) if model == "depth" else input_hw
    assert actual.shape == (2, *out_hw, 1)
    assert np.isfinite(expected).all() and np.std(expected) > 0
    assert relative_error(actual, expected) < PARITY_TOLERANCE
    if model == "saliency":
        assert np.std(logits(expected)) > 0.05, "mask too flat for a meaningful comparison"
        assert relative_error(logits(actual), logits(expected)) < PARITY_TOLERANCE


def save_state_dict(torch, network, path: pathlib.Path, *, prefix: str, wrapped: bool):
    state_dict = {prefix + key: value for key, value in network.state_dict().items()}
    torch.save({"state_dict": state_dict, "epoch": 19} if wrapped else state_dict, path)


def import_and_check(
    torch, reference, tmp_path, model, encoder, width, input_hw, *, prefix, wrapped, via_cli=False
):
    torch_network = randomised_reference(reference, torch, model, encoder, width)
    checkpoint = tmp_path / "authors.pth.tar"
    save_state_dict(torch, torch_network, checkpoint, prefix=prefix, wrapped=wrapped)
    out = tmp_path / "imported"
    if via_cli:
        argv = ["--model", model, "--encoder", encoder, "--width", str(width)]
        import_torch.main([*argv, "--checkpoint", str(checkpoint), "--out", str(out)])
    else:
        import_torch.import_to_checkpoint(
            out, model=model, encoder=encoder, width=width, checkpoint=checkpoint
        )
    template = import_torch.variables_template(import_torch.build_model(model, encoder, width))
    variables, metadata = load_variables(out, template=template)
    assert metadata["model"] == model and metadata["encoder"] == encoder
    assert metadata["width"] == width and metadata["source"] == "authors_checkpoint"
    assert metadata["source_files"] == [
        {
            "path": str(checkpoint.absolute()),
            "sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        }
    ]
    trainable = sum(p.numel() for p in torch_network.parameters())
    assert models.count_params(variables["params"]) == trainable
    assert_forward_parity(torch, torch_network, model, encoder, width, variables, input_hw)


SMALL_CASES = [
    ("depth", "resnet18", 0.25, "", False),
    ("depth", "resnet34", 0.25, "module.", True),
    ("depth", "resnet50", 0.25, "module.", False),
    ("saliency", "drn_d_22", 0.25, "module.", True),
    ("saliency", "drn_d_38", 0.25, "", False),
    ("saliency", "drn_d_54", 0.25, "", True),
]


@pytest.mark.torch
@pytest.mark.parametrize(("model", "encoder", "width", "prefix", "wrapped"), SMALL_CASES)
def test_small_import_matches_torch(
    torch_module, reference, tmp_path, model, encoder, width, prefix, wrapped
):
    import_and_check(
        torch_module,
        reference,
        tmp_path,
        model,
        encoder,
        width,
        (64, 80),
        prefix=prefix,
        wrapped=wrapped,
    )


@pytest.mark.torch
def test_command_line_import_matches_torch(torch_module, reference, tmp_path):
    import_and_check(
        torch_module,
        reference,
        tmp_path,
        "depth",
        "resnet18",
        0.5,
        (64, 96),
        prefix="module.",
        wrapped=True,
        via_cli=True,
    )


@pytest.mark.torch
@pytest.mark.parametrize(("model", "encoder"), [("depth", "resnet50"), ("saliency", "drn_d_22")])
def test_paper_setting_import_matches_torch_at_reduced_size(
    torch_module, reference, tmp_path, model, encoder
):
    import_and_check(
        torch_module,
        reference,
        tmp_path,
        model,
        encoder,
        1.0,
        (96, 128),
        prefix="module.",
        wrapped=False,
    )


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize(
    ("model", "encoder"),
    [
        ("depth", "resnet50"),
        ("saliency", "drn_d_22"),
        ("saliency", "drn_d_38"),
        ("saliency", "drn_d_54"),
    ],
)
def test_paper_setting_import_matches_torch(torch_module, reference, tmp_path, model, encoder):
    import_and_check(
        torch_module,
        reference,
        tmp_path,
        model,
        encoder,
        1.0,
        (228, 304),
        prefix="module.",
        wrapped=True,
    )


@pytest.mark.torch
def test_reference_has_the_paper_parameter_counts(torch_module, reference):
    del torch_module

    def trainable(network) -> int:
        return sum(p.numel() for p in network.parameters() if p.requires_grad)

    depth = reference.TorchDepthNet("resnet50", 1.0)
    assert trainable(depth) == 67_569_473
    assert [trainable(getattr(depth, m)) for m in ("E", "D", "MFF", "R")] == [
        23_508_032,
        40_054_400,
        3_184_128,
        822_913,
    ]
    saliency = reference.TorchSaliencyNet("drn_d_22", 1.0)
    assert trainable(saliency) == 25_259_761
    assert [trainable(saliency.E), trainable(saliency.D)] == [15_880_752, 9_379_009]


@pytest.mark.torch
def test_reference_keys_follow_the_spec(torch_module, reference):
    del torch_module
    depth_keys = set(reference.TorchDepthNet("resnet50", 0.25).state_dict())
    for key in (
        "E.conv1.weight",
        "E.bn1.running_var",
        "E.layer1.0.conv1.weight",
        "E.layer4.0.downsample.1.bias",
        "D.conv.weight",
        "D.up1.conv1_2.weight",
        "D.up4.bn2.running_mean",
        "MFF.up4.conv2.weight",
        "MFF.conv.weight",
        "R.bn1.weight",
        "R.conv2.bias",
    ):
        assert key in depth_keys
    assert "D.conv.bias" not in depth_keys
    saliency_keys = set(reference.TorchSaliencyNet("drn_d_22", 0.25).state_dict())
    for key in (
        "E.base.0.0.weight",
        "E.base.0.1.running_mean",
        "E.base.1.0.weight",
        "E.base.3.0.downsample.0.weight",
        "E.base.6.1.bn2.bias",
        "E.base.8.1.weight",
        "D.up3.conv1_2.weight",
        "D.conv.weight",
        "D.conv.bias",
    ):
        assert key in saliency_keys


def expected_flax_path(torch_key: str) -> str:
    """The spec's key rule, restated independently of mde_adv.import_torch."""
    *modules, leaf = re.sub(r"\.(\d+)", r"_\1", torch_key.removeprefix("module.")).split(".")
    collection = "batch_stats" if leaf.startswith("running_") else "params"
    return "/".join([collection, *modules, leaf])


def assert_encoder_imported(variables, encoder_state_dict, key_to_network_key):
    flat = flatten_variables(variables)
    imported = set()
    for key, tensor in encoder_state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        base = expected_flax_path(key_to_network_key(key))
        value = tensor.numpy()
        if value.ndim == 4:
            candidates = {base.replace("/weight", "/kernel"): value.transpose(2, 3, 1, 0)}
        else:
            candidates = {
                base.replace("/weight", "/scale")
                .replace("/running_mean", "/mean")
                .replace("/running_var", "/var"): value
            }
        ((path, expected),) = candidates.items()
        np.testing.assert_array_equal(flat[path], expected)
        imported.add(path)
    assert imported == {path for path in flat if path.split("/")[1] == "E"}


@pytest.mark.torch
@pytest.mark.parametrize("stub_init", [True, pytest.param(False, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    ("model", "encoder", "layout"),
    [("depth", "resnet18", "torchvision"), ("saliency", "drn_d_22", "drn")],
)
def test_imagenet_encoder_fills_e_and_keeps_the_seeded_init(
    torch_module, reference, tmp_path, monkeypatch, model, encoder, layout, stub_init
):
    torch = torch_module
    width = 0.25
    network = randomised_reference(reference, torch, model, encoder, width, seed=4)
    if layout == "torchvision":
        to_network_key = lambda key: f"E.{key}"
        classifier = {"fc.weight": torch.randn(1000, 128), "fc.bias": torch.randn(1000)}
    else:
        to_network_key = lambda key: re.sub(r"^layer(\d+)\.", r"E.base.\1.", key)
        classifier = {"fc.weight": torch.randn(1000, 128, 1, 1), "fc.bias": torch.randn(1000)}
    encoder_state_dict = {
        re.sub(r"^base\.(\d+)\.", r"layer\1.", key.removeprefix("E.")): value
        for key, value in network.state_dict().items()
        if key.startswith("E.")
    } | classifier
    weights = tmp_path / f"{encoder}.pth"
    torch.save(encoder_state_dict, weights)

    seed, init_variables = 3, models.init_variables
    if stub_init:  # the real init costs a long XLA compile; its values are the models' concern

        def keyed_init(network, key, input_hw):
            shapes = jax.eval_shape(lambda: init_variables(network, key, input_hw))
            fill = jax.random.uniform(key)
            return jax.tree.map(lambda s: jnp.full(s.shape, fill, s.dtype), shapes)

        monkeypatch.setattr(import_torch.models, "init_variables", keyed_init)
    out = import_torch.main(
        [
            "--model",
            model,
            "--encoder",
            encoder,
            "--width",
            str(width),
            "--imagenet-encoder",
            str(weights),
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    variables, metadata = load_variables(out)
    assert metadata["source"] == "imagenet_encoder" and metadata["seed"] == seed
    assert_encoder_imported(variables, encoder_state_dict, to_network_key)

    seeded = flatten_variables(
        models.init_variables(
            import_torch.build_model(model, encoder, width),
            jax.random.key(seed),
            import_torch.INIT_INPUT_HW,
        )
    )
    flat = flatten_variables(variables)
    assert set(flat) == set(seeded)
    not_encoder = [path for path in flat if path.split("/")[1] != "E"]
    assert any(path.startswith("params/") for path in not_encoder)
    for path in not_encoder:
        np.testing.assert_array_equal(flat[path], seeded[path])


def small_template() -> dict:
    shape = jax.ShapeDtypeStruct
    return {
        "params": {
            "E": {
                "layer1_0": {"conv1": {"kernel": shape((3, 1, 2, 4), np.float32)}},
                "base_0_1": {"scale": shape((4,), np.float32), "bias": shape((4,), np.float32)},
            },
            "D": {
                "up1": {"conv1_2": {"kernel": shape((5, 5, 4, 2), np.float32)}},
                "conv": {
                    "kernel": shape((3, 3, 2, 1), np.float32),
                    "bias": shape((1,), np.float32),
                },
            },
        },
        "batch_stats": {
            "E": {"base_0_1": {"mean": shape((4,), np.float32), "var": shape((4,), np.float32)}}
        },
    }


def small_state_dict(rng: np.random.Generator, prefix: str = "") -> dict[str, np.ndarray]:
    arrays = {
        "E.layer1.0.conv1.weight": rng.normal(size=(4, 2, 3, 1)),
        "E.base.0.1.weight": rng.normal(size=(4,)),
        "E.base.0.1.bias": rng.normal(size=(4,)),
        "E.base.0.1.running_mean": rng.normal(size=(4,)),
        "E.base.0.1.running_var": rng.uniform(0.5, 1.5, size=(4,)),
        "E.base.0.1.num_batches_tracked": np.array(7),
        "D.up1.conv1_2.weight": rng.normal(size=(2, 4, 5, 5)),
        "D.conv.weight": rng.normal(size=(1, 2, 3, 3)),
        "D.conv.bias": rng.normal(size=(1,)),
    }
    return {prefix + key: value for key, value in arrays.items()}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_conversion_needs_no_torch_and_maps_every_leaf(prefix):
    state_dict = small_state_dict(np.random.default_rng(0), prefix)
    variables = torch_state_dict_to_flax(state_dict, small_template())
    flat = flatten_variables(variables)
    assert set(flat) == set(flatten_variables(small_template()))
    assert all(leaf.dtype == np.float32 for leaf in flat.values())
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        path = expected_flax_path(key)
        if value.ndim == 4:
            path, value = path.replace("/weight", "/kernel"), value.transpose(2, 3, 1, 0)
        path = path.replace("/weight", "/scale").replace("/running_", "/")
        np.testing.assert_array_equal(flat[path], value.astype(np.float32))


@settings(max_examples=20, deadline=None)
@given(
    weight=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=4, max_dims=4, max_side=4),
        elements=st.floats(-10, 10, width=32),
    )
)
def test_kernels_are_transposed_from_oihw_to_hwio(weight):
    out_ch, in_ch, height, width = weight.shape
    template = {
        "params": {
            "c": {"kernel": jax.ShapeDtypeStruct((height, width, in_ch, out_ch), np.float32)}
        }
    }
    kernel = torch_state_dict_to_flax({"c.weight": weight}, template)["params"]["c"]["kernel"]
    for o, i, h, w in np.ndindex(*weight.shape):
        assert kernel[h, w, i, o] == weight[o, i, h, w]


def broken_state_dict() -> dict[str, np.ndarray]:
    state_dict = small_state_dict(np.random.default_rng(0))
    del state_dict["E.base.0.1.bias"], state_dict["E.base.0.1.running_var"]
    state_dict["E.extra.weight"] = np.zeros((4,))
    state_dict["module.D.up1.conv9.weight"] = np.zeros((2, 4, 5, 5))
    state_dict["D.conv.weight"] = np.zeros((2, 1, 3, 3))
    state_dict["E.base.0.1.running_mean"] = np.zeros((5,))
    return state_dict


BROKEN_ENTRIES = (
    "params/E/base_0_1/bias",
    "batch_stats/E/base_0_1/var",
    "E.extra.weight (4,)",
    "module.D.up1.conv9.weight (2, 4, 5, 5)",
    "D.conv.weight: (2, 1, 3, 3), expected (1, 2, 3, 3)",
    "E.base.0.1.running_mean: (5,), expected (4,)",
)


def test_every_offending_key_is_listed_in_one_error():
    with pytest.raises(TorchImportError) as caught:
        torch_state_dict_to_flax(broken_state_dict(), small_template())
    for entry in BROKEN_ENTRIES:
        assert entry in str(caught.value)


@pytest.mark.torch
def test_a_broken_checkpoint_file_names_the_file_and_every_key(torch_module, reference, tmp_path):
    torch = torch_module
    state_dict = reference.TorchDepthNet("resnet18", 0.25).state_dict()
    del state_dict["R.conv2.bias"]
    state_dict["R.conv3.weight"] = torch.zeros(1, 2, 5, 5)
    state_dict["MFF.conv.weight"] = torch.zeros(3, 3, 5, 5)
    checkpoint = tmp_path / "broken.pth.tar"
    torch.save(state_dict, checkpoint)
    with pytest.raises(TorchImportError) as caught:
        import_torch.import_authors_checkpoint(
            checkpoint, model="depth", encoder="resnet18", width=0.25
        )
    message = str(caught.value)
    assert str(checkpoint) in message
    for entry in (
        "params/R/conv2/bias",
        "R.conv3.weight (1, 2, 5, 5)",
        "MFF.conv.weight: (3, 3, 5, 5), expected (16, 16, 5, 5)",
    ):
        assert entry in message


@pytest.mark.torch
def test_unreadable_files_are_named(torch_module, tmp_path):
    torch = torch_module
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("these are not weights")
    absent = tmp_path / "absent.pth"
    not_tensors = tmp_path / "not_tensors.pth"
    torch.save({"E.conv1.weight": torch.zeros(1), "note": "text", "step": 3}, not_tensors)
    a_list = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], a_list)
    for path, detail in (
        (not_a_checkpoint, "weights_only=True"),
        (absent, "no such file"),
        (not_tensors, "not named tensors: 'note', 'step'"),
        (a_list, "got list"),
    ):
        with pytest.raises(TorchImportError, match=re.escape(str(path))) as caught:
            import_torch.read_torch_state_dict(path)
        assert detail in str(caught.value)


class CodeOnLoad:
    """A pickled object whose unpickling would create a file (arbitrary code execution)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.torch
def test_pickled_code_is_refused_and_never_runs(torch_module, tmp_path):
    marker = tmp_path / "code_ran"
    malicious = tmp_path / "malicious.pth.tar"
    torch_module.save(
        {"state_dict": {"E.conv1.weight": torch_module.zeros(1)}, "payload": CodeOnLoad(marker)},
        malicious,
    )
    with pytest.raises(TorchImportError, match=re.escape(str(malicious))):
        import_torch.import_authors_checkpoint(malicious, model="depth", encoder="resnet18")
    assert not marker.exists()


def test_importing_the_package_does_not_import_torch():
    code = (
        "import sys, mde_adv.import_torch, mde_adv.variables_io, mde_adv.models; "
        "sys.exit(int('torch' in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0


def test_exactly_one_source_is_required(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        import_torch.import_to_checkpoint(tmp_path / "out", model="depth")
    with pytest.raises(ValueError, match="exactly one"):
        import_torch.import_to_checkpoint(
            tmp_path / "out", model="depth", checkpoint="a.pth", imagenet_encoder="b.pth"
        )
    assert not (tmp_path / "out").exists()
