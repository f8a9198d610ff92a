"""Artifact manifests: every artifact is a folder with manifest.json, written atomically.

A manifest carries what the next stage needs (network spec, crop spec, pixel contract) so that no
option is typed twice, plus provenance (command, parent path and content hash, file hashes) and
metrics. JSON only: loading a manifest never executes code.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facefx.errors import FacefxError, deferred_interrupts, os_error_message

SCHEMA_VERSION = 1
KINDS = ("faces", "teacher", "pairs", "student", "export", "judge")
MANIFEST = "manifest.json"
# The recipe file this process runs from (facefx.options.read_recipe), recorded in every manifest it writes, as the
# command line is: a recipe's settings are part of how an artifact was made.
_RECIPE: dict | None = None


def record_recipe(recipe: dict | None) -> None:
    """Record (or with None, forget) the recipe of this run: {file, sha256, stage, settings}."""
    global _RECIPE
    _RECIPE = recipe


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def write_failed(path: str | os.PathLike, err: OSError) -> FacefxError:
    """The one-line error for a write that failed (full disk, read-only folder, permission), naming the file."""
    msg = os_error_message(err) or f"cannot write {path} ({err.strerror or err}); check the disk and the folder"
    if err.filename is None or str(err.filename) != str(path):
        msg = f"cannot write {path}: " + msg.split(": ", 1)[-1]
    return FacefxError(msg)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """The one file writer: write to a hidden temp file in the same folder, check the write (flush + fsync raise
    on a full disk), then rename over `path`. Readers never see half a file, and on any failure the old file is
    untouched and the temp file removed; an OSError becomes a FacefxError naming `path`."""
    path = Path(path)
    tmp = None
    try:
        with deferred_interrupts():  # the temp file is named (and so removed below) before a signal can unwind
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files owner-only; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(err, OSError):
            raise write_failed(path, err) from None
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def append_csv_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a log CSV (losses.csv), writing the header first when the file is new."""
    path = Path(path)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in row.items()})


