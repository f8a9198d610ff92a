"""Export a student for the product: one function per format, each timed, size-logged and parity-checked.

Input artifact: a student, artifacts/students/<effect>/<NNNNN-desc>/ (manifest kind "student", G.safetensors),
and real face crops of the effect's source domain, found through its lineage (student -> pairs -> teacher ->
face sets): the 'train' split calibrates int8, the held-out 'test' split measures parity.

Output folder models/<effect>/ (built in a hidden temp folder; an old one is replaced only once the new one is
complete):
  <effect>.onnx                    fp32, (1, 3, S, S) "image" -> "output", RGB [-1, 1], BatchNorm folded
  <effect>_int8.onnx               static int8 QDQ, per-channel weights, calibrated on real faces
  <effect>.ort, <effect>_int8.ort  ORT Mobile models + required_operators.config for a reduced build
  <effect>.mlpackage               CoreML mlprogram fp16, image in -> image out (iOS 16+)
  <effect>_w8.mlpackage, <effect>_pal6.mlpackage   int8-weight and 6-bit palettized CoreML variants
  <effect>.tflite                  LiteRT fp32 (only where litert-torch is installed)
  manifest.json (kind "export")    every format's files, sizes, timings, parity, latency; README.md model card
Every model file carries the contract (runtime.CONTRACT_KEY) so an app needs nothing else.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import facefx
from facefx.bench.benchmark import machine_info, time_fn
from facefx.errors import FacefxError, deferred_interrupts
from facefx.manifest import (
    check_student,
    content_hash,
    hash_files,
    new_manifest,
    read_manifest,
    staged_dir,
    verify_files,
    write_manifest,
)
from facefx.metrics import psnr
from facefx.options import option
from facefx.runtime.contract import CONTRACT_KEY, CONTRACT_VERSION, SIDECAR, build_contract, validate_contract
from facefx.runtime.loader import EffectModel, load_model, read_contract
from facefx.runtime.pixels import PIXEL_CONTRACT, bgr_to_nchw
from facefx.train import nets

ONNX_OPSET = 18
ONNX_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| on [-1, 1] outputs for an fp32 format to ship
INT8_PSNR_TARGET_DB = 35.0  # int8 vs fp32 outputs; below it the export is flagged (not refused)
COREML_TARGET = "iOS16"  # first iOS with image outputs for mlprogram and palettized weights
REPO = Path(__file__).resolve().parents[2]
FILES_SECTION = "## Files, parity and speed\n"  # the model card's section from which formats are described


# ---- the formats table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Format:
    name: str
    suffix: str  # of the main file: models/<effect>/<effect><suffix>
    function: str  # Exporter method
    needs: tuple[str, ...]  # PyPI packages
    after: tuple[str, ...]  # formats whose files this one converts
    description: str


FORMATS = (
    Format("onnx", ".onnx", "export_onnx", ("onnx", "onnxscript", "onnxruntime"), (),
           "ONNX fp32 (ONNX Runtime: desktop, webcam loop)"),
    Format("int8", "_int8.onnx", "export_int8", ("onnx", "onnxruntime"), ("onnx",),
           "ONNX int8 QDQ, static, per-channel weights"),
    Format("ort", ".ort", "export_ort", ("onnxruntime",), ("onnx",),
           "ORT Mobile: basic-optimized .ort for the NNAPI/CoreML/XNNPACK EPs (+ _int8_cpu.ort if faster)"),
    Format("coreml", ".mlpackage", "export_coreml", ("coremltools",), (),
           "CoreML mlprogram fp16, image in/out (+ int8-weight, 6-bit palettized)"),
    Format("tflite", ".tflite", "export_tflite", ("litert-torch", "ai-edge-quantizer", "mediapipe"), (),
           "LiteRT (TFLite) NHWC fp32, fp16, int8, with TFLite metadata"),
)
# --formats mobile: what phones load, rebuilt on demand next to the committed ONNX files (kept, never remade).
MOBILE = ("ort", "coreml", "tflite")
_IMPORT_NAMES = {"litert-torch": "litert_torch", "ai-edge-quantizer": "ai_edge_quantizer"}
_UNAVAILABLE_HINTS = {
    "tflite": "litert-torch is not installed (it is large, so it has its own extra: pip install -e '.[tflite]', then "
              "add TFLite to an export with --formats tflite --add)",
}


def format_status(fmt: Format) -> str:
    """'available' or 'unavailable: <reason>' on this machine."""
    missing = [p for p in fmt.needs if importlib.util.find_spec(_IMPORT_NAMES.get(p, p)) is None]
    if not missing:
        return "available"
    return "unavailable: " + _UNAVAILABLE_HINTS.get(fmt.name, f"{', '.join(missing)} not installed")


def export_formats() -> list[dict]:
    """The formats table: name, suffix, function, needs, status (like ultralytics' export_formats())."""
    return [{"name": f.name, "suffix": f.suffix, "function": f.function, "needs": ", ".join(f.needs),
             "status": format_status(f), "description": f.description} for f in FORMATS]


def resolve_formats(requested: list[str] | None) -> tuple[list[Format], dict[str, str]]:
    """Formats to run in table order (plus those they convert from), and the unavailable ones with reasons."""
    by_name = {f.name: f for f in FORMATS}
    mobile = "mobile" in (requested or [])
    if mobile:
        requested = [n for n in requested if n != "mobile"] + list(MOBILE)
    unknown = [n for n in requested or [] if n not in by_name]
    if unknown:
        raise FacefxError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(by_name)}, or mobile")
    wanted = set(requested) if requested else set(by_name)
    for name in list(wanted):
        if not mobile:  # mobile converts the ONNX files already in the folder
            wanted.update(by_name[name].after)
    run, unavailable = [], {}
    for f in FORMATS:
        if f.name not in wanted:
            continue
        status = format_status(f)
        blocked = [a for a in f.after if a in unavailable and not mobile]
        if blocked:
            status = f"unavailable: needs {', '.join(blocked)}"
        if status == "available":
            run.append(f)
        else:
            unavailable[f.name] = status.removeprefix("unavailable: ")
    return run, unavailable


# ---- config, lineage, faces -------------------------------------------------------------------------------------
@dataclass
class ExportConfig:
    student: str = option(help="student run folder (artifacts/students/<effect>/<run>)")
    out: str | None = option(None, "output folder; replaced once the export is complete", none="models/<effect>")
    formats: list[str] | None = option(None, "comma-separated formats (see --list-formats); 'mobile' = ort,coreml,"
                                       "tflite converted next to the ONNX files already in --out (hashes checked)",
                                       split=",",
                                       none="every format available here")
    calib: int = option(128, "train-split faces calibrating int8", ge=1, le=100000)
    eval_faces: int = option(16, "held-out faces for parity and PSNR", ge=1, le=100000, flag="--eval")
    faces: list[str] | None = option(None, "face set folder(s) for calibration and parity", nargs="+",
                                     none="the student's source domain, from its lineage")
    repeats: int = option(20, "latency repeats (median reported)", ge=1, le=100000)
    threads: int = option(1, "ONNX Runtime threads for parity and latency", ge=1, le=1024)
    # int8 activations: unsigned (U8S8, the x86 VNNI kernel's native form) ran as fast as fp32 here while
    # signed activations ran 25-45% slower; weights are always signed, per channel.
    int8_activations: str = option("uint8", "int8 model's activation type: uint8 (U8S8) is fast on x86; int8 is ONNX "
                                   "Runtime's QDQ default", choices=("int8", "uint8"))
    # Keep the formats already in `out` (an export of this same student) and (re)make only `formats`: how a format
    # that needs its own environment (TFLite) joins an export made in the main one.
    add: bool = option(False, "keep the formats already in --out (an export of this same student) and make only "
                       "--formats; e.g. --formats tflite from an environment with litert-torch")

    def __post_init__(self) -> None:
        if self.formats and "mobile" in self.formats:
            self.add = True  # mobile formats are converted next to the ONNX files already in `out`, which stay


