"""Make assets/demo.mp4: a short, reproducible, webcam-like video of real face photos (hair and surroundings kept).

Input: four held-out ('test' split: never trained on) photos: two phone selfies from selfie2anime
(--selfies, default ../shared/data/selfie2anime/selfie) and two UTKFace chips (--utkface, default
../shared/data/utkface/images); research-only terms, see assets/README.md.
Output: --out (default assets/demo.mp4), 640x480, 20 fps, 7 s. Each photo fills its panel like a face in a
video call, its edges stretched and blurred around it like an out-of-focus room, and the "camera" zooms, pans and
tilts: one selfie close up, half a second with no face, a man's face zooming in until the frame's edge cuts it, then two
faces at once side by side. --check runs the face detector over the result and prints how many frames have
every face found.

    python realtime/make_demo_video.py --check
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facefx.errors import FacefxError, cli_main, epilog

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
W, H, FPS = 640, 480, 20

# Held-out photos (split "test": never trained on), chosen for variety: (source set, file name).
FACES = {
    "selfie_1": ("selfies", "female_10.jpg"),
    "young_man": ("utkface", "23_0_0_20170104004012222.jpg.chip.jpg"),
    "selfie_2": ("selfies", "female_10644.jpg"),
    "older_man": ("utkface", "56_0_0_20170104184302965.jpg.chip.jpg"),
}


@dataclass
class Shot:
    """One photo on screen in the panel [x0, x1) from frame `start` to `end` (exclusive).

    The photo's centre (panel coordinates), displayed height and tilt move linearly (eased) from 0 to 1.
    """

    face: str
    start: int
    end: int
    panel: tuple[int, int]
    centre0: tuple[float, float]
    centre1: tuple[float, float]
    height0: float  # displayed photo height in pixels (the face is about half of it)
    height1: float
    angle0: float = 0.0  # degrees
    angle1: float = 0.0


# 140 frames at 20 fps = 7 s.
SHOTS = [
    Shot("selfie_1", 0, 40, (0, W), (320, 240), (335, 250), 480, 560, -4, 4),  # close up, slow zoom and tilt
    # frames 40-49: no face
    Shot("young_man", 50, 90, (0, W), (300, 240), (570, 250), 300, 420, 0, -6),  # zooms in, ends cut by the edge
    Shot("selfie_2", 90, 140, (0, W // 2), (160, 240), (165, 230), 360, 380, 3, -3),  # two faces at once
    Shot("older_man", 90, 140, (W // 2, W), (160, 245), (155, 235), 300, 320, -3, 3),
]
N_FRAMES = 140


def background() -> np.ndarray:
    """A soft diagonal gradient (BGR), like a plain wall under uneven light: the frames with no face."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    t = (0.6 * y / H + 0.4 * x / W)[..., None]
    top, bottom = np.array([200, 190, 170], np.float32), np.array([120, 140, 150], np.float32)  # BGR
    return (top * (1 - t) + bottom * t).astype(np.uint8)


def edge_mask(side: int) -> np.ndarray:
    """(side, side) float32: 1 inside, fading over the outer 4% so the photo's edge melts into the fill."""
    ramp = np.clip(np.minimum(np.arange(side), np.arange(side)[::-1]) / (0.04 * side), 0, 1).astype(np.float32)
    return np.minimum.outer(ramp, ramp)


def render(photos: dict[str, np.ndarray], index: int, bg: np.ndarray) -> tuple[np.ndarray, int]:
    """Frame `index` (BGR) and how many faces are on screen with their centre inside the frame."""
    frame = bg.copy()
    n = 0
    for shot in SHOTS:
        if not shot.start <= index < shot.end:
            continue
        u = (index - shot.start) / max(1, shot.end - shot.start - 1)
        u = u * u * (3 - 2 * u)  # ease in and out
        cx = shot.centre0[0] + u * (shot.centre1[0] - shot.centre0[0])
        cy = shot.centre0[1] + u * (shot.centre1[1] - shot.centre0[1])
        height = shot.height0 + u * (shot.height1 - shot.height0)
        angle = shot.angle0 + u * (shot.angle1 - shot.angle0)
        photo = photos[shot.face]
        side = photo.shape[0]
        x0, x1 = shot.panel
        m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, height / side)
        m[:, 2] += (cx - side / 2, cy - side / 2)
        size = (x1 - x0, H)
        warped = cv2.warpAffine(photo, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(edge_mask(side), m, size, flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
        # Around the photo: its own edges stretched outwards and blurred, like an out-of-focus room.
        small = cv2.resize(warped, (size[0] // 8, H // 8), interpolation=cv2.INTER_AREA)
        fill = cv2.resize(cv2.GaussianBlur(small, (0, 0), 5), size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
        fill *= 0.8
        panel = fill * (1 - alpha) + warped.astype(np.float32) * alpha
        frame[:, x0:x1] = np.clip(panel + 0.5, 0, 255).astype(np.uint8)
        n += int(0 <= x0 + cx < W and 0 <= cy < H)
    return frame, n


def load_photos(folders: dict[str, Path]) -> dict[str, np.ndarray]:
    """The FACES photos (BGR, square), each checked to be in the held-out split."""
    from facefx.runtime.images import read_rgb
    from facefx.train.prepare import split_of

    photos = {}
    for key, (source, name) in FACES.items():
        if split_of(name) != "test":
            raise FacefxError(f"{name} is not in the held-out split; pick a 'test' face")
        path = folders[source] / name
        if not path.is_file():
            raise FacefxError(f"{path} is missing; pass --{source}, the folder of those photos")
        rgb = read_rgb(path)
        side = min(rgb.shape[:2])
        photos[key] = np.ascontiguousarray(rgb[:side, :side, ::-1])  # BGR, square
    return photos


def check(path: Path, expected: list[int]) -> None:
    """Print the share of frames where the detector finds every face that is on screen."""
    from facefx.runtime.faces import FaceDetector
    from facefx.runtime.video import open_source

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
    p = argparse.ArgumentParser(epilog=epilog(), description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--utkface", type=Path, default=DATA / "utkface" / "images", help="folder of the UTKFace chips")
    p.add_argument("--selfies", type=Path, default=DATA / "selfie2anime" / "selfie",
                   help="folder of the selfie2anime selfies")
    p.add_argument("--out", type=Path, default=REPO / "assets" / "demo.mp4", help="video to write")
    p.add_argument("--check", action="store_true", help="run the face detector over the result")
    args = p.parse_args(argv)

    from facefx.runtime.video import VideoSink

    photos = load_photos({"utkface": args.utkface, "selfies": args.selfies})
    bg = background()
    sink = VideoSink(args.out, FPS)  # temp name, renamed when complete
    expected, ok = [], False
    try:
        for i in range(N_FRAMES):
            frame, n = render(photos, i, bg)
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
