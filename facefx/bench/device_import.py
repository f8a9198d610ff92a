"""Benchmarks measured on a phone (or any device), turned into rows of benchmarks/results/<device>.csv.

Each tool prints its own text; one parser per tool reads it (the recipes are in benchmarks/README.md):
  tflite-benchmark    TFLite/LiteRT `benchmark_model` (CPU, GPU delegate, NNAPI): its "Inference timings in us"
                      line and its "count=... avg=... std=..." statistics line
  ort-perf-test       ONNX Runtime `onnxruntime_perf_test` (CPU, NNAPI, XNNPACK, CoreML EP): "Average inference
                      time cost", "Number of inferences per second", "P50 Latency" ... lines
  xcode-coreml        Xcode's Core ML performance report, transcribed as "key: value" lines (Xcode shows the
                      report in its UI and has no documented text export)
  web                 the web app's benchmark record (JSON: rows in the results schema, or {"rows": [...]})
Rows carry what the tool printed and what the command line adds (--model, --backend, ...); nothing is made up: a
figure the tool did not print stays empty. Torch-free.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from facefx.bench import benchmark as bm
from facefx.errors import FacefxError

TOOLS = ("tflite-benchmark", "ort-perf-test", "xcode-coreml", "web")


def detect_tool(text: str) -> str:
    """Which tool wrote this output."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return "web"
    if "Inference timings in us" in text or re.search(r"^\s*(INFO: )?Graph: \[", text, re.MULTILINE):
        return "tflite-benchmark"
    if "Average inference time cost" in text or "Number of inferences per second" in text:
        return "ort-perf-test"
    if (re.search(r"^\s*(prediction|median prediction)[^:\n]*:", text, re.IGNORECASE | re.MULTILINE)
            and "compute unit" in text.lower()):
        return "xcode-coreml"
    raise FacefxError("this file is not output of a known tool (TFLite benchmark_model, onnxruntime_perf_test, the "
                      "Xcode Core ML report transcription or the web app's benchmark JSON); see benchmarks/README.md")


def _num(pattern: str, text: str, flags: int = 0) -> float | None:
    m = re.search(pattern, text, flags)
    return float(m.group(1)) if m else None


def _ms(v: float | None, scale: float) -> float | str:
    return round(v * scale, 3) if v is not None else ""


def _fps(p50: float | str) -> float | str:
    return round(1000.0 / p50, 2) if isinstance(p50, float) and p50 > 0 else ""


def parse_tflite_benchmark(text: str) -> dict:
    """TFLite benchmark_model: the steady-state inference statistics (microseconds)."""
    stats = None
    for line in text.splitlines():  # the last statistics line that follows "Running benchmark" is the measurement
        if re.search(r"count=\d+", line) and "avg=" in line:
            stats = line
    if stats is None:
        avg = _num(r"Inference \(avg\):\s*([\d.eE+]+)", text)
        if avg is None:
            raise FacefxError("no inference timings in this benchmark_model output (no 'count=... avg=...' line); "
                              "was the run cut short?")
        stats = f"avg={avg}"
    fields = dict(re.findall(r"(\w+)=([\d.eE+-]+)", stats))
    median = fields.get("median") or fields.get("p50")
    p50 = float(median) / 1000 if median else float(fields["avg"]) / 1000
    graph = re.search(r"Graph: \[([^\]]+)\]", text)
    gpu = re.search(r"Use gpu: \[(1|true)\]", text, re.IGNORECASE)
    nnapi = re.search(r"Use NNAPI: \[(1|true)\]", text, re.IGNORECASE)
    xnn = re.search(r"Use xnnpack: \[(1|true)\]", text, re.IGNORECASE)
    backend = "tflite-gpu" if gpu else "tflite-nnapi" if nnapi else "tflite-xnnpack" if xnn else "tflite-cpu"
    threads = re.search(r"Num threads: \[(\d+)\]", text)
    return {"model": Path(graph.group(1)).name if graph else "", "backend": backend,
            "threads": int(threads.group(1)) if threads else "",
            "p50_ms": round(p50, 3), "p95_ms": _ms(float(fields["p95"]) if "p95" in fields else None, 1e-3),
            "repeats": int(fields["count"]) if "count" in fields else "",
            "spread_ms": _ms(float(fields["std"]) if "std" in fields else None, 1e-3),
            "note": ("benchmark_model median" if median else "benchmark_model avg (it printed no median)")
            + ("; spread = std" if "std" in fields else "")}


def parse_ort_perf_test(text: str) -> dict:
    """onnxruntime_perf_test: latencies (P50/P95 in seconds) or the average (ms)."""
    p50 = _num(r"P50 Latency:\s*([\d.eE+-]+)\s*s", text)
    p95 = _num(r"P95 Latency:\s*([\d.eE+-]+)\s*s", text)
    avg = _num(r"Average inference time cost:\s*([\d.eE+-]+)\s*ms", text)
    if p50 is None and avg is None:
        raise FacefxError("no latency in this onnxruntime_perf_test output (no 'P50 Latency' nor 'Average inference "
                          "time cost' line); was the run cut short?")
    lo, hi = _num(r"P5 Latency:\s*([\d.eE+-]+)\s*s", text), p95
    requests = _num(r"Total inference requests:\s*(\d+)", text)
    ep = re.search(r"-e\s+(\w+)", text)  # where the command line was pasted above the output
    return {"p50_ms": _ms(p50, 1000.0) if p50 is not None else round(avg, 3), "p95_ms": _ms(p95, 1000.0),
            "spread_ms": _ms(hi - lo, 1000.0) if lo is not None and hi is not None else "",
            "repeats": int(requests) if requests else "",
            "backend": f"ort-{ep.group(1).lower()}" if ep else "",
            "note": "onnxruntime_perf_test " + ("P50" if p50 is not None else "average (it printed no P50)")}


