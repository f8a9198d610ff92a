"""Torch-free run time: pixels, crop geometry, face detection, smoothing, video, pipeline and model loader."""
