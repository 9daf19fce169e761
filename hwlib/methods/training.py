"""Hardware-aware training: methods that compose with any model and any hardware model, and
the one training loop every chapter uses.

A *method* says which chips a training step computes through (:meth:`Method.chips`); the step
averages the gradients over them and lets any torch optimizer update the weights:

================================  =====================================================  =========
method                            chips of one step                                      papers
================================  =====================================================  =========
:class:`Standard`                 the expected chip (ideal digital hardware)             Ideal
:class:`OneChip`                  the same chip ``z`` at every step                      DDHR, Fixed
:class:`FreshChip`                a fresh chip drawn from the hardware model             S-DDHR by sampling, erasure training
:class:`Parametric`               the family's analytical moments, resampled per pass    PS-DDHR, AS-DDHR
:class:`HASGD`                    ``L`` fresh chips, gradients averaged                  HA-SGD (Algorithm 1)
================================  =====================================================  =========

How a gradient passes a chip is the family's rule (:mod:`hwlib.hardware`): through the
expected chip for MRAM arrays (Algorithm 1 of S-DDHR), at the perturbed weights for crossbars
(Algorithm 1 of HA-SGD), through the surviving values for erasures.

:func:`fit` is the training loop: shuffled epochs, a schedule stepped per step, optional
augmentation, a hook after each optimizer step, a per-epoch callback, tqdm, and the wall time
of each epoch (synchronized on CUDA).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import ParameterError, check_int
from ..hardware.base import Chip, Hardware, Ideal, tf32

#: The arithmetic of a training step's forward passes (CUDA only; the CPU is always float32):
#: ``fp32``, ``tf32`` (TF32 matrix products and convolutions) or ``bf16`` (bfloat16 autocast,
#: TF32 for what autocast keeps in float32). Device models compute in float32 whatever is set
#: (:func:`hwlib.hardware.base.float32_products`).
PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str) -> str:
    """Return ``precision`` if known, else raise one line."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision={precision!r}: must be one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def arithmetic(device: torch.device, precision: str = "fp32"):
    """Within the block, forward passes on ``device`` run in ``precision`` (see
    :data:`PRECISIONS`); on the CPU, always float32."""
    check_precision(precision)
    if device.type != "cuda":
        yield
        return
    with tf32(precision != "fp32"):
        if precision == "bf16":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


class Method:
    """A training method: the chips one step trains through (see the module text)."""

    name = "method"

    def chips(self, hardware: Hardware, generator: torch.Generator | None) -> list[Chip]:
        """The chips of one training step."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The method as plain values (for store configs)."""
        return {"method": self.name}

    def passes(self, model: nn.Module, x: torch.Tensor) -> contextlib.AbstractContextManager:
        """A context around one step's passes through its chips (default: nothing)."""
        return contextlib.nullcontext()


#: How batch normalization runs in the perturbed passes of a step (see :class:`HASGD`).
BATCH_NORM_MODES = ("clean", "perturbed")


@contextlib.contextmanager
def clean_batch_norm(model: nn.Module, x: torch.Tensor):
    """Within the block, every batch-norm layer in training mode normalizes with the
    statistics of the *clean* network on the batch ``x``, as constants.

    On entry one forward pass of the clean network (no gradients) computes each layer's batch
    mean and (biased) variance, and updates the running statistics from them, once. Inside the
    block the layers run as in evaluation mode with those batch statistics; on exit their
    running statistics and mode are restored. Without batch-norm layers in training mode it
    does nothing.
    """
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers:
        yield
        return
    stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def capture(module, inputs, _out):
        a = inputs[0]
        dims = [d for d in range(a.dim()) if d != 1]
        var, mean = torch.var_mean(a, dim=dims, correction=0)
        stats[id(module)] = (mean, var)

    hooks = [m.register_forward_hook(capture) for m in layers]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    saved = [(m.running_mean, m.running_var) for m in layers]
    try:
        for m in layers:
            m.running_mean, m.running_var = stats[id(m)]
            m.train(False)
        yield
    finally:
        for m, (mean, var) in zip(layers, saved):
            m.running_mean, m.running_var = mean, var
            m.train(True)


@dataclass(frozen=True)
class Standard(Method):
    """Train on the expected chip: the network as ideal digital hardware computes it."""

    name = "standard"

    def chips(self, hardware, generator):  # noqa: D102
        return [hardware.expected()]


