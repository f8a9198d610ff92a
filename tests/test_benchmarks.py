"""Judges and benchmark scripts on tiny inputs: judges rebuild from their folders and predict one value per face;
fps.py, quality.py and report.py run end to end and write well-formed rows, JSON and markdown.

No timing assertions: benchmarks are measurements, not tests.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import REPO

from facefx.bench import quality
from facefx.bench.benchmark import RESULT_COLUMNS, append_results, cpu_model, read_results
from facefx.errors import FacefxError
from facefx.manifest import hash_files, new_manifest, write_manifest
from facefx.runtime.crop import CropSpec
from facefx.runtime.pixels import PIXEL_CONTRACT, bgr_to_nchw
from facefx.train import nets
from facefx.train.judges import judge_stats

S = 64  # student / exported model size in these tests


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- tiny artifacts -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_judges(tmp_path_factory, faces_artifact) -> Path:
    """age, gender and anime judges trained for 3 steps at 32 px on the fixture faces (shapes, not accuracy)."""
    from facefx.train.judges import JudgeConfig, train_judge

    root = tmp_path_factory.mktemp("judges")
    faces_root = root / "faces"
    faces_root.mkdir()
    for name in ("utk_all", "selfies", "anime"):
        (faces_root / name).symlink_to(faces_artifact, target_is_directory=True)
    for target in ("age", "gender", "anime"):
        train_judge(JudgeConfig(target=target, out=str(root / "out"), faces_root=str(faces_root), size=32,
                                widths=[4, 8], steps=3, batch=4, bf16=False, root=str(root / "runs")), progress=False)
    return root / "out"


@pytest.fixture(scope="module")
def tiny_effect(tmp_path_factory, faces_artifact) -> dict[str, Path]:
    """A tiny teacher (32 px), a tiny student (64 px) and its ONNX export (fp32 + int8) for the 'age' effect."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from facefx.runtime.contract import CONTRACT_KEY, build_contract

    root = tmp_path_factory.mktemp("effect")
    torch.manual_seed(0)
    teacher = root / "teachers" / "age" / "00000-tiny"
    teacher.mkdir(parents=True)
    gspec = {"type": "resnet_generator", "ngf": 4, "n_blocks": 1}
    for name in ("G_AB", "G_BA"):
        net = nets.build(gspec)
        with torch.no_grad():  # a visible change (a zero head is the identity)
            net.head[1].weight.normal_(0, 0.02)
        nets.save_weights(net, teacher / f"{name}.safetensors")
    m = new_manifest("teacher", effect="age", network={"G_AB": gspec, "G_BA": gspec}, resolution=32,
                     crop=CropSpec(size=32).to_dict(), pixels=PIXEL_CONTRACT,
                     domains={"A": [str(faces_artifact)], "B": [str(faces_artifact)]}, progress={"step": 6})
    m["files"] = hash_files(teacher, ["G_AB.safetensors", "G_BA.safetensors"])
    write_manifest(teacher, m)

    student = root / "students" / "age" / "00000-tiny"
    student.mkdir(parents=True)
    sspec = {"type": "student_generator", "widths": [4, 8], "n_blocks": 1}
    net = nets.build(sspec)
    with torch.no_grad():
        net.head.weight.normal_(0, 0.05)
    nets.save_weights(net, student / "G.safetensors")
    m = new_manifest("student", effect="age", network={"G": sspec}, resolution=S, crop=CropSpec(size=S).to_dict(),
                     pixels=PIXEL_CONTRACT)
    m["files"] = hash_files(student, ["G.safetensors"])
    write_manifest(student, m)

    models = root / "models" / "age"
    models.mkdir(parents=True)
    fp32 = models / "age.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; it is the quick one for a test
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), (torch.zeros(1, 3, S, S),), str(fp32), input_names=["image"],
                          output_names=["output"], opset_version=17, dynamo=False)
    quantize_dynamic(str(fp32), str(models / "age_int8.onnx"), weight_type=QuantType.QInt8)
    for path, precision in ((fp32, "fp32"), (models / "age_int8.onnx", "int8")):
        contract = build_contract(effect="age", size=S, crop=CropSpec(size=S).to_dict(), fmt="onnx",
                                  precision=precision, metrics={},
                                  source={"student": str(student), "student_hash": "0" * 64, "facefx_version": "test"})
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {CONTRACT_KEY: json.dumps(contract)})
        onnx.save(model, str(path))
    return {"teacher": teacher, "student": student, "models": models, "root": root}


