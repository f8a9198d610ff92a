"""Model cards: models/<effect>/README.md, rendered from the export manifest and the manifests it came from.

Input: the export manifest (formats, sizes, parity, latency, machine), the student manifest (network, cost,
metrics, command), the teacher manifest (domains, resolution, command) and, where found, the face sets'
manifests (data sources, whose terms the card repeats). Output: markdown text. Never imports torch.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

# What each known effect does; any other effect is described from its teacher's domains alone.
EFFECTS = {
    "age": "changes the apparent age of a face (young adult <-> older adult)",
    "gender": "changes the apparent gender presentation of a face",
    "anime": "redraws a selfie as an anime-style face",
    "style": "redraws a selfie as an anime-style face",
}

# Data sources recognised in face sets' manifests (by a word in their source path, or UTKFace's file naming
# "<age>_<gender>_<race>_<date>.jpg.chip.jpg"), and their terms.
_UTKFACE_NAME = re.compile(r"^\d+_\d_\d_\d+\.jpg\.chip\.jpg$")
DATASETS = {
    "utkface": ("UTKFace (Zhang, Song, Qi, CVPR 2017), https://susanqq.github.io/UTKFace/",
                "non-commercial research purposes only; the images' copyright stays with their owners"),
    "selfie2anime": ("selfie2anime (Kim et al., U-GAT-IT, ICLR 2020)",
                     "research use only; the anime drawings are copyrighted by their owners"),
}

FORMAT_NAMES = {"onnx": "ONNX", "int8": "ONNX int8", "ort": "ORT Mobile", "coreml": "CoreML", "tflite": "TFLite"}


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _domain_names(teacher: dict | None, direction: str, faces: dict[str, dict]) -> tuple[str, str] | None:
    if not teacher or not teacher.get("domains"):
        return None

    def name(paths: list[str]) -> str:
        parts = []
        for p in paths:
            text = faces.get(p, {}).get("domain")
            parts.append(f"{Path(p).name} ({text})" if text else Path(p).name)
        return " + ".join(parts)

    a, b = name(teacher["domains"].get("A", [])), name(teacher["domains"].get("B", []))
    return (a, b) if direction == "AB" else (b, a)


def _datasets(faces: dict[str, dict], face_set_paths: list[str]) -> list[tuple[str, str]]:
    found = {}
    texts = [json.dumps({k: m.get(k) for k in ("source", "labels", "command")}) for m in faces.values()]
    texts += face_set_paths
    if any(_UTKFACE_NAME.match(str(i.get("source", ""))) for m in faces.values() for i in m.get("items", [])[:50]):
        texts.append("utkface")
    for key, (name, terms) in DATASETS.items():
        if any(key in t.lower() for t in texts):
            found[key] = (name, terms)
    return list(found.values())


_PARITY_TEXT = {"max_abs_diff_vs_pytorch": "max abs diff vs PyTorch", "max_abs_diff_vs_onnx": "max abs diff vs ONNX",
                "psnr_vs_fp32_db": "PSNR vs fp32", "psnr_vs_int8_onnx_db": "PSNR vs int8 ONNX",
                "psnr_vs_fp32_tflite_db": "PSNR vs fp32 TFLite", "psnr_vs_fp32_onnx_db": "PSNR vs fp32 ONNX"}


def _parity(name: str, res: dict, file: str) -> str:
    par = res.get("parity", {})
    if name in ("ort", "tflite"):
        par = par.get(file, {})
    if name == "coreml":
        w = res.get("weights_vs_pytorch")
        if file == res["files"][0] and w and w.get("convs"):
            return (f"{w['convs']} conv weights match PyTorch to {w['max_abs_diff']:.2g} (fp16); "
                    "predictions are compared on macOS (tests, -m macos)")
        return "compressed from the fp16 package; spec, image I/O and contract checked"
    bits = []
    for key, text in _PARITY_TEXT.items():
        if key not in par:
            continue
        v = par[key]
        if key.endswith("_db"):
            bits.append(f"{text} {v:.1f} dB" if v is not None else f"{text}: identical")
        else:
            bits.append(f"{text} {v:.2g}")
    return "; ".join(bits) or "-"


def _latency(res: dict, file: str) -> str:
    lat = res.get("latency", {})
    lat = lat.get(file, lat) if isinstance(lat, dict) else {}
    return f"{lat['p50_ms']:.2f} ms" if "p50_ms" in lat else "-"


def _judged(teacher: dict | None, direction: str) -> dict:
    return ((teacher or {}).get("metrics", {}).get("judge") or {}).get(direction) or {}


def _directions(direction: str) -> list[str]:
    """The teacher generators behind a student: a swap student learned both."""
    return ["AB", "BA"] if direction == "swap" else [direction]


def _weak_effect(teacher: dict | None, direction: str) -> str:
    """A warning when the teacher's judge numbers say the effect is faint (the student copies its teacher)."""
    if direction == "swap":
        return " ".join(w for w in (_weak_effect(teacher, d) for d in _directions(direction)) if w)
    j = _judged(teacher, direction)
    sign = 1 if direction == "AB" else -1
    if "mean_shift_years" in j and sign * j["mean_shift_years"] < 5:
        return (f"the effect is weak: on held-out faces the age judge sees a mean change of {j['mean_shift_years']:+} "
                f"years from the teacher, which needs more training")
    if j.get("flip_rate") is not None and j["flip_rate"] < 0.5:
        return (f"the effect is weak: the gender judge sees only {100 * j['flip_rate']:.0f}% of held-out faces "
                "flipped by the teacher, which needs more training")
    if "anime_rate_after" in j and j["anime_rate_after"] < 0.5:
        return (f"the effect is weak: the anime judge calls only {100 * j['anime_rate_after']:.0f}% of the "
                "teacher's outputs anime, which needs more training")
    return ""