def _resolve_artifact(path: str) -> Path | None:
    """A parent path as written in a manifest (relative to where the command ran): cwd or the repo root."""
    for p in (Path(path), REPO / path):
        if (p / "manifest.json").is_file():
            return p
    return None


def lineage(folder: str | os.PathLike) -> list[tuple[Path, dict]]:
    """The artifact and its ancestors (breadth first) that can still be found on disk: [(folder, manifest)]."""
    out, queue, seen = [], [Path(folder)], set()
    while queue:
        p = queue.pop(0)
        if str(p.resolve()) in seen:
            continue
        seen.add(str(p.resolve()))
        try:
            m = read_manifest(p)
        except FacefxError:
            if not out:  # the artifact itself must be readable; a broken ancestor only ends the lineage there
                raise
            continue
        out.append((p, m))
        parents = m.get("parent") or []
        for ref in parents if isinstance(parents, list) else [parents]:
            found = _resolve_artifact(ref.get("path", ""))
            if found is not None:
                queue.append(found)
    return out


def source_face_sets(chain: list[tuple[Path, dict]]) -> tuple[list[Path], str]:
    """The face sets the effect is applied to (the student's inputs), and how they were found."""
    direction = next((m.get("direction") for _, m in chain if m.get("direction")), "AB")
    for p, m in chain:
        if m.get("kind") == "pairs" and m.get("face_sets"):
            sets = [_resolve_artifact(s) for s in m["face_sets"]]
            if all(sets):
                return sets, f"pairs {p} face_sets"
        if m.get("kind") == "teacher" and m.get("domains"):
            names = {"AB": ["A"], "BA": ["B"]}.get(direction, ["A", "B"])  # swap: both domains
            sets = [_resolve_artifact(s) for n in names for s in m["domains"][n]]
            if all(sets):
                return sets, f"teacher {p} domain {'+'.join(names)}"
    root = Path("artifacts/faces") if Path("artifacts/faces").is_dir() else REPO / "artifacts/faces"
    sets = sorted(p for p in root.glob("*") if (p / "manifest.json").is_file())
    if not sets:
        raise FacefxError("no face sets found for calibration (none in the student's lineage nor in "
                          f"{root}); pass --faces FOLDER (a face set made by train/prepare.py)")
    return sets, f"every face set in {root} (lineage not found)"


def _pick(paths: list[Path], n: int) -> list[Path]:
    """n paths spread evenly over the list (deterministic, covers every face set in it)."""
    if n >= len(paths):
        return list(paths)
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, n).round()]


