"""What used to give a wrong result with exit code 0, or an error that hid its cause, now stops
with an error naming the file, field or value at fault (issue 15)."""

import io
import json
import logging
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image

from configs import smoke
from mde_adv import attack_image, attacks, experiment, import_torch, run_checks, variables_io
from mde_adv.data import builders, nyu_readers, pipeline
from mde_adv.data.errors import (
    DataFormatError,
    DatasetNotBuiltError,
    DatasetSourcesChangedError,
    UnknownDatasetError,
)
from mde_adv.train import checkpoints, steps

H, W = 480, 640


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def _write_test_layout(root: pathlib.Path, depth_code: np.ndarray) -> None:
    """One test pair in the csv + PNG layout: RGB PNG and a depth PNG of `depth_code`."""
    (root / "data" / "nyu2_test").mkdir(parents=True)
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    (root / "data/nyu2_test/00000_colors.png").write_bytes(_png(rgb))
    (root / "data/nyu2_test/00000_depth.png").write_bytes(_png(depth_code))
    (root / "data/nyu2_test.csv").write_text(
        "data/nyu2_test/00000_colors.png,data/nyu2_test/00000_depth.png\n"
    )


# ------------------------------------------------------------------------------- data


def test_8bit_test_depth_is_an_error_naming_file_and_row(tmp_path):
    _write_test_layout(tmp_path, np.full((H, W), 128, np.uint8))  # 8-bit: 5.02 m everywhere
    with pytest.raises(DataFormatError, match=r"00000_depth\.png.*row 1.*16-bit"):
        list(nyu_readers.csv_png_examples(tmp_path, "nyu2_test.csv", allow_holes=False))


def test_8bit_train_depth_stays_accepted(tmp_path):
    (tmp_path / "d").mkdir()
    depth = nyu_readers.decode_depth_png(_png(np.full((4, 4), 255, np.uint8)), "d")
    np.testing.assert_allclose(depth, 10.0)


def test_rebuild_after_the_sources_changed_refuses(tmp_path):
    manual, data_dir = tmp_path / "manual", tmp_path / "tfds"
    _write_test_layout(manual, np.full((H, W), 2000, np.uint16))
    name = "nyu_depth_v2_manual/csv_png_test"
    builder = builders.prepare(name, str(data_dir), manual)
    assert builder.info.splits["test"].num_examples == 1
    builders.prepare(name, str(data_dir), manual)  # same files: reused
    (manual / "data/nyu2_test/00000_depth.png").write_bytes(_png(np.full((H, W), 3000, np.uint16)))
    with pytest.raises(DatasetSourcesChangedError, match=r"00000_depth\.png.*delete"):
        builders.prepare(name, str(data_dir), manual)
    # the prepared folder is accepted wherever a name is, and reads the stored pair
    folder = str(builder.data_dir)
    source = pipeline.load_split(folder, "test")
    assert float(source[0]["depth"].mean()) == pytest.approx(2.0)
    assert builders.prepare(folder, None).info.splits["test"].num_examples == 1


def test_dataset_names_fail_with_short_documented_errors(tmp_path):
    with pytest.raises(UnknownDatasetError, match="nyu_depth_v2_manual/csv_png_test") as error:
        pipeline.load_split("nyu_depth_v2_manual/no_such_config", "test", str(tmp_path))
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(DatasetNotBuiltError, match=r"no dataset_info\.json"):
        pipeline.load_split(str(tmp_path), "test")
    with pytest.raises(DatasetNotBuiltError, match="csv_png_test"):
        pipeline.load_split("nyu_depth_v2_manual/csv_png_test", "test", str(tmp_path))


