"""Export a student to the shipped formats -> models/<effect>/ (ONNX, int8 ONNX, ORT Mobile, CoreML, TFLite).

    python export/export.py --student artifacts/students/age/00003-AB-256px
    python export/export.py --student artifacts/students/age/00003-AB-256px --formats onnx,int8 --calib 64
    python export/export.py --student artifacts/students/age/00003-AB-256px --formats tflite --add
    python export/export.py --effect age --formats mobile   # TFLite, .ort, CoreML next to the committed ONNX
    python export/export.py --list-formats
    python export/export.py --upgrade-contract models/age --student students/age   # contract v1 -> v2, graphs kept

Every format is timed, size-logged and parity-checked on held-out real faces; a format that cannot be built
here is reported "unavailable: <reason>". The old models/<effect>/ is replaced only once the new one is
complete. Then: python realtime/webcam.py --effect <effect>
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from facefx.errors import cli_main


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Any]:
    """The options and the export config (None with --list-formats or --upgrade-contract)."""
    from facefx import options
    from facefx.errors import FacefxError
    from facefx.export.exporter import ExportConfig

    ap = options.ArgumentParser(description=__doc__)
    options.add_recipe_option(ap, "export")
    options.add_options(ap, ExportConfig)
    ap.add_argument("--effect", help="the committed student snapshot students/<EFFECT> (instead of --student)")
    ap.add_argument("--list-formats", action="store_true", help="print the formats table and exit")
    ap.add_argument("--upgrade-contract", metavar="FOLDER",
                    help="rewrite the contract of FOLDER's ONNX files to the current version (graphs untouched), "
                         "write its contract.json and update its manifest hashes; --student gives face_mask")
    ap.add_argument("--dry-run", action="store_true", help="print what would be exported, write nothing")
    args = ap.parse_args(argv)
    if args.list_formats:
        return args, None
    if args.effect:
        if args.student:
            raise FacefxError("pass --effect or --student, not both")
        args.student = str(Path("students") / args.effect)
        if not Path(args.student, "manifest.json").is_file():
            raise FacefxError(f"no student snapshot {args.student}; shipped effects: "
                              f"{', '.join(sorted(p.name for p in Path('students').glob('*') if p.is_dir()))}")
    if args.upgrade_contract:
        if not args.student:
            raise FacefxError("--upgrade-contract needs --student (the student snapshot the folder was exported from)")
        return args, None
    values = options.resolve(ExportConfig, args, recipe=options.read_recipe(args, ExportConfig, "export"))
    if not values.get("student"):
        raise FacefxError("pass --student RUN_FOLDER (a student made by distill/student.py), --effect EFFECT, "
                          "--recipe FILE, or --list-formats")
    return args, ExportConfig(**values)


@cli_main
def main(argv: list[str] | None = None) -> None:
    from facefx.export.exporter import export_formats, export_student, plan

    args, cfg = parse(argv)
    if args.list_formats:
        rows = export_formats()
        print(f"{'format':<8} {'suffix':<12} {'function':<14} {'needs':<32} status")
        for r in rows:
            print(f"{r['name']:<8} {r['suffix']:<12} {r['function']:<14} {r['needs']:<32} {r['status']}")
        return
    if args.upgrade_contract:
        from facefx.export.exporter import upgrade_contracts
        from facefx.manifest import read_manifest

        done = upgrade_contracts(Path(args.upgrade_contract), read_manifest(args.student, kind="student"))
        print(f"upgraded {args.upgrade_contract}: {', '.join(done)}")
        return
    if args.dry_run:
        print(json.dumps(plan(cfg), indent=2))
        return
    out, manifest = export_student(cfg)
    print(f"wrote {out} ({', '.join(k for k, v in manifest['formats'].items() if v['status'] == 'ok')}); "
          f"model card: {out / 'README.md'}")
    print(f"next: python realtime/webcam.py --effect {manifest['effect']}")


if __name__ == "__main__":
    main()
