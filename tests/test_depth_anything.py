"""Depth Anything V2 in Flax: parity with `transformers`' DepthAnythingForDepthEstimation
(random weights, nothing downloaded), position-embedding interpolation against PyTorch's
bicubic, and the import of both released layouts from files written here."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mde_adv import import_depth_anything as ida
from mde_adv.import_torch import TorchImportError
from mde_adv.models.depth_anything import SIZES, DepthAnythingNet, DepthAnythingV2
from mde_adv.models.depth_anything_vit import bicubic_weights, interpolate_pos_embed

PARITY_TOLERANCE = 1e-4  # max |flax − transformers| / max |transformers|


@pytest.fixture(scope="module")
def transformers_module(torch_module):
    del torch_module
    return pytest.importorskip("transformers")


def hf_model(transformers, torch, size: str, kind: str, seed: int = 0):
    """DepthAnythingForDepthEstimation of our `size` with every float tensor perturbed by
    N(0, 0.05²) noise (biases, LayerNorm and layer scales away from their init)."""
    s = SIZES[size]
    backbone = transformers.Dinov2Config(
        hidden_size=s.embed_dim,
        num_hidden_layers=s.depth,
        num_attention_heads=s.num_heads,
        image_size=14 * s.pos_grid,
        patch_size=14,
        out_indices=[block + 1 for block in s.out_blocks],
        reshape_hidden_states=False,
    )
    config = transformers.DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=s.embed_dim,
        neck_hidden_sizes=list(s.out_channels),
        fusion_hidden_size=s.features,
        head_hidden_size=32,
        depth_estimation_type=kind,
        max_depth=20 if kind == "metric" else 1,  # transformers scales relative outputs too
    )
    torch.manual_seed(seed)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.05 * torch.randn_like(value))
        model.head.conv3.bias.add_(1.0)  # a relative head's ReLU then passes most pixels
    return model


def state_dict_numpy(model) -> dict[str, np.ndarray]:
    return {key: value.detach().numpy().copy() for key, value in model.state_dict().items()}


def assert_parity(torch, model, size: str, kind: str, input_hw, dtype=jnp.float32, tol=None):
    template = ida.variables_template(ida.build_network(size, kind, 20.0))
    variables = ida.state_dict_to_variables(state_dict_numpy(model), template)
    images = np.random.default_rng(1).normal(size=(2, *input_hw, 3)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2))).predicted_depth.numpy()
    network = DepthAnythingV2(size, kind, 20.0, dtype=dtype)
    got = np.asarray(jax.jit(network.apply)({"params": variables["params"]["dav2"]}, images))
    assert got.shape == expected.shape == (2, *input_hw)
    assert np.mean(expected > 0) > 0.5  # not a degenerate all-zero output
    error = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    assert error <= (tol or PARITY_TOLERANCE), f"{size} {kind}: relative error {error:.2e}"
    return error


@pytest.mark.parametrize("kind", ["relative", "metric"])
def test_tiny_parity_with_transformers(transformers_module, torch_module, kind):
    """3×5 patches on a 4×4 trained grid: the position embedding is interpolated."""
    model = hf_model(transformers_module, torch_module, "tiny", kind)
    assert_parity(torch_module, model, "tiny", kind, (42, 70))


def test_tiny_bfloat16_close_to_float32(transformers_module, torch_module):
    model = hf_model(transformers_module, torch_module, "tiny", "metric")
    assert_parity(torch_module, model, "tiny", "metric", (42, 70), jnp.bfloat16, tol=5e-2)


@pytest.mark.slow
def test_vits_parity_with_transformers(transformers_module, torch_module):
    model = hf_model(transformers_module, torch_module, "vits", "relative")
    assert_parity(torch_module, model, "vits", "relative", (196, 252))


@pytest.mark.parametrize(
    ("in_size", "out_size", "scale"), [(4, 3, None), (4, 7, None), (37, 16, None), (6, 9, 9.1 / 6)]
)
def test_bicubic_weights_match_torch(torch_module, in_size, out_size, scale):
    """Rows sum to 1 and reproduce F.interpolate(bicubic, align_corners=False) by size or by
    scale factor (the original code's offset form)."""
    torch = torch_module
    weights = bicubic_weights(in_size, out_size, scale)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    signal = np.random.default_rng(0).normal(size=(in_size, in_size)).astype(np.float32)
    kwargs = {"size": (out_size, out_size)} if scale is None else {"scale_factor": scale}
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(signal)[None, None], mode="bicubic", align_corners=False, **kwargs
    )[0, 0].numpy()
    np.testing.assert_allclose(weights @ signal @ weights.T, expected, atol=1e-5)


