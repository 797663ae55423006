"""Procedurally rendered indoor rooms with exact metric depth (pure NumPy ray casting).

`render_room(seed, height, width)` draws a room (floor, walls, ceiling; 2.8–8.5 m wide and
long, 2.4–3.2 m high, 3-D diagonal ≤ 10 m), furniture-like primitives standing on the floor
(boxes, tables, sofas, cylinders, spheres, lamps), doors, windows and pictures on the walls,
textures (tiles, wood grain, value noise, stripes), Lambertian shading from 1–3 pendant lamps
with hard shadows plus ambient light, seen by a camera at 1.2–1.8 m with random yaw, pitch
and a small roll, with NYU-v2's Kinect intrinsics scaled to the resolution. Depth is the
camera-frame z (as in NYU-v2), in metres, exact for every pixel; everything is drawn from one
`np.random.Generator` seeded by `seed`, and the scene does not depend on the resolution.
The scenes are drawn by `room_scene.sample_scene`; this module ray-casts and shades them.
"""

import numpy as np

from mde_adv.data.room_scene import Box, Cylinder, Material, Scene, Sphere, sample_scene

# NYU-v2 colour-camera intrinsics at 640×480 (fx, fy, cx, cy), from the official toolbox.
NYU_INTRINSICS_640X480 = (518.8579, 519.4696, 325.5824, 253.7362)
_EPS = 1e-6
_LATTICE = 64  # side of the value-noise lattice
# Display gamma 1/1.2 from 1024 linear levels to uint8.
_GAMMA_LUT = np.round(255 * np.linspace(0.0, 1.0, 1024) ** (1 / 1.2)).astype(np.uint8)


def camera_intrinsics(height: int, width: int) -> tuple[float, float, float, float]:
    """NYU-v2 intrinsics (fx, fy, cx, cy) in pixels, scaled from 640×480 to width×height."""
    fx, fy, cx, cy = NYU_INTRINSICS_640X480
    sx, sy = width / 640.0, height / 480.0
    return fx * sx, fy * sy, cx * sx, cy * sy


# ------------------------------------------------------------------------ ray intersection


def _rows_times(vectors: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """vectors [N, 3] @ matrix [3, 3] without BLAS (whose idle threads spin on shared cores)."""
    return np.einsum("ij,jk->ik", vectors, matrix)


# Each returns t [N] (inf where missed), world normal [N, 3] and a local point [N, 3] for
# texturing, for rays origins [N, 3] + t · directions [N, 3].


def _intersect_box(box: Box, origins, directions):
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # world from local
    o = _rows_times(origins - box.centre, rot)
    d = _rows_times(directions, rot)
    d = np.where(np.abs(d) < 1e-12, 1e-12, d)
    t1, t2 = (-box.half - o) / d, (box.half - o) / d
    t_near = np.minimum(t1, t2)
    axis = np.argmax(t_near, axis=1)
    t_in = np.max(t_near, axis=1)
    t_out = np.min(np.maximum(t1, t2), axis=1)
    hit = (t_in <= t_out) & (t_in > _EPS)
    t = np.where(hit, t_in, np.inf)
    rows = np.arange(len(t))
    normal = np.zeros_like(o)
    normal[rows, axis] = -np.sign(d[rows, axis])
    return t, _rows_times(normal, rot.T), o + t_in[:, None] * d


def _intersect_cylinder(cyl: Cylinder, origins, directions):
    o = origins - np.array([cyl.x, 0.0, cyl.z])
    d = directions
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2])
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - cyl.radius**2
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
    y = o[:, 1] + t_side * d[:, 1]
    side = (disc >= 0) & (a > 1e-12) & (t_side > _EPS) & (y >= cyl.y0) & (y <= cyl.y1)
    t_side = np.where(side, t_side, np.inf)
    dy = np.where(np.abs(d[:, 1]) < 1e-12, 1e-12, d[:, 1])
    t_caps = []
    for y_cap in (cyl.y0, cyl.y1):
        t_cap = (y_cap - o[:, 1]) / dy
        px, pz = o[:, 0] + t_cap * d[:, 0], o[:, 2] + t_cap * d[:, 2]
        inside = (px**2 + pz**2 <= cyl.radius**2) & (t_cap > _EPS) & (y_cap > _EPS)
        t_caps.append(np.where(inside, t_cap, np.inf))
    t = np.minimum(t_side, np.minimum(*t_caps))
    point = o + np.where(np.isfinite(t), t, 0.0)[:, None] * d
    normal = np.stack([point[:, 0], np.zeros_like(t), point[:, 2]], axis=1) / cyl.radius
    cap_sign = np.where(t == t_caps[1], 1.0, np.where(t == t_caps[0], -1.0, 0.0))
    normal = np.where((cap_sign != 0)[:, None], cap_sign[:, None] * np.array([0, 1.0, 0]), normal)
    return t, normal, point


