"""The model contract (v2): every shipped contract validates against the committed JSON Schema, it states the
geometry the code computes (a port rebuilding the masks from the contract alone gets the same pixels), and
load_model refuses a file whose contract is invalid with one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import pytest

from facefx.errors import FacefxError
from facefx.runtime import crop as cropgeo
from facefx.runtime.contract import (
    CONTRACT_KEY,
    SCHEMA_PATH,
    SIDECAR,
    build_contract,
    pixels_for,
    schema,
    validate_contract,
)
from facefx.runtime.loader import load_model, read_contract
from facefx.runtime.smoothing import OneEuroFilter
from tests.helpers_onnx import contract as sample_contract
from tests.helpers_onnx import make_effect_model

MODELS = Path(__file__).resolve().parents[1] / "models"
EFFECTS = sorted(p.name for p in MODELS.iterdir() if (p / "manifest.json").is_file())


def test_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize("effect", EFFECTS)
def test_every_shipped_contract_validates_and_the_sidecar_matches_the_files(effect):
    folder = MODELS / effect
    sidecar = json.loads((folder / SIDECAR).read_text())
    jsonschema.validate(sidecar, schema())  # the committed schema itself, not only our validator
    validate_contract(sidecar)
    assert sidecar["effect"] == effect and sidecar["pixels"]["layout"] == "NCHW"
    manifest = json.loads((folder / "manifest.json").read_text())
    for name, record in sidecar["files"].items():
        embedded = read_contract(folder / name)
        jsonschema.validate(embedded, schema())
        assert embedded["precision"] == record["precision"]
        assert manifest["files"][name] == record["sha256"]  # the sidecar names the very files shipped
        # One contract: the embedded one and the sidecar agree on everything a port rebuilds the pipeline from.
        for key in ("size", "pixels", "crop", "detector", "fit", "paste", "inner_face", "smoothing"):
            assert embedded[key] == sidecar[key], key
    assert manifest["files"][SIDECAR]


def test_contract_geometry_rebuilds_the_masks_the_code_pastes_with():
    """A port following the contract's formulas and numbers gets the runtime's masks to float32 precision."""
    spec = cropgeo.zoomed(cropgeo.CropSpec(size=64), 1.4)
    c = build_contract(effect="age", size=64, crop=spec.to_dict(), fmt="onnx", precision="fp32", metrics={},
                       source={"student": "x", "student_hash": "0" * 64, "facefx_version": "test"}, face_mask=True)
    m = c["paste"]["mask"]
    u = (np.arange(64) + 0.5) / 64
    uu, vv = np.meshgrid(u, u)
    (cx, cy), (ax, ay) = m["head_centre"], m["head_axes"]
    rho = np.sqrt(((uu - cx) / ax) ** 2 + ((vv - cy) / ay) ** 2)
    head = np.clip((1 + m["head_ramp"] / 2 - rho) / m["head_ramp"], 0, 1)
    n = m["edge_exponent"]
    r = (np.abs(2 * uu - 1) ** n + np.abs(2 * vv - 1) ** n) ** (1 / n)
    a = head * np.clip((m["edge_radius"] - r) / m["edge_ramp"], 0, 1)
    np.testing.assert_allclose(a * a * (3 - 2 * a), cropgeo.feather_mask(spec), atol=1e-6)
    f = c["inner_face"]
    assert f["confined"] is True
    rho = np.sqrt(((uu - f["centre"][0]) / f["axes"][0]) ** 2 + ((vv - f["centre"][1]) / f["axes"][1]) ** 2)
    a = np.clip((f["outer"] - rho) / (f["outer"] - 1), 0, 1)
    np.testing.assert_allclose(a * a * (3 - 2 * a), cropgeo.inner_face_mask(spec), atol=1e-6)
    # The fit: 4 keypoints, and the template in crop pixels is where they land.
    kp = np.array([[100, 120], [160, 118], [131, 150], [130, 185], [70, 130], [190, 130]], float)
    mat = cropgeo.face_transform(kp, spec)
    assert c["fit"]["keypoints_used"] == [0, 1, 2, 3]
    assert np.abs(cropgeo.apply(mat, kp[:4]) - np.asarray(spec.template) * 64).max() < 3


def test_contract_smoothing_formula_is_the_filters():
    """The One-Euro recipe written in the contract, run by hand, gives the runtime filter's values."""
    c = sample_contract("age", 32)
    s = c["smoothing"]
    flt = OneEuroFilter(s["min_cutoff_hz"], s["beta"], s["d_cutoff_hz"])
    xs = [0.0, 0.3, 0.35, 1.0, 0.9]
    x_hat, dx_hat = xs[0], 0.0
    assert flt(np.array(xs[0]), 0.0) == xs[0]

    def alpha(fc, dt):
        return 1 / (1 + 1 / (2 * math.pi * fc * dt))

    for i, x in enumerate(xs[1:], 1):
        dt = 1 / 30
        dx_hat += alpha(s["d_cutoff_hz"], dt) * ((x - x_hat) / dt - dx_hat)
        x_hat += alpha(s["min_cutoff_hz"] + s["beta"] * abs(dx_hat), dt) * (x - x_hat)
        assert float(flt(np.array(x), i / 30)) == pytest.approx(x_hat, abs=1e-12)


@pytest.mark.parametrize("case, change, message", [
    ("size_text", lambda c: c.update(size="abc"), "invalid at size"),
    ("crop_empty", lambda c: c.update(crop={}), "invalid at crop"),
    ("pixels_nhwc_01", lambda c: c["pixels"].update(layout="NHWC", range=[0.0, 1.0]), "pixels"),
    ("no_detector", lambda c: c.pop("detector"), "detector"),
    ("old_version", lambda c: c.update(contract_version=1), "contract version 1"),
    ("crop_size", lambda c: c["crop"].update(size=128), "crop size 128"),
    ("two_keypoints_bad", lambda c: c["fit"].update(keypoints_used=[0, 9]), "keypoints_used"),
])
def test_load_model_refuses_an_invalid_contract_in_one_line(tmp_path, case, change, message):
    path = make_effect_model(tmp_path / f"{case}.onnx", size=32, embed_contract=False)
    c = sample_contract("age", 32)
    change(c)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {CONTRACT_KEY: json.dumps(c)})
    onnx.save(model, str(path))
    with pytest.raises(FacefxError, match=message) as err:
        load_model(path)
    assert "\n" not in str(err.value) and "re-export" in str(err.value)


def test_load_model_refuses_a_model_whose_tensors_differ_from_its_contract(tmp_path):
    """A 32 px model under a 64 px contract would paste garbage: refused before the first frame."""
    path = make_effect_model(tmp_path / "small.onnx", size=32, embed_contract=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {CONTRACT_KEY: json.dumps(sample_contract("age", 64))})
    onnx.save(model, str(path))
    with pytest.raises(FacefxError, match="input is 1x3x32x32 but its contract says 1x3x64x64"):
        load_model(path)


def test_each_format_states_the_pixels_it_really_takes():
    assert pixels_for("onnx")["layout"] == "NCHW" and pixels_for("ort")["range"] == [-1.0, 1.0]
    assert pixels_for("tflite")["layout"] == "NHWC"
    coreml = pixels_for("coreml")
    assert coreml["layout"] == "image" and coreml["dtype"] == "uint8" and coreml["range"] == [0.0, 255.0]
