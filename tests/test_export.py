"""Export: a tiny random student (32 px) with a full lineage (faces -> teacher -> pairs -> student) goes through
every format available here; each file round-trips through facefx.runtime.loader with its contract, and bad inputs fail
with one clear line and nothing on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facefx.errors import FacefxError
from facefx.export.exporter import ExportConfig, export_formats, export_student, read_faces, resolve_formats
from facefx.manifest import content_hash, hash_files, new_manifest, read_manifest, verify_files, write_manifest
from facefx.metrics import psnr
from facefx.runtime.crop import CropSpec
from facefx.runtime.loader import load_model, read_contract
from facefx.runtime.pixels import PIXEL_CONTRACT
from facefx.train import nets

S = 32
# global_context and internal_scale on: the whole-face branch (GlobalAveragePool + broadcast add) and the
# half-resolution U-Net (AveragePool in, bilinear Resize out) must survive every format too; shipped students
# without them are checked by test_shipped_tflite_runs_like_its_onnx_and_refuses_another_contract.
SPEC = {"type": "student_generator", "widths": [4, 8], "n_blocks": 1, "global_context": True, "internal_scale": 2}


def _artifact(folder: Path, kind: str, parent, **fields) -> Path:
    folder.mkdir(parents=True)
    write_manifest(folder, new_manifest(kind, effect="age", parent=parent, **fields))
    return folder


@pytest.fixture(scope="module")
def student(tmp_path_factory, faces_artifact) -> Path:
    """A random student (head not zero, BatchNorm statistics not trivial) with a teacher and pairs above it."""
    root = tmp_path_factory.mktemp("lineage")
    faces = str(faces_artifact)
    teacher = _artifact(root / "teacher", "teacher", [faces], resolution=S, crop=CropSpec(size=S).to_dict(),
                        domains={"A": [faces], "B": [faces]},
                        network={"G_AB": {"type": "resnet_generator", "ngf": 8}})
    pairs = _artifact(root / "pairs", "pairs", teacher, direction="AB", face_sets=[faces], resolution=S)
    folder = root / "student"
    folder.mkdir()
    torch.manual_seed(0)
    net = nets.build(SPEC)
    torch.nn.init.normal_(net.head.weight, std=0.05)  # so the output is not the identity
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    nets.save_weights(net, folder / "G.safetensors")
    m = new_manifest("student", effect="age", parent=pairs, network={"G": SPEC}, resolution=S,
                     crop=CropSpec(size=S).to_dict(), pixels=PIXEL_CONTRACT, direction="AB")
    m["metrics"] = {"l1_vs_teacher": 0.05}
    m["files"] = hash_files(folder, ["G.safetensors"])
    write_manifest(folder, m)
    return folder


@pytest.fixture(scope="module")
def exported(student, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "age"
    export_student(ExportConfig(student=str(student), out=str(out), calib=4, eval_faces=4, repeats=2),
                   log=lambda _line: None)
    return out


@pytest.fixture(scope="module")
def faces_and_reference(student, faces_artifact):
    """Real held-out faces at the student's size and the PyTorch student's outputs on them."""
    from facefx.train.prepare import load_faces

    _, paths = load_faces(faces_artifact, "test")
    x = read_faces(paths[:3], S)
    net, _ = nets.load_from_artifact(student, "G", kind="student")
    with torch.no_grad():
        return x, net(torch.from_numpy(x)).numpy()


def _formats(out: Path) -> dict:
    return read_manifest(out, kind="export")["formats"]


# ---- formats table ------------------------------------------------------------------------------------------------
def test_formats_table_has_one_function_per_format():
    from facefx.export.exporter import Exporter

    rows = export_formats()
    assert [r["name"] for r in rows] == ["onnx", "int8", "ort", "coreml", "tflite"]
    for r in rows:
        assert callable(getattr(Exporter, r["function"]))
        assert r["status"] == "available" or r["status"].startswith("unavailable: ")


def test_missing_converter_is_reported_unavailable_not_a_crash(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "litert_torch" else real(name, *a))
    run, unavailable = resolve_formats(["int8", "tflite"])
    assert [f.name for f in run] == ["onnx", "int8"]  # int8 brings the fp32 ONNX it quantizes
    assert "litert-torch" in unavailable["tflite"]
    with pytest.raises(FacefxError, match="unknown format"):
        resolve_formats(["onnx", "pth"])


# ---- ONNX, int8, ORT ------------------------------------------------------------------------------------------------
def test_onnx_matches_pytorch_and_carries_the_contract(exported, student, faces_and_reference):
    import onnx

    x, ref = faces_and_reference
    path = exported / "age.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = {n.op_type for n in model.graph.node}
    assert "BatchNormalization" not in ops and "Conv" in ops  # BatchNorm folded into the convs
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["output"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, S, S]
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    effect = load_model(path, effect="age", size=S)
    assert np.abs(effect(x) - ref).max() < 1e-3
    assert np.abs(ref - x).max() > 0.01  # the random student really changes the face
    contract = effect.contract
    assert contract["crop"] == CropSpec(size=S).to_dict() and contract["pixels"].items() >= PIXEL_CONTRACT.items()
    assert contract["source"]["student_hash"] == content_hash(read_manifest(student))
    assert contract["metrics"]["l1_vs_teacher"] == 0.05


def test_int8_is_quantized_close_to_fp32_and_keeps_the_contract(exported, faces_and_reference):
    import onnx

    x, _ = faces_and_reference
    path = exported / "age_int8.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    fp32, int8 = load_model(exported / "age.onnx")(x), load_model(path, effect="age", size=S)
    assert read_contract(path)["precision"] == "int8"
    db = psnr(int8(x), fp32)
    assert 25 < db < 200  # finite, and close to fp32
    res = _formats(exported)["int8"]
    assert res["parity"]["psnr_vs_fp32_db"] > 25 and res["latency"]["p50_ms"] > 0
    assert res["sizes"]["age_int8.onnx"] == path.stat().st_size


def test_ort_mobile_models_load_and_match(exported, faces_and_reference):
    x, ref = faces_and_reference
    fp32 = load_model(exported / "age.ort", effect="age", size=S)
    assert np.abs(fp32(x) - ref).max() < 1e-3
    assert psnr(load_model(exported / "age_int8.ort", effect="age")(x), ref) > 25
    config = (exported / "required_operators.config").read_text()
    assert "Conv" in config and "/tmp" not in config  # a reduced-build config naming the shipped files only
    shipped = {f for f in _formats(exported)["ort"]["files"] if f.endswith(".ort")}
    assert all(f"# - {f}" in config for f in shipped)  # the config covers every .ort that ships


def test_ort_files_keep_standard_ops_that_nnapi_takes_whole(exported, tmp_path):
    """The .ort graphs (basic optimizations) hold no CPU-only fused ops, and ONNX Runtime's usability checker finds
    every node of them supported by NNAPI: one partition, nothing left on the CPU."""
    import onnx
    import onnxruntime as ort
    from onnxruntime.tools.ort_format_model import create_config_from_models

    from facefx.export.exporter import ep_usability, fill_empty_resize_roi

    res = _formats(exported)["ort"]
    for name in ("age.onnx", "age_int8.onnx"):
        ort_name = name.replace(".onnx", ".ort")
        create_config_from_models([exported / ort_name], tmp_path / "ops.config", False)
        ops = (tmp_path / "ops.config").read_text()
        assert "com.microsoft" not in ops and "FusedConv" not in ops and "QLinearConv" not in ops, ops
        # Rebuild the graph the .ort holds (basic optimizations of the ROI-filled ONNX) and check it independently.
        src = tmp_path / name
        src.write_bytes((exported / name).read_bytes())
        fill_empty_resize_roi(src)
        assert not any(n.op_type == "Resize" and "" in list(n.input)[:2] for n in onnx.load(str(src)).graph.node)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(tmp_path / f"basic_{name}")
        ort.InferenceSession(str(src), so, providers=["CPUExecutionProvider"])
        nnapi = ep_usability(tmp_path / f"basic_{name}")["nnapi"]
        assert nnapi["supported_nodes"] == nnapi["nodes"] > 0 and nnapi["partitions"] == 1, nnapi
        assert res["execution_providers"][ort_name]["nnapi"]["supported_nodes"] == \
            res["execution_providers"][ort_name]["nnapi"]["nodes"]
    cpu = res["cpu_optimized_variant"]
    assert cpu["kept"] == ("age_int8_cpu.ort" in res["files"]) and (cpu["p50_ms"] < cpu["basic_p50_ms"]) == cpu["kept"]


# ---- CoreML -------------------------------------------------------------------------------------------------------
def _coreml_spec(path: Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


@pytest.mark.skipif(export_formats()[3]["status"] != "available", reason="coremltools not installed")
def test_coreml_packages_take_and_return_rgb_images_with_the_contract(exported):
    for name in ("age.mlpackage", "age_w8.mlpackage", "age_pal6.mlpackage"):
        spec = _coreml_spec(exported / name)
        assert spec.specificationVersion >= 7  # iOS 16
        (inp,), (out,) = spec.description.input, spec.description.output
        assert (inp.name, out.name) == ("image", "output")
        for d in (inp, out):
            assert d.type.WhichOneof("Type") == "imageType"
            assert (d.type.imageType.width, d.type.imageType.height) == (S, S)
        contract = read_contract(exported / name)
        assert contract["effect"] == "age" and contract["size"] == S and contract["format"] == "coreml"
        # the contract states the package's real I/O: RGB images, 0-255 (the scaling is inside the model)
        assert contract["pixels"]["layout"] == "image" and contract["pixels"]["range"] == [0.0, 255.0]
        assert contract["pixels"]["dtype"] == "uint8" and contract["pixels"]["channels"] == "RGB"
        assert (spec.description.input[0].type.imageType.colorSpace
                == spec.description.output[0].type.imageType.colorSpace)
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in nets.build(SPEC).modules())
    assert _formats(exported)["coreml"]["weights_vs_pytorch"]["convs"] == n_convs
    if sys.platform != "darwin":  # a clear refusal instead of coremltools' failure at the first prediction
        with pytest.raises(FacefxError, match="runs only on macOS"):
            load_model(exported / "age.mlpackage")


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML predictions need macOS")
def test_coreml_predictions_match_pytorch(exported, faces_and_reference):  # pragma: no cover - macOS only
    x, ref = faces_and_reference
    y = load_model(exported / "age.mlpackage", effect="age", size=S)(x)
    # fp16 inside, uint8 image output: about one grey level
    assert np.abs(y - ref).max() < 0.05 and np.abs(y - ref).mean() < 0.01


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="CoreML predictions need macOS")
@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "models").glob("*/*.mlpackage")),
                         ids=lambda p: p.name)
def test_shipped_coreml_runs_and_prints_a_line_for_the_card(path):  # pragma: no cover - macOS only
    """Run with -s on a Mac: prints a line to paste into the model card (compute units, measured time)."""
    import platform
    import statistics
    import time

    import coremltools as ct
    from PIL import Image

    size = read_contract(path)["size"]
    img = Image.fromarray(np.full((size, size, 3), 128, np.uint8))
    for units in (ct.ComputeUnit.ALL, ct.ComputeUnit.CPU_AND_GPU, ct.ComputeUnit.CPU_ONLY):
        model = ct.models.MLModel(str(path), compute_units=units)
        out = model.predict({"image": img})["output"]
        assert out.size == (size, size)
        times = []
        for _ in range(20):
            t = time.perf_counter()
            model.predict({"image": img})
            times.append((time.perf_counter() - t) * 1000)
        print(f"\n| `{path.name}` | {platform.machine()} Mac, macOS {platform.mac_ver()[0]} | {units.name} | "
              f"p50 {statistics.median(times):.2f} ms (coremltools predict, 20 runs) |")


# ---- TFLite ---------------------------------------------------------------------------------------------------------
_NO_TFLITE = export_formats()[4]["status"] != "available"
TFLITE = {"age.tflite": "fp32", "age_fp16.tflite": "fp16", "age_int8.tflite": "int8"}


@pytest.mark.skipif(_NO_TFLITE, reason="litert-torch not installed (extra [tflite])")
def test_tflite_is_nhwc_without_transposes_matches_and_passes_the_gpu_analyzer(exported, faces_and_reference):
    from ai_edge_litert.interpreter import Interpreter

    from facefx.export.exporter import tflite_gpu_compatibility, tflite_ops

    x, ref = faces_and_reference
    fp32 = load_model(exported / "age.tflite", effect="age", size=S)
    assert np.abs(fp32(x) - ref).max() < 1e-3
    for name, precision in TFLITE.items():
        path = exported / name
        interp = Interpreter(model_path=str(path))
        (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
        assert list(inp["shape"]) == list(out["shape"]) == [1, S, S, 3]  # NHWC at both ends
        assert inp["dtype"] == out["dtype"] == np.float32  # int8 too: float I/O, quantized inside
        ops = tflite_ops(path)
        assert "TRANSPOSE" not in ops and ops["CONV_2D"] > 0
        assert (ops.get("QUANTIZE", 0) > 0) == (precision == "int8")
        assert (ops.get("DEQUANTIZE", 0) > 0) == (precision != "fp32")  # fp16 weights dequantized once at load
        assert tflite_gpu_compatibility(path)[0]
        model = load_model(path, effect="age", size=S)
        assert model.contract["precision"] == precision and model.contract["pixels"]["layout"] == "NHWC"
        if precision != "fp32":
            assert psnr(model(x), fp32(x)) > (25 if precision == "int8" else 45)
    par = _formats(exported)["tflite"]["parity"]
    assert par["age.tflite"]["max_abs_diff_vs_pytorch"] < 1e-3 and par["age.tflite"]["psnr_vs_fp32_onnx_db"] > 60


@pytest.mark.skipif(_NO_TFLITE, reason="litert-torch not installed (extra [tflite])")
def test_tflite_metadata_says_image_in_and_out_with_normalization_and_the_contract(exported):
    from facefx.assets.make_blazeface_model import _stub_metadata_version

    _stub_metadata_version()
    from mediapipe.tasks.python.metadata import metadata

    for name in TFLITE:
        md = json.loads(metadata.MetadataDisplayer.with_model_file(str(exported / name)).get_metadata_json())
        sub = md["subgraph_metadata"][0]
        for t in sub["input_tensor_metadata"] + sub["output_tensor_metadata"]:
            assert t["content"]["content_properties"]["color_space"] == "RGB"
            norm = t["process_units"][0]["options"]
            assert norm["mean"] == [127.5] and norm["std"] == [127.5]
        (custom,) = sub["custom_metadata"]
        assert custom["name"] == "facefx"
        assert read_contract(exported / name)["format"] == "tflite"


def _shipped_tflite() -> list[Path]:
    return sorted((Path(__file__).resolve().parents[1] / "models").glob("*/*.tflite"))


@pytest.mark.skipif(not _shipped_tflite(), reason="no TFLite model built here (python export/export.py --effect age "
                                                  "--formats mobile)")
@pytest.mark.parametrize("path", _shipped_tflite(), ids=lambda p: p.name)
def test_shipped_tflite_runs_like_its_onnx_and_refuses_another_contract(path, faces_artifact, tmp_path):
    """A mobile export of a shipped effect runs like the committed .onnx beside it (it is converted from the student
    snapshot, whose weights are stored in fp16), contract included."""
    from ai_edge_litert import schema_py_generated as schema

    from facefx.train.prepare import load_faces

    contract = read_contract(path)
    size, effect = contract["size"], contract["effect"]
    _, paths = load_faces(faces_artifact, "test")
    x = read_faces(paths[:2], size)
    lite = load_model(path, effect=effect, size=size, threads=1)
    floor = {"fp32": 60, "fp16": 40, "int8": 28}[contract["precision"]]
    assert psnr(lite(x), load_model(path.parent / f"{effect}.onnx")(x)) > floor
    with pytest.raises(FacefxError, match=f"is the {effect!r} effect"):
        load_model(path, effect="not-" + effect)
    bare = schema.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    bare.metadata = [m for m in bare.metadata or [] if m.name not in ("facefx", b"facefx")]
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(bare.Pack(builder), file_identifier=b"TFL3")
    (tmp_path / "bare.tflite").write_bytes(builder.Output())
    with pytest.raises(FacefxError, match="carries no facefx contract"):
        load_model(tmp_path / "bare.tflite")


# ---- manifest, card, atomic replace ----------------------------------------------------------------------------------
def test_manifest_and_model_card(exported, student):
    m = read_manifest(exported, kind="export")
    verify_files(exported, m)  # every shipped file hashed
    assert m["parent"]["path"] == str(student) and m["parent"]["kind"] == "student"
    assert [r["kind"] for r in m["lineage"]] == ["student", "pairs", "teacher", "faces"]
    for name, res in m["formats"].items():
        assert res["status"] == "ok" or res["status"].startswith("unavailable: "), name
        if res["status"] == "ok":
            assert res["seconds"] >= 0 and all(v > 0 for v in res["sizes"].values())
    card = (exported / "README.md").read_text()
    for text in ("UTKFace", "non-commercial research", "`age.onnx`", "`age_int8.onnx`", "CVPixelBuffer",
                 "required_operators.config", m["machine"]["cpu"], "l1_vs_teacher", "pairs", "teacher"):
        assert text in card, text
    assert "Warnings" not in card  # metrics recorded, int8 above target


def test_model_card_of_a_swap_student_names_both_directions(exported):
    """A swap student (distill/pairs.py --direction swap) is described as one model for both ways, with its
    strength, and the teacher's judge figures for each direction."""
    from facefx.export.modelcard import render_model_card

    m = read_manifest(exported, kind="export")
    student = {"direction": "swap", "strength": 2.0, "face_mask": True, "metrics": {"psnr_vs_teacher_db": 30.0},
               "lineage": [{"stage": "trained from scratch", "iters": 15000, "batch": 8, "where": "cpu"},
                           {"stage": "warm start from students/gender", "iters": 5000, "batch": 8, "where": "cpu"}]}
    judged = {"judge": "gender", "faces": 10, "flip_rate": 0.9}
    teacher = {"domains": {"A": ["faces/men"], "B": ["faces/women"]}, "resolution": 128,
               "network": {"G_AB": {"ngf": 32}, "G_BA": {"ngf": 32}},
               "lineage": [{"stage": "CPU run", "iters": 10464, "batch": 4, "where": "2-core CPU"},
                           {"stage": "warm start on zoomed crops", "iters": 2850, "batch": 16, "where": "one H100"}],
               "metrics": {"judge": {"AB": {**judged, "direction": "AB"}, "BA": {**judged, "direction": "BA"}}}}
    card = render_model_card(m, student, teacher)
    assert "**men** to **women**, and **women** to **men**" in card
    assert "Effect strength 2" in card and "(AB)" in card and "(BA)" in card and "G_BA" in card
    assert "confined to the inner face" in card  # pairs made with --face-mask
    assert "| CPU run | 10,464 | 4 | 2-core CPU |" in card and "| warm start on zoomed crops | 2,850 | 16 |" in card
    assert "- Student training, stage by stage" in card and "| warm start from students/gender | 5,000 | 8 |" in card