def face_paths(face_sets: list[Path], crop: dict, calib: int, n_eval: int) -> tuple[list[Path], list[Path], str]:
    """(calibration paths from 'train', evaluation paths from 'test', note), from the sets in the student's crop
    geometry."""
    from facefx.train.prepare import load_faces

    geometry = {k: v for k, v in crop.items() if k != "size"}
    train, test, skipped = [], [], []
    for fs in face_sets:
        m, paths = load_faces(fs)
        if {k: v for k, v in m["crop"].items() if k != "size"} != geometry:
            skipped.append(str(fs))
            continue
        for item, p in zip(m["items"], paths):
            (test if item["split"] == "test" else train).append(p)
    if not train and not test:
        raise FacefxError(f"no face set in the student's crop geometry ({', '.join(skipped)} differ); "
                          "re-prepare them with this facefx or pass --faces")
    note = "calibration: 'train' split; evaluation: held-out 'test' split"
    if not test:  # a face set without a held-out split: evaluate on train faces not used for calibration
        test = train[len(train) // 2:]
        train = train[: len(train) // 2] or test
        note = "no 'test' split: calibration on the first half of 'train', evaluation on the second half"
    if not train:
        train = test
        note = "no 'train' split: calibration on 'test' faces"
    return _pick(train, calib), _pick(test, n_eval), note


def read_faces(paths: list[Path], size: int) -> np.ndarray:
    """(N, 3, size, size) float32 RGB [-1, 1] from face crop files (the pixel contract)."""
    from facefx.train.data import read_crops

    return bgr_to_nchw(read_crops(paths, size))


class FaceCalibrationReader:
    """onnxruntime CalibrationDataReader over a list of face crop files: one (1, 3, S, S) image per call."""

    def __init__(self, paths: list[Path], size: int, input_name: str = "image"):
        self.paths, self.size, self.input_name = list(paths), size, input_name
        self._next = 0

    def get_next(self) -> dict | None:
        if self._next >= len(self.paths):
            return None
        x = read_faces([self.paths[self._next]], self.size)
        self._next += 1
        return {self.input_name: x}

    def rewind(self) -> None:
        self._next = 0


# ---- measurements -----------------------------------------------------------------------------------------------
def latency_ms(model: EffectModel, x: np.ndarray, repeats: int, warmup: int = 3) -> dict:
    """Median and best single-image latency of a loaded model on (1, 3, S, S) (facefx.bench.benchmark.time_fn)."""
    t = time_fn(lambda: model(x[:1]), warmup=warmup, repeats=max(1, repeats))
    return {"p50_ms": round(t["p50_ms"], 3), "min_ms": round(t["min_ms"], 3), "repeats": t["repeats"]}


def size_of(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (.mlpackage)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Eval-mode copy with every Conv -> BatchNorm pair folded into the conv (torch.fx); unchanged if untraceable."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(net.eval())
    except Exception:  # any tracing failure: the ONNX optimizer folds, and the op count is checked
        return net.eval()


@contextlib.contextmanager
def _quiet():
    """Silence converters' progress bars and chatter (stdout/stderr, warnings, logging) for one step."""
    out, err = io.StringIO(), io.StringIO()
    level = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            warnings.simplefilter("ignore")
            yield out
    finally:
        logging.disable(level)


# ---- the exporter ---------------------------------------------------------------------------------------------
class Exporter:
    """Holds the student, its contract and the faces; export_<format>() writes that format into self.dir."""

    def __init__(self, cfg: ExportConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.log = log
        folder = Path(cfg.student)
        self.student_dir = folder
        self.manifest = read_manifest(folder, kind="student")  # clear error for a missing or wrong folder
        check_student(folder, self.manifest)
        verify_files(folder, self.manifest, need=["G.safetensors"])
        self.net, _ = nets.load_from_artifact(folder, "G", kind="student")
        self.effect = str(self.manifest["effect"])
        self.size = int(self.manifest["resolution"])
        self.crop = dict(self.manifest["crop"])
        if int(self.crop.get("size", self.size)) != self.size:
            raise FacefxError(f"{folder}: crop size {self.crop.get('size')} differs from resolution {self.size}; "
                              "re-run the student stage")
        self.chain = lineage(folder)
        self.teacher = next(((p, m) for p, m in self.chain if m.get("kind") == "teacher"), None)
        if cfg.faces:
            sets, how = [Path(f) for f in cfg.faces], "--faces"
        else:
            sets, how = source_face_sets(self.chain)
        calib, evals, note = face_paths(sets, self.crop, cfg.calib, cfg.eval_faces)
        self.calib_paths, self.eval_paths = calib, evals
        self.faces_info = {"face_sets": [str(s) for s in sets], "found_by": how, "note": note,
                           "calibration": len(calib), "evaluation": len(evals)}
        self.x_eval = read_faces(evals, self.size)  # (M, 3, S, S) RGB [-1, 1]
        self.net_folded = fold_batchnorm(self.net)
        with torch.no_grad():
            self.ref = self.net(torch.from_numpy(self.x_eval)).numpy()  # PyTorch reference outputs
            fold_diff = float(np.abs(self.net_folded(torch.from_numpy(self.x_eval)).numpy() - self.ref).max())
        if fold_diff > 1e-4:
            raise FacefxError(f"folding BatchNorm changed the outputs by {fold_diff:.2g}; is the student in eval mode?")
        self.dir: Path = Path()  # the staging folder, set by run()
        self.scratch: Path = Path()
        self.results: dict[str, dict] = {}
        self.earlier: dict | None = None  # with --add: the export manifest found in the output folder
        self.kept: dict[str, dict] = {}  # with --add: its formats that this run keeps
        self.outputs: dict[str, np.ndarray] = {}  # format/precision -> outputs on x_eval
        self.sidecar: dict | None = None  # contract.json, once the formats are written

    # -- the contract, embedded in every file --
    def contract(self, fmt: str, precision: str, **export_metrics: Any) -> dict:
        """The contract of one exported file (facefx.runtime.contract.build_contract: the one contract writer)."""
        return build_contract(effect=self.effect, size=self.size, crop=self.crop, fmt=fmt, precision=precision,
                              source=self.provenance(), face_mask=bool(self.manifest.get("face_mask")),
                              metrics={**self.manifest.get("metrics", {}), "export": export_metrics})

    def provenance(self) -> dict:
        source = {"student": str(self.student_dir), "student_hash": content_hash(self.manifest),
                  "student_created_at": self.manifest.get("created_at"), "facefx_version": facefx.__version__}
        if self.teacher:
            source.update(teacher=str(self.teacher[0]), teacher_hash=content_hash(self.teacher[1]))
        return source

    def sidecar_contract(self, folder: Path) -> dict | None:
        return sidecar_contract(folder, self.effect)

    def _embed_onnx(self, path: Path, contract: dict) -> None:
        embed_onnx_contract(path, contract)

    def _load(self, path: Path) -> EffectModel:
        # Loading through the runtime also checks the embedded contract against the student's.
        return load_model(path, effect=self.effect, size=self.size, crop=self.crop, threads=self.cfg.threads)

    def _run(self, path: Path) -> np.ndarray:
        return self._load(path)(self.x_eval)

    # -- formats --
    def export_onnx(self) -> dict:
        import onnx

        path = self.dir / f"{self.effect}.onnx"
        x = torch.from_numpy(self.x_eval[:1])
        model, exporter = None, "dynamo"
        try:
            with _quiet():
                program = torch.onnx.export(self.net_folded, (x,), input_names=["image"], output_names=["output"],
                                            opset_version=ONNX_OPSET, dynamo=True, verbose=False)
            model = program.model_proto
        except Exception as err:  # fall back to the TorchScript exporter
            exporter = f"legacy (dynamo failed: {str(err).splitlines()[0][:120]})"
            buf = io.BytesIO()
            with _quiet():
                torch.onnx.export(self.net_folded, (x,), buf, input_names=["image"], output_names=["output"],
                                  opset_version=ONNX_OPSET, dynamo=False)
            model = onnx.load_from_string(buf.getvalue())
        ops = Counter(n.op_type for n in model.graph.node)
        if ops.get("BatchNormalization"):
            raise FacefxError(f"the ONNX graph still has {ops['BatchNormalization']} BatchNormalization ops; "
                              "the student could not be folded")
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            raise FacefxError("the ONNX export used external data; it must be one self-contained file")
        model.doc_string = f"facefx {self.effect} effect: (1, 3, {self.size}, {self.size}) RGB [-1, 1] -> same"
        onnx.helper.set_model_props(model, {CONTRACT_KEY: json.dumps(self.contract("onnx", "fp32"))})
        onnx.checker.check_model(model, full_check=True)
        onnx.save_model(model, str(path), save_as_external_data=False)
        y = self._run(path)
        diff = float(np.abs(y - self.ref).max())
        if not diff < ONNX_TOLERANCE:
            raise FacefxError(f"ONNX Runtime differs from PyTorch by {diff:.3g} (> {ONNX_TOLERANCE}); not shipped")
        self.outputs["fp32"] = y
        self._embed_onnx(path, self.contract("onnx", "fp32", max_abs_diff_vs_pytorch=diff))
        lat = latency_ms(self._load(path), self.x_eval, self.cfg.repeats)
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        return {"files": [path.name], "precision": "fp32", "exporter": exporter, "opset": opset,
                "ops": dict(sorted(ops.items())), "checker": "ok",
                "parity": {"max_abs_diff_vs_pytorch": diff, "psnr_vs_pytorch_db": _db(psnr(y, self.ref)),
                           "faces": len(self.x_eval)},
                "latency": lat}

    def export_int8(self) -> dict:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        fp32 = self.dir / f"{self.effect}.onnx"
        path = self.dir / f"{self.effect}_int8.onnx"
        if self.cfg.int8_activations not in ("int8", "uint8"):
            raise FacefxError(f"int8 activations must be int8 or uint8, not {self.cfg.int8_activations!r}")
        activations = QuantType.QInt8 if self.cfg.int8_activations == "int8" else QuantType.QUInt8
        pre = self.scratch / "int8_pre.onnx"
        with _quiet():
            quant_pre_process(str(fp32), str(pre))  # shape inference + optimization, as the ORT docs advise
            quantize_static(str(pre), str(path), FaceCalibrationReader(self.calib_paths, self.size),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=activations,
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        ops = Counter(n.op_type for n in model.graph.node)
        # Quantization may drop metadata_props: write the contract back (with the fp32 file's other props).
        self._embed_onnx(path, self.contract("onnx", "int8"))
        y = self._run(path)
        p_fp32, p_torch = psnr(y, self.outputs["fp32"]), psnr(y, self.ref)
        self.outputs["int8"] = y
        self._embed_onnx(path, self.contract("onnx", "int8", psnr_vs_fp32_db=_db(p_fp32)))
        lat = latency_ms(self._load(path), self.x_eval, self.cfg.repeats)
        out = {"files": [path.name], "precision": "int8",
               "quantization": {"format": "QDQ", "per_channel": True, "activations": self.cfg.int8_activations,
                                "weights": "int8",
                                "calibration": f"MinMax on {len(self.calib_paths)} real faces"},
               "ops": dict(sorted(ops.items())),
               "parity": {"psnr_vs_fp32_db": _db(p_fp32), "psnr_vs_pytorch_db": _db(p_torch),
                          "max_abs_diff_vs_fp32": float(np.abs(y - self.outputs["fp32"]).max()),
                          "faces": len(self.x_eval), "target_db": INT8_PSNR_TARGET_DB},
               "latency": lat}
        if p_fp32 < INT8_PSNR_TARGET_DB:
            out["warning"] = (f"int8 PSNR {p_fp32:.1f} dB vs fp32 is below the {INT8_PSNR_TARGET_DB:.0f} dB target; "
                              "prefer the fp32 model or retrain the student quantization-aware")
        return out

    def export_ort(self) -> dict:
        """ORT Mobile: .ort files the mobile execution providers can take (basic optimizations keep standard ops;
        level "all" would fuse them into FusedConv/QLinearConv that NNAPI and CoreML cannot take), checked with
        ONNX Runtime's usability checker; plus a CPU-optimized int8 .ort where it measures faster."""
        from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort
        from onnxruntime.tools.ort_format_model import create_config_from_models

        src, basic, cpu = self.scratch / "ort_in", self.scratch / "ort_basic", self.scratch / "ort_cpu"
        src.mkdir()
        sources = [n for n in (f"{self.effect}.onnx", f"{self.effect}_int8.onnx") if (self.dir / n).is_file()]
        precisions = {}
        for n in sources:
            shutil.copy2(self.dir / n, src / n)
            fill_empty_resize_roi(src / n)
            # The .ort keeps the ONNX file's metadata: give it the contract of an .ort file.
            embedded = read_contract(self.dir / n)
            precisions[n] = embedded["precision"]
            self._embed_onnx(src / n, self.contract("ort", embedded["precision"], **embedded["metrics"]["export"]))
        with _quiet(), _env(ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL="basic"):
            convert_onnx_models_to_ort(src, basic, [OptimizationStyle.Fixed], save_optimized_onnx_model=True)
        if "fp32" not in self.outputs:  # the ONNX files were kept from an earlier export (--add, mobile)
            self.outputs["fp32"] = self._run(self.dir / f"{self.effect}.onnx")
        files, parity, latency, eps = [], {}, {}, {}
        for n in sources:
            stem = n.removesuffix(".onnx")
            ort_name = f"{stem}.ort"
            shutil.copy2(basic / f"{stem}.basic.ort", self.dir / ort_name)
            files.append(ort_name)
            eps[ort_name] = ep_usability(basic / f"{stem}.basic.optimized.onnx")
            parity[ort_name], latency[ort_name] = self._ort_parity(ort_name, n, precisions[n])
        cpu_variant = {}
        int8 = f"{self.effect}_int8.onnx"
        if int8 in sources:
            only = self.scratch / "ort_in_int8"
            only.mkdir()
            shutil.copy2(src / int8, only / int8)
            with _quiet():  # level "all", arm: int8 kernels (QLinearConv), no x86-only layouts
                convert_onnx_models_to_ort(only, cpu, [OptimizationStyle.Fixed], target_platform="arm")
            name = f"{self.effect}_int8_cpu.ort"
            shutil.copy2(cpu / f"{self.effect}_int8.ort", self.dir / name)
            par, lat = self._ort_parity(name, int8, "int8")
            basic_ms = latency[f"{self.effect}_int8.ort"]["p50_ms"]
            cpu_variant = {"file": name, "p50_ms": lat["p50_ms"], "basic_p50_ms": basic_ms,
                           "speedup": round(basic_ms / lat["p50_ms"], 2)}
            if lat["p50_ms"] < basic_ms:  # kept only where it is faster (measured on this machine's CPU)
                files.append(name)
                parity[name], latency[name] = par, lat
                eps[name] = {"note": "CPU EP only: fused int8 kernels (QLinearConv) that NNAPI/CoreML cannot take"}
                cpu_variant["kept"] = True
            else:
                (self.dir / name).unlink()
                cpu_variant["kept"] = False
        config = self.dir / "required_operators.config"
        create_config_from_models([self.dir / f for f in files], config, False)
        # The config names the files it read; keep only the file names.
        lines = [f"# - {Path(line[4:]).name}" if line.startswith("# - ") else line
                 for line in config.read_text().splitlines()]
        config.write_text("\n".join(lines) + "\n")
        files.append(config.name)
        return {"files": files, "precision": "fp32, int8" if len(sources) > 1 else "fp32",
                "optimization": "basic (standard ONNX ops kept, for the NNAPI/CoreML/XNNPACK EPs); "
                                "_int8_cpu.ort: level all, target_platform arm (CPU EP)",
                "execution_providers": eps, "cpu_optimized_variant": cpu_variant,
                "required_operators": [line for line in lines if line and not line.startswith("#")],
                "parity": parity, "latency": latency}

    def _ort_parity(self, ort_name: str, onnx_name: str, precision: str) -> tuple[dict, dict]:
        """An .ort file against the ONNX file it was converted from (and int8 against fp32), and its latency."""
        path = self.dir / ort_name
        y = self._run(path)
        if precision == "fp32":
            diff = float(np.abs(y - self.outputs["fp32"]).max())
            if not diff < ONNX_TOLERANCE:
                raise FacefxError(f"{ort_name} differs from {onnx_name} by {diff:.3g} (> {ONNX_TOLERANCE}); "
                                  "not shipped")
            par = {"max_abs_diff_vs_onnx": diff}
        else:
            if "int8" not in self.outputs:
                self.outputs["int8"] = self._run(self.dir / onnx_name)
            par = {"psnr_vs_fp32_db": _db(psnr(y, self.outputs["fp32"])),
                   "psnr_vs_int8_onnx_db": _db(psnr(y, self.outputs["int8"]))}
        return par, latency_ms(self._load(path), self.x_eval, self.cfg.repeats)

    def export_coreml(self) -> dict:
        with _quiet():
            import coremltools as ct
            import coremltools.optimize.coreml as cto

        s = self.size
        wrapped = _ToPixels(self.net_folded).eval()  # [-1, 1] -> [0, 255] so the output can be an image
        x = torch.from_numpy(self.x_eval[:1])
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(wrapped, x)
            ml = ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, COREML_TARGET),
                compute_precision=ct.precision.FLOAT16,
                # pixels 0..255 -> x / 127.5 - 1, the pixel contract, done inside the model
                inputs=[ct.ImageType(name="image", shape=(1, 3, s, s), scale=1 / 127.5, bias=[-1.0, -1.0, -1.0],
                                     color_layout=ct.colorlayout.RGB)],
                outputs=[ct.ImageType(name="output", color_layout=ct.colorlayout.RGB)])
        weights = _coreml_weight_check(ml, self.net_folded)
        # name -> (contract precision, description, model); fp16 compute in all three, the weights differ
        variants = {f"{self.effect}.mlpackage": ("fp16", "fp16", ml)}
        pal_mode = "kmeans" if importlib.util.find_spec("sklearn") else "uniform"  # k-means needs scikit-learn
        with _quiet():
            variants[f"{self.effect}_w8.mlpackage"] = ("w8", "fp16, int8 weights", cto.linear_quantize_weights(
                ml, config=cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
                    mode="linear_symmetric", dtype="int8"))))
            variants[f"{self.effect}_pal6.mlpackage"] = (
                "pal6", f"fp16, 6-bit palettized weights ({pal_mode})", cto.palettize_weights(
                    ml, config=cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(nbits=6, mode=pal_mode))))
        checks = {}
        for name, (precision, description, model) in variants.items():
            model.short_description = (f"facefx {self.effect} effect: {s}x{s} RGB face crop (facefx crop geometry) "
                                       "in, same out")
            model.author = "facefx"
            model.license = "code Apache-2.0; weights research-only (see README.md)"
            model.version = facefx.__version__
            model.input_description["image"] = f"{s}x{s} RGB face crop, aligned with the crop spec in the contract"
            model.output_description["output"] = f"{s}x{s} RGB face crop with the {self.effect} effect"
            model.user_defined_metadata[CONTRACT_KEY] = json.dumps(self.contract(
                "coreml", precision, **({"weights_max_abs_diff_vs_pytorch": weights["max_abs_diff"]}
                                        if model is ml and weights["convs"] else {})))
            with _quiet():
                model.save(str(self.dir / name))
            checks[name] = check_coreml_package(self.dir / name, s)
            checks[name]["precision"] = description
        return {"files": list(variants), "precision": "fp16 (+ int8 / 6-bit weights)",
                "deployment_target": COREML_TARGET, "packages": checks, "weights_vs_pytorch": weights,
                "parity": {"note": "CoreML cannot run on Linux: spec, I/O, ops and fp16 weights were checked; "
                                   "tests/test_export.py -m macos compares predictions on a Mac"}}

    def export_tflite(self) -> dict:
        """LiteRT: NHWC in and out (no TRANSPOSE at the ends), fp32, fp16 weights and int8 (float I/O), each with
        TFLite metadata (image in/out, normalization, the contract) and checked by LiteRT's GPU-delegate analyzer."""
        import litert_torch

        x = torch.from_numpy(self.x_eval[:1]).permute(0, 2, 3, 1).contiguous()
        raw = self.scratch / "tflite_fp32_raw.tflite"
        with _quiet():
            # The wrapper takes and returns channels-last tensors; the converter then cancels the permutes
            # against its own NCHW -> NHWC layout change, so no TRANSPOSE is left at either end.
            nhwc = litert_torch.to_channel_last_io(self.net_folded.eval(), args=[0], outputs=[0])
            litert_torch.convert(nhwc.eval(), (x,)).export(str(raw))
        calib = np.ascontiguousarray(read_faces(self.calib_paths, self.size).transpose(0, 2, 3, 1))
        variants = {f"{self.effect}.tflite": ("fp32", raw),
                    f"{self.effect}_fp16.tflite": ("fp16", quantize_tflite(raw, "fp16", self.scratch)),
                    f"{self.effect}_int8.tflite": ("int8", quantize_tflite(raw, "int8", self.scratch, calib))}
        if "fp32" not in self.outputs and (self.dir / f"{self.effect}.onnx").is_file():
            self.outputs["fp32"] = self._run(self.dir / f"{self.effect}.onnx")
        files, checks, parity, latency, fp32_out = [], {}, {}, {}, None
        for name, (precision, src) in variants.items():
            path = self.dir / name
            shutil.copy2(src, path)
            ops = tflite_ops(path)
            if ops.get("TRANSPOSE"):
                raise FacefxError(f"{name} has {ops['TRANSPOSE']} TRANSPOSE ops; the NHWC conversion failed")
            gpu_ok, gpu_note = tflite_gpu_compatibility(path)
            if not gpu_ok:
                raise FacefxError(f"{name} is not GPU-delegate compatible: {gpu_note}")
            write_tflite_metadata(path, self.contract("tflite", precision))
            y = self._run(path)
            par: dict[str, Any] = {"faces": len(self.x_eval)}
            if precision == "fp32":
                diff = float(np.abs(y - self.ref).max())
                if not diff < ONNX_TOLERANCE:
                    raise FacefxError(f"{name} differs from PyTorch by {diff:.3g} (> {ONNX_TOLERANCE}); not shipped")
                par["max_abs_diff_vs_pytorch"] = diff
                fp32_out = y
            else:
                par["psnr_vs_fp32_tflite_db"] = _db(psnr(y, fp32_out))
            if "fp32" in self.outputs:
                par["psnr_vs_fp32_onnx_db"] = _db(psnr(y, self.outputs["fp32"]))
            if precision == "int8" and par["psnr_vs_fp32_tflite_db"] is not None and \
                    par["psnr_vs_fp32_tflite_db"] < INT8_PSNR_TARGET_DB:
                par["warning"] = f"int8 below the {INT8_PSNR_TARGET_DB:.0f} dB target vs fp32"
            shutil.copy2(src, path)  # the final metadata on a fresh copy (no stale metadata buffers left behind)
            write_tflite_metadata(path, self.contract("tflite", precision, **{k: v for k, v in par.items()
                                                                             if k != "faces"}))
            model = self._load(path)
            checks[name] = {"ops": dict(sorted(ops.items())), "gpu_delegate": gpu_note,
                            "input": model._session.get_input_details()[0]["name"],
                            "output": model._session.get_output_details()[0]["name"]}
            parity[name], latency[name] = par, latency_ms(model, self.x_eval, self.cfg.repeats)
            files.append(name)
        return {"files": files, "precision": "fp32, fp16 (weights), int8 (float I/O)", "layout": "NHWC",
                "models": checks, "parity": parity, "latency": latency,
                "metadata": "TFLite metadata (MediaPipe metadata writer): image input and output, "
                            "NormalizationOptions mean 127.5 std 127.5, the contract as custom metadata 'facefx'"}

    # -- the whole export --
    def kept_formats(self, out: Path, remade: set[str]) -> dict[str, dict]:
        """With --add: the formats of the export in `out` that this run does not remake (same student only)."""
        try:
            old = read_manifest(out, kind="export")
        except FacefxError:
            raise FacefxError(f"--add needs an earlier export in {out}; run without --add first") from None
        parent = old.get("parent") or {}
        # A committed student snapshot (students/<effect>) names the run it was taken of.
        same = parent.get("hash") == content_hash(self.manifest) or \
            (parent.get("path") and self.manifest.get("snapshot_of") == parent.get("path"))
        if not same:
            raise FacefxError(f"{out} was exported from {parent.get('path')}, not from {self.student_dir}; "
                              "--add only adds formats to an export of the same student")
        kept_files = [f for k, v in old.get("formats", {}).items() if k not in remade for f in v.get("files", [])]
        for name in kept_files:  # what is kept must be what was shipped (a flipped byte is caught here)
            for rel, digest in old.get("files", {}).items():
                if (rel == name or rel.startswith(name + "/")) and (out / rel).is_file() and \
                        hash_files(out, [rel])[rel] != digest:
                    raise FacefxError(f"{out / rel} does not match the hash in {out}/manifest.json; restore it "
                                      "(git checkout) or re-export without --add")
        self.earlier = old
        return {k: v for k, v in old.get("formats", {}).items() if k not in remade}

    def run(self, formats: list[Format], unavailable: dict[str, str], out: Path) -> dict:
        if self.cfg.add:
            self.kept = self.kept_formats(out, {f.name for f in formats} | set(unavailable))
        with staged_dir(out, replace=True) as tmp, tempfile.TemporaryDirectory(prefix="facefx-export-") as scratch:
            self.dir, self.scratch = tmp, Path(scratch)
            for name, res in self.kept.items():
                for f in res.get("files", []):
                    src = out / f
                    if not src.exists():
                        raise FacefxError(f"--add: {src} ({name}) is missing from the earlier export; re-export "
                                          "without --add")
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / f)
                self.results[name] = res
                self.log(f"{name:>7}: kept from the earlier export")
            for fmt in formats:
                t = time.perf_counter()
                try:
                    # A signal waits for the converter to return: one cut mid-call (e.g. inside a native
                    # extension's import) crashed the process instead of exiting 143 and removing the staging.
                    with deferred_interrupts():
                        res = getattr(self, fmt.function)()
                except FacefxError as err:
                    raise FacefxError(f"{fmt.name}: {err}") from None
                except Exception as err:  # converter bugs: one clear line, nothing shipped
                    raise FacefxError(f"{fmt.name} export failed ({type(err).__name__}: "
                                      f"{str(err).strip().splitlines()[0][:300] if str(err).strip() else ''}); "
                                      f"leave it out with --formats") from err
                res = {"status": "ok", "seconds": round(time.perf_counter() - t, 2),
                       "sizes": {f: size_of(tmp / f) for f in res["files"]}, **res}
                self.results[fmt.name] = res
                self.log(_summary_line(fmt.name, res))
            for name, reason in unavailable.items():
                self.results[name] = {"status": f"unavailable: {reason}"}
                self.log(f"{name:>7}: unavailable: {reason}")
            self.sidecar = self.sidecar_contract(tmp)
            if self.sidecar is not None:
                (tmp / SIDECAR).write_text(json.dumps(self.sidecar, indent=1) + "\n")
            manifest = self.export_manifest(tmp)
            write_manifest(tmp, manifest)
            from facefx.export.modelcard import render_model_card

            card = render_model_card(manifest, self.manifest, self.teacher[1] if self.teacher else None,
                                     self.face_manifests())
            old_card = out / "README.md"
            if "onnx" in self.kept and old_card.is_file() and FILES_SECTION in old_card.read_text():
                # Formats added next to kept ONNX files: the card's account of the model (data, teacher, training)
                # stays the original export's, which could see the whole lineage; the files part is rewritten.
                card = old_card.read_text().split(FILES_SECTION)[0] + FILES_SECTION + card.split(FILES_SECTION)[1]
            (tmp / "README.md").write_text(card)
        return manifest

    def face_manifests(self) -> dict[str, dict]:
        """Face-set path -> manifest, for the lineage's face sets and those used here (their data terms)."""
        out = {str(p): m for p, m in self.chain if m.get("kind") == "faces"}
        teacher_sets = [s for d in (self.teacher[1].get("domains", {}) if self.teacher else {}).values() for s in d]
        for fs in self.faces_info["face_sets"] + teacher_sets:
            found = _resolve_artifact(fs)
            if fs not in out and found is not None:
                with contextlib.suppress(FacefxError):
                    out[fs] = read_manifest(found, kind="faces")
        return out

    def export_manifest(self, folder: Path) -> dict:
        order = [f.name for f in FORMATS]
        formats = {k: self.results[k] for k in sorted(self.results, key=order.index)}
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        summary = {}
        if "onnx" in formats and "int8" in formats and formats["int8"].get("status") == "ok":
            fp, q = formats["onnx"], formats["int8"]
            summary = {"onnx_max_abs_diff_vs_pytorch": fp["parity"]["max_abs_diff_vs_pytorch"],
                       "int8_psnr_vs_fp32_db": q["parity"]["psnr_vs_fp32_db"],
                       "fp32_size_bytes": fp["sizes"][fp["files"][0]], "int8_size_bytes": q["sizes"][q["files"][0]],
                       "fp32_p50_ms": fp["latency"]["p50_ms"], "int8_p50_ms": q["latency"]["p50_ms"]}
        m = new_manifest("export", effect=self.effect, parent=self.student_dir, resolution=self.size, crop=self.crop,
                         pixels=PIXEL_CONTRACT, contract=self.sidecar,
                         formats=formats, summary=summary, faces=self.faces_info,
                         machine=machine_info(self.cfg.threads),
                         lineage=[{"path": str(p), "kind": mm.get("kind"), "hash": content_hash(mm),
                                   "command": mm.get("command"), "created_at": mm.get("created_at")}
                                  for p, mm in self.chain],
                         cost=self.manifest.get("cost"), network=self.manifest.get("network"))
        m["metrics"] = dict(self.manifest.get("metrics", {}))
        if self.earlier:  # --add: the kept formats' latencies were measured by the earlier run, on its machine
            m["commands"] = self.earlier.get("commands", [self.earlier.get("command")]) + [m.get("command")]
            if not any("latency" in res for name, res in self.results.items() if name not in self.kept):
                m["machine"] = self.earlier.get("machine", m["machine"])
            elif "onnx" in self.kept:
                # Formats added next to kept ONNX files (--formats mobile): the folder's record (parent, lineage,
                # faces, machine) stays the ONNX export's; each added format says where it was made and measured.
                for name in self.results:
                    if name not in self.kept:
                        formats[name].update(machine=m["machine"], faces=self.faces_info,
                                             student=str(self.student_dir))
                for key in ("parent", "lineage", "faces", "machine", "network", "created_at"):
                    if key in self.earlier:
                        m[key] = self.earlier[key]
        m["files"] = hash_files(folder, files)
        return m