def test_import_mde_adv_registers_the_builders():
    code = (
        "import mde_adv, tensorflow_datasets as tfds; "
        "print(tfds.builder('nyu_depth_v2_manual/csv_png_test', data_dir='/nonexistent').name)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "nyu_depth_v2_manual"


# ------------------------------------------------------------------------ main job


def _smoke(**overrides):
    config = smoke.get_config()
    for field, value in overrides.items():
        node = config
        *parents, leaf = field.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def _finish(workdir: pathlib.Path, stage: str) -> None:
    experiment.mark_done(workdir, stage, {"seconds": 0})


def test_rerun_of_a_finished_workdir_with_other_settings_names_the_fields(tmp_path):
    config = _smoke(stages=("report",))
    (tmp_path / "config.json").write_text(config.to_json_best_effort(indent=2))
    _finish(tmp_path, "data")
    changed = _smoke(**{"stages": ("report",), "seed": 1, "depth_net.width": 0.25})
    with pytest.raises(run_checks.RunConfigError, match=r"depth_net\.width.*seed: 0 → 1"):
        experiment.run(changed, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 0  # not overwritten


def test_report_over_an_unfinished_evaluation_refuses(tmp_path):
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "per_image.jsonl").write_text("{}\n")
    with pytest.raises(run_checks.RunConfigError, match=r"'report'.*'evaluate'.*not finished"):
        experiment.run(_smoke(stages=("report",)), tmp_path)
    assert not (tmp_path / "report.md").exists()


def test_bad_eval_value_is_found_before_the_first_stage(tmp_path):
    config = _smoke(stages=("data", "train_depth", "evaluate"))
    config.eval.table2.eps = [0.1, -1.0]
    with pytest.raises(run_checks.RunConfigError, match=r"eval_config\.table2\.eps"):
        experiment.run(config, tmp_path)
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "data").exists()


def test_a_relative_depth_anything_n_is_checked_before_the_first_stage(tmp_path):
    """A relative N runs with per-image alignment (mde_adv.alignment): a bad depth range of the
    alignment, a table it leaves undefined or a non-DAv2 encoder is refused, naming the field;
    a valid relative N passes the check."""
    config = _smoke(stages=("data", "train_depth", "evaluate"))
    config.depth_net = dict(encoder="dav2_tiny", kind="relative", input_hw=(28, 42))
    assert "targeted" in config.eval.tables
    with pytest.raises(run_checks.RunConfigError, match=r"config\.eval\.tables.*'targeted'"):
        experiment.run(config, tmp_path)
    config.eval.tables = [t for t in config.eval.tables if t != "targeted"]
    for low, high in ((1e-3, -10.0), (0.0, 10.0), (5.0, 2.0)):
        config.depth_net.min_depth, config.depth_net.max_depth = low, high
        with pytest.raises(run_checks.RunConfigError, match=r"config\.depth_net\.min_depth"):
            experiment.run(config, tmp_path)
    relative = dict(config.depth_net, min_depth=1e-3, max_depth=10.0)
    config.depth_net = dict(encoder="resnet18", kind="relative", width=0.125)
    with pytest.raises(run_checks.RunConfigError, match=r"config\.depth_net\.encoder"):
        experiment.run(config, tmp_path)
    config.depth_net = relative
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "data").exists()
    config.stages = ("report",)  # the relative N itself passes: the next check stops the run
    with pytest.raises(run_checks.RunConfigError, match=r"'report'.*'evaluate'"):
        experiment.run(config, tmp_path)


def test_steps_range_above_t_max_is_an_error(tmp_path):
    config = _smoke(stages=("train_saliency_adv",))
    config.train_attack.steps_range = (1, 5)  # t_max = 3 in smoke
    with pytest.raises(run_checks.RunConfigError, match=r"steps_range \(1, 5\).*t_max = 3"):
        experiment.run(config, tmp_path)


@pytest.mark.parametrize(
    ("sampler", "p", "match"),
    [("coin", 0.5, r"sampler = 'coin'"), ("paired", 0.3, r"'paired'.*p_adversarial = 0\.3")],
)
def test_bad_train_attack_sampler_is_an_error(tmp_path, sampler, p, match):
    config = _smoke(stages=("train_saliency_adv",))
    config.train_attack.sampler, config.train_attack.p_adversarial = sampler, p
    with pytest.raises(run_checks.RunConfigError, match=match):
        experiment.run(config, tmp_path)


def test_evaluation_without_n_is_refused_before_any_stage(tmp_path):
    with pytest.raises(run_checks.RunConfigError, match=r"config\.networks\.N"):
        experiment.run(_smoke(stages=("data", "evaluate")), tmp_path)
    with pytest.raises(run_checks.RunConfigError, match=r"config\.networks\.G: no checkpoint"):
        experiment.run(_smoke(**{"stages": ("report",), "networks.G": "/no/ckpt"}), tmp_path)