@dataclass(frozen=True)
class OneChip(Method):
    """Train on one chip for the whole run: DDHR (the test chip itself, the upper reference)
    and Fixed (chip ``z_0``, then tested on other chips).

    Attributes:
        seed: the chip's seed.
    """

    seed: int = 0
    name = "one_chip"

    def chips(self, hardware, generator):  # noqa: D102
        return [hardware.sample(self.seed)]

    def config(self) -> dict[str, Any]:  # noqa: D102
        return {"method": self.name, "seed": self.seed}


@dataclass(frozen=True)
class FreshChip(Method):
    """Train on a fresh chip at every step, drawn from the hardware model: the distribution
    itself (S-DDHR by sampling; with the SRAM erasure model, the erasure regularizer)."""

    name = "fresh_chip"

    def chips(self, hardware, generator):  # noqa: D102
        return [hardware.fresh(generator)]


@dataclass(frozen=True)
class Parametric(Method):
    """Train through the family's analytical output moments, resampled at every pass: PS-DDHR
    (``approximate=False``) or AS-DDHR (one fixed variance, ``approximate=True``)."""

    approximate: bool = False
    name = "parametric"

    def chips(self, hardware, generator):  # noqa: D102
        return [hardware.moments(self.approximate)]

    def config(self) -> dict[str, Any]:  # noqa: D102
        return {"method": self.name, "approximate": self.approximate}


@dataclass(frozen=True)
class HASGD(Method):
    """Hessian-aware SGD (Algorithm 1 of the HA-SGD poster): ``L`` fresh chips per step, the
    gradients at the ``L`` perturbed points averaged. With ``q = p`` this minimizes the
    expected loss under the hardware's perturbation, ``E[J(w + dw)] ~ J(w) + (sigma^2 / 2)
    tr(H)``; ``L = 1`` is plain noise injection.

    Attributes:
        samples: L, chips per step (>= 1).
        batch_norm: how batch normalization runs in the perturbed passes. ``"clean"``: with
            the clean network's batch statistics (one extra forward pass without gradients per
            step, which also updates the running statistics; see :func:`clean_batch_norm`), so
            that batch statistics cannot absorb part of the perturbation and the running
            statistics are the clean network's. ``"perturbed"``: in training mode inside each
            perturbed pass (the statistics follow the perturbed network and the running ones
            accumulate under noise). Networks without batch normalization are unaffected.
    """

    samples: int = 1
    batch_norm: str = "clean"
    name = "hasgd"

    def __post_init__(self) -> None:
        check_int("samples", self.samples, 1)
        if self.batch_norm not in BATCH_NORM_MODES:
            raise ParameterError(f"batch_norm={self.batch_norm!r}: must be one of "
                                 f"{', '.join(BATCH_NORM_MODES)}")

    def chips(self, hardware, generator):  # noqa: D102
        return [hardware.fresh(generator) for _ in range(self.samples)]

    def passes(self, model, x):  # noqa: D102
        return clean_batch_norm(model, x) if self.batch_norm == "clean" \
            else contextlib.nullcontext()

    def config(self) -> dict[str, Any]:  # noqa: D102
        return {"method": self.name, "samples": self.samples, "batch_norm": self.batch_norm}


class Step:
    """One training step of ``method`` on ``hardware``: for each chip, forward and backward
    through it (gradients averaged over the chips), then ``optimizer.step()`` on the weights.

    Args:
        model: any torch model.
        optimizer: any torch optimizer over its parameters.
        hardware: the hardware model trained for (default: ideal hardware).
        method: the training method (default :class:`Standard`).
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
        generator: the source of fresh chips (a generator on the model's device is typical;
            None: torch's global one).
        after_step: called with the model after each optimizer step (e.g. clipping the
            latent weights of a binarized network).
        precision: the forward passes' arithmetic on CUDA (:data:`PRECISIONS`); the weights,
            the optimizer and every device model stay float32.
        channels_last: on CUDA, keep the model and 4-D inputs in the channels-last memory
            format (faster convolutions on tensor cores; the same numbers up to summation
            order). Ignored on the CPU, where it gains nothing.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 hardware: Hardware | None = None, method: Method | None = None,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
                 generator: torch.Generator | None = None,
                 after_step: Callable[[nn.Module], None] | None = None,
                 precision: str = "fp32", channels_last: bool = False) -> None:
        self.precision = check_precision(precision)
        on_cuda = any(p.is_cuda for p in model.parameters())
        self.channels_last = bool(channels_last) and on_cuda
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model, self.optimizer = model, optimizer
        self.hardware = hardware if hardware is not None else Ideal()
        self.method = method if method is not None else Standard()
        if not isinstance(self.method, Method):
            raise ParameterError(f"method={method!r}: must be a hwlib.methods training method")
        if not isinstance(self.hardware, Hardware):
            raise ParameterError(f"hardware={hardware!r}: must be a hwlib Hardware model")
        self.loss_fn, self.generator, self.after_step = loss_fn, generator, after_step

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Put the gradient averaged over the step's chips into ``.grad``; returns the mean
        loss over them (a 0-d float64 tensor, no host synchronization)."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        chips = self.method.chips(self.hardware, self.generator)
        total = None
        with self.method.passes(self.model, x):
            for chip in chips:
                with chip.attached(self.model):
                    with arithmetic(x.device, self.precision):
                        loss = self.loss_fn(self.model(x), y)
                    (loss / len(chips)).backward()
                part = loss.detach().double()
                total = part if total is None else total + part
        return total / len(chips)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step on the mini-batch ``(x, y)``; returns the mean loss (a 0-d tensor)."""
        loss = self.gradients(x, y)
        self.optimizer.step()
        if self.after_step is not None:
            self.after_step(self.model)
        return loss


