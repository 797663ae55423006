"""The networks N (DepthNet) and G (SaliencyNet): sizes, shapes, naming, BatchNorm, dtypes.

Paper-setting models are only traced (jax.eval_shape: free); real forwards use narrow models
on small inputs.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from mde_adv.models import (
    DepthNet,
    SaliencyNet,
    count_params,
    depth_net,
    init_variables,
    saliency_net,
)

PAPER_HW = (228, 304)
DRN_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def abstract_variables(model, input_hw):
    images = jnp.zeros((1, *input_hw, 3))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))


def abstract_call_shapes(model, input_hw) -> dict[str, tuple[int, ...]]:
    """'/'-joined module path → shape of its output, traced on a batch of 1 (no compute)."""
    variables = abstract_variables(model, input_hw)
    apply = lambda v: model.apply(
        v,
        jnp.zeros((1, *input_hw, 3)),
        train=False,
        capture_intermediates=True,
        mutable=["intermediates"],
    )
    _, state = jax.eval_shape(apply, variables)
    flat = traverse_util.flatten_dict(state["intermediates"], sep="/")
    return {
        path.removesuffix("__call__").rstrip("/"): outputs[0].shape
        for path, outputs in flat.items()
        if hasattr(outputs[0], "shape")
    }


def flat_paths(tree) -> dict[str, tuple[int, ...]]:
    return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(tree, sep="/").items()}


@functools.cache
def paper_variables(kind: str):
    model = DepthNet("resnet50") if kind == "N" else SaliencyNet("drn_d_22")
    return abstract_variables(model, PAPER_HW)


# ----------------------------------------------------------------------------- paper setting


def test_depth_net_paper_parameter_counts():
    params = paper_variables("N")["params"]
    per_module = {name: count_params(tree) for name, tree in params.items()}
    assert per_module == {"E": 23_508_032, "D": 40_054_400, "MFF": 3_184_128, "R": 822_913}
    assert count_params(params) == 67_569_473
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize(
    ("encoder", "expected"),
    # torchvision's ResNet-18/34 totals (11,689,512; 21,797,672) minus the fc (513,000).
    [("resnet18", 11_176_512), ("resnet34", 21_284_672)],
)
def test_resnet_encoder_parameter_counts(encoder, expected):
    params = abstract_variables(DepthNet(encoder), (64, 64))["params"]
    assert count_params(params["E"]) == expected


def _conv_bn(kernel_size: int, in_channels: int, out_channels: int) -> int:
    return kernel_size**2 * in_channels * out_channels + 2 * out_channels


def drn_encoder_count(bottleneck: bool, counts: tuple[int, ...]) -> int:
    """Trainable parameters of DRN-D levels 0–8 derived from the spec's table (§2)."""
    expansion = 4 if bottleneck else 1
    total = _conv_bn(7, 3, 16) + counts[0] * _conv_bn(3, 16, 16) + _conv_bn(3, 16, 32)
    total += (counts[1] - 1) * _conv_bn(3, 32, 32)
    in_channels = 32
    for level, stride in zip(range(3, 7), (2, 2, 1, 1), strict=True):
        planes = DRN_CHANNELS[level - 1]
        out_channels = planes * expansion
        for i in range(counts[level - 1]):
            if bottleneck:
                total += _conv_bn(1, in_channels, planes) + _conv_bn(3, planes, planes)
                total += _conv_bn(1, planes, out_channels)
            else:
                total += _conv_bn(3, in_channels, planes) + _conv_bn(3, planes, planes)
            if i == 0 and (stride != 1 or in_channels != out_channels):
                total += _conv_bn(1, in_channels, out_channels)
            in_channels = out_channels
    total += _conv_bn(3, in_channels, 512) + (counts[6] - 1) * _conv_bn(3, 512, 512)
    return total + counts[7] * _conv_bn(3, 512, 512)


