"""Render docs/results.md from the results files (nothing is typed by hand).

Inputs: benchmarks/results/<device>.csv (fps.py; the latest run of each device), benchmarks/results/quality_*.json
(quality.py), judges/*/manifest.json (the judges' own held-out accuracy).
Output: a markdown page, docs/results.md by default (written atomically; `--out -` prints it); every table and
figure names its machine and date. The README keeps a hand-written summary that links to it.

    python benchmarks/report.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facefx.errors import cli_main, epilog

REPO = Path(__file__).resolve().parents[1]
STAGES = ("capture", "detect", "crop", "infer", "paste", "output")


EARLIER = " (earlier export)"


def shipped_hashes(models: Path) -> dict[str, str]:
    """File name -> short sha256 of every runnable model file in models/<effect>/ (as fps.py records them)."""
    from facefx.manifest import sha256_file

    return {p.name: sha256_file(p)[:12] for p in sorted(models.glob("*/*"))
            if p.is_file() and p.suffix in (".onnx", ".ort", ".tflite")}


def _label(row: dict, shipped: dict[str, str]) -> str:
    """The model's name, marked when the file it names in models/ has changed since it was timed."""
    stale = row["model"] in shipped and row.get("model_hash") and shipped[row["model"]] != row["model_hash"]
    return row["model"] + (EARLIER if stale else "")


