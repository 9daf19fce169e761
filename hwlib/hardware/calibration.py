"""Calibrating a device model on a network's clean outputs (ADC ranges, fixed activation
scales): one pass of the clean network in evaluation mode over calibration images, each chosen
module's output recorded."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn


@torch.no_grad()
def observe_outputs(model: nn.Module, modules: Sequence[nn.Module], x: torch.Tensor,
                    record: Callable[[int, torch.Tensor], None], batch_size: int = 500) -> None:
    """Run ``model`` in evaluation mode over ``x`` (``batch_size`` images per pass) and call
    ``record(k, output)`` with the output of ``modules[k]`` at every pass; the model's mode and
    hooks are restored afterwards."""
    handles = [m.register_forward_hook(lambda _m, _i, out, k=k: record(k, out))
               for k, m in enumerate(modules)]
    was = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was)
