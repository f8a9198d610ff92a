"""Speed per backend, side by side in one run: teacher, student and exported models; then the end-to-end loop.

Inputs (each optional; what is found is measured, what is missing is skipped with a note):
  teacher   --teacher RUN, else the latest artifacts/teachers/<effect>/ run, else teachers/<effect>/  (PyTorch)
  student   --student RUN, else the latest artifacts/students/<effect>/ run                         (PyTorch)
  exported  --models DIR, else models/<effect>/: *.onnx / *.ort (ONNX Runtime), *.mlpackage (CoreML, macOS),
            *.tflite (where a TFLite interpreter is installed)
  video     --video (default assets/demo.mp4) for the end-to-end loop (facefx.runtime.pipeline, per-stage timers)
Output: rows appended to benchmarks/results/<device>.csv (fixed schema, facefx.bench.benchmark.RESULT_COLUMNS), and
benchmarks/results/<device>.md and .png re-rendered from this run.

    python benchmarks/fps.py                       # every effect that has a teacher, student or models/
    python benchmarks/fps.py --effect age --threads 1,2 --repeats 50
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import numpy as np

from facefx import options
from facefx.bench import benchmark as bm
from facefx.bench.options import FpsOptions
from facefx.errors import FacefxError, cli_main
from facefx.manifest import latest_run_dir, read_manifest, sha256_file

REPO = Path(__file__).resolve().parents[1]
EXPORT_SUFFIXES = (".onnx", ".ort", ".mlpackage", ".tflite")
BACKEND_LABELS = {"litert": "tflite"}  # facefx.runtime.loader backend -> the results table's name for it


# ---- finding what to measure ----------------------------------------------------------------------------
def committed_snapshot(kind_dir: str, effect: str) -> Path | None:
    """teachers/<effect> or students/<effect> of this checkout (the committed fp16 form), where there is one, else
    the one snapshot there whose manifest names the effect (teachers/age-zoom1.4)."""
    folder = REPO / kind_dir / effect
    if (folder / "manifest.json").is_file():
        return folder
    named = [p.parent for p in sorted((REPO / kind_dir).glob("*/manifest.json"))
             if read_manifest(p.parent).get("effect") == effect]
    return named[0] if len(named) == 1 else None


def find_teacher(effect: str, given: Path | None, root: Path) -> Path | None:
    if given:
        read_manifest(given, kind="teacher")
        return given
    return latest_run_dir(root / effect) or committed_snapshot("teachers", effect)


def find_student(effect: str, given: Path | None, root: Path) -> Path | None:
    if given:
        read_manifest(given, kind="student")
        return given
    return latest_run_dir(root / effect) or committed_snapshot("students", effect)


def find_exported(effect: str, given: Path | None, root: Path) -> list[Path]:
    folder = given or root / effect
    if given and not folder.is_dir():
        raise FacefxError(f"--models {folder} is not a folder; pass models/<effect> (made by export/export.py)")
    return sorted(p for p in folder.glob("*") if p.suffix in EXPORT_SUFFIXES) if folder.is_dir() else []


def precision_of(path: Path) -> str:
    """The precision the export wrote into the file's contract, else guessed from its name (<effect>_int8.onnx)."""
    import re

    if path.suffix in (".onnx", ".ort", ".mlpackage"):
        try:
            from facefx.runtime.loader import read_contract

            precision = read_contract(path).get("precision")
            if precision:
                return str(precision)
        except Exception:  # an unreadable contract (or no coremltools): fall back to the name
            pass
    stem = path.stem.lower()
    m = re.search(r"_(int8|fp16|w8|pal\d+|int4)\b", stem)
    return m.group(1) if m else "fp32"


def effects_present(args) -> list[str]:
    """Effects with something to measure: a folder of runs is named after its effect; an artifact folder (a
    committed snapshot such as teachers/age-zoom1.4, or models/age) names its effect in its manifest."""
    found = set()
    for root in (args.models_root, args.students_root, args.teachers_root, REPO / "teachers"):
        if root.is_dir():
            found |= {read_manifest(p).get("effect") or p.name if (p / "manifest.json").is_file() else p.name
                      for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(found)


# ---- measurements -----------------------------------------------------------------------------------------
def torch_rows(header: dict, name: str, net, size: int, file_hash: str, threads: list[int], args,
               note: str = "") -> list[dict]:
    """PyTorch eager fp32 latency of one network on (1, 3, size, size), at each thread count."""
    import torch

    from facefx.train import nets

    x = torch.from_numpy(_input(size))
    macs, params = nets.count_macs(net, size), nets.count_params(net)
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        with torch.inference_mode():
            stats = bm.time_fn(lambda: net(x), args.warmup, args.repeats, args.min_seconds)
        rows.append(bm.result_row({**header, "threads": t}, model=name, model_hash=file_hash[:12], backend="pytorch",
                                  precision="fp32", size=size, macs=macs, params=params, kind="model-only",
                                  note=note, **_timing(stats)))
        _print(rows[-1])
    return rows


def _timing(stats: dict) -> dict:
    return {k: stats[k] for k in ("p50_ms", "p95_ms", "fps", "spread_ms", "repeats")}


def _input(size: int) -> np.ndarray:
    # Dense convolutions cost the same whatever the pixels; a fixed pseudo-random crop keeps runs comparable.
    return np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)


