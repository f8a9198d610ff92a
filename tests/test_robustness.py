"""Hostile inputs against the command lines (issue 30): every row of the QA table, and the cases that were
already handled well, as tests.

Each case asserts what a user sees: the exit code (0 done, 2 bad input, 130/143 signals), one line saying what
is wrong and what to do (no traceback), that every file that was there before is byte-for-byte unchanged
(except an output the command was asked to write and succeeded in writing), and that no hidden `.partial`
file or folder is left anywhere. Inputs are tiny (64 px models, 64-200 px images), so the file runs in
seconds; the commands run in-process except where a signal must reach a real process.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from helpers_onnx import contract as make_contract
from helpers_onnx import make_effect_model, make_models_dir
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
FACE = FIXTURES / "faces" / "55_1_0_20170103183939755.jpg.chip.jpg"  # a held-out UTKFace chip, 200 px, one face


# ---- running a command and checking what a user sees ---------------------------------------------------
_SCRIPTS: dict[str, object] = {}


def script(rel: str):
    """A command's module (realtime/webcam.py ...), loaded once, so main(argv) runs in this process."""
    if rel not in _SCRIPTS:
        spec = importlib.util.spec_from_file_location(Path(rel).stem + "_cli", REPO / rel)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _SCRIPTS[rel] = mod
    return _SCRIPTS[rel]


def run(rel: str, argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of a command run as `python rel argv...` would (cli_main turns errors into exits)."""
    capsys.readouterr()
    try:
        code = script(rel).main([str(a) for a in argv]) or 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    return code, capsys.readouterr().err


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones too) -> sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def partials(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*") if ".partial" in p.name]


def check(code: int, err: str, root: Path, before: dict[str, str], *, exit: int, says: tuple[str, ...] = (),
          written: tuple[str, ...] = ()) -> None:
    """The three promises: the exit code; for a failure one 'error:' line containing every phrase of `says`
    (the problem and what to do); every pre-existing file unchanged except `written`; no .partial left."""
    assert code == exit, f"exit {code}, expected {exit}; stderr:\n{err}"
    assert "Traceback" not in err, err
    if exit == 2:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, f"expected one error line:\n{err}"
        for phrase in says:
            assert phrase in errors[0], f"{phrase!r} not in {errors[0]!r}"
    else:
        assert not any(line.startswith(("error: ", "internal error")) for line in err.splitlines()), err
    after = snapshot(root)
    changed = [k for k, v in before.items() if k not in written and after.get(k) != v]
    assert not changed, f"pre-existing files changed or removed: {changed}"
    assert not partials(root), partials(root)


# ---- inputs ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models_dir(tmp_path_factory.mktemp("models"), ("age",), size=64)


def face_bgr() -> np.ndarray:
    return cv2.imread(str(FACE))


def with_contract(path: Path, **changes) -> Path:
    """Rewrite the contract embedded in an ONNX test model (e.g. pixels={...})."""
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    c = json.loads(props["facefx"])
    c.update(changes)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {"facefx": json.dumps(c)})
    onnx.save(model, str(path))
    return path


def half_size_model(path: Path, size: int = 64) -> Path:
    """A model whose output is half its input's size (as a 128 px model under a 256 px contract)."""
    from onnx import TensorProto, helper

    node = helper.make_node("AveragePool", ["image"], ["output"], kernel_shape=[2, 2], strides=[2, 2])
    graph = helper.make_graph([node], "half",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                                             [1, 3, size // 2, size // 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"facefx": json.dumps(make_contract("age", size))})
    onnx.save(model, str(path))
    return path


def huge_png(path: Path, w: int = 20000, h: int = 20000) -> Path:
    """A 70-byte PNG whose header claims w x h pixels (a decompression bomb)."""
    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[16:29]
    ihdr[0:8] = struct.pack(">II", w, h)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def many_faces(path: Path) -> Path:
    """Three face photos side by side on one image."""
    face = cv2.resize(face_bgr(), (160, 160))
    cv2.imwrite(str(path), np.hstack([face, np.full((160, 40, 3), 128, np.uint8), face,
                                      np.full((160, 40, 3), 128, np.uint8), face]))
    return path


def video(path: Path, frames: list[np.ndarray], fps: float = 10) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def noise_frames(n: int, w: int = 320, h: int = 240) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), np.uint8) for _ in range(n)]


