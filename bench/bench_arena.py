"""The arena's benchmark: each method's training step on each device, against a clean step of
the same network (targets from the arena issue).

* Sampling (a fresh chip per step, which is HA-SGD with L = 1) and parametric sampling: at
  most 1.3x, the arena issue's target. (Until 2026-12-05 sampling was held here to 1.2x, the
  hardware-interface issue's target for HA-SGD with L = 1; that target now has its own rows,
  on each family at its preset's operating point, in :mod:`bench.bench_hardware`.)
* Chip-specific training (DDHR, Fixed: one chip for the whole run): at most 1.2x.
* HA-SGD with L = 4 is shown against four clean steps (its expected cost), target 1.3x.
* Erasure training (SRAM): at most 1.3x.

The networks are the arena's: the 784-256-256-10 ReLU MLP and, for MRAM arrays, its binarized
twin, at the arena's batch size, on synthetic Fashion-MNIST-shaped images; each device at a
severity in the middle of its calibrated range (the 10-point loss, read from the book's stored
calibration).
"""

from __future__ import annotations

import numpy as np
import torch

from hwlib.chapters import arena
from hwlib.hardware.base import Ideal
from hwlib.methods.training import Standard
from hwlib.models.binary import BinaryMLP
from hwlib.models.mlp import MLP
from hwlib.study.store import ResultStore, entry_meta

from .common import Ratio, interleaved, training_steps

#: Each device's severity when the book's calibration is not stored (a checkout without
#: results): near its calibrated middle level. With the calibration stored, the bench reads it.
SEVERITIES = {"mram": 3.0, "sram": 0.3, "crossbar": 0.23, "crossbar_adc4": 0.18,
              "memristive": 14.4}
#: Step targets of each method (HA-SGD L = 4 against four clean steps).
TARGETS = {"ddhr": 1.2, "fixed": 1.2, "sampling": 1.3, "parametric": 1.3, "erasure": 1.3,
           "hasgd4": 1.3}
BATCH = 1024


def middle_severities(store: ResultStore | None = None) -> dict[str, float]:
    """Each device's middle severity (the 10-point loss) from the book's stored calibration
    (the ``arena.calibrate`` entries of ``store``, default the book's, read back through the
    store: checked and fresh), else :data:`SEVERITIES`."""
    store = ResultStore("book") if store is None else store
    out = dict(SEVERITIES)
    for path in sorted(store.folder(arena.calibrate.name).glob("*")):
        meta = entry_meta(path)
        device = None if meta is None else meta["config"].get("device")
        entry = store.load(arena.calibrate, meta["config"]) if device in out else None
        if entry is not None:
            middle = float(entry["severities"][1])
            if np.isfinite(middle):
                out[device] = middle
    return out


def _steps(device: str, method: str, n_steps: int, quick: bool, severity: float):
    dev = arena.DEVICES[device]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    hidden = (64, 64) if quick else (256, 256)

    def net():
        torch.manual_seed(0)
        return BinaryMLP(784, hidden, 10) if dev.binary else MLP((1, 28, 28), hidden, 10)

    ref = net().eval()
    hw = dev.hardware(severity, ref, x[:256])
    made = arena.METHODS[method].make(device, hw, 1)
    if made is None:
        return None
    return (training_steps(net, Ideal(), Standard(), x, y, n_steps, dev.binary),
            training_steps(net, made[1], made[0], x, y, n_steps, dev.binary))


def run(quick: bool = False) -> list[Ratio]:
    """Every (device, method) step ratio of the arena; ``quick`` uses small sizes."""
    rows = []
    n_steps = 2 if quick else 6
    devices = ["sram", "mram"] if quick else list(arena.DEVICES)
    severity = middle_severities()
    for device in devices:
        for method, target in TARGETS.items():
            pair = _steps(device, method, n_steps, quick, severity[device])
            if pair is None:
                continue
            clean, cand = pair
            b, c = interleaved(clean, cand, repeats=1 if quick else 3)
            scale = arena.METHODS[method].cost
            rows.append(Ratio("arena", f"{arena.METHODS[method].label} step, {device} at "
                              f"{severity[device]:.3g}",
                              "clean step" if scale == 1 else f"{scale} clean steps",
                              b * scale, c, target))
    return rows
