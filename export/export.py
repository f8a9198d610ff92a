"""Export a student to the shipped formats -> models/<effect>/ (ONNX, int8 ONNX, ORT Mobile, CoreML, TFLite).

    python export/export.py --student artifacts/students/age/00003-AB-256px
    python export/export.py --student artifacts/students/age/00003-AB-256px --formats onnx,int8 --calib 64
    python export/export.py --student artifacts/students/age/00003-AB-256px --formats tflite --add
    python export/export.py --list-formats

Every format is timed, size-logged and parity-checked on held-out real faces; a format that cannot be built
here is reported "unavailable: <reason>". The old models/<effect>/ is replaced only once the new one is
complete. Then: python realtime/webcam.py --effect <effect>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from facefx.errors import cli_main  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    from facefx.export import ExportConfig

    d = ExportConfig(student="")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--student", help="student run folder (artifacts/students/<effect>/<run>)")
    ap.add_argument("--out", help="output folder (default: models/<effect>); replaced once the export is complete")
    ap.add_argument("--formats", help="comma-separated formats (default: every format available here; "
                                      "see --list-formats)")
    ap.add_argument("--calib", type=int, default=d.calib,
                    help=f"train-split faces calibrating int8 (default {d.calib})")
    ap.add_argument("--eval", type=int, default=d.eval_faces, dest="eval_faces",
                    help=f"held-out faces for parity and PSNR (default {d.eval_faces})")
    ap.add_argument("--faces", nargs="+", help="face set folder(s) for calibration and parity "
                                               "(default: the student's source domain, from its lineage)")
    ap.add_argument("--repeats", type=int, default=d.repeats, help=f"latency repeats (default {d.repeats})")
    ap.add_argument("--threads", type=int, default=d.threads,
                    help=f"ONNX Runtime threads for parity and latency (default {d.threads})")
    ap.add_argument("--int8-activations", choices=["int8", "uint8"], default=d.int8_activations,
                    help="int8 model's activation type: uint8 (U8S8) is fast on x86; int8 is ONNX Runtime's "
                         f"QDQ default (default {d.int8_activations})")
    ap.add_argument("--add", action="store_true",
                    help="keep the formats already in --out (an export of this same student) and make only "
                         "--formats; e.g. --formats tflite from an environment with litert-torch")
    ap.add_argument("--list-formats", action="store_true", help="print the formats table and exit")
    ap.add_argument("--dry-run", action="store_true", help="print what would be exported, write nothing")
    return ap.parse_args(argv)


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.errors import FacefxError
    from facefx.export import ExportConfig, export_formats, export_student, plan

    args = parse(argv)
    if args.list_formats:
        rows = export_formats()
        print(f"{'format':<8} {'suffix':<12} {'function':<14} {'needs':<32} status")
        for r in rows:
            print(f"{r['name']:<8} {r['suffix']:<12} {r['function']:<14} {r['needs']:<32} {r['status']}")
        return
    if not args.student:
        raise FacefxError("pass --student RUN_FOLDER (a student made by distill/student.py), or --list-formats")
    if args.calib < 1 or args.eval_faces < 1 or args.repeats < 1 or args.threads < 1:
        raise FacefxError("--calib, --eval, --repeats and --threads must be at least 1")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    cfg = ExportConfig(student=args.student, out=args.out, formats=formats, calib=args.calib,
                       eval_faces=args.eval_faces, faces=args.faces, repeats=args.repeats, threads=args.threads,
                       int8_activations=args.int8_activations, add=args.add)
    if args.dry_run:
        print(json.dumps(plan(cfg), indent=2))
        return
    out, manifest = export_student(cfg)
    print(f"wrote {out} ({', '.join(k for k, v in manifest['formats'].items() if v['status'] == 'ok')}); "
          f"model card: {out / 'README.md'}")
    print(f"next: python realtime/webcam.py --effect {manifest['effect']}")


if __name__ == "__main__":
    main()
