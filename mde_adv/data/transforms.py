"""Training and test transforms of spec §6, on the host (NumPy + PIL), seeded explicitly.

Train, in order: resize to `resize_hw` (RGB bilinear, depth nearest); horizontal flip
(p = 0.5); rotation by U(−5°, 5°) about the image centre (same angle for both; corners 0;
RGB bilinear, depth nearest); centre crop `crop_hw`; depth resized to `depth_hw` (nearest);
RGB to [0, 1]; AlexNet PCA lighting (std 0.1); colour jitter (brightness, contrast,
saturation 0.4, random order, no clamp); ImageNet normalisation. Test: resize, centre crop
`crop_hw` for both; depth stays `crop_hw`, RGB to [0, 1] and normalised.

Sizes are (height, width). A config sets `resize_hw`, `crop_hw` (the network input) and
`depth_hw` (the training target: the network's output size, half the crop for N); the paper's
are 240×320, 228×304, 114×152 (`PAPER_SIZES`), `scaled_sizes(s)` scales all three.
Bilinear resizing is PIL's (a triangle filter widened when downscaling), as the PIL-based
transforms of the authors' code; a centre crop starts at ((H − h) // 2, (W − w) // 2).
"""

import dataclasses

import chex
import numpy as np
from PIL import Image

from mde_adv.normalization import normalize

# AlexNet PCA lighting noise: eigenvalues and eigenvectors (columns) of ImageNet RGB.
PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045], dtype=np.float32)
PCA_EIGVEC = np.array(
    [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]],
    dtype=np.float32,
)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
JITTER_OPS = ("brightness", "contrast", "saturation")

HW = tuple[int, int]


@dataclasses.dataclass(frozen=True)
class TransformSizes:
    """(height, width) in pixels of the resize, the centre crop and the training depth."""

    resize_hw: HW = (240, 320)
    crop_hw: HW = (228, 304)
    depth_hw: HW = (114, 152)

    def __post_init__(self):
        sizes = (self.resize_hw, self.crop_hw, self.depth_hw)
        if any(len(hw) != 2 or min(hw) < 1 for hw in sizes):
            raise ValueError(f"TransformSizes: sizes must be positive (h, w) pairs, got {self}")
        if self.crop_hw[0] > self.resize_hw[0] or self.crop_hw[1] > self.resize_hw[1]:
            raise ValueError(
                f"TransformSizes: crop_hw {self.crop_hw} exceeds resize_hw {self.resize_hw}"
            )


PAPER_SIZES = TransformSizes()


def scaled_sizes(scale: float) -> TransformSizes:
    """PAPER_SIZES with every side scaled by `scale` and rounded (0.5: 120×160, 114×152, 57×76)."""
    if scale <= 0:
        raise ValueError(f"scaled_sizes: scale must be > 0, got {scale}")

    def scaled(hw: HW) -> HW:
        return max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale))

    return TransformSizes(*(scaled(hw) for hw in dataclasses.astuple(PAPER_SIZES)))


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Strengths of the random training augmentations (defaults: spec §6)."""

    flip_probability: float = 0.5
    max_rotation_degrees: float = 5.0
    lighting_std: float = 0.1
    jitter_strength: float = 0.4


@dataclasses.dataclass(frozen=True)
class AugmentationDraw:
    """The random choices for one example: jitter alphas follow JITTER_OPS, applied in
    `jitter_order` (a permutation of 0, 1, 2)."""

    flip: bool
    rotation_degrees: float
    lighting_alpha: np.ndarray  # [3]
    jitter_order: np.ndarray  # [3]
    jitter_alphas: np.ndarray  # [3]


def draw_augmentation(rng: np.random.Generator, augmentation: Augmentation) -> AugmentationDraw:
    strength = augmentation.jitter_strength
    return AugmentationDraw(
        flip=bool(rng.random() < augmentation.flip_probability),
        rotation_degrees=float(rng.uniform(-1, 1) * augmentation.max_rotation_degrees),
        lighting_alpha=rng.normal(0.0, augmentation.lighting_std, 3).astype(np.float32),
        jitter_order=rng.permutation(3),
        jitter_alphas=rng.uniform(-strength, strength, 3).astype(np.float32),
    )


# ---------------------------------------------------------------------------- geometric ops


def resize_rgb(rgb: np.ndarray, hw: HW) -> np.ndarray:
    """Bilinear (PIL) resize of RGB uint8 [H, W, 3] to [h, w, 3]."""
    return np.asarray(Image.fromarray(rgb).resize(hw[::-1], Image.Resampling.BILINEAR))


def resize_depth(depth: np.ndarray, hw: HW) -> np.ndarray:
    """Nearest resize of depth float32 [H, W] to [h, w]: source index ⌊(i + ½)·H/h⌋."""
    image = Image.fromarray(depth.astype(np.float32, copy=False))
    return np.asarray(image.resize(hw[::-1], Image.Resampling.NEAREST))


def rotate_rgb(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise bilinear rotation of uint8 [H, W, 3] about its centre; corners 0."""
    image = Image.fromarray(rgb)
    return np.asarray(image.rotate(degrees, Image.Resampling.BILINEAR, fillcolor=(0, 0, 0)))


