"""Serve the facefx web app (web/) with the headers that WASM threads need, plus the shipped models, read-only.

    npm ci --prefix web                       # once: onnxruntime-web and MediaPipe Tasks Vision, pinned
    python realtime/serve_web.py              # http://localhost:8000 and the LAN address
    python realtime/serve_web.py --cert cert.pem --key key.pem   # HTTPS, for a phone on the LAN

URL layout (nothing else is reachable; every path is resolved and must stay inside its folder):
  /                      web/ (the app, its node_modules)
  /models/index.json     the effects of models/ (made from the folder at each request: every folder with a manifest)
  /models/<effect>/...   that effect's .onnx models and .json contract/manifest
  /assets/<file>         facefx/assets (the bundled BlazeFace model) and assets/demo.mp4
  /assets/demo/NNN.png   demo.mp4's frames, decoded once with OpenCV (browsers do not play its MPEG-4 Part 2 video)
  /assets/demo/index.json  {"frames", "fps", "width", "height"}
  /golden/...            golden/ (the reference vectors every port checks itself against)

Every response carries Cross-Origin-Opener-Policy, Cross-Origin-Embedder-Policy and Cross-Origin-Resource-Policy, so
the page is cross-origin isolated and onnxruntime-web may use threads (SharedArrayBuffer). Stdlib only.
"""

from __future__ import annotations

import argparse
import io
import json
import mimetypes
import socket
import ssl
import sys
import threading
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
MODELS = REPO / "models"
GOLDEN = REPO / "golden"
ASSET_FILES = {"blazeface_short_range.tflite": REPO / "facefx" / "assets" / "blazeface_short_range.tflite",
               "demo.mp4": REPO / "assets" / "demo.mp4"}
MODEL_SUFFIXES = (".onnx", ".json")
NPM_HINT = "run `npm ci --prefix web` once: it installs the pinned onnxruntime-web and MediaPipe Tasks Vision"

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    # Nothing leaves the page: the same policy as index.html's, here for the workers too (they do not inherit the
    # page's <meta> policy).
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'wasm-unsafe-eval' blob:; "
                               "worker-src 'self' blob:; "
                               "connect-src 'self' blob: data:; img-src 'self' blob: data:; "
                               "media-src 'self' blob: mediastream:; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",  # revalidate: a re-exported model or an edited module is picked up on reload
}
TYPES = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".onnx": "application/octet-stream", ".tflite": "application/octet-stream", ".mp4": "video/mp4",
         ".png": "image/png", ".css": "text/css", ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}


class DemoFrames:
    """demo.mp4 decoded to PNG frames on first use, kept in memory (140 frames, ~30 MB). OpenCV is a facefx
    dependency; the server imports it only when a page asks for the demo clip."""

    def __init__(self, path: Path = ASSET_FILES["demo.mp4"]):
        self.path = path
        self._frames: list[bytes] | None = None
        self._info: dict | None = None
        self._lock = threading.Lock()

    def load(self) -> tuple[dict, list[bytes]]:
        with self._lock:
            if self._frames is None:
                import cv2

                cap = cv2.VideoCapture(str(self.path))
                fps = cap.get(cv2.CAP_PROP_FPS) or 20.0
                frames, shape = [], (0, 0)
                while True:
                    ok, frame = cap.read()
                    if not ok:
                        break
                    shape = frame.shape[:2]
                    frames.append(cv2.imencode(".png", frame, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes())
                cap.release()
                if not frames:
                    raise OSError(f"cannot decode {self.path}")
                h, w = shape
                self._info = {"frames": len(frames), "fps": fps, "width": w, "height": h}
                self._frames = frames
            return self._info, self._frames

    def get(self, name: str) -> tuple[bytes, str] | None:
        """(body, content type) for "index.json" or "NNN.png"; None when there is no such frame."""
        info, frames = self.load()
        if name == "index.json":
            return json.dumps(info).encode(), "application/json"
        stem = name.removesuffix(".png")
        if name.endswith(".png") and stem.isdigit() and int(stem) < len(frames):
            return frames[int(stem)], "image/png"
        return None


DEMO = DemoFrames()


def effects_index(models: Path = MODELS) -> dict:
    """{"effects": [{"effect", "contract", "models": {"int8": url, "fp32": url}}]} for every shipped effect.

    contract: contract.json when the folder has one (contract v2), else the manifest (its "contract" key, v1).
    """
    out = []
    for d in sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []:
        contract = d / "contract.json"
        if not contract.is_file():
            contract = d / "manifest.json"
        if not contract.is_file():
            continue
        files = {"int8": d / f"{d.name}_int8.onnx", "fp32": d / f"{d.name}.onnx"}
        found = {k: f"/models/{d.name}/{f.name}" for k, f in files.items() if f.is_file()}
        if found:
            out.append({"effect": d.name, "contract": f"/models/{d.name}/{contract.name}", "models": found})
    return {"effects": out}


def resolve(url_path: str, web: Path = WEB) -> Path | None:
    """The file a URL path names, or None when it names nothing servable (outside its folder, a hidden file...)."""
    parts = [p for p in unquote(url_path).split("/") if p]
    if any(p.startswith(".") or "\\" in p or "\0" in p for p in parts):
        return None  # no "..", no dotfiles
    if parts[:1] == ["models"]:
        root, rest = MODELS, parts[1:]
        if not rest or not rest[-1].endswith(MODEL_SUFFIXES):
            return None
    elif parts[:1] == ["assets"] and len(parts) == 2:
        return ASSET_FILES.get(parts[1])
    elif parts[:1] == ["golden"]:
        root, rest = GOLDEN, parts[1:]
    else:
        root, rest = web, parts or ["index.html"]
    path = root.joinpath(*rest) if rest else root
    if path.is_dir():
        path = path / "index.html"
    try:
        path.resolve().relative_to(root.resolve())  # symlinks included: nothing outside the folder
    except ValueError:
        return None
    return path if path.is_file() else None


class Handler(SimpleHTTPRequestHandler):
    """GET/HEAD only, fixed URL layout, isolation headers on every response (errors included)."""

    server_version = "facefx-web"
    quiet = False

    def end_headers(self) -> None:
        for k, v in HEADERS.items():
            self.send_header(k, v)
        super().end_headers()

    def send_head(self):
        path = urlsplit(self.path).path
        if path == "/models/index.json":
            return self._bytes(json.dumps(effects_index()).encode(), "application/json")
        if path.startswith("/assets/demo/") and path.count("/") == 3:
            try:
                got = DEMO.get(path.rsplit("/", 1)[1])
            except (ImportError, OSError) as err:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, f"demo clip unavailable: {err}")
                return None
            if got is None:
                self.send_error(HTTPStatus.NOT_FOUND, "not found")
                return None
            return self._bytes(*got)
        file = resolve(path)
        if file is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        try:
            f = open(file, "rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "not found")
            return None
        size = file.stat().st_size
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", TYPES.get(file.suffix, mimetypes.guess_type(file.name)[0]
                                                   or "application/octet-stream"))
        self.send_header("Content-Length", str(size))
        self.end_headers()
        return f

    def _bytes(self, body: bytes, content_type: str) -> io.BytesIO:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def do_POST(self) -> None:
        self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "read-only server")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(host: str = "0.0.0.0", port: int = 8000, cert: Path | None = None, key: Path | None = None,
                quiet: bool = False) -> ThreadingHTTPServer:
    handler = type("QuietHandler" if quiet else "Handler", (Handler,), {"quiet": quiet})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server