def speed_section(results: Path, link: str, models: Path | None = None) -> list[str]:
    from facefx.bench import benchmark as bm

    shipped = shipped_hashes(models or REPO / "models")
    lines: list[str] = []
    for csv_path in sorted(results.glob("*.csv")):
        rows = bm.latest_run(bm.read_results(csv_path))
        if not rows:
            continue
        r0 = rows[0]
        common, own = bm.split_notes(rows)
        lines += [f"## Speed on {r0['device']}", "",
                  f"{r0['cpu']}; measured {r0['date'][:16].replace('T', ' ')} UTC"
                  + (f" ({'; '.join(common)})" if common else "") + f"; {r0['versions']}.", ""]
        model_rows = [r for r in rows if r["kind"] == "model-only"]
        if model_rows:
            lines += ["| model | backend | precision | threads | input | p50 ms | p95 ms | FPS | MACs | params |",
                      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
            for r in model_rows:
                lines.append(f"| {_label(r, shipped)} | {r['backend']} | {r['precision']} | {r['threads']} | "
                             f"{r['size']} px | "
                             f"{bm.fmt_ms(r['p50_ms'])} | {bm.fmt_ms(r['p95_ms'])} | {float(r['fps']):.1f} | "
                             f"{bm.fmt_count(r['macs'])} | {bm.fmt_count(r['params'])} |")
            lines.append("")
        totals = [r for r in rows if r["kind"] == "end-to-end" and r["stage"] == "total"]
        if totals:
            lines += ["End to end on a video (median ms per frame by stage; FPS over the whole clip):", "",
                      "| model | threads | FPS | total p50 ms | " + " | ".join(STAGES) + " |",
                      "|---|---:|---:|---:|" + "---:|" * len(STAGES)]
            for t in totals:
                same = [r for r in rows if r["kind"] == "end-to-end" and r["model"] == t["model"]
                        and r["threads"] == t["threads"]]
                by_stage = {r["stage"]: bm.fmt_ms(r["p50_ms"]) for r in same}
                lines.append(f"| {_label(t, shipped)} | {t['threads']} | {float(t['fps']):.1f} | "
                             f"{bm.fmt_ms(t['p50_ms'])} | "
                             + " | ".join(by_stage.get(s, "") for s in STAGES) + " |")
            clip_note = own[rows.index(totals[0])]
            lines += [""] + ([f"_{clip_note}_", ""] if clip_note else [])
        if any(_label(r, shipped).endswith(EARLIER) for r in rows):
            lines += [f"_{EARLIER.strip()}: timed on an earlier export of that file, perhaps of another student "
                      "(the MACs and params are that model's); the shipped file has not been timed on this machine._",
                      ""]
        png = csv_path.with_suffix(".png")
        if png.is_file():
            lines += [f"![speed on {r0['device']}, {r0['date'][:10]}]({link}{png.name})", ""]
    return lines


def quality_section(results: Path, link: str) -> list[str]:
    lines: list[str] = []
    for path in sorted(results.glob("quality_*.json")):
        q = json.loads(path.read_text())
        effect = q["effect"]
        faces = q["faces"]
        lines += [f"## Quality: {effect} ({q['direction']})", "",
                  f"{faces['n']} held-out faces ('test' split of {', '.join(Path(f).name for f in faces['sets'])}) at "
                  f"{faces['size']} px; judge: {q['judge']['name']} ({q['judge']['unit']}); {q['device']}, "
                  f"{q['date'][:10]}.", ""]
        if effect == "age":
            head = ["mean age before", "after", "shift (years)", "shifted >= 5 y"]
            cells = lambda j: [j["mean_age_before"], j["mean_age_after"], f"{j['mean_shift_years']:+}",  # noqa: E731
                               f"{100 * j['frac_shift_5y_right_way']:.0f}%"]
        elif effect == "gender":
            head = ["P(female) before", "after", "flip rate"]
            cells = lambda j: [j["p_female_mean_before"], j["p_female_mean_after"],  # noqa: E731
                               "" if j["flip_rate"] is None else f"{100 * j['flip_rate']:.0f}%"]
        else:
            head = ["anime rate before", "after"]
            cells = lambda j: [f"{100 * j['anime_rate_before']:.0f}%", f"{100 * j['anime_rate_after']:.0f}%"]  # noqa: E731
        head += ["sharpness ratio", "PSNR outside face (dB)", "flicker ratio"]
        lines += ["| model | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
        for name, m in q["models"].items():
            src = q["sources"].get(name, {})
            label = name + (f" (step {src['step']})" if src.get("step") is not None else "")
            vals = cells(m["judge"]) + [m["detail"]["sharpness_ratio_median"], m["detail"]["psnr_outside_face_db"],
                                        m["flicker"]["ratio_mean"]]
            lines.append(f"| {label} | " + " | ".join(str(v) for v in vals) + " |")
        lines.append("")
        if q["fidelity"]:
            lines += ["| fidelity | PSNR (dB) | SSIM |", "|---|---:|---:|"]
            for k, v in q["fidelity"].items():
                lines.append(f"| {k.replace('_vs_', ' vs ')} | {v['psnr_db']} | {v['ssim']} |")
            lines.append("")
        kid = q.get("kid")
        if kid and kid.get("vs_teacher"):
            target = kid.get("target_domain", {})
            has_target = isinstance(kid.get("vs_target_domain"), dict) and "input" in kid["vs_target_domain"]
            tname = ", ".join(Path(f).name for f in target.get("sets", [])) or "target domain"
            lines += [f"| KID x 1000 (subsets of {kid['subset_size']}) | vs teacher |"
                      + (f" vs held-out {tname} ({target.get('n')}) |" if has_target else ""),
                      "|---|---:|" + ("---:|" if has_target else "")]
            for name in ["input", "teacher"] + [n for n in kid["vs_teacher"] if n != "input"]:
                cells = [kid["vs_teacher"].get(name)] + ([kid["vs_target_domain"].get(name)] if has_target else [])
                lines.append(f"| {name} | " + " | ".join(f"{c[0]} +- {c[1]}" if c else "" for c in cells) + " |")
            lines += ["", "KID: kernel Inception distance (FID's Inception-v3, cubic kernel), mean +- std over random "
                      "subsets; an unbiased estimate, so near 0 means the two sets cannot be told apart.", ""]
        lines += ["Sharpness ratio: Laplacian variance of output / input (1 = as sharp). Flicker ratio: mean "
                  "frame-to-frame change of the output / the input's on a slowly drifting face (1 = stable).", ""]
        files = q.get("files", {})
        for key, alt in (("sheet", "input | teacher | student | int8"), ("histogram", "judge before/after")):
            if files.get(key) and (results / files[key]).is_file():
                lines += [f"![{effect}: {alt}, {q['device']}, {q['date'][:10]}]({link}{files[key]})", ""]
    return lines


def judges_section(judges: Path) -> list[str]:
    rows = []
    for mpath in sorted(judges.glob("*/manifest.json")):
        m = json.loads(mpath.read_text())
        met = m.get("metrics", {})
        if m.get("target") == "age":
            score = (f"MAE {met.get('mae_years')} years (18-30: {met.get('mae_years_18-30')}, "
                     f"55+: {met.get('mae_years_55+')})")
        else:
            score = f"accuracy {100 * met.get('accuracy', 0):.1f}%"
            if "accuracy_18-60" in met:
                score += f" (adults 18-60: {100 * met['accuracy_18-60']:.1f}%)"
        rows.append(f"| {m.get('target')} | {m.get('output', {}).get('unit', '')} | {m.get('resolution')} px | "
                    f"{score} | {met.get('n_test')} | {m.get('created_at', '')[:10]} |")
    if not rows:
        return []
    return ["## Judges", "",
            "Small CNNs trained from scratch on the 'train' split (facefx.train.judges); their own accuracy "
            "on the held-out 'test' split:", "",
            "| judge | output | input | held-out accuracy | test faces | trained |",
            "|---|---|---:|---|---:|---|", *rows, ""]


def render(results: Path, judges: Path, link: str, models: Path | None = None) -> str:
    body = speed_section(results, link, models) + quality_section(results, link) + judges_section(judges)
    if not body:
        body = ["_No results yet: run benchmarks/fps.py and benchmarks/quality.py._", ""]
    return "\n".join(["# Results", "", "Generated by `python benchmarks/report.py` from benchmarks/results/ and "
                      "judges/; do not edit by hand. Every table names the machine and the date it was measured on.",
                      ""] + body)


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(epilog=epilog(), description=__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    ap.add_argument("--judges", type=Path, default=REPO / "judges", help="judges folder")
    ap.add_argument("--models", type=Path, default=REPO / "models",
                    help="shipped models (models/<effect>/): a timed file whose hash differs is marked as earlier")
    ap.add_argument("--link", default="../benchmarks/results/", help="prefix of image links (relative to --out)")
    ap.add_argument("--out", default=str(REPO / "docs" / "results.md"), help="page to write; - prints it")
    args = ap.parse_args(argv)
    text = render(args.results, args.judges, args.link, args.models)
    from facefx.manifest import atomic_write_bytes

    if args.out == "-":
        print(text)
    else:
        atomic_write_bytes(args.out, text.encode())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
