"""The main job end to end on configs/smoke.py: stages run, finish, and are skipped on rerun."""

import json
import pathlib
import subprocess

import main_job
import pytest

from configs import smoke
from mde_adv import experiment

# every test here reads the one smoke run: xdist keeps them on one worker (--dist loadgroup)
pytestmark = pytest.mark.xdist_group("smoke_run")

# the smoke study's stages (all but the Table 4 G of deeper encoders, which it does not train)
SMOKE_STAGES = smoke.get_config().stages


def _main(workdir: pathlib.Path, *flags: str) -> subprocess.CompletedProcess:
    return main_job.run("configs/smoke.py", workdir, *flags)


@pytest.fixture(scope="session")  # one worker holds the group: the run is made once
def smoke_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    result = _main(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result


def test_smoke_run_finishes_every_stage(smoke_run):
    workdir, _ = smoke_run
    assert set(experiment.STAGES) - set(SMOKE_STAGES) == {
        "train_saliency_drn_d_38",
        "train_saliency_drn_d_54",
    }
    for stage in SMOKE_STAGES:
        assert experiment.stage_done(workdir, stage) is not None, stage
    for name in (experiment.TRAIN_STAGES[s][1] for s in SMOKE_STAGES if s.startswith("train")):
        assert (experiment.network_path(workdir, name) / "metadata.json").is_file(), name
    data = experiment.stage_done(workdir, "data")
    assert data["splits"] == {"train": 64, "test": 16}
    logs = workdir / "train_saliency_adv" / "logs" / "metrics.jsonl"
    rows = [json.loads(line) for line in logs.read_text().splitlines()]
    assert rows[-1]["step"] == 4 and "adversarial_fraction" in rows[-1]


def test_smoke_run_logs_learning_curves_and_stage_times(smoke_run):
    workdir, _ = smoke_run
    for stage, names in (
        ("train_depth", {"test_rmse", "test_delta1"}),
        ("train_saliency", {"test_rmse", "test_mask_mean", "test_mask_above_half"}),
    ):
        log = workdir / stage / "logs" / "metrics.jsonl"
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        curve = [r for r in rows if "test_rmse" in r]
        assert [r["step"] for r in curve] == [2, 4], stage
        assert names <= set(curve[-1]), stage
        timing = experiment.stage_done(workdir, stage)["timing"]
        assert timing["steps"] == 4 and timing["first_step_seconds"] > 0
    precise = experiment.stage_done(workdir, "train_depth")["precise_bn"]
    assert precise["batches"] == 2
    assert precise["test_after"]["rmse"] != precise["test_before"]["rmse"]  # N's BN stats changed
    assert "precise_bn" not in experiment.stage_done(workdir, "train_saliency")
    times = {t["stage"]: t for t in experiment.stage_times(workdir)}
    assert set(SMOKE_STAGES) - {"report"} <= set(times)
    assert times["evaluate"]["compile_seconds"] >= 0
    sections = times["evaluate"]["sections"]  # where the evaluation's time goes
    assert {"table2", "fig6_7"} <= set(sections)
    rounding = 0.05 * (len(sections) + 1)  # every figure is rounded to 0.1 s
    assert sum(t["first_batch_seconds"] for t in sections.values()) <= (
        experiment.stage_done(workdir, "evaluate")["timing"]["first_batch_seconds"] + rounding
    )
    report = (workdir / "report.md").read_text(encoding="utf-8")
    for text in ("## Stage times", "## Premises", "per-pixel mean map", "| G_adv |", "| table2 |"):
        assert text in report, text


def test_rerun_skips_finished_stages(smoke_run):
    workdir, _ = smoke_run
    before = {s: experiment.stage_done(workdir, s) for s in SMOKE_STAGES}
    result = _main(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stderr.count("already done") == len(SMOKE_STAGES)
    assert before == {s: experiment.stage_done(workdir, s) for s in SMOKE_STAGES}


def test_unknown_stage_is_a_clear_error(tmp_path):
    result = _main(tmp_path, "--config.stages=('data','train_everything')")
    assert result.returncode != 0
    assert "train_everything" in result.stderr


def test_trained_networks_export_with_a_record_the_tests_can_recompute(smoke_run, tmp_path):
    from mde_adv import models, pretrained, variables_io
    from mde_adv.pretrained import __main__ as export

    workdir, _ = smoke_run
    record = export.export(workdir, tmp_path)
    assert record["dataset"] == "procedural_rooms/tiny" and record["render_hw"] == [48, 64]
    n, _ = variables_io.load_variables(tmp_path / "N")
    g, _ = variables_io.load_variables(tmp_path / "G")
    sizes = export._sizes(json.loads((workdir / "config.json").read_text())["data"]["pipeline"])
    x, y = pretrained.record_images(48, 64, sizes, record["record_images"])
    scores = pretrained.clean_scores(
        models.depth_net(record["depth_net"]),
        n,
        models.saliency_net(record["saliency_net"]),
        g,
        x,
        y,
    )
    for name in ("N(x)", "N(x⊗G(x))", "constant", "per-pixel mean map"):
        expected = record["record_scores"][name]
        assert scores[name] == pytest.approx(expected, rel=1e-5, nan_ok=True), name
    assert scores["G(x) mask mean"] == pytest.approx(record["record_scores"]["G(x) mask mean"])
    assert record["test_split_scores"]["N"]["step"] == 4
    # N's stage applied precise BN: the record gives the saved N's scores, after it
    after = experiment.stage_done(workdir, "train_depth")["precise_bn"]["test_after"]
    assert record["test_split_scores"]["N"]["test_rmse"] == after["rmse"]
    assert record["test_split_scores"]["N"]["precise_bn_batches"] == 2


def test_robustness_stage_writes_the_card_and_the_reports_adaptive_section(smoke_run, tmp_path):
    """The card as a stage of the main job on a finished run (configs/default.py runs it
    before the report): card files, its marker, its stage time and the report's section."""
    import shutil

    from mde_adv import report

    workdir = tmp_path / "run"
    shutil.copytree(smoke_run[0], workdir)
    shutil.rmtree(workdir / "report")  # the report is written again, with the card
    config = smoke.get_config()
    config.stages = ("robustness", "report")
    experiment.run(config, workdir)
    card = json.loads((workdir / "robustness" / "card.json").read_text())
    assert set(card["subjects"]) == {"N(x)", "N(x⊗G_adv(x))"}
    assert card["conventions"]["images"] == 4
    assert "robustness" in {t["stage"] for t in experiment.stage_times(workdir)}
    text = (workdir / "report.md").read_text(encoding="utf-8")
    section = text.split(f"## {report.ADAPTIVE_TITLE}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| N(")]
    assert len(rows) == 2, section  # one per subject at the one ε
    defended = next(r for r in rows if r.startswith("| N(x⊗G_adv(x))"))
    cells = [c.strip() for c in defended.strip("|").split("|")]
    worst, paper = float(cells[5]), float(cells[4])
    assert worst >= paper - 1e-6  # the per-image worst case includes the paper's attack
    assert cells[7] != "n/a"  # the undefended N's worst case beside it
