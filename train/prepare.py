"""Prepare a face set: image folder (+ labels CSV, filter) -> artifacts/faces/<name>/ (aligned crops + manifest).

    python train/prepare.py ../shared/data/utkface/images --labels ../shared/data/utkface/labels.csv \\
        --filter "age>=18,age<=30" --name young
"""

from __future__ import annotations

from pathlib import Path

from facefx import options
from facefx.errors import cli_main
from facefx.manifest import check_name
from facefx.train.prepare import PrepareConfig, prepare_faces


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = options.ArgumentParser(description=__doc__)
    options.add_options(ap, PrepareConfig)
    ap.add_argument("--name", required=True, help="artifact name: writes artifacts/faces/<name>/")
    ap.add_argument("--root", type=Path, default=Path("artifacts/faces"),
                    help="where face sets are written (default: artifacts/faces)")
    args = ap.parse_args(argv)
    check_name(args.name)  # '../../x' would write outside --root
    values = options.resolve(PrepareConfig, args)
    cfg = PrepareConfig(**values, out=args.root / args.name)
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
