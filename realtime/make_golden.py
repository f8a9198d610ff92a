"""Golden vectors: what the Python reference makes of a handful of frames, for every port to check itself against.

    python realtime/make_golden.py            # writes golden/ (about 2 MB, committed)
    python realtime/make_golden.py --check    # recompute and compare with golden/ (exit 1 on a difference)

For each frame (one face, two faces, a face cut by the frame's edge, a rotated face; from assets/demo.mp4 and a
tests/fixtures face photo): the detector's keypoints and boxes (BlazeFace, IMAGE mode), each face's 2x3 matrix, its
crop (PNG), the age model's output for that crop (int8 and fp32, PNG) and the frame with every face's int8 output
pasted back (PNG of the pasted region, the rest of the frame is the input's). Also the feather and inner-face masks
(16-bit PNG, value / 65535) and a One-Euro trace (detections in, smoothed keypoints out, over 60 video frames).
golden/index.json lists it all with the contract it was made with and the tolerances a port must meet.

Everything comes from facefx.runtime (crop, faces, smoothing, pixels, loader): no geometry of its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from facefx.metrics import psnr

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "golden"
EFFECT = "age"
DEMO = REPO / "assets" / "demo.mp4"
FIXTURE_FACE = REPO / "tests" / "fixtures" / "faces" / "55_0_0_20170104204634819.jpg.chip.jpg"
TOLERANCES = {
    "matrix_abs": 1e-3,  # every element of the 2x3 matrix
    "crop_psnr_db": 40.0,  # crop from the frame and the golden keypoints vs crop PNG
    "pasted_psnr_db": 35.0,  # golden model output pasted into the frame vs pasted PNG (over the pasted region)
    "mask_abs": 1e-3,  # feather and inner-face masks
    "one_euro_abs_px": 1e-3,  # smoothed keypoints, pixels
}
TRACE_FRAMES = 60  # demo frames 0-59: a face, 10 empty frames (40-49), then a new face (a new track)


def demo_frames(indices: list[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(DEMO))
    out, i = {}, 0
    while len(out) < len(indices):
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"error: {DEMO} ended at frame {i}; regenerate it with realtime/make_demo_video.py")
        if i in indices:
            out[i] = frame
        i += 1
    cap.release()
    return out


def scenes() -> list[tuple[str, str, np.ndarray]]:
    """(name, what it tests, BGR frame)."""
    f = demo_frames([20, 85, 110])
    chip = cv2.imread(str(FIXTURE_FACE))
    # A fixture face, tilted by 30 degrees, on a 320x240 frame: rotation (the matrix's off-diagonal terms) and a
    # frame size other than the demo's.
    canvas = cv2.resize(chip, (240, 240), interpolation=cv2.INTER_AREA)
    canvas = cv2.copyMakeBorder(canvas, 0, 0, 40, 40, cv2.BORDER_REPLICATE)
    rot = cv2.getRotationMatrix2D((160, 120), 30, 1.0)
    rotated = cv2.warpAffine(canvas, rot, (320, 240), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return [("one_face", "demo.mp4 frame 20: one face, close up", f[20]),
            ("edge", "demo.mp4 frame 85: the frame's right edge cuts the face (replicate border)", f[85]),
            ("two_faces", "demo.mp4 frame 110: two faces side by side", f[110]),
            ("rotated", f"tests/fixtures/faces/{FIXTURE_FACE.name} tilted 30 degrees on a 320x240 frame", rotated)]


def png(path: Path, image: np.ndarray) -> str:
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise SystemExit(f"error: cannot write {path}")
    return path.name


def mask_png(path: Path, mask: np.ndarray) -> str:
    return png(path, np.round(np.clip(mask, 0, 1) * 65535).astype(np.uint16))


def make(out: Path) -> dict:
    from facefx.runtime import crop as cropgeo
    from facefx.runtime.faces import FaceDetector
    from facefx.runtime.loader import load_model, model_for_effect
    from facefx.runtime.pixels import bgr_to_nchw, nchw_to_bgr
    from facefx.runtime.smoothing import FaceTracker

    models = {p: load_model(model_for_effect(EFFECT, REPO / "models", p), threads=1) for p in ("int8", "fp32")}
    contract = models["int8"].contract
    spec = cropgeo.CropSpec.from_dict(contract["crop"])
    index: dict = {
        "about": "facefx golden vectors: the Python reference's detector keypoints, crop matrices, crops, model "
                 "outputs and pasted frames; made by realtime/make_golden.py. Coordinates in pixels (OpenCV: pixel "
                 "(i, j) at (i, j)), matrices map frame pixels to crop pixels, images are PNG (8-bit RGB; masks "
                 "16-bit, value / 65535).",
        "effect": EFFECT,
        "models": {p: f"models/{EFFECT}/{m.path.name}" for p, m in models.items()},
        # What a port must agree with: the geometry, pixel and smoothing parts of the contract
        # (models/<effect>/contract.json).
        "contract": {k: contract[k] for k in ("contract_version", "size", "pixels", "crop", "fit", "paste",
                                              "inner_face", "smoothing")},
        "tolerances": TOLERANCES,
        "frames": [], "masks": {}, "one_euro": None,
    }
    with FaceDetector("image") as det:
        for name, what, frame in scenes():
            h, w = frame.shape[:2]
            faces = det.detect(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if not faces:
                raise SystemExit(f"error: no face found in golden frame {name}; the scene needs fixing")
            entry = {"name": name, "what": what, "frame": png(out / f"{name}.png", frame), "width": w, "height": h,
                     "faces": []}
            pasted = frame.copy()
            boxes = []
            for k, face in enumerate(faces):
                m = cropgeo.face_transform(face.keypoints, spec)
                c = cropgeo.crop(frame, m, spec)
                outs = {p: nchw_to_bgr(model(bgr_to_nchw(c)))[0] for p, model in models.items()}
                cropgeo.paste(pasted, outs["int8"], m, spec)
                corners = cropgeo.apply(cropgeo.invert(m), np.array([[0, 0], [spec.size, 0], [0, spec.size],
                                                                     [spec.size, spec.size]], np.float64))
                boxes.append(np.concatenate([np.floor(corners.min(0)), np.ceil(corners.max(0))]))
                entry["faces"].append({
                    "box": [float(v) for v in face.box], "score": face.score,
                    "keypoints": face.keypoints.tolist(), "matrix": m.tolist(),
                    "crop": png(out / f"{name}_face{k}_crop.png", c),
                    "output": {p: png(out / f"{name}_face{k}_{p}.png", o) for p, o in outs.items()},
                })
            b = np.array(boxes)
            x0, y0 = max(int(b[:, 0].min()), 0), max(int(b[:, 1].min()), 0)
            x1, y1 = min(int(b[:, 2].max()), w), min(int(b[:, 3].max()), h)
            entry["pasted"] = {"model": "int8", "region": [x0, y0, x1, y1],
                               "file": png(out / f"{name}_pasted_int8.png", pasted[y0:y1, x0:x1])}
            if not np.array_equal(np.delete(pasted, np.s_[y0:y1], 0), np.delete(frame, np.s_[y0:y1], 0)):
                raise SystemExit("error: paste changed pixels outside its region")  # the reference's own promise
            index["frames"].append(entry)
    index["masks"] = {"feather": mask_png(out / "mask_feather.png", cropgeo.feather_mask(spec)),
                      "inner_face": mask_png(out / "mask_inner_face.png", cropgeo.inner_face_mask(spec))}
    index["one_euro"] = one_euro_trace(out, FaceTracker)
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def one_euro_trace(out: Path, tracker_cls) -> str:
    """Video-mode detections of demo frames 0..TRACE_FRAMES-1 through a FaceTracker with its default settings."""
    from dataclasses import fields

    from facefx.runtime.faces import FaceDetector

    tracker = tracker_cls()
    params = {f.name: getattr(tracker, f.name) for f in fields(tracker) if not f.name.startswith("_")}
    frames = demo_frames(list(range(TRACE_FRAMES)))
    steps = []
    with FaceDetector("video") as det:
        for i in range(TRACE_FRAMES):
            t = i / 20.0  # demo.mp4 is 20 fps
            faces = det.detect(cv2.cvtColor(frames[i], cv2.COLOR_BGR2RGB), round(t * 1000))
            kps, ids = tracker.update([f.box for f in faces], [f.keypoints for f in faces], t)
            steps.append({"t": t, "boxes": [f.box.tolist() for f in faces],
                          "keypoints": [f.keypoints.tolist() for f in faces],
                          "smoothed": [k.tolist() for k in kps], "ids": ids})
    (out / "one_euro.json").write_text(json.dumps({"params": params, "steps": steps}) + "\n")
    return "one_euro.json"


def _compare_frames(a: dict, b: dict, new: Path, old: Path, tol: dict) -> list[str]:
    """Per-frame differences: face count, crop matrices, crops, model outputs and pasted frames."""
    problems = []
    for fa, fb in zip(a["frames"], b["frames"], strict=True):
        if len(fa["faces"]) != len(fb["faces"]):
            problems.append(f"{fb['name']}: {len(fa['faces'])} faces, golden has {len(fb['faces'])}")
            continue
        for k, (ga, gb) in enumerate(zip(fa["faces"], fb["faces"])):
            d = np.abs(np.array(ga["matrix"]) - np.array(gb["matrix"])).max()
            if d > tol["matrix_abs"]:
                problems.append(f"{fb['name']} face {k}: matrix differs by {d:.2g}")
            # The crop, then each precision's model output.
            files = [(ga["crop"], gb["crop"])] + [(ga["output"][p], gb["output"][p]) for p in gb["output"]]
            for x, y in files:
                db = psnr(cv2.imread(str(new / x)), cv2.imread(str(old / y)), data_range=255.0)
                if db < tol["crop_psnr_db"]:
                    problems.append(f"{y}: {db:.1f} dB from golden")
        db = psnr(cv2.imread(str(new / fa["pasted"]["file"])), cv2.imread(str(old / fb["pasted"]["file"])),
                  data_range=255.0)
        if fa["pasted"]["region"] != fb["pasted"]["region"] or db < tol["pasted_psnr_db"]:
            problems.append(f"{fb['name']}: pasted region {fa['pasted']['region']} at {db:.1f} dB from golden")
    return problems


def _compare_masks(b: dict, new: Path, old: Path, tol: dict) -> list[str]:
    """Paste masks (16-bit PNGs) that differ by more than the tolerance."""
    problems = []
    for name in b["masks"].values():
        d = np.abs(cv2.imread(str(new / name), cv2.IMREAD_UNCHANGED).astype(np.float64)
                   - cv2.imread(str(old / name), cv2.IMREAD_UNCHANGED)).max() / 65535
        if d > tol["mask_abs"]:
            problems.append(f"{name}: differs by {d:.2g}")
    return problems


def _compare_one_euro(new: Path, old: Path, tol: dict) -> list[str]:
    """One-Euro settings, and per step the track ids and smoothed keypoints."""
    problems = []
    ta, tb = (json.loads((p / "one_euro.json").read_text()) for p in (new, old))
    if ta["params"] != tb["params"]:
        problems.append(f"One-Euro settings changed: {ta['params']} vs golden {tb['params']}")
    for i, (sa, sb) in enumerate(zip(ta["steps"], tb["steps"], strict=True)):
        if len(sa["smoothed"]) != len(sb["smoothed"]) or sa["ids"] != sb["ids"]:
            problems.append(f"One-Euro step {i}: faces or track ids differ")
        elif (sb["smoothed"]
              and np.abs(np.array(sa["smoothed"]) - np.array(sb["smoothed"])).max() > tol["one_euro_abs_px"]):
            problems.append(f"One-Euro step {i}: smoothed keypoints differ")
    return problems


def compare(new: Path, old: Path) -> list[str]:
    """Differences between a fresh run and golden/, beyond the tolerances (the reference must reproduce itself)."""
    a, b = json.loads((new / "index.json").read_text()), json.loads((old / "index.json").read_text())
    tol = b["tolerances"]
    problems = []
    if a["contract"] != b["contract"]:
        problems.append("the contract changed: regenerate golden/ on purpose (python realtime/make_golden.py)")
    problems += _compare_frames(a, b, new, old, tol)
    problems += _compare_masks(b, new, old, tol)
    problems += _compare_one_euro(new, old, tol)
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=GOLDEN, help="folder to write (replaced as a whole)")
    ap.add_argument("--check", action="store_true", help="recompute into a temporary folder and compare with --out")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        tmp_out = Path(tmp) / "golden"
        tmp_out.mkdir()
        index = make(tmp_out)
        if args.check:
            if not (args.out / "index.json").is_file():
                print(f"error: {args.out}/index.json is missing; run python realtime/make_golden.py", file=sys.stderr)
                return 2
            problems = compare(tmp_out, args.out)
            for p in problems:
                print(p)
            print("golden vectors reproduced" if not problems else f"{len(problems)} differences")
            return 1 if problems else 0
        # Written whole in a temporary folder, then swapped in: never half a golden set.
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.copytree(tmp_out, args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    n = sum(len(f["faces"]) for f in index["frames"])
    print(f"wrote {args.out} ({len(index['frames'])} frames, {n} faces, {size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
