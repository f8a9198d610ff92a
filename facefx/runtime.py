"""One loader for exported effect models: backend chosen from the file, contract read from its metadata.

Never imports torch. The contract (effect, size, pixel contract, crop spec, provenance, metrics) is a JSON
string stored under the metadata key "facefx" (ONNX metadata_props; CoreML user-defined metadata; the TFLite
flatbuffer's metadata list), so a
model file alone tells how to feed it. A model without it, or with one that does not match what the caller
expects, is refused with a FacefxError.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from facefx.errors import FacefxError

CONTRACT_KEY = "facefx"
CONTRACT_VERSION = 1
BACKENDS = {".onnx": "onnxruntime", ".ort": "onnxruntime", ".mlpackage": "coreml", ".mlmodel": "coreml",
            ".tflite": "litert"}


class EffectModel:
    """A loaded effect: call it on (N, 3, S, S) float32 RGB [-1, 1] and get the same back."""

    def __init__(self, path: Path, backend: str, contract: dict, session: Any):
        self.path = path
        self.backend = backend
        self.contract = contract
        self._session = session
        if backend == "onnxruntime":
            self._input = session.get_inputs()[0].name
            self._output = session.get_outputs()[0].name
        elif backend == "litert":
            session.allocate_tensors()
            self._input = session.get_input_details()[0]["index"]
            self._output = session.get_output_details()[0]["index"]

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
                self._session.set_tensor(self._input, x[i:i + 1])
                self._session.invoke()
                outs.append(self._session.get_tensor(self._output).copy())
            return np.concatenate(outs).reshape(x.shape)
        return self._predict_coreml(x)

    def _predict_coreml(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - macOS only
        from PIL import Image

        from facefx.pixels import nchw_to_rgb, rgb_to_nchw

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

        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    elif backend == "onnxruntime":
        import onnxruntime as ort

        props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    elif backend == "litert":
        props = _tflite_metadata(path)
    else:
        import coremltools as ct

        props = dict(ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata)
    return _parse_contract(path, props)


def _parse_contract(path: Path, props: dict) -> dict:
    if CONTRACT_KEY not in props:
        raise FacefxError(f"{path.name} carries no facefx contract in its metadata; export it with export/export.py")
    try:
        contract = json.loads(props[CONTRACT_KEY])
    except json.JSONDecodeError:
        raise FacefxError(f"{path.name} has an unreadable facefx contract; re-export it with export/export.py") from None
    missing = {"contract_version", "effect", "size", "pixels", "crop"} - set(contract)
    if missing:
        raise FacefxError(f"{path.name}'s contract lacks {sorted(missing)}; re-export it with export/export.py")
    if contract["contract_version"] != CONTRACT_VERSION:
        raise FacefxError(f"{path.name} has contract version {contract['contract_version']}, this facefx reads "
                          f"{CONTRACT_VERSION}; re-export it or update facefx")
    return contract


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
    """Load an exported effect; refuse it if its contract is missing or differs from what the caller expects."""
    path = Path(path)
    backend = _backend(path)
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
        except Exception as err:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError with long texts
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


def model_for_effect(effect: str, models_dir: str | os.PathLike = "models", precision: str = "int8") -> Path:
    """Path of a shipped effect model: models/<effect>/<effect>[_int8].onnx."""
    folder = Path(models_dir) / effect
    name = f"{effect}_int8.onnx" if precision == "int8" else f"{effect}.onnx"
    path = folder / name
    if not path.is_file():
        shipped = sorted(p.name for p in Path(models_dir).glob("*") if p.is_dir()) if Path(models_dir).is_dir() else []
        raise FacefxError(f"no {precision} model for effect {effect!r} at {path}; "
                          f"shipped effects: {', '.join(shipped) or 'none'} (export one with export/export.py)")
    return path
