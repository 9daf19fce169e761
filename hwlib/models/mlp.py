"""Small networks whose every Linear and Conv2d layer is a crossbar: a ReLU MLP and a LeNet-style
CNN, each starting with a digital input normalization."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class Normalize(nn.Module):
    """Digital input normalization ``(x - mean) / std`` per channel (buffers, not crossbars)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (x - self.mean) / self.std


class MLP(nn.Module):
    """A ReLU multilayer perceptron with biases; every Linear layer is a crossbar.

    Args:
        in_shape: one image's shape (C, H, W).
        hidden: hidden widths.
        classes: outputs.
        norm: (mean, std) of the input normalization.
    """

    def __init__(self, in_shape=(1, 28, 28), hidden: Sequence[int] = (256, 256),
                 classes: int = 10, norm=((0.0,), (1.0,))) -> None:
        super().__init__()
        widths = [int(np.prod(in_shape)), *hidden]
        layers: list[nn.Module] = [Normalize(*norm), nn.Flatten()]
        for m, n in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(m, n), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)


class SmallCNN(nn.Module):
    """A LeNet-style network: two 5x5 convolutions (16, 32 channels) with max pooling, then
    a Linear layer; every convolution and Linear layer (with bias) is a crossbar."""

    def __init__(self, in_shape=(1, 28, 28), classes: int = 10, norm=((0.0,), (1.0,))) -> None:
        super().__init__()
        c, h, _ = in_shape
        side = ((h - 4) // 2 - 4) // 2
        self.layers = nn.Sequential(
            Normalize(*norm), nn.Conv2d(c, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * side * side, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x)