# ---- judges -------------------------------------------------------------------------------------------------
def test_judges_rebuild_from_folder_and_predict_one_value_per_face_at_any_size(tiny_judges):
    from facefx.train.judges import load_judge

    for name in ("age", "gender", "anime"):
        judge = load_judge(name, root=tiny_judges)
        manifest = json.loads((tiny_judges / name / "manifest.json").read_text())
        assert manifest["kind"] == "judge" and manifest["network"]["judge"]["type"] == "judge_cnn"
        assert manifest["metrics"]["n_test"] > 0
        assert ("mae_years" if name == "age" else "accuracy") in manifest["metrics"]
        for shape in ((3, 3, 48, 48), (2, 3, 96, 96)):
            y = judge.predict(torch.rand(shape) * 2 - 1)
            assert y.shape == (shape[0],) and np.isfinite(y).all()
            if name != "age":
                assert ((y >= 0) & (y <= 1)).all()
        assert judge.predict(np.zeros((1, 3, 32, 32), np.float32)).shape == (1,)  # numpy in, too


def test_judge_takes_crops_of_another_zoom_by_resampling_them(tiny_judges):
    """A judge given zoomed crops resamples them into its own geometry first: the same geometry changes nothing, a
    zoom 1.4 crop is judged as what it looks like zoomed out."""
    from facefx.runtime.crop import CropSpec, recrop_theta, zoomed
    from facefx.train.judges import load_judge, recrop

    judge = load_judge("gender", root=tiny_judges)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    same = judge.for_crop(judge.crop)
    assert np.array_equal(same.predict(x), judge.predict(x))
    tight = zoomed(CropSpec(size=64), 1.4)
    theta = torch.from_numpy(recrop_theta(tight, judge.crop)).float()
    assert np.allclose(judge.for_crop(tight).predict(x), judge.predict(recrop(x, theta)), atol=1e-6)
    assert not np.allclose(judge.for_crop(tight).predict(x), judge.predict(x), atol=1e-6)


def test_judge_refuses_wrong_input_and_unknown_names(tiny_judges):
    from facefx.train.judges import load_judge

    with pytest.raises(FacefxError, match="float32"):
        load_judge("age", root=tiny_judges).predict(torch.zeros(2, 32, 32))
    with pytest.raises(FacefxError, match="known judges: age, anime, gender"):
        load_judge("beauty", root=tiny_judges)


