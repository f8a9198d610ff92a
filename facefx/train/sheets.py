"""Contact sheets: rows of equally sized images with captions, saved as one PNG (used by every stage)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facefx.manifest import atomic_write_bytes
from facefx.options import option


def grid(rows: Sequence[Sequence[np.ndarray]], captions: Sequence[str] | None = None, cell: int = 128,
         pad: int = 2) -> np.ndarray:
    """uint8 BGR sheet from rows of uint8 BGR images (each resized to cell x cell); optional column captions."""
    n_cols = max(len(r) for r in rows)
    top = 18 if captions else 0
    sheet = np.full((top + len(rows) * (cell + pad) + pad, n_cols * (cell + pad) + pad, 3), 255, np.uint8)
    for c, text in enumerate(captions or []):
        cv2.putText(sheet, text, (pad + c * (cell + pad) + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = top + pad + r * (cell + pad), pad + c * (cell + pad)
            sheet[y:y + cell, x:x + cell] = cv2.resize(img, (cell, cell), interpolation=cv2.INTER_AREA)
    return sheet


def save_png(path: str | os.PathLike, image_bgr: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write_bytes(path, buf.tobytes())
    return Path(path)


@dataclass
class ContactSheetOptions:
    """The command line of train/contact_sheet.py (facefx.options builds its parser and checks --n)."""

    faces: list[Path] = option(help="face set folders (train/prepare.py)", flag="faces", nargs="+")
    out: Path = option(help="PNG to write", required=True)
    n: int = option(8, "faces per row", ge=1, le=64)
