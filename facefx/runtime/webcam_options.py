"""The options of realtime/webcam.py, declared once (facefx.options builds its parser and checks its numbers).

Light: no numpy, cv2 or onnxruntime, so --help and a refused option cost no heavy import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facefx.options import option

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WebcamOptions:
    """The command line of webcam.py (facefx.options builds the parser and checks the numbers from these fields)."""

    effect: str | None = option(None, "effect to apply: a folder of --models-dir (with --model, the model's own)",
                                none="age")
    source: str = option("0", "camera index, video file, image, or folder of images")
    output: Path | None = option(None, "write the result: video (.mp4, .avi), image (.png, .jpg; one-image source) "
                                 "or folder")
    no_window: bool = option(False, "do not open a window (default: open one if a display exists)")
    precision: str = option("int8", "which shipped model to load", choices=("int8", "fp32"))
    model: Path | None = option(None, "an exported model file (overrides --effect/--precision)")
    models_dir: Path = option(REPO / "models", "folder of shipped effects")
    threads: int | None = option(None, "ONNX Runtime threads", ge=1, le=1024, none="its own choice")
    min_score: float = option(0.5, "face detector confidence threshold", ge=0, le=1)
    max_faces: int = option(8, "at most this many faces per frame (highest scores)", ge=1, le=64)
    no_smooth: bool = option(False, "do not smooth keypoints across frames")
    split: bool = option(False, "start in before/after split view (window)")
    max_frames: int | None = option(None, "stop after this many frames", ge=1, none="the end of the source")
    stats: bool = option(False, "print per-stage timings (mean/p50/p95 ms, FPS) at exit")
