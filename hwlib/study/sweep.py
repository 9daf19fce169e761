"""Sweeps: many independent runs of one experiment, in parallel, through the store.

Configs whose results are stored and fresh are read back; the others run in worker
processes with one torch thread each (two threads in one process run small matrix products
2 to 5 times slower than one on a 2-core machine). The parent stores each result as soon as
it arrives, so an interrupted sweep resumes where it stopped.

Backends, chosen by configuration:

* ``loky`` (default): local worker processes through joblib; ``HWLIB_WORKERS`` of them,
  default the number of cores.
* ``dask``: a Dask cluster (``HWLIB_BACKEND=dask``, ``HWLIB_DASK_SCHEDULER=tcp://host:port``;
  without an address a local cluster is started).

Each run records the entries it read (:func:`hwlib.study.store.track_inputs`) and its torch
thread count in the provenance of its result. A local worker exits by itself within a second
when the process that started it dies (killed by a signal, say), so that no orphaned worker
keeps computing.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from ..errors import ParameterError
from .store import (Entry, Experiment, ResultStore, config_key, one_thread, track_inputs,
                    using)

BACKENDS = ("loky", "dask")


#: GPU memory one run is assumed to need when its sweep gives no estimate, GiB.
DEFAULT_RUN_GIB = 4.0
#: Share of a GPU's memory that concurrent runs may fill.
GPU_MEMORY_SHARE = 0.85


def default_workers(device: str = "cpu", run_gib: float | None = None) -> int:
    """How many runs a sweep starts at once: ``HWLIB_WORKERS`` if set; on a CPU, one per
    core; on a CUDA device, as many as fit in the GPU's memory (``run_gib`` each, default
    :data:`DEFAULT_RUN_GIB`; at most :data:`GPU_MEMORY_SHARE` of it), at most one per core.

    One policy for every chapter: a run that leaves the GPU idle (small networks, per-step
    chip draws, host work) shares it with others; a run that fills it runs alone.
    """
    value = os.environ.get("HWLIB_WORKERS")
    if value is not None:
        if not value.isdigit() or int(value) < 1:
            raise ParameterError(f"HWLIB_WORKERS={value!r}: must be a whole number >= 1")
        return int(value)
    cores = os.cpu_count() or 1
    if not str(device).startswith("cuda"):
        return cores
    import torch

    gib = float(run_gib) if run_gib else DEFAULT_RUN_GIB
    if gib <= 0:
        raise ParameterError(f"run_gib={run_gib!r}: must be a memory estimate > 0 (GiB)")
    total = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2 ** 30
    return max(1, min(cores, int(GPU_MEMORY_SHARE * total // gib)))


def default_backend() -> str:
    """``HWLIB_BACKEND`` if set, else ``loky``."""
    value = os.environ.get("HWLIB_BACKEND", "loky")
    if value not in BACKENDS:
        raise ParameterError(f"HWLIB_BACKEND={value!r}: must be one of {', '.join(BACKENDS)}")
    return value


_WATCHDOG: list[threading.Thread] = []


def _exit_with_parent(interval_s: float = 0.5) -> None:
    """In a worker process: a daemon thread that ends the process when its parent dies (the
    worker is then re-parented, so its parent's pid changes)."""
    if _WATCHDOG:
        return
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    thread = threading.Thread(target=watch, name="hwlib-exit-with-parent", daemon=True)
    thread.start()
    _WATCHDOG.append(thread)


def worker_init() -> int:
    """What every computation sets first: one torch thread and, in a worker process, exit
    with the parent. Returns the thread count."""
    if multiprocessing.parent_process() is not None:
        _exit_with_parent()
    return one_thread()


def _run_one(exp: Experiment, index: int, config: dict[str, Any], spec: dict[str, Any]
             ) -> tuple[int, dict[str, Any], float, list[dict[str, Any]], int]:
    threads = worker_init()
    start = time.perf_counter()
    with track_inputs() as inputs, using(ResultStore.from_spec(spec)):
        if multiprocessing.parent_process() is not None:  # a worker: only the parent draws
            with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
                result = exp(config)
        else:
            result = exp(config)
    return index, result, time.perf_counter() - start, inputs, threads


def _loky(exp: Experiment, todo: list[tuple[int, dict]], workers: int,
          spec: dict[str, Any]) -> Iterable:
    from joblib import Parallel, delayed, parallel_config

    if workers == 1:  # in-process: no pool to start
        for i, cfg in todo:
            yield _run_one(exp, i, cfg, spec)
        return
    with parallel_config(backend="loky", inner_max_num_threads=1):
        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(
            delayed(_run_one)(exp, i, cfg, spec) for i, cfg in todo
        )


def _dask(exp: Experiment, todo: list[tuple[int, dict]], workers: int,
          scheduler: str | None, spec: dict[str, Any]) -> Iterable:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_run_one, exp, i, cfg, spec, pure=False) for i, cfg in todo]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(exp: Experiment, configs: Sequence[Mapping[str, Any]], store: ResultStore,
              workers: int | None = None, backend: str | None = None,
              scheduler: str | None = None, desc: str | None = None,
              device: str = "cpu", run_gib: float | None = None) -> list[Entry]:
    """Run ``exp`` on every config, reusing fresh stored results.

    Args:
        exp: the experiment (a module-level function registered with ``@experiment``).
        configs: fully resolved configs, one per run (each should carry its ``seed``).
        store: where results are read from and written to.
        workers: parallel workers; default :func:`default_workers` for ``device`` and
            ``run_gib``.
        backend: ``"loky"`` or ``"dask"``; default :func:`default_backend`.
        scheduler: a Dask scheduler address; default ``HWLIB_DASK_SCHEDULER``.
        desc: the progress bar's label.
        device: where the runs compute (recorded in each entry's provenance).
        run_gib: GPU memory one run needs, GiB (sizes the runs sharing a GPU).

    Returns:
        One entry per config, in the order of ``configs`` (a config given twice is run once
        and both places get the same entry).
    """
    if not configs:
        raise ParameterError(f"{exp.name}: no configs to run (an empty sweep)")
    workers = default_workers(device, run_gib) if workers is None else workers
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise ParameterError(f"backend={backend!r}: must be one of {', '.join(BACKENDS)}")
    scheduler = scheduler or os.environ.get("HWLIB_DASK_SCHEDULER")
    configs = [dict(c) for c in configs]
    # a config asked for twice (the same point in two arms of a figure) is run once: two
    # workers writing one entry would leave the first reader holding a superseded checksum
    keys = [config_key(exp.name, c) for c in configs]
    found: dict[str, Entry | None] = {}
    todo = []
    for i, (key, c) in enumerate(zip(keys, configs)):
        if key not in found:
            found[key] = store.load(exp, c)
            if found[key] is None:
                todo.append((i, c))
    if todo:
        workers = max(1, min(workers, len(todo)))
        runs = (_dask(exp, todo, workers, scheduler, store.spec()) if backend == "dask"
                else _loky(exp, todo, workers, store.spec()))
        bar = tqdm(total=len(found), initial=len(found) - len(todo),
                   desc=desc or exp.name, leave=False)
        for i, result, wall, inputs, threads in runs:
            found[keys[i]] = store.save(exp, configs[i], result, wall, device, inputs, threads)
            bar.update()
        bar.close()
    return [found[k] for k in keys]  # type: ignore[misc]