def serve_in_thread(**kw) -> tuple[ThreadingHTTPServer, str]:
    """Start a server on a free localhost port in a daemon thread (tests, benchmarks): (server, base URL)."""
    server = make_server(host="127.0.0.1", port=0, quiet=True, **kw)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def lan_address() -> str | None:
    """This machine's address on its LAN (the interface of the default route); None when there is none.
    A UDP connect sends no packet: it only asks the kernel which interface it would use."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            ip = s.getsockname()[0]
        return None if ip.startswith("127.") else ip
    except OSError:
        return None


def missing_dependencies(web: Path = WEB) -> list[str]:
    need = [web / "node_modules" / "onnxruntime-web" / "dist" / "ort.wasm.min.mjs",
            web / "node_modules" / "@mediapipe" / "tasks-vision" / "vision_bundle.mjs"]
    return [str(p.relative_to(REPO)) for p in need if not p.is_file()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="0.0.0.0", help="address to listen on (0.0.0.0: this machine and the LAN)")
    ap.add_argument("--port", type=int, default=8000, help="port")
    ap.add_argument("--cert", type=Path, help="TLS certificate (PEM) for HTTPS; phones need HTTPS for the camera")
    ap.add_argument("--key", type=Path, help="TLS private key (PEM) for --cert")
    ap.add_argument("--quiet", action="store_true", help="do not log every request")
    args = ap.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        print("error: --cert and --key go together (see --help for making a self-signed pair)", file=sys.stderr)
        return 2
    for f in (args.cert, args.key):
        if f and not f.is_file():
            print(f"error: {f} does not exist", file=sys.stderr)
            return 2
    missing = missing_dependencies()
    if missing:
        print(f"error: {missing[0]} is missing: {NPM_HINT}", file=sys.stderr)
        return 2
    if not effects_index()["effects"]:
        print(f"error: no effect with an .onnx model in {MODELS}", file=sys.stderr)
        return 2
    try:
        server = make_server(args.host, args.port, args.cert, args.key, args.quiet)
    except OSError as err:
        print(f"error: cannot listen on {args.host}:{args.port} ({err.strerror}); try --port 8001", file=sys.stderr)
        return 2
    except ssl.SSLError as err:
        print(f"error: cannot use {args.cert} / {args.key} ({err}); see --help", file=sys.stderr)
        return 2
    scheme = "https" if args.cert else "http"
    port = server.server_address[1]
    print(f"facefx web app: {scheme}://localhost:{port}/")
    lan = lan_address() if args.host in ("0.0.0.0", "") else (None if args.host.startswith("127.") else args.host)
    if lan:
        print(f"on your LAN:    {scheme}://{lan}:{port}/")
    if not args.cert:
        print("note: browsers give the camera only to localhost or HTTPS pages. On a phone, open the LAN URL with "
              "HTTPS:\n"
              "  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=facefx -keyout key.pem -out cert.pem \\\n"
              f"    -addext subjectAltName=IP:{lan or '<this machine LAN IP>'}\n"
              "  python realtime/serve_web.py --cert cert.pem --key key.pem   (accept the warning on the phone once)\n"
              "  or use a tunnel you already have to https://localhost. A picked video or image works over plain HTTP.")
    print("Ctrl-C stops.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
