"""The README's picture: held-out faces before and after each shipped effect, one row per effect.

Input: a folder of face photos (default: the test fixtures, tests/fixtures/faces, of which only the held-out ones,
facefx.train.prepare.split_of(name) == "test", are drawn, so no model trained on them) and the shipped models.
Output: one JPEG (default docs/strip.jpg), rows input | age | gender | style, each photo run through the whole
runtime pipeline (detect, align, crop, int8 model, paste back) as `facefx run` would.

    python benchmarks/strip.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from facefx.errors import FacefxError, cli_main, epilog
from facefx.runtime.images import list_images, read_rgb
from facefx.runtime.loader import MODELS_DIR, load_model, model_for_effect
from facefx.runtime.pipeline import FaceEffectPipeline
from facefx.train.prepare import split_of

REPO = Path(__file__).resolve().parents[1]
EFFECTS = ("age", "gender", "style")


def row_label(text: str, height: int, width: int) -> np.ndarray:
    """A dark (height, width, 3) BGR tile with the row's name, for the strip's left margin."""
    tile = np.full((height, width, 3), 32, np.uint8)
    scale = width / 130
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(tile, text, ((width - w) // 2, (height + h) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def strip(photos: list[Path], effects: tuple[str, ...], models_dir: Path, precision: str, tile: int) -> np.ndarray:
    """(tile * (1 + len(effects)), margin + tile * len(photos), 3) BGR: the photos, then each effect's results."""
    frames = [cv2.cvtColor(read_rgb(p), cv2.COLOR_RGB2BGR) for p in photos]
    rows = [("input", frames)]
    for effect in effects:
        model = load_model(model_for_effect(effect, models_dir, precision), effect=effect)
        with FaceEffectPipeline(model, video=False) as fx:
            outs = []
            for frame, path in zip(frames, photos):
                out, faces = fx.process(frame, 0.0)
                if not faces:
                    raise FacefxError(f"no face found in {path}; pick photos with one clear face")
                outs.append(out)
        rows.append((effect, outs))
    margin = tile // 2
    return np.vstack([np.hstack([row_label(name, tile, margin)] +
                                [cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA) for im in images])
                      for name, images in rows])


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(epilog=epilog(), description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=Path, default=REPO / "tests" / "fixtures" / "faces",
                    help="folder of face photos (only its held-out ones are drawn)")
    ap.add_argument("--max-faces", type=int, default=6, help="at most this many faces (columns)")
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of shipped effects")
    ap.add_argument("--precision", choices=("int8", "fp32"), default="int8", help="which shipped model to run")
    ap.add_argument("--tile", type=int, default=160, help="pixels per picture")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "strip.jpg", help="JPEG to write")
    args = ap.parse_args(argv)
    if args.max_faces < 1 or args.tile < 32:
        raise FacefxError("--max-faces must be at least 1 and --tile at least 32")
    photos = [p for p in list_images(args.faces) if split_of(p.name) == "test"][: args.max_faces]
    if not photos:
        raise FacefxError(f"no held-out photo in {args.faces}; give --faces a folder of face photos")
    image = strip(photos, EFFECTS, args.models_dir, args.precision, args.tile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.partial.jpg")
    if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, 88]):
        raise FacefxError(f"could not write {args.out}")
    tmp.replace(args.out)  # whole or not at all
    print(f"{args.out}: {len(photos)} held-out faces x {len(EFFECTS)} effects, {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
