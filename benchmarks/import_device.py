"""Import a benchmark measured on a device into benchmarks/results/<device>.{csv,md,png}.

    python benchmarks/import_device.py bm_gpu.txt --device "Pixel 7"                 # TFLite benchmark_model
    python benchmarks/import_device.py perf_nnapi.txt --device "Pixel 7" --backend ort-nnapi --model age_int8.ort
    python benchmarks/import_device.py coreml_report.txt --device "iPhone 14" --model age.mlpackage
    python benchmarks/import_device.py facefx-benchmark.json --device "Pixel 7 Chrome"   # the web app's record

The tool is recognised from the file (or --tool); what its output does not say (the model for
onnxruntime_perf_test, the execution provider it ran) comes from the options. How to run each tool on a
phone: benchmarks/README.md. Exit 2 with one line for a file that is not such output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facefx.errors import cli_main

REPO = Path(__file__).resolve().parents[1]


def parse(argv: list[str] | None) -> argparse.Namespace:
    from facefx.bench.device_import import TOOLS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="exit codes: 0 imported, 2 bad input (one line says what to fix)")
    ap.add_argument("file", type=Path, help="the tool's saved console output, or the web app's JSON record")
    ap.add_argument("--device", required=True, help='device name, e.g. "Pixel 7" (names the results files)')
    ap.add_argument("--tool", choices=TOOLS, help="which tool wrote FILE (default: recognised from its content)")
    ap.add_argument("--model", help="model file measured (when the output does not name it)")
    ap.add_argument("--backend", help="e.g. ort-nnapi, ort-xnnpack, ort-coreml, tflite-gpu (when the output "
                                      "does not say)")
    ap.add_argument("--precision", help="fp32, fp16, int8 ... (default: from the model's file name)")
    ap.add_argument("--threads", type=int, help="threads the tool ran with (when the output does not say)")
    ap.add_argument("--size", type=int, help="crop side in pixels (e.g. 256)")
    ap.add_argument("--cpu", help='the device\'s chip, e.g. "Tensor G2" (shown with the device name)')
    ap.add_argument("--note", help="free text kept with the rows, e.g. the OS and app versions")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results",
                    help="results folder (default benchmarks/results)")
    ap.add_argument("--no-plot", action="store_true", help="write the .csv and .md only")
    return ap.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.bench.device_import import import_file
    from facefx.errors import FacefxError

    args = parse(argv)
    if args.threads is not None and args.threads < 1:
        raise FacefxError("--threads must be at least 1")
    csv_path, rows = import_file(args.file, args.device, args.results, tool=args.tool, plot=not args.no_plot,
                                 model=args.model, backend=args.backend, precision=args.precision,
                                 threads=args.threads, size=args.size, note=args.note,
                                 cpu=args.cpu)
    for r in rows:
        print(f"{r['device']}: {r['model']} {r['backend']} {r['precision']} p50 {r['p50_ms']} ms "
              f"({r['fps']} FPS) [{r['kind']}{', ' + r['stage'] if r['stage'] else ''}]")
    print(f"wrote {csv_path} and {csv_path.with_suffix('.md').name}")


if __name__ == "__main__":
    main()
