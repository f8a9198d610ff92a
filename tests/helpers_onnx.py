"""Tiny ONNX effect models for tests, built with onnx.helper (no torch), carrying the facefx contract.

make_effect_model(path, ...) writes one model computing y = clip(scale * x + shift, -1, 1) per channel on
(1, 3, S, S) RGB [-1, 1] (scale 0.6, shift -0.3 visibly darkens a face), with the contract under the
metadata key "facefx", exactly as export/export.py embeds it. make_models_dir(root, ...) lays out
root/<effect>/<effect>.onnx and <effect>_int8.onnx the way models/ is shipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from facefx.runtime.contract import CONTRACT_KEY, build_contract
from facefx.runtime.crop import CropSpec

# Per effect: (scale, shift) per RGB channel, so switching effects is visible in a test or a manual run.
EFFECT_PARAMS = {
    "age": ((0.6, 0.6, 0.6), (-0.3, -0.3, -0.3)),  # darker
    "gender": ((0.8, 0.8, 0.8), (0.3, 0.1, 0.3)),  # lighter, pinkish
    "anime": ((1.0, 1.0, 1.0), (-0.2, 0.0, 0.3)),  # bluer
}


def contract(effect: str, size: int, crop: CropSpec | None = None) -> dict:
    crop = (crop or CropSpec()).with_size(size)
    return build_contract(effect=effect, size=size, crop=crop.to_dict(), fmt="onnx", precision="fp32",
                          source={"student": "tests/helpers_onnx.py", "student_hash": "0" * 64,
                                  "facefx_version": "test"}, metrics={})


def make_effect_model(path: str | Path, effect: str = "age", size: int = 64,
                      scale: Sequence[float] | float = 0.6, shift: Sequence[float] | float = -0.3,
                      embed_contract: bool = True, crop: CropSpec | None = None) -> Path:
    """Write a (1, 3, size, size) -> same ONNX model: y = clip(scale * x + shift, -1, 1), per RGB channel."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sc = np.broadcast_to(np.asarray(scale, np.float32), (3,)).reshape(1, 3, 1, 1)
    sh = np.broadcast_to(np.asarray(shift, np.float32), (3,)).reshape(1, 3, 1, 1)
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, sc.shape, sc.ravel().tolist()),
             helper.make_tensor("shift", TensorProto.FLOAT, sh.shape, sh.ravel().tolist()),
             helper.make_tensor("lo", TensorProto.FLOAT, [], [-1.0]),
             helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])]
    nodes = [helper.make_node("Mul", ["image", "scale"], ["scaled"]),
             helper.make_node("Add", ["scaled", "shift"], ["shifted"]),
             helper.make_node("Clip", ["shifted", "lo", "hi"], ["output"])]
    shape = [1, 3, size, size]  # fixed batch of 1, like the exported students
    graph = helper.make_graph(nodes, f"facefx_test_{effect}",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="facefx-tests")
    model.ir_version = 8  # readable by any onnxruntime of the last few years
    if embed_contract:
        helper.set_model_props(model, {CONTRACT_KEY: json.dumps(contract(effect, size, crop))})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_models_dir(root: str | Path, effects: Sequence[str] = ("age",), size: int = 64) -> Path:
    """root/<effect>/<effect>.onnx and <effect>_int8.onnx (the same tiny graph under both names)."""
    root = Path(root)
    for effect in effects:
        scale, shift = EFFECT_PARAMS.get(effect, EFFECT_PARAMS["age"])
        for name in (f"{effect}.onnx", f"{effect}_int8.onnx"):
            make_effect_model(root / effect / name, effect, size, scale, shift)
    return root
