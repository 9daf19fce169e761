"""Evaluation shared by the chapters: the test accuracy of a classifier."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500
             ) -> float:
    """Test accuracy (a fraction) of ``model`` in evaluation mode, ``batch_size`` images per
    forward pass.

    Args:
        model: any classifier (logits in the last dimension).
        x: test images, on the model's device.
        y: their labels.
        batch_size: images per forward pass.
    """
    model.eval()
    hits = 0
    for i in range(0, len(y), batch_size):
        hits += int((model(x[i:i + batch_size]).argmax(-1) == y[i:i + batch_size]).sum())
    return hits / len(y)
