"""Foundation: pixel contract, manifests, crop geometry, face detection, image checks and face-set preparation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facefx.errors import FacefxError
from facefx.manifest import (
    hash_files,
    new_manifest,
    next_run_dir,
    read_manifest,
    staged_dir,
    verify_files,
    write_manifest,
)
from facefx.runtime import crop as cropgeo
from facefx.runtime.faces import FaceDetector
from facefx.runtime.images import BadImage, read_rgb
from facefx.runtime.pixels import bgr_to_nchw, nchw_to_bgr, nchw_to_rgb, rgb_to_nchw
from facefx.train.prepare import PrepareConfig, parse_filter, prepare_faces


# ---- pixels ---------------------------------------------------------------------------------------------
def test_pixel_contract_round_trip_and_channel_order():
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV order
    x = bgr_to_nchw(bgr)
    assert x.shape == (1, 3, 4, 5) and x.dtype == np.float32
    assert x[0, 2].min() == 1.0 and x[0, 0].max() == -1.0  # blue is channel 2 of RGB, at +1
    assert np.array_equal(nchw_to_bgr(x)[0], bgr)
    rgb = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(nchw_to_rgb(rgb_to_nchw(rgb)), rgb)


# ---- manifest -------------------------------------------------------------------------------------------
def test_manifest_round_trip_and_hash_check(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"weights")
    m = new_manifest("student", effect="age", network={"G": {"type": "x"}})
    m["files"] = hash_files(tmp_path, ["w.bin"])
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path, kind="student")
    assert back == json.loads(json.dumps(m))
    verify_files(tmp_path)
    (tmp_path / "w.bin").write_bytes(b"tampered")
    with pytest.raises(FacefxError, match="does not match its manifest hash"):
        verify_files(tmp_path)
    with pytest.raises(FacefxError, match="expected 'teacher'"):
        read_manifest(tmp_path, kind="teacher")
    with pytest.raises(FacefxError, match="does not exist"):
        read_manifest(tmp_path / "nope")


def test_staged_dir_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with staged_dir(tmp_path / "art") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with staged_dir(tmp_path / "art") as tmp:
        (tmp / "ok.txt").write_text("x")
    assert (tmp_path / "art" / "ok.txt").is_file()
    assert next_run_dir(tmp_path, "x").name == "00000-x"


# ---- crop geometry --------------------------------------------------------------------------------------
def test_similarity_transform_recovers_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = cropgeo.similarity_transform(src, src @ rot.T + t)
    assert np.allclose(m[:, :2], rot) and np.allclose(m[:, 2], t)


def test_crop_then_inverse_brings_keypoints_back(astronaut_rgb):
    spec = cropgeo.CropSpec(size=256)
    with FaceDetector("image") as det:
        face = det.detect(astronaut_rgb)[0]
        m = cropgeo.face_transform(face.keypoints, spec)
        back = cropgeo.apply(cropgeo.invert(m), cropgeo.apply(m, face.keypoints))
        assert np.abs(back - face.keypoints).max() < 1.0
        # The crop really is the template framing: detecting on the crop finds the eyes where the template puts them.
        on_crop = det.detect(cropgeo.crop(astronaut_rgb, m, spec))[0].keypoints
    template = np.array(spec.template) * spec.size
    assert np.abs(on_crop[:2] - template[:2]).max() < 0.04 * spec.size
    # ... and mapping those back through the inverse lands on the original eyes.
    assert np.abs(cropgeo.apply(cropgeo.invert(m), on_crop[:2]) - face.keypoints[:2]).max() < 0.04 * 256


def test_zoomed_crop_recropped_for_a_judge_matches_the_plain_crop(astronaut_rgb):
    """A zoom 1.4 crop shows the face 1.4x larger; resampled into the plain geometry (what a judge trained on plain
    crops is given) it matches the plain crop of the same face wherever the zoomed crop has pixels."""
    import torch

    from facefx.runtime.pixels import rgb_to_nchw
    from facefx.train.judges import recrop

    plain = cropgeo.CropSpec(size=256)
    zoom = cropgeo.zoomed(plain, 1.4)
    assert zoom.name == "facefx-v1-zoom1.4" and cropgeo.zoomed(plain, 1) == plain
    t0, t1 = np.array(plain.template), np.array(zoom.template)
    assert np.isclose(np.linalg.norm(t1[1] - t1[0]), 1.4 * np.linalg.norm(t0[1] - t0[0]))  # eyes 1.4x apart
    with FaceDetector("image") as det:
        kp = det.detect(astronaut_rgb)[0].keypoints
    crops = [cropgeo.crop(astronaut_rgb, cropgeo.face_transform(kp, s), s) for s in (plain, zoom)]
    theta = torch.from_numpy(cropgeo.recrop_theta(zoom, plain)).float()
    back = recrop(torch.from_numpy(rgb_to_nchw(crops[1][None])), theta)[0]
    ref = torch.from_numpy(rgb_to_nchw(crops[0][None]))[0]
    inner = slice(64, 192)  # the zoomed crop covers the plain crop's middle 1/1.4
    assert float((back - ref)[:, inner, inner].abs().mean()) < 0.03  # pixels in [-1, 1]: ~1% of the range
    assert cropgeo.recrop_theta(plain, plain) is None


def test_paste_of_unchanged_crop_keeps_frame_and_background_exact(astronaut_rgb):
    spec = cropgeo.CropSpec(size=128)
    frame = astronaut_rgb.copy()
    with FaceDetector("image") as det:
        m = cropgeo.face_transform(det.detect(frame)[0].keypoints, spec)
    face = cropgeo.crop(frame, m, spec)
    out = cropgeo.paste(frame.copy(), face, m, spec)
    assert np.abs(out.astype(int) - frame).mean() < 1.0
    dark = cropgeo.paste(frame.copy(), (face * 0.3).astype(np.uint8), m, spec)
    changed = np.abs(dark.astype(int) - frame).sum(-1) > 0
    assert changed[100:160, 195:255].all()  # the face (box centre ~ (225, 130)) darkened
    assert not changed[400:, :].any() and not changed[:, :100].any()  # far background untouched


def test_face_at_frame_edge_is_padded_not_skipped(astronaut_rgb):
    spec = cropgeo.CropSpec(size=128)
    half = np.ascontiguousarray(astronaut_rgb[:, 200:])  # the face now touches the left edge
    with FaceDetector("image") as det:
        faces = det.detect(half)
    assert faces, "the detector should still find the half-cut face"
    crop = cropgeo.crop(half, cropgeo.face_transform(faces[0].keypoints, spec), spec)
    assert crop.shape == (128, 128, 3) and crop.std() > 10


# ---- detector -------------------------------------------------------------------------------------------
def test_detects_the_astronauts_face(astronaut_rgb):
    with FaceDetector("image") as det:
        faces = det.detect(astronaut_rgb)
    assert len(faces) == 1 and faces[0].score > 0.8
    x, y, w, h = faces[0].box
    assert 150 < x + w / 2 < 290 and 60 < y + h / 2 < 190  # her face, not the flag or the suit
    with FaceDetector("video") as det:
        for ts in (0, 33, 33, 20):  # non-increasing timestamps are tolerated
            assert len(det.detect(astronaut_rgb, ts)) == 1


# ---- bad inputs -----------------------------------------------------------------------------------------
def _bad_files(folder: Path, astronaut: np.ndarray) -> dict[str, str]:
    """Write one file per kind of bad input; returns file name -> expected reason fragment."""
    from PIL import Image

    good = cv2.imencode(".jpg", astronaut[..., ::-1])[1].tobytes()
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 100)
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(astronaut[..., 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([astronaut, np.full(astronaut.shape[:2], 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(astronaut[:40, :40]).save(folder / "tiny.png")
    Image.new("1", (8000, 6000)).save(folder / "huge.png")
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3))
    ramp[..., 1] //= 2
    Image.fromarray(ramp).save(folder / "noface.png")
    Image.fromarray(np.concatenate([astronaut[:300, 100:400]] * 2, axis=1)).save(folder / "twofaces.png")
    return {"corrupt.jpg": "corrupt", "truncated.jpg": "truncated", "notes.txt": "not an image",
            "gray.png": "grayscale", "rgba.png": "transparency", "tiny.png": "too small", "huge.png": "too large",
            "noface.png": "no face", "twofaces.png": "2 faces"}


def test_prepare_skips_every_bad_input_with_one_reason(tmp_path, astronaut_rgb, face_files):
    src = tmp_path / "src"
    src.mkdir()
    expected = _bad_files(src, astronaut_rgb)
    for f in face_files[:3]:
        shutil.copy(f, src)
    out = tmp_path / "faces"
    manifest = prepare_faces(PrepareConfig(source=src, out=out, size=64), progress=False)
    reasons = {r["file"]: r["reason"] for r in manifest["rejected"]}
    for name, fragment in expected.items():
        assert fragment in reasons.get(name, ""), (name, reasons.get(name))
        assert "\n" not in reasons[name]
    assert manifest["counts"]["kept"] == 3
    crops = sorted((out / "images").glob("*.jpg"))
    assert len(crops) == 3 and cv2.imread(str(crops[0])).shape == (64, 64, 3)
    verify_files(out)


def test_read_rgb_errors_are_one_line(tmp_path, astronaut_rgb):
    _bad_files(tmp_path, astronaut_rgb)
    for name in ("corrupt.jpg", "gray.png", "rgba.png"):
        with pytest.raises(BadImage) as err:
            read_rgb(tmp_path / name)
        assert "\n" not in str(err.value)
    assert read_rgb(tmp_path / "gray.png", allow_gray=True).shape[2] == 3


def test_prepare_with_labels_filter_and_bad_rows(tmp_path, face_files):
    labels = tmp_path / "labels.csv"
    rows = ["file,age,gender,race"] + [f"{f.name},{f.name.split('_')[0]},{f.name.split('_')[1]},0" for f in face_files]
    rows += ["ghost.jpg,abc,0,0", "ghost2.jpg,30,3,0"]
    labels.write_text("\n".join(rows) + "\n")
    manifest = prepare_faces(PrepareConfig(source=face_files[0].parent, out=tmp_path / "old", size=64, labels=labels,
                                           filter="age>=50"), progress=False)
    assert manifest["counts"]["kept"] == sum(int(f.name.split("_")[0]) >= 50 for f in face_files)
    assert all(i["age"] >= 50 for i in manifest["items"])
    reasons = " ".join(r["reason"] for r in manifest["rejected"])
    assert "labels line" in reasons and "outside 0-1" in reasons


def test_prepare_errors_leave_nothing_on_disk(tmp_path, astronaut_rgb):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FacefxError, match="is empty"):
        prepare_faces(PrepareConfig(source=empty, out=tmp_path / "out", size=64), progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.jpg").write_bytes(b"nope")
    with pytest.raises(FacefxError, match="no usable face"):
        prepare_faces(PrepareConfig(source=bad, out=tmp_path / "out", size=64), progress=False)
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    with pytest.raises(FacefxError, match="bad filter"):
        parse_filter("age>>3")


def test_prepare_cli_reports_missing_folder_in_one_line(tmp_path):
    import subprocess
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, str(REPO / "train/prepare.py"), str(tmp_path / "missing"), "--name", "x",
                        "--root", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "is not a folder" in r.stderr
