"""Frame sources and sinks for the realtime loop.

Sources (open_source): a camera index ("0"), a video file, one image, or a folder of images. Each yields
Frame objects (uint8 BGR HWC, OpenCV's order, or None for a frame that could not be read) with a
timestamp. A camera is read by a background thread where the newest frame wins (stale frames are dropped,
so a slow effect never lags behind the camera); a video file is read frame by frame, every frame in order.

Sinks (open_sink): a video file (.mp4, .avi, .mov, .mkv), an image file, or a folder of images. Nothing
half-written is left on disk: a video is written under a hidden temp name and renamed when closed, a
folder's images are staged in a hidden folder and moved in at the end; on an error both are removed.
A window (WindowSink) shows frames and returns the key pressed.

Numpy + OpenCV only (the realtime path never imports torch).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# OpenCV and its FFmpeg print several lines of their own for a missing camera or an unreadable file;
# facefx reports those as one FacefxError line instead. Read by OpenCV when it first needs them.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

import cv2
import numpy as np

from facefx.errors import FacefxError, deferred_interrupts
from facefx.manifest import atomic_write_bytes, write_failed
from facefx.runtime.images import IMAGE_SUFFIXES, BadImage, read_rgb

VIDEO_SUFFIXES = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}  # container -> fourcc
DEFAULT_FPS = 30.0


@dataclass
class Frame:
    """One input frame. image is None when the frame could not be read (error says why)."""

    index: int  # 0-based position in the source
    image: np.ndarray | None  # uint8 BGR (H, W, 3)
    t: float  # seconds: media time for files, capture time (monotonic, from the source's start) for cameras
    name: str  # for folder outputs: the source image's stem, or frame_000123
    error: str | None = None


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    # Opening a missing camera logs [WARN]/[ERROR] lines from every backend it tries.
    old = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(old)


# ---- sources ------------------------------------------------------------------------------------------
class FrameSource:
    """Iterable of Frame; use as a context manager so devices and threads are released."""

    live = False  # True for cameras: frames are dropped rather than queued, and the loop may run forever
    independent = False  # True for folders/images: frames are unrelated photos (no tracking, no smoothing)
    fps: float = DEFAULT_FPS
    frame_count: int | None = None  # None when unknown (cameras)
    description = ""
    end_reason: str | None = None  # why the source ended early (e.g. the camera disappeared)

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ArraySource(FrameSource):
    """Frames from memory (tests, benchmarks); None entries stand for unreadable frames."""

    def __init__(self, images: Iterable[np.ndarray | None], fps: float = DEFAULT_FPS, independent: bool = False):
        self.images = list(images)
        self.fps = fps
        self.independent = independent
        self.frame_count = len(self.images)
        self.description = f"{len(self.images)} frames in memory"

    def __iter__(self) -> Iterator[Frame]:
        for i, img in enumerate(self.images):
            yield Frame(i, img, i / self.fps, f"frame_{i:06d}", None if img is not None else "no image")


class VideoFileSource(FrameSource):
    """Every frame of a video file, in order (nothing is dropped: output has one frame per input frame)."""

    def __init__(self, path: Path):
        self.path = path
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            raise FacefxError(f"cannot read video {path} (unsupported or corrupt file); pass an .mp4/.avi that "
                              "plays elsewhere, an image, a folder of images or a camera index")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else DEFAULT_FPS
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.description = f"video {path.name} ({self.frame_count or '?'} frames, {self.fps:g} fps)"

    def __iter__(self) -> Iterator[Frame]:
        index, misses = 0, 0
        while True:
            ok, img = self._cap.read()
            if not ok:
                # A damaged frame can fail to decode before the end: try the next few. The header's frame count
                # is often a frame or two high, so failures are reported only once a later frame decodes.
                if self.frame_count is not None and index + misses < self.frame_count and misses < 5:
                    misses += 1
                    continue
                if self.frame_count is not None and index < self.frame_count - 2:
                    self.end_reason = f"video ended at frame {index} of {self.frame_count} (truncated file?)"
                return
            for _ in range(misses):
                yield Frame(index, None, index / self.fps, f"frame_{index:06d}", "frame could not be decoded")
                index += 1
            misses = 0
            yield Frame(index, img, index / self.fps, f"frame_{index:06d}")
            index += 1

    def close(self) -> None:
        self._cap.release()


class ImageFilesSource(FrameSource):
    """One image or every image of a folder (sorted); a file that cannot be read becomes a skipped frame."""

    independent = True

    def __init__(self, files: list[Path], description: str):
        self.files = files
        # Outputs are named after the inputs' stems; x.jpg and x.png would both become x.png, so such
        # stems take their suffix too (x_jpg, x_png) and no output is lost.
        stems = [p.stem for p in files]
        self.names = [f"{p.stem}_{p.suffix[1:].lower()}" if stems.count(p.stem) > 1 else p.stem for p in files]
        self.frame_count = len(files)
        self.fps = 1.0
        self.description = description

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.files):
            try:
                # Grayscale and transparent photos are fine here (converted), unlike training data.
                rgb = read_rgb(path, allow_gray=True, allow_alpha=True)
                yield Frame(i, np.ascontiguousarray(rgb[..., ::-1]), float(i), self.names[i])
            except BadImage as err:
                yield Frame(i, None, float(i), self.names[i], f"{path.name} {err}")


class CameraSource(FrameSource):
    """A camera read by a background thread: the newest frame wins, older unread frames are dropped."""

    live = True
    max_failed_reads = 30  # ~1 s of failed reads at 30 fps: the camera is gone (unplugged, taken by another app)

    def __init__(self, index: int, width: int | None = None, height: int | None = None):
        self.index = index
        with _quiet_opencv():
            self._cap = cv2.VideoCapture(index)
            if self._cap.isOpened() and width and height:
                self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok or first is None:
            self._cap.release()
            raise FacefxError(f"no camera at index {index}; pass --source FILE")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 1 <= fps <= 240 else DEFAULT_FPS
        self.description = f"camera {index} ({first.shape[1]}x{first.shape[0]})"
        self.dropped = 0  # frames the camera delivered that the loop never saw (it was busy)
        self._t0 = time.monotonic()
        self._cond = threading.Condition()
        self._latest: tuple[int, np.ndarray, float] | None = (0, first, 0.0)
        self._seq = 1
        self._stop = False
        self._thread = threading.Thread(target=self._grab, name=f"camera-{index}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        failures = 0
        while not self._stop:
            ok, img = self._cap.read()
            t = time.monotonic() - self._t0
            with self._cond:
                if not ok or img is None:
                    failures += 1
                    if failures >= self.max_failed_reads:
                        self.end_reason = f"camera {self.index} stopped delivering frames (disconnected?)"
                        self._stop = True
                        self._cond.notify_all()
                        return
                    continue
                failures = 0
                if self._latest is not None:
                    self.dropped += 1  # the previous frame was never taken: it is stale now
                self._latest = (self._seq, img, t)
                self._seq += 1
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while self._latest is None and not self._stop:
                    self._cond.wait(timeout=1.0)
                if self._latest is None:
                    return
                seq, img, t = self._latest
                self._latest = None
            yield Frame(seq, img, t, f"frame_{seq:06d}")

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
        self._cap.release()


def open_source(source: str | int | os.PathLike) -> FrameSource:
    """A camera index ("0"), a video file, an image file or a folder of images."""
    text = str(source)
    if text.isdigit():
        return CameraSource(int(text))
    path = Path(text)
    if not path.exists():
        raise FacefxError(f"source {path} does not exist; pass a camera index, a video, an image or a folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise FacefxError(f"{path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); pass a folder of photos")
        return ImageFilesSource(files, f"folder {path} ({len(files)} images)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            read_rgb(path, allow_gray=True, allow_alpha=True)  # fail at start, with the reason, not mid-run
        except BadImage as err:
            raise FacefxError(f"source {path.name} {err}") from None
        return ImageFilesSource([path], f"image {path.name}")
    return VideoFileSource(path)


# ---- sinks --------------------------------------------------------------------------------------------
class FrameSink:
    """Where processed frames go. close(ok=True) publishes the result; close(ok=False) removes it."""

    path: Path
    written = 0

    def write(self, frame: np.ndarray, name: str) -> None:
        raise NotImplementedError

    def close(self, ok: bool = True) -> None:
        pass


class VideoSink(FrameSink):
    """A video file, written under a hidden temp name in the same folder; on close it is read back (OpenCV's
    writer reports no write errors: a full disk gives an unplayable file) and renamed into place only when it
    plays with every frame written. Otherwise the temp file is removed and an existing file is left as it was."""

    def __init__(self, path: Path, fps: float):
        self.path = path
        self.fps = fps
        self.fourcc = VIDEO_SUFFIXES[path.suffix.lower()]
        # Hidden, same folder (so the final rename is atomic), same suffix (OpenCV picks the container from it).
        self._tmp = path.parent / f".{path.stem}.{os.getpid()}.partial{path.suffix}"
        self._writer: cv2.VideoWriter | None = None
        self.written = 0

    def write(self, frame: np.ndarray, name: str) -> None:
        if self._writer is None:
            # The size is known only from the first frame.
            h, w = frame.shape[:2]
            self.size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                with contextlib.suppress(FileNotFoundError):
                    self._tmp.unlink()
                raise FacefxError(f"cannot write {self.path.suffix} video {self.path} (codec {self.fourcc}, or the "
                                  "folder is not writable); try --output out.avi or another folder")
        if frame.shape[1::-1] != self.size:
            # One video has one frame size (a folder of photos of different sizes): fit it in, letterboxed.
            frame = _letterbox(frame, self.size)
        with _quiet_opencv():  # a full disk logs one FFmpeg warning per frame; close() reports it in one line
            self._writer.write(frame)
        self.written += 1

    def close(self, ok: bool = True) -> None:
        if self._writer is not None:
            with _quiet_opencv():
                self._writer.release()
            self._writer = None
        try:
            if ok and self.written:
                frames = _playable_frames(self._tmp)
                if frames < self.written:
                    kept = f"; the existing {self.path.name} was left as it was" if self.path.exists() else ""
                    raise FacefxError(f"could not write {self.path}: it plays back {frames} of {self.written} frames "
                                      f"(is the disk full? {_free_space(self.path.parent)} free){kept}; free some "
                                      "space or pick another folder and run again")
                os.replace(self._tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


def _playable_frames(path: Path) -> int:
    """How many frames a video file's container says it holds (0 when it does not open, e.g. no moov atom)."""
    if not path.is_file() or path.stat().st_size == 0:
        return 0
    with _quiet_opencv():
        cap = cv2.VideoCapture(str(path))
        try:
            if not cap.isOpened():
                return 0
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            ok, _ = cap.read()  # the header can be intact while the data is not
            if not ok:
                return 0
            if n <= 0:  # a container without a frame index: count the frames (grab() does not decode them)
                n = 1
                while cap.grab():
                    n += 1
            return n
        finally:
            cap.release()