def parse_xcode_coreml(text: str) -> dict:
    """Xcode's Core ML performance report, transcribed: 'Median prediction: 3.1 ms', 'Compute units: All', ..."""
    kv = {}
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#"):
            k, v = line.split(":", 1)
            kv[k.strip().lower()] = v.strip()
    pred = next((v for k, v in kv.items() if "prediction" in k), None)
    m = re.match(r"([\d.]+)\s*(ms|s)\b", pred or "")
    if not m:
        raise FacefxError("no 'Median prediction: <n> ms' line in this Core ML report transcription; see "
                          "benchmarks/README.md")
    p50 = float(m.group(1)) * (1000.0 if m.group(2) == "s" else 1.0)
    units = kv.get("compute units", "")
    return {"p50_ms": round(p50, 3), "model": kv.get("model", ""), "backend": "coreml-" + slug_unit(units),
            "note": "Xcode Core ML performance report, median prediction"
            + (f"; load {kv['load']}" if kv.get("load") else "")
            + (f"; ops: {kv['compute unit mapping']}" if kv.get("compute unit mapping") else "")}


def slug_unit(units: str) -> str:
    return bm.slug(units) if units else "all"


def parse_web(text: str) -> list[dict]:
    """The web app's benchmark record: rows in the results schema (a list, or {"rows": [...]})."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise FacefxError(f"the web benchmark record is not JSON ({err.msg} at line {err.lineno})") from None
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise FacefxError("the web benchmark record holds no rows (a list of objects, or {\"rows\": [...]})")
    unknown = {k for r in rows for k in r} - set(bm.RESULT_COLUMNS)
    if unknown:
        raise FacefxError(f"the web benchmark record has columns this facefx does not know: {sorted(unknown)}")
    return rows


def import_rows(text: str, device: str, tool: str | None = None, **given) -> list[dict]:
    """Rows in the results schema from one tool's output; `given` fills columns the output does not say
    (model, backend, precision, threads, size, stage, note, date)."""
    tool = tool or detect_tool(text)
    if tool not in TOOLS:
        raise FacefxError(f"unknown tool {tool!r}; choose from {', '.join(TOOLS)}")
    given = {k: v for k, v in given.items() if v not in (None, "")}
    # Not this machine's CPU and libraries: the device's chip as the user names it, the tool as the version.
    header = {**bm.run_header(device=device), "cpu": given.pop("cpu", "chip not stated"), "versions": tool}
    if tool == "web":
        out = []
        for r in parse_web(text):
            row = {**r, **given, "device": device}
            row.setdefault("kind", "end-to-end")
            out.append(bm.result_row({**header, **{k: v for k, v in row.items() if k in ("date", "cpu", "versions")}},
                                     **{k: v for k, v in row.items() if k not in ("date", "device", "cpu",
                                                                                  "versions")}))
        return out
    parsed = {"tflite-benchmark": parse_tflite_benchmark, "ort-perf-test": parse_ort_perf_test,
              "xcode-coreml": parse_xcode_coreml}[tool](text)
    fields = {**{k: v for k, v in parsed.items() if v != ""}, **given}
    if not fields.get("backend"):
        raise FacefxError("this output does not say which execution provider ran; pass --backend (e.g. ort-nnapi)")
    if not fields.get("model"):
        raise FacefxError("this output does not name the model; pass --model (e.g. age_int8.ort)")
    note = "; ".join(x for x in (parsed.get("note"), given.get("note")) if x)
    fields.update(note=note, kind="model-only", fps=_fps(fields.get("p50_ms")))
    fields.setdefault("precision", _precision(fields["model"]))
    date = fields.pop("date", None)
    return [bm.result_row({**header, **({"date": date} if date else {})}, **fields)]


def _precision(model: str) -> str:
    name = model.lower()
    return next((p for p in ("int8", "fp16", "w8", "pal6") if p in name), "fp32" if name else "")


def import_file(path: str | Path, device: str, results: str | Path, tool: str | None = None,
                plot: bool = True, **given) -> tuple[Path, list[dict]]:
    """Append the rows of one output file to <results>/<device>.csv and re-render its .md (and .png)."""
    path = Path(path)
    if not path.is_file():
        raise FacefxError(f"{path} does not exist; pass the saved output of a benchmark tool")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise FacefxError(f"{path} is not text; save the tool's console output as a text file") from None
    if not device.strip():
        raise FacefxError("--device must name the device, e.g. \"Pixel 7\"")
    rows = import_rows(text, device.strip(), tool, **given)
    csv_path = Path(results) / f"{bm.slug(device)}.csv"
    bm.append_results(csv_path, rows)
    if plot:
        bm.render_device(csv_path)
    else:
        latest = bm.latest_run(bm.read_results(csv_path))
        csv_path.with_suffix(".md").write_text(f"# Benchmarks: {device.strip()}\n\n" + bm.render_markdown(latest))
    return csv_path, rows


__all__ = ["TOOLS", "detect_tool", "import_file", "import_rows", "parse_ort_perf_test", "parse_tflite_benchmark",
           "parse_web", "parse_xcode_coreml"]
