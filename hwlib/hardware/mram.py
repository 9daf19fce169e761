"""MRAM bit cells for in-memory computing (S-DDHR, Zhang, Chen & Verma).

A magnetic tunnel junction stores a bit as its parallel (P) or anti-parallel (AP) resistance.
Device-to-device variation makes both Gaussian (paper, Sec. 4.3):

    R_P ~ N(mu_P, sigma_P^2),   R_AP ~ N(mu_AP, sigma_AP^2),   G = 1 / R.

To first order in sigma/mu the conductances are Gaussian too,
G ~ N(1/mu, sigma^2/mu^4) (the paper's result, valid for mu >> sigma). This module gives that
form, its second-order correction, the exact density of G, and Monte Carlo samples.

Choices where the paper is silent (its foundry data is confidential and normalized):

* nominal sigma/mu = 0.05 for both states: the measured spread of a 40-nm STT-MRAM
  compute-in-memory chip (R_P 5.1 %, R_AP 5.2 %; Nature Electronics 8, 1046, 2025) and the
  values in the public simulator of one of the paper's authors (5.3 % in both states;
  github.com/lungyenc/mram_mult); mu_P = 3 kOhm and TMR = 100 % (mu_AP = 2 mu_P), between
  those two sources' 2.1-3.4 kOhm and 115-173 %;
* a Gaussian resistance can be negative. Samples are clipped at ``r_min_rel * mu``
  (default 0.1): without a floor 1/R has no finite mean at any sigma > 0, and a real cell has
  a minimum resistance.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .base import Chip, Hardware, float32_products

#: Default nominal relative spread sigma/mu of R_P and R_AP (this book's choice).
SIGMA_REL_NOMINAL = 0.05
#: Default mean parallel resistance mu_P, ohm.
MU_P_OHM = 3_000.0
#: Default tunnel magnetoresistance ratio (mu_AP - mu_P) / mu_P.
TMR = 1.0
#: Default resistance floor, as a fraction of the state's mean.
R_MIN_REL = 0.1


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    bad = not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero)
    if bad:
        what = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name}={value!r}: must be a finite number {what}")


@dataclass(frozen=True)
class MRAMCell:
    """The resistance distributions of an MTJ bit cell's two states.

    Attributes:
        mu_p: mean parallel resistance mu_P, ohm.
        sigma_p: standard deviation of R_P, sigma_P, ohm.
        mu_ap: mean anti-parallel resistance mu_AP, ohm.
        sigma_ap: standard deviation of R_AP, sigma_AP, ohm.
        r_min_rel: resistance floor as a fraction of each state's mean (samples are clipped).
    """

    mu_p: float = MU_P_OHM
    sigma_p: float = SIGMA_REL_NOMINAL * MU_P_OHM
    mu_ap: float = MU_P_OHM * (1 + TMR)
    sigma_ap: float = SIGMA_REL_NOMINAL * MU_P_OHM * (1 + TMR)
    r_min_rel: float = R_MIN_REL

    def __post_init__(self) -> None:
        _positive("mu_p", self.mu_p)
        _positive("mu_ap", self.mu_ap)
        _positive("sigma_p", self.sigma_p, allow_zero=True)
        _positive("sigma_ap", self.sigma_ap, allow_zero=True)
        if not 0 < self.r_min_rel <= 1:
            raise ParameterError(f"r_min_rel={self.r_min_rel!r}: must be in (0, 1]")

    @classmethod
    def from_variation(cls, sigma_rel: float = SIGMA_REL_NOMINAL, scale: float = 1.0,
                       mu_p: float = MU_P_OHM, tmr: float = TMR,
                       r_min_rel: float = R_MIN_REL) -> "MRAMCell":
        """A cell with both states at relative spread ``scale * sigma_rel``.

        Args:
            sigma_rel: nominal sigma/mu of both states.
            scale: the multiple of the nominal variation (the paper's "k x sigma_MRAM").
            mu_p: mean parallel resistance, ohm.
            tmr: tunnel magnetoresistance ratio; mu_AP = mu_P (1 + TMR).
            r_min_rel: resistance floor as a fraction of the mean.
        """
        _positive("sigma_rel", sigma_rel, allow_zero=True)
        _positive("scale", scale, allow_zero=True)
        _positive("tmr", tmr)
        mu_ap = mu_p * (1 + tmr)
        s = sigma_rel * scale
        return cls(mu_p, s * mu_p, mu_ap, s * mu_ap, r_min_rel)

    def state(self, which: str) -> tuple[float, float]:
        """(mu, sigma) of state ``"P"`` or ``"AP"``, ohm."""
        if which == "P":
            return self.mu_p, self.sigma_p
        if which == "AP":
            return self.mu_ap, self.sigma_ap
        raise ParameterError(f"state={which!r}: must be 'P' or 'AP'")


def g_moments_first_order(mu: float, sigma: float) -> tuple[float, float]:
    """The paper's first-order conductance moments: G ~ N(1/mu, sigma^2/mu^4).

    Args:
        mu: mean resistance, ohm.
        sigma: resistance standard deviation, ohm.

    Returns:
        (mean, variance) of G, in siemens and siemens^2.
    """
    _positive("mu", mu)
    _positive("sigma", sigma, allow_zero=True)
    return 1.0 / mu, sigma**2 / mu**4


def g_moments_second_order(mu: float, sigma: float) -> tuple[float, float]:
    """Conductance moments to second order in eps = sigma/mu.

    Expanding 1/R = (1/mu)(1 - x + x^2 - x^3 + ...), x = eps Z, Z ~ N(0, 1):
    E[G] = (1/mu)(1 + eps^2) and Var[G] = (sigma^2/mu^4)(1 + 8 eps^2), each up to O(eps^4)
    relative terms. The first-order mean is thus off by eps^2 and the variance by 8 eps^2.

    Returns:
        (mean, variance) of G, in siemens and siemens^2.
    """
    _positive("mu", mu)
    _positive("sigma", sigma, allow_zero=True)
    eps2 = (sigma / mu) ** 2
    return (1.0 + eps2) / mu, sigma**2 / mu**4 * (1.0 + 8.0 * eps2)


def g_density(g: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """Exact density of G = 1/R for R ~ N(mu, sigma^2) (no floor), at conductances ``g``
    (sigma > 0; a point mass has no density).

    f_G(g) = phi((1/g - mu) / sigma) / (sigma g^2), by the change of variables R = 1/G.
    """
    _positive("mu", mu)
    _positive("sigma", sigma)
    g = np.asarray(g, dtype=float)
    out = np.zeros_like(g)  # the density tends to 0 at g = 0
    nz = g != 0  # g < 0: the (tiny) mass of negative resistances
    z = (1.0 / g[nz] - mu) / sigma
    out[nz] = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi) * g[nz] ** 2)
    return out


def g_moments_exact(mu: float, sigma: float, r_min_rel: float = R_MIN_REL
                    ) -> tuple[float, float]:
    """Exact mean and variance of the device model's conductance, G = 1 / max(R, r_min),
    R ~ N(mu, sigma^2), r_min = ``r_min_rel * mu``, by numerical quadrature.

    Beside :func:`g_moments_first_order` (the paper's) this shows what the first-order form
    leaves out: the mean rises by about (sigma/mu)^2 relative, and at large sigma/mu the
    floor's tail (P(R < r_min) cells at conductance 1/r_min) dominates the variance.

    Returns:
        (mean, variance) of G, in siemens and siemens^2.
    """
    from scipy import integrate, stats

    _positive("mu", mu)
    _positive("sigma", sigma, allow_zero=True)
    if not 0 < r_min_rel <= 1:
        raise ParameterError(f"r_min_rel={r_min_rel!r}: must be in (0, 1]")
    if sigma == 0:
        return 1.0 / mu, 0.0
    r0 = r_min_rel * mu
    below = stats.norm.cdf((r0 - mu) / sigma)
    hi = mu + 12 * sigma
    pdf = stats.norm(mu, sigma).pdf
    kink = [x for x in (mu - 3 * sigma, mu, mu + 3 * sigma) if r0 < x < hi]
    m1 = below / r0 + integrate.quad(lambda r: pdf(r) / r, r0, hi, points=kink, limit=200,
                                     epsabs=0, epsrel=1e-12)[0]
    m2 = below / r0**2 + integrate.quad(lambda r: pdf(r) / r**2, r0, hi, points=kink,
                                        limit=200, epsabs=0, epsrel=1e-12)[0]
    return m1, m2 - m1**2


def preactivation_shift(u_ideal, M: int, cell: MRAMCell):
    """Mean and standard deviation of u_n on chips of the device model, given the ideal
    pre-activation u = p1 - p-1: the exact moments of G = 1/R (:func:`g_moments_exact`)
    through :func:`conductance_to_preactivation`.

    The first-order model (PS-DDHR's) has mean u and the std of :func:`preactivation_std`;
    the device model's mean is shifted by 2 (p1 dG_P + p-1 dG_AP) / (G_P0 - G_AP0), with dG
    each state's mean rise over 1/mu: an offset that grows with M (sigma/mu)^2.

    Returns:
        ``(shift, std)``: E[u_n] - u and the std of u_n, like ``u_ideal``.
    """
    _check_u(u_ideal, M)
    ep, vp = g_moments_exact(cell.mu_p, cell.sigma_p, cell.r_min_rel)
    eap, vap = g_moments_exact(cell.mu_ap, cell.sigma_ap, cell.r_min_rel)
    gp, gap = 1.0 / cell.mu_p, 1.0 / cell.mu_ap
    dg = gp - gap
    p1, pm = (M + u_ideal) / 2, (M - u_ideal) / 2
    shift = 2 * (p1 * (ep - gp) + pm * (eap - gap)) / dg
    std = (4 * (p1 * vp + pm * vap) / dg**2) ** 0.5
    return shift, std


def _check_u(u, M: int) -> None:
    if not isinstance(M, (int, np.integer)) or M < 1:
        raise ParameterError(f"M={M!r}: must be a whole number >= 1")
    bound = float(u.detach().abs().max()) if isinstance(u, torch.Tensor) \
        else float(np.max(np.abs(u)))
    if not bound <= M:
        raise ParameterError(f"u_ideal: an M={M}-row column's pre-activation lies in [-M, M]; "
                             f"got |u| up to {bound:g}")


def read_error_rate(cell: MRAMCell) -> float:
    """The bit error rate of a conventional memory read of this cell: the reference resistance
    at the geometric mean sqrt(mu_P mu_AP), a P cell read wrong when R_P is above it and an AP
    cell when R_AP is below it, averaged over the two states (Gaussian resistances). It says
    what a variation level means for the same cells used as plain memory."""
    from scipy import stats

    ref = math.sqrt(cell.mu_p * cell.mu_ap)
    wrong_p = stats.norm.sf(ref, cell.mu_p, cell.sigma_p) if cell.sigma_p > 0 else 0.0
    wrong_ap = stats.norm.cdf(ref, cell.mu_ap, cell.sigma_ap) if cell.sigma_ap > 0 else 0.0
    return 0.5 * (float(wrong_p) + float(wrong_ap))


def prob_below_floor(mu: float, sigma: float, r_min_rel: float) -> float:
    """P(R < r_min_rel * mu): the fraction of cells the floor clips."""
    if sigma == 0:
        return 0.0
    z = (r_min_rel * mu - mu) / sigma
    return 0.5 * math.erfc(-z / math.sqrt(2))


def sample_resistance(mu: float, sigma: float, shape: tuple[int, ...] | int,
                      generator: torch.Generator, r_min_rel: float = R_MIN_REL,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Draw resistances R ~ N(mu, sigma^2), clipped at ``r_min_rel * mu``, ohm (on the
    generator's device)."""
    r = torch.randn(shape, generator=generator, dtype=dtype,
                    device=generator.device).mul_(sigma).add_(mu)
    return r.clamp_(min=r_min_rel * mu)


# --- In-memory XNOR matrix-vector multiply (paper, Sec. 4.2 and 4.3) -----------------------


def column_levels(M: int, cell: MRAMCell, order: str = "first"):
    """The M+1 Gaussian levels of the column conductance ``G_n = p1 G_P + p-1 G_AP``.

    With M rows, p1 (the number of XNOR products equal to +1 in column n) takes the values
    0..M and p-1 = M - p1. For independent cells::

        E[G_n] = p1 E[G_P] + p-1 E[G_AP],   Var[G_n] = p1 Var[G_P] + p-1 Var[G_AP].

    Args:
        M: the number of rows (the layer's fan-in).
        cell: the bit cell's resistance distributions.
        order: the cell moments used: ``"first"`` (the paper's) or ``"second"``.

    Returns:
        ``(p1, mean, var)``: numpy arrays of length M+1 (siemens, siemens^2).
    """
    if not isinstance(M, int) or M < 1:
        raise ParameterError(f"M={M!r}: must be a whole number >= 1")
    moments = {"first": g_moments_first_order, "second": g_moments_second_order}
    if order not in moments:
        raise ParameterError(f"order={order!r}: must be 'first' or 'second'")
    mp, vp = moments[order](cell.mu_p, cell.sigma_p)
    map_, vap = moments[order](cell.mu_ap, cell.sigma_ap)
    p1 = np.arange(M + 1, dtype=float)
    return p1, p1 * mp + (M - p1) * map_, p1 * vp + (M - p1) * vap


def conductance_to_preactivation(g_n, M: int, cell: MRAMCell):
    """Map a column conductance back to the binarized layer's pre-activation.

    u_n = (2 G_n - M (G_P0 + G_AP0)) / (G_P0 - G_AP0), with the nominal conductances
    G_P0 = 1/mu_P and G_AP0 = 1/mu_AP. At nominal conductances u_n = p1 - p-1, the
    exact XNOR-popcount pre-activation sum_m W_mn a_m.
    """
    gp, gap = 1.0 / cell.mu_p, 1.0 / cell.mu_ap
    return (2 * g_n - M * (gp + gap)) / (gp - gap)


def preactivation_std(u_ideal, M: int, cell: MRAMCell):
    """PS-DDHR's standard deviation of u_n given the ideal pre-activation (first order).

    With p1 = (M + u)/2 and p-1 = (M - u)/2, Var[u_n] = 4 (p1 sigma_GP^2 + p-1
    sigma_GAP^2) / (G_P0 - G_AP0)^2, where sigma_G^2 = sigma^2/mu^4 (paper, Sec. 4.3).
    Works on numbers, numpy arrays and torch tensors alike; ``|u| > M`` is refused (no column
    of M rows computes it).
    """
    _check_u(u_ideal, M)
    return _first_order_std(u_ideal, M, cell)


def _first_order_std(u_ideal, M: int, cell: MRAMCell):
    """:func:`preactivation_std` without the input check (the training hot path)."""
    _, vp = g_moments_first_order(cell.mu_p, cell.sigma_p)
    _, vap = g_moments_first_order(cell.mu_ap, cell.sigma_ap)
    dg = 1.0 / cell.mu_p - 1.0 / cell.mu_ap
    var = (2.0 * ((M + u_ideal) * vp + (M - u_ideal) * vap)) / dg**2
    return var**0.5


def as_ddhr_std(M: int, cell: MRAMCell) -> float:
    """AS-DDHR's fixed sigma_A of u_n: the largest of the M+1 level standard deviations."""
    return float(max(preactivation_std(-M, M, cell), preactivation_std(M, M, cell)))


@dataclass(frozen=True)
class ArrayInstance:
    """One hardware instance of an M x N XNOR array: every cell's fixed conductances.

    Each weight W_mn has two complementary bit cells; the word lines select cell ``+`` when
    a_m = +1 and cell ``-`` when a_m = -1. Every cell has its own sampled conductance in the
    P state and in the AP state (device-to-device variation, fixed for all inputs).

    Attributes:
        g_p: (2, M, N) or (I, 2, M, N) conductances of each cell in the P state, siemens.
        g_ap: the same in the AP state.
        cell: the distributions they were drawn from.
    """

    g_p: torch.Tensor
    g_ap: torch.Tensor
    cell: MRAMCell

    @classmethod
    def sample(cls, M: int, N: int, cell: MRAMCell, seed: int, instances: int | None = None,
               dtype: torch.dtype = torch.float32, model: str = "conductance",
               device: torch.device | str = "cpu") -> "ArrayInstance":
        """Draw one instance (or ``instances`` of them, stacked first), reproducibly from
        ``seed``, on ``device``.

        Args:
            M: rows.
            N: columns.
            cell: the resistance distributions.
            seed: the instance's seed (with a generator on ``device``: the same seed gives
                the same instance on one kind of device; CPU and CUDA draw different streams
                from the same distribution).
            instances: stack this many instances (``None``: one, unstacked).
            dtype: the dtype the draws are made and kept in (float32 by default: a relative
                precision of 1e-7, far below any variation level).
            model: ``"conductance"``: G ~ N(1/mu, sigma^2/mu^4), the paper's first-order model
                of Sec. 4.3 (negative draws clipped at 0); ``"resistance"``: R ~ N(mu, sigma^2)
                clipped at ``r_min_rel * mu`` and G = 1/R, the device model behind it, whose
                mean conductance is higher by about (sigma/mu)^2.
            device: where the instance is drawn and kept.
        """
        gen = torch.Generator(device=torch.device(device)).manual_seed(int(seed))
        shape = (2, M, N) if instances is None else (instances, 2, M, N)
        if model == "resistance":
            g_p = sample_resistance(cell.mu_p, cell.sigma_p, shape, gen, cell.r_min_rel,
                                    dtype).reciprocal_()
            g_ap = sample_resistance(cell.mu_ap, cell.sigma_ap, shape, gen, cell.r_min_rel,
                                     dtype).reciprocal_()
        elif model == "conductance":
            draws = []
            for mu, sigma in ((cell.mu_p, cell.sigma_p), (cell.mu_ap, cell.sigma_ap)):
                m, v = g_moments_first_order(mu, sigma)
                draws.append(torch.randn(shape, generator=gen, dtype=dtype, device=gen.device)
                             .mul_(math.sqrt(v)).add_(m).clamp_(min=0.0))
            g_p, g_ap = draws
        else:
            raise ParameterError(f"model={model!r}: must be 'conductance' or 'resistance'")
        return cls(g_p, g_ap, cell)

    def _cells(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conductances read through cell + (a_m = +1) and cell - (a_m = -1) of each weight."""
        wp = (w > 0).to(self.g_p.dtype)
        wn = 1 - wp
        # cell + stores W, cell - stores -W: each is in P when the XNOR product is +1
        c_plus = wp * self.g_p[..., 0, :, :] + wn * self.g_ap[..., 0, :, :]
        c_minus = wn * self.g_p[..., 1, :, :] + wp * self.g_ap[..., 1, :, :]
        return c_plus, c_minus

    def column_conductance(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """G_n for inputs ``a`` (B, M) in {-1, +1} and weights ``w`` (M, N) in {-1, +1}.

        Returns (B, N), or (I, B, N) for stacked instances. Rows with a_m = +1 read cell +,
        rows with a_m = -1 read cell -.
        """
        c_plus, c_minus = self._cells(w)
        ap = (a > 0).to(self.g_p.dtype)
        an = (a < 0).to(self.g_p.dtype)
        return ap @ c_plus + an @ c_minus

    def effective_weights(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The instance as two real weight matrices: ``u = a @ W_odd + abs(a) @ W_even``.

        Each active row m adds (2 g_sel - G_P0 - G_AP0) / (G_P0 - G_AP0) to u_n, where g_sel
        is the selected cell's conductance; a row with a_m = 0 (convolution padding) selects
        no cell and adds nothing. At nominal conductances W_odd = W and W_even = 0.

        Returns:
            ``(w_odd, w_even)``, each shaped like ``w`` (with a leading instance dimension for
            stacked instances).
        """
        c_plus, c_minus = self._cells(w)
        gp, gap = 1.0 / self.cell.mu_p, 1.0 / self.cell.mu_ap
        dg = gp - gap
        return (c_plus - c_minus) / dg, (c_plus + c_minus - (gp + gap)) / dg

    def preactivation(self, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """u_n read from this instance, for inputs in {-1, 0, +1} (0: row not driven).

        For inputs in {-1, +1} this equals :func:`conductance_to_preactivation` of
        :meth:`column_conductance`. One matrix product as in an ideal layer, plus one with
        ``abs(a)`` (skipped when every row is driven).
        """
        w_odd, w_even = self.effective_weights(w)
        u = a.to(w_odd.dtype) @ w_odd
        mag = a.abs().to(w_odd.dtype)
        if bool((mag == 1).all()):
            return u + w_even.sum(dim=-2, keepdim=True)
        return u + mag @ w_even


# --- how a binarized layer's columns are read out: the layer-level hardware models Z ----------


class ExactReadout:
    """Variability-free columns: u = W a exactly (loss (3); the expected chip).

    Readouts compute in float32 whatever mixed precision a training loop runs
    (:func:`hwlib.hardware.base.float32_products`): the ideal readout's products of +-1 are
    exact in float32 and in TF32, but a bfloat16 sum of M of them is not (8 bits of mantissa);
    a chip's conductances keep full float32.
    """

    name = "ideal"
    #: Whether TF32 must be off too (a chip's real-valued conductances).
    exact = False

    def linear(self, layer: Any, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The layer's pre-activation for inputs ``a`` and binary weights ``w`` (N, M)."""
        with float32_products(w.device, self.exact):
            return self._linear(layer, a.float(), w.float())

    def conv(self, layer: Any, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The convolution's pre-activation (kernels unrolled: M = C k k rows)."""
        with float32_products(w.device, self.exact):
            return self._conv(layer, a.float(), w.float())

    def _linear(self, layer: Any, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(a, w)

    def _conv(self, layer: Any, a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(a, w, padding=layer.padding)


class _ThroughExpectation(torch.autograd.Function):
    """Forward ``u_z = a @ W_odd + abs(a) @ W_even`` (an instance); backward as ``u = a @ W^T``."""

    @staticmethod
    def forward(ctx, a, w, w_odd, even_sum):  # noqa: D102
        ctx.save_for_backward(a, w)
        return a @ w_odd + even_sum

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        a, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        return grad @ w, g2.t() @ a.reshape(-1, a.shape[-1]), None, None


def _even_term(a: torch.Tensor, w_even: torch.Tensor, pad: Any) -> torch.Tensor:
    """``conv(|a|, W_even)``: what every driven row adds to a column whatever its sign. When
    every input is +-1 (binary activations; only the zero padding is not driven) it is the
    same for every image: one convolution of an all-ones image, broadcast over the batch."""
    mag = a.detach().abs()
    if bool((mag == 1).all()):
        ones = torch.ones((1, *a.shape[1:]), dtype=a.dtype, device=a.device)
        return F.conv2d(ones, w_even, padding=pad)
    return F.conv2d(mag, w_even, padding=pad)


class InstanceReadout(ExactReadout):
    """Fixed hardware instances: every cell's resistance sampled once, reproducibly.

    Args:
        cell: the bit cells' resistance distributions (the variation level).
        seeds: one seed per instance; instance ``s`` gives layer ``k`` the array drawn with seed
            ``1000 * s + k``. The same seed at another variation level is the same chip with its
            deviations scaled.
        stacked: evaluate all instances in one pass (outputs gain a leading instance
            dimension); otherwise exactly one seed is allowed.
        model: ``"conductance"`` (Gaussian conductances, the paper's model) or
            ``"resistance"`` (Gaussian resistances, G = 1/R); see
            :meth:`ArrayInstance.sample`.
    """

    exact = True
    name = "instance"

    def __init__(self, cell: MRAMCell, seeds: Sequence[int], stacked: bool = False,
                 model: str = "conductance") -> None:
        self.cell = cell
        self.model = model
        self.seeds = [int(s) for s in seeds]
        self.stacked = stacked
        if not stacked and len(self.seeds) != 1:
            raise ParameterError(f"seeds={self.seeds}: one seed unless stacked=True")
        self._arrays: dict[tuple[int, int, int], ArrayInstance] = {}

    def array(self, layer: Any, M: int, N: int) -> ArrayInstance:
        """The (cached) array instance of one layer, drawn on the layer's device."""
        device = layer.weight.device
        key = (layer.array_index, M, N, str(device))  # a chip's arrays: seeded by layer index
        if key not in self._arrays:
            index = layer.array_index
            parts = [ArrayInstance.sample(M, N, self.cell, 1000 * s + index, model=self.model,
                                          device=device) for s in self.seeds]
            if self.stacked:
                arr = ArrayInstance(torch.stack([p.g_p for p in parts]),
                                    torch.stack([p.g_ap for p in parts]), self.cell)
            else:
                arr = parts[0]
            self._arrays[key] = arr
        return self._arrays[key]

    def _linear(self, layer, a, w):  # noqa: D102
        arr = self.array(layer, w.shape[1], w.shape[0])
        w_odd, w_even = arr.effective_weights(w.t())
        even_sum = w_even.sum(dim=-2, keepdim=True)
        if self.stacked or not torch.is_grad_enabled():
            return a @ w_odd + even_sum
        return _ThroughExpectation.apply(a, w, w_odd, even_sum)

    def _conv(self, layer, a, w):  # noqa: D102
        n, c, kh, kw = w.shape
        arr = self.array(layer, c * kh * kw, n)
        w_odd, w_even = arr.effective_weights(w.reshape(n, -1).t())
        pad = layer.padding

        def as_kernel(m):
            return m.t().reshape(n, c, kh, kw)

        if self.stacked:  # conv layers: one pass per instance
            return torch.stack([
                F.conv2d(a[i] if a.dim() == 5 else a, as_kernel(w_odd[i]), padding=pad)
                + _even_term(a[i] if a.dim() == 5 else a, as_kernel(w_even[i]), pad)
                for i in range(len(self.seeds))])
        u_z = F.conv2d(a, as_kernel(w_odd), padding=pad) + _even_term(a, as_kernel(w_even), pad)
        u = F.conv2d(a, w, padding=pad)
        return u + (u_z - u).detach()  # forward through z, gradient through E[Z]


class FreshReadout(ExactReadout):
    """A fresh chip for one training step, drawn from the device model on the layer's device.

    The chip a step computes through is a full array instance (:class:`InstanceReadout`),
    but a step reads each cell in one state only: cell ``+`` of weight W_mn is in P when
    W_mn = +1 and in AP otherwise, cell ``-`` the reverse. So only the two cells' current
    states are drawn: 2 M N numbers per array instead of 4 M N, in float32, on the torch
    device of the weights, from the step's generator (the same distribution as an instance's
    cells in those states; a different random stream). The forward pass runs through the
    instance, the gradient through the expected chip (Algorithm 1 of the paper), exactly as
    for :class:`InstanceReadout`.

    A fresh chip serves the forward pass of one step: its cells are drawn at the first pass
    through each layer and kept while the chip lives; the weights must not change sign in
    between (a training step discards its chip before the optimizer step).

    Args:
        cell: the bit cells' resistance distributions.
        generator: the step's generator (``None``: torch's global one). On CUDA, a CPU
            generator seeds a device generator once per chip.
        model: ``"resistance"`` (Gaussian resistances, G = 1/R, floored) or
            ``"conductance"`` (the first-order Gaussian conductances, floored at 0).
    """

    exact = True
    name = "fresh"

    def __init__(self, cell: MRAMCell, generator: torch.Generator | None,
                 model: str = "resistance") -> None:
        if model not in INSTANCE_MODELS:
            raise ParameterError(f"instance_model={model!r}: must be one of "
                                 f"{', '.join(INSTANCE_MODELS)}")
        self.cell = cell
        self.model = model
        self.generator = generator
        self._device_gens: dict[torch.device, torch.Generator] = {}
        self._drawn: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        gen = self.generator
        if gen is None or gen.device.type == device.type:
            return gen
        if device not in self._device_gens:
            seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
            self._device_gens[device] = torch.Generator(device).manual_seed(seed)
        return self._device_gens[device]

    def weights(self, layer: Any, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(w_odd, w_even)`` of this chip's array for binary weights ``w`` (M, N), as in
        :meth:`ArrayInstance.effective_weights` (drawn once per layer and chip).

        Each selected cell's conductance is G = g_s / max(1 + e_s z, r_min_rel) for Gaussian
        resistances (R = mu_s (1 + e_s z) floored at r_min_rel mu_s, G = 1/R) and
        G = g_s max(1 + e_s z, 0) for first-order conductances, with g_s = 1/mu_s and
        e_s = sigma_s/mu_s of the cell's state s and z ~ N(0, 1).
        """
        key = layer.array_index
        if key not in self._drawn:
            c = self.cell
            gp, gap = 1.0 / c.mu_p, 1.0 / c.mu_ap
            dg = gp - gap
            plus = (w > 0).to(torch.float32)  # 1: cell + in P and cell - in AP
            e_p, e_ap = c.sigma_p / c.mu_p, c.sigma_ap / c.mu_ap
            z = torch.randn((2, *w.shape), generator=self._generator(w.device),
                            dtype=torch.float32, device=w.device)
            if e_p == e_ap:
                t = z.mul_(e_p).add_(1.0)
            else:  # cell + has state P where plus, cell - has state P elsewhere
                sel = torch.stack((plus, 1.0 - plus))
                t = z.mul_(sel * (e_p - e_ap) + e_ap).add_(1.0)
            if self.model == "resistance":
                t = t.clamp_(min=c.r_min_rel).reciprocal_()
            else:
                t = t.clamp_(min=0.0)
            g_plus = t[0].mul_(plus * (gp - gap) + gap)
            g_minus = t[1].mul_(plus * (gap - gp) + gp)
            self._drawn[key] = ((g_plus - g_minus).div_(dg),
                                g_plus.add_(g_minus).sub_(gp + gap).div_(dg))
        return self._drawn[key]

    def _linear(self, layer, a, w):  # noqa: D102
        w_odd, w_even = self.weights(layer, w.t())
        even_sum = w_even.sum(dim=-2, keepdim=True)
        if not torch.is_grad_enabled():
            return a @ w_odd + even_sum
        return _ThroughExpectation.apply(a, w, w_odd, even_sum)

    def _conv(self, layer, a, w):  # noqa: D102
        n, c, kh, kw = w.shape
        w_odd, w_even = self.weights(layer, w.reshape(n, -1).t())
        pad = layer.padding
        u_z = (F.conv2d(a, w_odd.t().reshape(n, c, kh, kw), padding=pad)
               + _even_term(a, w_even.t().reshape(n, c, kh, kw), pad))
        u = F.conv2d(a, w, padding=pad)
        return u + (u_z - u).detach()  # forward through z, gradient through E[Z]


class ParametricReadout(ExactReadout):
    """PS-DDHR: u_n ~ N(W a, sigma^2(a, W)), resampled at every forward pass (first order)."""

    exact = True
    name = "ps_ddhr"

    def __init__(self, cell: MRAMCell) -> None:
        self.cell = cell

    def _noisy(self, u: torch.Tensor, M: int) -> torch.Tensor:
        std = _first_order_std(u.detach().clamp(-M, M), M, self.cell)
        return u + std * torch.randn_like(u)

    def _linear(self, layer, a, w):  # noqa: D102
        return self._noisy(F.linear(a, w), w.shape[1])

    def _conv(self, layer, a, w):  # noqa: D102
        # M counts every row of the unrolled kernel, padded ones too (slightly conservative
        # at the borders, where fewer rows are driven)
        return self._noisy(F.conv2d(a, w, padding=layer.padding), w[0].numel())


class ApproximateReadout(ParametricReadout):
    """AS-DDHR: u_n ~ N(W a, sigma_A^2) with sigma_A^2 the largest of the M+1 variances."""

    name = "as_ddhr"

    def _noisy(self, u: torch.Tensor, M: int) -> torch.Tensor:
        return u + as_ddhr_std(M, self.cell) * torch.randn_like(u)


# --- the family behind the hardware interface -------------------------------------------------

#: How chips are drawn: Gaussian conductances (the paper's first-order model, Sec. 4.3) or
#: Gaussian resistances, G = 1/R (the device model behind it).
INSTANCE_MODELS = ("conductance", "resistance")


def array_layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model`` computed on XNOR arrays (binarized layers with a ``readout``:
    :class:`hwlib.models.binary.MRAMLinear` and :class:`~hwlib.models.binary.MRAMConv2d`), in
    module order; each gets its index (its arrays' seed offset)."""
    layers = [m for m in model.modules() if hasattr(m, "readout") and hasattr(m, "array_index")]
    for k, layer in enumerate(layers):
        layer.array_index = k
    return layers


def set_readout(model: nn.Module, readout: ExactReadout) -> nn.Module:
    """Read every array layer of ``model`` through ``readout`` (layers numbered in order)."""
    for layer in array_layers(model):
        layer.readout = readout
    return model


class MRAMChip(Chip):
    """A chip of MRAM XNOR arrays: one readout for every array layer of a model.

    Attaching sets each array layer's readout and restores the previous ones on exit. In
    training, an instance's forward pass runs through the chip and its gradients through the
    expected chip (Algorithm 1 of the paper, straight-through for the sign).
    """

    def __init__(self, hardware: "MRAMArray", readout: ExactReadout, seed: int | None = None
                 ) -> None:
        super().__init__(hardware, seed)
        self.readout = readout

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:  # noqa: D102
        layers = array_layers(model)
        if not layers:
            raise ParameterError(f"{type(model).__name__}: no XNOR array layers; MRAM arrays "
                                 "compute binarized layers (hwlib.models.binary.MRAMLinear, "
                                 "MRAMConv2d): use a binarized model")
        saved = [layer.readout for layer in layers]
        try:
            for layer in layers:
                layer.readout = self.readout
            yield model
        finally:
            for layer, r in zip(layers, saved):
                layer.readout = r


class MRAMArray(Hardware):
    """MRAM in-memory-computing XNOR arrays (S-DDHR): every binarized layer on arrays of bit
    cells whose resistances vary from chip to chip.

    Args:
        cell: the bit cells' resistance distributions (the variation level).
        instance_model: ``"resistance"`` (R ~ N(mu, sigma^2), G = 1/R, the paper's device
            model) or ``"conductance"`` (G ~ N(1/mu, sigma^2/mu^4), its first-order form).

    Chip ``s`` gives array layer ``k`` the arrays drawn with seed ``1000 s + k``; the same seed
    at another variation level is the same chip with its deviations scaled.
    """

    family = "mram"

    def __init__(self, cell: MRAMCell, instance_model: str = "resistance") -> None:
        super().__init__()
        if instance_model not in INSTANCE_MODELS:
            raise ParameterError(f"instance_model={instance_model!r}: must be one of "
                                 f"{', '.join(INSTANCE_MODELS)}")
        self.cell = cell
        self.instance_model = instance_model

    def _sample(self, seed: int) -> MRAMChip:
        return MRAMChip(self, InstanceReadout(self.cell, [seed], model=self.instance_model),
                        seed)

    def stacked(self, seeds: Sequence[int]) -> MRAMChip:
        """Several chips evaluated in one pass (outputs gain a leading chip dimension; models
        marked ``stackable``)."""
        return MRAMChip(self, InstanceReadout(self.cell, list(seeds), stacked=True,
                                              model=self.instance_model))

    def expected(self) -> MRAMChip:  # noqa: D102
        return MRAMChip(self, ExactReadout())

    def fresh(self, generator: torch.Generator | None) -> MRAMChip:
        """A chip for one training step, drawn from the device model: only the cells' current
        states, on the weights' device (:class:`FreshReadout`; the same distribution as
        :meth:`sample`'s chips, another random stream)."""
        return MRAMChip(self, FreshReadout(self.cell, generator, self.instance_model))

    def moments(self, approximate: bool = False) -> MRAMChip:
        """PS-DDHR: every column output drawn from N(W a, sigma^2(a, W)) at every forward pass
        (first order); ``approximate``: AS-DDHR, one fixed sigma_A^2 (the largest level's)."""
        return MRAMChip(self, ApproximateReadout(self.cell) if approximate
                        else ParametricReadout(self.cell))

    @property
    def is_ideal(self) -> bool:  # noqa: D102
        return self.cell.sigma_p == 0 and self.cell.sigma_ap == 0

    def config(self) -> dict[str, Any]:  # noqa: D102
        c = self.cell
        return {"family": self.family, "mu_p": c.mu_p, "sigma_p": c.sigma_p, "mu_ap": c.mu_ap,
                "sigma_ap": c.sigma_ap, "r_min_rel": c.r_min_rel,
                "instance_model": self.instance_model}
