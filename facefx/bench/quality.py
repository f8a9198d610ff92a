"""Quality of an effect on held-out faces: did it do its job, keep detail, match its teacher, stay stable?

Inputs (each optional, at least one; what is given is measured):
  --teacher RUN   teacher artifact (artifacts/teachers/<effect>/<run>); its change is applied at the crop size
                  the way distill/pairs.py makes the students' targets (facefx.train.distill.TeacherLabeler)
  --student RUN   student artifact (PyTorch, fp32)
  --models DIR    exported models (models/<effect>/<effect>.onnx and <effect>_int8.onnx)
  faces           the 'test' split of the effect's source-domain face sets (never trained on): the teacher's
                  domain A (B for --direction BA), else defaults per effect (age: young, gender: men, style: selfies)
  judges          judges/{age,gender,anime} (facefx.train.judges)
Outputs (benchmarks/results/):
  quality_<effect>.json        judge before/after (age: mean shift and histogram; gender: flip rate; style: anime
                               rate), detail preservation (Laplacian-variance ratio, PSNR outside the face),
                               student-vs-teacher and int8-vs-fp32 fidelity (PSNR/SSIM), temporal flicker,
                               shift stability (PSNR of the output of a face shifted by one teacher pixel against
                               the output shifted),
                               with --kid: KID vs the teacher's outputs and vs the target domain's held-out faces
  quality_<effect>.png         contact sheet: input | teacher | student | int8, judge values on each cell
  quality_<effect>_hist.png    judge score distributions before and after
  quality_<effect>_blind_*.png with --blind N: a blind A/B test (teacher and student in a random order per row;
                               the key goes to artifacts/blind/, scored by --score-blind KEY --guesses LR...)
  (--direction BA writes quality_<effect>_BA.*: a swap student is measured once each way)

    python benchmarks/quality.py --effect age --teacher artifacts/teachers/age/00000-128px-ngf32-b6
    python benchmarks/quality.py --effect age --student artifacts/students/age/00003-x --models models/age
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from facefx import options
from facefx.bench.options import QualityOptions
from facefx.errors import FacefxError, cli_main
from facefx.train.judges import AGE_BINS, EFFECT_JUDGE, PROB_BINS, judge_stats, rounded

REPO = Path(__file__).resolve().parents[2]  # the checkout (artifacts/blind)
# effect -> default source face sets per direction (the judge: facefx.train.judges.EFFECT_JUDGE)
DEFAULT_FACES = {
    "age": {"AB": ["artifacts/faces/young"], "BA": ["artifacts/faces/old"]},
    "gender": {"AB": ["artifacts/faces/men"], "BA": ["artifacts/faces/women"]},
    "style": {"AB": ["artifacts/faces/selfies"], "BA": ["artifacts/faces/anime"]},
}
# ---- image figures ----------------------------------------------------------------------------------------
def face_region(spec, size: int) -> np.ndarray:
    """(size, size) bool: the inner face (brows to chin), from the crop template
    (facefx.runtime.crop.inner_face_radius).

    Outside it (hair, background, neck) is where an effect should change least: detail kept there is measured.
    """
    from facefx.runtime.crop import inner_face_radius

    return inner_face_radius(spec.with_size(size)) <= 1.0


def detail_stats(inputs: np.ndarray, outputs: np.ndarray, region: np.ndarray) -> dict:
    """Laplacian-variance ratio (output / input; < 1 means blurred) and PSNR outside the face region."""
    from facefx.metrics import psnr, sharpness

    ratios = [sharpness(o) / max(sharpness(i), 1e-6) for i, o in zip(inputs, outputs)]
    outside = ~region
    ps = [psnr(i[outside].astype(np.float32) / 127.5, o[outside].astype(np.float32) / 127.5)
          for i, o in zip(inputs, outputs)]
    return {"sharpness_ratio_median": rounded(np.median(ratios), 3),
            "sharpness_ratio_p10": rounded(np.percentile(ratios, 10), 3),
            "psnr_outside_face_db": rounded(np.mean(np.minimum(ps, 99.0)))}


def fidelity(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean PSNR (dB) and SSIM between two sets of uint8 RGB images."""
    from facefx.metrics import psnr, ssim

    ps = [min(psnr(x.astype(np.float32) / 127.5, y.astype(np.float32) / 127.5), 99.0) for x, y in zip(a, b)]
    return {"psnr_db": rounded(np.mean(ps)), "ssim": rounded(np.mean([ssim(x, y) for x, y in zip(a, b)]), 4),
            "n": len(ps)}


