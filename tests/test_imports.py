"""The runtime install holds no training or export stack: importing any runtime module loads no torch, onnx or
coremltools; the `facefx` command and the shipped models work from any working directory."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import facefx.runtime

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "coremltools")
# Torch-free by contract: the runtime package, the shared foundations, and the command dispatcher.
TOP_LEVEL = ("facefx", "facefx.errors", "facefx.manifest", "facefx.metrics", "facefx.console")
RUNTIME = sorted(m.name for m in pkgutil.walk_packages(facefx.runtime.__path__, "facefx.runtime."))


def _loaded_after_import(module: str) -> list[str]:
    """Heavy packages in sys.modules after importing `module` in a fresh interpreter."""
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_runtime_package_has_the_modules_it_promises():
    # walk_packages finds them: a renamed or emptied package would make the import test below vacuous.
    assert {"facefx.runtime.loader", "facefx.runtime.pipeline", "facefx.runtime.crop",
            "facefx.runtime.faces", "facefx.runtime.video"} <= set(RUNTIME)


@pytest.mark.parametrize("module", RUNTIME + list(TOP_LEVEL))
def test_importing_loads_no_torch_onnx_or_coremltools(module):
    assert _loaded_after_import(module) == []


def test_the_import_check_sees_a_heavy_import():
    # The same check on a training module must find torch, or it would pass for any module.
    assert "torch" in _loaded_after_import("facefx.train.nets")


def test_a_shipped_effect_loads_by_name_from_any_directory(tmp_path):
    code = ("from facefx.runtime.loader import load_model; m = load_model('age'); "
            "print(m.effect, m.path.name, m.size)")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["age", "age_int8.onnx", "256"]


def test_an_unknown_effect_name_says_which_effects_ship(tmp_path):
    from facefx.errors import FacefxError
    from facefx.runtime.loader import load_model

    with pytest.raises(FacefxError, match="shipped effects: age, gender, style"):
        load_model("sepia")


def _facefx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facefx", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin",
                                            "OMP_NUM_THREADS": "1", "GLOG_minloglevel": "2"})


def test_the_facefx_command_lists_its_commands(tmp_path):
    r = _facefx("--help", cwd=tmp_path)
    assert r.returncode == 0
    for name in ("run", "prepare", "teacher", "pairs", "student", "export", "fps", "quality", "strip"):
        assert f"\n  {name} " in r.stdout
    r = _facefx("sepia", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_facefx_run_is_webcam_py_from_another_directory(tmp_path):
    # The README's demo through the console entry point, from outside the checkout: shipped model found by name.
    out = tmp_path / "out.mp4"
    r = _facefx("run", "--effect", "age", "--source", str(REPO / "assets" / "demo.mp4"), "--output", str(out),
                "--no-window", "--max-frames", "12", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import cv2

    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()
    r = _facefx("run", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: facefx run")


def test_a_stage_missing_its_extra_names_the_extra(tmp_path, monkeypatch):
    # Simulate a runtime-only install: the stage's import of torch fails, and the command says what to install.
    from facefx import console

    script = tmp_path / "stage.py"
    script.write_text("import torch  # noqa: F401\n\ndef main(argv=None):\n    return 0\n")
    monkeypatch.setitem(console.COMMANDS, "teacher", console.Command(str(script), "x", "train"))
    monkeypatch.setitem(sys.modules, "torch", None)  # None in sys.modules: `import torch` raises ImportError
    with pytest.raises(console.CommandUnavailable, match=r"needs the \[train\] extra .*pip install"):
        console.load_main("teacher")


def test_a_stage_importing_its_extra_inside_main_gets_the_same_one_line(tmp_path, monkeypatch, capsys):
    from facefx import console

    script = tmp_path / "stage.py"
    script.write_text("def main(argv=None):\n    import coremltools  # noqa: F401\n    return 0\n")
    monkeypatch.setitem(console.COMMANDS, "export", console.Command(str(script), "x", "export"))
    monkeypatch.setitem(sys.modules, "coremltools", None)
    assert console.main(["export", "--help"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert 'needs the [export] extra (coremltools is missing): pip install "facefx[export]"' in err


@pytest.mark.slow
def test_a_wheel_carries_the_models_and_the_webcam_command(tmp_path):
    """A non-editable install finds the shipped models and runs `facefx run` without the checkout."""
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO),
                        "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("facefx-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for effect in ("age", "gender", "style"):
        assert {f"facefx/models/{effect}/{effect}_int8.onnx", f"facefx/models/{effect}/{effect}.onnx",
                f"facefx/models/{effect}/manifest.json"} <= names
    assert "facefx/_scripts/webcam.py" in names and "facefx/assets/blazeface_short_range.tflite" in names
    assert not any(n.endswith((".ort", ".tflite")) and "/models/" in n for n in names)  # mobile blobs stay out
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                        str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    code = "import facefx.runtime.loader as L; m = L.load_model('style'); print(m.path)"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "site" / "facefx" / "models" / "style" / "style_int8.onnx")
    out = tmp_path / "out.mp4"
    r = subprocess.run([sys.executable, "-m", "facefx", "run", "--source", str(REPO / "assets" / "demo.mp4"),
                        "--output", str(out), "--no-window", "--max-frames", "5"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.is_file(), r.stderr
    r = subprocess.run([sys.executable, "-m", "facefx", "teacher", "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "part of a facefx checkout" in r.stderr
