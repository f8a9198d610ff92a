"""The whole chain at a tiny size, through the same command lines a user types:
prepare -> teacher -> pairs -> student -> export -> realtime on the demo video.

Each stage reads only the previous artifact's folder (no option typed twice); the last one writes a video.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from facefx.manifest import read_manifest, verify_files
from facefx.runtime.loader import read_contract

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"


def _run(tmp: Path, script: str, *args: str) -> str:
    """Run a stage script from the repository as a user would; fail with its stderr if it fails."""
    proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=tmp, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def _only_run(folder: Path) -> Path:
    runs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def test_whole_chain_at_tiny_size_ends_in_a_playable_video(tmp_path):
    faces, labels = str(FIXTURES / "faces"), str(FIXTURES / "labels.csv")
    for name, rule in (("young", "age<=30"), ("old", "age>=55")):
        _run(tmp_path, "train/prepare.py", faces, "--labels", labels, "--filter", rule, "--name", name,
             "--root", "faces", "--size", "64")
    _run(tmp_path, "train/teacher.py", "--effect", "age", "--a", "faces/young", "--b", "faces/old",
         "--root", "teachers", "--size", "32", "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--batch", "2",
         "--iters", "2", "--no-bf16")
    teacher = _only_run(tmp_path / "teachers" / "age")
    _run(tmp_path, "distill/pairs.py", "--teacher", str(teacher), "--root", "pairs", "--size", "64",
         "--augment", "1", "--no-judge-filter")
    pairs = _only_run(tmp_path / "pairs" / "age")
    _run(tmp_path, "distill/student.py", "--pairs", str(pairs), "--root", "students", "--widths", "4,8,16",
         "--n-blocks", "1", "--batch", "4", "--iters", "2", "--no-bf16", "--eval-every", "2")
    student = _only_run(tmp_path / "students" / "age")
    _run(tmp_path, "export/export.py", "--student", str(student), "--out", "models/age", "--formats", "onnx,int8",
         "--calib", "4", "--eval", "2", "--repeats", "2")
    # Each artifact names its parent, and its files match their recorded hashes.
    for folder, kind, parent in ((teacher, "teacher", None), (pairs, "pairs", teacher), (student, "student", pairs)):
        m = read_manifest(folder, kind=kind)
        verify_files(folder)
        if parent is not None:
            assert Path(m["parent"]["path"]).resolve() == parent.resolve()
    for model in ("age.onnx", "age_int8.onnx"):  # the contract travels inside the files, at the student's size
        contract = read_contract(tmp_path / "models" / "age" / model)
        assert contract["effect"] == "age" and contract["size"] == 64

    out = tmp_path / "out.mp4"
    stdout = _run(tmp_path, "realtime/webcam.py", "--effect", "age", "--models-dir", "models",
                  "--source", str(REPO / "assets" / "demo.mp4"), "--output", str(out), "--no-window",
                  "--max-frames", "12")
    cap = cv2.VideoCapture(str(out))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    assert n == 12 and f"wrote {out}" in stdout


@pytest.mark.parametrize("script", ["train/prepare.py", "train/teacher.py", "distill/pairs.py",
                                    "distill/student.py", "export/export.py", "realtime/webcam.py",
                                    "benchmarks/fps.py", "benchmarks/quality.py", "benchmarks/judges.py"])
def test_every_stage_script_has_help(script, tmp_path):
    assert "usage:" in _run(tmp_path, script, "--help")