class _ToPixels(nn.Module):
    """Student output [-1, 1] -> [0, 255], so CoreML can return an image (its input scale/bias do the reverse)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.net(x) + 1.0) * 127.5


def _db(v: float) -> float | None:
    """PSNR rounded for the manifest; None when the outputs are identical (JSON has no infinity)."""
    return round(v, 2) if np.isfinite(v) else None


def _summary_line(name: str, res: dict) -> str:
    sizes = ", ".join(f"{f} {v / 1e6:.2f} MB" for f, v in res["sizes"].items() if not f.endswith(".config"))
    bits = [f"{name:>7}: {res['seconds']:.1f} s", sizes]
    par = res.get("parity", {})
    if "max_abs_diff_vs_pytorch" in par:
        bits.append(f"max|diff| vs PyTorch {par['max_abs_diff_vs_pytorch']:.2g}")
    if "psnr_vs_fp32_db" in par:
        v = par["psnr_vs_fp32_db"]
        bits.append(f"PSNR vs fp32 {v} dB" if v is not None else "identical to fp32")
    if "latency" in res and "p50_ms" in res["latency"]:
        bits.append(f"p50 {res['latency']['p50_ms']:.2f} ms")
    if res.get("warning"):
        bits.append(f"WARNING: {res['warning']}")
    return "; ".join(bits)


# ---- CoreML checks (Linux: no prediction, so check what can be checked) ---------------------------------------------
def _coreml_weight_check(ml, net: nn.Module) -> dict:
    """Every conv weight of the (BatchNorm-folded) PyTorch student is found among the mlprogram's fp16 constants."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        return {"convs": 0, "max_abs_diff": None, "note": "BatchNorm not folded in PyTorch: weights not compared"}
    consts = [op.outputs[0].val for op in ml._mil_program.functions["main"].operations if op.op_type == "const"]
    consts = [np.asarray(c, np.float32) for c in consts if isinstance(c, np.ndarray) and c.ndim == 4]
    worst, convs = 0.0, 0
    for mod in net.modules():
        if not isinstance(mod, nn.Conv2d):
            continue
        w = mod.weight.detach().numpy()
        diffs = [float(np.abs(c - w).max()) for c in consts if c.shape == w.shape]
        tol = 2e-3 * float(np.abs(w).max()) + 1e-4  # fp16 rounding
        if not diffs or min(diffs) > tol:
            raise FacefxError(f"CoreML weights do not match PyTorch (conv {tuple(w.shape)}: "
                              f"{'missing' if not diffs else f'off by {min(diffs):.3g}'})")
        worst, convs = max(worst, min(diffs)), convs + 1
    return {"convs": convs, "max_abs_diff": worst}


