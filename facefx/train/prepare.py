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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facefx.errors import FacefxError
from facefx.manifest import hash_files, new_manifest, staged_dir, write_manifest
from facefx.options import option
from facefx.runtime import crop as cropgeo
from facefx.runtime.faces import FaceDetector
from facefx.runtime.images import BadImage, list_images, read_rgb
from facefx.runtime.pixels import PIXEL_CONTRACT

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
    """file (as written in the CSV: a name, or a path relative to the image folder) -> labels.

    Bad rows go to `rejects` with their line number and reason. A UTF-8 byte-order mark is accepted; a file that
    is not UTF-8, or two rows giving one file different labels, is a FacefxError (no row silently wins).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FacefxError(f"labels file {csv_path} does not exist")
    labels: dict[str, dict] = {}
    lines: dict[str, int] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:  # utf-8-sig: Excel's BOM is not a column name
            reader = csv.DictReader(f)
            if not reader.fieldnames or "file" not in [n.strip() for n in reader.fieldnames]:
                raise FacefxError(f"{csv_path} needs a header row with a 'file' column")
            for line, row in enumerate(reader, start=2):
                row = {(k.strip() if isinstance(k, str) else k): v for k, v in row.items()}
                name = _label_key(row.get("file") or "")
                try:
                    if not name:
                        raise ValueError("empty file name")
                    parsed = {}
                    for key, value in row.items():
                        if key == "file" or key is None:
                            continue
                        if value is None or value.strip() == "":
                            raise ValueError(f"missing {key}")
                        parsed[key] = _VALIDATORS[key](value) if key in _VALIDATORS else value.strip()
                except ValueError as err:
                    rejects.append({"file": name or f"{csv_path.name}:{line}", "reason": f"labels line {line}: {err}"})
                    continue
                if name in labels and labels[name] != parsed:
                    raise FacefxError(f"{csv_path} lines {lines[name]} and {line} give {name} different labels "
                                      f"({labels[name]} vs {parsed}); keep one row per file")
                labels[name], lines[name] = parsed, lines.get(name, line)
    except UnicodeDecodeError as err:
        raise FacefxError(f"{csv_path} is not UTF-8 text (byte {err.start}); save it as UTF-8 CSV") from None
    return labels


def _label_key(text: str) -> str:
    """A labels row's file as a relative POSIX path ('a/face.jpg', 'face.jpg'); a leading './' is dropped."""
    text = text.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text


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
            try:
                want = type(have)(value) if isinstance(have, (int, float)) else value
            except ValueError:
                raise FacefxError(f"filter {key}{_op_text(op)}{value}: {value!r} is not a number, but {key} is; "
                                  f"write e.g. '{key}>=18'") from None
            if not op(have, want):
                return False
        return True

    return keep


def _op_text(op: Callable) -> str:
    return next(k for k, v in _OPS.items() if v is op)


# ---- preparation --------------------------------------------------------------------------------------
@dataclass
class PrepareConfig:
    source: Path = option(help="folder of images (searched recursively)", flag="source")
    out: Path = option(help="the face set folder to write (train/prepare.py: --root/--name)", cli=False)
    # Crops smaller than 32 px hold no usable face; the realtime crop is at most 1024.
    size: int = option(256, "crop side S in pixels", ge=32, le=1024)
    labels: Path | None = option(None, "CSV with a 'file' column (+ e.g. age, gender)")
    filter: str | None = option(None, "conditions on labels, e.g. 'age>=18,age<=30,gender=0'")
    # "detect": BlazeFace keypoints; "fixed": ANIME_KEYPOINTS (already-framed drawings)
    align: str = option("detect", "detect: BlazeFace keypoints; fixed: images already framed as faces (anime "
                        "drawings)", choices=("detect", "fixed"))
    min_score: float = option(0.6, "face detector confidence threshold", ge=0, le=1)
    # keep at most this many (in sorted file order) after filtering
    max_faces: int | None = option(None, "keep at most this many faces", ge=1, none="all")
    # free text for the manifest, e.g. "age: young 18-30"
    effect_domain: str | None = option(None, "description of the domain for the manifest", flag="--domain")
    # Face size in the crop (crop.zoomed): > 1 for sources that are tight face chips. Outside [0.5, 3] the crop is
    # mostly background, or the brows and chin leave it.
    zoom: float = option(1.0, "face size in the crop: > 1 for tight face chips such as UTKFace (1.4: ~2x the face "
                         "pixels, less replicated border); every later stage and the realtime crop follow it",
                         ge=0.5, le=3)