def test_judge_with_edited_weights_is_refused(tiny_judges, tmp_path):
    from facefx.train.judges import load_judge

    copy = tmp_path / "age"
    shutil.copytree(tiny_judges / "age", copy)
    with open(copy / "judge.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(FacefxError, match="does not match"):
        load_judge(copy)


COMMITTED = [n for n in ("age", "gender", "anime") if (REPO / "judges" / n / "manifest.json").is_file()]


@pytest.mark.skipif(len(COMMITTED) < 3, reason="the trained judges are not in judges/")
def test_committed_judges_are_small_and_tell_fixture_faces_apart(face_files):
    """The shipped judges see the 55-year-olds as older than the 18-year-olds, the women as more female
    than the men, and none of these photos as a drawing."""
    import cv2

    from facefx.train.judges import load_judge

    faces = bgr_to_nchw(np.stack([cv2.resize(cv2.imread(str(p)), (128, 128)) for p in face_files]))
    ages = np.array([int(p.name.split("_")[0]) for p in face_files])
    female = np.array([int(p.name.split("_")[1]) for p in face_files]) == 1
    for name in COMMITTED:
        assert sum(f.stat().st_size for f in (REPO / "judges" / name).iterdir()) < 2_000_000
    age = load_judge("age").predict(faces)
    assert age[ages == 55].mean() > age[ages == 18].mean() + 10
    p_female = load_judge("gender").predict(faces)
    assert p_female[female].mean() > p_female[~female].mean() + 0.3
    assert load_judge("anime").predict(faces).mean() < 0.5


# ---- fps.py --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fps_run(tiny_effect) -> Path:
    results = tiny_effect["root"] / "results"
    fps = _script("fps")
    args = ["--effect", "age", "--teachers-root", str(tiny_effect["root"] / "teachers"),
            "--student", str(tiny_effect["student"]), "--models", str(tiny_effect["models"]),
            "--threads", "1,2", "--warmup", "1", "--repeats", "3", "--min-seconds", "0",
            "--e2e-frames", "8", "--e2e-warmup", "2", "--device", "Test Box", "--results", str(results)]
    fps.main(args)
    fps.main(args + ["--no-end-to-end"])  # a second run appends
    return results


def test_fps_rows_have_the_fixed_schema_and_every_backend(fps_run):
    path = fps_run / "test-box.csv"
    with open(path, newline="") as f:
        assert tuple(csv.DictReader(f).fieldnames) == RESULT_COLUMNS
    rows = read_results(path)
    runs = sorted({r["date"] for r in rows})
    model_only = [r for r in rows if r["kind"] == "model-only" and r["date"] == runs[0]]
    got = {(r["model"], r["backend"], r["precision"], r["threads"]) for r in model_only}
    for t in ("1", "2"):
        assert ("teacher-age", "pytorch", "fp32", t) in got
        assert ("student-age", "pytorch", "fp32", t) in got
        assert ("age.onnx", "onnxruntime", "fp32", t) in got
        assert ("age_int8.onnx", "onnxruntime", "int8", t) in got
    for r in model_only:
        assert float(r["p95_ms"]) >= float(r["p50_ms"]) > 0 and float(r["fps"]) > 0
        assert int(r["macs"]) > 0 and int(r["params"]) > 0 and len(r["model_hash"]) == 12
        assert r["device"] == "Test Box" and "onnxruntime=" in r["versions"] and r["cpu"]
    student = next(r for r in model_only if r["model"] == "student-age")
    onnx_row = next(r for r in model_only if r["model"] == "age.onnx")
    assert (onnx_row["macs"], onnx_row["params"]) == (student["macs"], student["params"])  # the student's cost
    # The second run (--no-end-to-end) appended model-only rows only.
    assert len(runs) == 2 and all(r["kind"] == "model-only" for r in rows if r["date"] == runs[1])


@pytest.mark.skipif(not (REPO / "assets" / "demo.mp4").is_file(), reason="assets/demo.mp4 missing")
def test_fps_end_to_end_has_a_row_per_stage(fps_run):
    rows = [r for r in read_results(fps_run / "test-box.csv") if r["kind"] == "end-to-end"]
    for model in ("age.onnx", "age_int8.onnx"):
        stages = {r["stage"] for r in rows if r["model"] == model and r["threads"] == "1"}
        assert {"total", "detect", "crop", "infer", "paste"} <= stages
        total = next(r for r in rows if r["model"] == model and r["stage"] == "total" and r["threads"] == "1")
        assert float(total["fps"]) > 0 and "demo.mp4" in total["note"]


def test_fps_renders_markdown_and_plot_of_the_latest_run(fps_run):
    md = (fps_run / "test-box.md").read_text()
    assert "| student-age | pytorch | fp32 | 1 |" in md and "test-box.png" in md
    png = (fps_run / "test-box.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpus_of_one_bare_name_but_two_generations_get_two_benchmark_names():
    def cpuinfo(name: str, family: int) -> str:
        return f"processor\t: 0\ncpu family\t: {family}\nmodel\t\t: 1\nmodel name\t: {name}\n"

    assert cpu_model(cpuinfo("AMD EPYC", 25)) == "AMD EPYC family 25 model 1"
    assert cpu_model(cpuinfo("AMD EPYC", 25)) != cpu_model(cpuinfo("AMD EPYC", 26))
    named = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"  # a model number already tells generations apart
    assert cpu_model(cpuinfo(named, 6)) == named


def test_an_export_manifest_names_the_machine_as_the_results_files_do():
    """One home for machine naming: the export manifest's machine (facefx.export.exporter) and a results file's
    device and cpu columns come from the same functions, CPU-family fix included."""
    from facefx.bench.benchmark import default_device_name, machine_info, run_header
    from facefx.export import exporter

    assert exporter.machine_info is machine_info
    info, header = machine_info(threads=3), run_header()
    assert (info["device"], info["cpu"], info["threads"]) == (header["device"], header["cpu"], 3)
    assert info["device"] == default_device_name() and info["cpu"] == cpu_model()


def test_export_latency_is_timed_by_the_benchmark_timer():
    from facefx.export.exporter import latency_ms

    calls = []
    lat = latency_ms(lambda x: calls.append(x.shape), np.zeros((4, 3, 8, 8), np.float32), repeats=7, warmup=2)
    assert len(calls) == 9 and set(calls) == {(1, 3, 8, 8)}  # warm-up untimed, then single images
    assert lat["repeats"] == 7 and 0 <= lat["min_ms"] <= lat["p50_ms"]


def test_results_file_with_another_schema_is_refused(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("date,model,fps\n2025-01-01,x,3\n")
    with pytest.raises(FacefxError, match="schema"):
        append_results(path, [])
    assert path.read_text() == "date,model,fps\n2025-01-01,x,3\n"  # untouched


def test_two_runs_in_the_same_second_stay_two_runs(tmp_path):
    """Rows of one run share a date; a second run started within the same second must not merge into the first."""
    from facefx.bench.benchmark import latest_run, result_row

    header = {"date": "2026-01-01T00:00:00+00:00", "device": "d", "cpu": "c", "threads": 1, "versions": ""}
    path = tmp_path / "d.csv"
    append_results(path, [result_row(header, kind="model-only", model="a")])
    append_results(path, [result_row(header, kind="model-only", model="b")])
    rows = read_results(path)
    assert len({r["date"] for r in rows}) == 2
    assert [r["model"] for r in latest_run(rows)] == ["b"]


def test_fps_counts_a_committed_snapshot_under_its_manifest_effect(tmp_path):
    """teachers/age-zoom1.4 is another age teacher, not an effect called 'age-zoom1.4' to be measured on its own."""
    from facefx.manifest import SCHEMA_VERSION, write_manifest

    fps = _script("fps")
    snapshot = tmp_path / "teachers" / "age-zoom1.4"
    snapshot.mkdir(parents=True)
    write_manifest(snapshot, {"schema_version": SCHEMA_VERSION, "kind": "teacher", "effect": "age"})
    (tmp_path / "teachers" / "gender").mkdir()  # a folder of runs, named after its effect
    roots = SimpleNamespace(teachers_root=tmp_path / "teachers", students_root=tmp_path / "s",
                            models_root=tmp_path / "m")
    found = fps.effects_present(roots)
    assert "age" in found and "gender" in found and "age-zoom1.4" not in found


def test_fps_times_the_committed_teacher_its_manifest_names_when_none_is_named_after_the_effect(tmp_path,
                                                                                                monkeypatch):
    from facefx.manifest import SCHEMA_VERSION, write_manifest

    fps = _script("fps")
    monkeypatch.setattr(fps, "REPO", tmp_path)
    for name, effect in (("age-zoom1.4", "age"), ("style", "style"), ("gender-a", "gender"), ("gender-b", "gender")):
        (tmp_path / "teachers" / name).mkdir(parents=True)
        write_manifest(tmp_path / "teachers" / name, {"schema_version": SCHEMA_VERSION, "kind": "teacher",
                                                      "effect": effect})
    assert fps.committed_snapshot("teachers", "age") == tmp_path / "teachers" / "age-zoom1.4"
    assert fps.committed_snapshot("teachers", "style") == tmp_path / "teachers" / "style"
    assert fps.committed_snapshot("teachers", "gender") is None  # two candidates: no guessing


def test_fps_with_nothing_to_measure_says_so(tmp_path, capsys):
    fps = _script("fps")
    with pytest.raises(SystemExit) as exc:
        fps.main(["--effect", "no-such-effect", "--teachers-root", str(tmp_path), "--students-root", str(tmp_path),
                  "--models-root", str(tmp_path), "--results", str(tmp_path / "r")])
    assert exc.value.code == 2 and "nothing was measured" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# ---- quality.py --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quality_run(tiny_effect, tiny_judges) -> dict:
    out = tiny_effect["root"] / "results"
    quality.main(["--effect", "age", "--teacher", str(tiny_effect["teacher"]),
                  "--student", str(tiny_effect["student"]), "--models", str(tiny_effect["models"]),
                  "--judges", str(tiny_judges), "--limit", "4", "--flicker-faces", "2",
                  "--flicker-frames", "4", "--out", str(out)])
    return json.loads((out / "quality_age.json").read_text())


def test_quality_json_has_every_measure_for_every_model(quality_run):
    q = quality_run
    assert q["effect"] == "age" and q["faces"]["split"] == "test" and q["faces"]["n"] == 4
    assert set(q["models"]) == {"teacher", "student", "fp32", "int8"}
    for m in q["models"].values():
        j = m["judge"]
        assert {"mean_age_before", "mean_age_after", "mean_shift_years", "hist_before", "hist_after"} <= set(j)
        assert sum(j["hist_after"]) == 4
        assert {"sharpness_ratio_median", "psnr_outside_face_db"} <= set(m["detail"])
        assert m["flicker"]["ratio_mean"] > 0
        assert 0 < m["shift_stability"]["psnr_db"] <= 99 and m["shift_stability"]["shift_px"] >= 1
    assert {"student_vs_teacher", "int8_vs_fp32", "fp32_vs_student"} <= set(q["fidelity"])
    # fp32 ONNX is the student exported: near-identical outputs.
    assert q["fidelity"]["fp32_vs_student"]["psnr_db"] > 40


def test_quality_writes_a_four_column_contact_sheet(quality_run, tiny_effect):
    import cv2

    sheet = cv2.imread(str(tiny_effect["root"] / "results" / quality_run["files"]["sheet"]))
    assert sheet is not None and sheet.shape[1] > 3.5 * sheet.shape[0] / 4  # input | teacher | student | int8
    assert (tiny_effect["root"] / "results" / quality_run["files"]["histogram"]).is_file()


def test_shift_stability_is_perfect_for_a_pointwise_effect_and_low_for_one_tied_to_pixel_positions():
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert quality.shift_image(faces, 1, 2)[:, 5, 6].tolist() == faces[:, 4, 4].tolist()
    invert = lambda x: 255 - x  # noqa: E731
    assert quality.shift_stability(invert, faces, invert(faces), 2, border=4) == 99.0  # moves with the face
    grid = (np.indices((64, 64)).sum(0) % 4 == 0)[None, :, :, None]  # strokes fixed to the crop, not the face
    pattern = lambda x: np.where(grid, 0, x).astype(np.uint8)  # noqa: E731
    assert quality.shift_stability(pattern, faces, pattern(faces), 2, border=4) < 20


def test_gender_and_style_judge_figures(tiny_judges):
    before, after = np.array([0.1, 0.2, 0.9, 0.3]), np.array([0.7, 0.4, 0.95, 0.6])
    g = judge_stats("gender", "AB", before, after)
    assert g["flip_rate"] == pytest.approx(2 / 3, abs=1e-3) and g["n_eligible"] == 3
    s = judge_stats("style", "AB", before, after)
    assert s["anime_rate_before"] == 0.25 and s["anime_rate_after"] == 0.75


def test_flicker_is_one_for_an_effect_that_follows_the_face_and_more_for_noise(face_files):
    import cv2

    face = cv2.resize(cv2.imread(str(face_files[0])), (64, 64))[..., ::-1]
    clip = quality.drift_clip(np.ascontiguousarray(face), 8)
    assert quality.flicker(clip, clip) == pytest.approx(1.0)
    noisy = np.clip(clip + np.random.default_rng(0).normal(0, 8, clip.shape), 0, 255).astype(np.uint8)
    assert quality.flicker(clip, noisy) > 1.5


def test_blind_ab_sheets_hide_the_teacher_and_the_key_scores_guesses(tmp_path, capsys):
    """The blind test puts teacher and student on random sides per row; the key, kept apart, tells which; scoring
    the key itself is all right, its mirror all wrong, and a wrong-length guess is refused in one line."""
    import cv2

    teacher = np.full((10, 32, 32, 3), 250, np.uint8)  # bright teacher, dark student: each side's mean says which
    student = np.full((10, 32, 32, 3), 5, np.uint8)
    key = quality.blind_sheets(tmp_path / "res", "quality_x", tmp_path / "keys" / "k.json", teacher, student, n=8,
                               seed=3, per_sheet=4, cell=32)
    assert key["sheets"] == ["quality_x_blind_1.png", "quality_x_blind_2.png"]
    assert not list((tmp_path / "res").glob("*.json"))  # the key is not beside the sheets
    sides = []
    for name in key["sheets"]:
        sheet = cv2.imread(str(tmp_path / "res" / name))
        for r in range(4):
            y = 18 + 2 + r * 34 + 16  # the grid's caption strip, padding, row pitch; mid-row
            sides.append("L" if sheet[y, 2 + 28].mean() > 128 else "R")
    assert sides == key["teacher_side"] and {"L", "R"} == set(sides)  # both orders occur
    truth = "".join(key["teacher_side"])
    assert quality.score_blind(tmp_path / "keys" / "k.json", truth).startswith("8 of 8 right (100%)")
    mirror = truth.translate(str.maketrans("LR", "RL"))
    assert quality.score_blind(tmp_path / "keys" / "k.json", mirror).startswith("0 of 8 right")
    with pytest.raises(SystemExit) as exc:
        quality.main(["--score-blind", str(tmp_path / "keys" / "k.json"), "--guesses", "LR"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "one L or R per row (8 rows)" in err and err.count("\n") == 1


def test_quality_without_a_model_fails_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        quality.main(["--effect", "age"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("error: nothing to measure") and err.count("\n") == 1


# ---- report.py ---------------------------------------------------------------------------------------------
def test_report_renders_speed_quality_and_judges_with_machine_and_date(fps_run, quality_run, tiny_judges, tmp_path):
    out = tmp_path / "results.md"
    _script("report").main(["--results", str(fps_run), "--judges", str(tiny_judges), "--out", str(out),
                            "--models", str(fps_run.parent / "models")])
    md = out.read_text()
    assert md.startswith("# Results")
    assert "## Speed on Test Box" in md and "| age_int8.onnx | onnxruntime | int8 | 1 |" in md
    assert "## Quality: age (AB)" in md and quality_run["date"][:10] in md
    # docs/results.md links the images from docs/
    assert "![age: input | teacher | student | int8" in md and "(../benchmarks/results/quality_age.png)" in md
    assert "## Judges" in md and "| age | years |" in md


def test_report_marks_speed_rows_of_a_model_file_that_changed_since(fps_run, tiny_judges, tmp_path):
    """A shipped file re-exported after fps.py timed it is labelled as an earlier export, not passed off as timed."""
    models = tmp_path / "models"
    shutil.copytree(fps_run.parent / "models", models)
    (models / "age" / "age_int8.onnx").write_bytes(b"re-exported")
    out = tmp_path / "results.md"
    _script("report").main(["--results", str(fps_run), "--judges", str(tiny_judges), "--out", str(out),
                            "--models", str(models)])
    md = out.read_text()
    assert "| age_int8.onnx (earlier export) | onnxruntime | int8 | 1 |" in md
    assert "| age.onnx | onnxruntime | fp32 | 1 |" in md and "timed on an earlier export" in md


def test_report_rewrites_its_page_whole_and_leaves_the_readme_alone(fps_run, quality_run, tiny_judges, tmp_path,
                                                                     capsys):
    out = tmp_path / "docs" / "results.md"
    out.parent.mkdir()
    out.write_text("# Results\n\nstale\n")
    args = ["--results", str(fps_run), "--judges", str(tiny_judges), "--out", str(out),
            "--models", str(fps_run.parent / "models")]
    _script("report").main(args)
    first = out.read_text()
    assert "stale" not in first and "## Speed on Test Box" in first
    _script("report").main(args)  # a second run writes the same page, not a second copy
    assert out.read_text() == first and first.count("# Results") == 1
    capsys.readouterr()
    _script("report").main(["--results", str(fps_run), "--judges", str(tiny_judges), "--out", "-",
                            "--models", str(fps_run.parent / "models")])
    assert capsys.readouterr().out.rstrip() == first.rstrip()  # --out - prints the same page


def test_kid_is_near_zero_for_one_distribution_and_clearly_positive_for_two(monkeypatch):
    """KID (benchmarks/quality.py --kid) on features: two samples of one distribution sit within a few standard
    deviations of 0 (unbiased), a shifted distribution far above; without the Inception wheel, one line says how."""
    import importlib.util

    from facefx.bench.fid import inception_path, kid
    from facefx.errors import FacefxError

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 64)), rng.normal(size=(300, 64))
    same_mean, same_std = kid(a, b, subset_size=100, subsets=50)
    far_mean, far_std = kid(a, b + 0.5, subset_size=100, subsets=50)
    assert abs(same_mean) < 3 * same_std
    assert far_mean > 10 * far_std and far_mean > 20 * abs(same_mean)
    # A student's and its teacher's outputs of the same faces: near-identical pairs. Drawing both subsets from the
    # same faces reads them as "closer than two samples of one distribution" (below 0); paired draws do not.
    near = a + rng.normal(scale=0.05, size=a.shape)
    biased, biased_std = kid(a, near, subset_size=100, subsets=50)
    fair, fair_std = kid(a, near, subset_size=100, subsets=50, paired=True)
    assert biased < -3 * biased_std and abs(fair) < 3 * fair_std
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(FacefxError, match=r'pip install -e "\.\[fid\]"'):
        inception_path()


def test_quality_kid_compares_the_student_with_its_teacher_and_the_report_shows_it(monkeypatch, quality_run,
                                                                                    tiny_judges, tmp_path):
    """quality.py --kid: KID of the input and the student against the teacher's outputs (here with a stand-in for
    the Inception network: mean colour features), and report.py renders the table."""
    import torch

    import facefx.bench.fid

    class MeanColour(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1) * self.scale

    monkeypatch.setattr(facefx.bench.fid, "load_inception", lambda device="cpu": MeanColour())
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    teacher = np.clip(inputs.astype(int) + 60, 0, 255).astype(np.uint8)  # brighter
    student = np.clip(teacher.astype(int) + rng.integers(-2, 3, teacher.shape), 0, 255).astype(np.uint8)
    fig = quality.kid_figures({"teacher": teacher, "student": student}, inputs, None, "AB", 32)
    assert set(fig["vs_teacher"]) == {"input", "student"} and fig["subset_size"] == 20  # paired: half the faces
    assert fig["vs_teacher"]["input"][0] > 10 * abs(fig["vs_teacher"]["student"][0])
    results = tmp_path / "results"
    results.mkdir()
    (results / "quality_age.json").write_text(json.dumps({**quality_run, "kid": fig}))
    out = tmp_path / "results.md"
    _script("report").main(["--results", str(results), "--judges", str(tiny_judges), "--out", str(out)])
    md = out.read_text()
    assert "| KID x 1000 (subsets of 20) | vs teacher |" in md
    assert f"| student | {fig['vs_teacher']['student'][0]} +- {fig['vs_teacher']['student'][1]} |" in md
