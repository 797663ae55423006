"""Random indoor scenes for `rooms`: room box, furniture, wall panels, lights and camera pose.

A scene is plain data (`Scene`, primitives `Box`, `Cylinder`, `Sphere`, `Material`) drawn
from one `np.random.Generator` by `sample_scene`; lengths in metres, world y up.
"""

import dataclasses

import numpy as np

MAX_ROOM_DIAGONAL_M = 10.0  # bounds every depth: z-depth ≤ ray length ≤ room diagonal
PATTERNS = ("plain", "tiles", "wood", "noise", "stripes")


@dataclasses.dataclass(frozen=True)
class Material:
    """Albedo pattern (one of PATTERNS): `base`/`accent` RGB in [0, 1], `scale` the pattern
    period in metres; an emissive material is drawn at its albedo, unlit."""

    pattern: str
    base: np.ndarray
    accent: np.ndarray
    scale: float
    emissive: bool = False

    def __post_init__(self):
        if self.pattern not in PATTERNS or self.scale <= 0:
            raise ValueError(
                f"Material: pattern {self.pattern!r} not in {PATTERNS} or scale {self.scale} ≤ 0"
            )


@dataclasses.dataclass(frozen=True)
class Box:
    """Box with centre [3] and half extents [3] in metres, rotated by `yaw` about the y axis."""

    centre: np.ndarray
    half: np.ndarray
    yaw: float
    material: int


@dataclasses.dataclass(frozen=True)
class Cylinder:
    """Vertical cylinder of `radius` around (x, z), from height y0 to y1 (metres)."""

    x: float
    z: float
    radius: float
    y0: float
    y1: float
    material: int


@dataclasses.dataclass(frozen=True)
class Sphere:
    centre: np.ndarray
    radius: float
    material: int


@dataclasses.dataclass(frozen=True)
class Scene:
    """A room [0, sx]×[0, sy]×[0, sz] (y up), its primitives, lights and camera pose."""

    room_size: np.ndarray
    materials: list[Material]
    face_materials: tuple[int, ...]  # room faces -x, +x, floor, ceiling, -z, +z
    primitives: list[Box | Cylinder | Sphere]
    light_positions: np.ndarray  # [L, 3]
    light_colours: np.ndarray  # [L, 3] power per channel
    ambient: float
    camera_position: np.ndarray  # [3]
    world_from_camera: np.ndarray  # [3, 3]; camera x right, y down, z forward


# ----------------------------------------------------------------------------- scene sampling


def _colour(rng: np.random.Generator, lo: float, hi: float, saturation: float) -> np.ndarray:
    grey = rng.uniform(lo, hi)
    return np.clip(grey * (1.0 + rng.uniform(-saturation, saturation, 3)), 0.02, 1.0)


def _material(rng: np.random.Generator, kind: str) -> Material:
    """A random material of a surface kind: floor, wall, ceiling, furniture, object, picture."""
    if kind == "floor":
        pattern = rng.choice(["tiles", "wood", "noise"])
        base = _colour(rng, 0.35, 0.8, 0.35)
        return Material(str(pattern), base, base * rng.uniform(0.55, 0.85), rng.uniform(0.3, 0.8))
    if kind == "wall":
        pattern = rng.choice(["plain", "stripes", "noise", "plain"])
        base = _colour(rng, 0.6, 0.95, 0.15)
        return Material(str(pattern), base, base * rng.uniform(0.8, 0.95), rng.uniform(0.1, 0.5))
    if kind == "ceiling":
        base = _colour(rng, 0.8, 0.97, 0.05)
        return Material("plain", base, base, 1.0)
    if kind == "furniture":
        pattern = rng.choice(["wood", "plain", "noise"])
        base = _colour(rng, 0.2, 0.8, 0.5)
        return Material(str(pattern), base, base * rng.uniform(0.5, 0.8), rng.uniform(0.05, 0.3))
    if kind == "picture":
        return Material("noise", _colour(rng, 0.1, 0.9, 0.9), _colour(rng, 0.1, 0.9, 0.9), 0.1)
    if kind == "window":  # windows and lamps
        return Material("plain", _colour(rng, 0.85, 1.0, 0.1), np.ones(3), 1.0, emissive=True)
    pattern = rng.choice(["plain", "stripes", "noise"])
    base = _colour(rng, 0.15, 0.9, 0.9)
    return Material(str(pattern), base, _colour(rng, 0.15, 0.9, 0.9), rng.uniform(0.03, 0.15))