def test_pos_embed_unchanged_on_its_own_grid_and_resized_otherwise():
    pos_embed = jax.random.normal(jax.random.key(0), (1, 1 + 16, 8))
    assert interpolate_pos_embed(pos_embed, (4, 4)) is pos_embed
    resized = interpolate_pos_embed(pos_embed, (3, 5))
    assert resized.shape == (1, 1 + 15, 8)
    np.testing.assert_array_equal(resized[:, 0], pos_embed[:, 0])  # class position kept
    # a constant embedding stays constant (rows of the matrices sum to one)
    constant = jnp.ones((1, 17, 2))
    np.testing.assert_allclose(interpolate_pos_embed(constant, (6, 2), offset=0.1), 1.0, rtol=1e-6)


def test_net_contract_and_input_size_rule():
    """N's contract: [B, H, W, 3] → [B, H/2, W/2, 1]; input_hw must be multiples of 14."""
    network = DepthAnythingNet(size="tiny", kind="metric", input_hw=(28, 42))
    images = jnp.zeros((1, 30, 44, 3))
    variables = network.init(jax.random.key(0), images)
    out = network.apply(variables, images, train=False)
    assert out.shape == (1, 15, 22, 1) and out.dtype == jnp.float32
    assert np.all((np.asarray(out) > 0) & (np.asarray(out) < 20.0))
    with pytest.raises(ValueError, match="multiples of 14"):
        DepthAnythingNet(size="tiny", input_hw=(30, 42)).init(jax.random.key(0), images)


# -- import of released layouts, from files written here ------------------------------------

_OLD_NAMES = {
    "q_proj": "attention.query",
    "k_proj": "attention.key",
    "v_proj": "attention.value",
    "o_proj": "output.dense",
}


def released_hf_names(state_dict):
    """Current transformers names → those of the released *-hf safetensors."""
    return {
        re.sub(
            r"attention\.(q_proj|k_proj|v_proj|o_proj)\.",
            lambda m: f"attention.{_OLD_NAMES[m[1]]}.",
            key,
        ): value
        for key, value in state_dict.items()
    }


def original_pth_layout(state_dict):
    """transformers names → the original repository's, written out independently here."""
    out = {}
    for key, value in state_dict.items():
        key = key.replace(
            "backbone.embeddings.patch_embeddings.projection", "pretrained.patch_embed.proj"
        )
        key = key.replace("backbone.embeddings.position_embeddings", "pretrained.pos_embed")
        key = key.replace("backbone.embeddings.", "pretrained.")
        key = key.replace("backbone.encoder.layer.", "pretrained.blocks.")
        key = key.replace("backbone.layernorm", "pretrained.norm")
        key = re.sub(r"layer_scale(\d)\.lambda1", r"ls\1.gamma", key)
        key = key.replace("attention.o_proj", "attn.proj")
        key = key.replace("neck.reassemble_stage.layers.", "depth_head.@")
        key = re.sub(r"@(\d)\.projection", r"projects.\1", key)
        key = re.sub(r"@(\d)\.resize", r"resize_layers.\1", key)
        key = re.sub(
            r"neck\.convs\.(\d)", lambda m: f"depth_head.scratch.layer{int(m[1]) + 1}_rn", key
        )
        key = re.sub(
            r"neck\.fusion_stage\.layers\.(\d)",
            lambda m: f"depth_head.scratch.refinenet{4 - int(m[1])}",
            key,
        )
        key = key.replace(".projection.", ".out_conv.")
        key = re.sub(r"residual_layer(\d)\.convolution(\d)", r"resConfUnit\1.conv\2", key)
        key = key.replace("head.conv1", "depth_head.scratch.output_conv1")
        key = key.replace("head.conv2", "depth_head.scratch.output_conv2.0")
        key = key.replace("head.conv3", "depth_head.scratch.output_conv2.2")
        out[key] = value
    for block in {m[1] for k in out if (m := re.match(r"pretrained\.blocks\.(\d+)\.", k))}:
        for leaf in ("weight", "bias"):
            parts = [out.pop(f"pretrained.blocks.{block}.attention.{p}_proj.{leaf}") for p in "qkv"]
            out[f"pretrained.blocks.{block}.attn.qkv.{leaf}"] = np.concatenate(parts)
    return out


