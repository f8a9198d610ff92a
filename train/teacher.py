"""Train a CycleGAN teacher on two prepared face sets -> artifacts/teachers/<effect>/<NNNNN-desc>/.

    python train/teacher.py --effect age --a artifacts/faces/young --b artifacts/faces/old
    python train/teacher.py --resume artifacts/teachers/age/00000-128px-ngf32-b6 --max-minutes 120
    torchrun --nproc_per_node 4 train/teacher.py --effect age --a ... --b ... --device cuda
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import cli_main  # noqa: E402


def parse(argv: list[str] | None):
    from facefx.cyclegan import TeacherConfig

    d = TeacherConfig(effect="", a=[], b=[])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--effect", help="effect name (age, gender, style, ...)")
    ap.add_argument("--a", nargs="+", default=[], help="face set folder(s) of domain A (from train/prepare.py)")
    ap.add_argument("--b", nargs="+", default=[], help="face set folder(s) of domain B")
    ap.add_argument("--resume", type=Path, help="continue a run folder (its config is reused)")
    ap.add_argument("--snapshot", type=Path, metavar="DEST",
                    help="with --resume: write a compact fp16 copy of that run to DEST and exit")
    ap.add_argument("--init", type=Path, help="warm start from an earlier teacher's networks (run folder or snapshot "
                                               "such as teachers/age): new face sets, new schedule from step 0")
    ap.add_argument("--root", default=d.root, help="where run folders are created")
    ap.add_argument("--size", type=int, default=d.size, help="training resolution in pixels")
    ap.add_argument("--ngf", type=int, default=d.ngf, help="generator base width")
    ap.add_argument("--n-blocks", type=int, default=d.n_blocks, help="generator residual blocks")
    ap.add_argument("--ndf", type=int, default=d.ndf, help="discriminator base width")
    ap.add_argument("--batch", type=int, default=d.batch, help="images per domain per iteration (per process)")
    ap.add_argument("--iters", type=int, default=d.iters, help="total iterations (lr decays over the second half)")
    ap.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    ap.add_argument("--lambda-cycle", type=float, default=d.lambda_cycle, help="cycle loss weight")
    ap.add_argument("--lambda-idt", type=float, default=d.lambda_idt, help="identity loss weight, times lambda-cycle")
    ap.add_argument("--lambda-shift", type=float, default=d.lambda_shift,
                    help="shift-equivariance loss weight: G(shift(x)) = shift(G(x)) for 1-3 px shifts (0: off)")
    ap.add_argument("--shift-rotate", type=float, default=d.shift_rotate,
                    help="the shift loss's transform also rotates by up to +-DEG degrees (as the pairs' augmentation)")
    ap.add_argument("--shift-scale", type=float, default=d.shift_scale,
                    help="the shift loss's transform also rescales by a factor in 1 +- S (as the pairs' augmentation)")
    ap.add_argument("--device", default=d.device, help="cpu or cuda")
    ap.add_argument("--no-bf16", action="store_true", help="train in fp32 (bf16 autocast is faster on CPUs with AVX-512 BF16)")
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                    help="channels-last memory format (faster on some CPUs, slower on others: measure; off by "
                         "default; on resume, kept unless given)")
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch's default)")
    ap.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes, help="checkpoint interval")
    ap.add_argument("--sample-every", type=int, default=d.sample_every, help="sample grid interval (iterations)")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop with a checkpoint after this long (0: never)")
    ap.add_argument("--seed", type=int, default=d.seed, help="random seed")
    ap.add_argument("--desc", default="", help="run folder description")
    return ap, ap.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.cyclegan import LOSS_SETTINGS, TeacherConfig, config_from_run, snapshot, train_teacher
    from facefx.errors import FacefxError

    ap, args = parse(argv)
    if args.resume:
        if args.snapshot:
            print(f"wrote {snapshot(args.resume, args.snapshot)}")
            return
        cfg = config_from_run(args.resume)
        # Run length and, when given explicitly, the loss weights and learning rate may change on resume (e.g.
        # lowering the identity loss of a teacher that stays too close to its input); the networks and data
        # stay as they were. The manifest's config records the values in force.
        overrides = {"max_minutes": args.max_minutes, "threads": args.threads, "device": args.device,
                     "checkpoint_minutes": args.checkpoint_minutes}
        if args.channels_last is not None:  # a speed option, not the network
            overrides["channels_last"] = args.channels_last
        for name in ("iters", "lr", *LOSS_SETTINGS):
            if getattr(args, name) != ap.get_default(name):
                overrides[name] = getattr(args, name)
        cfg = dataclasses.replace(cfg, **overrides)
        train_teacher(cfg, resume=args.resume)
        return
    if not (args.effect and args.a and args.b):
        raise FacefxError("pass --effect NAME --a FACES_A --b FACES_B (or --resume RUN)")
    cfg = TeacherConfig(effect=args.effect, a=[str(p) for p in args.a], b=[str(p) for p in args.b], root=args.root,
                        size=args.size, ngf=args.ngf, n_blocks=args.n_blocks, ndf=args.ndf, batch=args.batch,
                        iters=args.iters, lr=args.lr, lambda_cycle=args.lambda_cycle, lambda_idt=args.lambda_idt,
                        lambda_shift=args.lambda_shift, shift_rotate=args.shift_rotate, shift_scale=args.shift_scale,
                        device=args.device, bf16=not args.no_bf16, channels_last=bool(args.channels_last),
                        threads=args.threads, checkpoint_minutes=args.checkpoint_minutes,
                        sample_every=args.sample_every, max_minutes=args.max_minutes, seed=args.seed, desc=args.desc,
                        init=str(args.init) if args.init else None)
    run = train_teacher(cfg)
    print(f"next: python distill/pairs.py --teacher {run}")


if __name__ == "__main__":
    main()