def _intersect_sphere(sphere: Sphere, origins, directions):
    oc = origins - sphere.centre
    a = np.sum(directions**2, axis=1)
    b = np.sum(oc * directions, axis=1)
    c = np.sum(oc**2, axis=1) - sphere.radius**2
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    t = np.where((disc >= 0) & (t > _EPS), t, np.inf)
    point = oc + np.where(np.isfinite(t), t, 0.0)[:, None] * directions
    return t, point / sphere.radius, point


_INTERSECT = {Box: _intersect_box, Cylinder: _intersect_cylinder, Sphere: _intersect_sphere}


def _bounding_sphere(prim: Box | Cylinder | Sphere) -> tuple[np.ndarray, float]:
    if isinstance(prim, Box):
        return prim.centre, float(np.linalg.norm(prim.half))
    if isinstance(prim, Cylinder):
        half_height = (prim.y1 - prim.y0) / 2
        centre = np.array([prim.x, prim.y0 + half_height, prim.z])
        return centre, float(np.hypot(prim.radius, half_height))
    return prim.centre, prim.radius


def _intersect(prim: Box | Cylinder | Sphere, origins, directions, squared_norms):
    """Exact hits on the rays that meet the primitive's bounding sphere.

    origins [3] (shared) or [N, 3], directions [N, 3], squared_norms [N] = |directions|².
    Returns the indices [K] of those rays and their t [K], normal [K, 3] and local point [K, 3].
    """
    centre, radius = _bounding_sphere(prim)
    oc = centre - origins
    if oc.ndim == 1:
        b, c = np.einsum("ij,j->i", directions, oc), oc @ oc - radius**2
    else:
        b = np.einsum("ij,ij->i", oc, directions)
        c = np.einsum("ij,ij->i", oc, oc) - radius**2
    rays = np.flatnonzero((b * b - squared_norms * c >= 0) & ((b > 0) | (c < 0)))
    ray_origins = np.broadcast_to(origins, (len(rays), 3)) if oc.ndim == 1 else origins[rays]
    return rays, *_INTERSECT[type(prim)](prim, ray_origins, directions[rays])


def _intersect_room(size: np.ndarray, origin: np.ndarray, directions):
    """Exit of rays from inside the room: t [N], inward normal [N, 3], face index [N] (0..5)."""
    d = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
    t_axes = np.where(d > 0, (size - origin) / d, -origin / d)
    axis = np.argmin(t_axes, axis=1)
    rows = np.arange(len(d))
    t = t_axes[rows, axis]
    positive = d[rows, axis] > 0
    normal = np.zeros_like(d)
    normal[rows, axis] = np.where(positive, -1.0, 1.0)
    return t, normal, 2 * axis + positive


# ------------------------------------------------------------------------------- shading


def _value_noise(u, v, lattice):
    """Smooth value noise in [0, 1] at lattice coordinates (u, v) [M]."""
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    i0, j0 = iu.astype(np.int64) % _LATTICE, iv.astype(np.int64) % _LATTICE
    i1, j1 = (i0 + 1) % _LATTICE, (j0 + 1) % _LATTICE
    top = lattice[i0, j0] * (1 - fv) + lattice[i0, j1] * fv
    bottom = lattice[i1, j0] * (1 - fv) + lattice[i1, j1] * fv
    return top * (1 - fu) + bottom * fu


def _fbm(u, v, lattice):
    return (
        0.5 * _value_noise(u, v, lattice)
        + 0.3 * _value_noise(2.1 * u, 2.1 * v, lattice)
        + 0.2 * _value_noise(4.3 * u, 4.3 * v, lattice)
    )


def _albedo(material: Material, u, v, lattice):
    """RGB albedo [M, 3] of `material` at surface coordinates (u, v) [M] in metres."""
    u, v = u / material.scale, v / material.scale
    if material.pattern == "tiles":
        cell = lattice[
            np.floor(u).astype(np.int64) % _LATTICE, np.floor(v).astype(np.int64) % _LATTICE
        ]
        grout = (np.minimum(u % 1.0, v % 1.0) < 0.04)[:, None]
        tile = material.base * (0.9 + 0.2 * cell)[:, None]
        colour = np.where(grout, material.accent * 0.7, tile)
    elif material.pattern == "wood":
        plank = lattice[np.floor(v).astype(np.int64) % _LATTICE, 7] - 0.5
        rings = 0.5 + 0.5 * np.sin(2 * np.pi * (6 * v + 3 * _value_noise(u, 4 * v, lattice)))
        weight = (rings**3 + 0.15 * plank)[:, None]
        colour = material.base + (material.accent - material.base) * weight
        colour = np.where(((v % 1.0) < 0.03)[:, None], material.accent * 0.6, colour)
    elif material.pattern == "stripes":
        colour = np.where(((u % 1.0) < 0.5)[:, None], material.base, material.accent)
    elif material.pattern == "noise":
        colour = material.base + (material.accent - material.base) * _fbm(u, v, lattice)[:, None]
    else:
        colour = np.broadcast_to(material.base, (len(u), 3))
    grain = 0.94 + 0.12 * _value_noise(40 * u, 40 * v, lattice)  # fine surface variation
    return colour * grain[:, None]


