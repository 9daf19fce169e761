"""Analog non-volatile-memory compute-in-memory (CIM): crossbars, perturbations and ADCs.

The HA-SGD poster (hasgd2020poster in the book's bibliography) computes every affine layer
on one crossbar of analog devices (one pair of transistors per real number; Ohm's law
multiplies, Kirchhoff's law adds):

    x_out = W x_in + b  =>  x_out = [W  b/s] [x_in; s] := W~ x~_in,

the bias being an extra column driven by a constant input ``s`` (Fig. 5: ``s`` is chosen so
that ``b/s`` spans the same range as ``W``). Every entry of the folded matrix is perturbed,
``W~_ij -> W~_ij + nu_ij`` with ``nu_ij`` i.i.d. and approximately Gaussian; programming error
and conductance variation are proportional to the device's dynamic range (Fig. 3), so the
standard deviation of ``nu_ij`` is a fraction ``sigma`` of the range ``max_ij |W~_ij|``
mapped onto the devices.

A device drift (the poster's mean shift, Fig. 8) depends on how a number is stored. The poster
stores each real number on a *pair* of devices (Fig. 2), W~ = G+ - G-: a drift common to both
devices, G -> G + d, cancels in the difference; a drift in proportion to each device's
programmed conductance, G -> (1 + shift) G, survives as a gain, W~ -> (1 + shift) W~. That is
the default model (``shift_model="pair"``). The ablation ``"single"`` stores each number on one
device with an offset mapping, where a drift of ``shift`` times the range adds to every entry,
W~ -> W~ + shift R.

Pieces, each composing with any torch model:

* :class:`GaussianPerturbation`: the noise model p(nu) (or the training distribution q).
* :class:`Crossbars`: every :class:`torch.nn.Linear` and :class:`torch.nn.Conv2d` of a model as
  a crossbar (a convolution as the crossbar of its unrolled kernel matrix); draws one
  perturbation of all of them (one hardware instance) and restores the weights.
* :class:`ADC`: each crossbar's output quantized to ``2**B`` levels over a calibrated range.
* :class:`AnalogCrossbar`: the family behind the hardware interface (one chip: one draw of
  the perturbation, with the ADCs if any).

Normalization layers, activations and pooling are digital and exact.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .base import Chip, Hardware
from .calibration import observe_outputs

#: Rules for the folding constant s of the bias column (Fig. 5).
FOLDS = ("range", "unit")
#: Layer types computed on crossbars.
CROSSBAR_LAYERS = (nn.Linear, nn.Conv2d)


def check_fold(fold: str) -> str:
    """Return ``fold`` if it is a known folding rule, else raise one line."""
    if fold not in FOLDS:
        raise ParameterError(f"fold={fold!r}: must be one of {', '.join(FOLDS)}")
    return fold


# --- the crossbar of one affine layer -------------------------------------------------------


def crossbar_layers(model: nn.Module) -> list[nn.Module]:
    """The model's affine layers computed on crossbars, in module order.

    Every :class:`torch.nn.Linear` and :class:`torch.nn.Conv2d` (groups = 1) is one crossbar.

    Raises:
        ParameterError: a grouped convolution (not one matrix-vector product).
    """
    layers = [m for m in model.modules() if isinstance(m, CROSSBAR_LAYERS)]
    for m in layers:
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ParameterError(f"{m}: grouped convolutions are not one crossbar; "
                                 "allowed: groups=1")
    return layers


def _maxima(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    w = layer.weight.detach()
    wmax = w.abs().amax()
    bmax = (layer.bias.detach().abs().amax() if layer.bias is not None
            else torch.zeros((), device=w.device, dtype=w.dtype))
    return wmax, bmax


def folding_scale(layer: nn.Module, fold: str = "range") -> tuple[torch.Tensor, torch.Tensor]:
    """The folding constant ``s`` and the dynamic range ``max |W~_ij|`` of a layer's crossbar.

    ``fold="range"`` (Fig. 5): ``s = max|b| / max|W|``, so that ``b/s`` spans the range of
    ``W``; the range is then ``max|W|``. A layer without bias (or with ``b = 0``) needs no bias
    column: ``s = 0``. ``fold="unit"``: the naive ``s = 1``, range ``max(max|W|, max|b|)``.

    Args:
        layer: an :class:`torch.nn.Linear` or :class:`torch.nn.Conv2d`.
        fold: ``"range"`` or ``"unit"``.

    Returns:
        ``(s, range)`` as 0-d tensors on the layer's device (no host synchronization).
    """
    check_fold(fold)
    wmax, bmax = _maxima(layer)
    if fold == "unit":
        one = torch.ones_like(wmax)
        return (one if layer.bias is not None else torch.zeros_like(wmax)), torch.maximum(wmax,
                                                                                         bmax)
    ok = (bmax > 0) & (wmax > 0)
    s = torch.where(ok, bmax / torch.where(wmax > 0, wmax, torch.ones_like(wmax)),
                    torch.where(bmax > 0, torch.ones_like(bmax), torch.zeros_like(bmax)))
    rng = torch.where(wmax > 0, wmax, bmax)
    return s, rng


def folded_matrix(layer: nn.Module, fold: str = "range") -> tuple[torch.Tensor, float]:
    """The crossbar matrix ``W~ = [W  b/s]`` of a layer and its folding constant ``s``.

    A convolution's kernel is unrolled to ``(out_channels, in_channels * kh * kw)``. Without a
    bias column (``s = 0``) the last column is zero.

    Returns:
        ``(W~, s)``: a tensor (out, fan_in + 1) and a float.
    """
    s, _ = folding_scale(layer, fold)
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    s_val = float(s)
    if layer.bias is not None and s_val > 0:
        col = layer.bias.detach() / s_val
    else:
        col = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    return torch.cat([w, col[:, None]], dim=1), s_val


def folded_forward(layer: nn.Module, x: torch.Tensor, fold: str = "range",
                   matrix: torch.Tensor | None = None) -> torch.Tensor:
    """Compute a layer as the crossbar product ``W~ x~`` with ``x~ = [x; s]``.

    Args:
        layer: an :class:`torch.nn.Linear` or :class:`torch.nn.Conv2d`.
        x: the layer's input.
        fold: the folding rule of ``s``.
        matrix: a (possibly perturbed) crossbar matrix to use instead of the layer's own ``W~``.

    Returns:
        The layer's output, computed explicitly through the folded matrix.
    """
    wt, s = folded_matrix(layer, fold)
    if matrix is not None:
        wt = matrix
    if isinstance(layer, nn.Linear):
        xt = torch.cat([x, torch.full((*x.shape[:-1], 1), s, dtype=x.dtype, device=x.device)],
                       dim=-1)
        return xt @ wt.t()
    if isinstance(layer.padding, str):
        raise ParameterError("folded_forward: string padding is not supported; allowed: ints")
    kh, kw = layer.kernel_size
    cols = F.unfold(x, (kh, kw), dilation=layer.dilation, padding=layer.padding,
                    stride=layer.stride)
    xt = torch.cat([cols, torch.full((cols.shape[0], 1, cols.shape[2]), s, dtype=x.dtype,
                                     device=x.device)], dim=1)
    out = wt @ xt
    h = (x.shape[2] + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) \
        // layer.stride[0] + 1
    w = (x.shape[3] + 2 * layer.padding[1] - layer.dilation[1] * (kw - 1) - 1) \
        // layer.stride[1] + 1
    return out.reshape(x.shape[0], wt.shape[0], h, w)


# --- noise models -------------------------------------------------------------------------


#: How a device drift acts on a stored number (see the module text).
SHIFT_MODELS = ("pair", "single")


@dataclass(frozen=True)
class GaussianPerturbation:
    """Gaussian perturbation of every crossbar entry, ``nu_ij ~ N(0, (sigma R)^2)``, and a
    device drift ``shift``.

    ``R = max_ij |W~_ij|`` is the dynamic range of the layer's crossbar as mapped from its
    weights (Fig. 3 of the poster: programming error and conductance variation scale with the
    device's dynamic range). The poster's p(nu), and HA-SGD's training distribution q. The
    drift acts after programming: ``W~ -> (1 + shift)(W~ + nu)`` on differential pairs (the
    default), ``W~ -> W~ + nu + shift R`` on single devices (see the module text).

    Raises:
        ParameterError: a negative or non-finite ``sigma``, a non-finite ``shift``, or an
            unknown ``shift_model``.
    """

    sigma: float = 0.0
    """Standard deviation of nu_ij as a fraction of the dynamic range R (sigma; 0.05 is the
    poster's "5 % noise"). Dimensionless, >= 0."""

    shift: float = 0.0
    """The device drift: on pairs, each device's relative conductance change (the gain
    1 + shift of the stored number); on single devices, the mean of nu_ij as a fraction of
    the dynamic range R. Dimensionless, any sign (> -1 on pairs)."""

    shift_model: str = "pair"
    """``"pair"`` (the poster's differential pair, Fig. 2) or ``"single"`` (one device with an
    offset mapping; an ablation)."""

    def __post_init__(self) -> None:
        if self.shift_model not in SHIFT_MODELS:
            raise ParameterError(f"shift_model={self.shift_model!r}: must be one of "
                                 f"{', '.join(SHIFT_MODELS)}")
        if (isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float))
                or not math.isfinite(self.sigma) or self.sigma < 0):
            raise ParameterError(f"sigma={self.sigma!r}: must be a float >= 0 "
                                 "(fraction of the dynamic range)")
        if (isinstance(self.shift, bool) or not isinstance(self.shift, (int, float))
                or not math.isfinite(self.shift)):
            raise ParameterError(f"shift={self.shift!r}: must be a finite float "
                                 "(fraction of the dynamic range)")
        if self.shift_model == "pair" and self.shift <= -1:
            raise ParameterError(f"shift={self.shift!r}: a pair's relative drift must be > -1 "
                                 "(a conductance cannot reach zero or below)")

    @property
    def is_zero(self) -> bool:
        """True when it perturbs nothing (ideal, digital hardware)."""
        return self.sigma == 0 and self.shift == 0


