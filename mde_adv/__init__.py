"""mde_adv: adversarial robustness of monocular depth estimation in JAX/Flax.

Importing it registers the TFDS builders `nyu_depth_v2_manual` and `procedural_rooms`, so that
`tfds.builder("nyu_depth_v2_manual/csv_png_test", ...)` works after `import mde_adv`.
"""

__version__ = "0.1.0"

from mde_adv.data import builders as _builders  # noqa: F401 (registers the builders)
