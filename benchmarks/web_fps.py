"""End-to-end FPS of the web app in headless Chromium (WASM): one face, 1 and 2 threads, int8 and fp32.

The page's own benchmark (the "benchmark" button, web/src/app.js) runs N frames of demo.mp4's one-face part through
the whole pipeline (capture, detect, crop, infer, paste) as fast as it goes; this script opens it once per setting,
prints the figures and the machine's load, and appends the rows to benchmarks/results/<device>-chromium.csv
(facefx.bench.benchmark.RESULT_COLUMNS; .md and .png re-rendered), next to the desktop figures.

    nice -n 10 python benchmarks/web_fps.py                          # int8 + fp32, 1 + 2 threads, overlapped
    python benchmarks/web_fps.py --precision int8 --threads 2 --variants overlap,serial,detect2 --frames 200

Variants: overlap (model in a worker while the main thread detects the next frame; the app's default), serial
(wait for each frame's model before the next detection), detect2/detect3 (overlap, and detect on one frame in 2 or 3,
tracking in between), small (overlap, detect on the frame at half size), jspaste (overlap, the reference JS paste
loop instead of the canvas one), infer2 (overlap, the model on one frame in 2, its output pasted on both: the face
moves at full rate, its expression one frame late). Needs Chromium, the playwright package and web/node_modules
(npm ci --prefix web).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from facefx.bench import benchmark as bm

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"overlap": "overlap=1&detectEvery=1", "serial": "overlap=0&detectEvery=1",
            "detect2": "overlap=1&detectEvery=2", "detect3": "overlap=1&detectEvery=3",
            "small": "overlap=1&detectEvery=1&detectScale=0.5", "jspaste": "overlap=1&detectEvery=1&paste=js",
            "infer2": "overlap=1&detectEvery=1&inferEvery=2"}


def _serve_web():
    spec = importlib.util.spec_from_file_location("serve_web", REPO / "realtime" / "serve_web.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load {one:.1f}/{five:.1f} (1/5 min) on {os.cpu_count()} cpu"
    except OSError:
        return "load unknown"


def run_one(pw, chromium: str, base: str, effect: str, precision: str, threads: int, variant: str, frames: int,
            device: str, timeout_s: float) -> tuple[list[dict], str]:
    browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    try:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/?effect={effect}&precision={precision}&backend=wasm&threads={threads}&bench={frames}"
                  f"&{VARIANTS[variant]}&device={device}")
        page.wait_for_function("() => globalThis.facefx?.record || !document.getElementById('message').hidden",
                               timeout=timeout_s * 1000, polling=500)
        record = page.evaluate("() => globalThis.facefx.record")
        if not record:
            raise SystemExit(f"error: the page said: {page.inner_text('#message')}")
        if errors:
            raise SystemExit(f"error: the page failed: {errors[0]}")
        return record["rows"], record["user_agent"]
    finally:
        browser.close()


def _ms(by: dict, stage: str) -> str:
    return f"{by[stage]['p50_ms']:.1f}" if stage in by else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--effect", default="age", help="a folder of models/")
    ap.add_argument("--precision", default="int8,fp32", help="comma-separated: int8, fp32")
    ap.add_argument("--threads", default="1,2", help="comma-separated WASM thread counts")
    ap.add_argument("--variants", default="overlap", help=f"comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--frames", type=int, default=150, help="timed frames per setting (after 5 untimed)")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    ap.add_argument("--no-write", action="store_true", help="print only; append nothing to the results")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per setting")
    args = ap.parse_args(argv)
    precisions = [p for p in args.precision.split(",") if p]
    variants = [v for v in args.variants.split(",") if v]
    bad = [p for p in precisions if p not in ("int8", "fp32")] + [v for v in variants if v not in VARIANTS]
    try:
        threads = [int(t) for t in args.threads.split(",") if t]
    except ValueError:
        bad.append(args.threads)
        threads = []
    if bad or args.frames < 10 or any(t < 1 for t in threads):
        print(f"error: bad setting {bad or args.frames}; see --help", file=sys.stderr)
        return 2
    serve_web = _serve_web()
    chromium = next((p for p in ("/usr/bin/chromium", os.environ.get("FACEFX_CHROMIUM")) if p and Path(p).is_file()),
                    None)
    missing = serve_web.missing_dependencies()
    if chromium is None or missing or importlib.util.find_spec("playwright") is None:
        why = ("no Chromium (apt-get install -y chromium)" if chromium is None else
               f"{missing[0]} is missing ({serve_web.NPM_HINT})" if missing else "pip install playwright")
        print(f"error: {why}", file=sys.stderr)
        return 2
    if args.effect not in {e["effect"] for e in serve_web.effects_index()["effects"]}:
        print(f"error: no effect {args.effect!r} in models/", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    device = f"{bm.default_device_name()}-chromium"
    run_date = bm.run_header(device)["date"]  # one date for the whole run: the results table shows it as one
    server, base = serve_web.serve_in_thread()
    rows: list[dict] = []
    print(f"{device}; {load()} at start")
    print(f"{'model':<16} {'thr':>3} {'variant':<8} {'FPS':>6} {'detect':>7} {'crop':>6} {'infer':>7} "
          f"{'paste':>6}  load")
    try:
        with sync_playwright() as pw:
            for precision in precisions:
                for t in threads:
                    for variant in variants:
                        got, ua = run_one(pw, chromium, base, args.effect, precision, t, variant, args.frames, device,
                                      args.timeout)
                        now = load()
                        by = {r["stage"]: r for r in got}
                        cols = "".join(f" {_ms(by, s):>{w}}" for s, w in (("detect", 7), ("crop", 6), ("infer", 7),
                                                                           ("paste", 6)))
                        print(f"{by['total']['model']:<16} {t:>3} {variant:<8} {by['total']['fps']:>6.1f}{cols}  {now}")
                        for r in got:
                            r["cpu"] = bm.cpu_model()  # the page knows only its core count
                            r["date"] = run_date
                            if variant != "overlap":
                                r["backend"] = f"{r['backend']}-{variant}"  # one label per variant in the table/plot
                            # The user agent is in the versions (chromium=N); the full string would fill the
                            # plot's title.
                            note = r["note"].replace(f"; {ua}", "")
                            r["note"] = f"{note}; {now} after"
                        rows += got
    finally:
        server.shutdown()
    if not args.no_write:
        csv_path = args.results / f"{bm.slug(device)}.csv"
        bm.append_results(csv_path, rows)
        md, _ = bm.render_device(csv_path)
        print(f"rows appended to {csv_path.relative_to(REPO)}; {md.relative_to(REPO)} re-rendered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
