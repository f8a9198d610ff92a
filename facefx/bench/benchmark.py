"""Benchmark helpers: timing with warm-up and repeats, the machine's identity, and the results files.

Output files (benchmarks/results/):
  <device>.csv   one row per measurement, fixed schema (RESULT_COLUMNS), appended by every run of fps.py
  <device>.md    the latest run as a markdown table (rendered from the CSV)
  <device>.png   the latest run as a plot: model-only FPS per backend, end-to-end time per stage
Benchmarks are rows, not prints: a row carries the machine, the libraries and the model's hash, so rows
from different machines and releases can be compared. Torch-free (numpy, matplotlib only when plotting).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facefx.errors import FacefxError
from facefx.manifest import atomic_write_bytes

RESULT_COLUMNS = (
    "date", "device", "cpu", "threads", "versions",  # when, where, with what
    "model", "model_hash", "backend", "precision", "size",  # what
    "p50_ms", "p95_ms", "fps", "spread_ms", "repeats",  # how fast: median, 95th percentile, p95 - p5
    "macs", "params", "kind", "stage", "note",  # cost; model-only | end-to-end (one row per stage)
)
KINDS = ("model-only", "end-to-end")


# ---- timing ----------------------------------------------------------------------------------------------
def time_fn(fn: Callable[[], object], warmup: int = 5, repeats: int = 30, min_seconds: float = 0.0) -> dict:
    """Call fn `warmup` times untimed, then at least `repeats` times (and for at least min_seconds).

    Returns {"p50_ms", "p95_ms", "p5_ms", "min_ms", "mean_ms", "spread_ms" (p95 - p5), "repeats", "fps" (1000 / p50)}.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - t_start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return summarize_ms(times)