def _free_space(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    return f"{free / 1e6:.1f} MB" if free >= 1e5 else f"{free / 1e3:.0f} KB"


def _encode_image(frame: np.ndarray, path: Path) -> bytes:
    ok, buf = cv2.imencode(path.suffix.lower() or ".png", frame)
    if not ok:
        raise FacefxError(f"cannot encode {path.name}; use .png or .jpg")
    return buf.tobytes()


class ImageSink(FrameSink):
    """One image file (for a one-image source), written by the one checked, atomic writer."""

    def __init__(self, path: Path):
        self.path = path
        self.written = 0
        self._last: np.ndarray | None = None

    def write(self, frame: np.ndarray, name: str) -> None:
        if self.written:
            raise FacefxError(f"--output {self.path.name} is one image but the source has several frames; "
                              "pass a video (.mp4) or a folder")
        self._last = frame
        self.written += 1

    def close(self, ok: bool = True) -> None:
        if ok and self._last is not None:
            atomic_write_bytes(self.path, _encode_image(self._last, self.path))


class FolderSink(FrameSink):
    """A folder of PNG images named after the input frames; staged in a hidden folder (every write checked),
    moved in at the end: a new folder in one rename, an existing one file by file."""

    def __init__(self, path: Path):
        self.path = path
        self.written = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with deferred_interrupts():  # named before a signal can unwind past it
                self._tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
        except OSError as err:
            raise write_failed(path, err) from None
        except KeyboardInterrupt:  # arrived while the folder was made: no caller will close() this sink
            if getattr(self, "_tmp", None) is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            raise

    def write(self, frame: np.ndarray, name: str) -> None:
        target = self._tmp / f"{name}.png"
        if target.exists():  # two inputs mapped to one name would lose one output
            raise FacefxError(f"two frames are both named {name}.png in {self.path}; rename one of the inputs")
        data = _encode_image(frame, target)
        # Written under a temporary name and renamed when whole: a signal that lands mid-write leaves only a
        # `.part` file, which close() never publishes.
        part = target.with_name(target.name + ".part")
        try:
            with open(part, "wb") as f:
                f.write(data)
            os.replace(part, target)
        except OSError as err:
            raise write_failed(self.path / target.name, err) from None
        self.written += 1

    def close(self, ok: bool = True) -> None:
        try:
            if ok and self.written:
                os.chmod(self._tmp, 0o755)  # mkdtemp makes folders owner-only
                for part in self._tmp.glob("*.part"):  # a frame cut short by a signal: never published
                    part.unlink()
                if not self.path.exists():
                    os.replace(self._tmp, self.path)
                else:
                    for f in sorted(self._tmp.iterdir()):
                        os.replace(f, self.path / f.name)
        except OSError as err:
            raise write_failed(self.path, err) from None
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


def open_sink(output: str | os.PathLike, fps: float, single_image: bool = False) -> FrameSink:
    """A sink chosen from the output's name: .mp4/.avi/.mov/.mkv video, an image suffix, or else a folder."""
    path = Path(output)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES or suffix in IMAGE_SUFFIXES:
        if not path.parent.is_dir():
            raise FacefxError(f"folder {path.parent} for --output does not exist; create it first")
        if path.is_dir():
            raise FacefxError(f"--output {path} is a folder; pass a file name")
    if suffix in VIDEO_SUFFIXES:
        return VideoSink(path, fps)
    if suffix in IMAGE_SUFFIXES:
        if not single_image:
            raise FacefxError(f"--output {path.name} is one image but the source has several frames; "
                              "pass a video (.mp4) or a folder")
        return ImageSink(path)
    if suffix:
        raise FacefxError(f"--output {path.name}: unknown suffix {suffix}; use .mp4/.avi (video), "
                          ".png/.jpg (image) or a folder name")
    if path.exists() and not path.is_dir():
        raise FacefxError(f"--output {path} exists and is not a folder")
    return FolderSink(path)


def _letterbox(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    fh, fw = frame.shape[:2]
    s = min(w / fw, h / fh)
    nw, nh = max(1, round(fw * s)), max(1, round(fh * s))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


# ---- window -------------------------------------------------------------------------------------------
def display_available() -> bool:
    """Whether an OpenCV window can open: on Linux, an X display that answers (macOS and Windows: always).

    OpenCV's Qt windows need X (also under Wayland, through XWayland), and Qt aborts the whole process
    when $DISPLAY is set but unreachable, so the display is tried here first.
    """
    if not sys.platform.startswith("linux"):
        return True
    display = os.environ.get("DISPLAY", "")
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return False
    import socket

    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(f"/tmp/.X11-unix/X{number}")
        else:  # e.g. ssh -X: localhost:10.0 is TCP port 6010
            socket.create_connection((host, 6000 + int(number)), timeout=0.5).close()
        return True
    except OSError:
        return False


class WindowSink:
    """An OpenCV window. show() returns the key pressed (-1 for none); closed is True once the user closed it."""

    def __init__(self, title: str = "facefx"):
        self.title = title
        self._opened = False
        self.closed = False

    def show(self, frame: np.ndarray) -> int:
        if not self._opened:
            try:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
                cv2.resizeWindow(self.title, frame.shape[1], frame.shape[0])
            except cv2.error as err:  # e.g. a headless OpenCV build, or a display that refuses the connection
                reason = str(err).strip().splitlines()[-1]
                raise FacefxError(f"cannot open a window ({reason}); pass --no-window --output FILE") from None
            self._opened = True
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1)
        if cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.closed = True  # the window's close button
        return key & 0xFF if key >= 0 else -1

    def close(self) -> None:
        if self._opened:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._opened = False
