"""Realtime stage: sources, sinks, the per-frame pipeline and realtime/webcam.py, with tiny ONNX effects.

Frames are real face photos (scikit-image's astronaut, a held-out UTKFace fixture) moving and scaling on a
gradient; the effect is y = clip(0.6 x - 0.3), which visibly darkens whatever it is pasted on.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_onnx import make_effect_model, make_models_dir

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
W, H = 320, 240
# Per frame: (which photo, centre x, centre y, width in px); [] is a frame without a face. The last frame
# has the astronaut's face touching the left edge, so its crop reaches outside the frame.
PLAN = [[("astro", 100, 120, 110)], [("astro", 130, 115, 120)], [("astro", 160, 110, 130)], [],
        [("astro", 90, 120, 110), ("utk", 235, 120, 100)], [("astro", 80, 125, 105), ("utk", 240, 115, 105)],
        [("astro", 30, 120, 120)]]
NO_FACE, TWO_FACES, EDGE = 3, (4, 5), 6


# ---- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photos(astronaut_rgb) -> dict[str, np.ndarray]:
    utk = cv2.imread(str(FIXTURES / "faces" / "55_1_0_20170103183939755.jpg.chip.jpg"))  # held-out split
    return {"astro": np.ascontiguousarray(astronaut_rgb[20:290, 100:360, ::-1]), "utk": utk}  # BGR


def _background() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    g = (90 + 60 * y / H + 30 * x / W).astype(np.uint8)
    return np.dstack([g, g + 10, g + 20])


def _frame(photos: dict, faces: list) -> np.ndarray:
    frame = _background()
    for key, cx, cy, side in faces:
        img = photos[key]
        h = int(side * img.shape[0] / img.shape[1])
        im = cv2.resize(img, (side, h), interpolation=cv2.INTER_AREA)
        x0, y0 = int(cx - side / 2), int(cy - h / 2)
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + side, W), min(y0 + h, H)
        frame[ya:yb, xa:xb] = im[ya - y0:yb - y0, xa - x0:xb - x0]
    return frame


@pytest.fixture(scope="module")
def frames(photos) -> list[np.ndarray]:
    return [_frame(photos, faces) for faces in PLAN]


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, frames) -> Path:
    path = tmp_path_factory.mktemp("video") / "faces.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (W, H))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return make_models_dir(tmp_path_factory.mktemp("models"), ("age", "gender"), size=64)


@pytest.fixture(scope="module")
def model(models_dir):
    from facefx.runtime.loader import load_model

    return load_model(models_dir / "age" / "age_int8.onnx", threads=1)


@pytest.fixture(scope="module")
def webcam():
    spec = importlib.util.spec_from_file_location("webcam", REPO / "realtime" / "webcam.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def _far_from_faces(faces: list, margin: float = 1.6) -> np.ndarray:
    """(H, W) bool: pixels farther than margin x face width from every placed face's centre."""
    y, x = np.mgrid[0:H, 0:W]
    far = np.ones((H, W), bool)
    for _, cx, cy, side in faces:
        far &= np.hypot(x - cx, y - cy) > margin * side
    return far


def _face_box(cx: int, cy: int, side: int) -> tuple[slice, slice]:
    """The middle of a placed photo (the face itself): rows, cols."""
    r = side // 5
    return slice(max(cy - r, 0), cy + r), slice(max(cx - r, 0), cx + r)


def _no_partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


