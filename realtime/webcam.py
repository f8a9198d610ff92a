"""Real-time face effects on a camera, a video, an image or a folder of images.

Input: an exported effect model (models/<effect>/<effect>_int8.onnx by default, or --model PATH) and a
source: a camera index (default 0), a video file, an image or a folder of images.
Output: an OpenCV window (when a display exists) and/or --output: a video (.mp4/.avi), an image, or a folder.

    python realtime/webcam.py --effect age --source assets/demo.mp4 --output out.mp4 --no-window

Window keys: 1-9 pick an effect (the folders of models/), e or n cycle effects, s toggles a before/after
split view, q or Esc quits. The overlay shows FPS and per-stage milliseconds; --stats prints them at exit.
Never imports torch: exported models run through ONNX Runtime (facefx.runtime.loader).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from facefx import options
from facefx.errors import FacefxError, cli_main
from facefx.runtime.webcam_options import WebcamOptions

if TYPE_CHECKING:  # the heavy modules are imported inside main(), after the arguments are parsed
    import numpy as np

    from facefx.runtime.loader import EffectModel
    from facefx.runtime.pipeline import FaceEffectPipeline, RunStats, StageTimer
    from facefx.runtime.video import FrameSink, FrameSource

KEY_ESC = 27


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, every one set (default or typed) and checked: a bad number is one line and exit 2."""
    p = options.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_options(p, WebcamOptions, shown={"models_dir": "models/ of this checkout"})
    args = p.parse_args(argv)
    return options.fill(args, options.resolve(WebcamOptions, args))


def available_effects(models_dir: Path, precision: str) -> list[str]:
    """Effects with a model of this precision under models_dir, sorted (the order of keys 1-9)."""
    from facefx.runtime.loader import model_for_effect

    found = []
    for d in sorted(p for p in models_dir.glob("*") if p.is_dir()) if models_dir.is_dir() else []:
        try:
            model_for_effect(d.name, models_dir, precision)
            found.append(d.name)
        except FacefxError:
            pass
    return found


class Effects:
    """The loaded effect models (loaded on first use) and which one is active."""

    def __init__(self, args: argparse.Namespace):
        from facefx.runtime.loader import load_model, model_for_effect

        self._load, self._path_for = load_model, model_for_effect
        self.args = args
        self.cache: dict[str, object] = {}
        if args.model is not None:
            model = load_model(args.model, effect=args.effect, threads=args.threads)
            self.names = [model.effect]
            self.cache[model.effect] = model
        else:
            effect = args.effect or "age"
            self.path(effect)  # a missing or unknown effect fails here, before the source is opened
            self.names = available_effects(args.models_dir, args.precision)
            if effect not in self.names:
                self.names.insert(0, effect)
        self.current = self.names[0] if args.model is not None else (args.effect or "age")

    def path(self, effect: str) -> Path:
        return self._path_for(effect, self.args.models_dir, self.args.precision)

    def model(self, effect: str | None = None) -> EffectModel:
        effect = effect or self.current
        if effect not in self.cache:
            self.cache[effect] = self._load(self.path(effect), effect=effect, threads=self.args.threads)
        return self.cache[effect]

    def pick(self, index: int) -> bool:
        if 0 <= index < len(self.names) and self.names[index] != self.current:
            self.current = self.names[index]
            return True
        return False

    def next(self) -> bool:
        return self.pick((self.names.index(self.current) + 1) % len(self.names)) if len(self.names) > 1 else False


def overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw text lines top-left on a dark box (on a copy: the written output never carries the overlay)."""
    import cv2

    out = image.copy()
    scale = max(0.4, min(0.7, image.shape[1] / 1100))
    h = int(22 * scale / 0.5)
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] for t in lines) + 12
    box = out[: h * len(lines) + 8, :width]
    box[:] = (box * 0.4).astype(box.dtype)
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def split_view(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Left half of the input frame, right half of the result, with a divider line."""
    out = after.copy()
    mid = out.shape[1] // 2
    out[:, :mid] = before[:, :mid]
    out[:, mid - 1:mid + 1] = (255, 255, 255)
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)

    from facefx.runtime.pipeline import FaceEffectPipeline, StageTimer
    from facefx.runtime.video import display_available, open_sink, open_source

    window = not args.no_window and display_available()
    if not args.no_window and not window and args.output is None:
        raise FacefxError("no display for a window here; pass --output FILE (and --no-window)")
    _check_output_is_not_source(args.source, args.output)
    effects = Effects(args)  # the model path is checked before the camera is opened
    source = open_source(args.source)
    sink = None
    ok = False
    with source:
        try:
            if args.output is not None:
                sink = open_sink(args.output, source.fps, single_image=source.frame_count == 1 and source.independent)
            model = effects.model()
            with FaceEffectPipeline(model, video=not source.independent, min_score=args.min_score,
                                    max_faces=args.max_faces, smooth=not args.no_smooth) as pipeline:
                print(f"{effects.current} ({Path(model.path).name}) on {source.description}; "
                      f"ready in {time.perf_counter() - t_start:.2f} s", file=sys.stderr)
                timer = StageTimer()
                stats, first_frame_s = _loop(args, source, sink, pipeline, effects, timer, window, t_start)
            if stats.frames and not stats.processed and not stats.interrupted:
                # Every frame failed (a folder of broken images, a model that fails on each frame): not a success.
                first = stats.warnings[0] if stats.warnings else "no reason recorded"
                raise FacefxError(f"none of the {stats.frames} frames could be processed ({first}); "
                                  "nothing was written: check the source files and the model")
            ok = True
        finally:
            if sink is not None:
                sink.close(ok=ok)

    # ---- report --------------------------------------------------------------------------------------
    how = (f"stopped by {'Ctrl-C' if stats.exit_code == 130 else 'SIGTERM'}" if stats.interrupted
           else stats.end_reason or "done")
    parts = [f"{stats.processed} frames", f"faces in {stats.with_faces}"]
    if stats.skipped:
        parts.append(f"{stats.skipped} bad frames skipped")
    if getattr(source, "dropped", 0):
        parts.append(f"{source.dropped} stale camera frames dropped")
    if sink is not None:
        parts.append(f"wrote {sink.path}" if sink.written else "nothing written")
    if first_frame_s:
        parts.append(f"first frame after {first_frame_s[0]:.2f} s")
    print(f"{how}: " + ", ".join(parts), file=sys.stderr)
    if args.stats:
        print(timer.format_summary())
    return stats.exit_code if stats.interrupted else 0


def _check_output_is_not_source(source: str, output: Path | None) -> None:
    """--output must never overwrite the input: the same file, or the folder of images being read."""
    if output is None or source.isdigit():
        return
    src, out = Path(source).resolve(), output.resolve()
    if out == src or (src.is_file() and out == src.parent and not output.suffix):
        raise FacefxError(f"--output {output} is the source itself; its images would be overwritten: "
                          "pass another --output")


def _loop(args: argparse.Namespace, source: FrameSource, sink: FrameSink | None, pipeline: FaceEffectPipeline,
          effects: Effects, timer: StageTimer, window: bool, t_start: float) -> tuple[RunStats, list[float]]:
    """Run the source through the pipeline into the sink and/or window; returns (RunStats, [first-frame s])."""
    from facefx.runtime.pipeline import run_stream
    from facefx.runtime.video import WindowSink

    view = {"split": args.split, "window": WindowSink("facefx") if window else None}
    first_frame_s: list[float] = []
    progress = _Progress(source.frame_count if not source.live else None, enabled=not window)

    def on_frame(frame, result, faces) -> bool:
        if not first_frame_s:
            first_frame_s.append(time.perf_counter() - t_start)
        if sink is not None:
            sink.write(result, frame.name)
        progress.update()
        win = view["window"]
        if win is None:
            return True
        shown = split_view(frame.image, result) if view["split"] else result
        lines = [f"{effects.current}  {timer.recent_fps():.1f} FPS  faces {len(faces)}",
                 " ".join(f"{s} {timer.recent_ms(s):.1f}" for s in ("capture", "detect", "crop", "infer", "paste"))
                 + " ms",
                 "1-9/e: effect  s: split  q: quit"]
        key = win.show(overlay(shown, lines))
        if key in (ord("q"), KEY_ESC) or win.closed:
            return False
        if key == ord("s"):
            view["split"] = not view["split"]
        elif key in (ord("e"), ord("n")) or ord("1") <= key <= ord("9"):
            changed = effects.next() if key in (ord("e"), ord("n")) else effects.pick(key - ord("1"))
            if changed:
                try:
                    pipeline.set_model(effects.model())
                except FacefxError as err:
                    print(f"warning: cannot switch effect: {err}", file=sys.stderr)
        return True

    try:
        stats = run_stream(source, pipeline, on_frame, timer, max_frames=args.max_frames)
    finally:
        progress.done()
        if view["window"] is not None:
            view["window"].close()
    return stats, first_frame_s


class _Progress:
    """A one-line frame counter on stderr for file runs without a window (only on a terminal)."""

    def __init__(self, total: int | None, enabled: bool):
        self.total, self.n = total, 0
        self.enabled = enabled and sys.stderr.isatty()
        self._last = 0.0

    def update(self) -> None:
        self.n += 1
        now = time.monotonic()
        if self.enabled and now - self._last > 0.5:
            self._last = now
            print(f"\rframe {self.n}" + (f"/{self.total}" if self.total else ""), end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.enabled and self._last:
            print("\r", end="", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
