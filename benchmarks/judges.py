"""Train and evaluate the judges: artifacts/faces/{utk_all,selfies,anime}/ ('train' split) -> judges/<name>/.

Each judge reports its own accuracy on the held-out 'test' split (age MAE in years, gender and anime
accuracy) in its manifest's metrics; `--eval` re-measures committed judges without training.

    python train/prepare.py ../shared/data/utkface/images --labels ../shared/data/utkface/labels.csv --name utk_all
    python benchmarks/judges.py age gender anime           # ~5-10 min each on one CPU thread
    python benchmarks/judges.py --eval                      # held-out metrics of judges/*
    python benchmarks/judges.py --resume artifacts/judges/age/00000-64px   # continue an interrupted judge
"""

from __future__ import annotations

import json
from pathlib import Path

from facefx.errors import FacefxError, cli_main

# Per-judge defaults, chosen so each trains in under ~10 minutes on one busy CPU thread (bf16 autocast).
DEFAULTS = {
    # Age: 64 px for 3500 steps beat 96 px for 1800 steps (same ~10 min): held-out MAE 6.5 vs 7.9 years.
    "age": {"size": 64, "steps": 3500},
    "gender": {"size": 64, "steps": 3000},
    "anime": {"size": 64, "steps": 1500},  # photo vs drawing separates quickly
}


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx import options
    from facefx.train.judges import JudgeConfig

    ap = options.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", metavar="NAME", default=[],
                    help="judges to train: age, gender, anime (with --eval, none means every judge in --out)")
    per_judge = {k: f"per judge: {({n: d[k] for n, d in DEFAULTS.items()})}" for k in ("size", "steps")}
    options.add_options(ap, JudgeConfig, shown={"out": "judges/", **per_judge})
    ap.add_argument("--eval", action="store_true", help="only evaluate existing judges on the held-out split")
    ap.add_argument("--dry-run", action="store_true", help="print the configurations and exit")
    ap.add_argument("--resume", type=Path, help="continue one judge's interrupted run folder "
                                                "(artifacts/judges/<name>/NNNNN-...; its config is reused)")
    args = ap.parse_args(argv)
    typed = options.given(JudgeConfig, args)
    values = options.resolve(JudgeConfig, args)

    from facefx.train.judges import evaluate, load_judge, load_labelled, sources_for, train_judge

    out = values["out"]
    if args.eval:
        import torch

        torch.set_num_threads(values["threads"])
        names = args.names or [p.name for p in sorted(Path(out).glob("*")) if (p / "manifest.json").is_file()]
        for name in names:
            judge = load_judge(name, root=out)
            test = load_labelled(sources_for(judge.name, values["faces_root"]), "test", judge.size)
            print(f"{name}: {json.dumps(evaluate(judge.net, test, judge.name))}")
        return
    if args.resume:
        from facefx.manifest import read_manifest
        from facefx.train.loop import resume_config, resume_options

        # One rule for every stage (facefx.train.loop.resume_config): the schedule and speed options may change
        # when given; the network, data and seed may not.
        saved = JudgeConfig(**read_manifest(args.resume, kind="judge")["config"])
        cfg = resume_config(saved, resume_options(values, typed))
        print(f"wrote {train_judge(cfg, resume=args.resume)}")
        return
    unknown = sorted(set(args.names) - set(DEFAULTS))
    if unknown:
        raise FacefxError(f"unknown judge(s) {unknown}; choose from {sorted(DEFAULTS)}")
    if not args.names:
        ap.error("name the judges to train (age, gender, anime), or pass --eval")
    # size and steps: the per-judge defaults above unless typed
    per_judge = {n: {k: DEFAULTS[n][k] for k in ("size", "steps") if k not in typed} for n in args.names}
    configs = [JudgeConfig(**{**values, "target": n, **per_judge[n]}) for n in args.names]
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
