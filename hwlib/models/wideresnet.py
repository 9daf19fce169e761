"""WideResNet (Zagoruyko & Komodakis 2016): the HA-SGD poster's WideResNet-28-10."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError, check_int
from .mlp import Normalize


class _WideBlock(nn.Module):
    """Pre-activation basic block of a WideResNet: BN-ReLU-conv3x3-BN-ReLU-conv3x3 + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
                         if cin != cout or stride != 1 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        o = F.relu(self.bn1(x))
        short = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = F.relu(self.bn2(o))
        if self.dropout > 0:
            o = F.dropout(o, self.dropout, self.training)
        return self.conv2(o) + short


class WideResNet(nn.Module):
    """WideResNet-depth-width (Zagoruyko & Komodakis 2016); WideResNet-28-10 is the poster's.

    ``(depth - 4) / 6`` pre-activation blocks in each of three groups of ``16 k``, ``32 k`` and
    ``64 k`` channels (``k = width``), then BN-ReLU, global average pooling and a Linear layer.
    Convolutions have no bias (batch normalization follows); all of them and the final Linear
    layer are crossbars.

    Args:
        depth: 6 n + 4 (28 for the poster's network).
        width: the widening factor k (10).
        classes: outputs (100 for CIFAR-100).
        dropout: dropout rate between the convolutions of a block.
        in_channels: image channels.
        norm: (mean, std) of the input normalization.
    """

    def __init__(self, depth: int = 28, width: int = 10, classes: int = 100,
                 dropout: float = 0.0, in_channels: int = 3,
                 norm=((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ParameterError(f"depth={depth!r}: must be 6 n + 4 >= 10 (28 for WRN-28)")
        check_int("width", width, 1)
        n = (depth - 4) // 6
        chans = [16, 16 * width, 32 * width, 64 * width]
        self.norm = Normalize(*norm)
        self.conv = nn.Conv2d(in_channels, chans[0], 3, 1, 1, bias=False)
        blocks = []
        for g in range(3):
            for i in range(n):
                blocks.append(_WideBlock(chans[g] if i == 0 else chans[g + 1], chans[g + 1],
                                         (1 if g == 0 else 2) if i == 0 else 1, dropout))
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(chans[3])
        self.fc = nn.Linear(chans[3], classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        o = self.blocks(self.conv(self.norm(x)))
        o = F.relu(self.bn(o))
        return self.fc(F.adaptive_avg_pool2d(o, 1).flatten(1))