def fit(step: Step, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
        seed: int = 0, scheduler: Any = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        drop_last: bool = False, on_epoch: Callable[[int], None] | None = None,
        desc: str = "training") -> dict[str, list[float]]:
    """Train ``step.model`` for ``epochs`` shuffled passes over ``(x, y)``.

    Args:
        step: the training step (model, optimizer, hardware, method).
        x: training images on the model's device.
        y: their labels.
        epochs: passes over the data (>= 1).
        batch_size: images per step (>= 1).
        seed: seed of the shuffling (a CPU generator, the same order on any device) and, plus
            one, of the augmentation.
        scheduler: a learning-rate scheduler stepped after every optimizer step, or None.
        augment: ``augment(batch, generator) -> batch`` (random crops and flips), or None.
        drop_last: drop an incomplete last batch (for networks with batch normalization).
        on_epoch: called as ``on_epoch(epoch)`` after each epoch (not timed).
        desc: the progress bar's label.

    Returns:
        ``epoch_time_s`` (the steps of each epoch, seconds) and ``loss`` (mean training loss
        per epoch).
    """
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    if len(y) == 0:
        raise ParameterError("no training images")
    gen = torch.Generator().manual_seed(int(seed))
    aug_gen = torch.Generator().manual_seed(int(seed) + 1)
    # drop_last: whole batches only (one batch of everything when there are fewer images)
    n = max(batch_size, (len(y) // batch_size) * batch_size) if drop_last else len(y)
    cuda = x.device.type == "cuda"
    times, losses = [], []
    for epoch in tqdm(range(epochs), desc=desc, leave=False):
        step.model.train()
        if cuda:
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        perm = torch.randperm(len(y), generator=gen).to(y.device)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb = x[idx] if augment is None else augment(x[idx], aug_gen)
            total += step(xb, y[idx]) * len(idx)
            if scheduler is not None:
                scheduler.step()
        if cuda:
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - start)
        losses.append(float(total) / min(n, len(y)))
        if on_epoch is not None:
            on_epoch(epoch)
    return {"epoch_time_s": times, "loss": losses}


def optimizer_for(model: nn.Module, name: str, lr: float, weight_decay: float = 0.0,
                  momentum: float = 0.9, nesterov: bool = True) -> torch.optim.Optimizer:
    """``"adam"`` (Adam) or ``"sgd"`` (SGD with momentum, Nesterov by default)."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                               nesterov=nesterov and momentum > 0, weight_decay=weight_decay)
    raise ParameterError(f"optimizer={name!r}: must be one of adam, sgd")


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int):
    """Cosine decay of the learning rate to zero over every step of the run."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Optimizer steps in one epoch of ``n`` images."""
    return max(1, n // batch_size) if drop_last else (n + batch_size - 1) // batch_size


METHODS = {"standard": Standard, "one_chip": OneChip, "fresh_chip": FreshChip,
           "parametric": Parametric, "hasgd": HASGD}


def method_from(config: dict[str, Any]) -> Method:
    """The method of a :meth:`Method.config` dict."""
    args = dict(config)
    name = args.pop("method", None)
    if name not in METHODS:
        raise ParameterError(f"method={name!r}: must be one of {', '.join(METHODS)}")
    return METHODS[name](**args)


def chips_of(methods: Sequence[Method], hardware: Hardware) -> None:
    """Check that every method is defined on ``hardware`` (parametric sampling needs
    moments); raises one line naming the first that is not."""
    for m in methods:
        if isinstance(m, Parametric):
            hardware.moments(m.approximate)