def exported_rows(header: dict, path: Path, threads: list[int], args, macs: int | str,
                  params: int | str) -> tuple[list[dict], list[str]]:
    """Latency of one exported model file through its runtime, at each thread count (ONNX Runtime, LiteRT)."""
    from facefx.runtime.loader import load_model

    notes: list[str] = []
    rows: list[dict] = []
    digest = sha256_file(path)[:12] if path.is_file() else ""
    if path.suffix in (".mlpackage", ".mlmodel"):
        if platform.system() != "Darwin":
            return [], [f"{path.name}: CoreML runs on macOS only (skipped here)"]
        model = load_model(path)
        x = _input(model.size)
        stats = bm.time_fn(lambda: model(x), args.warmup, args.repeats, args.min_seconds)
        rows.append(bm.result_row({**header, "threads": ""}, model=path.name, model_hash=digest, backend="coreml",
                                  precision=precision_of(path), size=model.size, macs=macs, params=params,
                                  kind="model-only", **_timing(stats)))
        _print(rows[-1])
        return rows, notes
    for t in threads:
        try:
            model = load_model(path, threads=t)  # ONNX Runtime (.onnx, .ort) or the LiteRT interpreter (.tflite)
        except FacefxError as err:  # e.g. no LiteRT interpreter installed
            return rows, [f"{path.name}: {err}; skipped"]
        x = _input(model.size)
        stats = bm.time_fn(functools.partial(model, x), args.warmup, args.repeats, args.min_seconds)
        rows.append(bm.result_row({**header, "threads": t}, model=path.name, model_hash=digest,
                                  backend=BACKEND_LABELS.get(model.backend, model.backend),
                                  precision=precision_of(path), size=model.size, macs=macs,
                                  params=params, kind="model-only", **_timing(stats)))
        _print(rows[-1])
    return rows, notes


def onnx_cost(path: Path) -> tuple[int | str, int | str]:
    """MACs and parameters counted from an ONNX graph (Conv / QLinearConv / Gemm), for models without a student."""
    try:
        import onnx
        from onnx import shape_inference

        model = shape_inference.infer_shapes(onnx.load(str(path)))
    except Exception:  # .ort files, or shapes that cannot be inferred: leave the cells empty
        return "", ""
    g = model.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.output) + list(g.input):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    inits = {i.name: i for i in g.initializer}
    # In a QDQ int8 graph a Conv's weight is the output of a DequantizeLinear of the int8 initializer.
    dequant = {n.output[0]: n.input[0] for n in g.node if n.op_type == "DequantizeLinear"}

    def size_of(name: str) -> int:
        init = inits.get(dequant.get(name, name))
        return int(np.prod(list(init.dims))) if init is not None else 0

    macs = params = 0
    for node in g.node:
        if node.op_type in ("Conv", "ConvInteger"):
            w, b = node.input[1], node.input[2] if len(node.input) > 2 else ""
        elif node.op_type == "QLinearConv":
            w, b = node.input[3], node.input[8] if len(node.input) > 8 else ""
        elif node.op_type == "Gemm":
            w, b = node.input[1], node.input[2] if len(node.input) > 2 else ""
            macs += size_of(w)
            params += size_of(w) + (size_of(b) if b else 0)
            continue
        else:
            continue
        init = inits.get(dequant.get(w, w))
        out = shapes.get(node.output[0])
        if init is not None and out and all(out):
            macs += int(np.prod(out)) * int(np.prod(list(init.dims)[1:]))
        params += size_of(w) + (size_of(b) if b else 0)
    return (macs or ""), (params or "")


