"""configs/nyu/evaluate.py end to end on a test-only NYU-v2 layout made of the real samples of
../shared (3 test pairs): data (the test split alone) → evaluate → report, with given
smoke-size networks and nothing trained."""

import json

import jax
import pytest

from configs import smoke
from configs.nyu import evaluate as nyu_evaluate
from mde_adv import experiment, models, variables_io

TABLES = ["table2"]  # N, N⊗G and attacks: the defence table


@pytest.fixture(scope="module")
def given_networks(tmp_path_factory):
    """Smoke-size N and G (random weights) saved as a user's checkpoints."""
    small = smoke.get_config()
    folder = tmp_path_factory.mktemp("ckpt")
    crop_hw = tuple(small.data.pipeline.crop_hw)
    paths = {}
    for seed, (name, section, build) in enumerate(
        (("N", "depth_net", models.depth_net), ("G", "saliency_net", models.saliency_net))
    ):
        cfg = small[section].to_dict()
        variables = models.init_variables(build(cfg), jax.random.key(seed, impl="rbg"), crop_hw)
        paths[name] = str(
            variables_io.save_variables(folder / name, variables, metadata={"model": cfg})
        )
    return paths


def _config(manual_dir, networks):
    small = smoke.get_config()
    config = nyu_evaluate.get_config()
    config.data.manual_dir = str(manual_dir)
    for field in ("resize_hw", "crop_hw", "depth_hw", "global_batch_size"):
        config.data.pipeline[field] = small.data.pipeline[field]
    config.data.pipeline.read_threads = 2
    config.depth_net, config.saliency_net = small.depth_net, small.saliency_net
    config.eval = small.eval
    config.eval.tables = TABLES
    config.networks.N, config.networks.G = networks["N"], networks["G"]
    return config


def test_nyu_test_set_evaluates_end_to_end(nyu_samples, given_networks, tmp_path):
    workdir = tmp_path / "run"
    experiment.run(_config(nyu_samples, given_networks), workdir)
    data = json.loads((workdir / "data" / "DONE.json").read_text())
    assert data["dataset"] == "nyu_depth_v2_manual/csv_png_test"
    assert data["splits"] == {"test": 3}
    assert not any((workdir / stage).exists() for stage in experiment.TRAIN_STAGES)
    evaluation = json.loads((workdir / "evaluate" / "DONE.json").read_text())
    assert evaluation["images"] == 3 and evaluation["networks"] == ["G", "N"]
    rows = [json.loads(line) for line in (workdir / "evaluate" / "per_image.jsonl").open()]
    assert {row["id"] for row in rows} == {f"data/nyu2_test/{i:05d}_colors.png" for i in (0, 1, 8)}
    report = (workdir / "report.md").read_text()
    assert "nyu_depth_v2_manual/csv_png_test" in report and "N(x⊗G(x))" in report
    # the prepared dataset folder is accepted as the dataset name of another evaluation
    folder = next((workdir / "data" / "nyu_depth_v2_manual" / "csv_png_test").iterdir())
    config = _config(nyu_samples, given_networks)
    config.data.manual_dir = ""
    config.data.pipeline.name = str(folder)
    config.stages = ("data",)
    experiment.run(config, tmp_path / "from_folder")
    summary = json.loads((tmp_path / "from_folder" / "data" / "DONE.json").read_text())
    assert summary["splits"] == {"test": 3}
