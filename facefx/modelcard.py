"""Model cards: models/<effect>/README.md, rendered from the export manifest and the manifests it came from.

Input: the export manifest (formats, sizes, parity, latency, machine), the student manifest (network, cost,
metrics, command), the teacher manifest (domains, resolution, command) and, where found, the face sets'
manifests (data sources, whose terms the card repeats). Output: markdown text. Never imports torch.
"""

from __future__ import annotations

import json
import re
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


_PARITY_TEXT = {"max_abs_diff_vs_pytorch": "max abs diff vs PyTorch", "psnr_vs_fp32_db": "PSNR vs fp32",
                "psnr_vs_int8_onnx_db": "PSNR vs int8 ONNX"}


def _parity(name: str, res: dict, file: str) -> str:
    par = res.get("parity", {})
    if name == "ort":
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


def render_model_card(export: dict, student: dict, teacher: dict | None = None,
                      faces: dict[str, dict] | None = None) -> str:
    """Markdown model card for models/<effect>/; `faces` maps face-set paths to their manifests (data sources)."""
    effect = export["effect"]
    size = export["resolution"]
    formats = export.get("formats", {})
    machine = export.get("machine", {})
    direction = student.get("direction") or "AB"
    faces_by_path = dict(faces or {})
    domains = _domain_names(teacher, "BA" if direction == "BA" else "AB", faces_by_path)
    face_sets = [str(p) for p in export.get("faces", {}).get("face_sets", [])]
    if teacher:
        face_sets += [p for d in teacher.get("domains", {}).values() for p in d]
    L: list[str] = []
    add = L.append

    add(f"# facefx `{effect}` effect\n")
    what = EFFECTS.get(effect, f"the `{effect}` effect")
    add(f"A compact image-to-image network that {what}, on {size}x{size} face crops, fast enough for live "
        "video on phones and laptops. "
        + (f"It maps faces of **{domains[0]}** to **{domains[1]}**, and **{domains[1]}** to **{domains[0]}**: one "
           "model for both directions." if domains and direction == "swap" else
           f"It maps faces of **{domains[0]}** to **{domains[1]}**." if domains else ""))
    strength = student.get("strength", 1.0)
    if strength != 1.0:
        add(f"\nEffect strength {strength:g}: the student learned {strength:g} times the change its teacher makes "
            "(`distill/pairs.py --strength`), because the teacher alone is faint.")
    if student.get("face_mask"):
        add("\nThe change is confined to the inner face (`distill/pairs.py --face-mask`): the student learned to leave "
            "hair, background and neck as they are.")
    add("")
    if teacher:
        add("Made by facefx: a CycleGAN teacher learned the effect from two unpaired face sets, labelled real faces, "
            "and this small Pix2Pix student was distilled from those pairs. The student learns a residual on its "
            "input, so it keeps the face's detail and changes what the effect changes.\n")
    else:
        add("Made by facefx from a distilled Pix2Pix student; its teacher's manifest was not found when this card "
            "was written, so the lineage below stops at the student.\n")

    warnings = [f"{FORMAT_NAMES.get(k, k)}: {r['warning']}" for k, r in formats.items() if r.get("warning")]
    weak = _weak_effect(teacher, direction)
    if weak:
        warnings.append(weak)
    if not student.get("metrics"):
        warnings.append("the student manifest records no quality metrics")
    if warnings:
        add("**Warnings:** " + " ".join(f"{w}." for w in warnings) + "\n")

    add("## Intended use and limits\n")
    data = _datasets(faces_by_path, face_sets)
    add("Research and demonstration of on-device face effects. The output is an image transformation, not a "
        "prediction: it says nothing about a person's real age or gender and must not be used to identify, "
        "classify or make decisions about people. The training faces are not representative of everyone"
        + (" (UTKFace's age, gender and ethnicity labels are coarse and unevenly distributed)"
           if any(n.startswith("UTKFace") for n, _ in data) else "")
        + "; expect weaker results for under-represented groups, strong head turns, occlusions and lighting unlike "
        "the training photos.\n")

    add("## Data and its terms\n")
    for name, terms in data:
        add(f"- **{name}**: {terms}.")
    if not data:
        add("- The face sets' sources were not recognised; check the terms of the data in: "
            + (", ".join(f"`{p}`" for p in sorted(set(face_sets))) or "(unknown)") + ".")
    add("- Because of these terms the weights are released for **research use only**; the code is Apache-2.0.\n")

    add("## How it was made\n")
    add("| stage | artifact | content hash | command |")
    add("|---|---|---|---|")
    for ref in export.get("lineage", []):
        add(f"| {ref.get('kind')} | `{ref.get('path')}` | `{str(ref.get('hash'))[:12]}` | "
            f"`{ref.get('command') or '-'}` |")
    for command in export.get("commands", [export.get("command")]):  # several when formats were added (--add)
        add(f"| export | this folder | | `{command}` |")
    add("")  # a blank line ends the table; one between rows would split it
    if teacher:
        gens = ", ".join(f"G_{d} `{json.dumps(teacher.get('network', {}).get('G_' + d, {}))}`"
                         for d in _directions(direction))
        add(f"- Teacher: CycleGAN at {teacher.get('resolution')} px, generator {gens}.")
        add(_history("Teacher", teacher))
    add(f"- Student: `{json.dumps(student.get('network', {}).get('G', {}))}` at {size} px"
        + (f", {student['cost'].get('gmac')} GMAC, {student['cost'].get('params'):,} parameters"
           if isinstance(student.get("cost"), dict) and student["cost"].get("params") else "") + ".")
    if len(student.get("lineage", [])) > 1:  # a warm-started student: every stage, as for the teacher
        add(_history("Student", student))
    q = formats.get("int8", {}).get("quantization")
    if q:
        add(f"- int8: static {q['format']} quantization, {q['weights']} weights per channel, {q['activations']} "
            f"activations, {q['calibration']}.")
    faces = export.get("faces", {})
    if faces:
        add(f"- Export faces: {faces.get('calibration')} calibrate int8, {faces.get('evaluation')} measure parity "
            f"({faces.get('note')}); from {', '.join(f'`{p}`' for p in faces.get('face_sets', []))}.")
    add("")

    add("## Metrics\n")
    if student.get("metrics"):
        add("Student against its teacher, on held-out faces (from the student manifest):\n")
        add("| metric | value |")
        add("|---|---|")
        for k, v in student["metrics"].items():
            add(f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |")
    else:
        add("No student metrics recorded.")
    add("")
    add(_teacher_strength(teacher, direction))

    add("## Files, parity and speed\n")
    threads = machine.get("threads", 1)
    add(f"Latency: median of one {size}x{size} image, ONNX Runtime CPU, {threads} thread{'s' if threads != 1 else ''}, "
        "on "
        f"{machine.get('cpu', 'unknown CPU')} ({machine.get('cores')} cores; 1-minute load "
        f"{machine.get('load_avg_1min', '?')} while measuring), onnxruntime {machine.get('onnxruntime', '?')}. "
        "Parity: outputs on held-out real faces, values in [-1, 1]. The `.ort` files are optimized for ARM phones, "
        "so their latency on this machine says little about a phone's.\n")
    add("| file | format | precision | size | parity | latency |")
    add("|---|---|---|---|---|---|")
    for name, res in formats.items():
        if res.get("status") != "ok":
            add(f"| - | {FORMAT_NAMES.get(name, name)} | - | - | {res.get('status')} | - |")
            continue
        for f in res["files"]:
            if f.endswith(".config"):
                continue
            precision = res.get("precision", "")
            if name == "ort":
                precision = "int8" if "_int8" in f else "fp32"
            if name == "coreml":
                precision = res.get("packages", {}).get(f, {}).get("precision", precision)
            par = _parity(name, res, f)
            add(f"| `{f}` | {FORMAT_NAMES.get(name, name)} | {precision} | {_mb(res['sizes'][f])} | {par} | "
                f"{_latency(res, f)} |")
    add("")

    add("## The contract (inside every model file)\n")
    add("Every file embeds this JSON under the metadata key `facefx` (ONNX `metadata_props`, CoreML "
        "`user_defined_metadata`, TFLite metadata), plus its own `format`, `precision` and export metrics. Feed the "
        "model faces cropped with exactly this geometry: the keypoint template is where the eyes, nose tip and "
        "mouth centre land on the crop (fractions of its side).\n")
    contract = dict(export.get("contract", {}))
    add("```json")
    keys = ("contract_version", "effect", "size", "input", "output", "pixels", "crop")
    add("{\n" + ",\n".join(f'  "{k}": {json.dumps(contract.get(k))}' for k in keys) + "\n}")
    add("```\n")

    add("## How to use\n")
    add("**Python / desktop** (ONNX Runtime; the webcam loop does this):\n")
    add("```bash")
    add(f"python realtime/webcam.py --effect {effect}")
    add("```")
    add("```python")
    add("from facefx.runtime import load_model")
    add("from facefx.pixels import bgr_to_nchw, nchw_to_bgr")
    add(f'model = load_model("models/{effect}/{effect}_int8.onnx", effect="{effect}")  # checks the contract')
    add(f"out_bgr = nchw_to_bgr(model(bgr_to_nchw(face_crop_bgr)))  # ({size}, {size}, 3) uint8 crop in and out")
    add("```\n")
    add(f"**iOS** (Core ML, iOS 16+): add `{effect}.mlpackage` (or `{effect}_w8` / `{effect}_pal6`, smaller) "
        f"to the Xcode project. Input `image` and output `output` are {size}x{size} RGB images, so a "
        "`CVPixelBuffer` goes in and one comes out; the [-1, 1] scaling happens inside the model.\n")
    add("```swift")
    add("// Xcode compiles the .mlpackage into a .mlmodelc in the app bundle")
    add(f'let url = Bundle.main.url(forResource: "{effect}", withExtension: "mlmodelc")!')
    add("let model = try MLModel(contentsOf: url)")
    add('let contract = model.modelDescription.metadata[.creatorDefinedKey] as? [String: String]  // ["facefx"]')
    add(f"// faceCrop: a {size}x{size} CVPixelBuffer (32BGRA is fine), cropped with the contract's crop geometry")
    add('let input = try MLDictionaryFeatureProvider(dictionary: ["image": MLFeatureValue(pixelBuffer: faceCrop)])')
    add('let result = try model.prediction(from: input).featureValue(for: "output")?.imageBufferValue')
    add("```\n")
    add(f"**Android** (ONNX Runtime Mobile): ship `{effect}_int8.ort` (or `{effect}.ort`) with "
        "`com.microsoft.onnxruntime:onnxruntime-android`, or build a reduced runtime with "
        "`./build.sh --minimal_build --include_ops_by_config required_operators.config` (ONNX Runtime "
        f"{machine.get('onnxruntime', '')} or newer reads these files). Input `image`: float32 (1, 3, {size}, {size}) "
        "RGB in [-1, 1] (`pixel / 127.5 - 1`); output `output`: the same, map back with `(y + 1) * 127.5`.\n")
    add("```kotlin")
    add("val env = OrtEnvironment.getEnvironment()")
    add(f'val session = env.createSession(assets.open("{effect}_int8.ort").readBytes(), OrtSession.SessionOptions())')
    add('val contract = session.metadata.customMetadata["facefx"]  // JSON: size, crop geometry, pixels')
    add(f"val input = OnnxTensor.createTensor(env, floatBuffer, longArrayOf(1, 3, {size}, {size}))")
    add('val output = session.run(mapOf("image" to input))[0] as OnnxTensor')
    add("```\n")
    if formats.get("tflite", {}).get("status") == "ok":
        add(f"**LiteRT (TFLite)**: `{effect}.tflite` takes the same float32 NCHW tensor; its contract is in the "
            "model's metadata under `facefx`.\n")
    add("The face must be cropped as in training: detect the face (BlazeFace keypoints), warp it onto the template "
        "above with a similarity transform, run the model, and paste the result back with the inverse transform "
        "(`facefx.crop` does all three).\n")
    return "\n".join(L)
