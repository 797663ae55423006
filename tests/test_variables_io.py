"""The variables checkpoint format: exact round trips, atomic writes, clear errors."""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mde_adv import variables_io
from mde_adv.variables_io import (
    CheckpointError,
    VariablesMismatchError,
    check_variables_match,
    load_variables,
    save_variables,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
NAMES = st.text(alphabet="abcdefgh_0123456789", min_size=1, max_size=8)
DTYPES = st.sampled_from([np.float32, np.float16, np.int32, np.uint8, np.bool_, jnp.bfloat16])


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, max_side=5))
    raw = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=shape) * 100
    if dtype.kind in "iu":
        raw = np.clip(raw, np.iinfo(dtype).min, np.iinfo(dtype).max)
    return raw.astype(dtype)


TREES = st.recursive(arrays(), lambda children: st.dictionaries(NAMES, children, max_size=3))
VARIABLE_TREES = st.dictionaries(st.sampled_from(["params", "batch_stats"]), TREES, min_size=1)
METADATA = st.dictionaries(
    NAMES,
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(NAMES, children),
        max_leaves=6,
    ),
    max_size=4,
)


def small_variables(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "params": {"E": {"conv1": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)}}},
        "batch_stats": {"E": {"bn1": {"mean": rng.normal(size=(4,)).astype(np.float32)}}},
    }


def assert_trees_identical(actual, expected) -> None:
    """Same structure, dtypes and bits (NaNs included)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        assert isinstance(got, np.ndarray)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == np.asarray(want).tobytes()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(variables=VARIABLE_TREES, metadata=METADATA)
def test_round_trip_is_bit_exact(tmp_path_factory, variables, metadata):
    path = tmp_path_factory.mktemp("ckpt") / "variables"
    returned = save_variables(path, variables, metadata=metadata)
    assert returned == path.absolute()
    loaded, loaded_metadata = load_variables(path)
    assert_trees_identical(loaded, variables)
    assert loaded_metadata == metadata


def test_sharded_jax_arrays_are_saved_as_their_full_values(tmp_path):
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("devices",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
    host = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    variables = {"params": {"w": jax.device_put(host, sharding), "b": jnp.ones((3,))}}
    save_variables(tmp_path / "c", variables, metadata={})
    loaded, _ = load_variables(tmp_path / "c", template=jax.eval_shape(lambda: variables))
    assert_trees_identical(loaded, {"params": {"w": host, "b": np.ones(3, np.float32)}})


def test_overwrite_replaces_a_checkpoint_and_leaves_no_siblings(tmp_path):
    save_variables(tmp_path / "c", small_variables(0), metadata={"version": 0})
    save_variables(tmp_path / "c", small_variables(1), metadata={"version": 1})
    loaded, metadata = load_variables(tmp_path / "c")
    assert_trees_identical(loaded, small_variables(1))
    assert metadata == {"version": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def _fail_metadata_write(monkeypatch):
    original = pathlib.Path.write_text

    def failing(self, *args, **kwargs):
        if self.name == variables_io.METADATA_FILE:
            raise KeyboardInterrupt("interrupted while writing metadata")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", failing)


def _fail_orbax_save(monkeypatch):
    original = variables_io.ocp.StandardCheckpointer.save

    def failing(self, directory, state, *args, **kwargs):
        original(self, directory, state, *args, **kwargs)
        self.wait_until_finished()
        raise OSError("disk full")

    monkeypatch.setattr(variables_io.ocp.StandardCheckpointer, "save", failing)


def _fail_final_rename(monkeypatch):
    original = pathlib.Path.rename

    def failing(self, target):
        if ".partial-" in self.name:
            raise OSError("rename failed")
        return original(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", failing)


@pytest.mark.parametrize("failure", [_fail_orbax_save, _fail_metadata_write, _fail_final_rename])
def test_failed_write_keeps_the_old_checkpoint(tmp_path, monkeypatch, failure):
    save_variables(tmp_path / "c", small_variables(0), metadata={"version": 0})
    failure(monkeypatch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_variables(tmp_path / "c", small_variables(1), metadata={"version": 1})
    monkeypatch.undo()
    loaded, metadata = load_variables(tmp_path / "c")
    assert_trees_identical(loaded, small_variables(0))
    assert metadata == {"version": 0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


@pytest.mark.parametrize("failure", [_fail_orbax_save, _fail_metadata_write, _fail_final_rename])
def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch, failure):
    failure(monkeypatch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_variables(tmp_path / "c", small_variables(1), metadata={})
    assert list(tmp_path.iterdir()) == []


def test_killed_write_leaves_only_an_unloadable_partial(tmp_path):
    """A process killed between the Orbax write and the metadata (no cleanup can run)."""
    save_variables(tmp_path / "c", small_variables(0), metadata={"version": 0})
    script = textwrap.dedent(
        f"""
        import os, pathlib, numpy as np
        from mde_adv import variables_io
        original = pathlib.Path.write_text
        def die(self, *args, **kwargs):
            if self.name == variables_io.METADATA_FILE:
                os._exit(9)
            return original(self, *args, **kwargs)
        pathlib.Path.write_text = die
        variables_io.save_variables({str(tmp_path / "c")!r},
                                    {{"params": {{"w": np.ones(3, np.float32)}}}},
                                    metadata={{"version": 1}})
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    assert subprocess.run([sys.executable, "-c", script], env=env, check=False).returncode == 9
    loaded, metadata = load_variables(tmp_path / "c")
    assert_trees_identical(loaded, small_variables(0))
    assert metadata == {"version": 0}
    partials = [p for p in tmp_path.iterdir() if p.name != "c"]
    assert len(partials) == 1 and ".partial-" in partials[0].name
    with pytest.raises(CheckpointError, match=re.escape("metadata.json")):
        load_variables(partials[0])


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint at {tmp_path / 'absent'}")):
        load_variables(tmp_path / "absent")