def prepare_faces(cfg: PrepareConfig, progress: bool = True) -> dict:
    """Build a faces artifact at cfg.out; returns its manifest. Nothing is left on disk on failure."""
    spec = cropgeo.zoomed(cropgeo.CropSpec(size=cfg.size), cfg.zoom)
    if cfg.filter and not cfg.labels:
        raise FacefxError(f"--filter {cfg.filter!r} needs --labels (a CSV with the columns it uses); "
                          "pass --labels or drop --filter")
    rejects: list[dict] = []
    labels = read_labels(cfg.labels, rejects) if cfg.labels else None
    keep = parse_filter(cfg.filter)
    files = list_images(cfg.source)
    rel = {p: p.relative_to(cfg.source).as_posix() for p in files}
    out_names = _output_names([rel[p] for p in files])
    found: dict[Path, dict | str] = {}  # a file's labels, or why it has none
    if labels is not None:
        found = _match_labels(files, rel, labels)
        files = [p for p in files if isinstance(found[p], dict) and keep(found[p])] + \
                [p for p in files if not isinstance(found[p], dict)]
    items: list[dict] = []
    detector = FaceDetector("image", min_score=cfg.min_score) if cfg.align == "detect" else None
    try:
        with staged_dir(cfg.out) as tmp:
            (tmp / "images").mkdir()
            for path in tqdm(files, desc=f"prepare {cfg.out.name}", unit="img", disable=not progress):
                if cfg.max_faces and len(items) >= cfg.max_faces:
                    break
                if labels is not None and not isinstance(found[path], dict):
                    if not any(r["file"] in (rel[path], path.name) for r in rejects):
                        rejects.append({"file": rel[path], "reason": found[path]})
                    continue
                try:
                    rgb = read_rgb(path)
                    kps = _keypoints(rgb, detector)
                except BadImage as err:
                    rejects.append({"file": rel[path], "reason": str(err)})
                    continue
                face = cropgeo.crop(rgb, cropgeo.face_transform(kps, spec), spec)
                out_name = f"images/{out_names[rel[path]]}.jpg"
                ok, jpeg = cv2.imencode(".jpg", face[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                if not ok:
                    raise FacefxError(f"cannot encode the crop of {rel[path]} as JPEG")
                (tmp / out_name).write_bytes(jpeg.tobytes())  # raises on a full disk (cv2.imwrite would not)
                item = {"file": out_name, "source": rel[path], "split": split_of(path.name)}
                if labels is not None:
                    item.update(found[path])
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


def _match_labels(files: list[Path], rel: dict[Path, str], labels: dict[str, dict]) -> dict[Path, dict | str]:
    """Each file's labels row (by its relative path, else by its name where that is unique), or why it has none."""
    names = [Path(r).name for r in rel.values()]
    found: dict[Path, dict | str] = {}
    for p in files:
        if rel[p] in labels:
            found[p] = labels[rel[p]]
        elif p.name in labels and names.count(p.name) == 1:
            found[p] = labels[p.name]
        elif p.name in labels:
            found[p] = f"labels row {p.name!r} fits several files named so; write its path in the labels file"
        else:
            found[p] = "no row in the labels file"
    return found


def _output_names(rels: list[str]) -> dict[str, str]:
    """Relative source path -> crop name (no suffix), unique: the stem where no other file has it, else the
    path with its folders and suffix ('a/face.jpg' -> 'a_face_jpg'), so files of one name in different folders
    (or x.jpg next to x.png) each keep their crop."""
    stems = [Path(r).stem for r in rels]
    out: dict[str, str] = {}
    for r, stem in zip(rels, stems, strict=True):
        name = stem if stems.count(stem) == 1 else re.sub(r"[^\w.-]", "_", r.replace("/", "_").replace(".", "_"))
        while name in out.values():  # a generated name that equals another file's stem
            name += "_"
        out[r] = name
    return out


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
