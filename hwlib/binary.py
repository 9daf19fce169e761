"""Binarized-network pieces (Courbariaux et al. 2016): sign with a straight-through estimator.

These compose with any model: :func:`binarize` for weights and activations, and
:func:`clip_latent_weights` after each optimizer step, as in BinaryNet.
"""

from __future__ import annotations

import torch
from torch import nn


class _SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} forward; the straight-through estimator 1_{|x| <= 1} backward."""

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