def _corrupt_metadata(path: pathlib.Path) -> None:
    (path / "metadata.json").write_text("{not json")


def _foreign_format(path: pathlib.Path) -> None:
    (path / "metadata.json").write_text(json.dumps({"format": "other", "metadata": {}}))


def _future_version(path: pathlib.Path) -> None:
    record = json.loads((path / "metadata.json").read_text())
    (path / "metadata.json").write_text(json.dumps(dict(record, format_version=99)))


def _no_metadata(path: pathlib.Path) -> None:
    (path / "metadata.json").unlink()


def _no_variables(path: pathlib.Path) -> None:
    for item in sorted((path / "variables").rglob("*"), reverse=True):
        item.rmdir() if item.is_dir() else item.unlink()
    (path / "variables").rmdir()


def _garbled_orbax_metadata(path: pathlib.Path) -> None:
    (path / "variables" / "_METADATA").write_bytes(b"\x00garbage")


def _garbled_manifest(path: pathlib.Path) -> None:
    (path / "variables" / "manifest.ocdbt").write_bytes(b"\x00garbage")


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_metadata,
        _foreign_format,
        _future_version,
        _no_metadata,
        _no_variables,
        _garbled_orbax_metadata,
        _garbled_manifest,
    ],
)
def test_corrupt_checkpoint_raises_naming_the_path(tmp_path, corrupt):
    path = save_variables(tmp_path / "c", small_variables(), metadata={})
    corrupt(path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_variables(path)


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_variables(tmp_path / "c", small_variables(), metadata={})
    assert (tmp_path / "c" / "notes.txt").read_text() == "keep me"


def test_bad_metadata_or_leaves_are_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="'created'"):
        save_variables(tmp_path / "c", small_variables(), metadata={"created": object()})
    with pytest.raises(ValueError, match="params/E/note"):
        save_variables(tmp_path / "c", {"params": {"E": {"note": "text"}}}, metadata={})
    assert list(tmp_path.iterdir()) == []


def test_template_mismatch_lists_every_offending_path(tmp_path):
    variables = small_variables()
    variables["params"]["extra"] = {"w": np.zeros(2, np.float32)}
    variables["params"]["E"]["conv1"]["bias"] = np.zeros(3, np.float32)
    path = save_variables(tmp_path / "c", variables, metadata={})
    template = jax.eval_shape(lambda: small_variables())
    template["params"]["E"]["conv1"]["bias"] = jax.ShapeDtypeStruct((4,), jnp.float32)
    template["params"]["E"]["conv1"]["kernel"] = jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.bfloat16)
    template["batch_stats"]["E"]["bn1"]["var"] = jax.ShapeDtypeStruct((4,), jnp.float32)
    with pytest.raises(CheckpointError) as caught:
        load_variables(path, template=template)
    message = str(caught.value)
    assert str(path) in message
    mismatch = caught.value.__cause__
    assert isinstance(mismatch, VariablesMismatchError)
    assert mismatch.missing == ["batch_stats/E/bn1/var"]
    assert mismatch.unexpected == ["params/extra/w"]
    assert [entry.split(":")[0] for entry in mismatch.mismatched] == [
        "params/E/conv1/bias",
        "params/E/conv1/kernel",
    ]
    for entry in mismatch.missing + mismatch.unexpected + mismatch.mismatched:
        assert entry in message


@settings(max_examples=25, deadline=None)
@given(variables=VARIABLE_TREES)
def test_check_variables_match_accepts_exactly_matching_trees(variables):
    check_variables_match(variables, jax.eval_shape(lambda: variables))
    flat = variables_io.flatten_variables(variables)
    assume(flat)
    dropped = sorted(flat)[0]
    reduced = variables_io.flatten_variables(jax.eval_shape(lambda: variables))
    del reduced[dropped]
    with pytest.raises(VariablesMismatchError) as caught:
        check_variables_match(variables, _nest(reduced))
    assert dropped in caught.value.unexpected


def _nest(flat: dict) -> dict:
    tree: dict = {}
    for path, leaf in flat.items():
        *parents, name = path.split("/")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = leaf
    return tree
