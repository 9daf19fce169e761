"""One hardware interface for every device family.

A :class:`Hardware` model is a *distribution over chips at one operating point* (an MRAM array
at 10x nominal variation, an SRAM at fault rate p, a crossbar with 10 % programming noise, a
memristive device with sigma = 0.1 B). It can

* :meth:`~Hardware.sample` a reproducible chip from a seed (the same seed, the same chip);
* give the :meth:`~Hardware.expected` chip: the gradient path of Algorithm 1 of S-DDHR, and
  the clean reference every accuracy is compared with;
* give a chip of its analytical output :meth:`~Hardware.moments`, where the family has them
  (the PS-DDHR and AS-DDHR models of MRAM arrays);
* draw a :meth:`~Hardware.fresh` chip for one training step from a generator.

A :class:`Chip` acts on a model's stored weights and/or its outputs (column read-out, ADCs,
activation memories). :func:`attach` puts any ``nn.Module`` on a chip inside a ``with`` block
and restores it exactly afterwards::

    with hwlib.attach(model, hardware, seed=3):
        logits = model(x)          # computed on chip 3

Chips are drawn on the torch device of the model they are attached to. The training methods of
:mod:`hwlib.methods` (standard, one chip, a fresh chip per step, parametric sampling, HA-SGD)
compose with any hardware model through this interface alone.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Iterator

import torch
from torch import nn

from ..errors import ParameterError


# --- arithmetic: what mixed precision may and may not touch ----------------------------------


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Within the block, CUDA matrix products and convolutions use TF32 (``enabled``) or full
    float32; the previous settings come back on exit."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def float32_products(device: torch.device, exact: bool = True) -> Iterator[None]:
    """Within the block a device model computes in float32, whatever mixed precision the
    training loop runs: autocast is off, and with ``exact`` TF32 too. A device model's noise,
    faults and quantization keep the precision the model defines; products of +-1 (the XNOR
    arrays' ideal readout) are exact in TF32 as well, so they pass ``exact=False``."""
    if device.type != "cuda":
        yield
        return
    with torch.autocast("cuda", enabled=False):
        if exact:
            with tf32(False):
                yield
        else:
            yield


class Chip(ABC):
    """One chip: a fixed sample of a hardware model (or its expected chip).

    Attributes:
        hardware: the hardware model it was drawn from.
        seed: its seed (``None`` for the expected chip and for chips drawn from a generator).
    """

    def __init__(self, hardware: "Hardware", seed: int | None = None) -> None:
        self.hardware = hardware
        self.seed = seed

    @abstractmethod
    def attached(self, model: nn.Module) -> contextlib.AbstractContextManager[nn.Module]:
        """A context manager: within it ``model`` computes on this chip; on exit it is
        restored exactly (weights, hooks, layer state). In training mode, gradients follow
        the family's rule (see the family's module)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hardware!r}, seed={self.seed!r})"


class NoChip(Chip):
    """A chip that changes nothing: ideal, digital hardware."""

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:  # noqa: D102
        yield model


class Hardware(ABC):
    """A distribution over chips at one operating point (see the module text).

    Subclasses set :attr:`family` and implement :meth:`sample`; the others have defaults.
    Chips drawn from a seed are cached on the hardware model (:attr:`cache_size` of them),
    so that an evaluation that attaches the same chip to several batches or models draws it
    once.
    """

    family: str = "hardware"
    #: Chips kept per hardware model, by seed.
    cache_size: int = 64

    def __init__(self) -> None:
        self._chips: dict[int, Chip] = {}

    def sample(self, seed: int) -> Chip:
        """The chip drawn with ``seed`` (reproducible; cached)."""
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ParameterError(f"seed={seed!r}: must be an int >= 0")
        chips = self.__dict__.setdefault("_chips", {})
        if seed not in chips:
            if len(chips) >= self.cache_size:
                chips.pop(next(iter(chips)))
            chips[seed] = self._sample(seed)
        return chips[seed]

    @abstractmethod
    def _sample(self, seed: int) -> Chip:
        """Draw the chip of ``seed`` (uncached)."""

    def expected(self) -> Chip:
        """The expected chip: the model as the hardware computes it on average (by default,
        ideal digital hardware)."""
        return NoChip(self)

    def moments(self, approximate: bool = False) -> Chip:
        """A chip that samples the outputs from the family's analytical moments at every
        forward pass (PS-DDHR; ``approximate``: one fixed variance, AS-DDHR).

        Raises:
            ParameterError: the family has no analytical moments.
        """
        raise ParameterError(f"{self.family}: this family has no analytical output moments; "
                             "parametric sampling is defined for MRAM arrays only")

    def fresh(self, generator: torch.Generator | None) -> Chip:
        """A chip for one training step: by default the chip of a seed drawn from
        ``generator`` (torch's global generator when None); not cached."""
        seed = int(torch.randint(0, 2 ** 31, (1,), generator=generator))
        return self._sample(seed)

    @property
    def is_ideal(self) -> bool:
        """True when every chip is ideal digital hardware (the family changes nothing)."""
        return False

    @property
    def deterministic(self) -> bool:
        """True when every chip equals the expected chip (no chip-to-chip variation), so that
        an evaluation needs one pass, not one per chip."""
        return self.is_ideal

    def config(self) -> dict[str, Any]:
        """The operating point as plain values (for store configs and tables)."""
        return {"family": self.family}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "family")
        return f"{type(self).__name__}({args})"


class Ideal(Hardware):
    """Ideal digital hardware: every chip is exact."""

    family = "ideal"

    def _sample(self, seed: int) -> Chip:
        return NoChip(self, seed)

    @property
    def is_ideal(self) -> bool:  # noqa: D102
        return True


@contextlib.contextmanager
def attach(model: nn.Module, hardware: Hardware | Chip, seed: int | None = None
           ) -> Iterator[nn.Module]:
    """Put ``model`` on a chip inside a ``with`` block; restore it exactly on exit.

    Args:
        model: any torch model (each family acts on the layers it knows: see its module).
        hardware: a hardware model, or a chip already drawn.
        seed: with a hardware model, the chip's seed; ``None``: its expected chip.

    Example:
        >>> hw = hwlib.presets.hasgd_crossbar(sigma=0.1)
        >>> with hwlib.attach(model, hw, seed=0):
        ...     accuracy = (model(x).argmax(1) == y).float().mean()
    """
    if isinstance(hardware, Chip):
        if seed is not None:
            raise ParameterError("seed: give a seed with a hardware model, not with a chip")
        chip = hardware
    elif isinstance(hardware, Hardware):
        chip = hardware.expected() if seed is None else hardware.sample(seed)
    else:
        raise ParameterError(f"hardware={hardware!r}: must be a hwlib Hardware model or Chip")
    with chip.attached(model):
        yield model
