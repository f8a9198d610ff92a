"""One loader for exported effect models: backend chosen from the file, contract read from its metadata.

Never imports torch. The contract (facefx.runtime.contract, version 2: effect, size, pixels, crop, detector, fit,
paste mask, smoothing, provenance, metrics) is a JSON string stored under the metadata key "facefx" (ONNX
metadata_props; CoreML user-defined metadata; the TFLite flatbuffer's metadata list), so a model file alone tells
how to feed it. A model without it, with one that does not validate against the schema, whose tensors do not
match it, or that does not match what the caller expects, is refused with a FacefxError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facefx.errors import FacefxError
from facefx.runtime.contract import CONTRACT_KEY, parse_contract

# The shipped effects: models/ of a checkout, reached through the facefx/models link, which a wheel fills with the
# files themselves (pyproject.toml's package-data), so they are found from any working directory after any install.
MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
BACKENDS = {".onnx": "onnxruntime", ".ort": "onnxruntime", ".mlpackage": "coreml", ".mlmodel": "coreml",
            ".tflite": "litert"}


class EffectModel:
    """A loaded effect: call it on (N, 3, S, S) float32 RGB [-1, 1] and get the same back (whatever the file's own
    layout: an NHWC TFLite model is fed and read channels-last here)."""

    def __init__(self, path: Path, backend: str, contract: dict, session: Any):
        self.path = path
        self.backend = backend
        self.contract = contract
        self._session = session
        self._nhwc = contract["pixels"]["layout"] == "NHWC"
        if backend == "onnxruntime":
            self._input = session.get_inputs()[0].name
            self._output = session.get_outputs()[0].name
            shapes = [tuple(session.get_inputs()[0].shape), tuple(session.get_outputs()[0].shape)]
        elif backend == "litert":
            session.allocate_tensors()
            self._input = session.get_input_details()[0]["index"]
            self._output = session.get_output_details()[0]["index"]
            shapes = [tuple(session.get_input_details()[0]["shape"]), tuple(session.get_output_details()[0]["shape"])]
        else:
            return
        s = self.size
        want = (1, s, s, 3) if self._nhwc else (1, 3, s, s)
        for what, shape in zip(("input", "output"), shapes):
            if tuple(shape) != want:  # e.g. a 128 px model under a 256 px contract would paste garbage
                raise FacefxError(f"{path.name}'s {what} is {'x'.join(map(str, shape))} but its contract says "
                                  f"{'x'.join(map(str, want))}; re-export it with export/export.py")

    @property
    def size(self) -> int:
        return int(self.contract["size"])

    @property
    def effect(self) -> str:
        return str(self.contract["effect"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        s = self.size
        if x.ndim != 4 or x.shape[1:] != (3, s, s) or x.dtype != np.float32:
            raise FacefxError(f"{self.path.name} takes float32 (N, 3, {s}, {s}); got {x.dtype} {tuple(x.shape)}")
        if self.backend == "onnxruntime":
            # The exported graphs have a fixed batch of 1 (phone runtimes prefer static shapes).
            outs = [self._session.run([self._output], {self._input: x[i:i + 1]})[0] for i in range(len(x))]
            return np.concatenate(outs)
        if self.backend == "litert":
            outs = []
            for i in range(len(x)):
                xi = x[i:i + 1]
                self._session.set_tensor(self._input, np.ascontiguousarray(xi.transpose(0, 2, 3, 1)) if self._nhwc
                                         else xi)
                self._session.invoke()
                outs.append(self._session.get_tensor(self._output).copy())
            y = np.concatenate(outs)
            return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if self._nhwc else y
        return self._predict_coreml(x)

    def _predict_coreml(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - macOS only
        from PIL import Image

        from facefx.runtime.pixels import nchw_to_rgb, rgb_to_nchw

        outs = []
        for rgb in nchw_to_rgb(x):
            pred = self._session.predict({"image": Image.fromarray(rgb)})
            outs.append(rgb_to_nchw(np.asarray(next(iter(pred.values())).convert("RGB"))))
        return np.concatenate(outs)


def read_contract(path: str | os.PathLike) -> dict:
    """The facefx contract embedded in a model file (no inference session needed)."""
    path = Path(path)
    backend = _backend(path)
    if backend == "onnxruntime" and path.suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as err:
            raise FacefxError(f"{path.name} is not a readable ONNX model ({type(err).__name__}; truncated?); "
                              "re-export it") from None
        props = {p.key: p.value for p in model.metadata_props}
    elif backend == "onnxruntime":
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:
            raise FacefxError(f"{path.name} could not be loaded by ONNX Runtime ({str(err).splitlines()[0]}); "
                              "re-export it") from None
        props = session.get_modelmeta().custom_metadata_map
    elif backend == "litert":
        props = _tflite_metadata(path)
    else:
        import coremltools as ct

        props = dict(ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata)
    return _parse_contract(path, props)


def _parse_contract(path: Path, props: dict) -> dict:
    if CONTRACT_KEY not in props:
        raise FacefxError(f"{path.name} carries no facefx contract in its metadata; export it with export/export.py")
    contract = parse_contract(props[CONTRACT_KEY], f"{path.name}'s contract")
    fmt = {".onnx": "onnx", ".ort": "ort", ".tflite": "tflite", ".mlpackage": "coreml", ".mlmodel": "coreml"}
    if contract["format"] != fmt[path.suffix]:
        raise FacefxError(f"{path.name}'s contract describes a {contract['format']} file, not {fmt[path.suffix]}; "
                          "re-export it with export/export.py")
    return contract


def verify_model_file(path: Path) -> None:
    """A shipped model lies next to its export manifest.json (models/<effect>/): when that manifest lists this
    file, its sha256 must match, so a corrupted or tampered model is refused instead of run silently."""
    from facefx.manifest import MANIFEST, sha256_file

    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        raise FacefxError(f"{manifest_path} is not readable JSON; re-export {path.parent} with export/export.py") \
            from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "export":
        return  # not an export folder (e.g. a scratch folder next to another artifact's manifest)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise FacefxError(f"{manifest_path} lists no file hashes; re-export {path.parent} with export/export.py")
    digest = files.get(path.name)
    if digest is None:
        return  # a file added by hand next to an export: nothing recorded to compare with
    if path.is_file() and sha256_file(path) != digest:
        raise FacefxError(f"{path} does not match the hash in {manifest_path} (corrupt or modified); re-export it "
                          "or restore the shipped file")


def _tflite_metadata(path: Path) -> dict:
    """The flatbuffer's named metadata entries as strings (the LiteRT interpreter does not expose them)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(bytearray(path.read_bytes()), 0)
        out = {}
        for i in range(model.MetadataLength()):
            meta = model.Metadata(i)
            name = (meta.Name() or b"").decode(errors="replace")
            data = model.Buffers(meta.Buffer()).DataAsNumpy()
            if name == CONTRACT_KEY and not isinstance(data, int):  # DataAsNumpy gives 0 for an empty buffer
                out[name] = bytes(data).decode(errors="replace")
    except Exception as err:  # a truncated or foreign flatbuffer
        raise FacefxError(f"{path.name} is not a readable TFLite model ({type(err).__name__}); re-export it") from None
    return out


