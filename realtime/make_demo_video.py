"""Make assets/demo.mp4: a short, reproducible video of real face photos moving and scaling on a gradient.

Input: four held-out ('test' split) UTKFace photos (the original 200x200 chips, research-only terms; see
assets/README.md) from --images (default ../shared/data/utkface/images).
Output: --out (default assets/demo.mp4), 640x480, 20 fps, 7 s: one face crossing the frame while growing,
half a second with no face, one face zooming in and leaving at the frame's edge, then two faces at once.
--check runs the face detector over the result and prints how many frames have every face found.

    python realtime/make_demo_video.py --check
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from facefx.errors import FacefxError, cli_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
W, H, FPS = 640, 480, 20

# Held-out UTKFace photos (split "test" in artifacts/faces/*: never trained on), chosen for variety.
FACES = {
    "young_woman": "18_1_0_20170103175433456.jpg.chip.jpg",
    "young_woman_2": "21_1_1_20170103223257503.jpg.chip.jpg",
    "older_man": "56_0_0_20170104184302965.jpg.chip.jpg",
    "older_woman": "57_1_0_20170110120843929.jpg.chip.jpg",
}


@dataclass
class Shot:
    """One face on screen from frame `start` to `end` (exclusive); centre, scale, angle move linearly."""

    face: str
    start: int
    end: int
    centre0: tuple[float, float]
    centre1: tuple[float, float]
    scale0: float  # chip side on screen = 200 px * scale; the face is ~3/4 of the chip
    scale1: float
    angle0: float = 0.0  # degrees
    angle1: float = 0.0


# 140 frames at 20 fps = 7 s.
SHOTS = [
    Shot("young_woman", 0, 40, (150, 250), (470, 220), 0.85, 1.15, -8, 8),  # crosses left to right, growing
    # frames 40-49: no face
    Shot("older_man", 50, 90, (320, 240), (560, 250), 0.9, 1.3, 0, -6),  # zooms in, ends half out of frame
    Shot("young_woman_2", 90, 140, (185, 170), (200, 300), 1.0, 0.9, 5, -3),  # two faces at once
    Shot("older_woman", 90, 140, (460, 310), (440, 190), 0.9, 1.05, -4, 4),
]
N_FRAMES = 140


def background() -> np.ndarray:
    """A soft diagonal gradient (BGR), like a plain wall under uneven light."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = (0.6 * y / H + 0.4 * x / W)[..., None]
    top, bottom = np.array([200, 190, 170], np.float32), np.array([120, 140, 150], np.float32)  # BGR
    return (top * (1 - t) + bottom * t).astype(np.uint8)


def soft_mask(side: int) -> np.ndarray:
    """(side, side) float32: an ellipse with a blurred edge, so a square chip blends into the background."""
    m = np.zeros((side, side), np.float32)
    cv2.ellipse(m, (side // 2, side // 2 + side // 40), (int(side * 0.42), int(side * 0.48)), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), side * 0.04)


def render(chips: dict[str, np.ndarray], index: int, bg: np.ndarray) -> tuple[np.ndarray, int]:
    """Frame `index` (BGR) and how many faces are fully or mostly (centre inside) on screen."""
    frame = bg.astype(np.float32)
    n = 0
    for shot in SHOTS:
        if not shot.start <= index < shot.end:
            continue
        u = (index - shot.start) / max(1, shot.end - shot.start - 1)
        u = u * u * (3 - 2 * u)  # ease in and out
        cx = shot.centre0[0] + u * (shot.centre1[0] - shot.centre0[0])
        cy = shot.centre0[1] + u * (shot.centre1[1] - shot.centre0[1])
        scale = shot.scale0 + u * (shot.scale1 - shot.scale0)
        angle = shot.angle0 + u * (shot.angle1 - shot.angle0)
        chip = chips[shot.face]
        side = chip.shape[0]
        m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
        m[:, 2] += (cx - side / 2, cy - side / 2)
        face = cv2.warpAffine(chip, m, (W, H), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(soft_mask(side), m, (W, H), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        frame = frame * (1 - alpha) + face.astype(np.float32) * alpha
        n += int(0 <= cx < W and 0 <= cy < H)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), n


def load_chips(images: Path) -> dict[str, np.ndarray]:
    from facefx.images import read_rgb
    from facefx.prepare import split_of

    chips = {}
    for key, name in FACES.items():
        if split_of(name) != "test":
            raise FacefxError(f"{name} is not in the held-out split; pick a 'test' face")
        path = images / name
        if not path.is_file():
            raise FacefxError(f"{path} is missing; pass --images, the folder of UTKFace chips")
        chips[key] = np.ascontiguousarray(read_rgb(path)[..., ::-1])  # BGR
    return chips


def check(path: Path, expected: list[int]) -> None:
    """Print the share of frames where the detector finds every face that is on screen."""
    from facefx.faces import FaceDetector
    from facefx.video import open_source

    hits = total = wrong_empty = 0
    with open_source(path) as src, FaceDetector("video") as det:
        for frame, want in zip(src, expected):
            found = len(det.detect(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB), int(frame.t * 1000)))
            if want:
                total += 1
                hits += found >= want
            else:
                wrong_empty += found > 0
    print(f"faces found in {hits}/{total} frames with faces ({100 * hits / max(total, 1):.0f}%); "
          f"false detections in {wrong_empty}/{expected.count(0)} empty frames")


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "utkface" / "images",
                   help="folder of the UTKFace chips")
    p.add_argument("--out", type=Path, default=REPO / "assets" / "demo.mp4", help="video to write")
    p.add_argument("--check", action="store_true", help="run the face detector over the result")
    args = p.parse_args(argv)

    from facefx.video import VideoSink

    chips = load_chips(args.images)
    bg = background()
    sink = VideoSink(args.out, FPS)  # temp name, renamed when complete
    expected, ok = [], False
    try:
        for i in range(N_FRAMES):
            frame, n = render(chips, i, bg)
            expected.append(n)
            sink.write(frame, f"frame_{i:06d}")
        ok = True
    finally:
        sink.close(ok=ok)
    print(f"wrote {args.out} ({N_FRAMES} frames, {W}x{H}, {FPS} fps, {args.out.stat().st_size / 1024:.0f} KB)")
    if args.check:
        check(args.out, expected)


if __name__ == "__main__":
    main()
