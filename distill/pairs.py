"""A teacher labels real faces: teacher artifact -> artifacts/pairs/<effect>/<NNNNN-desc>/ (input, target) pairs.

    python distill/pairs.py --teacher teachers/age-zoom1.4
    torchrun --nproc_per_node 4 distill/pairs.py --teacher teachers/age-zoom1.4 --device cuda  # batches split up
"""

from __future__ import annotations

from facefx.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx import options
    from facefx.errors import FacefxError
    from facefx.manifest import read_manifest
    from facefx.train.distill import PairsConfig, make_pairs

    ap = options.ArgumentParser(description=__doc__)
    options.add_recipe_option(ap, "pairs")
    options.add_options(ap, PairsConfig)
    args = ap.parse_args(argv)
    values = options.resolve(PairsConfig, args, recipe=options.read_recipe(args, PairsConfig, "pairs"))
    if not values.get("teacher"):
        raise FacefxError("pass --teacher TEACHER_FOLDER (train/teacher.py run or teachers/<effect>), or --recipe FILE")
    cfg = PairsConfig(**values)
    out = make_pairs(cfg)
    m = read_manifest(out)
    sharpness = m["metrics"]["target_sharpness_ratio_median"]
    print(f"wrote {out}: {m['counts']}; target/input sharpness (median) {sharpness}")
    print(f"next: python distill/student.py --pairs {out}")


if __name__ == "__main__":
    main()
