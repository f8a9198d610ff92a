"""The model contract, version 2: everything a port needs to rebuild the pipeline around an exported model.

One builder (build_contract) and one validator (validate_contract, against contract.schema.json next to this
file). Every exported file carries the contract in its metadata (key "facefx"); models/<effect>/contract.json is
the same contract for the ONNX files, for apps that read JSON (the web app). Every value here is read from the
code that computes it (crop, faces, smoothing, pixels), never retyped, so the contract cannot drift from the
Python reference. Torch-free.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from facefx.errors import FacefxError
from facefx.manifest import sha256_file
from facefx.runtime import crop as cropgeo
from facefx.runtime import faces
from facefx.runtime.pixels import PIXEL_CONTRACT
from facefx.runtime.smoothing import FaceTracker

CONTRACT_KEY = "facefx"  # metadata key in every model file
CONTRACT_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("contract.schema.json")
SIDECAR = "contract.json"

# How each file format takes and returns pixels. ONNX/ORT: the pixel contract (NCHW float [-1, 1]); TFLite: the
# same values channels-last (what Android's image APIs and the GPU delegate want); CoreML: RGB images (0-255),
# the [-1, 1] scaling done inside the model.
LAYOUTS = {"onnx": "NCHW", "ort": "NCHW", "tflite": "NHWC", "coreml": "image"}
TO_UINT8 = "round(clip(y, -1, 1) * 127.5 + 127.5)"  # facefx.runtime.pixels.nchw_to_rgb


def pixels_for(fmt: str) -> dict:
    """The pixel contract of one file format (input and output alike)."""
    if fmt not in LAYOUTS:
        raise FacefxError(f"unknown model format {fmt!r}; use one of {', '.join(LAYOUTS)}")
    if LAYOUTS[fmt] == "image":
        return {"layout": "image", "channels": "RGB", "dtype": "uint8", "range": [0.0, 255.0], "from_uint8": "x",
                "to_uint8": "y"}
    return {**PIXEL_CONTRACT, "layout": LAYOUTS[fmt], "to_uint8": TO_UINT8}


@functools.cache
def _detector_sha256() -> str:
    return sha256_file(faces.model_path())


def detector() -> dict:
    """The face detector the runtime uses, its threshold and its keypoints."""
    return {
        "model": faces.MODEL_FILE,
        "sha256": _detector_sha256(),
        "name": "MediaPipe BlazeFace short range (128x128 input), via MediaPipe Tasks FaceDetector",
        "min_score": faces.DEFAULT_MIN_SCORE,
        "score": "MediaPipe Tasks FaceDetector min_detection_confidence: detections scoring below are dropped",
        "running_mode": "VIDEO for frames of one stream (increasing timestamps in ms), IMAGE for unrelated photos",
        "keypoints": list(faces.KEYPOINT_NAMES),
        "keypoint_side": "'right' is the subject's right, on the image's left",
        "keypoint_pixels": "x = normalized_x * frame_width, y = normalized_y * frame_height (MediaPipe's "
                           "normalized keypoints times the frame size, no half-pixel shift)",
    }


def fit() -> dict:
    """The keypoints -> crop transform, exactly as facefx.runtime.crop.face_transform computes it."""
    return {
        "method": f"least-squares similarity (Umeyama) over {cropgeo.KEYPOINTS_USED} keypoints",
        "keypoints_used": list(range(cropgeo.KEYPOINTS_USED)),
        "source": "the detector's keypoints in frame pixels (after smoothing, for video)",
        "target": "crop.template * size, in crop pixels",
        "matrix": "2x3 M mapping frame pixels to crop pixels: [u, v] = M @ [x, y, 1]",
        "algorithm": "mu_s, mu_d = means of src, dst; cov = (dst - mu_d)^T (src - mu_s) / K; U, S, Vt = svd(cov); "
                     "D = diag(1, -1 if det(U) det(Vt) < 0 else 1); R = U D Vt; "
                     "scale = trace(diag(S) D) / (var(src_x) + var(src_y)); t = mu_d - scale R mu_s; "
                     "M = [scale R | t]. No RANSAC (not cv2.estimateAffinePartial2D's default), no reflection",
        "pixel_centres": "OpenCV's: integer coordinates are pixel centres (pixel i spans [i - 0.5, i + 0.5]); "
                         "keypoints and template points are used as such, with no 0.5 shift",
        "crop_warp": "crop[v, u] = bilinear(frame, M^-1 @ [u, v, 1]) for integer u, v in [0, size) "
                     "(cv2.warpAffine(frame, M, (size, size), INTER_LINEAR)); outside the frame: crop.border",
        "border": {"replicate": "the nearest edge pixel repeated (cv2.BORDER_REPLICATE)",
                   "reflect101": "mirrored without repeating the edge (cv2.BORDER_REFLECT_101)",
                   "constant": "black (cv2.BORDER_CONSTANT)"},
    }


def paste(spec: cropgeo.CropSpec) -> dict:
    """How the output goes back into the frame: inverse warp and the feathered mask's explicit geometry."""
    return {
        "warp": "out[y, x] = bilinear(output, M @ [x, y, 1]) over the box of the crop's footprint "
                "(cv2.warpAffine(output, M, WARP_INVERSE_MAP, INTER_LINEAR, BORDER_REPLICATE)); the mask is "
                "warped the same way with 0 outside the crop",
        "blend": "frame = output * alpha + frame * (1 - alpha) on uint8 pixels (cv2.blendLinear); frame pixels "
                 "where alpha is 0 are left bit-exact",
        "mask": {
            **cropgeo.paste_mask_geometry(spec),
            "units": "crop units: u = (i + 0.5) / size, v = (j + 0.5) / size at pixel (i, j)",
            "formula": "rho = sqrt(((u - cx) / ax)^2 + ((v - cy) / ay)^2) with (cx, cy) = head_centre, "
                       "(ax, ay) = head_axes; head = clip((1 + head_ramp / 2 - rho) / head_ramp, 0, 1); "
                       "r = (|2u - 1|^n + |2v - 1|^n)^(1/n) with n = edge_exponent; "
                       "edge = clip((edge_radius - r) / edge_ramp, 0, 1); a = head * edge; alpha = a * a * (3 - 2a)",
            "shape": "a head ellipse (from the template: hair line above the eyes to below the chin) cut by a "
                     "rounded square (superellipse) that reaches 0 inside the crop's edge; smoothstep",
        },
    }


