"""Contact sheet of prepared face sets, one row per set, to check they share one geometry.

    python train/contact_sheet.py artifacts/faces/young artifacts/faces/anime --out docs/contact_sheet_domains.png
"""

from __future__ import annotations

from facefx.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    import cv2
    import numpy as np

    from facefx import options
    from facefx.runtime import crop as cropgeo
    from facefx.train.data import read_crops
    from facefx.train.prepare import load_faces
    from facefx.train.sheets import ContactSheetOptions, grid, save_png

    ap = options.ArgumentParser(description=__doc__)
    options.add_options(ap, ContactSheetOptions)
    args = ap.parse_args(argv)
    args = options.fill(args, options.resolve(ContactSheetOptions, args))
    rows = []
    for folder in args.faces:
        manifest, paths = load_faces(folder)
        pick = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, args.n)]
        imgs = list(read_crops(pick, 128))
        spec = cropgeo.CropSpec.from_dict(manifest["crop"]).with_size(128)
        for img in imgs:  # mark the template keypoints: every face should sit on them
            for x, y in np.array(spec.template) * 128:
                cv2.circle(img, (int(x), int(y)), 2, (0, 255, 0), -1)
        mean = np.mean(read_crops(paths[:200], 128).astype(np.float32), axis=0).astype(np.uint8)
        label = mean.copy()
        cv2.putText(label, folder.name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append([label] + imgs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(args.out, grid(rows, ["mean face"] + [""] * args.n))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
