"""Evaluation on chips: the test accuracy of a classifier, on one chip or on many.

:func:`accuracy_on_chips` serves every family: one accuracy per chip seed, the same chips for
every network tested on the same hardware model. A hardware model without chip-to-chip
variation is evaluated once; MRAM arrays evaluate all chips of a ``stackable`` model in one
pass per batch.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..hardware.base import Hardware, attach


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500,
             precision: str = "fp32") -> float:
    """Test accuracy (a fraction) of ``model`` in evaluation mode, ``batch_size`` images per
    forward pass.

    Args:
        model: any classifier (logits in the last dimension).
        x: test images, on the model's device.
        y: their labels.
        batch_size: images per forward pass.
        precision: the forward passes' arithmetic on CUDA
            (:data:`hwlib.methods.training.PRECISIONS`).
    """
    from .training import arithmetic

    model.eval()
    hits = torch.zeros((), dtype=torch.int64, device=x.device)
    with arithmetic(x.device, precision):
        for i in range(0, len(y), batch_size):
            hits += (model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum()
    return int(hits) / len(y)  # one host synchronization


@torch.no_grad()
def _stacked_accuracy(model: nn.Module, hardware: Hardware, x: torch.Tensor, y: torch.Tensor,
                      seeds: Sequence[int], batch_size: int, precision: str) -> np.ndarray:
    from .training import arithmetic

    model.eval()
    with attach(model, hardware.stacked(seeds)), arithmetic(x.device, precision):
        hits = 0
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size])
            hits = hits + (logits.argmax(-1) == y[i:i + batch_size]).sum(-1)
    return np.atleast_1d(torch.as_tensor(hits).cpu().numpy().astype(float)) / len(y)


def accuracy_on_chips(model: nn.Module, hardware: Hardware, x: torch.Tensor, y: torch.Tensor,
                      seeds: Sequence[int], batch_size: int = 500, precision: str = "fp32"
                      ) -> np.ndarray:
    """Test accuracy (fractions) on the chip of each seed.

    Chips are drawn on the model's device and cached by seed on the hardware model, so that
    testing several networks on the same chips draws each chip once.

    Args:
        model: the trained network.
        hardware: the hardware model the chips are drawn from.
        x: test images, on the model's device.
        y: their labels.
        seeds: one chip per seed.
        batch_size: images per forward pass.
        precision: the forward passes' arithmetic on CUDA (device models stay float32).
    """
    seeds = [int(s) for s in seeds]
    if hardware.deterministic:
        with attach(model, hardware.expected()):
            return np.full(len(seeds), accuracy(model, x, y, batch_size, precision))
    if getattr(model, "stackable", False) and hasattr(hardware, "stacked"):
        return _stacked_accuracy(model, hardware, x, y, seeds, batch_size, precision)
    out = []
    for s in seeds:
        with attach(model, hardware, seed=s):
            out.append(accuracy(model, x, y, batch_size, precision))
    return np.array(out)