def test_saliency_net_paper_parameter_counts():
    params = paper_variables("G")["params"]
    assert {name: count_params(tree) for name, tree in params.items()} == {
        "E": 15_880_752,
        "D": 9_379_009,
    }
    assert count_params(params) == 25_259_761
    # The independent derivation used below for D-38/54 reproduces the spec's D-22 count.
    assert drn_encoder_count(False, (1, 1, 2, 2, 2, 2, 1, 1)) == 15_880_752


@pytest.mark.parametrize(("encoder", "bottleneck"), [("drn_d_38", False), ("drn_d_54", True)])
def test_deeper_drn_parameter_counts(encoder, bottleneck):
    params = abstract_variables(SaliencyNet(encoder), (64, 64))["params"]
    assert count_params(params["E"]) == drn_encoder_count(bottleneck, (1, 1, 3, 4, 6, 3, 1, 1))
    assert count_params(params["D"]) == 9_379_009
    if bottleneck:  # level 7's conv maps the 2048 channels of level 6 to 512
        assert params["E"]["base_7_0"]["kernel"].shape == (3, 3, 2048, 512)


def test_depth_net_intermediate_shapes_for_228x304():
    shapes = abstract_call_shapes(DepthNet("resnet50"), PAPER_HW)
    expected = {
        "E/bn1": (114, 152, 64),
        "E/layer1_2": (57, 76, 256),
        "E/layer2_3": (29, 38, 512),
        "E/layer3_5": (15, 19, 1024),
        "E/layer4_2": (8, 10, 2048),
        "D/bn": (8, 10, 1024),
        "D/up1": (15, 19, 512),
        "D/up2": (29, 38, 256),
        "D/up3": (57, 76, 128),
        "D/up4": (114, 152, 64),
        **{f"MFF/up{k}": (114, 152, 16) for k in range(1, 5)},
        "MFF/bn": (114, 152, 64),
        "R/bn0": (114, 152, 128),
        "R/bn1": (114, 152, 128),
        "R/conv2": (114, 152, 1),
        "": (114, 152, 1),
    }
    assert {path: shapes[path] for path in expected} == {
        path: (1, *shape) for path, shape in expected.items()
    }


def test_saliency_net_intermediate_shapes_for_228x304():
    shapes = abstract_call_shapes(SaliencyNet("drn_d_22"), PAPER_HW)
    expected = {
        "E/base_0_1": (228, 304, 16),
        "E/base_1_1": (228, 304, 16),
        "E/base_2_1": (114, 152, 32),
        "E/base_3_1": (57, 76, 64),
        "E/base_4_1": (29, 38, 128),
        "E/base_5_1": (29, 38, 256),
        "E/base_6_1": (29, 38, 512),
        "E/base_7_1": (29, 38, 512),
        "E/base_8_1": (29, 38, 512),
        "D/up1": (57, 76, 256),
        "D/up2": (114, 152, 128),
        "D/up3": (228, 304, 64),
        "D/conv": (228, 304, 1),
        "": (228, 304, 1),
    }
    assert {path: shapes[path] for path in expected} == {
        path: (1, *shape) for path, shape in expected.items()
    }


# ------------------------------------------------------------------------------------- naming


def torch_key_to_path(key: str) -> tuple[str, ...]:
    """The importer's rule: split at '.', drop 'module', join numeric parts to the previous."""
    parts = key.split(".")
    parts = parts[1:] if parts[0] == "module" else parts
    path: list[str] = []
    for part in parts:
        if part.isdigit():
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path)


TORCH_LEAVES = {
    "weight": None,  # conv kernel or BN scale: resolved by the variable's rank
    "bias": ("params", "bias"),
    "running_mean": ("batch_stats", "mean"),
    "running_var": ("batch_stats", "var"),
}