def inner_face(spec: cropgeo.CropSpec, confined: bool) -> dict:
    """The inner-face ellipse; confined: the student was trained to change only inside it (distill --face-mask)."""
    return {
        "confined": bool(confined),
        **cropgeo.inner_face_geometry(spec),
        "units": "crop units, sampled at pixel centres as for the paste mask",
        "formula": "rho = sqrt(((u - cx) / ax)^2 + ((v - cy) / ay)^2) with (cx, cy) = centre, (ax, ay) = axes; "
                   "a = clip((outer - rho) / (outer - 1), 0, 1); mask = a * a * (3 - 2a)",
        "applied_at_runtime": False,  # the student learned it; the runtime pastes with the paste mask only
    }


def smoothing() -> dict:
    """The realtime tracker's One-Euro settings (facefx.runtime.smoothing.FaceTracker defaults)."""
    d = {f.name: f.default for f in dataclasses.fields(FaceTracker) if not f.name.startswith("_")}
    return {
        "filter": "One-Euro (Casiez, Roussel, Vogel 2012), per tracked face, every keypoint coordinate independently",
        "min_cutoff_hz": d["min_cutoff"], "beta": d["beta"], "d_cutoff_hz": d["d_cutoff"],
        "units": "keypoints divided by the face's box side (max(w, h) when its track started) before filtering, "
                 "multiplied back after; beta is per (face sizes per second)",
        "time": "frame timestamp in seconds; the first sample (or a clock that did not advance) passes unchanged",
        "formula": "alpha(fc, dt) = 1 / (1 + 1 / (2 pi fc dt)); dx = (x - x_hat) / dt (x_hat: the previous "
                   "filtered value); dx_hat += alpha(d_cutoff, dt) (dx - dx_hat); fc = min_cutoff + beta |dx_hat|; "
                   "x_hat += alpha(fc, dt) (x - x_hat)",
        "tracking": {"max_match_box_sides": d["max_match"], "max_age_s": d["max_age_s"],
                     "rule": "greedy nearest-first by box-centre distance over max(box sides); an unmatched face "
                             "starts a new track; a track unseen for max_age_s is dropped"},
        "applies_to": "video streams only; photos are cropped from the raw keypoints",
    }


