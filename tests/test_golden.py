"""The golden vectors (golden/, what every port checks itself against) are still what the Python reference makes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", REPO / "realtime" / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_reproduces_golden_vectors(tmp_path):
    mg = _make_golden()
    out = tmp_path / "golden"
    out.mkdir()
    mg.make(out)
    assert mg.compare(out, REPO / "golden") == []


def test_golden_set_is_small_and_complete():
    index = json.loads((REPO / "golden" / "index.json").read_text())
    names = {f["name"] for f in index["frames"]}
    assert names == {"one_face", "two_faces", "edge", "rotated"}
    assert [len(f["faces"]) for f in index["frames"] if f["name"] == "two_faces"] == [2]
    files = list((REPO / "golden").iterdir())
    referenced = {f["frame"] for f in index["frames"]} | {f["pasted"]["file"] for f in index["frames"]}
    referenced |= {g["crop"] for f in index["frames"] for g in f["faces"]}
    referenced |= {o for f in index["frames"] for g in f["faces"] for o in g["output"].values()}
    referenced |= set(index["masks"].values()) | {index["one_euro"], "index.json"}
    assert {p.name for p in files} == referenced  # nothing stale, nothing missing
    assert sum(p.stat().st_size for p in files) < 3_000_000
    assert index["tolerances"]["matrix_abs"] == 1e-3 and index["tolerances"]["crop_psnr_db"] == 40.0
    assert index["tolerances"]["pasted_psnr_db"] == 35.0