def check_coreml_package(path: Path, size: int) -> dict:
    """Spec version, image input/output names, colour spaces and sizes, op list, contract: from the saved file."""
    with _quiet():
        import coremltools as ct
        from coremltools.proto import FeatureTypes_pb2

        model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    problems = []
    ios = {d.name: d.type for d in list(spec.description.input) + list(spec.description.output)}
    for name, io_list in (("image", spec.description.input), ("output", spec.description.output)):
        names = [d.name for d in io_list]
        if names != [name]:
            problems.append(f"expected {name!r}, found {names}")
            continue
        t = ios[name]
        if t.WhichOneof("Type") != "imageType" or t.imageType.width != size or t.imageType.height != size or \
                FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.imageType.colorSpace) != "RGB":
            problems.append(f"{name} is not a {size}x{size} RGB image")
    if spec.specificationVersion < 7:  # 7 = iOS 16
        problems.append(f"spec version {spec.specificationVersion} < 7 (iOS 16)")
    if CONTRACT_KEY not in spec.description.metadata.userDefined:
        problems.append("no facefx contract in user_defined_metadata")
    if problems:
        raise FacefxError(f"{path.name}: " + "; ".join(problems))
    ops: Counter = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            ops.update(op.type for op in block.operations)
    return {"spec_version": spec.specificationVersion, "input": "image (RGB image)", "output": "output (RGB image)",
            "ops": dict(sorted(ops.items()))}