def _wall_pose(rng: np.random.Generator, size: np.ndarray, depth: float, width: float):
    """Centre (x, z) and yaw of a footprint `width`×`depth` standing against a random wall."""
    wall = rng.integers(4)
    along = rng.uniform(width / 2 + 0.05, (size[2] if wall < 2 else size[0]) - width / 2 - 0.05)
    if wall == 0:
        return (depth / 2, along), np.pi / 2
    if wall == 1:
        return (size[0] - depth / 2, along), np.pi / 2
    if wall == 2:
        return (along, depth / 2), 0.0
    return (along, size[2] - depth / 2), 0.0


def _furniture(rng, size, materials, kind):
    """Primitives of one piece of furniture, and its footprint (x, z, radius) in metres."""

    def material(kind_of_surface: str) -> int:
        materials.append(_material(rng, kind_of_surface))
        return len(materials) - 1

    sx, _, sz = size
    if kind == "cabinet":
        w, d, h = rng.uniform(0.5, 1.6), rng.uniform(0.35, 0.6), rng.uniform(0.7, 2.1)
        w = min(w, 0.9 * min(sx, sz))
        (x, z), yaw = _wall_pose(rng, size, d, w)
        box = Box(
            np.array([x, h / 2, z]), np.array([w / 2, h / 2, d / 2]), yaw, material("furniture")
        )
        return [box], (x, z, np.hypot(w, d) / 2)
    x, z = rng.uniform(0.4, sx - 0.4), rng.uniform(0.4, sz - 0.4)
    yaw = rng.uniform(0, np.pi)
    if kind == "table":
        w, d, h = rng.uniform(0.7, 1.6), rng.uniform(0.5, 1.0), rng.uniform(0.65, 0.8)
        top, leg = material("furniture"), material("furniture")
        parts = [Box(np.array([x, h - 0.02, z]), np.array([w / 2, 0.02, d / 2]), yaw, top)]
        c, s = np.cos(yaw), np.sin(yaw)
        for lx, lz in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            ox, oz = lx * (w / 2 - 0.05), lz * (d / 2 - 0.05)
            centre = np.array([x + c * ox + s * oz, (h - 0.04) / 2, z - s * ox + c * oz])
            parts.append(Box(centre, np.array([0.025, (h - 0.04) / 2, 0.025]), yaw, leg))
        if rng.random() < 0.6:
            r = rng.uniform(0.06, 0.15)
            parts.append(Sphere(np.array([x, h + r, z]), r, material("object")))
        return parts, (x, z, np.hypot(w, d) / 2)
    if kind == "sofa":
        w, d, h = rng.uniform(1.2, 2.1), rng.uniform(0.8, 1.6), rng.uniform(0.35, 0.55)
        fabric = material("object")
        parts = [Box(np.array([x, h / 2, z]), np.array([w / 2, h / 2, d / 2]), yaw, fabric)]
        if rng.random() < 0.6:  # a backrest along one long side
            c, s = np.cos(yaw), np.sin(yaw)
            centre = np.array([x + s * (d / 2 - 0.1), h + 0.2, z + c * (d / 2 - 0.1)])
            parts.append(Box(centre, np.array([w / 2, 0.2, 0.1]), yaw, fabric))
        return parts, (x, z, np.hypot(w, d) / 2)
    if kind == "cylinder":
        r, h = rng.uniform(0.12, 0.35), rng.uniform(0.3, 0.9)
        return [Cylinder(x, z, r, 0.0, h, material("object"))], (x, z, r)
    if kind == "lamp":
        h, r = rng.uniform(1.2, 1.7), rng.uniform(0.15, 0.25)
        pole = Cylinder(x, z, 0.02, 0.0, h, material("furniture"))
        shade = Cylinder(x, z, r, h, h + rng.uniform(0.2, 0.35), material("object"))
        return [pole, shade], (x, z, r)
    r = rng.uniform(0.1, 0.4)  # a ball on the floor
    return [Sphere(np.array([x, r, z]), r, material("object"))], (x, z, r)


