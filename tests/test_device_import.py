"""benchmarks/import_device.py: each on-device tool's output (format samples written from the tools' documentation,
tests/fixtures/device_outputs/*.FORMAT-SAMPLE.*, placeholder numbers) becomes rows of benchmarks/results/<device>."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from facefx.bench import benchmark as bm
from facefx.bench.device_import import detect_tool, import_file

SAMPLES = Path(__file__).parent / "fixtures" / "device_outputs"
REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sample, tool, given, expect", [
    ("tflite_benchmark_model_gpu.FORMAT-SAMPLE.txt", "tflite-benchmark", {},
     {"model": "age_fp16.tflite", "backend": "tflite-gpu", "precision": "fp16", "threads": "4", "p50_ms": "10.0",
      "repeats": "100", "fps": "100.0"}),
    ("onnxruntime_perf_test_nnapi.FORMAT-SAMPLE.txt", "ort-perf-test",
     {"model": "age_int8.ort", "backend": "ort-nnapi"},
     {"model": "age_int8.ort", "backend": "ort-nnapi", "precision": "int8", "p50_ms": "10.0", "p95_ms": "13.0",
      "repeats": "200"}),
    ("xcode_coreml_report.FORMAT-SAMPLE.txt", "xcode-coreml", {},
     {"model": "age.mlpackage", "backend": "coreml-all", "p50_ms": "5.0", "fps": "200.0"}),
])
def test_each_tools_output_becomes_a_model_only_row(tmp_path, sample, tool, given, expect):
    path = SAMPLES / sample
    assert detect_tool(path.read_text()) == tool
    csv_path, _ = import_file(path, "Pixel 7", tmp_path, plot=False, **given)
    assert csv_path == tmp_path / "pixel-7.csv"
    (row,) = bm.read_results(csv_path)
    assert row["device"] == "Pixel 7" and row["kind"] == "model-only"
    assert {k: row[k] for k in expect} == expect
    md = csv_path.with_suffix(".md").read_text()
    assert "Pixel 7" in md and expect["model"] in md


def test_the_web_apps_record_imports_as_end_to_end_rows_with_a_plot(tmp_path):
    csv_path, _ = import_file(SAMPLES / "web_benchmark.FORMAT-SAMPLE.json", "Pixel 7 Chrome", tmp_path)
    got = bm.read_results(csv_path)
    assert [(r["stage"], r["p50_ms"]) for r in got] == [("total", "50.0"), ("infer", "20.0")]
    assert {r["device"] for r in got} == {"Pixel 7 Chrome"} and got[0]["backend"] == "onnxruntime-web-wasm"
    assert csv_path.with_suffix(".png").stat().st_size > 1000
    # a second import of another tool appends to the same device's file
    import_file(SAMPLES / "xcode_coreml_report.FORMAT-SAMPLE.txt", "Pixel 7 Chrome", tmp_path, plot=False)
    assert len(bm.read_results(csv_path)) == 3


@pytest.mark.parametrize("content, given, message", [
    ("hello\n", {}, "not output of a known tool"),
    ("Average inference time cost: 10 ms\n", {"model": "age.ort"}, "pass --backend"),
    ("Average inference time cost: 10 ms\n", {"backend": "ort-cpu"}, "pass --model"),
    ("Graph: [age.tflite]\nNum threads: [1]\n", {}, "no inference timings"),
    ('{"rows": [{"p50": 3}]}', {}, "columns this facefx does not know"),
])
def test_bad_files_exit_2_with_one_line_and_write_nothing(tmp_path, content, given, message):
    bad = tmp_path / "out.txt"
    bad.write_text(content)
    args = [sys.executable, str(REPO / "benchmarks" / "import_device.py"), str(bad), "--device", "Pixel 7",
            "--results", str(tmp_path / "results")]
    for k, v in given.items():
        args += [f"--{k}", v]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO, check=False)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()
