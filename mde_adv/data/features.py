"""TFDS features shared by the NYU-v2 and procedural-rooms builders, readable without TensorFlow.

`image` is a `tfds.features.Image` fed with PNG bytes that PIL encodes (TFDS would need
TensorFlow to encode a NumPy array itself; decoding in `tfds.data_source` uses PIL);
`depth` is a zlib-compressed float32 `Tensor` in metres; `id` a stable string.
"""

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

PNG_COMPRESS_LEVEL = 3  # about as fast as level 1 and 5 % smaller on NYU-v2 images


def rgbd_features(height: int, width: int) -> tfds.features.FeaturesDict:
    """Features: image uint8 [height, width, 3], depth float32 [height, width] (m), id string."""
    return tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(height, width, 3), encoding_format="png"),
            "depth": tfds.features.Tensor(
                shape=(height, width), dtype=np.float32, encoding=tfds.features.Encoding.ZLIB
            ),
            "id": tfds.features.Text(),
        }
    )


def encode_png(rgb: np.ndarray) -> bytes:
    """RGB uint8 [H, W, 3] -> PNG bytes."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"encode_png: need uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="png", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def rgbd_example(rgb: np.ndarray, depth: np.ndarray, example_id: str) -> dict:
    """A TFDS example of `rgbd_features` from RGB uint8 [H, W, 3] and depth float32 [H, W]."""
    return {"image": encode_png(rgb), "depth": depth.astype(np.float32), "id": example_id}
