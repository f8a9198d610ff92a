"""Face sets: an image folder (+ optional labels CSV and filter) -> aligned crops + manifest.

Input: a folder of photographs (or of drawings already framed as faces, with align="fixed").
Output artifact (kind "faces"): images/<stem>.jpg, S x S crops in THE crop geometry, and manifest.json
listing every kept face (labels, train/test split) and every rejected file with its reason.
"""

from __future__ import annotations

import csv
import hashlib
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from facefx import crop as cropgeo
from facefx.errors import FacefxError
from facefx.faces import FaceDetector
from facefx.images import BadImage, list_images, read_rgb
from facefx.manifest import hash_files, new_manifest, staged_dir, write_manifest
from facefx.pixels import PIXEL_CONTRACT

HELDOUT_PERCENT = 10  # faces whose name hashes below this are never trained on (evaluation only)
JPEG_QUALITY = 95

# For drawings a photo detector cannot see (anime faces), the keypoints are placed at fixed positions
# of the image (fractions of width and height), measured on the mean of selfie2anime's anime set.
ANIME_KEYPOINTS = ((0.34, 0.55), (0.66, 0.55), (0.50, 0.67), (0.50, 0.78))


def split_of(name: str) -> str:
    """'test' for ~10% of names (stable across runs and machines), else 'train'."""
    digest = int(hashlib.sha1(Path(name).name.encode()).hexdigest()[:8], 16)
    return "test" if digest % 100 < HELDOUT_PERCENT else "train"


# ---- labels -------------------------------------------------------------------------------------------
# Known columns are validated (UTKFace: age 0-120, gender 0 male / 1 female, race 0-4); others stay text.
_VALIDATORS: dict[str, Callable[[str], object]] = {}


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(v: str) -> int:
        x = int(v)
        if not lo <= x <= hi:
            raise ValueError(f"{x} outside {lo}-{hi}")
        return x
    return parse


_VALIDATORS.update(age=_int_in(0, 120), gender=_int_in(0, 1), race=_int_in(0, 4))


