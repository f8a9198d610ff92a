"""The per-frame face-effect pipeline and its stage timers (torch-free; used by realtime/ and benchmarks/).

Input: uint8 BGR frames (from facefx.runtime.video sources) and an exported effect model
(facefx.runtime.loader.EffectModel).
Output: the same frames with every face replaced by the model's output, pasted back feathered; a frame
without a face comes back unchanged (the very same array, bit-exact).

Per frame: detect (BlazeFace) -> smooth keypoints per tracked face (One-Euro) -> crop with THE crop geometry
(the spec in the model's contract) -> one batch of all faces through the model -> paste each back.
StageTimer records milliseconds per stage (capture, detect, crop, infer, paste, output) for the overlay,
--stats and the end-to-end benchmarks.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from facefx.errors import FacefxError, deferred_interrupts, interrupt_exit_code
from facefx.runtime import crop as cropgeo
from facefx.runtime.faces import DEFAULT_MIN_SCORE
from facefx.runtime.pixels import bgr_to_nchw, nchw_to_bgr
from facefx.runtime.smoothing import FaceTracker

if TYPE_CHECKING:
    from facefx.runtime.loader import EffectModel
    from facefx.runtime.video import Frame, FrameSource

STAGES = ("capture", "detect", "crop", "infer", "paste", "output")


# ---- timers -------------------------------------------------------------------------------------------
class StageTimer:
    """Milliseconds per stage per frame, plus each frame's total wall time.

    Usage: timer.start_frame(); with timer.stage("detect"): ...; timer.end_frame().
    A stage that runs several times in a frame is summed; a stage that does not run (e.g. infer on a frame
    without a face) records nothing for that frame, so its statistics describe the frames where it ran.
    """

    def __init__(self, stages: tuple[str, ...] = STAGES):
        self.stages = stages
        self.samples: dict[str, list[float]] = {s: [] for s in stages}
        self.totals: list[float] = []  # ms per frame, whole loop iteration
        self.ends: list[float] = []  # perf_counter at each frame's end (for FPS)
        self._current: dict[str, float] = {}
        self._frame_t0: float | None = None
        self._run_t0: float | None = None

    def start_frame(self) -> None:
        now = time.perf_counter()
        if self._run_t0 is None:
            self._run_t0 = now
        self._frame_t0 = now
        self._current = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._current[name] = self._current.get(name, 0.0) + (time.perf_counter() - t0) * 1000

    def end_frame(self, keep: bool = True) -> None:
        """Close the frame; keep=False drops it (e.g. the source ended during capture)."""
        if self._frame_t0 is None:
            return
        now = time.perf_counter()
        if keep:
            for name, ms in self._current.items():
                self.samples.setdefault(name, []).append(ms)
            self.totals.append((now - self._frame_t0) * 1000)
            self.ends.append(now)
        self._frame_t0 = None

    def recent_ms(self, name: str, n: int = 30) -> float:
        """Mean of the last n samples of a stage (0 when none): for a live overlay."""
        vals = self.samples.get(name, [])[-n:]
        return float(np.mean(vals)) if vals else 0.0

    def recent_fps(self, n: int = 30) -> float:
        ends = self.ends[-(n + 1):]
        return (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) > 1 and ends[-1] > ends[0] else 0.0

    def summary(self) -> dict:
        """{stage: {n, mean_ms, p50_ms, p95_ms}, "total": {...}, "frames", "wall_s", "fps"}."""
        out: dict = {}
        for name in list(self.stages) + [s for s in self.samples if s not in self.stages]:
            vals = self.samples.get(name, [])
            if vals:
                out[name] = _stats(vals)
        if self.totals:
            out["total"] = _stats(self.totals)
        wall = (self.ends[-1] - self._run_t0) if self.ends and self._run_t0 is not None else 0.0
        out["frames"] = len(self.totals)
        out["wall_s"] = wall
        out["fps"] = len(self.totals) / wall if wall > 0 else 0.0
        return out

    def format_summary(self) -> str:
        s = self.summary()
        lines = [f"{'stage':<8} {'frames':>6} {'mean ms':>8} {'p50 ms':>8} {'p95 ms':>8}"]
        for name in [k for k in s if isinstance(s[k], dict)]:
            st = s[name]
            lines.append(f"{name:<8} {st['n']:>6} {st['mean_ms']:>8.2f} {st['p50_ms']:>8.2f} {st['p95_ms']:>8.2f}")
        lines.append(f"{s['frames']} frames in {s['wall_s']:.2f} s: {s['fps']:.1f} FPS end to end")
        return "\n".join(lines)


def _stats(vals: list[float]) -> dict:
    a = np.asarray(vals, np.float64)
    return {"n": int(a.size), "mean_ms": float(a.mean()), "p50_ms": float(np.percentile(a, 50)),
            "p95_ms": float(np.percentile(a, 95))}


# ---- the pipeline -------------------------------------------------------------------------------------
class BadFrame(ValueError):
    """A frame the pipeline cannot use (None, wrong shape or dtype)."""


def check_frame(image: np.ndarray | None) -> np.ndarray:
    """The frame itself if it is uint8 BGR (H, W, 3), else BadFrame saying what it is."""
    if image is None:
        raise BadFrame("empty frame (None)")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or min(image.shape[:2]) < 16:
        what = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise BadFrame(f"expected uint8 (H, W, 3) BGR, got {what}")
    return image


@dataclass
class FaceResult:
    keypoints: np.ndarray  # (6, 2) smoothed keypoints, frame pixels
    box: np.ndarray  # (4,) x, y, w, h, frame pixels (raw detection)
    score: float
    track: int  # tracked-face id (stable across frames while the face is followed)
    matrix: np.ndarray  # 2x3 frame -> crop transform


class FaceEffectPipeline:
    """Detect, crop, run the effect on all faces at once, paste back. Use as a context manager.

    video=True: frames of one stream (detector in VIDEO mode, keypoints smoothed across frames).
    video=False: unrelated photos (IMAGE mode, no smoothing).
    """

    def __init__(self, model: EffectModel, video: bool = True, min_score: float = DEFAULT_MIN_SCORE, max_faces: int = 8,
                 smooth: bool = True, tracker: FaceTracker | None = None):
        from facefx.runtime.faces import FaceDetector  # imports MediaPipe (~0.6 s): only when a pipeline is built

        self.video = video
        self.max_faces = max_faces
        self.tracker = (tracker or FaceTracker()) if (video and smooth) else None
        self.set_model(model)
        self.detector = FaceDetector("video" if video else "image", min_score=min_score)

    def set_model(self, model: EffectModel) -> None:
        """Switch the effect (keeps the detector and the face tracks)."""
        spec = cropgeo.CropSpec.from_dict(model.contract["crop"])
        if spec.size != model.size:
            raise FacefxError(f"{model.path.name}: crop size {spec.size} differs from model size {model.size}; "
                              "re-export it")
        self.model = model
        self.spec = spec

    def faces(self, frame: np.ndarray, t: float) -> list[FaceResult]:
        """Faces of a BGR frame at time t (seconds), keypoints smoothed when tracking, with crop transforms."""
        import cv2

        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # the detector takes RGB
        dets = self.detector.detect(rgb, int(round(t * 1000)) if self.video else None)[:self.max_faces]
        if self.tracker is not None:
            kps, ids = self.tracker.update([d.box for d in dets], [d.keypoints for d in dets], t)
        else:
            kps, ids = [d.keypoints for d in dets], list(range(len(dets)))
        return [FaceResult(k, d.box, d.score, i, cropgeo.face_transform(k, self.spec))
                for d, k, i in zip(dets, kps, ids)]

    def process(self, frame: np.ndarray, t: float,
                timer: StageTimer | None = None) -> tuple[np.ndarray, list[FaceResult]]:
        """(frame with the effect applied, faces). Without a face, the input array itself is returned."""
        timer = timer or _NULL_TIMER
        frame = check_frame(frame)
        with timer.stage("detect"):
            faces = self.faces(frame, t)
        if not faces:
            return frame, faces
        with timer.stage("crop"):
            crops = np.stack([cropgeo.crop(frame, f.matrix, self.spec) for f in faces])  # (N, S, S, 3) BGR
            batch = bgr_to_nchw(crops)  # (N, 3, S, S) RGB [-1, 1]
        with timer.stage("infer"):
            out = self.model(batch)  # (N, 3, S, S) RGB [-1, 1]
        with timer.stage("paste"):
            result = frame.copy()
            for face, img in zip(faces, nchw_to_bgr(out)):
                cropgeo.paste(result, img, face.matrix, self.spec)
        return result, faces

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> FaceEffectPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _NullTimer(StageTimer):
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield


_NULL_TIMER = _NullTimer()


# ---- the loop -----------------------------------------------------------------------------------------
@dataclass
class RunStats:
    frames: int = 0  # frames taken from the source
    processed: int = 0  # frames that went through the pipeline and out
    with_faces: int = 0
    faces: int = 0
    skipped: int = 0  # bad frames (unreadable, wrong shape, or a stage raised)
    interrupted: bool = False  # Ctrl-C or SIGTERM
    exit_code: int = 0  # 130 (Ctrl-C) or 143 (SIGTERM) when interrupted
    stopped: bool = False  # the on_frame callback asked to stop (window closed, q)
    end_reason: str | None = None  # the source ended early (camera gone, truncated video)
    warnings: list[str] = field(default_factory=list)


def run_stream(source: FrameSource, pipeline: FaceEffectPipeline,
               on_frame: Callable[[Frame, np.ndarray, list[FaceResult]], bool | None] | None = None,
               timer: StageTimer | None = None, max_frames: int | None = None,
               warn: Callable[[str], None] | None = None, max_warnings: int = 5,
               max_consecutive_errors: int = 30) -> RunStats:
    """Run every frame of a facefx.runtime.video source through the pipeline; on_frame(frame, result, faces) gets each
    output (return False to stop). Bad frames are skipped and counted, Ctrl-C stops cleanly; the caller
    closes its sinks (try/finally) with RunStats telling how the run ended.
    """
    timer = timer or StageTimer()
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    stats = RunStats()
    consecutive = 0
    it = iter(source)
    try:
        while max_frames is None or stats.frames < max_frames:
            timer.start_frame()
            with timer.stage("capture"), deferred_interrupts():
                frame = next(it, None)
            if frame is None:
                timer.end_frame(keep=False)
                break
            stats.frames += 1
            try:
                if frame.image is None:
                    raise BadFrame(frame.error or "empty frame (None)")
                with deferred_interrupts():
                    result, faces = pipeline.process(frame.image, frame.t, timer)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # one bad frame must never end a live session
                stats.skipped += 1
                consecutive += 1
                reason = err if isinstance(err, (BadFrame, FacefxError)) else f"{type(err).__name__}: {err}"
                msg = f"skipped frame {frame.index} ({reason})"
                stats.warnings.append(msg)
                if stats.skipped <= max_warnings:
                    warn(msg)
                elif stats.skipped == max_warnings + 1:
                    warn("more frames skipped; counting them silently")
                timer.end_frame(keep=False)
                if consecutive >= max_consecutive_errors and not isinstance(err, BadFrame):
                    raise FacefxError(f"{consecutive} frames in a row failed, last: {reason}") from None
                continue
            consecutive = 0
            stats.processed += 1
            stats.with_faces += bool(faces)
            stats.faces += len(faces)
            with timer.stage("output"), deferred_interrupts():
                keep_going = on_frame(frame, result, faces) if on_frame else True
            timer.end_frame()
            if keep_going is False:
                stats.stopped = True
                break
    except KeyboardInterrupt as err:
        stats.interrupted = True
        stats.exit_code = interrupt_exit_code(err)
        timer.end_frame(keep=False)
    stats.end_reason = getattr(source, "end_reason", None)
    return stats