def flax_location(key: str, variables) -> tuple[int, ...]:
    """Shape of the Flax variable a torch state_dict key names (KeyError if absent)."""
    *modules, leaf = torch_key_to_path(key)
    if leaf == "weight":
        tree = variables["params"]
        for name in modules:
            tree = tree[name]
        return tree["kernel" if "kernel" in tree else "scale"].shape
    collection, name = TORCH_LEAVES[leaf]
    tree = variables[collection]
    for module in modules:
        tree = tree[module]
    return tree[name].shape


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("module.E.conv1.weight", (7, 7, 3, 64)),
        ("module.E.bn1.running_var", (64,)),
        ("module.E.layer1.0.conv1.weight", (1, 1, 64, 64)),
        ("module.E.layer1.0.downsample.0.weight", (1, 1, 64, 256)),
        ("module.E.layer2.0.conv2.weight", (3, 3, 128, 128)),
        ("module.E.layer2.0.downsample.1.bias", (512,)),
        ("module.E.layer3.5.bn3.running_mean", (1024,)),
        ("module.E.layer4.2.conv3.weight", (1, 1, 512, 2048)),
        ("module.D.conv.weight", (1, 1, 2048, 1024)),
        ("module.D.bn.weight", (1024,)),
        ("module.D.up1.conv1_2.weight", (3, 3, 512, 512)),
        ("module.D.up4.bn2.running_var", (64,)),
        ("module.MFF.up4.conv2.weight", (5, 5, 2048, 16)),
        ("module.MFF.conv.weight", (5, 5, 64, 64)),
        ("module.R.conv0.weight", (5, 5, 128, 128)),
        ("module.R.bn1.bias", (128,)),
        ("module.R.conv2.weight", (5, 5, 128, 1)),
        ("module.R.conv2.bias", (1,)),
    ],
)
def test_depth_net_variables_follow_torch_key_rule(key, shape):
    assert flax_location(key, paper_variables("N")) == shape


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("module.E.base.0.0.weight", (7, 7, 3, 16)),
        ("module.E.base.0.1.running_mean", (16,)),
        ("module.E.base.1.0.weight", (3, 3, 16, 16)),
        ("module.E.base.2.1.weight", (32,)),
        ("module.E.base.3.0.downsample.0.weight", (1, 1, 32, 64)),
        ("module.E.base.3.0.downsample.1.weight", (64,)),
        ("module.E.base.3.1.conv2.weight", (3, 3, 64, 64)),
        ("module.E.base.5.0.downsample.1.running_var", (256,)),
        ("module.E.base.6.1.bn2.bias", (512,)),
        ("module.E.base.7.0.weight", (3, 3, 512, 512)),
        ("module.E.base.8.1.running_var", (512,)),
        ("module.D.up1.conv1.weight", (5, 5, 512, 256)),
        ("module.D.up3.bn1_2.weight", (64,)),
        ("module.D.conv.weight", (3, 3, 64, 1)),
        ("module.D.conv.bias", (1,)),
    ],
)
def test_saliency_net_variables_follow_torch_key_rule(key, shape):
    assert flax_location(key, paper_variables("G")) == shape


def _shortcut_blocks(params, prefix: str) -> set[str]:
    return {
        name for name, tree in params.items() if name.startswith(prefix) and "downsample_0" in tree
    }


def test_shortcuts_exist_exactly_where_channels_or_stride_change():
    resnet18 = abstract_variables(DepthNet("resnet18"), (64, 64))["params"]["E"]
    assert _shortcut_blocks(resnet18, "layer") == {"layer2_0", "layer3_0", "layer4_0"}
    resnet50 = paper_variables("N")["params"]["E"]
    assert _shortcut_blocks(resnet50, "layer") == {f"layer{k}_0" for k in range(1, 5)}
    drn22 = paper_variables("G")["params"]["E"]
    assert _shortcut_blocks(drn22, "base") == {f"base_{k}_0" for k in range(3, 7)}
    assert {name for name in drn22 if name.startswith(("base_1", "base_2", "base_7"))} == {
        "base_1_0",
        "base_1_1",
        "base_2_0",
        "base_2_1",
        "base_7_0",
        "base_7_1",
    }


@pytest.mark.parametrize(("kind", "biased_conv"), [("N", "R/conv2"), ("G", "D/conv")])
def test_only_the_last_conv_has_a_bias(kind, biased_conv):
    paths = flat_paths(paper_variables(kind)["params"])
    conv_modules = {path.rsplit("/", 1)[0] for path in paths if path.endswith("/kernel")}
    assert {module for module in conv_modules if f"{module}/bias" in paths} == {biased_conv}
    batch_stats = flat_paths(paper_variables(kind)["batch_stats"])
    bn_modules = {path.rsplit("/", 1)[0] for path in paths if path.endswith("/scale")}
    assert {path.rsplit("/", 1)[0] for path in batch_stats} == bn_modules