#: Ideal hardware: no perturbation.
IDEAL = GaussianPerturbation(0.0, 0.0)


class Crossbars:
    """Every crossbar of a model, and one perturbation of them all (one hardware instance).

    The weights are perturbed in place, ``W <- W + nu_W`` and ``b <- b + s nu_b`` (the bias
    column holds ``b/s``), from one standard-normal draw of the whole model, and restored
    exactly afterwards. Buffers are allocated once, so a training step pays only for the draw.

    Args:
        model: any torch model; its :class:`~torch.nn.Linear` and :class:`~torch.nn.Conv2d`
            layers are the crossbars.
        fold: the folding rule of the bias column, ``"range"`` (Fig. 5) or ``"unit"``.
    """

    def __init__(self, model: nn.Module, fold: str = "range") -> None:
        self.fold = check_fold(fold)
        self.layers = crossbar_layers(model)
        self.params: list[tuple[nn.Module, torch.Tensor, str]] = []
        for layer in self.layers:
            self.params.append((layer, layer.weight, "weight"))
            if layer.bias is not None:
                self.params.append((layer, layer.bias, "bias"))
        total = sum(p.numel() for _, p, _ in self.params)
        ref = self.params[0][1] if self.params else torch.empty(0)
        self._noise = torch.empty(total, dtype=ref.dtype, device=ref.device)
        self._saved = torch.empty_like(self._noise)
        self._views: list[tuple[torch.Tensor, torch.Tensor]] = []
        at = 0
        for _, p, _ in self.params:
            n = p.numel()
            self._views.append((self._noise[at:at + n].view_as(p),
                                self._saved[at:at + n].view_as(p)))
            at += n
        self.perturbed = False

    @property
    def size(self) -> int:
        """Number of crossbar entries perturbed (weights and bias columns)."""
        return self._noise.numel()

    @torch.no_grad()
    def perturb(self, noise: GaussianPerturbation, generator: torch.Generator | None = None
                ) -> None:
        """Add one draw of ``noise`` to every crossbar (restore with :meth:`restore`)."""
        if self.perturbed:
            raise RuntimeError("crossbars already perturbed: call restore() first")
        scales = []
        for layer in self.layers:
            s, rng = folding_scale(layer, self.fold)
            scales.append((layer, s, rng))
        by_layer = {id(layer): (s, rng) for layer, s, rng in scales}
        for (_, p, _), (_, saved) in zip(self.params, self._views):
            saved.copy_(p)
        if noise.sigma > 0:
            self._noise.normal_(generator=generator)
        pair = noise.shift_model == "pair"
        for (layer, p, kind), (nu, _) in zip(self.params, self._views):
            s, rng = by_layer[id(layer)]
            scale = rng if kind == "weight" else rng * s
            if noise.sigma > 0:
                p.addcmul_(nu, scale * noise.sigma)
            if noise.shift != 0:
                if pair:  # each device of the pair drifts in proportion: a gain
                    p.mul_(1.0 + noise.shift)
                else:  # one device, offset mapping: every entry moves by shift R
                    p.add_(scale * noise.shift)
        self.perturbed = True

    @torch.no_grad()
    def restore(self) -> None:
        """Put the unperturbed weights back, exactly."""
        if not self.perturbed:
            return
        for (_, p, _), (_, saved) in zip(self.params, self._views):
            p.copy_(saved)
        self.perturbed = False

    @contextlib.contextmanager
    def instance(self, noise: GaussianPerturbation, seed: int | None = None,
                 generator: torch.Generator | None = None) -> Iterator[None]:
        """Within the block the model runs on one hardware instance (one draw of ``noise``).

        Args:
            noise: the perturbation model.
            seed: the instance's seed (the same seed gives the same instance on a device).
            generator: a generator to draw from instead of a seed.
        """
        if generator is None and seed is not None:
            generator = torch.Generator(device=self._noise.device).manual_seed(int(seed))
        self.perturb(noise, generator)
        try:
            yield
        finally:
            self.restore()


