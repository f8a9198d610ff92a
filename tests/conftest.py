"""Shared fixtures: real face photos (tests/fixtures, scikit-image's astronaut) and small prepared face sets."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GLOG_minloglevel", "2")
# The stage scripts import facefx as an installed package; the commands the tests run in subprocesses get this
# checkout's, whether or not it is installed (CI installs it editable; a shared dev venv may not).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH")) if p)

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def face_files() -> list[Path]:
    return sorted((FIXTURES / "faces").glob("*.jpg"))


@pytest.fixture(scope="session")
def faces_artifact(tmp_path_factory, face_files) -> Path:
    """A prepared face set (64 px) of the fixture photos, with the labels; every face in both splits' sense."""
    from facefx.train.prepare import PrepareConfig, prepare_faces

    root = tmp_path_factory.mktemp("faces")
    out = root / "fixture"
    prepare_faces(PrepareConfig(source=FIXTURES / "faces", out=out, size=64, labels=FIXTURES / "labels.csv"),
                  progress=False)
    return out
