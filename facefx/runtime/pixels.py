"""The pixel contract: the only place that normalizes pixels.

Images on disk and from OpenCV are uint8 HWC BGR. Models see RGB, NCHW float32 in [-1, 1].
Numpy only (the realtime path never imports torch); training wraps these with torch.from_numpy.
"""

from __future__ import annotations

import numpy as np

PIXEL_CONTRACT = {
    "layout": "NCHW",
    "channels": "RGB",
    "dtype": "float32",
    "range": [-1.0, 1.0],
    "from_uint8": "x / 127.5 - 1",
}


def bgr_to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 BGR (H, W, 3) or (N, H, W, 3) -> float32 RGB (N, 3, H, W) in [-1, 1]."""
    return rgb_to_nchw(images[..., ::-1])


def rgb_to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) or (N, H, W, 3) -> float32 RGB (N, 3, H, W) in [-1, 1]."""
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {images.dtype}")
    batch = images[None] if images.ndim == 3 else images
    x = batch.astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    return np.ascontiguousarray(x)


def nchw_to_rgb(x: np.ndarray) -> np.ndarray:
    """float32 (N, 3, H, W) in [-1, 1] -> uint8 RGB (N, H, W, 3); values outside the range are clipped."""
    y = (np.clip(x, -1.0, 1.0) + 1.0) * 127.5
    return np.ascontiguousarray(np.rint(y).astype(np.uint8).transpose(0, 2, 3, 1))


def nchw_to_bgr(x: np.ndarray) -> np.ndarray:
    """float32 (N, 3, H, W) in [-1, 1] -> uint8 BGR (N, H, W, 3)."""
    return np.ascontiguousarray(nchw_to_rgb(x)[..., ::-1])
