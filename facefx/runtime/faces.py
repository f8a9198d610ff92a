"""Face detection: MediaPipe BlazeFace (short range) through the Tasks API, IMAGE or VIDEO mode.

Returns, per face, a pixel box, a score and the 6 BlazeFace keypoints in pixels. The model file ships
inside the package (facefx/assets, made by make_blazeface_model.py); nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from facefx.errors import FacefxError

os.environ.setdefault("GLOG_minloglevel", "2")  # silence MediaPipe/LiteRT start-up INFO lines
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL_FILE = "blazeface_short_range.tflite"
DEFAULT_MIN_SCORE = 0.5  # MediaPipe's min_detection_confidence: faces scoring below it are dropped
# BlazeFace's keypoints, in its output order ("right" is the subject's right, on the image's left).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Mute LiteRT's native INFO/WARNING lines (printed to fd 2 when the detector starts, on its first frame and
    when it closes; no setting turns them off), so a command's own messages stay the only output."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. some embedded interpreters): leave it alone
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def model_path() -> Path:
    return Path(str(resources.files("facefx") / "assets" / MODEL_FILE))


@dataclass
class Face:
    box: np.ndarray  # (4,) x, y, w, h in pixels
    score: float
    keypoints: np.ndarray  # (6, 2) x, y in pixels: right eye, left eye, nose, mouth, right ear, left ear


class FaceDetector:
    """BlazeFace detector. mode="image" for independent photos, "video" for frames of one stream.

    Use as a context manager (or call close()): the Tasks detector holds native resources.
    In video mode pass strictly increasing timestamps in milliseconds.
    """

    def __init__(self, mode: str = "image", min_score: float = DEFAULT_MIN_SCORE,
                 model: str | os.PathLike | None = None):
        from mediapipe.tasks.python import BaseOptions, vision

        path = Path(model) if model else model_path()
        if not path.is_file():
            raise FacefxError(f"face detector model {path} is missing; reinstall facefx (pip install -e .)")
        running = {"image": vision.RunningMode.IMAGE, "video": vision.RunningMode.VIDEO}
        if mode not in running:
            raise ValueError(f"mode must be 'image' or 'video', not {mode!r}")
        self.mode = mode
        self._last_ts = -1
        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=running[mode], min_detection_confidence=min_score)
        with _quiet_native_stderr():
            self._detector = vision.FaceDetector.create_from_options(options)
        self._warm = False

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int | None = None) -> list[Face]:
        """Faces in a uint8 RGB (H, W, 3) image, highest score first."""
        import mediapipe as mp

        h, w = image_rgb.shape[:2]
        mp_image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        with _quiet_native_stderr() if not self._warm else contextlib.nullcontext():
            if self.mode == "video":
                ts = self._last_ts + 1 if timestamp_ms is None else int(timestamp_ms)
                ts = max(ts, self._last_ts + 1)  # the Tasks API refuses non-increasing timestamps
                self._last_ts = ts
                result = self._detector.detect_for_video(mp_image, ts)
            else:
                result = self._detector.detect(mp_image)
        self._warm = True
        faces = []
        for d in result.detections:
            bb = d.bounding_box
            kps = np.array([[k.x * w, k.y * h] for k in d.keypoints], np.float64)
            faces.append(Face(box=np.array([bb.origin_x, bb.origin_y, bb.width, bb.height], np.float64),
                              score=float(d.categories[0].score), keypoints=kps))
        return sorted(faces, key=lambda f: -f.score)

    def close(self) -> None:
        if self._detector is not None:
            with _quiet_native_stderr():
                self._detector.close()
            self._detector = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