def summarize_ms(times: Sequence[float]) -> dict:
    a = np.asarray(times, np.float64)
    p5, p50, p95 = np.percentile(a, [5, 50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p5_ms": float(p5), "min_ms": float(a.min()),
            "mean_ms": float(a.mean()), "spread_ms": float(p95 - p5), "repeats": int(a.size),
            "fps": float(1000.0 / p50) if p50 > 0 else 0.0}


# ---- the machine ------------------------------------------------------------------------------------------
def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo, macOS sysctl), else platform.processor().

    Where the name carries no model number (some cloud CPUs report just "AMD EPYC"), the family and model numbers
    are appended, so two CPU generations of one name keep separate benchmark files (speeds differ by up to 2x).
    cpuinfo: /proc/cpuinfo's text (read when None).
    """
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        if m:
            name = m.group(1).strip()
            family = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
            model = re.search(r"^model\s*:\s*(\d+)", text, re.M)
            if not re.search(r"\d", name) and family and model:
                name += f" family {family.group(1)} model {model.group(1)}"
            return name
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            return subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                  timeout=5).stdout.strip() or platform.machine()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def default_device_name() -> str:
    """A stable, file-name-safe machine name: os-arch-cpu-<n>cpu, e.g. linux-x86_64-intel-xeon-processor-2cpu."""
    cpu = re.sub(r"\((r|tm)\)|cpu|@.*", "", cpu_model(), flags=re.I)
    return slug(f"{platform.system()}-{platform.machine()}-{cpu}-{os.cpu_count()}cpu")


def machine_info(threads: int) -> dict:
    """What latency figures were measured on, as an export manifest records it: the machine's name (as in the
    results files), CPU model, cores, threads, OS, library versions and the load at the time."""
    from importlib import metadata

    info = {"device": default_device_name(), "cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "os": platform.platform(), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # the build's own version string (e.g. "+cpu"), where torch is loaded
    if torch is not None:
        info["torch"] = torch.__version__
    for pkg in ("torch", "onnxruntime", "onnx", "coremltools"):
        if pkg in info:
            continue
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    try:
        info["load_avg_1min"] = round(os.getloadavg()[0], 2)  # other jobs on the machine slow the numbers
    except (OSError, AttributeError):
        pass
    return info


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-") or "device"


def library_versions(names: Sequence[str] = ("torch", "onnxruntime", "numpy", "cv2", "mediapipe", "coremltools")
                     ) -> str:
    """'torch=2.x onnxruntime=1.y ...' for the libraries that are importable (not importing heavy ones twice)."""
    from importlib import metadata

    dists = {"cv2": "opencv-python", "torch": "torch", "onnxruntime": "onnxruntime", "numpy": "numpy",
             "mediapipe": "mediapipe", "coremltools": "coremltools", "tflite": "ai-edge-litert"}
    out = []
    for name in names:
        try:
            out.append(f"{name}={metadata.version(dists.get(name, name))}")
        except metadata.PackageNotFoundError:
            continue
    return " ".join(out)


def run_header(device: str | None = None, threads: int | None = None) -> dict:
    """The columns every row of one run shares."""
    return {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "device": device or default_device_name(), "cpu": cpu_model(),
            "threads": threads if threads is not None else "", "versions": library_versions()}


# ---- results files ----------------------------------------------------------------------------------------
def result_row(header: dict, **fields) -> dict:
    """A row with every RESULT_COLUMNS key (missing ones empty); unknown keys are a programming error."""
    unknown = set(fields) - set(RESULT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    row = {k: "" for k in RESULT_COLUMNS}
    row.update(header)
    row.update(fields)
    if row["kind"] not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {row['kind']!r}")
    for k in ("p50_ms", "p95_ms", "spread_ms"):
        if isinstance(row[k], float):
            row[k] = round(row[k], 3)
    if isinstance(row["fps"], float):
        row["fps"] = round(row["fps"], 2)
    return row


def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results CSV; a file with another header is refused (the schema is fixed)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise FacefxError(f"{path} has columns {reader.fieldnames}, not this facefx's schema; move it away "
                              "(or pass another --results folder) and run again")
        return list(reader)


def append_results(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    """Append rows to a results CSV (header written once); the file is replaced atomically, never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = read_results(path)
    rows = _distinct_run_date(old, rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in list(old) + list(rows):
        w.writerow({k: row.get(k, "") for k in RESULT_COLUMNS})
    atomic_write_bytes(path, buf.getvalue().encode())
    return path


def _distinct_run_date(old: Sequence[dict], new: Sequence[dict]) -> list[dict]:
    """Rows of one run share their date (to the second), so a run that starts in the same second as one already in
    the file (tiny models, --no-end-to-end) is dated one second after the latest: the two stay apart."""
    new = [dict(r) for r in new]
    dates = {r["date"] for r in old}
    if not old or not new or not dates & {r["date"] for r in new}:
        return new
    later = _dt.datetime.fromisoformat(max(dates)) + _dt.timedelta(seconds=1)
    for r in new:
        r["date"] = later.isoformat(timespec="seconds")
    return new


def latest_run(rows: Sequence[dict]) -> list[dict]:
    """The rows of the most recent run (rows of one run share their date)."""
    if not rows:
        return []
    last = max(r["date"] for r in rows)
    return [r for r in rows if r["date"] == last]


def fmt_count(v: str) -> str:
    """'443000000' -> '443 M', '1234' -> '1.2 k'; empty stays empty."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v or "")
    for unit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= unit:
            return f"{x / unit:.3g} {suffix}"
    return f"{x:.0f}"


def fmt_ms(v: str) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v or "")
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.0f}"


def split_notes(rows: Sequence[dict]) -> tuple[list[str], dict[int, str]]:
    """Notes every row shares (e.g. the machine's load) apart from each row's own."""
    parts = [[p for p in r.get("note", "").split("; ") if p] for r in rows]
    common = [p for p in (parts[0] if parts else []) if all(p in q for q in parts)]
    return common, {i: "; ".join(p for p in q if p not in common) for i, q in enumerate(parts)}


def render_markdown(rows: Sequence[dict], plot_name: str | None = None) -> str:
    """Markdown for one run: machine line, model-only table, end-to-end per-stage table."""
    if not rows:
        return "_no results yet_\n"
    r0 = rows[0]
    common, own = split_notes(rows)
    lines = [f"**{r0['device']}** ({r0['cpu']}), {r0['date']}" + (f", {'; '.join(common)}" if common else ""),
             "", f"Libraries: {r0['versions']}", ""]
    model_rows = [(i, r) for i, r in enumerate(rows) if r["kind"] == "model-only"]
    if model_rows:
        lines += ["Model only (one face crop per call; median and 95th percentile over the repeats, "
                  "spread = p95 - p5):", "",
                  "| model | backend | precision | threads | size | p50 ms | p95 ms | spread ms | FPS | MACs | params "
                  "| note |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for i, r in model_rows:
            lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r['threads']} | {r['size']} | "
                         f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p95_ms'])} | {fmt_ms(r['spread_ms'])} | "
                         f"{float(r['fps']):.1f} | {fmt_count(r['macs'])} | {fmt_count(r['params'])} | {own[i]} |")
        lines.append("")
    e2e = [(i, r) for i, r in enumerate(rows) if r["kind"] == "end-to-end"]
    if e2e:
        lines += ["End to end (video file -> detect -> crop -> model -> paste; per stage: ms per frame where it ran):",
                  "", "| model | backend | precision | threads | stage | p50 ms | p95 ms | FPS | note |",
                  "|---|---|---|---:|---|---:|---:|---:|---|"]
        for i, r in e2e:
            fps = f"{float(r['fps']):.1f}" if r["fps"] not in ("", None) else ""
            lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | {r['threads']} | {r['stage']} | "
                         f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p95_ms'])} | {fps} | {own[i]} |")
        lines.append("")
    if plot_name:
        lines += [f"![FPS on {r0['device']}]({plot_name})", ""]
    return "\n".join(lines)


def _label(r: dict) -> str:
    t = f", {r['threads']} thr" if r["threads"] not in ("", None) else ""
    return f"{r['model']} · {r['backend']} {r['precision']}{t}"


def render_plot(rows: Sequence[dict], path: str | os.PathLike) -> Path | None:
    """PNG of one run: model-only FPS bars (log scale: teachers and students differ 100x) and end-to-end
    stacked ms per stage. Returns None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model_rows = [r for r in rows if r["kind"] == "model-only" and r["fps"] not in ("", None)]
    e2e = [r for r in rows if r["kind"] == "end-to-end"]
    if not model_rows and not e2e:
        return None
    e2e_runs: dict[str, dict[str, float]] = {}
    e2e_fps: dict[str, float] = {}
    for r in e2e:
        key = _label(r)
        if r["stage"] == "total":
            e2e_fps[key] = float(r["fps"] or 0)
        elif r["p50_ms"] not in ("", None):
            e2e_runs.setdefault(key, {})[r["stage"]] = float(r["p50_ms"])
    panels = int(bool(model_rows)) + int(bool(e2e_runs))
    heights = [max(1.5, 0.42 * len(model_rows) + 1.0)] if model_rows else []
    if e2e_runs:
        heights.append(max(1.5, 0.5 * len(e2e_runs) + 1.2))
    # constrained layout makes room for the legends above each panel (tight_layout let them cover the title)
    fig, axes = plt.subplots(panels, 1, figsize=(10, sum(heights) + 0.8), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": heights})
    r0 = rows[0]
    common, _ = split_notes(rows)  # e.g. the machine's load: part of what the figure shows
    fig.suptitle(f"{r0['device']} ({r0['cpu']}), {r0['date'][:16].replace('T', ' ')} UTC"
                 + (f"; {'; '.join(common)}" if common else ""), fontsize=10)
    ax_i = 0
    if model_rows:
        ax = axes[ax_i][0]
        ax_i += 1
        labels = [_label(r) for r in model_rows]
        fps = [float(r["fps"]) for r in model_rows]
        colors = ["#c44e52" if r["model"].startswith("teacher") else "#4c72b0" if r["backend"] == "pytorch"
                  else "#55a868" if r["precision"] != "fp32" else "#8172b2" for r in model_rows]
        y = np.arange(len(labels))[::-1]
        ax.barh(y, fps, color=colors)
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("model-only FPS (log scale; 1 / median latency)")
        ax.set_xlim(min(fps) / 2, max(fps) * 4)
        for yi, r in zip(y, model_rows):
            ax.text(float(r["fps"]) * 1.08, yi, f"{float(r['fps']):.1f} FPS  ({fmt_ms(r['p50_ms'])} ms)",
                    va="center", fontsize=7.5)
        lo, hi = ax.get_xlim()
        if lo < 30 < hi:  # the usual real-time bar
            ax.axvline(30, color="grey", ls=":", lw=1)
            ax.text(30 * 1.04, y.min() - 0.45, "30 FPS", fontsize=7, color="grey", va="bottom")
        from matplotlib.patches import Patch

        legend = [("#c44e52", "teacher (PyTorch)"), ("#4c72b0", "student (PyTorch)"), ("#8172b2", "exported fp32"),
                  ("#55a868", "exported int8")]
        ax.legend(handles=[Patch(color=c, label=t) for c, t in legend if c in colors], fontsize=7,
                  loc="lower right", frameon=False, ncol=4, bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="x", which="both", alpha=0.2)
    if e2e_runs:
        ax = axes[ax_i][0]
        keys = list(e2e_runs)
        stages = [s for s in ("capture", "detect", "crop", "infer", "paste", "output")
                  if any(s in e2e_runs[k] for k in keys)]
        cmap = plt.get_cmap("tab10")
        y = np.arange(len(keys))[::-1]
        left = np.zeros(len(keys))
        for i, s in enumerate(stages):
            vals = np.array([e2e_runs[k].get(s, 0.0) for k in keys])
            ax.barh(y, vals, left=left, color=cmap(i), label=s)
            left += vals
        for yi, k, tot in zip(y, keys, left):
            fps_txt = f", {e2e_fps[k]:.1f} FPS" if k in e2e_fps else ""
            ax.text(tot * 1.01, yi, f"{tot:.1f} ms{fps_txt}", va="center", fontsize=7.5)
        ax.set_yticks(y, keys, fontsize=8)
        ax.set_xlabel("end-to-end ms per frame (median per stage; frames with a face)")
        ax.set_xlim(0, left.max() * 1.3)
        ax.legend(ncol=len(stages), fontsize=7, loc="lower right", frameon=False,
                  bbox_to_anchor=(1.0, 1.0))
        ax.grid(axis="x", alpha=0.2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def render_device(csv_path: str | os.PathLike) -> tuple[Path, Path | None]:
    """Write <device>.md and <device>.png next to <device>.csv from its latest run."""
    csv_path = Path(csv_path)
    rows = latest_run(read_results(csv_path))
    png = render_plot(rows, csv_path.with_suffix(".png"))
    md = csv_path.with_suffix(".md")
    title = f"# Benchmarks: {rows[0]['device']}\n\n" if rows else "# Benchmarks\n\n"
    atomic_write_bytes(md, (title + render_markdown(rows, png.name if png else None)).encode())
    return md, png