def drift_clip(face_rgb: np.ndarray, frames: int, px_per_frame: float = 0.5) -> np.ndarray:
    """A slowly moving face: the crop shifted by a sub-pixel drift (and a slight zoom and turn) per frame,
    the way a face held before a webcam moves between aligned crops. (frames, S, S, 3) uint8 RGB."""
    s = face_rgb.shape[0]
    out = []
    for k in range(frames):
        m = cv2.getRotationMatrix2D((s / 2, s / 2), 0.08 * k, 1.0 + 0.001 * k)
        m[:, 2] += (px_per_frame * k * s / 256, 0.5 * px_per_frame * k * s / 256)
        out.append(cv2.warpAffine(face_rgb, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return np.stack(out)


def flicker(clip_in: np.ndarray, clip_out: np.ndarray) -> float:
    """Mean |frame-to-frame change| of the output divided by the input's: 1 follows the motion, > 1 flickers."""
    d_in = np.abs(np.diff(clip_in.astype(np.float32), axis=0)).mean()
    d_out = np.abs(np.diff(clip_out.astype(np.float32), axis=0)).mean()
    return float(d_out / max(d_in, 1e-6))


def shift_image(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(N, S, S, 3) uint8 images shifted as the teachers' shift loss shifts them (facefx.train.cyclegan.shift_image)."""
    import torch

    from facefx.train.cyclegan import shift_image as shift_nchw

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    return shift_nchw(x.float(), dy, dx, pad=max(abs(dy), abs(dx))).permute(0, 2, 3, 1).to(torch.uint8).numpy()


def shift_stability(fn: Runner, inputs: np.ndarray, out: np.ndarray, px: int, border: int) -> float:
    """Mean PSNR (dB) between fn(shift(x)) and shift(out), out = fn(inputs), over a shift of px pixels right and
    one down, the crop less a border: high when a model moves its strokes with the face, low when it redraws them."""
    from facefx.metrics import psnr

    inner = (slice(None), slice(border, -border), slice(border, -border))
    ps = []
    for dy, dx in ((0, px), (px, 0)):
        a = fn(shift_image(inputs, dy, dx))[inner].astype(np.float32) / 127.5
        b = shift_image(out, dy, dx)[inner].astype(np.float32) / 127.5
        ps += [min(psnr(x, y), 99.0) for x, y in zip(a, b)]
    return float(np.mean(ps))


# ---- the models ---------------------------------------------------------------------------------------------
Runner = Callable[[np.ndarray], np.ndarray]  # uint8 RGB (N, S, S, 3) -> same


def teacher_runner(run: Path, direction: str, strength: float = 1.0, face_mask: bool = False) -> tuple[Runner, dict]:
    from facefx.train.distill import TeacherLabeler

    labeler = TeacherLabeler(run, direction, strength=strength, face_mask=face_mask)
    return _batched(labeler, 16), labeler.manifest


def student_runner(run: Path) -> tuple[Runner, dict, int]:
    import torch

    from facefx.runtime.pixels import nchw_to_rgb, rgb_to_nchw
    from facefx.train import nets

    net, manifest = nets.load_from_artifact(run, "G", kind="student")

    def run_fn(rgb: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return nchw_to_rgb(net(torch.from_numpy(rgb_to_nchw(rgb))).numpy())  # fp32, like the export
    return _batched(run_fn, 16), manifest, int(manifest["resolution"])


def exported_runner(path: Path, effect: str) -> tuple[Runner, dict, int]:
    from facefx.runtime.loader import load_model
    from facefx.runtime.pixels import nchw_to_rgb, rgb_to_nchw

    model = load_model(path, effect=effect)
    return _batched(lambda rgb: nchw_to_rgb(model(rgb_to_nchw(rgb))), 16), model.contract, model.size


def _batched(fn: Runner, batch: int) -> Runner:
    def run(rgb: np.ndarray) -> np.ndarray:
        return np.concatenate([fn(np.ascontiguousarray(rgb[i:i + batch])) for i in range(0, len(rgb), batch)])
    return run


# ---- figures ---------------------------------------------------------------------------------------------
def judge_text(effect: str, score: float) -> str:
    if effect == "age":
        return f"{score:.0f} y"
    return f"{'F' if effect == 'gender' else 'anime'} {score:.2f}"


def outlined_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
                  thickness: int) -> None:
    """Text in `color` with a black outline two pixels wider, legible on any face (BGR, in place)."""
    for c, t in (((0, 0, 0), thickness + 2), (color, thickness)):
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, c, t, cv2.LINE_AA)


def contact_sheet(path: Path, columns: dict[str, np.ndarray], scores: dict[str, np.ndarray], effect: str,
                  rows: int, cell: int = 160) -> None:
    """input | teacher | student | int8 (whatever was measured), judge value written on each face."""
    from facefx.train.sheets import grid, save_png

    n = len(next(iter(columns.values())))
    pick = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    grid_rows = []
    for i in pick:
        row = []
        for name, imgs in columns.items():
            img = cv2.resize(np.ascontiguousarray(imgs[i][..., ::-1]), (cell, cell), interpolation=cv2.INTER_AREA)
            text = judge_text(effect, float(scores[name][i]))
            outlined_text(img, text, (4, cell - 6), 0.45, (255, 255, 255), 1)
            row.append(img)
        grid_rows.append(row)
    save_png(path, grid(grid_rows, list(columns), cell=cell))


def blind_sheets(out: Path, stem: str, key_path: Path, teacher: np.ndarray, student: np.ndarray, n: int, seed: int,
                 per_sheet: int = 6, cell: int = 256) -> dict:
    """A blind A/B test of student against teacher: n random held-out faces, each row the teacher's and the
    student's output side by side in a random order, rows numbered, at full crop size (one PNG per `per_sheet`
    rows). Which side is the teacher goes to key_path, kept out of the results folder so that whoever looks at the
    sheets does not see it; score guesses with --score-blind."""
    from facefx.manifest import atomic_write_json
    from facefx.train.sheets import grid, save_png

    rng = np.random.default_rng(seed)
    faces = rng.choice(len(teacher), min(n, len(teacher)), replace=False)
    out.mkdir(parents=True, exist_ok=True)
    sides, rows = [], []
    for row, i in enumerate(faces, 1):
        left_is_teacher = bool(rng.random() < 0.5)
        pair = [teacher[i], student[i]] if left_is_teacher else [student[i], teacher[i]]
        cells = [np.ascontiguousarray(img[..., ::-1]) for img in pair]
        outlined_text(cells[0], str(row), (6, 26), 0.8, (0, 255, 255), 2)
        rows.append(cells)
        sides.append("L" if left_is_teacher else "R")
    sheets = []
    for k in range(0, len(rows), per_sheet):
        path = out / f"{stem}_blind_{k // per_sheet + 1}.png"
        save_png(path, grid(rows[k:k + per_sheet], ["L", "R"], cell=cell))
        sheets.append(path.name)
    key = {"results": stem, "seed": seed, "faces": [int(i) for i in faces], "teacher_side": sides, "sheets": sheets}
    key_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(key_path, key)
    return key


def score_blind(key_path: Path, guesses: str) -> str:
    """One line: how many rows of a blind A/B test the guesses ('L'/'R' per row, which side is the teacher) got
    right, and the chance of doing at least as well by coin flips (one-sided binomial)."""
    from math import comb

    try:
        truth = json.loads(Path(key_path).read_text())["teacher_side"]
    except (OSError, ValueError, KeyError) as e:
        raise FacefxError(f"{key_path}: not a blind-test key ({e}); quality.py --blind N writes one") from None
    guesses = guesses.upper().replace(",", "").replace(" ", "")
    if len(guesses) != len(truth) or set(guesses) - {"L", "R"}:
        raise FacefxError(f"--guesses needs one L or R per row ({len(truth)} rows), got {guesses!r}")
    right = sum(g == t for g, t in zip(guesses, truth))
    p = sum(comb(len(truth), k) for k in range(right, len(truth) + 1)) / 2 ** len(truth)
    return (f"{right} of {len(truth)} right ({100 * right / len(truth):.0f}%); by coin flips at least as many with "
            f"probability {p:.3g}")


def histogram_plot(path: Path, effect: str, judge_unit: str, scores: dict[str, np.ndarray], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facefx.manifest import atomic_write_bytes

    bins = AGE_BINS if effect == "age" else PROB_BINS
    models = [n for n in scores if n != "input"]
    # One panel per model, each over the same input distribution: overlaid step lines of 4 models are unreadable.
    fig, axes = plt.subplots(1, len(models), figsize=(3.3 * len(models) + 0.6, 3.2), sharey=True, squeeze=False)
    ref = np.clip(scores["input"], bins[0], bins[-1])
    for ax, name in zip(axes[0], models):
        ax.hist(ref, bins=bins, color="0.75", label=f"input (mean {scores['input'].mean():.2f})")
        ax.hist(np.clip(scores[name], bins[0], bins[-1]), bins=bins, histtype="step", lw=2, color="#c44e52",
                label=f"{name} (mean {scores[name].mean():.2f})")
        ax.set_xlabel(f"judge: {judge_unit}", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="best")
        ax.grid(alpha=0.2)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("held-out faces", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ---- main ------------------------------------------------------------------------------------------------
def source_faces(args, teacher_m: dict | None, student_run: Path | None) -> list[str]:
    if args.faces:
        return [str(f) for f in args.faces]
    domain = "A" if args.direction == "AB" else "B"
    if teacher_m is not None:
        return list(teacher_m["domains"][domain])
    pairs_m = student_pairs(student_run)  # student -> pairs -> the face sets the teacher labelled
    # a swap student's pairs hold both domains: measure the one this direction starts from
    sets = (pairs_m.get("face_sets_by_direction") or {}).get(args.direction) or pairs_m.get("face_sets")
    return list(sets) if sets else DEFAULT_FACES[args.effect][args.direction]


def student_pairs(student_run: Path | None) -> dict:
    """The manifest of the pairs a student learned from, or {} where the lineage is not found."""
    from facefx.manifest import read_manifest

    if student_run is None:
        return {}
    try:
        return read_manifest(read_manifest(student_run)["parent"]["path"], kind="pairs")
    except (FacefxError, KeyError, TypeError):
        return {}


def kid_figures(outputs: dict[str, np.ndarray], inputs: np.ndarray, teacher_m: dict | None, direction: str,
                size: int) -> dict:
    """KID x 1000 (facefx.bench.fid) of each model's outputs against the teacher's (can a distribution test tell the
    student from its teacher?), and of the inputs and every model's outputs against the held-out faces of the
    domain the effect turns faces into (the teacher's other domain), where that face set is prepared here."""
    from facefx.bench.fid import inception_features, kid, load_inception
    from facefx.train.data import read_crops
    from facefx.train.prepare import load_faces

    net = load_inception()
    # The Inception network costs ~0.1 s per face on 1 CPU thread: the teacher and one student form (the PyTorch
    # student, else the fp32 export, else int8: 40+ dB apart, so the same to KID) are measured.
    student = next((n for n in ("student", "fp32", "int8") if n in outputs), None)
    chosen = {"input": inputs, **{n: outputs[n] for n in ("teacher", student) if n in outputs}}
    feats = {name: inception_features(net, o) for name, o in chosen.items()}
    # Outputs of the same faces are paired: each subset compares one model on some faces with the teacher on others.
    subset = min(100, len(inputs) // 2)
    fig = {"unit": "KID x 1000 (mean, std over 100 random subsets)", "subset_size": subset, "vs_teacher": {}}
    if "teacher" in feats:
        for name in feats:
            if name != "teacher":
                fig["vs_teacher"][name] = [round(v, 3) for v in kid(feats[name], feats["teacher"], subset,
                                                                    paired=True)]
    target_sets = (teacher_m or {}).get("domains", {}).get("B" if direction == "AB" else "A", [])
    try:
        paths = [p for f in target_sets for p in load_faces(f, "test")[1]]
    except FacefxError as e:
        fig["vs_target_domain"] = {"skipped": str(e)}
        return fig
    if paths:
        target = inception_features(net, np.ascontiguousarray(read_crops(paths, size)[..., ::-1]))
        fig["target_domain"] = {"sets": target_sets, "n": len(paths)}
        fig["vs_target_domain"] = {name: [round(v, 3) for v in kid(f, target, subset)] for name, f in feats.items()}
    return fig


def load_runners(args) -> tuple[dict[str, Runner], dict[str, dict], int, dict | None]:
    """The models to measure (teacher, student, fp32, int8: whatever args name), what each is, the crop size they
    work at, and the teacher's manifest (None without --teacher)."""
    from facefx.manifest import read_manifest, sha256_file

    runners: dict[str, Runner] = {}
    sources: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    teacher_m = None
    effect, direction = args.effect, args.direction
    if args.teacher:
        # The teacher as the student learned it: at the strength (and face mask) its pairs were made with.
        strength = args.teacher_strength or float(student_pairs(args.student).get("strength", 1.0))
        face_mask = bool(args.student and read_manifest(args.student).get("face_mask", False))
        run_fn, teacher_m = teacher_runner(args.teacher, direction, strength, face_mask)
        if teacher_m.get("effect") != effect:
            raise FacefxError(f"{args.teacher} is a {teacher_m.get('effect')!r} teacher, not {effect!r}")
        runners["teacher"] = run_fn
        sources["teacher"] = {"path": str(args.teacher), "step": teacher_m.get("progress", {}).get("step"),
                              "resolution": teacher_m["resolution"], "strength": strength, "face_mask": face_mask,
                              "hash": teacher_m.get("files", {}).get(f"G_{direction}.safetensors", "")[:12]}
    if args.student:
        run_fn, m, size = student_runner(args.student)
        if m.get("effect") != effect:
            raise FacefxError(f"{args.student} is a {m.get('effect')!r} student, not {effect!r}")
        runners["student"], sizes["student"] = run_fn, size
        sources["student"] = {"path": str(args.student), "resolution": size,
                              "hash": m.get("files", {}).get("G.safetensors", "")[:12]}
    if args.models:
        found = False
        for name, fname in (("fp32", f"{effect}.onnx"), ("int8", f"{effect}_int8.onnx")):
            p = Path(args.models) / fname
            if p.is_file():
                run_fn, contract, size = exported_runner(p, effect)
                runners[name], sizes[name] = run_fn, size
                sources[name] = {"path": str(p), "resolution": size, "hash": sha256_file(p)[:12]}
                found = True
        if not found:
            raise FacefxError(f"{args.models} has neither {effect}.onnx nor {effect}_int8.onnx; export them with "
                              "export/export.py")
    if len(set(sizes.values())) > 1:
        raise FacefxError(f"the student and exported models take different crop sizes {sizes}; compare models of "
                          "one size")
    size = next(iter(sizes.values())) if sizes else int(teacher_m["resolution"])
    return runners, sources, size, teacher_m


def model_figures(runners: dict[str, Runner], inputs: np.ndarray, outputs: dict[str, np.ndarray],
                  scores: dict[str, np.ndarray], crop, args, teacher_m: dict | None) -> dict[str, dict]:
    """Per model: the judge before/after, detail kept, flicker on a slow drift, and shift stability."""
    size = inputs.shape[1]
    region = face_region(crop, size)
    # ---- temporal flicker on a synthetic slow drift of a few held-out faces
    clip_idx = np.unique(np.linspace(0, len(inputs) - 1, min(args.flicker_faces, len(inputs))).round().astype(int))
    clips = [drift_clip(inputs[i], args.flicker_frames) for i in clip_idx]
    # ---- shift stability: one teacher pixel of shift (the teacher works at 128 px) on some held-out faces
    shift_px = max(1, size // int(teacher_m["resolution"])) if teacher_m else max(1, size // 128)
    shift_idx = np.unique(np.linspace(0, len(inputs) - 1, min(args.shift_faces, len(inputs))).round().astype(int))
    models = {}
    for name, fn in runners.items():
        flick = [flicker(c, fn(c)) for c in clips]
        stability = shift_stability(fn, inputs[shift_idx], outputs[name][shift_idx], shift_px, border=size // 16)
        models[name] = {
            "judge": judge_stats(args.effect, args.direction, scores["input"], scores[name]),
            "detail": detail_stats(inputs, outputs[name], region),
            "flicker": {"ratio_mean": rounded(np.mean(flick), 3), "ratio_max": rounded(np.max(flick), 3),
                        "faces": len(clips), "frames": args.flicker_frames,
                        "motion": "0.5 px/frame drift at 256 px, 0.08 deg/frame turn, 0.1%/frame zoom"},
            "shift_stability": {"psnr_db": rounded(stability), "shift_px": shift_px, "faces": len(shift_idx),
                                "border_px": size // 16},
        }
    return models


def write_files(result: dict, inputs: np.ndarray, outputs: dict[str, np.ndarray], scores: dict[str, np.ndarray],
                judge, face_sets: list[str], args, blind_dir: Path) -> None:
    """The contact sheet, the histogram, the blind A/B sheets (with --blind) and the JSON, into args.out."""
    from facefx.manifest import atomic_write_json

    effect, direction = args.effect, args.direction
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sheet_cols = {"input": inputs}
    for name in ("teacher", "student"):
        if name in outputs:
            sheet_cols[name] = outputs[name]
    exported = "int8" if "int8" in outputs else "fp32" if "fp32" in outputs else None
    if exported:
        sheet_cols[exported] = outputs[exported]
    stem = f"quality_{effect}" + ("" if direction == "AB" else f"_{direction}")  # a swap student: one file each way
    sheet = out / f"{stem}.png"
    contact_sheet(sheet, sheet_cols, scores, effect, args.sheet_rows)
    hist = out / f"{stem}_hist.png"
    sets = ", ".join(Path(f).name for f in face_sets)
    histogram_plot(hist, effect, judge.unit, scores, f"{effect} {direction} on {len(inputs)} held-out faces ({sets})"
                   f"; {result['device']}, {result['date'][:10]}")
    result["files"] = {"sheet": sheet.name, "histogram": hist.name}
    if args.blind:
        key_path = args.blind_key or blind_dir / f"{stem}_key.json"
        key = blind_sheets(out, stem, key_path, outputs["teacher"], outputs["student"], args.blind, args.blind_seed)
        result["files"]["blind"] = key["sheets"]
        print(f"blind A/B test: {', '.join(key['sheets'])} in {out}; the key is in {key_path} (do not look before "
              f"guessing; then: quality.py --score-blind {key_path} --guesses LR...)")
    atomic_write_json(out / f"{stem}.json", result)


def measure(args, blind_dir: Path = REPO / "artifacts" / "blind") -> dict:
    """Every figure of the models args name on held-out faces; writes them to args.out and returns them.
    blind_dir: where a blind test's key goes unless args.blind_key says."""
    import torch

    from facefx.bench import benchmark as bm
    from facefx.manifest import read_manifest
    from facefx.runtime.crop import CropSpec
    from facefx.runtime.pixels import rgb_to_nchw
    from facefx.train.data import read_crops
    from facefx.train.judges import load_judge
    from facefx.train.prepare import load_faces

    torch.set_num_threads(args.threads)
    effect, direction = args.effect, args.direction
    if not (args.teacher or args.student or args.models):
        raise FacefxError("nothing to measure: pass --teacher RUN, --student RUN and/or --models models/<effect>")
    if args.blind and not (args.teacher and args.student):  # said before minutes of measuring, not after
        raise FacefxError("--blind compares a student with its teacher: pass --teacher and --student")
    if args.kid:
        from facefx.bench.fid import inception_path

        inception_path()  # installed? (one line saying how, before any model runs)
    judge = load_judge(EFFECT_JUDGE[effect], root=args.judges)
    runners, sources, size, teacher_m = load_runners(args)

    # ---- held-out faces of the source domain
    face_sets = source_faces(args, teacher_m, args.student)
    paths = [p for f in face_sets for p in load_faces(f, "test")[1]]
    crop = CropSpec.from_dict(read_manifest(face_sets[0], kind="faces")["crop"]).with_size(size)
    judge = judge.for_crop(crop)
    if args.limit:
        paths = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, args.limit).round().astype(int))]
    inputs = np.ascontiguousarray(read_crops(paths, size)[..., ::-1])  # (N, S, S, 3) uint8 RGB
    print(f"{effect} {direction}: {len(inputs)} held-out faces from {', '.join(face_sets)} at {size} px; "
          f"models: {', '.join(runners)}", flush=True)

    outputs = {name: fn(inputs) for name, fn in runners.items()}
    scores = {"input": judge.predict(torch.from_numpy(rgb_to_nchw(inputs)))}
    scores.update({name: judge.predict(torch.from_numpy(rgb_to_nchw(o))) for name, o in outputs.items()})
    result: dict = {
        "effect": effect, "direction": direction,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": bm.default_device_name(), "cpu": bm.cpu_model(),
        "faces": {"sets": face_sets, "split": "test", "n": len(inputs), "size": size},
        "judge": {"name": judge.name, "unit": judge.unit, "folder": str(judge.folder),
                  "held_out_metrics": {k: v for k, v in judge.manifest.get("metrics", {}).items()
                                       if k in ("mae_years", "accuracy", "n_test")}},
        "sources": sources,
        "input": {"judge": judge_stats(effect, direction, scores["input"], None)},
        "models": model_figures(runners, inputs, outputs, scores, crop, args, teacher_m),
        "fidelity": {},
    }
    for a, b in (("student", "teacher"), ("fp32", "teacher"), ("int8", "teacher"), ("int8", "fp32"),
                 ("fp32", "student")):
        if a in outputs and b in outputs:
            result["fidelity"][f"{a}_vs_{b}"] = fidelity(outputs[a], outputs[b])
    if args.kid:
        result["kid"] = kid_figures(outputs, inputs, teacher_m, direction, size)
    write_files(result, inputs, outputs, scores, judge, face_sets, args, blind_dir)
    return result


def summary_lines(result: dict) -> list[str]:
    lines = []
    for name, m in result["models"].items():
        j = m["judge"]
        if result["effect"] == "age":
            what = f"age {j['mean_age_before']} -> {j['mean_age_after']} (shift {j['mean_shift_years']:+} y)"
        elif result["effect"] == "gender":
            what = f"flip rate {j['flip_rate']} (P(female) {j['p_female_mean_before']} -> {j['p_female_mean_after']})"
        else:
            what = f"anime rate {j['anime_rate_before']} -> {j['anime_rate_after']}"
        d, f = m["detail"], m["flicker"]
        shift = m["shift_stability"]["psnr_db"]
        lines.append(f"  {name:<8} {what}; sharpness x{d['sharpness_ratio_median']}, PSNR outside face "
                     f"{d['psnr_outside_face_db']} dB, flicker x{f['ratio_mean']}, shift stability {shift} dB")
    for k, v in result["fidelity"].items():
        lines.append(f"  {k}: PSNR {v['psnr_db']} dB, SSIM {v['ssim']}")
    for group, figs in result.get("kid", {}).items():
        if group.startswith("vs_"):
            lines += [f"  KID x1000 {name} {group}: {v[0]} +- {v[1]}" for name, v in figs.items()
                      if isinstance(v, list)]
    return lines


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = options.ArgumentParser(description=__doc__)
    options.add_options(ap, QualityOptions, shown={"out": "benchmarks/results"})
    args = ap.parse_args(argv)
    args = options.fill(args, options.resolve(QualityOptions, args))
    if args.score_blind:
        print(score_blind(args.score_blind, args.guesses))
        return
    if not args.effect:
        ap.error("the following arguments are required: --effect")
    result = measure(args)
    print("\n".join(summary_lines(result)))
    print(f"wrote {args.out / result['files']['sheet'].replace('.png', '.json')} and the contact sheet "
          f"{args.out / result['files']['sheet']}")
