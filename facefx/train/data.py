"""Face crops in memory as uint8 tensors, and the jittered batches training draws from them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from facefx.errors import FacefxError
from facefx.runtime.pixels import bgr_to_nchw
from facefx.train.prepare import load_faces


def read_crops(paths: Sequence[Path], size: int) -> np.ndarray:
    """uint8 BGR (N, size, size, 3) from crop files (resized with area interpolation)."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise FacefxError(f"cannot read {p}; re-run train/prepare.py for that face set")
        out[i] = img if img.shape[0] == size else cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return out


def load_domain(folders: Sequence[str | os.PathLike], size: int, split: str | None) -> tuple[list[dict], torch.Tensor]:
    """Manifests and a uint8 (N, 3, size, size) RGB tensor of every face of the given split in the folders."""
    manifests, paths = [], []
    for folder in folders:
        m, p = load_faces(folder, split)
        manifests.append(m)
        paths += p
    rgb = read_crops(paths, size)[..., ::-1]
    return manifests, torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))


def to_model(batch_u8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float32 RGB [-1, 1]: the pixel contract, as in facefx.runtime.pixels."""
    return batch_u8.float() / 127.5 - 1.0


class JitterSampler:
    """Random batches with CycleGAN's augmentation: resize to 1.125x, random crop back, random flip."""

    def __init__(self, images_u8: torch.Tensor, size: int, generator: torch.Generator):
        if len(images_u8) == 0:
            raise FacefxError("a face set is empty; prepare it with train/prepare.py")
        self.load = int(round(size * 1.125))
        self.size = size
        self.g = generator
        self.images = torch.nn.functional.interpolate(images_u8.float(), size=(self.load, self.load),
                                                      mode="bilinear", antialias=True, align_corners=False
                                                      ).round().clamp(0, 255).to(torch.uint8)

    def __call__(self, batch: int) -> torch.Tensor:
        """(batch, 3, size, size) float32 RGB [-1, 1]."""
        idx = torch.randint(len(self.images), (batch,), generator=self.g)
        out = torch.empty(batch, 3, self.size, self.size, dtype=torch.uint8)
        offsets = torch.randint(self.load - self.size + 1, (batch, 2), generator=self.g)
        flips = torch.rand(batch, generator=self.g) < 0.5
        for j in range(batch):
            y, x = offsets[j].tolist()
            img = self.images[idx[j], :, y:y + self.size, x:x + self.size]
            out[j] = img.flip(-1) if flips[j] else img
        return to_model(out)


def bgr_batch(images_bgr: np.ndarray) -> torch.Tensor:
    """uint8 BGR (N, H, W, 3) -> float32 RGB (N, 3, H, W) [-1, 1] tensor."""
    return torch.from_numpy(bgr_to_nchw(images_bgr))