def build_contract(*, effect: str, size: int, crop: dict, fmt: str, precision: str | None = None,
                   source: dict, metrics: dict, face_mask: bool = False, input_name: str = "image",
                   output_name: str = "output", files: dict | None = None) -> dict:
    """The contract of one exported file (precision given), or of a folder's ONNX files (files: name -> record)."""
    spec = cropgeo.CropSpec.from_dict(crop)
    c: dict[str, Any] = {
        "contract_version": CONTRACT_VERSION, "effect": effect, "size": int(size), "format": fmt,
        "input": input_name, "output": output_name, "pixels": pixels_for(fmt), "crop": spec.to_dict(),
        "detector": detector(), "fit": fit(), "paste": paste(spec), "inner_face": inner_face(spec, face_mask),
        "smoothing": smoothing(), "source": source, "metrics": metrics,
    }
    if precision is not None:
        c["precision"] = precision
    if files is not None:
        c["files"] = files
    return validate_contract(c)


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def _where(path) -> str:
    return "/".join(str(p) for p in path) or "(top)"


def validate_contract(contract: Any, name: str = "contract") -> dict:
    """The contract itself if it is valid (schema, then the rules a schema cannot say); else FacefxError, one line."""
    import jsonschema

    if not isinstance(contract, dict):
        raise FacefxError(f"{name} is not a JSON object; re-export the model with export/export.py")
    version = contract.get("contract_version")
    if version != CONTRACT_VERSION:
        raise FacefxError(f"{name} has contract version {version}, this facefx reads {CONTRACT_VERSION}; "
                          "re-export the model with export/export.py or update facefx")
    validator = jsonschema.Draft202012Validator(schema())
    err = jsonschema.exceptions.best_match(validator.iter_errors(contract))
    if err is not None:
        msg = err.message if len(err.message) < 160 else err.message[:157] + "..."
        raise FacefxError(f"{name} is invalid at {_where(err.absolute_path)}: {msg}; "
                          "re-export the model with export/export.py")
    if contract["crop"]["size"] != contract["size"]:
        raise FacefxError(f"{name} is invalid: crop size {contract['crop']['size']} differs from size "
                          f"{contract['size']}; re-export the model")
    if contract["pixels"] != pixels_for(contract["format"]):
        raise FacefxError(f"{name} is invalid: its pixels ({contract['pixels'].get('layout')}, "
                          f"{contract['pixels'].get('range')}) are not what a {contract['format']} file takes "
                          f"({pixels_for(contract['format'])['layout']}, {pixels_for(contract['format'])['range']}); "
                          "re-export the model")
    return contract


def parse_contract(text: str | bytes, name: str = "contract") -> dict:
    """A contract from its JSON text, validated."""
    try:
        contract = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise FacefxError(f"{name} is not readable JSON; re-export the model with export/export.py") from None
    return validate_contract(contract, name)


__all__ = ["CONTRACT_KEY", "CONTRACT_VERSION", "LAYOUTS", "SCHEMA_PATH", "SIDECAR", "build_contract", "detector",
           "fit", "inner_face", "parse_contract", "paste", "pixels_for", "schema", "smoothing", "validate_contract"]
