"""The options of benchmarks/fps.py and benchmarks/quality.py, declared once (facefx.options builds their parsers
and checks their numbers). Light: no torch, numpy or onnxruntime, so --help and a refused option import nothing heavy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facefx.options import option

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


@dataclass
class FpsOptions:
    effect: list[str] | None = option(None, "effect to measure (repeatable)", append=True, none="all found")
    teacher: Path | None = option(None, "teacher run folder", none="latest for the effect")
    direction: str = option("AB", "teacher generator direction", choices=("AB", "BA"))
    student: Path | None = option(None, "student run folder", none="latest for the effect")
    models: Path | None = option(None, "exported models folder", none="<models-root>/<effect>")
    models_root: Path = option(Path("models"), "shipped models")
    teachers_root: Path = option(Path("artifacts/teachers"), "teacher runs")
    students_root: Path = option(Path("artifacts/students"), "student runs")
    threads: list[int] = option(help="comma-separated CPU thread counts to measure", split=",", ge=1, le=1024,
                                default_factory=lambda: sorted({1, min(2, os.cpu_count() or 1)}))
    warmup: int = option(5, "untimed calls before timing", ge=0, le=100000)
    repeats: int = option(30, "timed calls (at least)", ge=1, le=1000000)
    min_seconds: float = option(1.0, "keep timing at least this long per row", ge=0, le=3600)
    video: Path = option(REPO / "assets" / "demo.mp4", "clip for the end-to-end loop")
    e2e_frames: int = option(0, "frames of the clip to run (0: all)", ge=0)
    e2e_warmup: int = option(5, "first frames left out of the end-to-end timings", ge=0)
    no_end_to_end: bool = option(False, "model-only timings")
    device: str | None = option(None, "machine name for the results file", none="os-arch-cpu-<n>cpu")
    results: Path = option(RESULTS, "results folder")


@dataclass
class QualityOptions:
    effect: str | None = option(None, "effect to measure (required, except with --score-blind)",
                                choices=("age", "gender", "style"))
    direction: str = option("AB", "teacher direction (AB: young->old, men->women, photo->anime)", choices=("AB", "BA"))
    teacher: Path | None = option(None, "teacher run folder")
    teacher_strength: float | None = option(None, "scale of the teacher's change", gt=0, le=10,
                                            none="the strength of --student's pairs, else 1")
    student: Path | None = option(None, "student run folder")
    models: Path | None = option(None, "exported models folder, e.g. models/age")
    faces: list[Path] | None = option(None, "face set(s) to take held-out faces from (repeatable)", append=True,
                                      none="the teacher's source domain, else per effect")
    limit: int = option(0, "at most this many held-out faces (0: all)", ge=0)
    judges: Path | None = option(None, "judges folder", none="judges/")
    flicker_faces: int = option(4, "faces in the flicker test", ge=1, le=10000)
    flicker_frames: int = option(24, "frames per flicker clip", ge=2, le=10000)
    shift_faces: int = option(96, "faces in the shift-stability test", ge=1, le=100000)
    sheet_rows: int = option(8, "faces on the contact sheet", ge=1, le=1000)
    kid: bool = option(False, "also KID against the teacher and the target domain (the FID Inception network: "
                       "pip install -e \".[fid]\"; a few minutes on a CPU)")
    threads: int = option(1, "torch CPU threads", ge=1, le=1024)
    blind: int = option(0, "also a blind A/B test: N random faces, teacher and student side by side in a random order "
                        "(<stem>_blind_*.png), the key kept apart (0: none)", ge=0, le=10000, metavar="N")
    blind_seed: int = option(0, "which faces and orders the blind test draws", ge=0, lt=2**63)
    blind_key: Path | None = option(None, "where the blind test's key goes", none="artifacts/blind/<stem>_key.json")
    score_blind: Path | None = option(None, "score --guesses against a blind-test key and exit (measures nothing)",
                                      metavar="KEY")
    guesses: str = option("", "with --score-blind: L or R per row, the side you take for the teacher's")
    out: Path = option(RESULTS, "results folder")
