"""Distil a compact Pix2Pix student: pairs artifact -> artifacts/students/<effect>/<NNNNN-desc>/.

    python distill/student.py --pairs artifacts/pairs/age/00000-AB-256px
    python distill/student.py --resume artifacts/students/age/00000-256px-w8 --max-minutes 60
    python distill/student.py --resume artifacts/students/age/00000-256px-w8 --snapshot students/age   # commit form
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import cli_main  # noqa: E402


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.distill import StudentConfig, snapshot_student, student_config_from_run, train_student
    from facefx.errors import FacefxError

    d = StudentConfig(pairs="")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--pairs", help="pairs artifact folder (distill/pairs.py)")
    ap.add_argument("--resume", type=Path, help="continue a student run folder")
    ap.add_argument("--snapshot", type=Path, metavar="DEST",
                    help="with --resume: write a compact fp16 copy of that run (G, D, manifest) to DEST and exit")
    ap.add_argument("--init", help="warm start from an earlier student run of the same network (new pairs, same "
                                   "architecture: converges in a fraction of the iterations)")
    ap.add_argument("--root", default=d.root, help="where student runs are created")
    ap.add_argument("--widths", default=",".join(map(str, d.widths)), help="channels per U-Net level, comma-separated")
    ap.add_argument("--n-blocks", type=int, default=d.n_blocks, help="bottleneck residual blocks")
    ap.add_argument("--global-context", action="store_true",
                    help="add a whole-face feature at the bottleneck (for two-way effects such as the gender swap)")
    ap.add_argument("--internal-scale", type=int, default=d.internal_scale,
                    help="run the U-Net at 1/k resolution and resize its residual onto the input (2 suits teachers "
                         "that work at half the student's resolution: twice the channels for the same MACs)")
    ap.add_argument("--d-scale", type=int, default=d.d_scale,
                    help="the discriminator judges (input, output) downscaled by this factor; with --internal-scale k, "
                         "k sees all of the student's change at 1/k^2 of the cost")
    ap.add_argument("--ndf", type=int, default=d.ndf,
                    help="discriminator width (channels of its first layer; a different width starts D afresh on --init)")
    ap.add_argument("--norm", choices=["batch", "none"], default=d.norm, help="normalization (folded at export)")
    ap.add_argument("--batch", type=int, default=d.batch, help="pairs per iteration")
    ap.add_argument("--iters", type=int, default=None,
                    help=f"total iterations; the lr decays over the second half (default {d.iters}; with --resume: "
                         "the run's own, or a new total that stretches or shortens its schedule)")
    ap.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    ap.add_argument("--lr-d-ratio", type=float, default=d.lr_d_ratio,
                    help="the discriminator's learning rate as a multiple of --lr (two time-scale updates)")
    ap.add_argument("--lambda-l1", type=float, default=d.lambda_l1, help="L1-to-teacher weight")
    ap.add_argument("--lambda-fm", type=float, default=d.lambda_fm, help="discriminator feature-matching weight")
    ap.add_argument("--lambda-teacher-feat", type=float, default=d.lambda_teacher_feat,
                    help="feature distillation from the pairs' teacher (1x1 adapters on the decoder; one-direction "
                         "pairs, teacher resolution = student's internal resolution); 0: off")
    ap.add_argument("--ema", type=float, default=d.ema,
                    help="keep an exponential moving average of the generator (decay per iteration, e.g. 0.999) and "
                         "save that as G: smooths the jitter of GAN training; 0: off")
    ap.add_argument("--lambda-gan", type=float, default=d.lambda_gan, help="conditional GAN weight")
    ap.add_argument("--no-bf16", action="store_true", help="train in fp32")
    ap.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: default)")
    ap.add_argument("--device", default=d.device, help="cpu or cuda")
    ap.add_argument("--sample-every", type=int, default=d.sample_every, help="sample grid interval")
    ap.add_argument("--eval-every", type=int, default=d.eval_every, help="held-out evaluation interval")
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop with a checkpoint after this long (0: never)")
    ap.add_argument("--seed", type=int, default=d.seed, help="random seed")
    args = ap.parse_args(argv)
    if args.resume and args.snapshot:
        print(f"wrote {snapshot_student(args.resume, args.snapshot)}")
        return
    if args.resume:
        cfg = student_config_from_run(args.resume)
        cfg = dataclasses.replace(cfg, max_minutes=args.max_minutes, threads=args.threads, device=args.device,
                                  iters=args.iters or cfg.iters)
        run = train_student(cfg, resume=args.resume)
    else:
        if not args.pairs:
            raise FacefxError("pass --pairs PAIRS_FOLDER (from distill/pairs.py) or --resume RUN")
        cfg = StudentConfig(pairs=args.pairs, root=args.root, widths=tuple(int(w) for w in args.widths.split(",")),
                            n_blocks=args.n_blocks, norm=args.norm, global_context=args.global_context,
                            internal_scale=args.internal_scale, d_scale=args.d_scale, ndf=args.ndf,
                            batch=args.batch, iters=args.iters or d.iters, lr=args.lr, lr_d_ratio=args.lr_d_ratio,
                            lambda_l1=args.lambda_l1, lambda_fm=args.lambda_fm, lambda_gan=args.lambda_gan,
                            lambda_teacher_feat=args.lambda_teacher_feat, ema=args.ema,
                            bf16=not args.no_bf16, threads=args.threads, device=args.device,
                            sample_every=args.sample_every, eval_every=args.eval_every,
                            max_minutes=args.max_minutes, seed=args.seed, init=args.init)
        run = train_student(cfg)
    print(f"next: python export/export.py --student {run}")


if __name__ == "__main__":
    main()