# ------------------------------------------------------------------- small models, real forward

SMALL_N = DepthNet("resnet18", width=0.125)
SMALL_G = SaliencyNet("drn_d_22", width=0.125)
SMALL_HW = (57, 76)  # H odd and W not a multiple of 8: the sizes do not divide evenly


@functools.cache
def small_variables(kind: str):
    # An 'rbg' key: compiling threefry for every parameter would make this init ~4× slower.
    key = jax.random.key(0, impl="rbg")
    return init_variables(SMALL_N if kind == "N" else SMALL_G, key, SMALL_HW)


def _images(batch: int, input_hw: tuple[int, int], seed: int) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (batch, *input_hw, 3))


@functools.cache
def _apply_fn(model, train: bool):
    if train:
        return jax.jit(
            lambda v, x: model.apply(
                v,
                x,
                train=True,
                mutable=["batch_stats", "intermediates"],
                capture_intermediates=True,
            )
        )
    return jax.jit(lambda v, x: model.apply(v, x, train=False))


@pytest.mark.parametrize(
    ("input_hw", "depth_hw"),
    [((57, 76), (28, 38)), ((64, 80), (32, 40)), ((114, 152), (57, 76)), ((230, 305), (115, 152))],
)
def test_output_sizes_of_small_models(input_hw, depth_hw):
    for model, out_hw in ((SMALL_N, depth_hw), (SMALL_G, input_hw)):
        variables = abstract_variables(model, (64, 80))
        out = jax.eval_shape(
            lambda v, m=model: m.apply(v, _images(2, input_hw, 0), train=False), variables
        )
        assert (out.shape, out.dtype) == ((2, *out_hw, 1), jnp.float32)


def test_small_models_forward_finite():
    input_hw = SMALL_HW
    images = _images(2, input_hw, 1)
    depth = _apply_fn(SMALL_N, False)(small_variables("N"), images)
    assert depth.shape == (2, input_hw[0] // 2, input_hw[1] // 2, 1)
    assert bool(jnp.all(jnp.isfinite(depth))) and float(jnp.std(depth)) > 0
    mask = _apply_fn(SMALL_G, False)(small_variables("G"), images)
    assert mask.shape == (2, *input_hw, 1)
    assert bool(jnp.all((mask > 0) & (mask < 1))) and float(jnp.std(mask)) > 0


@pytest.mark.parametrize("model", [SMALL_N, SMALL_G], ids=["N", "G"])
@pytest.mark.parametrize("shape", [(1, 16, 16, 4), (16, 16, 3)])
def test_models_reject_inputs_that_are_not_rgb_batches(model, shape):
    with pytest.raises(AssertionError):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


# ------------------------------------------------------------------------------- BatchNorm modes


@pytest.mark.parametrize("kind", ["N", "G"])
def test_inference_uses_running_statistics_and_train_uses_batch_statistics(kind):
    """An image's inference output ignores its batch-mates; its train-mode output does not."""
    model, variables = (SMALL_N if kind == "N" else SMALL_G), small_variables(kind)
    images = _images(3, SMALL_HW, 2)
    with_b, with_c = images[jnp.array([0, 1])], images[jnp.array([0, 2])]
    infer = _apply_fn(model, False)
    np.testing.assert_allclose(infer(variables, with_b)[0], infer(variables, with_c)[0], atol=1e-5)
    train = _apply_fn(model, True)
    (depth_b, _), (depth_c, _) = train(variables, with_b), train(variables, with_c)
    assert float(jnp.max(jnp.abs(depth_b[0] - depth_c[0]))) > 1e-3


def test_train_mode_moves_running_statistics_by_momentum_point_one():
    variables = small_variables("N")
    images = _images(2, SMALL_HW, 3)
    _, state = _apply_fn(SMALL_N, True)(variables, images)
    old = traverse_util.flatten_dict(variables["batch_stats"], sep="/")
    new = traverse_util.flatten_dict(state["batch_stats"], sep="/")
    assert set(new) == set(old)
    assert [path for path in new if np.array_equal(new[path], old[path])] == []
    # The stem's BN sees conv1's output: running mean 0 → 0.1·batch mean, var 1 → 0.9 + 0.1·var.
    conv1_out = np.asarray(state["intermediates"]["E"]["conv1"]["__call__"][0], np.float64)
    conv1_out = conv1_out.reshape(-1, conv1_out.shape[-1])
    np.testing.assert_allclose(new["E/bn1/mean"], 0.1 * conv1_out.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(new["E/bn1/var"], 0.9 + 0.1 * conv1_out.var(0, ddof=1), rtol=1e-4)


# ------------------------------------------------------------------------------------ bfloat16


@pytest.mark.parametrize("model_cls", [DepthNet, SaliencyNet])
def test_bfloat16_models_keep_float32_params_and_output(model_cls):
    encoder = "resnet18" if model_cls is DepthNet else "drn_d_22"
    model = model_cls(encoder, width=0.125, dtype=jnp.bfloat16)
    variables = abstract_variables(model, (32, 32))
    dtypes = {leaf.dtype for leaf in jax.tree_util.tree_leaves(variables)}
    assert dtypes == {jnp.dtype(jnp.float32)}
    out = jax.eval_shape(
        lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), train=False), variables
    )
    assert out.dtype == jnp.float32


