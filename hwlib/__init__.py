"""hwlib: training neural networks for stochastic hardware.

One hardware interface for every device family (:mod:`hwlib.hardware`): a hardware model is a
distribution over chips; :func:`attach` puts any ``nn.Module`` on a chip; the training methods
(:mod:`hwlib.methods`) compose with any model and any family; :mod:`hwlib.presets` holds the
papers' hardware. The study's plumbing (profiles, results store, sweeps, the notebook pipeline,
the scorecard) is :mod:`hwlib.study`; each chapter's experiments are :mod:`hwlib.chapters`.

Subpackages, in the direction imports run:

* :mod:`hwlib.study`: plumbing (errors and data beside it);
* :mod:`hwlib.hardware`: MRAM arrays, SRAM faults, analog crossbars, memristive synapses,
  bit streams;
* :mod:`hwlib.models`: binarized networks, MLPs, ResNets, WideResNet, checkpoints;
* :mod:`hwlib.methods`: the training loop and methods, evaluation on chips, curvature,
  bit-stream training;
* :mod:`hwlib.chapters`: one module per paper.
"""

from __future__ import annotations

from .study.provenance import hwlib_version as _version

__version__ = _version()

from . import presets
from .errors import DatasetMissingError, HwlibError, ParameterError, StoreError
from .hardware.base import Chip, Hardware, Ideal, attach
from .hardware.crossbar import ADC, AnalogCrossbar, GaussianPerturbation
from .hardware.memristor import MemristivePairs, MemristorConfig
from .hardware.mram import MRAMArray, MRAMCell
from .hardware.sram import FaultConfig, SRAMFaults
from .methods.evaluation import accuracy, accuracy_on_chips
from .methods.training import HASGD, FreshChip, OneChip, Parametric, Standard, Step, fit
from .study.session import Session, setup
from .study.store import Entry, Experiment, ResultStore, experiment
from .study.sweep import run_sweep

__all__ = [
    "__version__", "presets", "DatasetMissingError", "HwlibError", "ParameterError",
    "StoreError", "Chip", "Hardware", "Ideal", "attach", "ADC", "AnalogCrossbar",
    "GaussianPerturbation", "MemristivePairs", "MemristorConfig", "MRAMArray", "MRAMCell",
    "FaultConfig", "SRAMFaults", "accuracy", "accuracy_on_chips", "HASGD", "FreshChip",
    "OneChip", "Parametric", "Standard", "Step", "fit", "Session", "setup", "Entry",
    "Experiment", "ResultStore", "experiment", "run_sweep",
]
