"""Benchmarks: each prints figures; run with `python -m bench.<name>`."""