def colour_pattern(w: int = 200, h: int = 100) -> np.ndarray:
    """RGB: left half red, right half blue, a green band on top (no face; asymmetric, so rotation shows)."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, : w // 2] = (220, 30, 30)
    rgb[:, w // 2:] = (30, 30, 220)
    rgb[: h // 5] = (30, 200, 30)
    return rgb


# ---- webcam.py: the cases a careful QA engineer tries, one row each -------------------------------------
WEBCAM = "realtime/webcam.py"


def _webcam_case(case: str, d: Path, models: Path) -> tuple[list, dict]:
    """(argv, expectations) for one webcam case; builds its inputs in d. Expectations: exit, says, written."""
    common = ["--no-window", "--models-dir", models, "--threads", "1"]
    src = d / "in"
    src.mkdir()
    out_png = d / "out.png"
    out_png.write_bytes(b"an earlier result the user keeps")  # a failing run must leave it alone

    def image(name: str, write: Callable[[Path], object]) -> list:
        write(src / name)
        return ["--source", src / name, "--output", out_png] + common

    bad = {"exit": 2}
    if case == "corrupt":
        return image("c.jpg", lambda p: p.write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(400))), \
            {**bad, "says": ("c.jpg is", "corrupt")}
    if case == "truncated":
        cv2.imwrite(str(src / "full.png"), face_bgr())
        return image("t.png", lambda p: p.write_bytes((src / "full.png").read_bytes()[:3000])), \
            {**bad, "says": ("t.png is corrupt or truncated",)}
    if case == "empty":
        return image("e.jpg", lambda p: p.write_bytes(b"")), {**bad, "says": ("e.jpg is not an image",)}
    if case == "text_as_image":
        return image("notes.jpg", lambda p: p.write_text("just some notes\n" * 20)), \
            {**bad, "says": ("notes.jpg is not an image",)}
    if case == "1x1":
        return image("dot.png", lambda p: Image.new("RGB", (1, 1)).save(p)), \
            {**bad, "says": ("too small (1x1)", "at least 64 px")}
    if case == "huge":
        return image("bomb.png", huge_png), {**bad, "says": ("bomb.png is too large", "resize it below")}
    if case == "camera_missing":
        return ["--source", "9", "--output", out_png] + common, {**bad, "says": ("no camera at index 9",
                                                                                 "pass --source FILE")}
    ok = {"exit": 0, "written": ("out.png",)}
    if case == "grayscale":
        return image("g.png", lambda p: Image.fromarray(cv2.cvtColor(face_bgr(), cv2.COLOR_BGR2GRAY)).save(p)), ok
    if case == "rgba":
        return image("a.png", lambda p: Image.fromarray(face_bgr()[..., ::-1]).convert("RGBA").save(p)), ok
    if case == "cmyk":
        return image("k.jpg", lambda p: Image.fromarray(face_bgr()[..., ::-1]).convert("CMYK").save(p)), ok
    if case == "no_face":
        return image("wall.png", lambda p: Image.fromarray(colour_pattern()).save(p)), ok
    if case == "many_faces":
        return image("group.png", many_faces), ok
    raise AssertionError(case)


HANDLED = ["corrupt", "truncated", "empty", "text_as_image", "1x1", "huge", "camera_missing", "grayscale", "rgba",
           "cmyk", "no_face", "many_faces"]


@pytest.mark.parametrize("case", HANDLED)
def test_webcam_inputs_already_handled(case, models, tmp_path, capsys):
    argv, expect = _webcam_case(case, tmp_path, models)
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, argv, capsys)
    check(code, err, tmp_path, before, **expect)
    if expect["exit"] == 0:
        out = cv2.imread(str(tmp_path / "out.png"))
        assert out is not None and out.ndim == 3, "a readable colour image was written"
    if case == "many_faces":
        assert "faces in 1" in err


def test_row1_full_disk_video_keeps_the_earlier_video(models, tmp_path, capsys, monkeypatch):
    """Row 1, simulated: OpenCV's writer fails silently (as on a full disk, it reports nothing and leaves a file
    without its moov atom); the run must fail with exit 2 and the good out.mp4 must survive."""
    import facefx.runtime.video as vid

    good = video(tmp_path / "out.mp4", noise_frames(2, 64, 64))
    src = video(tmp_path / "clip.mp4", [face_bgr()] * 3)

    class FullDiskWriter:
        def __init__(self, path, *args):
            self.path = path
            Path(path).write_bytes(b"\x00\x00\x00\x18ftypmp42")  # what was written before the disk filled

        def isOpened(self):
            return True

        def write(self, frame):
            pass  # cv2.VideoWriter.write returns nothing even when the bytes never reach the disk

        def release(self):
            pass

    monkeypatch.setattr(vid.cv2, "VideoWriter", FullDiskWriter)
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", good, "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("could not write", "disk full", "free some space",
                                                      "out.mp4 was left as it was"))


@contextlib.contextmanager
def tmpfs(where: Path, size: str, options: str = "") -> Path:
    where.mkdir()
    opts = f"size={size}" + (f",{options}" if options else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({(r.stderr or r.stdout).strip().splitlines()[-1:]})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="needs root on Linux to mount a tmpfs")
def test_row1_real_full_disk_tmpfs(models, tmp_path, capfd):
    """Row 1 for real: a 300 KB tmpfs that fills up while the video is written. capfd: OpenCV's own warnings
    (one per failed frame) would go to file descriptor 2, past sys.stderr."""
    src = video(tmp_path / "noise.mp4", noise_frames(30))  # noise compresses badly: several MB as mp4v
    with tmpfs(tmp_path / "disk", "300k") as disk:
        good = video(disk / "out.mp4", noise_frames(2, 64, 64))
        before = snapshot(disk)
        code, err = run(WEBCAM, ["--source", src, "--output", good, "--no-window", "--models-dir", models,
                                 "--threads", "1"], capfd)
        check(code, err, disk, before, exit=2, says=("could not write", "free some space"))
        assert "WARN" not in err and len(err.strip().splitlines()) == 2, err  # the "ready" line and the error
        assert cv2.VideoCapture(str(good)).read()[0], "the earlier video still plays"


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="needs root on Linux to mount a tmpfs")
def test_row8_read_only_output_folder(models, tmp_path, capsys):
    """Row 8: a read-only output folder (a tmpfs mounted ro; root ignores chmod): one line, exit 2."""
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        before = snapshot(tmp_path)
        code, err = run(WEBCAM, ["--source", src, "--output", ro / "out", "--no-window", "--models-dir", models,
                                 "--threads", "1"], capsys)
        check(code, err, tmp_path, before, exit=2, says=("cannot write", "read-only", "writable"))
        code, err = run("train/prepare.py", [FIXTURES / "faces", "--name", "x", "--root", ro, "--align", "fixed",
                                             "--size", "64"], capsys)
        check(code, err, tmp_path, before, exit=2, says=("cannot write", "read-only", "writable"))


def test_row1_full_disk_image_and_face_set_writes(models, tmp_path, capsys, monkeypatch):
    """Row 1 for the other writers: an fsync or a write that fails with ENOSPC is one line, and the earlier
    image / no half-made face set remains."""
    import errno

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    earlier = tmp_path / "out.png"
    earlier.write_bytes(b"an earlier result")
    real_fsync = os.fsync

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", earlier, "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("cannot write", "out.png", "disk is full", "free some space"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(Path, "write_bytes", full)
    code, err = run("train/prepare.py", [FIXTURES / "faces", "--name", "x", "--root", tmp_path / "faces",
                                         "--align", "fixed", "--size", "64"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("cannot write", "disk is full"))
    assert not (tmp_path / "faces" / "x").exists()


def test_row3_16bit_grayscale_png_is_scaled_not_clipped(models, tmp_path, capsys):
    ramp = np.tile(np.linspace(0, 65535, 256), (128, 1)).astype(np.uint16)  # dark to bright, 16-bit
    src = tmp_path / "g16.png"
    Image.fromarray(ramp).save(src)
    assert Image.open(src).mode == "I;16"
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out.png", "--no-window", "--models-dir",
                             models, "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=0)
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_GRAYSCALE).astype(float)
    assert abs(out.mean() - 127.5) < 3 and out[:, 0].max() < 5 and out[:, -1].min() > 250  # was all 255


def test_row5_folder_of_only_bad_images_fails_and_creates_nothing(models, tmp_path, capsys):
    src = tmp_path / "bad"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"garbage")
    (src / "b.png").write_text("not a picture")
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out", "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("none of the 2 frames could be processed", "a.jpg",
                                                      "nothing was written"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", ["image", "clip"])
def test_row5_model_failing_on_every_frame_is_not_a_success(source, models, tmp_path, capsys, monkeypatch):
    from facefx.runtime.loader import EffectModel

    def broken(self, x):
        raise RuntimeError("a node failed")

    monkeypatch.setattr(EffectModel, "__call__", broken)
    if source == "image":
        src, out = tmp_path / "face.png", tmp_path / "out.png"
        cv2.imwrite(str(src), face_bgr())
    else:
        src, out = video(tmp_path / "clip.mp4", [face_bgr()] * 3), tmp_path / "out.mp4"
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", out, "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("could be processed", "RuntimeError: a node failed",
                                                      "check the source files and the model"))
    assert not out.exists()


@pytest.mark.parametrize("case", ["half_size_output", "pixels_nhwc_01"])
def test_row6_model_that_breaks_its_contract(case, tmp_path, capsys):
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    if case == "half_size_output":
        model = half_size_model(tmp_path / "m.onnx")
        says = ("output is 1x3x32x32 but its contract says 1x3x64x64", "re-export")
    else:
        pixels = {**make_contract("age", 64)["pixels"], "layout": "NHWC", "range": [0.0, 1.0]}
        model = with_contract(make_effect_model(tmp_path / "m.onnx"), pixels=pixels)
        says = ("pixels (NHWC, [0.0, 1.0]) are not what a onnx file takes (NCHW, [-1.0, 1.0])", "re-export")
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out.png", "--model", model, "--no-window",
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=says)


@pytest.mark.parametrize("change", [{"size": "abc"}, {"crop": {}}], ids=["size_abc", "crop_empty"])
def test_row8_contract_schema(change, tmp_path, capsys):
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    model = with_contract(make_effect_model(tmp_path / "m.onnx"), **change)
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out.png", "--model", model, "--no-window",
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=(next(iter(change)), "re-export"))


def test_row10_tampered_shipped_model_is_refused(tmp_path, capsys):
    models = make_models_dir(tmp_path / "models", ("age",), size=64)
    from facefx.manifest import hash_files, new_manifest, write_manifest

    m = new_manifest("export", effect="age")
    m["files"] = hash_files(models / "age", ["age.onnx", "age_int8.onnx"])
    write_manifest(models / "age", m)
    data = (models / "age" / "age_int8.onnx").read_bytes()
    weight = struct.pack("<f", 0.6)  # the model's scale, y = 0.6 x - 0.3
    assert data.count(weight) == 3
    # One weight changed: the model still loads and runs, with another effect.
    (models / "age" / "age_int8.onnx").write_bytes(data.replace(weight, struct.pack("<f", 0.9), 1))
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out.png", "--models-dir", models,
                             "--no-window", "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("age_int8.onnx does not match the hash", "re-export it"))


def test_row11_exif_orientation_is_applied(models, tmp_path, capsys):
    rgb = colour_pattern(200, 100)  # stored landscape; EXIF orientation 6 says: turn it 90 degrees clockwise
    src = tmp_path / "phone.jpg"
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(src, exif=exif, quality=95)
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out.png", "--no-window", "--models-dir",
                             models, "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=0, written=("out.png",))
    out = cv2.imread(str(tmp_path / "out.png"))[..., ::-1]
    assert out.shape[:2] == (200, 100)  # upright: portrait
    assert out[100, -10, 1] > 150  # the green band, on top before the turn, is now on the right


def test_row13_output_equal_to_source_is_refused(models, tmp_path, capsys):
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_bgr())
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", src, "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("is the source itself", "pass another --output"))
    code, err = run(WEBCAM, ["--source", tmp_path, "--output", tmp_path, "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=2, says=("is the source itself",))


def test_row13_same_stem_in_a_folder_keeps_both_outputs(models, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "x.jpg"), face_bgr())
    cv2.imwrite(str(src / "x.png"), cv2.flip(face_bgr(), 1))
    before = snapshot(tmp_path)
    code, err = run(WEBCAM, ["--source", src, "--output", tmp_path / "out", "--no-window", "--models-dir", models,
                             "--threads", "1"], capsys)
    check(code, err, tmp_path, before, exit=0)
    outs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outs == ["x_jpg.png", "x_png.png"]
    a, b = (cv2.imread(str(tmp_path / "out" / n)) for n in outs)
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5  # two different results, not one twice


# ---- prepare.py -----------------------------------------------------------------------------------------
PREPARE = "train/prepare.py"


def _labels(path: Path, rows: list[list], header=("file", "age", "gender", "race"), encoding="utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _faces_folder(d: Path, n: int = 3) -> Path:
    src = d / "photos"
    src.mkdir()
    for p in sorted((FIXTURES / "faces").glob("*.jpg"))[:n]:
        (src / p.name).write_bytes(p.read_bytes())
    return src


def test_row2_same_file_name_in_subfolders_keeps_every_face(tmp_path, capsys):
    src = tmp_path / "photos"
    for sub, flip in (("a", 0), ("b", 1)):
        (src / sub).mkdir(parents=True)
        cv2.imwrite(str(src / sub / "face.jpg"), cv2.flip(face_bgr(), flip))
    cv2.imwrite(str(src / "face.png"), cv2.flip(face_bgr(), 0)[::-1])
    before = snapshot(tmp_path)
    code, err = run(PREPARE, [src, "--name", "set", "--root", tmp_path / "faces", "--align", "fixed",
                              "--size", "64"], capsys)
    check(code, err, tmp_path, before, exit=0)
    m = json.loads((tmp_path / "faces" / "set" / "manifest.json").read_text())
    crops = sorted((tmp_path / "faces" / "set" / "images").rglob("*.jpg"))
    assert m["counts"]["kept"] == 3 and len(crops) == 3  # was: "3 faces", one crop on disk
    assert sorted(i["source"] for i in m["items"]) == ["a/face.jpg", "b/face.jpg", "face.png"]
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in crops}) == 3


PREPARE_BAD = {
    # case: (extra argv, setup(d) -> extra argv, what the error line says)
    "filter_not_a_number": (lambda d: ["--labels", _labels(d / "l.csv", [[p.name, 20, 0, 0] for p in
                                                                        (d / "photos").iterdir()]),
                                       "--filter", "age>=abc"],
                            ("'abc' is not a number", "age>=18")),
    "labels_not_utf8": (lambda d: ["--labels", _labels(d / "l.csv", [["café.jpg", 20, 0, 0]], encoding="latin-1")],
                        ("is not UTF-8", "save it as UTF-8")),
    "root_is_a_file": (lambda d: ["--root", _touch(d / "afile")], ("afile is a file, not a folder", "pass a folder")),
    "filter_without_labels": (lambda d: ["--filter", "age>3"], ("needs --labels", "pass --labels or drop --filter")),
    "name_outside_root": (lambda d: ["--name", "../../x"], ("must be a plain folder name", "use --root")),
    "disagreeing_label_rows": (lambda d: ["--labels", _labels(d / "l.csv", [[n, 20, 0, 0] for n in _names(d)] +
                                                               [[_names(d)[0], 30, 0, 0]])],  # line 5 says 30
                               ("lines 2 and 5 give", "different labels", "keep one row per file")),
}


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in (d / "photos").iterdir())


def _touch(p: Path) -> Path:
    p.write_text("a file")
    return p


@pytest.mark.parametrize("case", list(PREPARE_BAD))
def test_prepare_bad_input_is_one_line(case, tmp_path, capsys):
    src = _faces_folder(tmp_path)
    setup, says = PREPARE_BAD[case]
    extra = setup(tmp_path)
    argv = [src, "--name", "set", "--root", tmp_path / "root" / "faces", "--align", "fixed", "--size", "64"]
    argv += [str(a) for a in extra]
    before = snapshot(tmp_path)
    code, err = run(PREPARE, argv, capsys)
    check(code, err, tmp_path, before, exit=2, says=says)
    assert not (tmp_path / "root" / "faces" / "set").exists() and not (tmp_path / "x").exists()


def test_row8_labels_with_a_byte_order_mark_are_read(tmp_path, capsys):
    src = _faces_folder(tmp_path, 3)
    names = sorted(p.name for p in src.iterdir())
    labels = _labels(tmp_path / "l.csv", [[n, 20 + i, i % 2, 0] for i, n in enumerate(names)], encoding="utf-8-sig")
    assert labels.read_bytes().startswith(b"\xef\xbb\xbf")
    before = snapshot(tmp_path)
    code, err = run(PREPARE, [src, "--name", "set", "--root", tmp_path / "faces", "--align", "fixed", "--size", "64",
                              "--labels", labels, "--filter", "gender=0"], capsys)
    check(code, err, tmp_path, before, exit=0)
    m = json.loads((tmp_path / "faces" / "set" / "manifest.json").read_text())
    assert m["counts"]["kept"] == 2 and all(i["gender"] == 0 for i in m["items"])


# ---- export.py and fps.py -------------------------------------------------------------------------------
EXPORT = "export/export.py"


def _student(folder: Path, files: bool = True, **override) -> Path:
    """A tiny random student artifact (32 px), optionally with manifest keys changed or removed."""
    import torch

    from facefx.manifest import hash_files, new_manifest, write_manifest
    from facefx.runtime.crop import CropSpec
    from facefx.runtime.pixels import PIXEL_CONTRACT
    from facefx.train import nets

    folder.mkdir(parents=True)
    torch.manual_seed(0)
    spec = {"type": "student_generator", "widths": [4, 8], "n_blocks": 1}
    nets.save_weights(nets.build(spec), folder / "G.safetensors")
    m = new_manifest("student", effect="age", network={"G": spec}, resolution=32, crop=CropSpec(size=32).to_dict(),
                     pixels=PIXEL_CONTRACT, direction="AB")
    m["files"] = hash_files(folder, ["G.safetensors"])
    if not files:
        del m["files"]
    for k, v in override.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    write_manifest(folder, m)
    return folder


@pytest.mark.parametrize("case", ["files_deleted", "resolution_missing", "resolution_mistyped", "formats_comma"])
def test_export_bad_student_or_options(case, tmp_path, capsys, faces_artifact):
    says = {"files_deleted": ("lacks 'files'", "re-create the artifact"),
            "resolution_missing": ("lacks 'resolution'", "re-create"),
            "resolution_mistyped": ("'resolution' is 'abc', expected int", "re-create"),
            "formats_comma": ("--formats ',' names nothing", "give one or more")}[case]
    override = {"resolution_missing": {"resolution": None}, "resolution_mistyped": {"resolution": "abc"}}.get(case, {})
    student = _student(tmp_path / "student", files=case != "files_deleted", **override)
    (tmp_path / "keep.onnx").write_bytes(b"a file the user keeps")
    before = snapshot(tmp_path)
    code, err = run(EXPORT, ["--student", student, "--out", tmp_path / "models", "--formats",
                             "," if case == "formats_comma" else "onnx", "--calib", "1", "--eval", "1"]
                       + ([] if case == "formats_comma" else ["--faces", faces_artifact]), capsys)
    check(code, err, tmp_path, before, exit=2, says=says)
    assert not (tmp_path / "models").exists()


def test_row8_fps_keeps_its_timings_when_one_model_is_truncated(tmp_path, capsys):
    models = tmp_path / "zz"
    make_effect_model(models / "zz.onnx", effect="zz", size=32)
    good = (models / "zz.onnx").read_bytes()
    (models / "zz_int8.onnx").write_bytes(good[: len(good) // 2])
    results = tmp_path / "results"
    before = snapshot(tmp_path)
    code, err = run("benchmarks/fps.py", ["--effect", "zz", "--models", models, "--teachers-root", tmp_path / "t",
                                          "--students-root", tmp_path / "s", "--threads", "1", "--warmup", "1",
                                          "--repeats", "2", "--min-seconds", "0", "--no-end-to-end",
                                          "--results", results, "--device", "test"], capsys)
    check(code, err, tmp_path, before, exit=0)
    rows = list(csv.DictReader(next(results.glob("*.csv")).read_text().splitlines()))
    assert [r["model"] for r in rows] == ["zz.onnx"]  # the good model's timing was kept


# ---- signals: SIGTERM (and SIGINT) to a running command -------------------------------------------------
def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _signal_when(cmd: list, ready: Callable[[], bool], sig: int, cwd: Path, timeout: float = 90) -> tuple[int, str]:
    """Start a command, send `sig` as soon as ready() (e.g. its staged .partial folder appeared), wait."""
    proc = subprocess.Popen([sys.executable] + [str(c) for c in cmd], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while not ready():
            if proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f"finished (exit {proc.returncode}) before it could be signalled:\n{err}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("never got ready to be signalled")
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_row7_signal_to_prepare_leaves_nothing(sig, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for i in range(600):  # enough work to be signalled mid-run
        os.symlink(FACE, src / f"f{i:04d}.jpg")
    root = tmp_path / "faces"
    before = snapshot(tmp_path)
    code, err = _signal_when([REPO / PREPARE, src, "--name", "set", "--root", root, "--align", "fixed",
                              "--size", "64"], lambda: bool(partials(tmp_path)), sig, tmp_path)
    check(code, err, tmp_path, before, exit=128 + sig)
    assert f"interrupted ({signal.Signals(sig).name})" in err
    assert not (root / "set").exists()


def test_row7_sigterm_to_webcam_publishes_only_whole_files(models, tmp_path):
    clip = video(tmp_path / "long.mp4", [cv2.resize(face_bgr(), (96, 96))] * 400)
    out = tmp_path / "frames"
    before = snapshot(tmp_path)
    code, err = _signal_when([REPO / WEBCAM, "--source", clip, "--output", out, "--no-window", "--models-dir",
                              models, "--threads", "1"],
                             lambda: any(len(list(p.iterdir())) > 3 for p in tmp_path.glob(".frames.*.partial")),
                             signal.SIGTERM, tmp_path)
    check(code, err, tmp_path, before, exit=143)
    # What was done before the signal is published whole (like Ctrl-C ending a recording), never half a file.
    assert all(cv2.imread(str(p)) is not None for p in out.iterdir())


def test_row7_sigterm_to_export_leaves_nothing(tmp_path, faces_artifact):
    student = _student(tmp_path / "student")
    out = tmp_path / "models"
    before = snapshot(tmp_path)
    code, err = _signal_when([REPO / EXPORT, "--student", student, "--out", out, "--formats", "onnx,int8",
                              "--faces", faces_artifact, "--calib", "2", "--eval", "2", "--repeats", "50"],
                             lambda: bool(partials(tmp_path)), signal.SIGTERM, tmp_path)
    check(code, err, tmp_path, before, exit=143)
    assert not out.exists()


def test_row7_a_training_loop_that_saves_on_sigterm_still_exits_143(capsys):
    """Training loops catch the interrupt to save a checkpoint and return normally; the command must still
    exit 143, not 0 (the run was stopped, not finished). Same handler, so no loop needs to know."""
    from facefx.errors import cli_main

    saved = []

    @cli_main
    def train() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this at once
        except KeyboardInterrupt:
            saved.append("checkpoint")

    with pytest.raises(SystemExit) as exit:
        train()
    assert exit.value.code == 143 and saved == ["checkpoint"]
    assert "stopped by SIGTERM" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler was put back


# ---- exit 1: a bug says where to report it ---------------------------------------------------------------
def test_internal_error_is_one_line_saying_where_to_report(tmp_path):
    """A bug (here a ZeroDivisionError inside a command) exits 1 with one line naming it and where to report it;
    in the same process it still propagates, so callers and tests see the real exception."""
    code = ("from facefx.errors import cli_main\n"
            "@cli_main\n"
            "def main():\n"
            "    return 1 / 0\n"
            "main()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line, = r.stderr.splitlines()
    assert line.startswith("internal error: ZeroDivisionError: division by zero") and "report it to" in line
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**_env(), "FACEFX_DEBUG": "1"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" in r.stderr and "internal error" in r.stderr
    from facefx.errors import cli_main

    with pytest.raises(ZeroDivisionError):
        cli_main(lambda: 1 / 0)()


@pytest.mark.parametrize("rel", ["realtime/webcam.py", "train/prepare.py", "export/export.py", "benchmarks/fps.py"])
def test_help_epilog_documents_the_exit_codes(rel, capsys):
    with pytest.raises(SystemExit) as exit:
        script(rel).main(["--help"])
    assert exit.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "exit codes: 0 done; 2 bad input or options" in out
    assert "130 stopped by Ctrl-C; 143 stopped by SIGTERM" in out
