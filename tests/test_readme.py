"""The README stays a quick start, and its picture is made by benchmarks/strip.py from the shipped models."""

from __future__ import annotations

import importlib.util
import re
import shutil

import cv2
import numpy as np
import pytest
from conftest import FIXTURES, REPO


def _strip_script():
    spec = importlib.util.spec_from_file_location("strip_cli", REPO / "benchmarks" / "strip.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short_and_shows_the_committed_strip():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200 and len(text.split()) <= 2000
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and images[0] == "docs/strip.jpg"  # the first thing after the title line
    strip = REPO / images[0]
    assert strip.is_file() and strip.stat().st_size < 300_000


def test_strip_runs_held_out_faces_through_every_effect(tmp_path):
    from facefx.train.prepare import split_of

    faces = tmp_path / "faces"
    faces.mkdir()
    held_out = [p for p in sorted((FIXTURES / "faces").glob("*.jpg")) if split_of(p.name) == "test"][:2]
    trained_on = [p for p in sorted((FIXTURES / "faces").glob("*.jpg")) if split_of(p.name) == "train"][:1]
    for p in held_out + trained_on:
        shutil.copy(p, faces)
    out = tmp_path / "strip.jpg"
    _strip_script().main(["--faces", str(faces), "--tile", "64", "--out", str(out)])
    image = cv2.imread(str(out))
    # rows input, age, gender, style; a 32 px label margin, then one column per held-out face (never a trained one)
    assert image.shape == (4 * 64, 32 + 2 * 64, 3)
    cells = [[image[r * 64:(r + 1) * 64, 32 + c * 64:32 + (c + 1) * 64].astype(np.float32) for c in range(2)]
             for r in range(4)]
    for c, photo in enumerate(held_out):
        expected = cv2.resize(cv2.imread(str(photo)), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(cells[0][c] - expected).mean() < 6  # the input row is the photo (JPEG aside)
        for r in (1, 2, 3):
            assert np.abs(cells[r][c] - cells[0][c]).mean() > 6  # every effect visibly changes the face


def test_strip_without_a_held_out_photo_says_so(tmp_path, capsys):
    from facefx.train.prepare import split_of

    faces = tmp_path / "faces"
    faces.mkdir()
    for p in sorted((FIXTURES / "faces").glob("*.jpg")):
        if split_of(p.name) == "train":
            shutil.copy(p, faces)
    with pytest.raises(SystemExit) as exc:
        _strip_script().main(["--faces", str(faces), "--out", str(tmp_path / "s.jpg")])
    assert exc.value.code == 2 and "no held-out photo" in capsys.readouterr().err
    assert not (tmp_path / "s.jpg").exists()
