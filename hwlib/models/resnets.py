"""The four CIFAR-10 architectures of the memory-faults chapter, with width multipliers.

PreActResNet18 {He et al. 2016b}, MobileNetV2 {Sandler et al. 2018}, SENet18 {Hu et al. 2017}
and ResNet18 {He et al. 2016a}, as in the widely used CIFAR variants (stride-1 stems for
32x32 inputs, the layouts of the ``pytorch-cifar`` collection by Kuang Liu), with two
additions the fault models need:

* **Stored activations are modules.** Every value written to activation memory is the output
  of a :class:`StoredReLU` (one module per use, so that each site can have its own fault map)
  or, in SENet18, of an :class:`Excitation` (the rescaled feature map ``x * sigmoid(.)`` of a
  squeeze-and-excitation unit, which must be stored whole before its global average is known).
  The counting rule of Table I is "the outputs of these modules": see
  :func:`hwlib.memory_faults.count_activations`.
* **Blocks are named.** Each network has four stages ``layer1`` .. ``layer4`` (PreActResNet18's
  "4 sequential blocks"; MobileNetV2's stages grouped by resolution: 32, 16, 8 and 4 pixels on
  CIFAR-10). The stem belongs to block 1 and the classifier head to block 4
  (:func:`block_of`).

``width`` multiplies every channel count (1: the paper's F; 1/sqrt(2) and 1/2 its reduced
networks); channel counts are rounded to the nearest integer, at least 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError

#: The architectures of Table I, in the paper's order.
ARCHITECTURES = ("preactresnet18", "mobilenetv2", "senet18", "resnet18")
#: Display names.
ARCH_LABELS = {"preactresnet18": "PreActResNet18", "mobilenetv2": "MobileNetV2",
               "senet18": "SENet18", "resnet18": "ResNet18"}


class StoredReLU(nn.ReLU):
    """A ReLU whose output is written to activation memory (non-negative: no sign-bit faults)."""

    signed = False


class Excitation(nn.Module):
    """The output ``x * w`` of a squeeze-and-excitation unit, written to activation memory.

    It follows a BatchNorm, not a ReLU, so it can be negative: its sign bit can fault.
    """

    signed = True

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x * w


def channels(c: int, width: float) -> int:
    """The rounding rule of the width multiplier: ``max(1, round(c * width))``."""
    return max(1, int(round(c * width)))


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


# --- ResNet18 --------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """ResNet's basic block: conv-BN-ReLU, conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = StoredReLU()
        self.conv2 = _conv3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))
        self.relu2 = StoredReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.shortcut(x)
        return self.relu2(out)


# --- PreActResNet18 and SENet18 -------------------------------------------------------------


