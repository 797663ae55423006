"""configs/smoke.py with N = Depth Anything V2 of the small setting ('dav2_tiny': the same
structure, 4 blocks of width 32), metric head (max depth 10 m), trained from a random init on
the embedded data; 32×40 crops resized inside N to 28×42 (nearest multiples of 14)."""

from configs import smoke


def get_config():
    c = smoke.get_config()
    c.depth_net = dict(
        encoder="dav2_tiny", kind="metric", max_depth=10.0, input_hw=(28, 42), dtype="float32"
    )
    return c