# ---- ORT Mobile helpers ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _env(**values: str):
    """Set environment variables for one step (the ORT converter reads its optimization level from one)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fill_empty_resize_roi(path: Path) -> int:
    """Give every Resize an explicit empty `roi` tensor instead of the omitted ("") input; returns how many.

    The same model for ONNX Runtime (roi is only read by tf_crop_and_resize), but ONNX Runtime's mobile usability
    checker counts a Resize with an omitted input as unsupported by NNAPI and CoreML, which would split the graph.
    """
    import onnx

    model = onnx.load(str(path))
    resizes = [n for n in model.graph.node if n.op_type == "Resize" and len(n.input) > 1 and n.input[1] == ""]
    if not resizes:
        return 0
    name = "facefx_empty_roi"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros(0, np.float32), name))
    for n in resizes:
        n.input[1] = name
    onnx.save_model(model, str(path), save_as_external_data=False)
    return len(resizes)


def ep_usability(path: Path) -> dict:
    """ONNX Runtime's mobile usability checker on a (basic-optimized) ONNX graph: nodes each mobile EP takes."""
    import logging as _logging

    from onnxruntime.tools.mobile_helpers import usability_checker as uc

    model = uc.ModelProtoWithShapeInfo(path).model_with_shape_info
    out = {}
    checks = {"nnapi": lambda m: uc.check_nnapi_partitions(m, True),
              "coreml_mlprogram": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md")}
    level = _logging.root.manager.disable
    _logging.disable(_logging.WARNING)
    try:
        for ep, check in checks.items():
            info = check(model)
            out[ep] = {"supported_nodes": info.num_supported_nodes, "nodes": info.num_nodes,
                       "partitions": info.num_partitions, "unsupported_ops": sorted(info.unsupported_ops)}
    finally:
        _logging.disable(level)
    return out


# ---- contracts: embedding, the contract.json sidecar, upgrading a shipped folder ----------------------------------
def embed_onnx_contract(path: Path, contract: dict) -> None:
    """Set the contract in an ONNX file's metadata_props (other props kept; the graph is not touched)."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props[CONTRACT_KEY] = json.dumps(contract)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save_model(model, str(path), save_as_external_data=False)


def sidecar_contract(folder: Path, effect: str) -> dict | None:
    """contract.json: the contract the folder's ONNX files carry (what the web app loads), with their hashes and
    parity figures in `files`; None without ONNX. Copied from the files' embedded contract, so the two never differ."""
    files, base = {}, None
    for name in (f"{effect}.onnx", f"{effect}_int8.onnx"):
        if (folder / name).is_file():
            embedded = read_contract(folder / name)
            base = base or embedded
            files[name] = {"precision": embedded["precision"], "sha256": hash_files(folder, [name])[name],
                           "metrics": embedded["metrics"].get("export", {})}
    if base is None:
        return None
    sidecar = {k: v for k, v in base.items() if k != "precision"}
    sidecar["metrics"] = {k: v for k, v in base["metrics"].items() if k != "export"}
    sidecar["files"] = files
    return validate_contract(sidecar, SIDECAR)


def _raw_contract(path: Path) -> dict:
    """The embedded contract of an ONNX file, of any version (for upgrading)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if CONTRACT_KEY not in props:
        raise FacefxError(f"{path.name} carries no facefx contract; re-export it with export/export.py")
    return json.loads(props[CONTRACT_KEY])


def upgrade_contracts(folder: Path, student_manifest: dict) -> list[str]:
    """Rewrite the contract of a shipped folder's ONNX files to the current version (graphs untouched: checked),
    write contract.json and update the export manifest's hashes. Returns the files rewritten."""
    import onnx

    manifest = read_manifest(folder, kind="export")
    effect = str(manifest["effect"])
    face_mask = bool(student_manifest.get("face_mask"))
    done, old = [], None
    for name in (f"{effect}.onnx", f"{effect}_int8.onnx"):
        path = folder / name
        if not path.is_file():
            continue
        old = _raw_contract(path)
        if old.get("contract_version") == CONTRACT_VERSION:
            continue  # already current: the file is left byte for byte as it is
        graph = onnx.load(str(path)).graph.SerializeToString()
        contract = build_contract(effect=old["effect"], size=old["size"], crop=old["crop"], fmt="onnx",
                                  precision=old["precision"], source=old["source"], face_mask=face_mask,
                                  metrics=old["metrics"])
        embed_onnx_contract(path, contract)
        if onnx.load(str(path)).graph.SerializeToString() != graph:
            raise FacefxError(f"{name}: re-embedding the contract changed the graph; nothing should")
        done.append(name)
    if old is None:
        raise FacefxError(f"{folder} holds no ONNX model to upgrade")
    sidecar = sidecar_contract(folder, effect)
    (folder / SIDECAR).write_text(json.dumps(sidecar, indent=1) + "\n")
    manifest["contract"] = sidecar
    files = dict(manifest.get("files", {}))
    files.update(hash_files(folder, done + [SIDECAR]))
    manifest["files"] = dict(sorted(files.items()))
    for res in manifest.get("formats", {}).values():  # the sizes change by the contract's length
        for name in done:
            if name in res.get("sizes", {}):
                res["sizes"][name] = (folder / name).stat().st_size
    if manifest.get("summary"):
        manifest["summary"]["fp32_size_bytes"] = (folder / f"{effect}.onnx").stat().st_size
        manifest["summary"]["int8_size_bytes"] = (folder / f"{effect}_int8.onnx").stat().st_size
    write_manifest(folder, manifest)
    return done + [SIDECAR]


# ---- TFLite: quantization, checks, metadata ------------------------------------------------------------------------
def quantize_tflite(src: Path, precision: str, scratch: Path, calib: np.ndarray | None = None) -> Path:
    """fp16 (weights stored as float16, the GPU delegate's native precision) or int8 (static: int8 weights and
    activations calibrated on real faces, float input and output) from an fp32 TFLite model (ai-edge-quantizer)."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    rm = recipe_manager.RecipeManager()
    if precision == "fp16":
        rm.add_weight_only_config(regex=".*", operation_name="*", num_bits=16,
                                  algorithm_key=AlgorithmName.FLOAT_CASTING)
    elif precision == "int8":
        rm.add_static_config(regex=".*", operation_name="*", activation_num_bits=8, weight_num_bits=8)
        for end in ("INPUT", "OUTPUT"):  # keep float I/O: QUANTIZE/DEQUANTIZE at the ends, inside the model
            rm.add_quantization_config(regex=".*", operation_name=end, algorithm_key=AlgorithmName.NO_QUANTIZE,
                                       op_config=qtyping.OpQuantizationConfig())
    else:
        raise FacefxError(f"unknown TFLite precision {precision!r}; use fp16 or int8")
    out = scratch / f"tflite_{precision}.tflite"
    with _quiet():
        q = quantizer.Quantizer(str(src), rm.get_quantization_recipe())
        calibration = None
        if precision == "int8":
            if calib is None or not len(calib):
                raise FacefxError("int8 TFLite needs calibration faces")
            sig = Interpreter(model_path=str(src)).get_signature_list()
            key = next(iter(sig))
            name = sig[key]["inputs"][0]
            calibration = q.calibrate({key: [{name: calib[i:i + 1]} for i in range(len(calib))]})
        q.quantize(calibration).export_model(str(out), overwrite=True)
    _inline_tflite_buffers(out)
    return out


def _inline_tflite_buffers(path: Path) -> None:
    """Move constant data stored after the flatbuffer (offset/size buffers, as ai-edge-quantizer writes large models)
    into the flatbuffer, so metadata tools that rewrite the model keep it valid."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    raw = path.read_bytes()
    model = schema.ModelT.InitFromPackedBuf(bytearray(raw), 0)
    moved = 0
    for buf in model.buffers or []:
        if buf.offset and buf.offset > 1:
            buf.data = np.frombuffer(raw[buf.offset:buf.offset + buf.size], np.uint8)
            buf.offset, buf.size = 0, 0
            moved += 1
    if moved:
        builder = flatbuffers.Builder(len(raw) + 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        path.write_bytes(bytes(builder.Output()))


def tflite_ops(path: Path) -> Counter:
    """Operator counts of a TFLite model (main subgraph), by builtin name."""
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    ops: Counter = Counter()
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        ops[names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")] += 1
    return ops


def tflite_gpu_compatibility(path: Path) -> tuple[bool, str]:
    """LiteRT's model analyzer with its GPU-delegate compatibility check: (compatible, its verdict line)."""
    from ai_edge_litert import _pywrap_analyzer_wrapper as analyzer

    with _quiet():
        text = analyzer.ModelAnalyzer(str(path), True, True)
    ok = "looks compatible with GPU delegate" in text
    notes = [line.strip() for line in text.splitlines() if "GPU" in line or "not supported" in line.lower()]
    return ok, (notes[0] if ok and notes else "; ".join(notes[:3]) or "no verdict from the analyzer")


def write_tflite_metadata(path: Path, contract: dict) -> None:
    """TFLite metadata as Android Studio's ML binding, the Task Library and MediaPipe read it (image input and output
    with NormalizationOptions, the contract as custom metadata), plus the contract entry facefx's loader reads."""
    from facefx.assets.make_blazeface_model import _stub_metadata_version

    _stub_metadata_version()
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, metadata_writer, writer_utils

    class ContractMd(metadata_info.CustomMetadataMd):
        def create_metadata(self):
            md = fb.CustomMetadataT()
            md.name = CONTRACT_KEY
            md.data = bytearray(json.dumps(contract).encode())
            return md

    model_bytes = bytearray(path.read_bytes())
    s, effect = contract["size"], contract["effect"]
    writer = metadata_writer.MetadataWriter.create(model_bytes)
    writer.add_general_info(f"facefx_{effect}_{contract['precision']}",
                            f"facefx {effect} effect: {s}x{s} RGB face crop in, same out (see the facefx contract)")
    # pixels -> model: (x - 127.5) / 127.5, i.e. [-1, 1]; model -> pixels: y * 127.5 + 127.5
    writer.add_image_input(norm_mean=[127.5], norm_std=[127.5], name="image",
                           description=f"{s}x{s} RGB face crop, aligned with the contract's crop geometry")
    writer._output_mds.append(metadata_info.InputImageTensorMd(  # image output: the same normalization, reversed
        name="output", description=f"{s}x{s} RGB face crop with the {effect} effect; pixel = y * 127.5 + 127.5",
        norm_mean=[127.5], norm_std=[127.5], color_space_type=fb.ColorSpaceType.RGB,
        tensor_type=writer_utils.get_output_tensor_types(model_bytes)[0]))
    writer.add_custom_metadata(ContractMd(name=CONTRACT_KEY))
    with _quiet():
        out, _ = writer.populate()
    del writer  # its __del__ fails at interpreter exit otherwise
    path.write_bytes(bytes(out))
    _embed_tflite(path, contract)


# ---- TFLite metadata ----------------------------------------------------------------------------------------------
def _embed_tflite(path: Path, contract: dict) -> None:
    """Put the contract into the flatbuffer's metadata list (name "facefx"), replacing an older one."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(contract).encode(), np.uint8)
    model.buffers.append(buf)
    meta = schema.MetadataT()
    meta.name, meta.buffer = CONTRACT_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name not in (CONTRACT_KEY, CONTRACT_KEY.encode())]
    model.metadata.append(meta)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


# ---- entry point ------------------------------------------------------------------------------------------------
def export_student(cfg: ExportConfig, log: Callable[[str], None] = print) -> tuple[Path, dict]:
    """Export a student into cfg.out (default models/<effect>); returns the folder and its export manifest."""
    formats, unavailable = resolve_formats(cfg.formats)
    exporter = Exporter(cfg, log=log)
    out = Path(cfg.out) if cfg.out else Path("models") / exporter.effect
    if out.exists() and any(out.iterdir()):  # never replace a folder that is not an earlier export
        try:
            read_manifest(out, kind="export")
        except FacefxError:
            raise FacefxError(f"{out} exists and is not an export folder (no export manifest.json); "
                              "choose another --out or remove it") from None
    if not formats:
        raise FacefxError("no requested format can be exported here: " +
                          "; ".join(f"{k}: {v}" for k, v in unavailable.items()))
    log(f"export {exporter.student_dir} ({exporter.effect}, {exporter.size} px) -> {out}; "
        f"faces: {exporter.faces_info['calibration']} calibration, {exporter.faces_info['evaluation']} evaluation "
        f"({exporter.faces_info['found_by']})")
    manifest = exporter.run(formats, unavailable, out)
    return out, manifest


def plan(cfg: ExportConfig) -> dict:
    """What export_student would do (formats, faces), without loading the network or writing anything."""
    formats, unavailable = resolve_formats(cfg.formats)
    m = check_student(cfg.student, read_manifest(cfg.student, kind="student"))
    chain = lineage(cfg.student)
    sets, how = ([Path(f) for f in cfg.faces], "--faces") if cfg.faces else source_face_sets(chain)
    calib, evals, note = face_paths(sets, m["crop"], cfg.calib, cfg.eval_faces)
    return {"student": cfg.student, "effect": m["effect"], "size": m["resolution"],
            "out": cfg.out or str(Path("models") / m["effect"]), "formats": [f.name for f in formats],
            "unavailable": unavailable, "face_sets": [str(s) for s in sets], "found_by": how,
            "calibration_faces": len(calib), "evaluation_faces": len(evals), "note": note}


__all__ = ["FORMATS", "ExportConfig", "Exporter", "FaceCalibrationReader", "export_formats", "export_student",
           "format_status", "lineage", "plan", "resolve_formats", "upgrade_contracts"]