def rotate_depth(depth: np.ndarray, degrees: float) -> np.ndarray:
    """Counter-clockwise nearest rotation of float32 [H, W] about its centre; corners 0."""
    image = Image.fromarray(depth.astype(np.float32, copy=False))
    return np.asarray(image.rotate(degrees, Image.Resampling.NEAREST, fillcolor=0.0))


def centre_crop(array: np.ndarray, hw: HW) -> np.ndarray:
    """Centre crop of [H, W, ...] to [h, w, ...], from ((H − h) // 2, (W − w) // 2)."""
    height, width = array.shape[:2]
    if hw[0] > height or hw[1] > width:
        raise ValueError(f"centre_crop: crop {hw} larger than the array {array.shape}")
    top, left = (height - hw[0]) // 2, (width - hw[1]) // 2
    return array[top : top + hw[0], left : left + hw[1]]


def hflip(array: np.ndarray) -> np.ndarray:
    """Mirror [H, W, ...] left-right."""
    return array[:, ::-1]


# ---------------------------------------------------------------------- photometric ops


def pca_lighting(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """AlexNet lighting noise on RGB [..., 3] in [0, 1]: + eigvec · (alpha ⊙ eigval)."""
    return rgb + PCA_EIGVEC @ (alpha * PCA_EIGVAL)


def grayscale(rgb: np.ndarray) -> np.ndarray:
    """Luma [...] = 0.299 R + 0.587 G + 0.114 B of RGB [..., 3]."""
    return np.einsum("...c,c->...", rgb, GREY_WEIGHTS)  # not BLAS: no spinning threads


def colour_jitter(rgb: np.ndarray, order: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Brightness, contrast, saturation (alphas in JITTER_OPS order) applied in `order`, each
    x ← x + α·(target − x) with target 0, mean luma, per-pixel luma; no clamp."""
    for op in order:
        alpha = alphas[op]
        if JITTER_OPS[op] == "brightness":
            target = np.float32(0.0)
        elif JITTER_OPS[op] == "contrast":
            target = grayscale(rgb).mean(dtype=np.float32)
        else:
            target = grayscale(rgb)[..., None]
        rgb = rgb + alpha * (target - rgb)
    return rgb


# ------------------------------------------------------------------------------ transforms


def _check_input(rgb: np.ndarray, depth: np.ndarray) -> None:
    chex.assert_type([rgb, depth], [np.uint8, np.float32])
    chex.assert_rank([rgb, depth], [3, 2])
    if rgb.shape[:2] != depth.shape or rgb.shape[2] != 3:
        raise ValueError(
            f"transform: need rgb [H, W, 3] and depth [H, W], got {rgb.shape} and {depth.shape}"
        )


def train_transform(
    rgb: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    sizes: TransformSizes = PAPER_SIZES,
    augmentation: Augmentation = Augmentation(),
) -> tuple[np.ndarray, np.ndarray]:
    """rgb uint8 [H, W, 3], depth float32 [H, W] (m) -> normalised image float32 [*crop_hw, 3]
    and depth float32 [*depth_hw, 1] (m), with random choices drawn from `rng`."""
    _check_input(rgb, depth)
    draw = draw_augmentation(rng, augmentation)
    rgb, depth = resize_rgb(rgb, sizes.resize_hw), resize_depth(depth, sizes.resize_hw)
    if draw.flip:
        rgb, depth = hflip(rgb), hflip(depth)
    rgb = rotate_rgb(np.ascontiguousarray(rgb), draw.rotation_degrees)
    depth = rotate_depth(np.ascontiguousarray(depth), draw.rotation_degrees)
    rgb, depth = centre_crop(rgb, sizes.crop_hw), centre_crop(depth, sizes.crop_hw)
    depth = resize_depth(np.ascontiguousarray(depth), sizes.depth_hw)
    pixels = rgb.astype(np.float32) / np.float32(255.0)
    pixels = pca_lighting(pixels, draw.lighting_alpha)
    pixels = colour_jitter(pixels, draw.jitter_order, draw.jitter_alphas)
    image = normalize(pixels).astype(np.float32)
    return image, depth[..., None].astype(np.float32)


def eval_transform(
    rgb: np.ndarray, depth: np.ndarray, sizes: TransformSizes = PAPER_SIZES
) -> tuple[np.ndarray, np.ndarray]:
    """rgb uint8 [H, W, 3], depth float32 [H, W] (m) -> normalised image float32 [*crop_hw, 3]
    and depth float32 [*crop_hw, 1] (m)."""
    _check_input(rgb, depth)
    rgb, depth = resize_rgb(rgb, sizes.resize_hw), resize_depth(depth, sizes.resize_hw)
    rgb, depth = centre_crop(rgb, sizes.crop_hw), centre_crop(depth, sizes.crop_hw)
    image = normalize(rgb.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    return image, np.ascontiguousarray(depth[..., None], dtype=np.float32)
