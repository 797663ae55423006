"""configs/depth_anything_v2_smoke.py with the relative head (affine-invariant disparity, ReLU)
instead of the metric one: the main job's alignment switch (`alignment.depth_range`) is on, so
N and N_adv train on l_dif after per-image scale-and-shift alignment to the ground truth,
every attack (Algorithm 1's included) measures its loss after the same alignment, and every
score of N and N_adv is after it (clipped to [min_depth, max_depth] = [1 mm, 10 m]). The
targeted table is left out: a target of 2×N(x) aligns back to N(x)."""

from configs import depth_anything_v2_smoke


def get_config():
    c = depth_anything_v2_smoke.get_config()
    c.depth_net = dict(
        encoder="dav2_tiny",
        kind="relative",
        min_depth=1e-3,
        max_depth=10.0,
        input_hw=(28, 42),
        dtype="float32",
    )
    c.eval.tables = [t for t in c.eval.tables if t != "targeted"]
    return c
