"""Curvature of the loss at a trained network: Hutchinson's estimator of the Hessian trace.

HA-SGD minimizes ``E[J(w + dw)] ~ J(w) + (sigma^2 / 2) tr(D H D)`` under the crossbar
perturbation (D: each entry's perturbation scale per unit sigma, :func:`range_weights`), so a
network it trains should sit at a flatter minimum: a smaller trace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_int
from ..hardware.crossbar import crossbar_layers, folding_scale


@dataclass
class TraceEstimate:
    """A Hutchinson estimate of a Hessian trace.

    Attributes:
        value: the mean of ``v^T H v`` over the probes.
        stderr: its standard error (sample standard deviation / sqrt(probes)).
        samples: ``v^T H v`` for each probe.
    """

    value: float
    stderr: float
    samples: np.ndarray


def range_weights(model: nn.Module, fold: str = "range") -> list[torch.Tensor]:
    """Per crossbar parameter, the scale of its perturbation per unit sigma.

    ``R`` (the dynamic range) for a weight, ``s R`` for a bias: with these as ``D``,
    ``tr(D H D) sigma^2 / 2`` is the second-order increase of the expected loss under the
    crossbar perturbation, a quantity that does not change when a ReLU network's layers are
    rescaled (``tr(H)`` does).
    """
    out = []
    for layer in crossbar_layers(model):
        s, rng = folding_scale(layer, fold)
        out.append(rng.detach().clone())
        if layer.bias is not None:
            out.append((s * rng).detach().clone())
    return out


def crossbar_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights and biases of every crossbar, in module order."""
    out = []
    for layer in crossbar_layers(model):
        out.append(layer.weight)
        if layer.bias is not None:
            out.append(layer.bias)
    return out


def hessian_trace(model: nn.Module, x: torch.Tensor, y: torch.Tensor, probes: int = 64,
                  seed: int = 0,
                  loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                  params: Sequence[torch.Tensor] | None = None,
                  weights: Sequence[torch.Tensor] | None = None,
                  vectors: Sequence[Sequence[torch.Tensor]] | None = None,
                  batch_size: int = 1000) -> TraceEstimate:
    """Hutchinson's estimator ``tr(H) = E_v[v^T H v]``, ``v`` with independent +-1 entries.

    ``H`` is the Hessian of the mean loss over ``(x, y)`` with respect to ``params`` (default:
    every crossbar's weights and biases), taken with the model in eval mode. Each ``v^T H v``
    is one Hessian-vector product by double back-propagation, accumulated over batches.

    Args:
        model: the network.
        x: the images the loss is averaged over.
        y: their labels.
        probes: number of random vectors.
        seed: seed of the probes.
        loss_fn: a mean loss.
        params: the parameters (default :func:`crossbar_parameters`).
        weights: one scale per parameter tensor (broadcast): estimates ``tr(D H D)`` with
            ``v = D e`` (see :func:`range_weights`); None: ``tr(H)``.
        vectors: explicit probe vectors (each a list of tensors shaped like ``params``)
            instead of random ones; ``probes`` is then ignored.
        batch_size: images per Hessian-vector product.

    Returns:
        The estimate with its standard error and the per-probe values.
    """
    params = list(params) if params is not None else crossbar_parameters(model)
    if vectors is None:
        check_int("probes", probes, 1)
    was = model.training
    model.eval()
    count = probes if vectors is None else len(vectors)
    values = np.zeros(count)

    def probe(k: int) -> list[torch.Tensor]:
        if vectors is not None:
            v = [t.to(p) for t, p in zip(vectors[k], params)]
        else:
            g = torch.Generator(device=params[0].device).manual_seed(int(seed) * 1_000_003 + k)
            v = [torch.randint(0, 2, p.shape, generator=g, device=p.device).to(p.dtype) * 2 - 1
                 for p in params]
        if weights is not None:
            v = [t * w for t, w in zip(v, weights)]
        return v

    try:
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            loss = loss_fn(model(xb), yb) * (len(yb) / len(y))
            grads = torch.autograd.grad(loss, params, create_graph=True)
            for k in range(count):
                v = probe(k)
                hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
                values[k] += float(sum((a * b).sum() for a, b in zip(v, hv)))
    finally:
        model.train(was)
    se = float(values.std(ddof=1) / math.sqrt(count)) if count > 1 else float("nan")
    return TraceEstimate(float(values.mean()), se, values)
