"""Exports (torch, onnx, coremltools, LiteRT): every shipped format and its model card."""
