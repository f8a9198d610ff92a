"""Options written once (facefx.options): every stage's command line comes from its config fields; a bad number is
refused in one line with exit 2 before anything is written; recipes hold the settings behind the shipped models."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from facefx import options
from facefx.errors import FacefxError
from facefx.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SCRIPTS = {"prepare": "train/prepare.py", "teacher": "train/teacher.py", "pairs": "distill/pairs.py",
           "student": "distill/student.py", "export": "export/export.py", "webcam": "realtime/webcam.py",
           "judges": "benchmarks/judges.py", "fps": "benchmarks/fps.py", "quality": "benchmarks/quality.py",
           "contact_sheet": "train/contact_sheet.py"}
_loaded: dict[str, object] = {}


def script(name: str):
    """A stage script as a module (its main(argv) is the command line a user types)."""
    if name not in _loaded:
        spec = importlib.util.spec_from_file_location(f"cli_{name}", REPO / SCRIPTS[name])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[name] = module
    return _loaded[name]


def run_main(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `<script> argv`, run in-process."""
    try:
        rc = script(name).main(argv) or 0
    except SystemExit as stop:
        rc = stop.code if isinstance(stop.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out, out.err


def _required(name: str, tmp: Path) -> list[str]:
    """Valid arguments for each script, all writing under tmp: the bad number is the only fault."""
    faces = str(FIXTURES / "faces")
    return {
        "prepare": [faces, "--name", "x", "--root", str(tmp / "faces")],
        "teacher": ["--effect", "age", "--a", faces, "--b", faces, "--root", str(tmp / "teachers")],
        "pairs": ["--teacher", str(REPO / "teachers" / "age"), "--root", str(tmp / "pairs")],
        "student": ["--pairs", str(tmp / "pairs"), "--root", str(tmp / "students")],
        "export": ["--student", str(REPO / "students" / "age"), "--out", str(tmp / "models")],
        "webcam": ["--source", str(FIXTURES / "faces"), "--output", str(tmp / "out"), "--no-window",
                   "--models-dir", str(REPO / "models")],
        "judges": ["age", "--out", str(tmp / "judges"), "--faces-root", str(tmp / "faces")],
        "fps": ["--effect", "age", "--results", str(tmp / "results")],
        "quality": ["--effect", "age", "--teacher", str(REPO / "teachers" / "age"), "--out", str(tmp / "results")],
        "contact_sheet": [str(FIXTURES / "faces"), "--out", str(tmp / "sheet.png")],
    }[name]


# Every numeric option of every stage script, with values out of range, nan and inf (issue 30 rows 4, 8, 12, 13).
BAD = [
    ("prepare", "--size", "0"), ("prepare", "--size", "-5"), ("prepare", "--size", "3"),
    ("prepare", "--zoom", "0"), ("prepare", "--zoom", "nan"), ("prepare", "--zoom", "inf"),
    ("prepare", "--min-score", "1.5"), ("prepare", "--min-score", "nan"), ("prepare", "--max-faces", "0"),
    ("prepare", "--max-faces", "-1"),
    ("teacher", "--iters", "0"), ("teacher", "--iters", "-5"), ("teacher", "--size", "8"), ("teacher", "--ngf", "0"),
    ("teacher", "--n-blocks", "-1"), ("teacher", "--ndf", "0"), ("teacher", "--batch", "0"), ("teacher", "--lr", "nan"),
    ("teacher", "--lr", "0"), ("teacher", "--lambda-cycle", "-1"), ("teacher", "--lambda-idt", "inf"),
    ("teacher", "--lambda-shift", "-0.5"), ("teacher", "--shift-rotate", "-1"), ("teacher", "--shift-scale", "1"),
    ("teacher", "--threads", "-3"), ("teacher", "--checkpoint-minutes", "0"), ("teacher", "--sample-every", "0"),
    ("teacher", "--max-minutes", "-1"), ("teacher", "--seed", "-1"),
    ("pairs", "--size", "0"), ("pairs", "--augment", "-1"), ("pairs", "--strength", "nan"),
    ("pairs", "--strength", "0"),
    ("pairs", "--batch", "0"), ("pairs", "--max-faces", "-1"), ("pairs", "--seed", "-2"),
    ("student", "--widths", "16,0,32"), ("student", "--n-blocks", "-1"), ("student", "--internal-scale", "0"),
    ("student", "--d-scale", "0"), ("student", "--batch", "0"), ("student", "--iters", "0"), ("student", "--lr", "inf"),
    ("student", "--lr-d-ratio", "0"), ("student", "--lambda-l1", "-1"), ("student", "--lambda-fm", "nan"),
    ("student", "--lambda-gan", "-1"), ("student", "--lambda-teacher-feat", "-1"), ("student", "--ema", "1"),
    ("student", "--ndf", "0"), ("student", "--threads", "-3"), ("student", "--sample-every", "0"),
    ("student", "--eval-every", "0"), ("student", "--max-minutes", "nan"), ("student", "--seed", "-1"),
    ("export", "--calib", "0"), ("export", "--eval", "0"), ("export", "--repeats", "-1"), ("export", "--threads", "0"),
    ("export", "--threads", "-3"),
    ("webcam", "--max-faces", "-1"), ("webcam", "--max-faces", "0"), ("webcam", "--min-score", "nan"),
    ("webcam", "--min-score", "-0.1"), ("webcam", "--threads", "-3"), ("webcam", "--threads", "0"),
    ("webcam", "--max-frames", "0"),
    ("judges", "--size", "0"), ("judges", "--widths", "16,-1"), ("judges", "--steps", "0"), ("judges", "--batch", "0"),
    ("judges", "--threads", "0"), ("judges", "--max-minutes", "nan"),
    ("fps", "--threads", "0,2"), ("fps", "--warmup", "-1"), ("fps", "--repeats", "0"), ("fps", "--min-seconds", "nan"),
    ("fps", "--e2e-frames", "-1"), ("fps", "--e2e-warmup", "-1"),
    ("quality", "--limit", "-1"), ("quality", "--teacher-strength", "inf"), ("quality", "--teacher-strength", "0"),
    ("quality", "--flicker-faces", "0"), ("quality", "--flicker-frames", "1"), ("quality", "--shift-faces", "0"),
    ("quality", "--sheet-rows", "0"), ("quality", "--threads", "0"), ("quality", "--blind", "-2"),
    ("quality", "--blind-seed", "-1"),
    ("contact_sheet", "--n", "0"), ("contact_sheet", "--n", "-1"),
]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(("name", "flag", "value"), BAD, ids=[f"{n}{f}={v}" for n, f, v in BAD])
def test_a_bad_number_is_one_line_exit_2_and_nothing_written(name, flag, value, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything written to a default place would land here
    rc, out, err = run_main(name, [*_required(name, tmp_path), flag, value], capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and flag in line and "must be" in line, line
    bad = line.split(flag, 1)[1].split()[0]  # the value as the message shows it
    for typed in value.split(","):
        try:
            if bad == typed or float(bad) == float(typed) or (math.isnan(float(bad)) and math.isnan(float(typed))):
                break
        except ValueError:
            pass
    else:
        pytest.fail(f"{line!r} does not show the bad value {value!r}")
    assert _files(tmp_path) == [], "a refused command wrote files"


@pytest.mark.parametrize(("name", "argv", "needle"), [
    ("webcam", ["--max-faces", "-1"], "--max-faces -1 is out of range: it must be an integer in [1, 64]"),
    ("prepare", ["src", "--name", "x", "--zoom", "0"], "--zoom 0 is out of range: it must be a finite number in"),
    ("teacher", ["--iters", "abc"], "argument --iters: invalid int value: 'abc'"),
])
def test_the_real_process_exits_2_with_one_line(name, argv, needle, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / SCRIPTS[name]), *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr
    assert _files(tmp_path) == []


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_help_shows_every_default_and_no_none(name, capsys):
    rc, out, _ = run_main(name, ["--help"], capsys)
    assert rc == 0
    assert "(default: None)" not in out and "(default: )" not in out and "==SUPPRESS==" not in out
    flat = " ".join(out.split())  # argparse wraps lines
    expected = {"prepare": ["--size SIZE crop side S in pixels (default: 256)", "(default: all)"],
                "teacher": ["(default: 40000)", "(default: artifacts/teachers)", "--recipe FILE"],
                "pairs": ["(default: AB)", "(default: the teacher's source domain)", "--recipe FILE"],
                "student": ["(default: 8,16,32,64,128)", "(default: 6000)", "--recipe FILE"],
                "export": ["(default: 128)", "(default: models/<effect>)", "(default: uint8)", "--recipe FILE"],
                "webcam": ["(default: 8)", "(default: age)", "(default: its own choice)"],
                "judges": ["(default: judges/)", "per judge:"],
                "fps": ["(default: 30)", "(default: all found)", "(default: benchmarks/results)"],
                "quality": ["(default: 96)", "(default: AB)", "(default: benchmarks/results)"],
                "contact_sheet": ["--n N faces per row (default: 8)"]}[name]
    for text in expected:
        assert text in flat, text


def test_the_generated_options_keep_the_documented_flags_and_defaults():
    """The flags the README and the tests type, and the config defaults behind them, are as they were."""
    from facefx.export.exporter import ExportConfig
    from facefx.train.cyclegan import TeacherConfig
    from facefx.train.distill import PairsConfig, StudentConfig
    from facefx.train.prepare import PrepareConfig

    def flags(cls):
        return {f.opt.flag_for(f.name) for f in options.fields_of(cls) if f.opt.cli}

    assert {"--effect", "--a", "--b", "--init", "--batch", "--lambda-idt", "--lambda-cycle", "--lambda-shift",
            "--shift-rotate", "--shift-scale", "--iters", "--device", "--channels-last", "--threads", "--lr",
            "--max-minutes", "--checkpoint-minutes", "--sample-every", "--desc", "--no-bf16", "--size", "--ngf",
            "--n-blocks", "--ndf", "--root", "--seed"} == flags(TeacherConfig)
    assert {"--teacher", "--direction", "--augment", "--strength", "--face-mask", "--no-judge-filter",
            "--faces", "--root", "--size", "--batch", "--max-faces", "--seed", "--device"} == flags(PairsConfig)
    assert {"--pairs", "--widths", "--internal-scale", "--d-scale", "--global-context", "--iters", "--init", "--lr",
            "--ema", "--lr-d-ratio", "--threads", "--eval-every", "--sample-every", "--max-minutes", "--no-bf16",
            "--n-blocks", "--norm", "--batch", "--lambda-l1", "--lambda-fm", "--lambda-gan", "--lambda-teacher-feat",
            "--ndf", "--device", "--seed", "--root"} == flags(StudentConfig)
    assert {"--student", "--out", "--formats", "--calib", "--eval", "--faces", "--repeats", "--threads",
            "--int8-activations", "--add"} == flags(ExportConfig)
    assert {"source", "--size", "--labels", "--filter", "--align", "--min-score", "--max-faces", "--domain",
            "--zoom"} == flags(PrepareConfig)
    assert (TeacherConfig(effect="", a=[], b=[]).iters, StudentConfig(pairs="").widths, PairsConfig(teacher="").augment,
            ExportConfig(student="").calib) == (40000, (8, 16, 32, 64, 128), 2, 128)


# ---- recipes ----------------------------------------------------------------------------------------------------
def _recipe(effect: str, stage: str) -> Path:
    return REPO / "recipes" / effect / f"{stage}.toml"


def _from_recipe(cls, stage: str, path: Path, argv: list[str] | None = None) -> dict:
    """Config values from a recipe plus command-line options, as a stage script resolves them."""
    ap = options.ArgumentParser(prog=stage)
    options.add_recipe_option(ap, stage)
    options.add_options(ap, cls)
    args = ap.parse_args(["--recipe", str(path), *(argv or [])])
    return options.resolve(cls, args, recipe=options.load_recipe(path, cls, stage))


def _from_command(cls, command: str) -> dict:
    """Config values from a recorded command line ('pairs.py --teacher ...'), parsed as the script parses it."""
    ap = options.ArgumentParser(prog="x")
    options.add_options(ap, cls)
    args, _ = ap.parse_known_args(shlex.split(command)[1:])
    return options.resolve(cls, args)


def _lineage(effect: str) -> dict[str, dict]:
    return {stage["kind"]: stage for stage in read_manifest(REPO / "models" / effect)["lineage"]}


@pytest.mark.parametrize("effect", ["age", "gender", "style"])
def test_recipes_round_trip_to_the_shipped_configs(effect):
    from facefx.export.exporter import ExportConfig
    from facefx.train.cyclegan import TeacherConfig, config_from_run
    from facefx.train.distill import PairsConfig, StudentConfig, student_config_from_run

    lineage = _lineage(effect)
    # teacher and student: the config recorded in the shipped snapshot's manifest
    # (read by the loaders a resumed run uses: config_from_run, student_config_from_run)
    assert TeacherConfig(**_from_recipe(TeacherConfig, "teacher", _recipe(effect, "teacher"))) == \
        config_from_run(REPO / lineage["teacher"]["path"])
    assert StudentConfig(**_from_recipe(StudentConfig, "student", _recipe(effect, "student"))) == \
        student_config_from_run(REPO / "students" / effect)
    student = read_manifest(REPO / "students" / effect)
    # pairs are not shipped: their command, recorded in the export's lineage
    assert _from_recipe(PairsConfig, "pairs", _recipe(effect, "pairs")) == \
        _from_command(PairsConfig, lineage["pairs"]["command"])
    assert student["config"]["pairs"] == lineage["pairs"]["path"]
    # export: the first command recorded in models/<effect>/manifest.json, and what the manifest says it used
    models = read_manifest(REPO / "models" / effect)
    exported = _from_recipe(ExportConfig, "export", _recipe(effect, "export"))
    assert exported == _from_command(ExportConfig, models["commands"][0])
    faces = models["faces"]
    assert (exported["calib"], exported["eval_faces"]) == (faces["calibration"], faces["evaluation"])
    assert exported["int8_activations"] == models["formats"]["int8"]["quantization"]["activations"]
    assert exported["repeats"] == models["formats"]["onnx"]["latency"]["repeats"]
    assert exported["student"] == lineage["student"]["path"]


def test_options_typed_override_the_recipe():
    from facefx.train.cyclegan import TeacherConfig

    values = _from_recipe(TeacherConfig, "teacher", _recipe("age", "teacher"), ["--device", "cpu", "--iters", "10"])
    assert (values["device"], values["iters"], values["batch"], values["lambda_cycle"]) == ("cpu", 10, 16, 5.0)


@pytest.mark.parametrize(("text", "needle"), [
    ('stage = "student"\n', "is a student recipe; this command takes a teacher recipe"),
    ('stage = "teacher"\nsizes = 3\n', "unknown setting(s) sizes for a teacher"),
    ('stage = "teacher"\nsize = "big"\n', "size in"),
    ('stage = "teacher"\nsize = 8\n', "is out of range: it must be an integer in [32, 1024]"),
    ('stage = "teacher"\nlr = nan\n', "lr in"),
    ('stage = "teacher"\nsize = \n', "is not valid TOML"),
])
def test_a_bad_recipe_is_one_line_exit_2_and_nothing_written(text, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    rc, _, err = run_main("teacher", ["--recipe", str(recipe), "--root", str(tmp_path / "teachers")], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert _files(tmp_path) == ["r.toml"]


def test_recipe_and_resume_do_not_mix(tmp_path, capsys):
    rc, _, err = run_main("teacher", ["--recipe", str(_recipe("age", "teacher")), "--resume", str(tmp_path)], capsys)
    assert rc == 2 and "--recipe starts a new run" in err


def test_a_run_from_a_recipe_records_it_in_its_manifest(faces_artifact, tmp_path, monkeypatch, capsys):
    """A tiny teacher from a recipe file, one option overridden: the manifest keeps the recipe and the result."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "teacher.toml"
    recipe.write_text(f'stage = "teacher"\neffect = "age"\na = ["{faces_artifact}"]\nb = ["{faces_artifact}"]\n'
                      f'root = "{tmp_path / "runs"}"\nsize = 32\nngf = 4\nn_blocks = 1\nndf = 4\niters = 1\n'
                      'bf16 = false\nsample_every = 1000\n')
    rc, out, err = run_main("teacher", ["--recipe", str(recipe), "--iters", "2", "--threads", "1"], capsys)
    assert rc == 0, err
    (run,) = [p for p in (tmp_path / "runs" / "age").iterdir() if not p.name.startswith(".")]
    manifest = read_manifest(run)
    assert manifest["config"]["iters"] == 2 and manifest["config"]["size"] == 32
    assert manifest["recipe"]["file"] == str(recipe) and manifest["recipe"]["settings"]["iters"] == 1
    assert manifest["recipe"]["settings"]["a"] == [str(faces_artifact)]
    # resumed, it keeps the record of the recipe it started from
    rc, _, err = run_main("teacher", ["--resume", str(run), "--iters", "3", "--threads", "1"], capsys)
    assert rc == 0, err
    resumed = read_manifest(run)
    assert resumed["recipe"] == manifest["recipe"] and resumed["config"]["iters"] == 3
    # and a new run without a recipe records none (the record is per process, not left over from the last run)
    rc, _, err = run_main("teacher", ["--effect", "age", "--a", str(faces_artifact), "--b", str(faces_artifact),
                                      "--root", str(tmp_path / "plain"), "--size", "32", "--ngf", "4",
                                      "--n-blocks", "1", "--ndf", "4", "--iters", "1", "--no-bf16"], capsys)
    assert rc == 0, err
    (plain,) = [p for p in (tmp_path / "plain" / "age").iterdir() if not p.name.startswith(".")]
    assert "recipe" not in read_manifest(plain)


def test_validate_refuses_values_set_in_code_paths_too():
    """One validation: the same rule for a resumed run's overrides as for a fresh command line."""
    from facefx.train.distill import StudentConfig

    with pytest.raises(FacefxError, match=r"--batch 0 is out of range"):
        options.validate(StudentConfig, dataclasses.asdict(dataclasses.replace(StudentConfig(pairs="p"), batch=0)))


# ---- every documented command still parses ------------------------------------------------------------------------
class _Parsed(Exception):
    def __init__(self, args):
        self.args_ = args


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(script, argv) of every `python <script> ...` in the README and docs/ (placeholders such as <run> kept)."""
    import re

    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for m in re.finditer(r"python ([a-z_]+/[a-z_]+\.py)([^`|&;\n]*)", text):
            name = next((k for k, v in SCRIPTS.items() if v == m.group(1)), None)
            refused = text[max(0, m.start() - 2):m.start()] == "$ "  # docs/options.md's examples of a refusal
            if name is not None and not refused:
                found.append((name, shlex.split(m.group(2), comments=True)))
    return found


@pytest.mark.parametrize(("name", "argv"), _documented_commands(), ids=lambda x: x if isinstance(x, str) else None)
def test_every_documented_command_line_still_parses(name, argv, monkeypatch):
    """The README's and docs' commands, parsed and checked by the generated options (not run)."""
    def parse_only(self, args=None, namespace=None):
        raise _Parsed(argparse.ArgumentParser.parse_args(self, args, namespace))

    monkeypatch.setattr(options.ArgumentParser, "parse_args", parse_only)
    with pytest.raises(_Parsed) as parsed:
        script(name).main(argv)
    cls = {"prepare": "facefx.train.prepare:PrepareConfig", "teacher": "facefx.train.cyclegan:TeacherConfig",
           "pairs": "facefx.train.distill:PairsConfig", "student": "facefx.train.distill:StudentConfig",
           "export": "facefx.export.exporter:ExportConfig", "webcam": "facefx.runtime.webcam_options:WebcamOptions",
           "judges": "facefx.train.judges:JudgeConfig", "fps": "facefx.bench.options:FpsOptions",
           "quality": "facefx.bench.options:QualityOptions",
           "contact_sheet": "facefx.train.sheets:ContactSheetOptions"}[name]
    module, attr = cls.split(":")
    options.resolve(getattr(importlib.import_module(module), attr), parsed.value.args_)  # the numbers pass


def test_the_options_modules_import_no_torch():
    """--help and a refused option of webcam.py, fps.py and quality.py cost no heavy import."""
    code = ("import sys, facefx.options, facefx.runtime.webcam_options, facefx.bench.options; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'cv2', 'numpy') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
