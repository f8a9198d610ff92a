"""Reading images from disk with one clear reason for every file that cannot be used."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from facefx.errors import FacefxError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MIN_SIDE = 64
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding


class BadImage(FacefxError):
    """An image file that cannot be used; str() is the one-line reason."""


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every file under folder (recursively) in sorted order; non-images are included so they can be reported."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FacefxError(f"{folder} is not a folder; pass a folder of face images")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise FacefxError(f"{folder} is empty; put face images (.jpg, .png) in it")
    return files


def read_rgb(path: str | os.PathLike, allow_gray: bool = False, allow_alpha: bool = False) -> np.ndarray:
    """Decode an image file to uint8 RGB (H, W, 3), or raise BadImage saying why it is unusable.

    Training data must be colour photographs: grayscale and transparent (RGBA) files are refused
    unless allowed (the realtime loop allows both and converts them).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise BadImage(f"too large ({w}x{h}); resize it below {MAX_PIXELS // 1_000_000} megapixels")
            if min(w, h) < MIN_SIDE:
                raise BadImage(f"too small ({w}x{h}); faces need at least {MIN_SIDE} px")
            mode = im.mode
            im.load()  # raises on truncated or corrupt data
            im = ImageOps.exif_transpose(im)  # a phone photo stored sideways with an EXIF orientation tag
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                if not allow_alpha:
                    raise BadImage(f"has transparency ({mode}); save it as an RGB JPEG/PNG")
            elif mode in ("L", "I", "I;16", "F", "1"):
                if not allow_gray:
                    raise BadImage("is grayscale; effects need colour photographs")
            rgb = _to_rgb8(im)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("is not an image (cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImage(f"is corrupt or truncated ({err})") from None
    except Image.DecompressionBombError:
        raise BadImage(f"is too large (over {Image.MAX_IMAGE_PIXELS * 2 // 1_000_000} megapixels, a decompression "
                       f"bomb guard); resize it below {MAX_PIXELS // 1_000_000} megapixels") from None
    if not allow_gray and _looks_gray(rgb):
        raise BadImage("is grayscale (its three channels are equal); effects need colour photographs")
    return np.ascontiguousarray(rgb)


def _to_rgb8(im) -> np.ndarray:
    """uint8 RGB from any PIL mode. 16-bit and 32-bit grayscale (I;16, I, F) are scaled to 0-255, not clipped
    (PIL's convert("RGB") clips them: a 16-bit PNG comes out all white)."""
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im).astype(np.float64)
        if im.mode == "F" and a.size and a.max() <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        elif a.size and a.max() > 255:
            a = a / 257.0  # 16-bit: 65535 -> 255
        gray = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _looks_gray(rgb: np.ndarray) -> bool:
    # A grayscale photo saved as RGB: channel differences stay within JPEG noise everywhere.
    small = rgb[:: max(1, rgb.shape[0] // 64), :: max(1, rgb.shape[1] // 64)].astype(np.int16)
    return bool(np.abs(small[..., 0] - small[..., 1]).mean() < 2 and np.abs(small[..., 1] - small[..., 2]).mean() < 2)