class PreActBlock(nn.Module):
    """Pre-activation block: BN-ReLU-conv, BN-ReLU-conv, plus the shortcut (no ReLU after).

    With ``se=True`` it is SENet18's block: a squeeze-and-excitation unit (global average,
    1x1 conv to C/16, ReLU, 1x1 conv back, sigmoid) rescales the residual branch.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, se: bool = False) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = StoredReLU()
        self.conv1 = _conv3(cin, cout, stride)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = StoredReLU()
        self.conv2 = _conv3(cout, cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))
        self.se = se
        if se:
            mid = max(1, cout // 16)
            self.fc1 = nn.Conv2d(cout, mid, 1)
            self.relu_se = StoredReLU()
            self.fc2 = nn.Conv2d(mid, cout, 1)
            self.excitation = Excitation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu1(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        if self.se:
            w = F.adaptive_avg_pool2d(out, 1)
            w = torch.sigmoid(self.fc2(self.relu_se(self.fc1(w))))
            out = self.excitation(out, w)
        return out + shortcut


class _FourStageNet(nn.Module):
    """Stem, four stages of two blocks (64, 128, 256, 512 channels times ``width``), head."""

    def __init__(self, block: str, classes: int, width: float, in_channels: int) -> None:
        super().__init__()
        c = [channels(x, width) for x in (64, 128, 256, 512)]
        self.conv1 = _conv3(in_channels, c[0])
        self.block_kind = block
        if block != "preact":  # ResNet18 and SENet18 have a BN-ReLU stem; PreActResNet18 not
            self.bn1 = nn.BatchNorm2d(c[0])
            self.relu = StoredReLU()
        cin = c[0]
        for i, cout in enumerate(c):
            stride = 1 if i == 0 else 2
            if block == "basic":
                blocks = [BasicBlock(cin, cout, stride), BasicBlock(cout, cout)]
            else:
                se = block == "se"
                blocks = [PreActBlock(cin, cout, stride, se), PreActBlock(cout, cout, 1, se)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = cout
        self.linear = nn.Linear(c[3], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.conv1(x)
        if self.block_kind != "preact":
            out = self.relu(self.bn1(out))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class PreActResNet18(_FourStageNet):
    """PreActResNet18 for 32x32 inputs (11.2 M parameters at ``width=1``, 10 classes).

    Args:
        classes: outputs.
        width: channel multiplier (1: the paper's F).
        in_channels: 3 for CIFAR-10, 1 for (Fashion-)MNIST.
    """

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__("preact", classes, width, in_channels)


class SENet18(_FourStageNet):
    """SENet18: PreActResNet18 with a squeeze-and-excitation unit per block (11.3 M)."""

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__("se", classes, width, in_channels)


class ResNet18(_FourStageNet):
    """ResNet18 for 32x32 inputs (post-activation basic blocks, 11.2 M parameters)."""

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__("basic", classes, width, in_channels)


# --- MobileNetV2 --------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand-BN-ReLU, 3x3 depthwise-BN-ReLU, 1x1 project-BN.

    A residual connection (through a 1x1 conv-BN when the channel counts differ) is added
    when the stride is 1, as in the CIFAR variant.
    """

    def __init__(self, cin: int, cout: int, expansion: int, stride: int) -> None:
        super().__init__()
        mid = expansion * cin
        self.stride = stride
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = StoredReLU()
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.relu2 = StoredReLU()
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride == 1 and cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for 32x32 inputs (2.30 M parameters at ``width=1``, 10 classes).

    The CIFAR variant: stride-1 stem and second stage, so that the stages run at 32, 16, 8 and
    4 pixels; those four resolutions are the blocks ``layer1`` .. ``layer4``.
    """

    #: (expansion t, output channels c, repeats n, first stride s), as in Table 2 of the paper
    #: of MobileNetV2 with the strides of the CIFAR variant.
    CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        cin = channels(32, width)
        self.conv1 = _conv3(in_channels, cin)
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu = StoredReLU()
        stages: list[list[nn.Module]] = [[], [], [], []]
        stage = 0
        for t, c, n, s in self.CFG:
            cout = channels(c, width)
            for k in range(n):
                stride = s if k == 0 else 1
                stage += stride == 2
                stages[stage].append(InvertedResidual(cin, cout, t, stride))
                cin = cout
        for i, blocks in enumerate(stages):
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        last = channels(1280, width)
        self.conv2 = nn.Conv2d(cin, last, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(last)
        self.relu2 = StoredReLU()
        self.linear = nn.Linear(last, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.relu2(self.bn2(self.conv2(out)))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


_CLASSES = {"preactresnet18": PreActResNet18, "mobilenetv2": MobileNetV2, "senet18": SENet18,
            "resnet18": ResNet18}


def build(arch: str, classes: int = 10, width: float = 1.0, in_channels: int = 3) -> nn.Module:
    """One of the four architectures by name.

    Args:
        arch: ``preactresnet18``, ``mobilenetv2``, ``senet18`` or ``resnet18``.
        classes: outputs.
        width: channel multiplier (1: the paper's F).
        in_channels: input channels.

    Raises:
        ParameterError: an unknown name or a non-positive width.
    """
    if arch not in _CLASSES:
        raise ParameterError(f"arch={arch!r}: must be one of {', '.join(ARCHITECTURES)}")
    if not (isinstance(width, (int, float)) and math.isfinite(width) and width > 0):
        raise ParameterError(f"width={width!r}: must be a float > 0")
    return _CLASSES[arch](classes, float(width), in_channels)
