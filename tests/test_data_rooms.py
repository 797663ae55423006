"""The procedural-rooms renderer and its TFDS builder."""

import dataclasses

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from mde_adv.data import preview, procedural_rooms, room_scene, rooms


def _back_project(scene: room_scene.Scene, depth: np.ndarray) -> np.ndarray:
    """World points [H·W, 3] of every pixel from its z-depth and the NYU intrinsics."""
    height, width = depth.shape
    fx, fy, cx, cy = rooms.camera_intrinsics(height, width)
    v, u = np.mgrid[0:height, 0:width].reshape(2, -1)
    camera = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones(u.shape)], axis=1)
    camera *= depth.reshape(-1, 1)
    return camera @ scene.world_from_camera.T + scene.camera_position


def test_render_room_is_deterministic_per_seed():
    first = rooms.render_room(11, 30, 40)
    again = rooms.render_room(11, 30, 40)
    other = rooms.render_room(12, 30, 40)
    assert first[0].tobytes() == again[0].tobytes() and first[1].tobytes() == again[1].tobytes()
    assert first[0].tobytes() != other[0].tobytes() and first[1].tobytes() != other[1].tobytes()


@pytest.mark.parametrize("seed", range(12))
def test_rendered_rooms_are_plausible(seed):
    rgb, depth = rooms.render_room(seed, 48, 64)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    assert np.all(np.isfinite(depth))
    assert depth.min() > 0.05 and depth.max() <= room_scene.MAX_ROOM_DIAGONAL_M
    assert rgb.std() > 8  # not a blank image
    assert np.ptp(depth) > 0.3 and len(np.unique(np.round(depth, 2))) > 20  # many depth levels
    assert 8 < rgb.mean() < 247  # neither black nor saturated


def test_depth_is_the_exact_z_distance_to_the_room_walls():
    """With the furniture removed, every back-projected pixel lies on a face of the room box."""
    rng = np.random.default_rng(5)
    scene = dataclasses.replace(room_scene.sample_scene(rng), primitives=[])
    _, depth = rooms.render_scene(scene, 24, 32, rng)
    points = _back_project(scene, depth)
    size = scene.room_size
    distance_to_faces = np.min(np.abs(np.concatenate([points, points - size], axis=1)), axis=1)
    assert distance_to_faces.max() < 1e-4
    assert np.all(points > -1e-4) and np.all(points < size + 1e-4)


def test_sphere_ahead_of_a_level_camera_is_at_its_analytic_depth():
    rng = np.random.default_rng(0)
    base = room_scene.sample_scene(rng)
    camera = base.room_size * np.array([0.5, 0.0, 0.2]) + np.array([0.0, 1.5, 0.0])
    sphere = room_scene.Sphere(camera + np.array([0.0, 0.0, 2.0]), 0.5, material=0)
    scene = dataclasses.replace(
        base,
        primitives=[sphere],
        camera_position=camera,
        world_from_camera=room_scene.camera_rotation(0.0, 0.0, 0.0),
    )
    height, width = 48, 64
    _, depth = rooms.render_scene(scene, height, width, rng)
    fx, fy, cx, cy = rooms.camera_intrinsics(height, width)
    # The pixel nearest the principal point looks almost straight at the sphere's centre.
    row, col = round(cy), round(cx)
    x, y = (col - cx) / fx, (row - cy) / fy  # ray (x, y, 1); hit: |t·(x, y, 1) − (0, 0, 2)| = r
    a, b, c = x * x + y * y + 1, -2 * 2.0, 4.0 - 0.25
    assert depth[row, col] == pytest.approx((-b - np.sqrt(b * b - 4 * a * c)) / (2 * a), abs=1e-5)
    # The sphere is seen as a disc centred on the principal point, of its projected radius.
    on_sphere = depth < 2.0
    rows, cols = np.nonzero(on_sphere)
    assert abs(rows.mean() - cy) < 0.6 and abs(cols.mean() - cx) < 0.6
    expected_area = np.pi * (fx * 0.5 / np.sqrt(4.0 - 0.25)) * (fy * 0.5 / np.sqrt(4.0 - 0.25))
    assert on_sphere.sum() == pytest.approx(expected_area, rel=0.1)


def test_scenes_do_not_depend_on_the_resolution():
    _, small = rooms.render_room(3, 24, 32)
    _, large = rooms.render_room(3, 48, 64)
    for q in (0.1, 0.5, 0.9):
        assert np.quantile(small, q) == pytest.approx(np.quantile(large, q), rel=0.05)


def test_render_room_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        rooms.render_room(-1, 24, 32)


def test_parallel_rendering_equals_serial_rendering():
    parallel = dict(procedural_rooms.render_split("test", 3, 16, 20, workers=2))
    for index in range(3):
        rgb, depth = rooms.render_room(procedural_rooms.example_seed("test", index), 16, 20)
        np.testing.assert_array_equal(parallel[index][0], rgb)
        np.testing.assert_array_equal(parallel[index][1], depth)


def test_builder_stores_the_rendered_examples(tmp_path):
    config = procedural_rooms.ProceduralRoomsConfig(
        name="test_size", height=24, width=32, num_train=3, num_test=2, workers=1
    )
    builder = procedural_rooms.ProceduralRooms(config=config, data_dir=tmp_path)
    builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
    assert {split: len(source) for split, source in sources.items()} == {"train": 3, "test": 2}
    for split, source in sources.items():
        ids = set()
        for example in source:
            example_id = (
                example["id"].decode() if isinstance(example["id"], bytes) else example["id"]
            )
            ids.add(example_id)
            index = int(example_id.split("/")[1])
            rgb, depth = rooms.render_room(procedural_rooms.example_seed(split, index), 24, 32)
            np.testing.assert_array_equal(example["image"], rgb)  # PNG is lossless
            np.testing.assert_array_equal(example["depth"], depth)
        assert ids == {f"{split}/{i:06d}" for i in range(len(source))}


def test_registered_configs():
    builder = tfds.builder("procedural_rooms/small", data_dir="/nonexistent")
    assert builder.info.features["image"].shape == (240, 320, 3)
    assert tfds.builder("procedural_rooms/full", data_dir="/nonexistent").info.features[
        "depth"
    ].shape == (480, 640)
    with pytest.raises(ValueError, match="split"):
        procedural_rooms.example_seed("validation", 0)


def test_preview_writes_a_png_grid(tmp_path):
    out = tmp_path / "grid.png"
    preview.main(["--out", str(out), "--n", "3", "--resolution", "tiny"])
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > image.height > 200
        assert np.asarray(image.convert("RGB")).std() > 10  # not blank
    with pytest.raises(ValueError, match="resolution"):
        preview.write_preview(out, 2, "huge")
