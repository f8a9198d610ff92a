"""Train and evaluate the judges: artifacts/faces/{utk_all,selfies,anime}/ ('train' split) -> judges/<name>/.

Each judge reports its own accuracy on the held-out 'test' split (age MAE in years, gender and anime
accuracy) in its manifest's metrics; `--eval` re-measures committed judges without training.

    python train/prepare.py ../shared/data/utkface/images --labels ../shared/data/utkface/labels.csv --name utk_all
    python benchmarks/judges.py age gender anime           # ~5-10 min each on one CPU thread
    python benchmarks/judges.py --eval                      # held-out metrics of judges/*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import FacefxError, cli_main  # noqa: E402

# Per-judge defaults, chosen so each trains in under ~10 minutes on one busy CPU thread (bf16 autocast).
DEFAULTS = {
    # Age: 64 px for 3500 steps beat 96 px for 1800 steps (same ~10 min): held-out MAE 6.5 vs 7.9 years.
    "age": {"size": 64, "steps": 3500},
    "gender": {"size": 64, "steps": 3000},
    "anime": {"size": 64, "steps": 1500},  # photo vs drawing separates quickly
}


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="NAME", default=[],
                    help="judges to train: age, gender, anime (with --eval, none means every judge in --out)")
    ap.add_argument("--out", type=Path, default=None, help="where judge folders are written (default: judges/)")
    ap.add_argument("--faces-root", type=Path, default=Path("artifacts/faces"), help="prepared face sets")
    ap.add_argument("--size", type=int, help="judge input size in px (default per judge: %s)" %
                    {k: v["size"] for k, v in DEFAULTS.items()})
    ap.add_argument("--steps", type=int, help="training steps (default per judge: %s)" %
                    {k: v["steps"] for k, v in DEFAULTS.items()})
    ap.add_argument("--batch", type=int, default=64, help="batch size")
    ap.add_argument("--widths", default="16,32,64,128", help="channel widths of the CNN's stages")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--max-minutes", type=float, default=10.0, help="stop a judge's training after this long")
    ap.add_argument("--no-bf16", action="store_true", help="train in fp32 (bf16 autocast is ~2.5x faster on CPU)")
    ap.add_argument("--eval", action="store_true", help="only evaluate existing judges on the held-out split")
    ap.add_argument("--dry-run", action="store_true", help="print the configurations and exit")
    args = ap.parse_args(argv)

    from facefx.judges import JUDGES_DIR, JudgeConfig, evaluate, load_judge, load_labelled, sources_for, train_judge

    out = args.out or JUDGES_DIR
    if args.eval:
        import torch

        torch.set_num_threads(args.threads)
        names = args.names or [p.name for p in sorted(Path(out).glob("*")) if (p / "manifest.json").is_file()]
        for name in names:
            judge = load_judge(name, root=out)
            test = load_labelled(sources_for(judge.name, args.faces_root), "test", judge.size)
            print(f"{name}: {json.dumps(evaluate(judge.net, test, judge.name))}")
        return
    unknown = sorted(set(args.names) - set(DEFAULTS))
    if unknown:
        raise FacefxError(f"unknown judge(s) {unknown}; choose from {sorted(DEFAULTS)}")
    if not args.names:
        ap.error("name the judges to train (age, gender, anime), or pass --eval")
    configs = [JudgeConfig(target=n, out=str(out), faces_root=str(args.faces_root),
                           size=args.size or DEFAULTS[n]["size"], steps=args.steps or DEFAULTS[n]["steps"],
                           batch=args.batch, widths=[int(w) for w in args.widths.split(",")],
                           threads=args.threads, max_minutes=args.max_minutes, bf16=not args.no_bf16)
               for n in args.names]
    for cfg in configs:
        if args.dry_run:
            print(cfg)
            continue
        folder = train_judge(cfg)
        print(f"wrote {folder}")
    if not args.dry_run:
        print("next: python benchmarks/quality.py --effect <effect> --teacher <run>  (uses the judges)")


if __name__ == "__main__":
    main()
