"""Small importable experiments for the store and sweep tests (workers import them)."""

import os
import time
from pathlib import Path

import numpy as np
import torch

from hwlib.store import experiment


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