def _surface_uv(normal, point):
    """Planar texture coordinates [M] from the dominant axis of the local normal."""
    axis = np.argmax(np.abs(normal), axis=1)
    u = np.where(axis == 0, point[:, 2], point[:, 0])
    v = np.where(axis == 1, point[:, 2], point[:, 1])
    return u, v


def _shadowed(scene: Scene, points, light_position):
    """Whether the segments from `light_position` [3] to `points` [M, 3] meet an opaque
    primitive before reaching the point (rays share their origin: cheap bounding tests)."""
    to_points = points - light_position
    squared_norms = np.einsum("ij,ij->i", to_points, to_points)
    t_max = 1.0 - 2e-3 / np.sqrt(squared_norms)  # stop 2 mm before the lit surface
    blocked = np.zeros(len(points), dtype=bool)
    for prim in scene.primitives:
        if not scene.materials[prim.material].emissive:
            rays, t, _, _ = _intersect(prim, light_position, to_points, squared_norms)
            blocked[rays[t < t_max[rays]]] = True
    return blocked


def render_scene(
    scene: Scene, height: int, width: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-casts `scene`: RGB uint8 [height, width, 3] and z-depth float32 [height, width] (m).

    `rng` draws the texture lattice and the sensor noise.
    """
    fx, fy, cx, cy = camera_intrinsics(height, width)
    v, u = np.mgrid[0:height, 0:width].reshape(2, -1).astype(np.float64)
    rays_camera = np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)], axis=1)
    directions = _rows_times(rays_camera, scene.world_from_camera.T)  # z = 1 ⇒ t is z-depth
    squared_norms = np.einsum("ij,ij->i", directions, directions)

    t, normal, face = _intersect_room(scene.room_size, scene.camera_position, directions)
    material = np.asarray(scene.face_materials)[face]
    local = scene.camera_position + t[:, None] * directions
    for prim in scene.primitives:
        rays, t_prim, n_prim, p_prim = _intersect(
            prim, scene.camera_position, directions, squared_norms
        )
        closer = t_prim < t[rays]
        rays = rays[closer]
        t[rays], normal[rays], local[rays] = t_prim[closer], n_prim[closer], p_prim[closer]
        material[rays] = prim.material

    lattice = rng.random((_LATTICE, _LATTICE))
    albedo = np.zeros(directions.shape, np.float32)
    emissive = np.zeros(len(t), dtype=bool)
    local_u, local_v = _surface_uv(normal, local)
    for index in np.unique(material):
        mask = material == index
        mat = scene.materials[index]
        albedo[mask] = _albedo(mat, local_u[mask], local_v[mask], lattice)
        emissive |= mask & mat.emissive

    points = scene.camera_position + t[:, None] * directions + 1e-4 * normal
    light = np.full(albedo.shape, scene.ambient, np.float32)
    for position, colour in zip(scene.light_positions, scene.light_colours, strict=True):
        to_light = position - points
        distance = np.linalg.norm(to_light, axis=1)
        lambert = np.maximum(np.sum(normal * to_light, axis=1) / distance, 0.0)
        lit = lambert > 0
        lit[lit] &= ~_shadowed(scene, points[lit], position)
        falloff = np.where(lit, lambert / (1.0 + (distance / 3.5) ** 2), 0.0)
        light += (1.6 * falloff[:, None] * colour).astype(np.float32)
    rgb = np.where(emissive[:, None], albedo, albedo * light)

    radius2 = ((u - cx) / width) ** 2 + ((v - cy) / height) ** 2  # Kinect-like vignetting
    rgb *= (1.0 - 0.5 * radius2).astype(np.float32)[:, None]
    rgb += np.float32(0.01) * rng.standard_normal(rgb.shape, dtype=np.float32)  # sensor noise
    levels = np.round(np.clip(rgb, 0.0, 1.0) * (len(_GAMMA_LUT) - 1)).astype(np.int32)
    rgb8 = _GAMMA_LUT[levels].reshape(height, width, 3)
    return rgb8, t.reshape(height, width).astype(np.float32)


def render_room(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A random room seen from a random pose, deterministic in `seed` (≥ 0).

    Returns RGB uint8 [height, width, 3] and z-depth float32 [height, width] in metres,
    0 < depth ≤ 10. The same seed gives the same scene at every resolution.
    """
    if seed < 0 or height < 8 or width < 8:
        raise ValueError(
            f"render_room: need seed ≥ 0 and size ≥ 8×8, got {seed=}, {height=}, {width=}"
        )
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng)
    return render_scene(scene, height, width, rng)