@pytest.mark.parametrize("content", ["", "[1, 2]", "{truncated"])
def test_corrupt_done_marker_names_its_file(tmp_path, content):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "DONE.json").write_text(content)
    with pytest.raises(run_checks.RunConfigError, match=r"data/DONE\.json.*delete it"):
        experiment.stage_done(tmp_path, "data")


# ----------------------------------------------------------------------- checkpoints


def _state(value: float) -> steps.TrainState:
    variables = {"params": {"w": np.full((3,), value, np.float32)}, "batch_stats": {}}
    return jax.device_get(steps.init_train_state(variables, optax.sgd(0.1)))


def _save(mgr, step: int, meta: dict) -> None:
    state = _state(float(step)).replace(step=np.asarray(step, np.int32))
    checkpoints.save(mgr, state, meta, {"loss": float(step)})  # step 1 is kept as the best


def test_resume_with_other_settings_names_the_changed_field(tmp_path):
    mgr = checkpoints.manager(str(tmp_path))
    settings = {"train": {"learning_rate": 1e-3, "batch_size": 4}, "seed": 0}
    _save(mgr, 1, {"task": "depth", "settings": checkpoints.fingerprint(settings)})
    settings["train"]["learning_rate"] = 1e-4
    expected = {"task": "depth", "settings": checkpoints.fingerprint(settings)}
    with pytest.raises(checkpoints.CheckpointError) as error:
        checkpoints.restore_latest(checkpoints.manager(str(tmp_path)), _state(0.0), expected)
    message = str(error.value)
    assert "settings.train.learning_rate: 0.001 → 0.0001" in message
    assert "batch_size" not in message and len(message) < 400


def test_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog):
    meta = {"task": "depth", "settings": "{}"}
    mgr = checkpoints.manager(str(tmp_path))
    _save(mgr, 1, meta)
    _save(mgr, 2, meta)
    for path in (tmp_path / "2" / "state").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")
    with caplog.at_level(logging.WARNING):
        state, record = checkpoints.restore_latest(
            checkpoints.manager(str(tmp_path)), _state(0.0), meta
        )
    assert int(state.step) == 1 and record["step"] == 1
    np.testing.assert_array_equal(state.params["w"], 1.0)
    assert any("trying the previous checkpoint" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------- non-finite values


def test_nan_weights_fail_at_load_naming_the_leaf(tmp_path):
    variables = {"params": {"a": np.ones(2, np.float32), "b": np.full(3, np.nan, np.float32)}}
    variables_io.save_variables(tmp_path / "ckpt", variables, metadata={})
    with pytest.raises(variables_io.CheckpointError, match=r"ckpt: non-finite.*params/b \(3 of 3"):
        variables_io.load_variables(tmp_path / "ckpt")


def test_nan_weights_fail_at_import_naming_the_torch_key():
    template = {"params": {"c": {"bias": jax.ShapeDtypeStruct((2,), np.float32)}}}
    with pytest.raises(import_torch.TorchImportError, match=r"(?s)non-finite.*c\.bias: 1 of 2"):
        import_torch.torch_state_dict_to_flax({"c.bias": np.array([0.0, np.inf])}, template)


def _predict(x):
    return jnp.mean(x, axis=-1, keepdims=True)[:, ::2, ::2]


def test_attack_api_refuses_nan_targets_empty_batches_and_tracing():
    config = attacks.AttackConfig(method="ifgsm", t_max=2)
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"y .* NaN or Inf"):
        attacks.attack(
            _predict, x, jnp.full((1, 2, 2, 1), jnp.nan), eps=0.1, steps=1, config=config
        )
    with pytest.raises(ValueError, match=r"at least one image \(B ≥ 1\)"):
        attacks.attack(_predict, x[:0], jnp.ones((0, 2, 2, 1)), eps=0.1, steps=1, config=config)
    with pytest.raises(ValueError, match="attack_traced"):
        y = jnp.ones((1, 2, 2, 1))
        jax.jit(lambda x: attacks.attack(_predict, x, y, eps=0.1, steps=1, config=config))(x)


# ------------------------------------------------------------------------ attack_image


