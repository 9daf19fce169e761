"""hwlib: training neural networks for stochastic hardware.

Device, fault and noise models, training regimes and the study's plumbing (profiles,
results store, parallel sweeps, scorecard). Modules, one per concern:

* :mod:`hwlib.mram`: MRAM bit cells for in-memory computing (S-DDHR).
* :mod:`hwlib.store`, :mod:`hwlib.sweep`: the results store and parallel sweeps.
* :mod:`hwlib.params`, :mod:`hwlib.profiles`: notebook parameters and the three profiles.
* :mod:`hwlib.data`: datasets through torchvision.
* :mod:`hwlib.scorecard`: the papers' claims and our measurements.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import DatasetMissingError, HwlibError, ParameterError, StoreError
from .notebook import Session, setup
from .store import Entry, Experiment, ResultStore, experiment
from .sweep import run_sweep

__all__ = [
    "__version__", "DatasetMissingError", "HwlibError", "ParameterError", "StoreError",
    "Session", "setup", "Entry", "Experiment", "ResultStore", "experiment", "run_sweep",
]