def test_model_card_lists_every_export_command_in_one_table(exported):
    """An export with formats added later (--add) shows both commands as rows of the one lineage table."""
    from facefx.export.modelcard import render_model_card

    m = read_manifest(exported, kind="export")
    m = {**m, "commands": ["export.py --student S", "export.py --student S --formats tflite --add"]}
    lines = render_model_card(m, {"metrics": {"psnr_vs_teacher_db": 30.0}}).splitlines()
    rows = [i for i, line in enumerate(lines) if line.startswith("| export | this folder |")]
    assert len(rows) == 2 and rows[1] == rows[0] + 1  # adjacent: a blank line between them would end the table
    assert lines[rows[0] - 1].startswith("|")  # and they follow the lineage rows


def test_failed_export_leaves_the_old_folder_untouched(exported, student, tmp_path):
    before = sorted(p.name for p in exported.iterdir())
    broken = tmp_path / "student"
    broken.mkdir()
    for f in student.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "G.safetensors").write_bytes(b"not weights")
    with pytest.raises(FacefxError, match="does not match its manifest hash"):
        export_student(ExportConfig(student=str(broken), out=str(exported), formats=["onnx"]), log=lambda _l: None)
    assert sorted(p.name for p in exported.iterdir()) == before
    assert not [p for p in exported.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_reexport_replaces_the_folder_only_when_complete(exported, student, tmp_path, monkeypatch):
    import shutil

    from facefx.export.exporter import Exporter

    out = tmp_path / "age"
    shutil.copytree(exported, out)
    real_onnx = Exporter.export_onnx

    def half_then_crash(self):
        (self.dir / "age.onnx").write_bytes(b"half a model")
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(Exporter, "export_onnx", half_then_crash)
    with pytest.raises(FacefxError, match="onnx export failed .*converter crashed"):
        export_student(ExportConfig(student=str(student), out=str(out), formats=["onnx"]), log=lambda _l: None)
    assert (out / "age.onnx").read_bytes() == (exported / "age.onnx").read_bytes()  # the old export, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["age"]  # no temp folder left
    monkeypatch.setattr(Exporter, "export_onnx", real_onnx)
    export_student(ExportConfig(student=str(student), out=str(out), formats=["onnx"], calib=2, eval_faces=2,
                                repeats=1), log=lambda _l: None)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "age.onnx", "contract.json", "manifest.json"]
    assert list(read_manifest(out, kind="export")["formats"]) == ["onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["age"]


def test_add_remakes_one_format_and_keeps_the_others(exported, student, tmp_path):
    """--add (how TFLite joins from its own environment): the other formats' files stay byte for byte."""
    import shutil

    out = tmp_path / "age"
    shutil.copytree(exported, out)
    before = read_manifest(out, kind="export")["formats"]
    lines: list[str] = []
    export_student(ExportConfig(student=str(student), out=str(out), formats=["ort"], calib=2, eval_faces=2,
                                repeats=1, add=True), log=lines.append)
    kept = sorted(line.split(":")[0].strip() for line in lines if "kept from the earlier export" in line)
    assert kept == sorted(set(before) - {"onnx", "ort"})  # ort is made from onnx: both remade
    m = read_manifest(out, kind="export")
    assert list(m["formats"]) == list(before)  # every format still listed, in table order
    for name in set(before) - {"onnx", "ort"}:
        assert m["formats"][name] == before[name]
    for f in before["int8"]["files"]:
        assert (out / f).read_bytes() == (exported / f).read_bytes()
    assert m["formats"]["onnx"]["parity"]["faces"] == 2  # remade with this run's settings (the fixture used 4)
    assert m["formats"]["ort"]["parity"]["age_int8.ort"]["psnr_vs_int8_onnx_db"] is None  # same as the kept int8
    verify_files(out, m)  # the manifest hashes every file, kept ones included
    assert "age_int8.onnx" in (out / "README.md").read_text()


def test_mobile_formats_join_the_committed_onnx_files_without_touching_them(exported, student, tmp_path):
    """--formats mobile: ort, coreml and tflite next to the ONNX files, which stay byte for byte (checked against the
    manifest first: a flipped byte is refused before anything is converted)."""
    import shutil

    run, _ = resolve_formats(["mobile"])
    assert {f.name for f in run} <= {"ort", "coreml", "tflite"} and "ort" in {f.name for f in run}
    out = tmp_path / "age"
    shutil.copytree(exported, out)
    onnx_bytes = {f: (out / f).read_bytes() for f in ("age.onnx", "age_int8.onnx", "contract.json")}
    export_student(ExportConfig(student=str(student), out=str(out), formats=["mobile"], calib=2, eval_faces=2,
                                repeats=1, add=True), log=lambda _l: None)
    assert {f: (out / f).read_bytes() for f in onnx_bytes} == onnx_bytes
    m = read_manifest(out, kind="export")
    verify_files(out, m)
    assert m["formats"]["ort"]["machine"]["cores"] and m["formats"]["ort"]["faces"]["evaluation"] == 2
    assert m["faces"] == read_manifest(exported, kind="export")["faces"]  # the ONNX export's record stays
    flipped = bytearray((out / "age_int8.onnx").read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    (out / "age_int8.onnx").write_bytes(bytes(flipped))
    with pytest.raises(FacefxError, match="does not match the hash"):
        export_student(ExportConfig(student=str(student), out=str(out), formats=["mobile"], add=True),
                       log=lambda _l: None)


def test_add_refuses_an_export_of_another_student(exported, student, tmp_path):
    import shutil

    out = tmp_path / "age"
    shutil.copytree(exported, out)
    m = read_manifest(out, kind="export")
    m["parent"]["hash"] = "0" * 64
    write_manifest(out, m)
    with pytest.raises(FacefxError, match="only adds formats to an export of the same student"):
        export_student(ExportConfig(student=str(student), out=str(out), formats=["onnx"], add=True),
                       log=lambda _l: None)
    assert read_manifest(out, kind="export")["parent"]["hash"] == "0" * 64  # untouched


def test_refuses_to_replace_a_folder_that_is_not_an_export(student, tmp_path):
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(FacefxError, match="not an export folder"):
        export_student(ExportConfig(student=str(student), out=str(precious), formats=["onnx"]), log=lambda _l: None)
    assert (precious / "notes.txt").read_text() == "keep me"


# ---- errors a user sees -------------------------------------------------------------------------------------------
def test_missing_student_folder_is_one_clear_error(tmp_path, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "export" / "export.py"
    spec = importlib.util.spec_from_file_location("export_cli", script)
    export_cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_cli)
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--student", str(tmp_path / "nope"), "--out", str(tmp_path / "models")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "nope does not exist" in err[0]
    assert not (tmp_path / "models").exists()


def test_runtime_refuses_models_without_or_with_another_contract(exported, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    shape = [1, 3, S, S]
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["output"])], "bare",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)])
    bare = tmp_path / "bare.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(bare))
    with pytest.raises(FacefxError, match="no facefx contract"):
        load_model(bare)
    with pytest.raises(FacefxError, match="not 'gender'"):
        load_model(exported / "age_int8.onnx", effect="gender")
    with pytest.raises(FacefxError, match="not 64"):
        load_model(exported / "age.onnx", size=64)
    contract = json.loads(json.dumps(read_contract(exported / "age.ort")))
    assert contract["effect"] == "age" and contract["size"] == S