def read_labels(csv_path: str | os.PathLike, rejects: list[dict]) -> dict[str, dict]:
    """file name -> labels. Bad rows go to `rejects` with their line number and reason."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FacefxError(f"labels file {csv_path} does not exist")
    labels: dict[str, dict] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "file" not in reader.fieldnames:
            raise FacefxError(f"{csv_path} needs a header row with a 'file' column")
        for line, row in enumerate(reader, start=2):
            name = Path(row.get("file") or "").name
            try:
                if not name:
                    raise ValueError("empty file name")
                parsed = {}
                for key, value in row.items():
                    if key == "file" or key is None:
                        continue
                    if value is None or value == "":
                        raise ValueError(f"missing {key}")
                    parsed[key] = _VALIDATORS[key](value) if key in _VALIDATORS else value
            except ValueError as err:
                rejects.append({"file": name or f"{csv_path.name}:{line}", "reason": f"labels line {line}: {err}"})
                continue
            labels[name] = parsed
    return labels


_OPS = {">=": operator.ge, "<=": operator.le, "!=": operator.ne, "=": operator.eq, ">": operator.gt, "<": operator.lt}


def parse_filter(text: str | None) -> Callable[[dict], bool]:
    """'age>=18,age<=30,gender=1' -> predicate on a labels dict (all conditions must hold)."""
    if not text:
        return lambda _labels: True
    conds = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\w+)\s*(>=|<=|!=|=|>|<)\s*([\w.]+)\s*", part)
        if not m:
            raise FacefxError(f"bad filter condition {part!r}; write e.g. 'age>=18,age<=30,gender=0'")
        key, op, value = m.groups()
        conds.append((key, _OPS[op], value))

    def keep(labels: dict) -> bool:
        for key, op, value in conds:
            if key not in labels:
                raise FacefxError(f"filter uses {key!r} but the labels have only {sorted(labels)}")
            have = labels[key]
            want = type(have)(value) if isinstance(have, (int, float)) else value
            if not op(have, want):
                return False
        return True

    return keep


# ---- preparation --------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    source: Path
    out: Path
    size: int = 256
    labels: Path | None = None
    filter: str | None = None
    align: str = "detect"  # "detect": BlazeFace keypoints; "fixed": ANIME_KEYPOINTS (already-framed drawings)
    min_score: float = 0.6
    max_faces: int | None = None  # keep at most this many (in sorted file order) after filtering
    effect_domain: str | None = None  # free text for the manifest, e.g. "age: young 18-30"
    zoom: float = 1.0  # face size in the crop (crop.zoomed): > 1 for sources that are tight face chips


def prepare_faces(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Build a faces artifact at cfg.out; returns its manifest. Nothing is left on disk on failure."""
    spec = cropgeo.zoomed(cropgeo.CropSpec(size=cfg.size), cfg.zoom)
    rejects: list[dict] = []
    labels = read_labels(cfg.labels, rejects) if cfg.labels else None
    keep = parse_filter(cfg.filter)
    files = list_images(cfg.source)
    if labels is not None:
        files = [p for p in files if p.name in labels and keep(labels[p.name])] + \
                [p for p in files if p.name not in labels]
    items: list[dict] = []
    detector = FaceDetector("image", min_score=cfg.min_score) if cfg.align == "detect" else None
    try:
        with staged_dir(cfg.out) as tmp:
            (tmp / "images").mkdir()
            for path in tqdm(files, desc=f"prepare {cfg.out.name}", unit="img", disable=not progress):
                if cfg.max_faces and len(items) >= cfg.max_faces:
                    break
                if labels is not None and path.name not in labels:
                    if not any(r["file"] == path.name for r in rejects):
                        rejects.append({"file": path.name, "reason": "no row in the labels file"})
                    continue
                try:
                    rgb = read_rgb(path)
                    kps = _keypoints(rgb, detector)
                except BadImage as err:
                    rejects.append({"file": path.name, "reason": str(err)})
                    continue
                face = cropgeo.crop(rgb, cropgeo.face_transform(kps, spec), spec)
                out_name = f"images/{path.stem}.jpg"
                cv2.imwrite(str(tmp / out_name), face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                item = {"file": out_name, "source": path.name, "split": split_of(path.name)}
                if labels is not None:
                    item.update(labels[path.name])
                items.append(item)
            if not items:
                raise FacefxError(f"no usable face in {cfg.source} ({len(rejects)} rejected, first: "
                                  f"{rejects[0]['file'] + ': ' + rejects[0]['reason'] if rejects else 'none'})")
            manifest = new_manifest(
                "faces", effect=None, source=str(cfg.source), labels=str(cfg.labels) if cfg.labels else None,
                filter=cfg.filter, align=cfg.align, domain=cfg.effect_domain, crop=spec.to_dict(),
                pixels=PIXEL_CONTRACT, items=items, rejected=rejects,
                counts={"kept": len(items), "rejected": len(rejects),
                        "train": sum(i["split"] == "train" for i in items),
                        "test": sum(i["split"] == "test" for i in items)})
            manifest["files"] = hash_files(tmp, [i["file"] for i in items])
            write_manifest(tmp, manifest)
    finally:
        if detector is not None:
            detector.close()
    return manifest


def _keypoints(rgb: np.ndarray, detector: FaceDetector | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    if detector is None:
        return np.array(ANIME_KEYPOINTS) * [w, h]
    faces = detector.detect(rgb)
    if not faces:
        raise BadImage("no face found")
    if len(faces) > 1:
        raise BadImage(f"{len(faces)} faces found; use photos of one face")
    return faces[0].keypoints


def load_faces(folder: str | os.PathLike, split: str | None = None) -> tuple[dict, list[Path]]:
    """A faces artifact's manifest and its crop paths (optionally only the 'train' or 'test' split)."""
    from facefx.manifest import read_manifest

    folder = Path(folder)
    manifest = read_manifest(folder, kind="faces")
    paths = [folder / i["file"] for i in manifest["items"] if split is None or i["split"] == split]
    if not paths:
        raise FacefxError(f"{folder} has no faces in split {split!r}")
    return manifest, paths