def _wall_panel(rng, size, materials, kind):
    """A door, window or picture: a thin box against a random wall."""
    materials.append(_material(rng, {"door": "furniture"}.get(kind, kind)))
    if kind == "door":
        w, h, y, thickness = rng.uniform(0.8, 1.0), rng.uniform(1.95, 2.1), None, 0.05
    elif kind == "window":
        w, h, y, thickness = (
            rng.uniform(0.8, 1.8),
            rng.uniform(0.8, 1.3),
            rng.uniform(0.9, 1.1),
            0.03,
        )
    else:
        w, h, y, thickness = (
            rng.uniform(0.3, 1.2),
            rng.uniform(0.3, 0.9),
            rng.uniform(1.3, 1.7),
            0.04,
        )
    w = min(w, 0.8 * min(size[0], size[2]))
    y = h / 2 if y is None else min(y + h / 2, size[1] - h / 2 - 0.05)
    (x, z), yaw = _wall_pose(rng, size, thickness, w)
    half = np.array([w / 2, h / 2, thickness / 2])
    return Box(np.array([x, y, z]), half, yaw, len(materials) - 1)


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """World-from-camera rotation [3, 3]; columns: camera right, down, forward in world (y up)."""
    forward = np.array([np.cos(pitch) * np.sin(yaw), np.sin(pitch), np.cos(pitch) * np.cos(yaw)])
    right = np.cross(np.array([0.0, 1.0, 0.0]), forward)
    right /= np.linalg.norm(right)
    down = np.cross(right, forward)
    right, down = (
        np.cos(roll) * right + np.sin(roll) * down,
        -np.sin(roll) * right + np.cos(roll) * down,
    )
    return np.stack([right, down, forward], axis=1)


def sample_scene(rng: np.random.Generator) -> Scene:
    """Draws a random room, its furniture, lights and camera from `rng`."""
    size = np.array([rng.uniform(2.8, 7.0), rng.uniform(2.4, 3.2), rng.uniform(3.0, 8.5)])
    diagonal = np.linalg.norm(size)
    if diagonal > MAX_ROOM_DIAGONAL_M - 0.1:
        shrink = np.sqrt(
            ((MAX_ROOM_DIAGONAL_M - 0.1) ** 2 - size[1] ** 2) / (size[0] ** 2 + size[2] ** 2)
        )
        size = size * np.array([shrink, 1.0, shrink])
    materials = [_material(rng, "wall"), _material(rng, "floor"), _material(rng, "ceiling")]
    faces = [0, 0, 1, 2, 0, 0]
    if rng.random() < 0.4:  # one accent wall
        materials.append(_material(rng, "wall"))
        faces[int(rng.choice([0, 1, 4, 5]))] = len(materials) - 1

    # Camera near one end of the room, looking roughly towards its far side.
    camera = np.array(
        [
            rng.uniform(0.6, size[0] - 0.6),
            rng.uniform(1.2, 1.8),
            rng.uniform(0.3, min(1.0, size[2] / 3)),
        ]
    )
    if rng.random() < 0.5:  # mirror to the other end
        camera[2] = size[2] - camera[2]
    to_centre = np.array([size[0] / 2, 0.0, size[2] / 2]) - camera
    yaw = np.arctan2(to_centre[0], to_centre[2]) + rng.uniform(-0.45, 0.45)
    rotation = camera_rotation(yaw, rng.uniform(-0.5, 0.1), rng.uniform(-0.05, 0.05))

    primitives: list[Box | Cylinder | Sphere] = []
    footprints = [(camera[0], camera[2], 0.6)]
    kinds = ["cabinet", "table", "sofa", "cylinder", "lamp", "ball"]
    for _ in range(int(rng.integers(5, 13))):
        kind = str(rng.choice(kinds, p=[0.25, 0.2, 0.15, 0.15, 0.1, 0.15]))
        for _attempt in range(8):
            parts, (x, z, r) = _furniture(rng, size, materials, kind)
            if all(np.hypot(x - fx, z - fz) > r + fr for fx, fz, fr in footprints):
                primitives += parts
                footprints.append((x, z, r))
                break
    for kind in ("door", "window", "picture", "picture"):
        if rng.random() < 0.7:
            primitives.append(_wall_panel(rng, size, materials, kind))

    n_lights = int(rng.integers(1, 4))  # pendant lamps: emissive spheres, not shadow casters
    lights = np.stack(
        [
            rng.uniform(0.3, size[0] - 0.3, n_lights),
            size[1] - rng.uniform(0.3, 0.7, n_lights),
            rng.uniform(0.3, size[2] - 0.3, n_lights),
        ],
        axis=1,
    )
    materials.append(_material(rng, "window"))
    primitives += [Sphere(position, 0.08, len(materials) - 1) for position in lights]
    tint = np.array([1.0, rng.uniform(0.9, 1.0), rng.uniform(0.75, 1.0)])
    colours = rng.uniform(0.5, 1.0, (n_lights, 1)) * tint / np.sqrt(n_lights)
    return Scene(
        size,
        materials,
        tuple(faces),
        primitives,
        lights,
        colours,
        float(rng.uniform(0.2, 0.4)),
        camera,
        rotation,
    )
