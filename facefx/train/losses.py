"""GAN losses and CycleGAN's image history pool."""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F


def lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): MSE of the patch scores to 1 (real) or 0 (fake)."""
    return F.mse_loss(pred.float(), torch.full_like(pred.float(), 1.0 if real else 0.0))


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): the discriminator sees old fakes too.

    With probability 0.5 a query image is swapped for a stored one, which is replaced by the query.
    """

    def __init__(self, size: int = 50, rng: random.Random | None = None):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.rng = rng or random.Random(0)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() < 0.5:
                i = self.rng.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = img.clone()
            else:
                out.append(img)
        return torch.cat(out)