# --- ADCs ---------------------------------------------------------------------------------


class ADC:
    """Low-resolution ADCs: each crossbar's output quantized to ``2**bits`` levels.

    Calibration rule (the poster gives none): each layer's ADC range is ``[min, max]`` of that
    layer's outputs on a calibration batch, computed once with the noise-free network in eval
    mode (and widened to contain 0). The ``2**bits`` levels are uniform with step
    ``delta = (hi - lo) / (2**bits - 1)`` and placed so that 0 is one of them, as in the affine
    quantization of integer inference: ``(k - z) delta`` for ``k = 0 .. 2**bits - 1`` with the
    zero point ``z = round(-lo / delta)``, which moves the calibrated range by less than half a
    step. An output outside the levels saturates at the first or the last. In training (if
    used), gradients pass straight through the quantizer.

    Args:
        bits: the ADC resolution B, 1 to 16.

    Raises:
        ParameterError: ``bits`` not an integer in [1, 16].
    """

    def __init__(self, bits: int) -> None:
        if (isinstance(bits, bool) or not isinstance(bits, (int, np.integer))
                or not 1 <= bits <= 16):
            raise ParameterError(f"bits={bits!r}: must be an int in [1, 16]")
        self.bits = int(bits)
        self.ranges: list[tuple[float, float]] = []

    @property
    def levels(self) -> int:
        """Number of output levels, ``2**bits``."""
        return 2 ** self.bits

    def step_and_zero(self, lo: float, hi: float) -> tuple[float, int]:
        """The step ``delta`` and the zero point ``z`` of the levels for a range ``[lo, hi]``."""
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        step = (hi - lo) / (self.levels - 1)
        return step, (round(-lo / step) if step > 0 else 0)

    def quantize(self, u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        """``u`` rounded to the nearest of the ``2**bits`` levels of the range ``[lo, hi]``."""
        step, zero = self.step_and_zero(lo, hi)
        if step == 0:
            return torch.zeros_like(u)
        q = ((torch.round(u / step) + zero).clamp(0, self.levels - 1) - zero) * step
        return u + (q - u).detach() if u.requires_grad else q

    @torch.no_grad()
    def calibrate(self, model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> "ADC":
        """Set every layer's range from the noise-free outputs on ``x``; returns self."""
        layers = crossbar_layers(model)
        lo = [math.inf] * len(layers)
        hi = [-math.inf] * len(layers)

        def record(i: int, out: torch.Tensor) -> None:
            a, b = torch.aminmax(out)
            lo[i], hi[i] = min(lo[i], float(a)), max(hi[i], float(b))

        observe_outputs(model, layers, x, record, batch_size)
        self.ranges = list(zip(lo, hi))
        return self

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[None]:
        """Within the block every crossbar output of ``model`` goes through its ADC."""
        layers = crossbar_layers(model)
        if len(self.ranges) != len(layers):
            raise ParameterError("ADC not calibrated for this model: call calibrate() first")

        def hook(lo, hi):
            return lambda _m, _inp, out: self.quantize(out, lo, hi)

        handles = [m.register_forward_hook(hook(lo, hi))
                   for m, (lo, hi) in zip(layers, self.ranges)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


# --- the family behind the hardware interface -------------------------------------------------


class CrossbarChip(Chip):
    """One chip of analog crossbars: one draw of the perturbation of every crossbar of a model
    (from its seed, or from a generator at each attachment), plus the ADCs if any.

    While attached, the weights hold ``W + nu`` (in place, restored exactly on exit), so that
    in training the gradient is taken at the perturbed point, as in Algorithm 1 of HA-SGD.
    """

    def __init__(self, hardware: "AnalogCrossbar", seed: int | None = None,
                 generator: torch.Generator | None = None, noisy: bool = True) -> None:
        super().__init__(hardware, seed)
        self.generator = generator
        self.noisy = noisy

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:  # noqa: D102
        hw: AnalogCrossbar = self.hardware  # type: ignore[assignment]
        noise = hw.noise if self.noisy else GaussianPerturbation(0.0, hw.noise.shift,
                                                                  hw.noise.shift_model)
        adc = hw.adc.attached(model) if hw.adc is not None else contextlib.nullcontext()
        with adc:
            if noise.is_zero:
                yield model
                return
            bars = hw.crossbars(model)
            gen = self.generator
            if gen is None and self.seed is not None:
                gen = torch.Generator(device=bars._noise.device).manual_seed(int(self.seed))
            bars.perturb(noise, gen)
            try:
                yield model
            finally:
                bars.restore()


class AnalogCrossbar(Hardware):
    """Analog non-volatile-memory compute-in-memory: every Linear and Conv2d layer on a
    crossbar whose entries are perturbed, ``W~ -> W~ + nu``, with ``nu ~ N(shift R,
    (sigma R)^2)`` and R the crossbar's dynamic range (the HA-SGD poster's p(nu)), optionally
    followed by low-resolution ADCs.

    Args:
        noise: the perturbation (sigma, shift as fractions of the dynamic range).
        fold: the folding constant s of the bias column: ``"range"`` (Fig. 5) or ``"unit"``.
        adc: calibrated ADCs quantizing every crossbar's output, or None.
    """

    family = "crossbar"

    def __init__(self, noise: GaussianPerturbation = GaussianPerturbation(),
                 fold: str = "range", adc: ADC | None = None) -> None:
        super().__init__()
        if not isinstance(noise, GaussianPerturbation):
            raise ParameterError(f"noise={noise!r}: must be a GaussianPerturbation")
        self.noise = noise
        self.fold = check_fold(fold)
        self.adc = adc
        self._bars: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def crossbars(self, model: nn.Module) -> Crossbars:
        """The :class:`Crossbars` of ``model`` (built once per model; its buffers are reused)."""
        bars = self._bars.get(model)
        if bars is None:
            bars = Crossbars(model, self.fold)
            self._bars[model] = bars
        return bars

    def _sample(self, seed: int) -> CrossbarChip:
        return CrossbarChip(self, seed)

    def fresh(self, generator: torch.Generator | None) -> CrossbarChip:
        """A chip drawn from ``generator`` when attached (one draw per attachment)."""
        return CrossbarChip(self, None, generator)

    def expected(self) -> CrossbarChip:
        """The mean chip: the device shift but no noise (and the ADCs, if any)."""
        return CrossbarChip(self, None, None, noisy=False)

    @property
    def deterministic(self) -> bool:  # noqa: D102
        return self.noise.sigma == 0

    @property
    def is_ideal(self) -> bool:  # noqa: D102
        return self.noise.is_zero and self.adc is None

    def config(self) -> dict[str, Any]:  # noqa: D102
        return {"family": self.family, "sigma": self.noise.sigma, "shift": self.noise.shift,
                "shift_model": self.noise.shift_model, "fold": self.fold,
                "adc_bits": self.adc.bits if self.adc is not None else 0}
