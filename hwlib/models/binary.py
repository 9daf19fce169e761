"""Binarized networks (Courbariaux et al. 2016): sign with a straight-through estimator, and
layers whose binary products run on MRAM XNOR arrays (S-DDHR).

The pieces compose with any model: :func:`binarize` for weights and activations,
:func:`clip_latent_weights` after each optimizer step, as in BinaryNet, and
:class:`MRAMLinear` / :class:`MRAMConv2d`, whose columns are read through a readout of
:mod:`hwlib.hardware.mram` (exact by default; a chip of :class:`~hwlib.hardware.mram.MRAMArray`
sets it while attached).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..hardware.mram import ExactReadout


class _SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} forward; the straight-through estimator ``1_{|x| <= 1}`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(x)
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, differentiated by the straight-through estimator."""
    return _SignSTE.apply(x)


class SignActivation(nn.Module):
    """The comparator: a binary activation v = sign(u) in {-1, +1} (straight-through)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return binarize(x)


class LastDimBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dimension, whatever the leading ones (e.g. instance, batch)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        shape = x.shape
        return super().forward(x.reshape(-1, shape[-1])).reshape(shape)


def clip_latent_weights(model: nn.Module, bound: float = 1.0) -> None:
    """Clip the real-valued latent weights of binarized layers to [-bound, bound]."""
    with torch.no_grad():
        for module in model.modules():
            if getattr(module, "binary_weights", False):
                module.weight.clamp_(-bound, bound)


# --- binarized layers on MRAM XNOR arrays, and the S-DDHR networks ----------------------------


class _ArrayLayer(nn.Module):
    """A binarized layer with real-valued latent weights, on an MRAM array when ``on_array``."""

    binary_weights = True

    def __init__(self, shape: tuple[int, ...], on_array: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-1, 1))
        self.on_array = on_array
        self.readout: ExactReadout = ExactReadout()
        self.array_index = 0


class MRAMLinear(_ArrayLayer):
    """A binarized linear layer; on the array when its inputs are binary.

    Args:
        in_features: M, the fan-in (rows of the array).
        out_features: N, the outputs (columns).
        on_array: False for a layer whose inputs are real (computed exactly).
    """

    def __init__(self, in_features: int, out_features: int, on_array: bool = True) -> None:
        super().__init__((out_features, in_features), on_array)

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w = binarize(self.weight)
        if not self.on_array:
            return F.linear(a, w)
        return self.readout.linear(self, a, w)


class MRAMConv2d(_ArrayLayer):
    """A binarized 2-D convolution; on the array (unrolled, M = C k k) when inputs are binary."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int = 1, on_array: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), on_array)
        self.padding = padding

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w = binarize(self.weight)
        if not self.on_array:
            return F.conv2d(a, w, padding=self.padding)
        return self.readout.conv(self, a, w)


class BinaryMLP(nn.Module):
    """A binarized MLP: a real-input first layer (exact), then array layers; BN + sign between.

    Args:
        in_features: input size (784 for MNIST).
        hidden: hidden widths.
        classes: outputs.
    """

    stackable = True  # evaluates stacked instances in one pass

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (256, 256),
                 classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [in_features, *hidden]
        for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [MRAMLinear(m, n, on_array=i > 0), LastDimBatchNorm(n), SignActivation()]
        layers += [MRAMLinear(widths[-1], classes), LastDimBatchNorm(classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x.flatten(1) * 2 - 1)


class VGGBinaryNet(nn.Module):
    """The VGG-style BNN of Courbariaux et al. for CIFAR-10: 6 conv + 3 FC layers.

    (2x128C3)-MP2-(2x256C3)-MP2-(2x512C3)-MP2-(2x1024FC)-10FC, each followed by batch norm
    and, but for the last, the sign. ``width`` scales the channel counts (1.0: the paper's).
    """

    stackable = False

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 image: int = 32) -> None:
        super().__init__()
        c = [max(1, int(round(x * width))) for x in (128, 256, 512)]
        f = max(1, int(round(1024 * width)))
        chans = [in_channels, c[0], c[0], c[1], c[1], c[2], c[2]]
        layers: list[nn.Module] = []
        for i in range(6):
            layers.append(MRAMConv2d(chans[i], chans[i + 1], on_array=i > 0))
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(chans[i + 1]), SignActivation()]
        layers.append(nn.Flatten())
        side = image // 8
        layers += [MRAMLinear(c[2] * side * side, f), LastDimBatchNorm(f), SignActivation(),
                   MRAMLinear(f, f), LastDimBatchNorm(f), SignActivation(),
                   MRAMLinear(f, classes), LastDimBatchNorm(classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x * 2 - 1)