def content_hash(manifest: dict) -> str:
    """Hash of an artifact's content: its file hashes (and spec), independent of where it lies."""
    payload = {k: manifest.get(k) for k in ("kind", "effect", "files", "network", "crop")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def new_manifest(kind: str, effect: str | None = None, parent: str | os.PathLike | None = None,
                 **fields: Any) -> dict:
    """A manifest skeleton with provenance filled in; `parent` is the artifact folder this one came from."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "effect": effect,
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "parent": None,
        **({"recipe": _RECIPE} if _RECIPE is not None else {}),
        "files": {},
        "metrics": {},
    }
    if parent is not None:
        parents = parent if isinstance(parent, (list, tuple)) else [parent]
        refs = []
        for p in parents:
            pm = read_manifest(p)
            refs.append({"path": str(Path(p)), "kind": pm["kind"], "hash": content_hash(pm)})
        manifest["parent"] = refs[0] if len(refs) == 1 else refs
    manifest.update(fields)
    return manifest


def hash_files(folder: str | os.PathLike, names: list[str]) -> dict[str, str]:
    folder = Path(folder)
    return {name: sha256_file(folder / name) for name in names}


def write_manifest(folder: str | os.PathLike, manifest: dict) -> Path:
    path = Path(folder) / MANIFEST
    atomic_write_json(path, manifest)
    return path


def read_manifest(folder: str | os.PathLike, kind: str | None = None) -> dict:
    """Read an artifact's manifest; a missing folder, missing manifest or wrong kind is a FacefxError."""
    folder = Path(folder)
    path = folder / MANIFEST if folder.is_dir() or not folder.suffix else folder
    if not folder.exists():
        raise FacefxError(f"{folder} does not exist; pass the folder of an artifact made by an earlier stage")
    if not path.is_file():
        raise FacefxError(f"{folder} has no {MANIFEST}; it is not a facefx artifact (was it made by an earlier stage?)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FacefxError(f"{path} is not valid JSON ({err}); re-create the artifact") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise FacefxError(f"{path} has schema version {manifest.get('schema_version')}, expected {SCHEMA_VERSION}")
    if kind is not None and manifest.get("kind") != kind:
        raise FacefxError(f"{folder} is a {manifest.get('kind')!r} artifact, expected {kind!r}")
    return manifest


def earlier_stages(init: str | os.PathLike | None, kind: str) -> list[dict]:
    """The training stages behind a warm start (--init): the init artifact's own lineage where it records one,
    else that artifact as one stage (its command and iterations). A student reads it when its run starts, since a
    committed snapshot such as students/<effect> is later overwritten by the run it started."""
    if not init:
        return []
    try:
        parent = read_manifest(init, kind=kind)
    except FacefxError:
        return [{"stage": str(init), "note": "not readable when this lineage was recorded"}]
    cfg = parent.get("config", {})
    return list(parent.get("lineage") or [{"stage": f"{init} as it was then", "command": parent.get("command"),
                                           "iters": parent.get("progress", {}).get("step"), "batch": cfg.get("batch"),
                                           "where": cfg.get("device", "")}])


def run_stage(manifest: dict) -> dict:
    """One training run (a teacher's or a student's) as a stage of its lineage: how it started, its command,
    iterations, batch, time and device."""
    cfg, prog = manifest.get("config", {}), manifest.get("progress", {})
    return {"stage": f"warm start from {cfg['init']}" if cfg.get("init") else "trained from scratch",
            "command": manifest.get("command"), "iters": prog.get("step"), "batch": cfg.get("batch"),
            "seconds": prog.get("elapsed_s"), "where": cfg.get("device")}


def verify_files(folder: str | os.PathLike, manifest: dict | None = None, need: list[str] | None = None) -> None:
    """Check every file hash in the manifest; raise FacefxError naming the first file that differs. Files in
    `need` must be listed (a manifest whose "files" was deleted would otherwise pass with nothing checked)."""
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise FacefxError(f"{folder / MANIFEST} has no file hashes ('files'); re-create the artifact")
    unlisted = [n for n in need or [] if n not in files]
    if unlisted:
        raise FacefxError(f"{folder / MANIFEST} lists no hash for {', '.join(unlisted)}; re-create the artifact")
    for name, digest in files.items():
        p = folder / name
        if not p.is_file():
            raise FacefxError(f"{p} is listed in the manifest but missing; re-create the artifact")
        if sha256_file(p) != digest:
            raise FacefxError(f"{p} does not match its manifest hash (edited or corrupt); re-create the artifact")


def next_run_dir(root: str | os.PathLike, desc: str) -> Path:
    """Numbered, append-only run folder name under root: root/00007-desc (not created)."""
    root = Path(root)
    check_name(desc, "run description")  # joined to root: no path separators
    numbers = [int(m.group(1)) for p in root.glob("*") if (m := re.match(r"^(\d{5})-", p.name))]
    return root / f"{max(numbers, default=-1) + 1:05d}-{desc}"


def latest_run_dir(root: str | os.PathLike) -> Path | None:
    """The highest-numbered finished run under root (one with a manifest), or None."""
    root = Path(root)
    runs = sorted(p for p in root.glob("[0-9][0-9][0-9][0-9][0-9]-*") if (p / MANIFEST).is_file())
    return runs[-1] if runs else None


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Build an artifact in a hidden temp folder and rename it into place only when complete.

    On any error (or Ctrl-C) the temp folder is removed, so nothing half-written is left on disk.
    With replace=True an existing folder is swapped out only once the new one is complete (models/<effect>).
    """
    final = Path(final)
    if final.exists() and not replace:
        raise FacefxError(f"{final} already exists; choose another name or remove it")
    if final.exists() and not final.is_dir():
        raise FacefxError(f"{final} is a file, not an artifact folder; choose another name or remove it")
    for up in [final.parent, *final.parent.parents]:
        if up.exists():
            if not up.is_dir():  # e.g. --root pointing at a file
                raise FacefxError(f"{up} is a file, not a folder; pass a folder (or a new path) for the output")
            break
    tmp = None
    try:
        # A signal landing between mkdtemp and `tmp =` would leave the folder behind: it waits until tmp is named.
        with deferred_interrupts():
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial"))
            except OSError as err:
                raise write_failed(final, err) from None
        os.chmod(tmp, 0o755)  # mkdtemp makes folders owner-only; artifacts are meant to be shared
        yield tmp
        old = None
        if final.exists():  # two renames: the old folder is never deleted before the new one is in place
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
            os.replace(final, old / final.name)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None:  # put the old folder back
                os.replace(old / final.name, final)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise write_failed(final, err) from None
        raise


STUDENT_FIELDS = {"effect": str, "resolution": int, "crop": dict, "network": dict, "files": dict}


def check_student(folder: str | os.PathLike, manifest: dict) -> dict:
    """The keys every reader of a student artifact uses (export, fps), with their types: an edited or foreign
    manifest gets one line, not a KeyError or a ValueError halfway through."""
    require_fields(manifest, folder, STUDENT_FIELDS)
    if manifest["resolution"] < 16:
        raise FacefxError(f"{Path(folder) / MANIFEST}: resolution {manifest['resolution']} is not a crop size; "
                          "re-run the student stage")
    return manifest


def check_name(name: str, what: str = "--name") -> str:
    """An artifact name is one plain folder name: no path separators, no '..', not hidden (it is joined to a
    root folder, and '../../x' would write outside it)."""
    if not name or name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0") \
            or Path(name).is_absolute():
        raise FacefxError(f"{what} {name!r} must be a plain folder name (letters, digits, -, _), not a path; "
                          "use --root to choose where it is written")
    return name


def require_fields(manifest: dict, folder: str | os.PathLike, fields: dict[str, type | tuple[type, ...]]) -> dict:
    """Check that a manifest has these keys with these types (an edited or foreign manifest gets one line naming
    the first bad key, not a KeyError later); returns the manifest."""
    for key, types in fields.items():
        if key not in manifest:
            raise FacefxError(f"{Path(folder) / MANIFEST} lacks {key!r}; re-create the artifact with this facefx")
        value = manifest[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in
                                               (types if isinstance(types, tuple) else (types,)))
        if not ok:
            names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise FacefxError(f"{Path(folder) / MANIFEST}: {key!r} is {value!r}, expected {names}; re-create the "
                              "artifact with this facefx")
    return manifest