# ---- end to end -------------------------------------------------------------------------------------------
def end_to_end_rows(header: dict, path: Path, threads: int, video: Path, args) -> tuple[list[dict], str]:
    """The realtime loop on a video file (decode -> detect -> crop -> model -> paste), per-stage timers.

    Isolated here on purpose: it is the only part that depends on facefx.runtime.pipeline's API
    (FaceEffectPipeline(model, video=True), run_stream(source, pipeline, timer=StageTimer())).
    """
    try:
        from facefx.runtime.pipeline import FaceEffectPipeline, StageTimer, run_stream
    except ImportError as err:
        return [], f"end-to-end skipped: facefx.runtime.pipeline not available ({err})"
    from facefx.runtime.loader import load_model
    from facefx.runtime.video import open_source

    try:
        model = load_model(path, threads=threads or None)
    except FacefxError as err:  # a damaged model: a note, and the rows measured so far are still written
        return [], f"end-to-end skipped for {path.name}: {err}"
    timer = StageTimer()
    with open_source(video) as source, FaceEffectPipeline(model, video=True) as pipe:
        stats = run_stream(source, pipe, timer=timer, max_frames=args.e2e_frames or None, warn=lambda m: None)
    skip = min(args.e2e_warmup, max(0, len(timer.totals) - 2))  # first frames: detector and session warm-up
    ends = timer.ends[skip:]
    if len(ends) < 2:
        return [], f"end-to-end skipped for {path.name}: fewer than {skip + 2} frames were processed"
    fps = (len(ends) - 1) / (ends[-1] - ends[0])
    digest = sha256_file(path)[:12] if path.is_file() else ""
    base = dict(model=path.name, model_hash=digest, backend=model.backend, precision=precision_of(path),
                size=model.size, kind="end-to-end")
    n_face_frames = stats.with_faces
    note = f"{video.name}: {len(timer.totals)} frames ({n_face_frames} with a face), first {skip} not timed"
    total = bm.summarize_ms(timer.totals[skip:])
    thr = threads or ""
    rows = [bm.result_row({**header, "threads": thr}, **base, stage="total", p50_ms=total["p50_ms"],
                          p95_ms=total["p95_ms"], spread_ms=total["spread_ms"], repeats=total["repeats"], fps=fps,
                          note=note)]
    n_frames = len(timer.totals)
    for stage, samples in timer.samples.items():
        # Stages that ran on every frame are aligned with the frames: drop the warm-up ones too.
        vals = samples[skip:] if len(samples) == n_frames else samples
        if not vals:
            continue
        s = bm.summarize_ms(vals)
        rows.append(bm.result_row({**header, "threads": thr}, **base, stage=stage, p50_ms=s["p50_ms"],
                                  p95_ms=s["p95_ms"], spread_ms=s["spread_ms"], repeats=s["repeats"]))
    for r in rows:
        _print(r)
    return rows, ""


def _print(r: dict) -> None:
    stage = f" [{r['stage']}]" if r["stage"] else ""
    thr = f" {r['threads']} thr" if r["threads"] != "" else ""
    fps = f"  {float(r['fps']):7.1f} FPS" if r["fps"] != "" else ""
    print(f"  {r['kind']:<10} {r['model']:<22} {r['backend']:<11} {r['precision']:<5}{thr}{stage}: "
          f"p50 {float(r['p50_ms']):8.2f} ms  p95 {float(r['p95_ms']):8.2f} ms{fps}", flush=True)


# ---- main --------------------------------------------------------------------------------------------------
def benchmark_effect(effect: str, args, header: dict, threads: list[int]) -> tuple[list[dict], list[str]]:
    rows: list[dict] = []
    notes: list[str] = []
    print(f"effect {effect}:")
    student_cost: dict[str, tuple[int, int]] = {}  # student content hash -> (MACs, params)
    teacher = find_teacher(effect, args.teacher, args.teachers_root)
    if teacher is None:
        notes.append(f"{effect}: no teacher run found (artifacts/teachers/{effect}/ or teachers/{effect}/); skipped")
    else:
        from facefx.train.cyclegan import load_generator

        net, m = load_generator(teacher, args.direction)
        h = m.get("files", {}).get(f"G_{args.direction}.safetensors", "")
        step = m.get("progress", {}).get("step")
        rows += torch_rows(header, f"teacher-{effect}", net, int(m["resolution"]), h, threads, args,
                           note=f"{teacher.name}" + (f" step {step}" if step is not None else ""))
    student = find_student(effect, args.student, args.students_root)
    if student is None:
        notes.append(f"{effect}: no student run found (artifacts/students/{effect}/); skipped")
    else:
        from facefx.train import nets

        net, m = nets.load_from_artifact(student, "G", kind="student")
        from facefx.manifest import check_student, content_hash

        size = check_student(student, m)["resolution"]

        student_cost[content_hash(m)] = (nets.count_macs(net, size), nets.count_params(net))
        rows += torch_rows(header, f"student-{effect}", net, size, m.get("files", {}).get("G.safetensors", ""),
                           threads, args, note=student.name)
    exported = find_exported(effect, args.models, args.models_root)
    if not exported:
        notes.append(f"{effect}: no exported models in {args.models or args.models_root / effect}; skipped")
    for path in exported:
        macs, params = _exported_cost(path, student_cost)
        r, n = exported_rows(header, path, threads, args, macs, params)
        rows += r
        notes += n
    if args.no_end_to_end:
        return rows, notes
    # The loop as shipped: ONNX Runtime everywhere, CoreML on macOS.
    onnx_models = [p for p in exported if p.suffix == ".onnx" or (p.suffix == ".mlpackage" and
                                                                    platform.system() == "Darwin")]
    if not onnx_models:
        notes.append(f"{effect}: end-to-end needs an exported .onnx model; skipped")
    elif not args.video.is_file():
        notes.append(f"end-to-end skipped: video {args.video} not found (pass --video)")
    else:
        for path in onnx_models:
            for t in (threads if path.suffix == ".onnx" else [0]):
                r, n = end_to_end_rows(header, path, t, args.video, args)
                rows += r
                if n:
                    notes.append(n)
    return rows, notes


