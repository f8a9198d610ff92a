"""Make facefx/assets/blazeface_short_range.tflite from the npm package @mediapipe/face_detection.

The npm package (Apache-2.0) ships the short-range BlazeFace model without the input-normalization
metadata that the MediaPipe Tasks FaceDetector needs; this script adds it (mean 127.5, std 127.5:
pixels to [-1, 1]). Run once by a maintainer; the result is committed. Needs npm and network access
to the npm registry:

    python facefx/assets/make_blazeface_model.py
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

NPM_PACKAGE = "@mediapipe/face_detection@0.4.1657300184"
OUT = Path(__file__).with_name("blazeface_short_range.tflite")


def _stub_metadata_version() -> None:
    # mediapipe 1.2.2's metadata writer imports a compiled module that the wheel does not ship;
    # it only asks it for the minimum parser version, which for these fields is 1.0.0.
    mod = types.ModuleType("mediapipe.tasks.cc.metadata.python._pywrap_metadata_version")
    mod.GetMinimumMetadataParserVersion = lambda *_args, **_kw: "1.0.0"
    for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", "mediapipe.tasks.cc.metadata.python"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules[mod.__name__] = mod
    sys.modules["mediapipe.tasks.cc.metadata.python"]._pywrap_metadata_version = mod


def main() -> None:
    _stub_metadata_version()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=tmp, check=True, capture_output=True)
        tgz = next(Path(tmp).glob("*.tgz"))
        with tarfile.open(tgz) as tar:
            model = tar.extractfile("package/face_detection_short_range.tflite").read()
    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info("blazeface_short_range", "BlazeFace short-range face detector (MediaPipe, Apache-2.0)")
    writer.add_image_input(norm_mean=[127.5], norm_std=[127.5])
    writer.add_feature_output(name="regressors")
    writer.add_feature_output(name="classificators")
    tflite, _ = writer.populate()
    del writer  # its __del__ fails at interpreter exit otherwise
    OUT.write_bytes(bytes(tflite))
    print(f"wrote {OUT} ({len(tflite)} bytes)")


if __name__ == "__main__":
    main()
