"""facefx: real-time face effects, from unpaired face sets to a live camera.

The package is split along the torch boundary:
- ``facefx.runtime``: what an effect needs at run time (pixels, crop geometry, face detection, smoothing,
  video in and out, the pipeline, the model loader). It never imports torch, onnx or coremltools
  (``tests/test_imports.py`` proves it).
- ``facefx.train``: teachers, pair generation, students, judges (torch).
- ``facefx.export``: ONNX, ORT, CoreML and TFLite exports and model cards (torch, onnx, coremltools).
- ``facefx.bench``: speed and quality benchmarks.
- ``facefx.errors``, ``facefx.manifest`` and ``facefx.metrics`` are torch-free foundations every part shares.
- ``facefx.console``: the ``facefx`` command, which runs each stage script (``facefx run``, ``facefx teacher``, ...).
"""

__version__ = "0.1.0"