def _exported_cost(path: Path, student_cost: dict[str, tuple[int, int]]) -> tuple[int | str, int | str]:
    """MACs/params of the student an export came from (its contract's source.student_hash, or its student
    folder where that is still on disk), else counted from the ONNX graph."""
    from facefx.manifest import content_hash
    from facefx.runtime.loader import read_contract

    try:
        src = read_contract(path).get("source", {}) or {}
    except FacefxError:
        src = {}
    if src.get("student_hash") in student_cost:
        return student_cost[src["student_hash"]]
    student = Path(src.get("student", "")) if src.get("student") else None
    if student is not None and (student / "manifest.json").is_file():
        from facefx.train import nets

        try:
            net, m = nets.load_from_artifact(student, "G", kind="student")
            size = int(m["resolution"])
            student_cost[content_hash(m)] = (nets.count_macs(net, size), nets.count_params(net))
            return student_cost[content_hash(m)]
        except FacefxError:
            pass
    onnx_path = path if path.suffix == ".onnx" else path.with_name(path.stem.replace("_int8", "") + ".onnx")
    return onnx_cost(onnx_path) if onnx_path.is_file() else ("", "")


@cli_main
def main(argv: list[str] | None = None) -> None:
    ap = options.ArgumentParser(description=__doc__)
    options.add_options(ap, FpsOptions, shown={"video": "assets/demo.mp4", "results": "benchmarks/results"})
    ap.add_argument("--dry-run", action="store_true", help="list what would be measured and exit")
    args = ap.parse_args(argv)
    args = options.fill(args, options.resolve(FpsOptions, args))
    threads = sorted(set(args.threads))
    effects = args.effect or effects_present(args)
    if not effects:
        raise FacefxError("nothing to measure: no teacher, student or models/ folder found; pass --effect and "
                          "--teacher/--student/--models")
    if len(effects) > 1 and (args.teacher or args.student or args.models):
        raise FacefxError("--teacher/--student/--models name one effect's artifacts; pass one --effect with them")
    header = bm.run_header(args.device)
    # How busy the machine was is part of the result (other jobs on the CPU slow every row).
    header_note = f"load {os.getloadavg()[0]:.1f}/{os.cpu_count()} cpu at start" if hasattr(os, "getloadavg") else ""
    print(f"{header['device']}: {header['cpu']}" + (f", {header_note}" if header_note else ""))
    if args.dry_run:
        for e in effects:
            print(f"{e}: teacher {find_teacher(e, args.teacher, args.teachers_root)}, student "
                  f"{find_student(e, args.student, args.students_root)}, exported "
                  f"{[p.name for p in find_exported(e, args.models, args.models_root)]}, threads {threads}")
        return
    rows: list[dict] = []
    notes: list[str] = []
    for effect in effects:
        try:
            r, n = benchmark_effect(effect, args, header, threads)
        except FacefxError as err:  # one effect's broken artifact must not lose the other effects' timings
            r, n = [], [f"{effect}: {err}; skipped"]
        rows += r
        notes += n
    for n in notes:
        print(f"note: {n}")
    if not rows:
        raise FacefxError("nothing was measured (see the notes above)")
    for r in rows:
        r["note"] = "; ".join(x for x in (r["note"], header_note) if x)
    csv_path = args.results / f"{bm.slug(header['device'])}.csv"
    bm.append_results(csv_path, rows)
    md, png = bm.render_device(csv_path)
    print(f"appended {len(rows)} rows to {csv_path}; wrote {md}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
