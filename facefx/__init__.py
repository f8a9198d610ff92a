"""facefx: shared code for every stage (networks, losses, crop geometry, pixels, manifests, runtime).

Stage scripts under train/, distill/, export/, realtime/ and benchmarks/ are thin command lines over
this package. Modules that the realtime path imports (pixels, crop, faces, manifest, runtime, images)
never import torch (also pipeline, video and smoothing); the torch-only modules are nets, losses, data,
cyclegan, distill and export.
"""

__version__ = "0.1.0"
