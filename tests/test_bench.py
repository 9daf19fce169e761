"""Each benchmark runs (quick sizes) and reports a finite ratio."""

import importlib
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run_all import modules  # noqa: E402


@pytest.mark.parametrize("name", modules())
def test_benchmark_runs(name):
    rows = importlib.import_module(name).run(quick=True)
    assert rows
    for r in rows:
        assert math.isfinite(r.ratio) and r.ratio > 0 and r.target > 0


def test_run_all_prints_one_table():
    out = subprocess.run([sys.executable, "bench/run_all.py", "--quick"], cwd=ROOT,
                         capture_output=True, text=True)
    assert "ratio" in out.stdout.splitlines()[0] and out.stdout.count("x ") >= 1