@pytest.fixture(scope="module")
def tiny_relative(transformers_module, torch_module):
    model = hf_model(transformers_module, torch_module, "tiny", "relative", seed=3)
    template = ida.variables_template(ida.build_network("tiny", "relative"))
    return state_dict_numpy(model), ida.state_dict_to_variables(state_dict_numpy(model), template)


def _assert_same_variables(a, b):
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    for (_, x), (_, y) in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_import_reads_both_layouts_from_files(torch_module, tiny_relative, tmp_path):
    from safetensors.numpy import save_file

    torch = torch_module
    state_dict, direct = tiny_relative
    save_file(state_dict, tmp_path / "model.safetensors")
    save_file(released_hf_names(state_dict), tmp_path / "released.safetensors")
    original = original_pth_layout(state_dict)
    assert all(k.startswith(("pretrained.", "depth_head.")) for k in original)
    torch.save({k: torch.from_numpy(v) for k, v in original.items()}, tmp_path / "dav2.pth")
    for name in ("model.safetensors", "released.safetensors", "dav2.pth"):
        imported = ida.import_checkpoint(tmp_path / name, size="tiny", kind="relative")
        _assert_same_variables(imported, direct)
    out = ida.main(
        [
            "--size",
            "tiny",
            "--kind",
            "relative",
            "--checkpoint",
            str(tmp_path / "dav2.pth"),
            "--out",
            str(tmp_path / "ckpt"),
        ]
    )
    from mde_adv.variables_io import load_variables

    loaded, metadata = load_variables(out)
    _assert_same_variables(loaded, direct)
    assert metadata["encoder"] == "dav2_tiny" and metadata["head"] == "relative"


def test_import_errors_name_every_misfit(torch_module, tiny_relative, tmp_path):
    from safetensors.numpy import save_file

    state_dict = dict(tiny_relative[0])
    del state_dict["backbone.encoder.layer.1.attention.k_proj.weight"]  # breaks q, k, v fusion
    state_dict["neck.convs.0.weight"] = np.zeros((8, 8, 3, 3), np.float32)  # wrong in-channels
    state_dict["head.extra.weight"] = np.zeros((1,), np.float32)
    save_file(state_dict, tmp_path / "broken.safetensors")
    with pytest.raises(TorchImportError) as info:
        ida.import_checkpoint(tmp_path / "broken.safetensors", size="tiny", kind="relative")
    message = str(info.value)
    assert "broken.safetensors (transformers layout, size tiny)" in message
    assert "params/dav2/pretrained/blocks_1/attn/qkv/kernel" in message  # missing
    assert "backbone.encoder.layer.1.attention.q_proj.weight" in message  # unexpected
    assert "head.extra.weight" in message
    assert "depth_head.scratch.layer1_rn.weight: (8, 8, 3, 3), expected (16, 8, 3, 3)" in message
    with pytest.raises(TorchImportError, match="no such file"):
        ida.import_checkpoint(tmp_path / "absent.safetensors", size="tiny", kind="relative")
