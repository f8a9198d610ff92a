"""Benchmarks: speed per device and backend, quality per effect."""