def test_bfloat16_depth_close_to_float32():
    variables = small_variables("N")
    images = _images(2, SMALL_HW, 4)
    reference = _apply_fn(SMALL_N, False)(variables, images)
    bf16_model = DepthNet("resnet18", width=0.125, dtype=jnp.bfloat16)
    depth = jax.jit(lambda v, x: bf16_model.apply(v, x, train=False))(variables, images)
    assert depth.dtype == jnp.float32
    relative_error = float(jnp.linalg.norm(depth - reference) / jnp.linalg.norm(reference))
    assert relative_error < 0.05


# ------------------------------------------------------------------------- builders and helpers


def test_builders_read_plain_mappings_and_config_dicts():
    config = ml_collections.ConfigDict({"encoder": "resnet34", "width": 0.5, "dtype": "bfloat16"})
    model = depth_net(config, axis_name="data")
    assert (model.encoder, model.width, model.dtype, model.axis_name) == (
        "resnet34",
        0.5,
        jnp.bfloat16,
        "data",
    )
    model = saliency_net({"encoder": "drn_d_54", "width": 0.25, "dtype": "float32"})
    assert (model.encoder, model.width, model.dtype, model.axis_name) == (
        "drn_d_54",
        0.25,
        jnp.float32,
        None,
    )


@pytest.mark.parametrize(
    ("builder", "config", "culprit"),
    [
        (depth_net, {"encoder": "drn_d_22"}, "drn_d_22"),
        (saliency_net, {"encoder": "resnet50"}, "resnet50"),
        (depth_net, {"width": 1.0}, "encoder"),
        (depth_net, {"encoder": "resnet18", "dtype": "float16"}, "float16"),
        (saliency_net, {"encoder": "drn_d_22", "width": 0}, "width"),
    ],
)
def test_builders_name_the_bad_config_value(builder, config, culprit):
    with pytest.raises(ValueError, match=culprit):
        builder(config)


def test_modules_reject_unknown_encoders():
    for model in (DepthNet("resnet101"), SaliencyNet("drn_d_105")):
        with pytest.raises(ValueError, match=model.encoder):
            abstract_variables(model, (32, 32))


def test_init_variables_and_count_params():
    variables = small_variables("G")
    assert set(variables) == {"params", "batch_stats"}
    leaves = jax.tree_util.tree_leaves(variables["params"])
    assert count_params(variables["params"]) == sum(int(np.prod(leaf.shape)) for leaf in leaves)
    assert count_params({"a": jnp.zeros((2, 3)), "b": [jnp.zeros(4)]}) == 10
