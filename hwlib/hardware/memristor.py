"""Memristive synapses: two unidirectional devices per weight (Babu & Rajendran, Fig. 2).

The device's write model (:class:`MemristorConfig`, :func:`program`, :func:`reset_pair`,
:class:`SynapseArray`: float64 states, ``torch.randn`` noise), and the family behind the
hardware interface, :class:`MemristivePairs`: any model's weights stored on device pairs at
inference. Bit-stream training (:mod:`hwlib.methods.bitstream_training`, with its compiled
kernels :mod:`hwlib.methods.bitstream_kernels`) implements the same write model with
counter-based normals and states stored in fixed point (``B / 1024``, so that its sums are
exact), and its tests compare the two in distribution.

Each synapse is a pair of devices with effective weight ``G_eff = G+ - G-``. A device's
conductance only rises (unidirectional programming): ``G+`` is programmed to increase the
weight, ``G-`` to decrease it. The response is linear: ``levels`` equally spaced nominal states

    G_k = G_min + k B,    k = 0, ..., levels - 1,    B = (G_max - G_min) / (levels - 1),

from ``G_min`` to ``G_max = on_off_ratio * G_min`` (the paper: ratio 15, 32 levels, so
``B = 14 G_min / 31``), ``B`` being the change of one pulse-pair overlap (eq. (4)). Conductances
here are in units of ``G_min``; a device state is its *level coordinate* ``k = (G - G_min) / B``,
a real number in ``[0, levels - 1]`` (programming noise puts it between the nominal states).

Programming event (one device, after one image): starting from ``G_i``, the ``n >= 1`` pulse-pair
overlaps of eq. (4) and zero-mean Gaussian programming noise of standard deviation ``sigma``
(given as ``sigma / B``) set the final state (the paper's Fig. 2: "the final state G_f is
determined by the pulse overlap ..., and a zero mean gaussian noise with standard deviation
sigma representing programming noise", drawn both under and over ``G_i + n B``):

    G_f = min(G_max, G_i + max(0, n B + sigma z)),    z ~ N(0, 1),
    i.e. k_f = min(levels - 1, k_i + max(0, n + (sigma / B) z)).

No rounding: ``G_f`` is continuous. The device is unidirectional ("the conductance of the
device always increments in the positive direction"), so a total move ``n B + sigma z < 0`` (an
under-estimate below zero, possible when ``sigma`` is comparable to ``B``) leaves the device
where it is, and the conductance saturates at ``G_max``; ``G_f`` therefore stays in
``[G_min, G_max]``. A device with no overlap (``n = 0``) is not programmed and gets no noise.

Reset (every ``reset_every`` images; the paper: "the devices are periodically reset after every
15 image[s]"): both devices of every synapse go back to ``G_min`` and the effective weight
``d = k+ - k-`` (in level spacings, continuous) is re-programmed onto ``G+`` if positive or
``G-`` if negative. With ``reset_noise`` (the default) the re-programming is one programming
event of the same write model with a move of ``|d|`` levels: ``|d| + (sigma / B) z``, clipped to
``[0, levels - 1]``; without, it is exact and a reset changes no weight.

Any model on device pairs (:class:`MemristivePairs`, family ``"memristive"``). At inference,
every :class:`torch.nn.Linear` and :class:`torch.nn.Conv2d` weight ``w`` of a layer is stored on
one pair, programmed from the reset state (both devices at ``G_min``) by *one* programming
event of the write model on ``G+`` (``w > 0``) or ``G-`` (``w < 0``)::

    n = min(levels - 1, round(|w| / B_w)),    B_w = w_max / (levels - 1),
    k = min(levels - 1, max(0, n + (sigma / B) z))  where n >= 1,   k = 0 where n = 0,
    programmed weight = sign(w) k B_w,

``w_max`` being the weight of a pair with ``G+`` at ``G_max`` and ``G-`` at ``G_min``: per layer,
by default each layer's ``max |W|`` (so the largest weight is the top level), or given. The
write model moves a device by whole pulse-pair overlaps ``n`` (``n B`` plus noise), so the
target is the nearest of the ``levels`` nominal states: the *expected* chip (noise-free
programming, ``sigma = 0``) is the weights quantized to ``2 levels - 1`` values in
``[-w_max, w_max]``; a sampled chip adds each device's continuous programming noise, clipped to
``[G_min, G_max]`` (so its mean differs from the expected chip near the bounds; see
:func:`programmed_level_moments`). Biases stay in the digital periphery. In training (one chip,
a fresh chip per step, HA-SGD) the gradient is taken at the programmed weights, as for analog
crossbars (:mod:`hwlib.hardware.crossbar`), and applied to the stored floating-point weights.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError
from .base import Chip, Hardware


@dataclass(frozen=True)
class MemristorConfig:
    """A linear, unidirectional memristive device (Babu & Rajendran, Sec. III, Fig. 2) and the
    synapse's reset rule. Conductances are in units of ``G_min``; the paper's symbols: ``B``
    (the level spacing, the change of one pulse-pair overlap), ``sigma`` (programming noise)."""

    on_off_ratio: float = 15.0
    """Dynamic range ``G_max / G_min``, dimensionless (the paper's on/off ratio: 15)."""
    levels: int = 32
    """Nominal conductance states from ``G_min`` to ``G_max``, equally spaced ``B`` apart (the
    paper: 32); ``B`` is the change of one pulse-pair overlap. Programmed states are continuous."""
    sigma_over_b: float = 0.1
    """Programming noise ``sigma / B``: the standard deviation ``sigma`` of one programming
    event in units of the level spacing ``B``, dimensionless (the paper sweeps it; its best
    devices have 0.1)."""
    reset_every: int = 15
    """Training only: images between two resets of every synapse (the paper: 15; 0: never)."""
    reset_noise: bool = True
    """Training only: whether the re-programming after a reset is a programming event of the
    same noisy write model (True) or exact (False). The paper says only that "the devices are
    periodically reset after every 15 image[s]"; re-programming the weight afterwards programs
    a device, and the paper has one write model, in which every programming event carries its
    Gaussian noise (Fig. 2), so True is what it implies. False isolates the noise of the
    updates."""

    def __post_init__(self) -> None:
        check_memristor(**asdict(self))

    @property
    def spacing(self) -> float:
        """The level spacing ``B`` in units of ``G_min``: ``(ratio - 1) / (levels - 1)``."""
        return (self.on_off_ratio - 1.0) / (self.levels - 1)

    @property
    def top(self) -> int:
        """Level coordinate of ``G_max``: ``levels - 1``."""
        return self.levels - 1

    def conductance(self, level: torch.Tensor | float) -> torch.Tensor:
        """Conductance at level coordinate ``level`` (any real in ``[0, top]``), in units of
        ``G_min``: ``1 + level B``."""
        return 1.0 + torch.as_tensor(level, dtype=torch.float64) * self.spacing


def check_memristor(on_off_ratio: Any = 15.0, levels: Any = 32, sigma_over_b: Any = 0.1,
                    reset_every: Any = 15, reset_noise: Any = True) -> None:
    """One clear line for the first bad device parameter."""
    if not (isinstance(on_off_ratio, (int, float)) and math.isfinite(on_off_ratio)
            and on_off_ratio > 1):
        raise ParameterError(f"on_off_ratio={on_off_ratio!r}: must be a number > 1 "
                             "(G_max / G_min)")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ParameterError(f"levels={levels!r}: must be a whole number >= 2")
    if not (isinstance(sigma_over_b, (int, float)) and math.isfinite(sigma_over_b)
            and sigma_over_b >= 0):
        raise ParameterError(f"sigma_over_b={sigma_over_b!r}: must be a number >= 0 "
                             "(programming noise in level spacings)")
    if isinstance(reset_every, bool) or not isinstance(reset_every, int) or reset_every < 0:
        raise ParameterError(f"reset_every={reset_every!r}: must be a whole number >= 0 "
                             "(images between resets; 0: never)")
    if not isinstance(reset_noise, bool):
        raise ParameterError(f"reset_noise={reset_noise!r}: must be True or False")


def program(level: torch.Tensor, count: torch.Tensor, sigma_over_b: float | torch.Tensor,
            z: torch.Tensor, top: float) -> torch.Tensor:
    """One programming event per device (see the module text):
    ``k_f = min(top, k_i + max(0, n + (sigma / B) z))`` where ``n > 0``.

    Args:
        level: the devices' level coordinates before the event (float64, in ``[0, top]``).
        count: the move ``n`` of each device in level spacings, ``>= 0`` (pulse-pair overlaps,
            whole numbers, or at a reset the weight ``|d|`` to re-program).
        sigma_over_b: programming noise in level spacings (a number or per-device tensor).
        z: standard normal draws, one per device.
        top: level coordinate of ``G_max``.

    Returns:
        The new level coordinates (continuous); devices with ``count == 0`` are unchanged.
    """
    step = torch.clamp(count + sigma_over_b * z, min=0)
    new = torch.clamp(level + step, max=top)
    return torch.where(count > 0, new, level)


def reset_pair(g_plus: torch.Tensor, g_minus: torch.Tensor, sigma_over_b: float = 0.0,
               z: torch.Tensor | None = None, top: int = 31
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The reset rule: both devices to ``G_min``, then ``d = k+ - k-`` onto one device, as a
    programming event of ``|d|`` levels from ``G_min`` (:func:`program`).

    Args:
        g_plus: level coordinates of the ``G+`` devices.
        g_minus: level coordinates of the ``G-`` devices.
        sigma_over_b: programming noise of the re-programming (0: exact).
        z: standard normal draws (needed when ``sigma_over_b > 0``).
        top: level coordinate of ``G_max``.

    Returns:
        The new ``(k+, k-)``.
    """
    d = g_plus - g_minus
    mag = d.abs()
    if sigma_over_b > 0:
        if z is None:
            raise ParameterError("reset_pair: z is required when sigma_over_b > 0")
        mag = program(torch.zeros_like(mag), mag, sigma_over_b, z, top)
    pos = d > 0
    zero = torch.zeros_like(d)
    return torch.where(pos, mag, zero), torch.where(pos, zero, mag)


class SynapseArray:
    """An array of two-device synapses (level coordinates of ``G+`` and ``G-``, float64).

    Args:
        shape: the array's shape (e.g. ``(rows, columns)``).
        config: the device.
        generator: random generator for the programming noise.
    """

    def __init__(self, shape: tuple[int, ...], config: MemristorConfig,
                 generator: torch.Generator | None = None) -> None:
        self.config = config
        self.g_plus = torch.zeros(shape, dtype=torch.float64)
        self.g_minus = torch.zeros(shape, dtype=torch.float64)
        self.generator = generator

    def weight_levels(self) -> torch.Tensor:
        """The effective weight ``(G+ - G-) / B`` in levels."""
        return self.g_plus - self.g_minus

    def conductances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(G+, G-)`` in units of ``G_min``."""
        return self.config.conductance(self.g_plus), self.config.conductance(self.g_minus)

    def set_weight_levels(self, d: torch.Tensor) -> None:
        """Program the weights ``d`` (level spacings, clipped to ``[-top, top]``) from the reset
        state, exactly."""
        d = torch.clamp(d.to(torch.float64), -self.config.top, self.config.top)
        self.g_plus, self.g_minus = reset_pair(d, torch.zeros_like(d), top=self.config.top)

    def program(self, counts: torch.Tensor) -> None:
        """One programming event per synapse with a nonzero signed overlap count: ``G+`` for
        positive counts (the weight should rise), ``G-`` for negative ones; each with its own
        noise draw."""
        z = torch.randn(counts.shape, generator=self.generator, dtype=torch.float64)
        s = self.config.sigma_over_b
        up, down = counts > 0, counts < 0
        self.g_plus = program(self.g_plus, torch.where(up, counts, 0.0), s, z, self.config.top)
        self.g_minus = program(self.g_minus, torch.where(down, -counts, 0.0), s, z,
                               self.config.top)

    def reset(self) -> None:
        """Apply the reset rule to every synapse."""
        z = None
        if self.config.reset_noise:
            z = torch.randn(self.g_plus.shape, generator=self.generator, dtype=torch.float64)
        self.g_plus, self.g_minus = reset_pair(
            self.g_plus, self.g_minus, self.config.sigma_over_b if self.config.reset_noise
            else 0.0, z, self.config.top)


def programmed_level_moments(n: float, sigma_over_b: float, top: float) -> tuple[float, float]:
    """Closed form of one programming event from the reset state: the mean and standard
    deviation of the level ``k = min(top, max(0, n + (sigma / B) z))``, ``z ~ N(0, 1)``, for a
    target of ``n >= 1`` levels (a normal censored at 0 and ``top``); ``n = 0`` gives 0.

    With ``Y ~ N(n, s^2)``, ``a = -n / s``, ``b = (top - n) / s`` and ``P = Phi(b) - Phi(a)``:
    ``E k = top (1 - Phi(b)) + n P + s (phi(a) - phi(b))`` and
    ``E k^2 = top^2 (1 - Phi(b)) + n^2 P + 2 n s (phi(a) - phi(b))
    + s^2 (P + a phi(a) - b phi(b))``.
    """
    if n <= 0:
        return 0.0, 0.0
    s = float(sigma_over_b)
    if s == 0:
        m = min(float(n), float(top))
        return m, 0.0
    a, b = -n / s, (top - n) / s
    cdf = lambda t: 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))           # noqa: E731
    pdf = lambda t: math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)    # noqa: E731
    inside = cdf(b) - cdf(a)
    above = 1.0 - cdf(b)
    mean = top * above + n * inside + s * (pdf(a) - pdf(b))
    second = (top ** 2 * above + n ** 2 * inside + 2 * n * s * (pdf(a) - pdf(b))
              + s ** 2 * (inside + a * pdf(a) - b * pdf(b)))
    return mean, math.sqrt(max(second - mean ** 2, 0.0))