def test_16bit_greyscale_image_is_read_at_its_grey_level(tmp_path):
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 16384, np.uint16)).save(path)  # a quarter of full scale
    x = attack_image.load_image(path, (8, 8), (8, 8))
    from mde_adv.normalization import denormalize

    np.testing.assert_allclose(denormalize(x), 16384 / 65535, atol=3e-3)


# ----------------------------------------------------------------------- command line


def _main_job(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    repo = pathlib.Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "mde_adv.main", "--config", str(repo / "configs/smoke.py")]
    env = {**os.environ, "PYTHONPATH": str(repo), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_command_line_lists_unknown_fields_and_user_errors(tmp_path):
    workdir = tmp_path / "run"
    unknown = _main_job("--workdir", str(workdir), "--config.train.depth.fooo=1", cwd=tmp_path)
    assert unknown.returncode != 0
    last = unknown.stderr.strip().splitlines()[-1]
    assert last.startswith("FATAL unknown config field --config.train.depth.fooo"), last
    listed = _main_job(
        "--workdir",
        str(workdir),
        "--config.eval.table2.eps=[0.0, 0.3]",
        "--config.stages=('report',)",
        cwd=tmp_path,
    )
    assert listed.returncode == 1
    last = listed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: RunConfigError: stage 'report' reads the output"), last
    assert json.loads((workdir / "config.json").read_text())["eval"]["table2"]["eps"] == [0, 0.3]


def test_preemption_exits_with_one_line(monkeypatch, capsys):
    from types import SimpleNamespace

    from mde_adv import main as main_job
    from mde_adv.train import loop

    def preempted(config, workdir):
        raise loop.Preempted("depth: preempted at step 3; checkpoint saved in runs/x")

    monkeypatch.setattr(main_job.experiment, "run", preempted)
    monkeypatch.setattr(main_job, "_CONFIG", SimpleNamespace(value=ml_collections.ConfigDict()))
    monkeypatch.setattr(main_job, "_WORKDIR", SimpleNamespace(value="runs/x"))
    with pytest.raises(SystemExit) as exit_info:
        main_job.main(["main"])
    assert exit_info.value.code == main_job.PREEMPTED_EXIT_CODE
    assert capsys.readouterr().err.strip().splitlines() == [
        "depth: preempted at step 3; checkpoint saved in runs/x; rerun the same command to resume"
    ]


def test_checkpoints_of_earlier_runs_are_pruned_to_the_latest_and_the_best(tmp_path):
    meta = {"task": "depth", "settings": "{}"}
    for first in (1, 3, 5):  # three runs of the stage (restarts), two saves each
        mgr = checkpoints.manager(str(tmp_path))
        for step in (first, first + 1):
            state = _state(0.0).replace(step=np.asarray(step, np.int32))
            checkpoints.save(mgr, state, meta, {"loss": abs(step - 3.0)})
    assert sorted(checkpoints.manager(str(tmp_path)).all_steps()) == [3, 6]


def test_wrong_network_and_odd_sizes_are_refused_before_any_stage(tmp_path):
    saliency = {"encoder": "drn_d_22", "width": 0.125, "dtype": "float32"}
    variables = {"params": {"w": np.ones(2, np.float32)}}
    path = variables_io.save_variables(tmp_path / "G", variables, metadata={"model": saliency})
    config = _smoke(**{"stages": ("report",), "networks.N": str(path)})
    with pytest.raises(
        run_checks.RunConfigError,
        match=r"networks\.N = .*G holds a network "
        r"with encoder 'drn_d_22' \(config\.depth_net\.encoder = 'resnet18'\)",
    ):
        experiment.run(config, tmp_path / "run")
    imported = variables_io.save_variables(
        tmp_path / "G2", variables, metadata={"model": "saliency", "encoder": "drn_d_22"}
    )
    config = _smoke(**{"stages": ("report",), "networks.N": str(imported)})
    with pytest.raises(run_checks.RunConfigError, match=r"holds a saliency network, but N is a"):
        experiment.run(config, tmp_path / "run")
    config = _smoke(**{"stages": ("report",), "data.pipeline.crop_hw": (30, 40)})
    with pytest.raises(run_checks.RunConfigError, match=r"crop_hw = \(30, 40\).*multiples of 4"):
        experiment.run(config, tmp_path / "run")
