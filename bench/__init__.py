"""Benchmarks, one module per chapter (``bench_<chapter>.py``); see run_all.py."""
