"""Train a CycleGAN teacher on two prepared face sets -> artifacts/teachers/<effect>/<NNNNN-desc>/.

    python train/teacher.py --effect age --a artifacts/faces/young --b artifacts/faces/old
    python train/teacher.py --resume artifacts/teachers/age/00000-128px-ngf32-b6 --max-minutes 120
    torchrun --nproc_per_node 4 train/teacher.py --effect age --a ... --b ... --device cuda
"""

from __future__ import annotations

from pathlib import Path

from facefx.errors import cli_main


def parse(argv: list[str] | None):
    from facefx import options
    from facefx.train.cyclegan import TeacherConfig

    ap = options.ArgumentParser(description=__doc__)
    ap.add_argument("--resume", type=Path, help="continue a run folder (its config is reused)")
    ap.add_argument("--snapshot", type=Path, metavar="DEST",
                    help="with --resume: write a compact fp16 copy of that run to DEST and exit")
    options.add_recipe_option(ap, "teacher")
    options.add_options(ap, TeacherConfig)
    return ap, ap.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx import options
    from facefx.errors import FacefxError
    from facefx.manifest import read_manifest, record_recipe
    from facefx.train.cyclegan import LOSS_SETTINGS, TeacherConfig, config_from_run, snapshot, train_teacher
    from facefx.train.loop import resume_config, resume_options

    ap, args = parse(argv)
    recipe = options.read_recipe(args, TeacherConfig, "teacher")
    typed = options.given(TeacherConfig, args)
    if args.resume:
        if recipe is not None:
            raise FacefxError("--recipe starts a new run; with --resume the run's own config is used (drop one)")
        if args.snapshot:
            print(f"wrote {snapshot(args.resume, args.snapshot)}")
            return
        cfg = config_from_run(args.resume)
        record_recipe(read_manifest(args.resume).get("recipe"))  # a run started from a recipe keeps its record
        # One rule for every stage (facefx.train.loop.resume_config): the run length, schedule, loss weights and
        # speed options may change when typed (e.g. lowering the identity loss of a teacher that stays too close
        # to its input); the networks, data and seed may not. The manifest's config records the values in force.
        given = resume_options(options.resolve(TeacherConfig, args), typed)
        train_teacher(resume_config(cfg, given, LOSS_SETTINGS), resume=args.resume)
        return
    values = options.resolve(TeacherConfig, args, recipe=recipe)
    if not (values.get("effect") and values.get("a") and values.get("b")):
        raise FacefxError("pass --effect NAME --a FACES_A --b FACES_B (or --recipe FILE, or --resume RUN)")
    run = train_teacher(TeacherConfig(**values))
    print(f"next: python distill/pairs.py --teacher {run}")


if __name__ == "__main__":
    main()
