"""Distil a compact Pix2Pix student: pairs artifact -> artifacts/students/<effect>/<NNNNN-desc>/.

    python distill/student.py --pairs artifacts/pairs/age/00000-AB-256px
    python distill/student.py --resume artifacts/students/age/00000-256px-w8 --max-minutes 60
    python distill/student.py --resume artifacts/students/age/00000-256px-w8 --snapshot students/age   # commit form
    torchrun --nproc_per_node 4 distill/student.py --pairs artifacts/pairs/age/00000-AB-256px --device cuda
"""

from __future__ import annotations

from pathlib import Path

from facefx.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx import options
    from facefx.errors import FacefxError
    from facefx.manifest import read_manifest, record_recipe
    from facefx.train.distill import (
        StudentConfig,
        StudentStage,
        snapshot_student,
        student_config_from_run,
        train_student,
    )
    from facefx.train.loop import resume_config, resume_options

    ap = options.ArgumentParser(description=__doc__)
    ap.add_argument("--resume", type=Path, help="continue a student run folder")
    ap.add_argument("--snapshot", type=Path, metavar="DEST",
                    help="with --resume: write a compact fp16 copy of that run (G, D, manifest) to DEST and exit")
    options.add_recipe_option(ap, "student")
    options.add_options(ap, StudentConfig)
    args = ap.parse_args(argv)
    recipe = options.read_recipe(args, StudentConfig, "student")
    if args.resume and recipe is not None:
        raise FacefxError("--recipe starts a new run; with --resume the run's own config is used (drop one)")
    if args.resume and args.snapshot:
        print(f"wrote {snapshot_student(args.resume, args.snapshot)}")
        return
    if args.resume:
        # One rule for every stage (facefx.train.loop.resume_config): the run length, schedule, loss weights and
        # speed options may change when typed; the networks, data and seed may not.
        typed = options.given(StudentConfig, args)
        given = resume_options(options.resolve(StudentConfig, args), typed)
        cfg = resume_config(student_config_from_run(args.resume), given, StudentStage.LOSS_SETTINGS)
        record_recipe(read_manifest(args.resume).get("recipe"))  # a run started from a recipe keeps its record
        run = train_student(cfg, resume=args.resume)
    else:
        values = options.resolve(StudentConfig, args, recipe=recipe)
        if not values.get("pairs"):
            raise FacefxError("pass --pairs PAIRS_FOLDER (from distill/pairs.py), --recipe FILE, or --resume RUN")
        run = train_student(StudentConfig(**values))
    print(f"next: python export/export.py --student {run}")


if __name__ == "__main__":
    main()