# --- any model on device pairs: the family behind the hardware interface -----------------------


#: Layer types whose weights are stored on device pairs.
PAIR_LAYERS = (nn.Linear, nn.Conv2d)


def pair_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers whose weights are stored on device pairs, in module order (each
    weight tensor once)."""
    out, seen = [], set()
    for m in model.modules():
        if isinstance(m, PAIR_LAYERS) and id(m.weight) not in seen:
            seen.add(id(m.weight))
            out.append(m)
    return out


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (chip seed, layer index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


class PairChip(Chip):
    """One chip of device pairs: one draw of every device's programming noise (see the module
    text), or none (the expected chip).

    A seeded chip draws layer ``k``'s standard normals from the seed ``(seed, k)`` on the
    model's torch device, once, and keeps them (one float per weight); attached again, it
    re-programs the model's current weights with the same noise. A fresh chip (one training
    step) draws from ``generator`` at each attachment. While attached, every stored weight holds
    its programmed value (in place, restored exactly on exit).
    """

    def __init__(self, hardware: "MemristivePairs", seed: int | None = None,
                 generator: torch.Generator | None = None, noisy: bool = True) -> None:
        super().__init__(hardware, seed)
        self.generator = generator
        self.noisy = noisy
        self._z: dict[tuple, torch.Tensor] = {}

    def noise(self, k: int, weight: torch.Tensor) -> torch.Tensor:
        """The standard normals of layer ``k``'s devices (shape of its weight, on its device)."""
        if self.seed is None:
            g = self.generator
            dev = g.device if g is not None else weight.device
            return torch.randn(weight.shape, generator=g, device=dev,
                               dtype=weight.dtype).to(weight.device)
        key = (k, tuple(weight.shape), str(weight.device), weight.dtype)
        if key not in self._z:
            g = torch.Generator(device=weight.device).manual_seed(_seed(self.seed, k))
            self._z[key] = torch.randn(weight.shape, generator=g, device=weight.device,
                                       dtype=weight.dtype)
        return self._z[key]

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:  # noqa: D102
        hw: MemristivePairs = self.hardware  # type: ignore[assignment]
        layers = pair_layers(model)
        noisy = self.noisy and hw.device.sigma_over_b > 0
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for k, (layer, w_max) in enumerate(zip(layers, hw.ranges(layers))):
                    w = layer.weight
                    programmed = hw.program(w, w_max, self.noise(k, w) if noisy else None)
                    saved.append((w, w.detach().clone()))
                    w.copy_(programmed)
            yield model
        finally:
            with torch.no_grad():
                for w, original in saved:
                    w.copy_(original)


