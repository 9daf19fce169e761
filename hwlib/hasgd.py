"""HA-SGD: Hessian-aware stochastic gradient descent for analog compute-in-memory.

Algorithm 1 of the HA-SGD poster: for each mini-batch, draw ``L`` perturbations
``dw^(l) ~ q(dw)`` of every crossbar, compute ``grad_w J(w + dw^(l); x)`` by forward-backward
propagation, average the ``L`` gradients and let any gradient-based optimizer update the
unperturbed weights ``w``. With ``q = p`` this minimizes the expected loss under the hardware's
perturbation, ``E_p[J(w + dw)] ~ J(w) + (sigma^2 / 2) tr(H)`` for small isotropic
perturbations: a curvature-aware objective that prefers flat minima. ``L = 1`` is plain noise
injection.

Pieces:

* :class:`HASGD`: the training step, a drop-in for any model and any torch optimizer.
* :func:`train`: epochs of HA-SGD steps over in-memory tensors.
* :func:`hessian_trace`: Hutchinson's estimator of ``tr(H)`` (and of the range-weighted
  trace that enters the expected loss of the crossbar model).
* :class:`WellLoss`: a low-dimensional loss with a sharp and a flat minimum, for intuition.
* Networks: :class:`MLP`, :class:`SmallCNN` and :class:`WideResNet` (WideResNet-28-10 is the
  poster's), each starting with a digital input normalization.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .analog import Crossbars, GaussianPerturbation, check_fold, crossbar_layers, folding_scale
from .errors import ParameterError, check_int


# --- Algorithm 1 ----------------------------------------------------------------------------


class HASGD:
    """Algorithm 1 (HA-SGD) as a drop-in training step for any model and optimizer.

    Each :meth:`step` draws ``samples`` (L) perturbations of every crossbar of ``model`` from
    ``noise`` (q), computes the gradient of the loss at each perturbed point, averages them into
    the parameters' ``.grad`` and calls ``optimizer.step()`` on the unperturbed weights.
    Layers that are not crossbars (normalization, ...) are digital: they are not perturbed but
    are trained with the averaged gradient like the rest.

    Args:
        model: any torch model (its Linear and Conv2d layers are crossbars).
        optimizer: any torch optimizer over the model's parameters.
        noise: the training perturbation distribution q.
        samples: L, perturbation samples per mini-batch (>= 1); 1 is plain noise injection.
        fold: folding rule of the bias column, ``"range"`` or ``"unit"``.
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
        seed: seed of the perturbation draws (a generator on the model's device).

    Raises:
        ParameterError: ``samples`` not an int >= 1, or a bad fold.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 noise: GaussianPerturbation = GaussianPerturbation(), samples: int = 1,
                 fold: str = "range",
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 seed: int = 0) -> None:
        if not isinstance(noise, GaussianPerturbation):
            raise ParameterError(f"noise={noise!r}: must be a GaussianPerturbation")
        self.samples = check_int("samples", samples, 1)
        self.model, self.optimizer, self.noise, self.loss_fn = model, optimizer, noise, loss_fn
        self.crossbars = Crossbars(model, check_fold(fold))
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(int(seed))

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Put ``g^ = (1/L) sum_l grad_w J(w + dw^(l); x)`` into the parameters' ``.grad``.

        Returns:
            The loss averaged over the L samples.
        """
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.samples):
            if not self.noise.is_zero:
                self.crossbars.perturb(self.noise, self.generator)
            try:
                loss = self.loss_fn(self.model(x), y)
                (loss / self.samples).backward()
            finally:
                self.crossbars.restore()
            total += float(loss.detach())
        return total / self.samples

    def step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One iteration of Algorithm 1 on the mini-batch ``(x, y)``; returns the mean loss."""
        loss = self.gradients(x, y)
        self.optimizer.step()
        return loss


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float = 0.0
                   ) -> torch.optim.Optimizer:
    """``"adam"`` (Adam) or ``"sgd"`` (SGD, Nesterov momentum 0.9, the WideResNet recipe)."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True,
                               weight_decay=weight_decay)
    raise ParameterError(f"optimizer={name!r}: must be one of adam, sgd")


def train(step: HASGD, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
          seed: int = 0, scheduler=None, augment: Callable | None = None,
          on_epoch: Callable[[int], None] | None = None, desc: str = "HA-SGD"
          ) -> tuple[list[float], list[float]]:
    """Train ``step.model`` for ``epochs`` passes over ``(x, y)`` with HA-SGD steps.

    Args:
        step: the HA-SGD step (model, optimizer, q, L).
        x: training images on the model's device.
        y: labels.
        epochs: passes over the data.
        batch_size: mini-batch size.
        seed: shuffling (and augmentation) seed.
        scheduler: a learning-rate scheduler stepped after every optimizer step, or None.
        augment: ``augment(batch, generator) -> batch`` (random crops and flips), or None.
        on_epoch: called as ``on_epoch(epoch)`` after each epoch (not timed).
        desc: the progress bar's label.

    Returns:
        ``(epoch_times_s, epoch_losses)``: wall time of each epoch's steps and mean loss.
    """
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    gen = torch.Generator().manual_seed(int(seed))
    aug_gen = torch.Generator().manual_seed(int(seed) + 1)  # CPU: same crops on any device
    times, losses = [], []
    for epoch in tqdm(range(epochs), desc=desc, leave=False):
        step.model.train()
        start = time.perf_counter()
        perm = torch.randperm(len(y), generator=gen).to(y.device)
        total, count = 0.0, 0
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx] if augment is None else augment(x[idx], aug_gen)
            total += step.step(xb, y[idx]) * len(idx)
            count += len(idx)
            if scheduler is not None:
                scheduler.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - start)
        losses.append(total / count)
        if on_epoch is not None:
            on_epoch(epoch)
    return times, losses


# --- Hutchinson's estimator of the Hessian trace ---------------------------------------------


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


# --- a low-dimensional loss with a sharp and a flat minimum ---------------------------------


class WellLoss:
    """``J(w) = -sum_k a_k exp(-|w - m_k|^2 / (2 s_k^2))``: isotropic Gaussian wells in d dims.

    Under an isotropic Gaussian perturbation ``dw ~ N(0, sigma^2 I)`` the expected loss has
    the closed form ``E[J(w + dw)] = -sum_k a_k (s_k^2 / (s_k^2 + sigma^2))^(d/2)
    exp(-|w - m_k|^2 / (2 (s_k^2 + sigma^2)))``: each well widens and gets shallower, the
    sharp one (small ``s_k``) much more than the flat one.

    Args:
        centers: the wells' centers m_k, shape (K, d).
        widths: their widths s_k (K,).
        depths: their depths a_k (K,).
    """

    def __init__(self, centers, widths, depths) -> None:
        self.centers = torch.as_tensor(np.asarray(centers, dtype=float))
        self.widths = torch.as_tensor(np.asarray(widths, dtype=float))
        self.depths = torch.as_tensor(np.asarray(depths, dtype=float))
        if self.centers.dim() != 2 or not (len(self.centers) == len(self.widths)
                                           == len(self.depths)):
            raise ParameterError("WellLoss: centers (K, d), widths (K,) and depths (K,)")
        if (self.widths <= 0).any():
            raise ParameterError(f"widths={self.widths.tolist()}: must all be > 0")

    @property
    def dim(self) -> int:
        """The dimension d."""
        return self.centers.shape[1]

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """``J`` at points ``w`` of shape (..., d)."""
        return self.smoothed(w, 0.0)

    def smoothed(self, w: torch.Tensor, sigma: float) -> torch.Tensor:
        """``E[J(w + dw)]``, ``dw ~ N(0, sigma^2 I)``, in closed form, at points (..., d)."""
        w = torch.as_tensor(w, dtype=torch.float64)
        var = self.widths ** 2 + sigma ** 2
        r2 = ((w[..., None, :] - self.centers) ** 2).sum(-1)
        factor = (self.widths ** 2 / var) ** (self.dim / 2)
        return -(self.depths * factor * torch.exp(-r2 / (2 * var))).sum(-1)

    def grad(self, w: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """Gradient of :meth:`smoothed` (of ``J`` for ``sigma = 0``) at points (..., d)."""
        w = torch.as_tensor(w, dtype=torch.float64).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.smoothed(w, sigma).sum(), w)
        return g

    def hessian_trace(self, w: torch.Tensor) -> torch.Tensor:
        """``tr(H)`` of ``J`` at points (..., d), in closed form."""
        w = torch.as_tensor(w, dtype=torch.float64)
        r2 = ((w[..., None, :] - self.centers) ** 2).sum(-1)
        s2 = self.widths ** 2
        e = self.depths * torch.exp(-r2 / (2 * s2))
        return (e / s2 * (self.dim - r2 / s2)).sum(-1)

    def minimum_near(self, w0, lr: float = 0.01, steps: int = 20000) -> torch.Tensor:
        """The local minimum of ``J`` reached by gradient descent from ``w0``."""
        w = torch.as_tensor(np.asarray(w0, dtype=float))
        for _ in range(steps):
            g = self.grad(w)
            w = w - lr * g
            if float(g.norm()) < 1e-12:
                break
        return w

    def descend(self, starts, lr: float, steps: int, sigma: float = 0.0, samples: int = 1,
                seed: int = 0) -> np.ndarray:
        """Gradient descent (``sigma = 0``) or HA-SGD from many starts at once.

        HA-SGD follows Algorithm 1: each step averages the gradients of ``J`` at ``samples``
        (L) points ``w + dw``, ``dw ~ N(0, sigma^2 I)``.

        Args:
            starts: starting points (n, d).
            lr: the step size.
            steps: number of steps.
            sigma: the perturbation's standard deviation (absolute, in units of w).
            samples: L.
            seed: the perturbations' seed.

        Returns:
            The trajectories, shape (steps + 1, n, d).
        """
        check_int("samples", samples, 1)
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.as_tensor(np.asarray(starts, dtype=float)).clone()
        path = [w.clone()]
        for _ in range(steps):
            if sigma > 0:
                dw = sigma * torch.randn((samples, *w.shape), generator=gen, dtype=torch.float64)
                g = self.grad(w + dw).mean(0)
            else:
                g = self.grad(w)
            w = w - lr * g
            path.append(w.clone())
        return torch.stack(path).numpy()


def sharp_and_flat(dim: int = 2, distance: float = 2.0, sharp_width: float = 0.15,
                   flat_width: float = 1.0) -> WellLoss:
    """A flat well at the origin and a sharp one at ``distance`` along the first axis, with
    the sharp well's depth set so that both minima have the same loss."""
    from scipy.optimize import brentq

    centers = np.zeros((2, dim))
    centers[1, 0] = distance
    widths = [flat_width, sharp_width]

    def gap(a_sharp: float) -> float:
        loss = WellLoss(centers, widths, [1.0, a_sharp])
        flat = loss(loss.minimum_near(centers[0], lr=0.05, steps=4000))
        sharp = loss(loss.minimum_near(centers[1], lr=0.002, steps=4000))
        return float(flat - sharp)

    if gap(0.05) * gap(1.0) >= 0:
        raise ParameterError(f"sharp_width={sharp_width!r}, well_distance={distance!r}: the "
                             "wells do not form two separate minima of equal depth; allowed: "
                             "a narrower sharp well farther away (e.g. 0.15 and 2)")
    a = brentq(gap, 0.05, 1.0, xtol=1e-10)
    return WellLoss(centers, widths, [1.0, a])


# --- networks -------------------------------------------------------------------------------

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


NETWORKS = ("mlp", "cnn", "wrn")


def build_network(network: str, dataset: str, hidden: Sequence[int] = (256, 256),
                  wrn_depth: int = 28, wrn_width: int = 10) -> nn.Module:
    """The chapter's network for a dataset: ``mlp``, ``cnn`` or ``wrn``."""
    from .data import DATASETS

    if dataset not in DATASETS:
        raise ParameterError(f"dataset={dataset!r}: must be one of {', '.join(DATASETS)}")
    info = DATASETS[dataset]
    norm = (info.mean, info.std)
    if network == "mlp":
        return MLP(info.shape, tuple(hidden), info.classes, norm)
    if network == "cnn":
        return SmallCNN(info.shape, info.classes, norm)
    if network == "wrn":
        return WideResNet(wrn_depth, wrn_width, info.classes, 0.0, info.shape[0], norm)
    raise ParameterError(f"network={network!r}: must be one of {', '.join(NETWORKS)}")