# ---- the command line, end to end ---------------------------------------------------------------------
DRIVER = """
import runpy, sys
sys.argv = ['realtime/webcam.py'] + sys.argv[1:]
code = 0
try:
    runpy.run_path('realtime/webcam.py', run_name='__main__')
except SystemExit as exit:
    code = exit.code
print('torch loaded:', 'torch' in sys.modules)
sys.exit(code)
"""


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def test_cli_darkens_faces_only_keeps_frames_and_never_imports_torch(face_video, models_dir, tmp_path):
    out = tmp_path / "frames"
    r = subprocess.run([sys.executable, "-c", DRIVER, "--effect", "age", "--source", str(face_video),
                        "--output", str(out), "--no-window", "--models-dir", str(models_dir), "--threads", "1",
                        "--stats"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "torch loaded: False" in r.stdout
    assert "FPS end to end" in r.stdout and "infer" in r.stdout  # --stats table
    inputs = _decode(face_video)  # the frames exactly as the pipeline decoded them
    outputs = [cv2.imread(str(p)) for p in sorted(out.glob("*.png"))]
    assert len(outputs) == len(inputs) == len(PLAN)
    for i, (src, res, faces) in enumerate(zip(inputs, outputs, PLAN)):
        if not faces:
            assert np.array_equal(res, src), f"frame {i} has no face and must pass through bit-exact"
            continue
        assert np.array_equal(res[_far_from_faces(faces)], src[_far_from_faces(faces)]), f"frame {i} background"
        for _, cx, cy, side in faces:
            rows, cols = _face_box(cx, cy, side)
            darker = src[rows, cols].astype(float).mean() - res[rows, cols].astype(float).mean()
            assert darker > 15, f"frame {i}: face at x={cx} not darkened ({darker:.1f})"


def test_video_output_readable_with_same_frame_count(webcam, face_video, models_dir, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = webcam.main(["--source", str(face_video), "--output", str(out), "--no-window",
                      "--models-dir", str(models_dir), "--threads", "1"])
    assert rc == 0
    frames_out = _decode(out)
    assert len(frames_out) == len(PLAN) and frames_out[0].shape == (H, W, 3)
    assert not _no_partials(tmp_path)
    assert "faces in 6" in capsys.readouterr().err  # every frame but the empty one


def test_missing_camera_is_one_line_and_exit_2(models_dir):
    r = subprocess.run([sys.executable, "realtime/webcam.py", "--source", "9", "--no-window",
                        "--models-dir", str(models_dir)], cwd=REPO, env=_env(), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    assert r.stderr == "error: no camera at index 9; pass --source FILE\n"


@pytest.mark.parametrize("case", ["no_models", "unknown_effect", "model_path", "no_contract", "bad_video",
                                  "image_output_for_video"])
def test_user_errors_are_one_line_and_exit_2(case, webcam, face_video, models_dir, tmp_path, capsys):
    args = ["--source", str(face_video), "--no-window", "--output", str(tmp_path / "o.mp4"),
            "--models-dir", str(models_dir)]
    expect = {"no_models": "no int8 model for effect 'age'", "unknown_effect": "no int8 model for effect 'nosuch'",
              "model_path": "does not exist", "no_contract": "carries no facefx contract",
              "bad_video": "cannot read video", "image_output_for_video": "is one image"}[case]
    if case == "no_models":
        args += ["--models-dir", str(tmp_path / "empty")]
    elif case == "unknown_effect":
        args += ["--effect", "nosuch"]
    elif case == "model_path":
        args += ["--model", str(tmp_path / "missing.onnx")]
    elif case == "no_contract":
        args += ["--model", str(make_effect_model(tmp_path / "bare.onnx", embed_contract=False))]
    elif case == "bad_video":
        (tmp_path / "broken.mp4").write_bytes(b"not a video" * 100)
        args += ["--source", str(tmp_path / "broken.mp4")]
    elif case == "image_output_for_video":
        args += ["--output", str(tmp_path / "o.png")]
    with pytest.raises(SystemExit) as exit:
        webcam.main(args)
    err = capsys.readouterr().err
    assert exit.value.code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and expect in err, err
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".mp4", ".png")) == \
        (["broken.mp4"] if case == "bad_video" else [])  # nothing written


def test_ctrl_c_still_finalizes_the_video(webcam, frames, models_dir, tmp_path, monkeypatch, capsys):
    import facefx.runtime.video as video

    class InterruptedSource(video.ArraySource):
        def __iter__(self):
            yield from list(super().__iter__())[:3]
            raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    monkeypatch.setattr(video, "open_source", lambda src: InterruptedSource(frames, fps=10))
    out = tmp_path / "out.mp4"
    rc = webcam.main(["--source", "x", "--output", str(out), "--no-window", "--models-dir", str(models_dir),
                      "--threads", "1"])
    assert rc == 130
    assert len(_decode(out)) == 3 and not _no_partials(tmp_path)
    assert "stopped by Ctrl-C" in capsys.readouterr().err


def test_image_and_folder_sources(webcam, frames, models_dir, tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    cv2.imwrite(str(src / "a_one.png"), frames[0])
    cv2.imwrite(str(src / "b_two.png"), frames[4])
    (src / "c_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    common = ["--no-window", "--models-dir", str(models_dir), "--threads", "1"]
    # One image in, one image out.
    assert webcam.main(["--source", str(src / "a_one.png"), "--output", str(tmp_path / "one.png")] + common) == 0
    one = cv2.imread(str(tmp_path / "one.png"))
    rows, cols = _face_box(*PLAN[0][0][1:])
    assert one[rows, cols].mean() < frames[0][rows, cols].mean() - 15
    # A folder: the broken file is skipped with a warning, the others come out under their own names.
    assert webcam.main(["--source", str(src), "--output", str(tmp_path / "out")] + common) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_one.png", "b_two.png"]
    err = capsys.readouterr().err
    assert "skipped frame 2 (c_broken.jpg" in err and "1 bad frames skipped" in err


def test_window_keys_split_view_switch_effect_and_quit(webcam, face_video, models_dir, monkeypatch, capsys):
    import facefx.runtime.video as video

    shown = []

    class FakeWindow:  # what a user sees and presses, without a display
        keys = [ord("e"), ord("s"), -1, ord("q")]
        closed = False

        def __init__(self, title):
            pass

        def show(self, frame):
            shown.append(frame)
            return self.keys[len(shown) - 1]

        def close(self):
            pass

    monkeypatch.setattr(video, "display_available", lambda: True)
    monkeypatch.setattr(video, "WindowSink", FakeWindow)
    assert webcam.main(["--source", str(face_video), "--models-dir", str(models_dir), "--threads", "1"]) == 0
    assert len(shown) == 4  # q stopped the loop
    inputs = _decode(face_video)
    assert shown[0][:10, :60].mean() < inputs[0][:10, :60].mean() - 30  # the stats overlay, top left
    for i, brighter in ((0, False), (1, True)):  # 'e' after the first frame: age (darker) -> gender (lighter)
        rows, cols = _face_box(*PLAN[i][0][1:])
        assert (shown[i][rows, cols].mean() > inputs[i][rows, cols].mean()) == brighter
    # 's': split view; frame 2's face straddles the middle: its left half is shown as it came in (below the
    # overlay), its right half with the effect.
    left, right = (slice(60, H), slice(0, W // 2 - 2)), (slice(84, 136), slice(W // 2 + 2, 186))
    assert np.array_equal(shown[2][left], inputs[2][left]) and not np.array_equal(shown[1][left], inputs[1][left])
    assert shown[2][right].mean() > inputs[2][right].mean() + 10
    assert "4 frames" in capsys.readouterr().err


# ---- the pipeline in memory: bit-exact checks ---------------------------------------------------------
def test_bad_frames_are_skipped_and_counted_not_fatal(model, frames):
    from facefx.runtime.pipeline import FaceEffectPipeline, StageTimer, run_stream
    from facefx.runtime.video import ArraySource

    gray = cv2.cvtColor(frames[0], cv2.COLOR_BGR2GRAY)  # wrong shape (H, W)
    src = ArraySource([frames[0], None, gray, frames[NO_FACE], frames[4]], fps=10)
    seen, warnings = [], []
    with FaceEffectPipeline(model) as pipe:
        stats = run_stream(src, pipe, lambda f, out, faces: seen.append((f, out, faces)), StageTimer(),
                           warn=warnings.append)
    assert (stats.frames, stats.processed, stats.skipped) == (5, 3, 2)
    assert len(warnings) == 2 and "expected uint8 (H, W, 3)" in warnings[1]
    assert [len(faces) for _, _, faces in seen] == [1, 0, 2]
    empty_in, empty_out, _ = seen[1]
    assert empty_out is empty_in.image  # a frame without a face passes through untouched


def test_two_faces_and_a_face_at_the_edge_get_the_effect(model, models_dir, frames):
    from facefx.runtime import crop as cropgeo
    from facefx.runtime.loader import load_model
    from facefx.runtime.pipeline import FaceEffectPipeline

    with FaceEffectPipeline(model, video=False) as pipe:
        out, faces = pipe.process(frames[TWO_FACES[0]], 0.0)
        assert len(faces) == 2
        for _, cx, cy, side in PLAN[TWO_FACES[0]]:
            rows, cols = _face_box(cx, cy, side)
            assert out[rows, cols].mean() < frames[TWO_FACES[0]][rows, cols].mean() - 15
        far = _far_from_faces(PLAN[TWO_FACES[0]])
        assert np.array_equal(out[far], frames[TWO_FACES[0]][far])

        edge, faces = pipe.process(frames[EDGE], 0.0)
        assert len(faces) == 1
        corners = cropgeo.apply(cropgeo.invert(faces[0].matrix), np.array([[0, 0], [0, pipe.spec.size]]))
        assert corners[:, 0].min() < 0  # the crop reaches outside the frame: it is padded, not skipped
        x, y, w, h = faces[0].box.astype(int)
        mid = (slice(y + h // 4, y + 3 * h // 4), slice(max(x, 0) + w // 4, x + 3 * w // 4))
        assert edge[mid].mean() < frames[EDGE][mid].mean() - 15  # the face is darkened
        strip = (mid[0], slice(0, 4))  # ... and the paste reaches the frame's first columns (feathered there)
        assert (edge[strip] != frames[EDGE][strip]).any(-1).mean() > 0.2

        # Switching the effect keeps the detector: the same face now comes out lighter, not darker.
        pipe.set_model(load_model(models_dir / "gender" / "gender_int8.onnx", threads=1))
        light, _ = pipe.process(frames[0], 0.0)
    rows, cols = _face_box(*PLAN[0][0][1:])
    assert light[rows, cols].mean() > frames[0][rows, cols].mean() + 10


# ---- camera: newest frame wins, a disappearing camera ends the loop -----------------------------------
class FakeCamera:
    """Stands in for cv2.VideoCapture: numbered frames quickly, then failed reads (unplugged)."""

    def __init__(self, index, frames_before_unplug: int = 60):
        self.n, self.limit = 0, frames_before_unplug

    def isOpened(self):
        return True

    def read(self):
        time.sleep(0.002)
        self.n += 1
        if self.n > self.limit:
            return False, None
        return True, np.full((48, 64, 3), self.n % 256, np.uint8)

    def get(self, prop):
        return 30.0

    def set(self, prop, value):
        return True

    def release(self):
        pass


def test_camera_newest_frame_wins_and_unplugging_ends_cleanly(monkeypatch):
    import facefx.runtime.video as video

    monkeypatch.setattr(video.cv2, "VideoCapture", FakeCamera)
    t0 = time.monotonic()
    values = []
    with video.open_source("0") as cam:
        assert cam.live
        for frame in cam:
            values.append(int(frame.image[0, 0, 0]))
            time.sleep(0.02)  # a slow effect: the camera runs ahead
    assert time.monotonic() - t0 < 10
    assert values == sorted(values) and len(values) < 60  # in order, stale frames dropped
    assert cam.dropped > 0 and "stopped delivering frames" in cam.end_reason


# ---- smoothing ----------------------------------------------------------------------------------------
def test_keypoint_smoothing_removes_jitter_and_keeps_faces_apart():
    from facefx.runtime.smoothing import FaceTracker

    rng = np.random.default_rng(0)
    tracker = FaceTracker()
    base = np.array([[40.0, 50], [70, 50], [55, 65], [55, 80], [30, 55], [80, 55]])
    raw, smooth = [], []
    for i in range(60):  # two still faces, detector noise of ~1 px, 30 fps; the order flips every frame
        a, b = base + rng.normal(0, 1, base.shape), base + [200, 10] + rng.normal(0, 1, base.shape)
        boxes = [np.array([20.0, 30, 70, 70]), np.array([220.0, 40, 70, 70])]
        order = [0, 1] if i % 2 else [1, 0]
        kps, ids = tracker.update([boxes[j] for j in order], [[a, b][j] for j in order], i / 30)
        by_face = dict(zip(order, zip(kps, ids)))
        raw.append(a)
        smooth.append(by_face[0][0])
        assert by_face[0][1] != by_face[1][1]
        assert abs(by_face[1][0][0, 0] - 240) < 5  # face 1 never borrows face 0's keypoints
    step = lambda seq: np.abs(np.diff(np.stack(seq[10:]), axis=0)).mean()  # noqa: E731
    assert step(smooth) < step(raw) / 3


def test_demo_video_is_shipped():
    cap = cv2.VideoCapture(str(REPO / "assets" / "demo.mp4"))
    n, w, h = (int(cap.get(p)) for p in (cv2.CAP_PROP_FRAME_COUNT, cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    assert (w, h) == (640, 480) and n >= 100
    assert (REPO / "assets" / "demo.mp4").stat().st_size < 1_000_000  # small enough to keep in git