def _teacher_strength(teacher: dict | None, direction: str) -> str:
    """The teacher's effect on held-out faces, by the effect's judge (recorded in its snapshot manifest)."""
    if direction == "swap":
        return "\n".join(_teacher_strength(teacher, d) for d in _directions(direction))
    j = _judged(teacher, direction)
    if not j:
        return ("The teacher's effect was not measured by a judge; `python benchmarks/quality.py --effect "
                "<effect> --teacher <teacher>` measures it.\n")
    rows = {k: v for k, v in j.items() if k not in ("judge", "direction", "faces")}
    progress = (teacher or {}).get("progress", {})
    lines = [f"Strength of the effect ({direction}): the `{j['judge']}` judge on {j['faces']} held-out faces before "
             f"and after the teacher (its last stage: step {progress.get('step')}, "
             f"{progress.get('images_seen_per_domain')} images seen per domain; every stage under How it was made); "
             "the student copies its teacher.\n", "| judge figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines) + "\n"


def _history(who: str, manifest: dict) -> str:
    """A teacher's or student's training stages: its manifest's lineage (a warm-started network lists every stage,
    its own run last), else the one run the manifest describes."""
    progress, config = manifest.get("progress", {}), manifest.get("config", {})
    stages = [(st.get("stage", "?"), st.get("iters"), st.get("batch"), st.get("where", ""))
              for st in manifest.get("lineage", [])]
    if not stages:
        stages = [("training run", progress.get("step"), config.get("batch"), config.get("device", ""))]
    lines = [f"- {who} training, stage by stage:\n", "  | stage | iterations | batch | where |",
             "  |---|---:|---:|---|"]
    lines += [f"  | {name} | {f'{iters:,}' if isinstance(iters, int) else iters} | {batch} | {where} |"
              for name, iters, batch, where in stages]
    return "\n".join(lines) + "\n"


TEMPLATE = Path(__file__).with_name("model_card.md")  # string.Template: ${name} is filled in by render_model_card


def _intro(effect: str, domains: tuple[str, str] | None, direction: str, student: dict) -> dict:
    maps = ""
    if domains and direction == "swap":
        maps = (f"It maps faces of **{domains[0]}** to **{domains[1]}**, and **{domains[1]}** to **{domains[0]}**: one "
                "model for both directions.")
    elif domains:
        maps = f"It maps faces of **{domains[0]}** to **{domains[1]}**."
    notes = []
    strength = student.get("strength", 1.0)
    if strength != 1.0:
        notes.append(f"Effect strength {strength:g}: the student learned {strength:g} times the change its teacher "
                     "makes (`distill/pairs.py --strength`), because the teacher alone is faint.")
    if student.get("face_mask"):
        notes.append("The change is confined to the inner face (`distill/pairs.py --face-mask`): the student learned "
                     "to leave hair, background and neck as they are.")
    return {"what": EFFECTS.get(effect, f"the `{effect}` effect"), "maps": maps,
            "notes": "".join(f"\n\n{n}" for n in notes)}


def _made_by(teacher: dict | None) -> str:
    if teacher:
        return ("Made by facefx: a CycleGAN teacher learned the effect from two unpaired face sets, labelled real "
                "faces, and this small Pix2Pix student was distilled from those pairs. The student learns a residual "
                "on its input, so it keeps the face's detail and changes what the effect changes.")
    return ("Made by facefx from a distilled Pix2Pix student; its teacher's manifest was not found when this card was "
            "written, so the lineage below stops at the student.")


def _warnings(formats: dict, teacher: dict | None, direction: str, student: dict) -> str:
    """The **Warnings:** paragraph (and the blank line after it), or nothing."""
    warnings = [f"{FORMAT_NAMES.get(k, k)}: {r['warning']}" for k, r in formats.items() if r.get("warning")]
    weak = _weak_effect(teacher, direction)
    if weak:
        warnings.append(weak)
    if not student.get("metrics"):
        warnings.append("the student manifest records no quality metrics")
    return "**Warnings:** " + " ".join(f"{w}." for w in warnings) + "\n\n" if warnings else ""


def _data_lines(data: list[tuple[str, str]], face_sets: list[str]) -> str:
    if data:
        return "\n".join(f"- **{name}**: {terms}." for name, terms in data)
    return ("- The face sets' sources were not recognised; check the terms of the data in: "
            + (", ".join(f"`{p}`" for p in sorted(set(face_sets))) or "(unknown)") + ".")


def _lineage_rows(export: dict) -> str:
    """The rows of the lineage table, each after a line break: the artifacts, then every export command (several
    when formats were added with --add)."""
    rows = [f"| {ref.get('kind')} | `{ref.get('path')}` | `{str(ref.get('hash'))[:12]}` | "
            f"`{ref.get('command') or '-'}` |" for ref in export.get("lineage", [])]
    rows += [f"| export | this folder | | `{command}` |" for command in export.get("commands", [export.get("command")])]
    return "".join(f"\n{r}" for r in rows)


def _made_of(export: dict, student: dict, teacher: dict | None, direction: str) -> str:
    """The lines under the lineage table: teacher and student networks and stages, int8 and export faces."""
    lines = []
    if teacher:
        gens = ", ".join(f"G_{d} `{json.dumps(teacher.get('network', {}).get('G_' + d, {}))}`"
                         for d in _directions(direction))
        lines += [f"- Teacher: CycleGAN at {teacher.get('resolution')} px, generator {gens}.",
                  _history("Teacher", teacher)]
    cost = student.get("cost")
    lines.append(f"- Student: `{json.dumps(student.get('network', {}).get('G', {}))}` at {export['resolution']} px"
                 + (f", {cost.get('gmac')} GMAC, {cost.get('params'):,} parameters"
                    if isinstance(cost, dict) and cost.get("params") else "") + ".")
    if len(student.get("lineage", [])) > 1:  # a warm-started student: every stage, as for the teacher
        lines.append(_history("Student", student))
    q = export.get("formats", {}).get("int8", {}).get("quantization")
    if q:
        lines.append(f"- int8: static {q['format']} quantization, {q['weights']} weights per channel, "
                     f"{q['activations']} activations, {q['calibration']}.")
    faces = export.get("faces", {})
    if faces:
        lines.append(f"- Export faces: {faces.get('calibration')} calibrate int8, {faces.get('evaluation')} measure "
                     f"parity ({faces.get('note')}); from {', '.join(f'`{p}`' for p in faces.get('face_sets', []))}.")
    return "\n".join(lines)


def _metrics(student: dict) -> str:
    if not student.get("metrics"):
        return "No student metrics recorded."
    rows = [f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in student["metrics"].items()]
    return "\n".join(["Student against its teacher, on held-out faces (from the student manifest):\n",
                      "| metric | value |", "|---|---|", *rows])


def _file_rows(formats: dict) -> str:
    """The rows of the files table, each after a line break: one per model file of every exported format."""
    rows = []
    for name, res in formats.items():
        if res.get("status") != "ok":
            rows.append(f"| - | {FORMAT_NAMES.get(name, name)} | - | - | {res.get('status')} | - |")
            continue
        for f in res["files"]:
            if f.endswith(".config"):
                continue
            precision = res.get("precision", "")
            if name in ("ort", "tflite"):
                precision = next((p for p in ("int8", "fp16") if f"_{p}" in f), "fp32")
                precision += " (CPU-optimized)" if f.endswith("_cpu.ort") else ""
            if name == "coreml":
                precision = res.get("packages", {}).get(f, {}).get("precision", precision)
            rows.append(f"| `{f}` | {FORMAT_NAMES.get(name, name)} | {precision} | {_mb(res['sizes'][f])} | "
                        f"{_parity(name, res, f)} | {_latency(res, f)} |")
    return "".join(f"\n{r}" for r in rows)


def _measured_elsewhere(formats: dict) -> str:
    """A paragraph per format added later (--formats mobile), measured by its own run on another machine."""
    out = []
    for name, res in formats.items():
        m = res.get("machine")
        if res.get("status") == "ok" and m and "latency" in res:
            out.append(f"{FORMAT_NAMES.get(name, name)} latency: measured by that format's own run on {m.get('cpu')} "
                       f"({m.get('cores')} cores, {m.get('threads')} thread; 1-minute load "
                       f"{m.get('load_avg_1min', '?')} while measuring).\n\n")
    return "".join(out)


def _ort_coverage(effect: str, formats: dict) -> str:
    """Which nodes of the .ort files the NNAPI and CoreML execution providers take, where measured."""
    ort = formats.get("ort", {})
    eps = ort.get("execution_providers", {}) if ort.get("status") == "ok" else {}
    coverage = "; ".join(f"`{f}`: NNAPI takes {e['nnapi']['supported_nodes']}/{e['nnapi']['nodes']} nodes, CoreML "
                         f"(ML program) {e['coreml_mlprogram']['supported_nodes']}/{e['coreml_mlprogram']['nodes']} in "
                         f"{e['coreml_mlprogram']['partitions']} partition(s)"
                         for f, e in eps.items() if "nnapi" in e)
    if not coverage:
        return ""
    return (f"The `.ort` files keep standard ONNX ops (basic optimizations) so the NNAPI, CoreML and XNNPACK execution "
            f"providers can take them (ONNX Runtime's usability checker: {coverage}). "
            + (f"`{effect}_int8_cpu.ort` is optimized for the CPU EP only (fused int8 kernels). "
               if any(f.endswith("_cpu.ort") for f in ort.get("files", [])) else "") + "\n\n")


def _contract(export: dict) -> str:
    contract = dict(export.get("contract") or {})
    keys = ("contract_version", "effect", "size", "input", "output", "pixels", "crop")
    return "{\n" + ",\n".join(f'  "{k}": {json.dumps(contract.get(k))}' for k in keys) + "\n}"


def render_model_card(export: dict, student: dict, teacher: dict | None = None,
                      faces: dict[str, dict] | None = None) -> str:
    """Markdown model card for models/<effect>/ (the template model_card.md, filled in); `faces` maps face-set
    paths to their manifests (data sources)."""
    effect, size = export["effect"], export["resolution"]
    formats, machine = export.get("formats", {}), export.get("machine", {})
    direction = student.get("direction") or "AB"
    faces_by_path = dict(faces or {})
    domains = _domain_names(teacher, "BA" if direction == "BA" else "AB", faces_by_path)
    face_sets = [str(p) for p in export.get("faces", {}).get("face_sets", [])]
    if teacher:
        face_sets += [p for d in teacher.get("domains", {}).values() for p in d]
    data = _datasets(faces_by_path, face_sets)
    threads = machine.get("threads", 1)
    utk = any(n.startswith("UTKFace") for n, _ in data)
    tflite = formats.get("tflite", {}).get("status") == "ok"
    return string.Template(TEMPLATE.read_text()).substitute(
        effect=effect, size=size, **_intro(effect, domains, direction, student), made_by=_made_by(teacher),
        warnings=_warnings(formats, teacher, direction, student),
        representation=(" (UTKFace's age, gender and ethnicity labels are coarse and unevenly distributed)"
                        if utk else ""),
        data=_data_lines(data, face_sets), lineage_rows=_lineage_rows(export),
        made_of=_made_of(export, student, teacher, direction), metrics=_metrics(student),
        teacher_strength=_teacher_strength(teacher, direction),
        threads=f"{threads} thread{'s' if threads != 1 else ''}", cpu=machine.get("cpu", "unknown CPU"),
        cores=machine.get("cores"), load=machine.get("load_avg_1min", "?"), ort=machine.get("onnxruntime", "?"),
        ort_min=machine.get("onnxruntime", ""), file_rows=_file_rows(formats),
        measured_elsewhere=_measured_elsewhere(formats), contract=_contract(export),
        ort_coverage=_ort_coverage(effect, formats), tflite=_tflite(effect, size) if tflite else "")


def _tflite(effect: str, size: int) -> str:
    return (f"**LiteRT (TFLite)**: `{effect}.tflite` (fp32), `{effect}_fp16.tflite` (fp16 weights, the GPU "
            f"delegate's precision) and `{effect}_int8.tflite` (int8 weights and activations, float input and "
            f"output) take float32 NHWC (1, {size}, {size}, 3) RGB in [-1, 1] and return the same, with no "
            "TRANSPOSE at the ends; LiteRT's analyzer finds each GPU-delegate compatible. Their TFLite metadata "
            "(image input and output, NormalizationOptions mean 127.5 std 127.5) is what Android Studio's ML "
            "binding, the Task Library and MediaPipe read; the contract is in it as custom metadata `facefx`.\n\n")
