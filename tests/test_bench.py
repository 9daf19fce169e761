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


def test_arena_bench_covers_every_arena_device():
    # the full-size run measures every device of the arena's grid: a device added to the grid
    # without a bench severity would stop `make bench` (not only its quick run)
    from bench.bench_arena import SEVERITIES
    from hwlib.chapters.arena import DEVICES

    assert set(SEVERITIES) == set(DEVICES)


def test_arena_bench_reads_the_stored_calibration(tmp_path):
    import numpy as np

    from bench.bench_arena import SEVERITIES, middle_severities
    from hwlib.chapters.arena import calibrate
    from hwlib.study.store import ResultStore

    store = ResultStore("book", root=tmp_path)

    def stored(device, severities):
        return store.save(calibrate, {"device": device, "seed": 0},
                          {"severities": np.array(severities), "achieved": np.zeros(3),
                           "grid": np.ones(2), "grid_accuracy": np.ones(2), "clean": 87.0},
                          1.0)

    stored("sram", [0.1, 0.25, 0.4])
    stored("memristive", [5.0, 14.0, np.nan])  # no 30-point level: its middle is still read
    bad = stored("crossbar", [0.1, 0.2, 0.3])
    bad.path.write_bytes(bad.path.read_bytes()[:-8])  # a corrupt entry is not used
    got = middle_severities(store)
    assert got["sram"] == 0.25 and got["memristive"] == 14.0
    assert got["mram"] == SEVERITIES["mram"]  # not calibrated: the fallback
    assert got["crossbar"] == SEVERITIES["crossbar"]