class MemristivePairs(Hardware):
    """Babu & Rajendran's memristive synapses at inference: every Linear and Conv2d weight on a
    pair of linear, unidirectional devices, programmed from reset by one event of the write
    model (see the module text).

    Args:
        device: the memristive device (on/off ratio, levels, programming noise sigma/B; its
            reset fields concern training only).
        w_max: the weight of a pair with ``G+`` at ``G_max`` and ``G-`` at ``G_min``, in the
            layer's weight units: one number for every layer, one per layer (in module order),
            or None (the default): each layer's ``max |W|`` when the chip is attached.
    """

    family = "memristive"
    #: Chips kept per hardware model: each holds one float per weight of the model.
    cache_size = 16

    def __init__(self, device: MemristorConfig = MemristorConfig(),
                 w_max: float | Sequence[float] | None = None) -> None:
        super().__init__()
        if not isinstance(device, MemristorConfig):
            raise ParameterError(f"device={device!r}: must be a MemristorConfig")
        if w_max is not None:
            ws = [w_max] if isinstance(w_max, (int, float)) else list(w_max)
            if not ws or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                                 and math.isfinite(w) and w > 0 for w in ws):
                raise ParameterError(f"w_max={w_max!r}: must be a number > 0, one per layer, "
                                     "or None (each layer's max |W|)")
            w_max = float(w_max) if isinstance(w_max, (int, float)) else tuple(map(float, ws))
        self.device = device
        self.w_max = w_max

    def ranges(self, layers: Sequence[nn.Module]) -> list[torch.Tensor]:
        """Each layer's ``w_max`` as a 0-d tensor on its weight's device (no host
        synchronization)."""
        if isinstance(self.w_max, tuple) and len(self.w_max) != len(layers):
            raise ParameterError(f"w_max: {len(self.w_max)} values for {len(layers)} layers "
                                 "stored on device pairs")
        out = []
        for i, m in enumerate(layers):
            w = m.weight.detach()
            if self.w_max is None:
                out.append(w.abs().amax())
            else:
                v = self.w_max[i] if isinstance(self.w_max, tuple) else self.w_max
                out.append(torch.tensor(v, dtype=w.dtype, device=w.device))
        return out

    def program(self, weight: torch.Tensor, w_max: torch.Tensor | float,
                z: torch.Tensor | None = None) -> torch.Tensor:
        """The programmed weights of one layer: ``sign(w) k B_w`` with the level ``k`` of one
        programming event from reset to the nearest nominal level ``n`` (module text), with the
        standard normals ``z`` (None: noise-free, the expected chip)."""
        top = self.device.top
        w = weight.detach()
        w_max = torch.as_tensor(w_max, dtype=w.dtype, device=w.device)
        b_w = torch.where(w_max > 0, w_max / top, torch.ones_like(w_max))
        n = torch.clamp(torch.round(w.abs() / b_w), max=top)
        k = n if z is None else program(torch.zeros_like(n), n, self.device.sigma_over_b, z, top)
        return torch.sign(w) * k * b_w

    def expected(self) -> PairChip:
        """The noise-free chip: every weight quantized to the nearest nominal level."""
        return PairChip(self, noisy=False)

    @property
    def deterministic(self) -> bool:
        """True without programming noise (every chip is the expected chip)."""
        return self.device.sigma_over_b == 0

    def _sample(self, seed: int) -> PairChip:
        return PairChip(self, seed)

    def fresh(self, generator: torch.Generator | None) -> PairChip:
        """A chip drawn from ``generator`` when attached (one draw per attachment)."""
        return PairChip(self, generator=generator)

    def config(self) -> dict[str, Any]:  # noqa: D102
        return {"family": self.family, "on_off_ratio": self.device.on_off_ratio,
                "levels": self.device.levels, "sigma_over_b": self.device.sigma_over_b,
                "w_max": list(self.w_max) if isinstance(self.w_max, tuple) else self.w_max}
