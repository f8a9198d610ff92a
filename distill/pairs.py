"""A teacher labels real faces: teacher artifact -> artifacts/pairs/<effect>/<NNNNN-desc>/ (input, target) pairs.

    python distill/pairs.py --teacher teachers/age
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import cli_main  # noqa: E402


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.distill import PairsConfig, make_pairs
    from facefx.manifest import read_manifest

    d = PairsConfig(teacher="")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--teacher", required=True, help="teacher artifact folder (train/teacher.py run or teachers/<effect>)")
    ap.add_argument("--direction", choices=["AB", "BA", "swap"], default=d.direction,
                    help="which teacher generator labels: AB (domain A faces), BA (B faces), or swap (both: one "
                         "student that turns each domain into the other, e.g. a gender swap)")
    ap.add_argument("--faces", nargs="+", help="face sets to label (default: the teacher's source domain)")
    ap.add_argument("--root", default=d.root, help="where pairs artifacts are written")
    ap.add_argument("--size", type=int, default=d.size, help="student resolution (pairs are made at this size)")
    ap.add_argument("--augment", type=int, default=d.augment, help="webcam-like augmented variants per face")
    ap.add_argument("--strength", type=float, default=d.strength,
                    help="scale of the teacher's change in the targets (effect intensity; 1: the teacher as is)")
    ap.add_argument("--face-mask", action="store_true",
                    help="confine the teacher's change to the inner face (brows to chin, a soft ellipse from the crop "
                         "geometry): hair, background and neck keep the input's pixels, for a teacher that also "
                         "tints or smears around the face")
    ap.add_argument("--batch", type=int, default=d.batch, help="faces per teacher batch")
    ap.add_argument("--no-judge-filter", action="store_true", help="keep pairs the judge says the teacher failed on")
    ap.add_argument("--max-faces", type=int, default=0, help="label at most this many faces (0: all)")
    ap.add_argument("--seed", type=int, default=d.seed, help="augmentation seed")
    ap.add_argument("--device", default=d.device, help="where the teacher runs: cpu or cuda")
    args = ap.parse_args(argv)
    cfg = PairsConfig(teacher=args.teacher, direction=args.direction, faces=args.faces, root=args.root, size=args.size,
                      augment=args.augment, strength=args.strength, face_mask=args.face_mask, batch=args.batch,
                      judge_filter=not args.no_judge_filter,
                      max_faces=args.max_faces, seed=args.seed, device=args.device)
    out = make_pairs(cfg)
    m = read_manifest(out)
    print(f"wrote {out}: {m['counts']}; target/input sharpness (median) {m['metrics']['target_sharpness_ratio_median']}")
    print(f"next: python distill/student.py --pairs {out}")


if __name__ == "__main__":
    main()
