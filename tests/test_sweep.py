"""Sweeps: parallel workers with one thread, resume after an interruption, Dask, determinism."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwlib.errors import ParameterError
from hwlib.study.store import ResultStore
from hwlib.study.sweep import default_workers, run_sweep

from experiments import counted, noise

TESTS = Path(__file__).parent


def test_parallel_equals_serial_with_one_thread_per_worker(tmp_path):
    configs = [{"seed": s, "n": 5000} for s in range(6)]
    par = run_sweep(noise, configs, ResultStore("smoke", tmp_path / "a"), workers=2)
    ser = run_sweep(noise, configs, ResultStore("smoke", tmp_path / "b"), workers=1)
    assert [e["mean"] for e in par] == [e["mean"] for e in ser]
    assert all(e["threads"] == 1 for e in par + ser)
    assert [e.provenance["config"]["seed"] for e in par] == list(range(6))  # input order


def test_interrupted_sweep_resumes(tmp_path):
    marks = tmp_path / "marks"
    store = ResultStore("smoke", tmp_path / "r")
    configs = [{"i": i, "marks": str(marks)} for i in range(6)]
    (tmp_path / "FAIL").touch()  # point 3 dies: the sweep stops there
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sweep(counted, configs, store, workers=1)
    assert [store.load(counted, c) is not None for c in configs] == [True] * 3 + [False] * 3
    (tmp_path / "FAIL").unlink()
    entries = run_sweep(counted, configs, store, workers=2)  # resumed
    calls = sorted(int(p.name.split("-")[0]) for p in marks.iterdir())
    assert calls == [0, 1, 2, 3, 4, 5]  # points 0-2 were not computed again
    assert [int(e["square"][0]) for e in entries] == [0, 1, 4, 9, 16, 25]


def test_resume_computes_only_missing(tmp_path):
    marks = tmp_path / "marks"
    store = ResultStore("smoke", tmp_path / "r")
    configs = [{"i": i, "marks": str(marks)} for i in range(5)]
    run_sweep(counted, configs[:2], store, workers=1)  # a sweep stopped after two points
    run_sweep(counted, configs, store, workers=2)      # the full sweep, rerun
    calls = sorted(int(p.name.split("-")[0]) for p in marks.iterdir())
    assert calls == [0, 1, 2, 3, 4]  # each point computed exactly once
    again = run_sweep(counted, configs, store, workers=2)
    assert len(list(marks.iterdir())) == 5 and [int(e["square"][0]) for e in again] == [
        0, 1, 4, 9, 16]


def test_a_config_given_twice_runs_once(tmp_path):
    marks = tmp_path / "marks"
    store = ResultStore("smoke", tmp_path / "r")
    configs = [{"i": i, "marks": str(marks)} for i in (0, 1, 0, 2, 1)]
    entries = run_sweep(counted, configs, store, workers=2)
    calls = sorted(int(p.name.split("-")[0]) for p in marks.iterdir())
    assert calls == [0, 1, 2]  # one computation per distinct config
    assert [int(e["square"][0]) for e in entries] == [0, 1, 0, 4, 1]
    assert entries[0] is entries[2] and entries[1] is entries[4]
    # the entry every place holds is the one on disk (no superseded checksum)
    assert all(store.current_checksum(counted.name, e.provenance["key"]) == e.checksum
               for e in entries)


def test_dask_cluster_on_loopback(tmp_path):
    pytest.importorskip("distributed")
    from dask.distributed import LocalCluster

    configs = [{"seed": s, "n": 2000} for s in range(4)]
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True,
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        out = run_sweep(noise, configs, ResultStore("smoke", tmp_path / "d"), backend="dask",
                        scheduler=cluster.scheduler_address)
    ref = run_sweep(noise, configs, ResultStore("smoke", tmp_path / "l"), workers=1)
    assert [e["mean"] for e in out] == [e["mean"] for e in ref]
    assert all(e["threads"] == 1 for e in out)


def test_bad_worker_and_backend_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("HWLIB_WORKERS", "0")
    with pytest.raises(ParameterError, match="HWLIB_WORKERS"):
        default_workers()
    monkeypatch.setenv("HWLIB_WORKERS", "3")
    assert default_workers() == 3
    with pytest.raises(ParameterError, match="backend"):
        run_sweep(noise, [{"seed": 0}], ResultStore("smoke", tmp_path), backend="spark")


DETERMINISM = """
import json, sys
import hwlib
from hwlib.chapters import sddhr
S = hwlib.setup("smoke", mc_samples=20000)
S.store = hwlib.ResultStore("smoke", root=sys.argv[1])
table, _ = sddhr.moment_sweep(S, [1, 10], n_samples=20000, seed=0)
print(json.dumps(table[["mc_mean", "mc_var", "skew"]].values.tolist()))
"""


def test_same_seed_same_numbers_across_processes(tmp_path):
    runs = []
    for k in range(2):
        out = subprocess.run([sys.executable, "-c", DETERMINISM, str(tmp_path / f"s{k}")],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0] == runs[1]  # bit-identical on the CPU


KILLED = """
import sys
from hwlib.study.store import ResultStore
from hwlib.study.sweep import run_sweep
sys.path.insert(0, sys.argv[2])
from experiments import sleepy
configs = [{"pids": sys.argv[3], "seconds": 120, "i": i} for i in range(2)]
run_sweep(sleepy, configs, ResultStore("smoke", root=sys.argv[1]), workers=2)
"""


def test_killing_the_parent_leaves_no_live_worker(tmp_path):
    import os
    import signal
    import time

    pids = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path / "r"), str(TESTS),
                             str(pids)], start_new_session=True)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and len(list(pids.glob("*"))
                                             if pids.exists() else []) < 2:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, "the workers did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def alive(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            with open(f"/proc/{pid}/stat") as f:  # a zombie is not alive
                return f.read().split(")")[-1].split()[0] != "Z"

        deadline = time.time() + 10
        while time.time() < deadline and any(alive(p) for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if alive(p)], "orphaned workers still running"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_an_empty_sweep_is_refused(tmp_path):
    with pytest.raises(ParameterError, match="empty sweep"):
        run_sweep(noise, [], ResultStore("smoke", tmp_path))
