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
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from typing import Any, Iterable, Mapping, Sequence

from tqdm.auto import tqdm

from .errors import ParameterError
from .store import Entry, Experiment, ResultStore

BACKENDS = ("loky", "dask")


def default_workers() -> int:
    """``HWLIB_WORKERS`` if set, else the number of cores."""
    value = os.environ.get("HWLIB_WORKERS")
    if value is None:
        return os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise ParameterError(f"HWLIB_WORKERS={value!r}: must be a whole number >= 1")
    return int(value)


def default_backend() -> str:
    """``HWLIB_BACKEND`` if set, else ``loky``."""
    value = os.environ.get("HWLIB_BACKEND", "loky")
    if value not in BACKENDS:
        raise ParameterError(f"HWLIB_BACKEND={value!r}: must be one of {', '.join(BACKENDS)}")
    return value


def one_thread() -> None:
    """Limit this process to one torch (and BLAS) thread."""
    import torch

    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _run_one(exp: Experiment, index: int, config: dict[str, Any]
             ) -> tuple[int, dict[str, Any], float]:
    one_thread()
    start = time.perf_counter()
    if multiprocessing.parent_process() is not None:  # a worker: only the parent draws bars
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
            result = exp(config)
    else:
        result = exp(config)
    return index, result, time.perf_counter() - start


def _loky(exp: Experiment, todo: list[tuple[int, dict]], workers: int) -> Iterable:
    from joblib import Parallel, delayed, parallel_config

    if workers == 1:  # in-process: no pool to start
        for i, cfg in todo:
            yield _run_one(exp, i, cfg)
        return
    with parallel_config(backend="loky", inner_max_num_threads=1):
        yield from Parallel(n_jobs=workers, return_as="generator_unordered")(
            delayed(_run_one)(exp, i, cfg) for i, cfg in todo
        )


def _dask(exp: Experiment, todo: list[tuple[int, dict]], workers: int,
          scheduler: str | None) -> Iterable:
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = [client.submit(_run_one, exp, i, cfg, pure=False) for i, cfg in todo]
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_sweep(exp: Experiment, configs: Sequence[Mapping[str, Any]], store: ResultStore,
              workers: int | None = None, backend: str | None = None,
              scheduler: str | None = None, desc: str | None = None,
              device: str = "cpu") -> list[Entry]:
    """Run ``exp`` on every config, reusing fresh stored results.

    Args:
        exp: the experiment (a module-level function registered with ``@experiment``).
        configs: fully resolved configs, one per run (each should carry its ``seed``).
        store: where results are read from and written to.
        workers: parallel workers; default :func:`default_workers`.
        backend: ``"loky"`` or ``"dask"``; default :func:`default_backend`.
        scheduler: a Dask scheduler address; default ``HWLIB_DASK_SCHEDULER``.
        desc: the progress bar's label.
        device: recorded in each entry's provenance.

    Returns:
        One entry per config, in the order of ``configs``.
    """
    workers = default_workers() if workers is None else workers
    backend = default_backend() if backend is None else backend
    if backend not in BACKENDS:
        raise ParameterError(f"backend={backend!r}: must be one of {', '.join(BACKENDS)}")
    scheduler = scheduler or os.environ.get("HWLIB_DASK_SCHEDULER")
    configs = [dict(c) for c in configs]
    entries: list[Entry | None] = [store.load(exp, c) for c in configs]
    todo = [(i, c) for i, c in enumerate(configs) if entries[i] is None]
    if todo:
        workers = max(1, min(workers, len(todo)))
        runs = (_dask(exp, todo, workers, scheduler) if backend == "dask"
                else _loky(exp, todo, workers))
        bar = tqdm(total=len(configs), initial=len(configs) - len(todo),
                   desc=desc or exp.name, leave=False)
        for i, result, wall in runs:
            entries[i] = store.save(exp, configs[i], result, wall, device)
            bar.update()
        bar.close()
    return entries  # type: ignore[return-value]
