"""Benchmarks of amp_sync: `make bench` (or `python -m bench.run --help`) prints the figures."""