def _backend(path: Path) -> str:
    if not path.exists():
        raise FacefxError(f"model {path} does not exist; export one with export/export.py or pick a shipped effect")
    backend = BACKENDS.get(path.suffix)
    if backend is None:
        raise FacefxError(f"{path.name}: unknown model format; use .onnx, .ort, .tflite or .mlpackage")
    return backend


def load_model(path: str | os.PathLike, effect: str | None = None, size: int | None = None,
               crop: dict | None = None, threads: int | None = None) -> EffectModel:
    """Load an exported effect; refuse it if its contract is missing or differs from what the caller expects.

    `path` is a model file, or the name of a shipped effect ("age"), which loads its int8 ONNX model.
    """
    if isinstance(path, str) and not Path(path).suffix and not Path(path).exists():
        path = model_for_effect(path)
    path = Path(path)
    backend = _backend(path)
    verify_model_file(path)
    if backend == "coreml":
        import sys

        if sys.platform != "darwin":  # coremltools loads the file on Linux but fails at the first prediction
            raise FacefxError(f"{path.name} is a CoreML model and runs only on macOS/iOS; use the .onnx or .ort "
                              "model next to it")
        import coremltools as ct

        mlmodel = ct.models.MLModel(str(path))
        contract = _parse_contract(path, dict(mlmodel.user_defined_metadata))
        session: Any = mlmodel
    elif backend == "litert":
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise FacefxError(f"{path.name} is a TFLite model and needs the LiteRT interpreter: "
                              "pip install ai-edge-litert") from None
        contract = _parse_contract(path, _tflite_metadata(path))
        try:
            session = Interpreter(model_path=str(path), num_threads=threads or None)
        except Exception as err:  # LiteRT raises ValueError/RuntimeError with long texts
            raise FacefxError(f"{path.name} could not be loaded by LiteRT ({str(err).splitlines()[0]}); "
                              "re-export it") from None
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise FacefxError(f"{path.name} could not be loaded by ONNX Runtime ({str(err).splitlines()[0]}); "
                              "re-export it") from None
        contract = _parse_contract(path, session.get_modelmeta().custom_metadata_map)
    if effect is not None and contract["effect"] != effect:
        raise FacefxError(f"{path.name} is the {contract['effect']!r} effect, not {effect!r}")
    if size is not None and int(contract["size"]) != size:
        raise FacefxError(f"{path.name} takes {contract['size']} px crops, not {size}")
    if crop is not None and {k: v for k, v in contract["crop"].items() if k != "size"} != \
            {k: v for k, v in crop.items() if k != "size"}:
        raise FacefxError(f"{path.name} was trained on another crop geometry ({contract['crop'].get('name')}); "
                          "re-export it with this facefx")
    return EffectModel(path, backend, contract, session)


def model_for_effect(effect: str, models_dir: str | os.PathLike = MODELS_DIR, precision: str = "int8") -> Path:
    """Path of a shipped effect model: <models_dir>/<effect>/<effect>[_int8].onnx."""
    folder = Path(models_dir) / effect
    name = f"{effect}_int8.onnx" if precision == "int8" else f"{effect}.onnx"
    path = folder / name
    if not path.is_file():
        shipped = sorted(p.name for p in Path(models_dir).glob("*") if p.is_dir()) if Path(models_dir).is_dir() else []
        raise FacefxError(f"no {precision} model for effect {effect!r} at {path}; "
                          f"shipped effects: {', '.join(shipped) or 'none'} (export one with export/export.py)")
    return path
