"""hwlib: training neural networks for stochastic hardware.

Device, fault and noise models, training regimes and the study's plumbing (profiles,
results store, parallel sweeps, scorecard). Modules, one per concern:

* :mod:`hwlib.mram`: MRAM bit cells for in-memory computing (S-DDHR).
* :mod:`hwlib.data`: datasets through torchvision.
* :mod:`hwlib.study`: the study's plumbing: profiles, parameters, the results store and
  sweeps, the notebook pipeline, the scorecard and its verdict rules.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DatasetMissingError, HwlibError, ParameterError, StoreError
from .study.session import Session, setup
from .study.store import Entry, Experiment, ResultStore, experiment
from .study.sweep import run_sweep

__all__ = [
    "__version__", "DatasetMissingError", "HwlibError", "ParameterError", "StoreError",
    "Session", "setup", "Entry", "Experiment", "ResultStore", "experiment", "run_sweep",
]
