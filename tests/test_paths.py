"""Workdir files on an object store: the main job's writers and readers run through the `gs://`
code path (etils.epath's fsspec backend) against a fake bucket on the local disk, and through
the local path; whole-or-nothing writes on both."""

import json
import os

import numpy as np
import pytest
from etils.epath import backend as epath_backend
from etils.epath import gpath
from fsspec.implementations.local import LocalFileSystem

from mde_adv import experiment, paths, run_checks, variables_io
from mde_adv.evaluation import figures, results
from mde_adv.train import writers


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """gs://bucket/... served from tmp_path/bucket/... by fsspec's local file system, through
    epath's fsspec backend (the one it uses for gs:// without TensorFlow). os.replace of a
    gs:// path fails loudly, so a write through the local branch of mde_adv.paths cannot pass."""

    class DiskBuckets(LocalFileSystem):
        @classmethod
        def _strip_protocol(cls, path):
            path = os.fspath(path)
            if path.startswith("gs://"):
                path = str(tmp_path) + "/" + path.removeprefix("gs://")
            return super()._strip_protocol(path)

    fs = DiskBuckets(skip_instance_cache=True)
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    monkeypatch.setattr(epath_backend._FileSystemSpecBackend, "fs", lambda self, path: fs)

    real_replace = os.replace

    def replace(source, target):
        if any(os.fspath(p).startswith("gs:") for p in (source, target)):
            raise AssertionError(f"os.replace on an object store path: {source} -> {target}")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    (tmp_path / "bucket").mkdir()
    return tmp_path / "bucket"


def test_a_uri_stays_a_uri_and_a_local_path_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(paths.as_path("gs://b/run/x")) == "gs://b/run/x"
    assert paths.is_remote("gs://b/run") and not paths.is_remote("runs/x")
    assert str(paths.as_path("runs/x")) == str(tmp_path / "runs" / "x")


@pytest.mark.parametrize("remote", [False, True])
def test_an_interrupted_write_leaves_the_previous_file(request, tmp_path, remote):
    where = "gs://bucket" if remote else str(tmp_path)
    if remote:
        request.getfixturevalue("bucket")
    target = paths.as_path(f"{where}/report.md")
    paths.write_text_atomic(target, "first")
    with pytest.raises(RuntimeError), paths.atomic_open(target, "w") as file:
        file.write("half of a second")
        raise RuntimeError("crash")
    assert target.read_text() == "first"
    paths.write_text_atomic(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.md"]  # no temporary
    with pytest.raises(ValueError, match="mode"):
        with paths.atomic_open(target, "a"):
            pass


def test_stage_markers_results_and_figures_on_a_bucket(bucket):
    workdir = paths.as_path("gs://bucket/run")
    experiment.mark_done(workdir, "data", {"splits": {"train": 3}})
    assert (bucket / "run" / "data" / "DONE.json").is_file()
    assert experiment.stage_done(workdir, "data") == {"splits": {"train": 3}}
    assert experiment.stage_done(workdir, "train_depth") is None
    (bucket / "run" / "evaluate").mkdir()
    (bucket / "run" / "evaluate" / "DONE.json").write_text("")
    with pytest.raises(run_checks.RunConfigError, match=r"gs://bucket/run/evaluate/DONE\.json"):
        experiment.stage_done(workdir, "evaluate")

    rows = [
        dict.fromkeys(results.ROW_FIELDS, "") | {"id": name, "position": i, "rmse": rmse}
        for i, (name, rmse) in enumerate([("a", 1.0), ("b", 3.0)])
    ]
    out = workdir / "evaluate"
    results.write_rows(rows, out / results.PER_IMAGE_FILE)
    assert [r["rmse"] for r in results.read_rows(out / results.PER_IMAGE_FILE)] == [1.0, 3.0]
    results.write_summary([{"table": "t", "rmse": 2.0}], out)
    assert json.loads((bucket / "run" / "evaluate" / results.SUMMARY_JSON).read_text()) == [
        {"table": "t", "rmse": 2.0}
    ]
    assert (bucket / "run" / "evaluate" / results.SUMMARY_CSV).read_text().startswith("table,")

    arrays = {
        "image": np.zeros((1, 4, 5, 3)),
        "ground_truth": np.ones((1, 4, 5, 1)),
        "depth:N(x)": np.ones((1, 4, 5, 1)),
    }
    png = figures.plot_depth_maps(arrays, workdir / "fig6.png")
    assert str(png) == "gs://bucket/run/fig6.png"
    assert (bucket / "run" / "fig6.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metric_logs_on_a_bucket_keep_earlier_lines_across_resumes(bucket):
    logdir = "gs://bucket/run/train_depth/logs"
    with writers.MetricWriter(logdir) as writer:
        writer.write(1, {"loss": 2.0})
        writer.write(2, {"loss": 1.5})
    with writers.MetricWriter(logdir) as writer:  # a resumed stage
        writer.write(3, {"loss": 1.0})
    local = bucket / "run" / "train_depth" / "logs"
    lines = [json.loads(line) for line in (local / writers.JSONL_FILE).read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert len([p for p in local.iterdir() if p.name.startswith("events.")]) == 2


def test_checkpoints_on_a_bucket_save_replace_and_load(bucket):
    variables = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    path = variables_io.save_variables("gs://bucket/run/networks/N", variables, metadata={"a": 1})
    assert str(path) == "gs://bucket/run/networks/N"
    assert (bucket / "run" / "networks" / "N" / variables_io.METADATA_FILE).is_file()
    loaded, metadata = variables_io.load_variables(path, variables)
    np.testing.assert_array_equal(loaded["params"]["w"], variables["params"]["w"])
    assert metadata == {"a": 1} and variables_io.read_metadata(path) == {"a": 1}

    replaced = {"params": {"w": -variables["params"]["w"]}}
    variables_io.save_variables(path, replaced, metadata={"a": 2})
    loaded, metadata = variables_io.load_variables(path)
    np.testing.assert_array_equal(loaded["params"]["w"], replaced["params"]["w"])
    assert metadata == {"a": 2}
    assert sorted(p.name for p in (bucket / "run" / "networks").iterdir()) == ["N"]  # no staging
    with pytest.raises(variables_io.CheckpointError, match="gs://bucket/run/networks/G"):
        variables_io.load_variables("gs://bucket/run/networks/G")
    (bucket / "run" / "networks" / "N" / variables_io.METADATA_FILE).unlink()
    with pytest.raises(variables_io.CheckpointError, match="gs://bucket/run/networks/N"):
        variables_io.load_variables(path)


def test_training_checkpoints_keep_a_bucket_uri(bucket, tmp_path, monkeypatch):
    """Orbax gets the gs:// URI itself (it writes through TensorStore's GCS driver), not a
    local path made of it; a relative local workdir still becomes absolute. (Orbax asks the
    bucket's settings through google-cloud-storage: answered here, as no bucket exists.)"""
    from orbax.checkpoint._src.path import gcs_utils

    from mde_adv.train import checkpoints

    monkeypatch.setattr(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
    mgr = checkpoints.manager("gs://bucket/run/train_depth/checkpoints")
    assert str(mgr.directory) == "gs://bucket/run/train_depth/checkpoints"
    assert (bucket / "run" / "train_depth" / "checkpoints").is_dir()
    mgr.close()
    monkeypatch.chdir(tmp_path)
    mgr = checkpoints.manager("runs/x/checkpoints")
    assert str(mgr.directory) == str(tmp_path / "runs" / "x" / "checkpoints")
    mgr.close()
