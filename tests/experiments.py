"""Small importable experiments for the store and sweep tests (workers import them)."""

import os
import time
from pathlib import Path

import numpy as np
import torch

from hwlib.study.store import experiment


@experiment("test.noise")
def noise(config):
    """Seeded torch noise: the same config gives the same numbers."""
    gen = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(config.get("n", 1000), generator=gen, dtype=torch.float64)
    return {"mean": float(x.mean()), "sample": x[:5].numpy(), "threads": torch.get_num_threads()}


@experiment("test.counted")
def counted(config):
    """Leaves a marker file per call (to count computations); fails while a FAIL file exists."""
    marks = Path(config["marks"])
    marks.mkdir(parents=True, exist_ok=True)
    if config["i"] == 3 and (marks.parent / "FAIL").exists():
        raise RuntimeError("interrupted")
    (marks / f"{config['i']}-{os.getpid()}-{time.time_ns()}").touch()
    return {"i": config["i"], "square": np.array([config["i"] ** 2])}


@experiment("test.declared", outputs=("mean",))
def declared(config):
    """An experiment that declares its outputs (the store checks them when reading back)."""
    return {"mean": float(config["seed"]) / 2}


@experiment("test.derived", outputs=("twice",))
def derived(config):
    """Reads another stored entry (``test.noise``) through the run's store: an input."""
    from hwlib.study.store import current_store

    base = current_store(config["profile"]).get_or_compute(noise, {"seed": config["seed"]})
    return {"twice": 2 * base["mean"] + config.get("shift", 0.0)}


@experiment("test.sleepy")
def sleepy(config):
    """Writes its process id to a file, then sleeps (to be killed mid-sweep)."""
    Path(config["pids"]).mkdir(parents=True, exist_ok=True)
    (Path(config["pids"]) / str(os.getpid())).touch()
    time.sleep(config["seconds"])
    return {"pid": os.getpid()}
