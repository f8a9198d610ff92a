"""Prepare a face set: image folder (+ labels CSV, filter) -> artifacts/faces/<name>/ (aligned crops + manifest).

    python train/prepare.py ../shared/data/utkface/images --labels ../shared/data/utkface/labels.csv \
        --filter "age>=18,age<=30" --name young
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import cli_main  # noqa: E402
from facefx.prepare import PrepareConfig, prepare_faces  # noqa: E402


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("source", type=Path, help="folder of images (searched recursively)")
    ap.add_argument("--name", required=True, help="artifact name: writes artifacts/faces/<name>/")
    ap.add_argument("--root", type=Path, default=Path("artifacts/faces"), help="where face sets are written")
    ap.add_argument("--size", type=int, default=256, help="crop side S in pixels")
    ap.add_argument("--labels", type=Path, help="CSV with a 'file' column (+ e.g. age, gender)")
    ap.add_argument("--filter", help="conditions on labels, e.g. 'age>=18,age<=30,gender=0'")
    ap.add_argument("--align", choices=["detect", "fixed"], default="detect",
                    help="detect: BlazeFace keypoints; fixed: images already framed as faces (anime drawings)")
    ap.add_argument("--min-score", type=float, default=0.6, help="face detector confidence threshold")
    ap.add_argument("--max-faces", type=int, help="keep at most this many faces")
    ap.add_argument("--domain", help="description of the domain for the manifest")
    ap.add_argument("--zoom", type=float, default=1.0,
                    help="face size in the crop: > 1 for tight face chips such as UTKFace (1.4: ~2x the face pixels, "
                         "less replicated border); every later stage and the realtime crop follow it")
    args = ap.parse_args(argv)
    cfg = PrepareConfig(source=args.source, out=args.root / args.name, size=args.size, labels=args.labels,
                        filter=args.filter, align=args.align, min_score=args.min_score,
                        max_faces=args.max_faces, effect_domain=args.domain, zoom=args.zoom)
    manifest = prepare_faces(cfg)
    c = manifest["counts"]
    print(f"wrote {cfg.out}: {c['kept']} faces ({c['train']} train, {c['test']} held out), {c['rejected']} rejected")
    for r in manifest["rejected"][:5]:
        print(f"  rejected {r['file']}: {r['reason']}")
    if c["rejected"] > 5:
        print(f"  ... {c['rejected'] - 5} more in {cfg.out / 'manifest.json'}")
    print(f"next: python train/teacher.py --effect <name> --a {cfg.out} --b artifacts/faces/<other>")


if __name__ == "__main__":
    main()
