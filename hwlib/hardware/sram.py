"""Faulty SRAM at low supply voltage: the energy-deviation model of Boukli Hacene et al.

The pieces, in the paper's terms (Sec. III):

* :class:`EnergyModel`: the fault probability of a bit cell at normalized memory energy
  ``eta``, ``p(eta) = exp(-a eta)`` (eq. 1), ``a = 12.8``; an inference costs ``eta * E_0``.
* :func:`memory_accesses`: ``E_0``, the parameters plus the activation values one inference
  writes, counted from the model itself, per block.
* :func:`quantize`: 8-bit two's complement, one scale per tensor (per inference for
  activations): the largest magnitude maps to code 127.
* :func:`bit_masking_codes`: bit masking (BM) on 8-bit codes. A fault on the sign bit sets the
  value to zero; a fault on any other bit replaces that bit with the sign bit, so the value
  moves toward zero.
* :class:`FaultMap`: the faulty cells of one memory (a tensor, or one inference's activation
  tensor): BM faults (every bit cell faulty with probability ``p``) or erasures (every value
  zeroed with probability ``p_e``). Faulty cells are drawn directly, by geometric gaps between
  them, never one uniform per cell; a fresh map of a small memory, or one whose values expect
  at least :data:`DENSE_DRAW_FROM` faulty cells each, is drawn one pattern per value (the
  alias method), and a fresh map with at least :data:`DENSE_GAPS_FROM` of its values faulty
  has its gaps marked straight into a dense map. Maps are applied by indexing their faulty
  values, or, in training and where many values are faulty, in one compiled pass
  (:mod:`hwlib.hardware.sram_kernels`; the same bits either way).
* :class:`FaultConfig` and :class:`FaultyChip`: one hardware instance, a chip at one operating
  point, with faults on weights, activations or both, at a rate per block of the network.
  Its fault map is fixed for every input and reproducible from its seed.
* :class:`ErasureChip`: erasures drawn anew at every forward pass of training (the erasure
  regularizer of Sec. V), the fresh chip of the erasure model, so it composes with any model
  and any training method.
* :class:`SRAMFaults`: the hardware model (a distribution over chips at one operating point).

Stored activations are the outputs of ``nn.ReLU`` modules (sign bit never faulty, the values
being non-negative) and of modules marked ``signed = True`` (such as
:class:`hwlib.models.resnets.Excitation`).
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ParameterError, check_probability
from .base import Chip, Hardware
from . import sram_kernels as kernels
from .calibration import observe_outputs

#: The paper's fit of eq. (1) to 65 nm SRAM data (its source data is not available here).
A_PAPER = 12.8
#: Bits per stored value.
BITS = 8
#: The largest code of the 8-bit two's complement scale rule.
QMAX = 2 ** (BITS - 1) - 1
#: The fault models.
FAULT_MODELS = ("bm", "erasure")
#: Which memories fault.
TARGETS = ("weights", "activations", "both")
#: The blockwise policy of Sec. IV-C: p_B4 = 5 p_B3 = 5 p_B2 = 10 p_B1, as p_B4 / p_Bi.
PAPER_BLOCK_RATIOS = (10.0, 5.0, 5.0, 1.0)


# --- the energy model -----------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyModel:
    """The energy-reliability function of eq. (1): ``p(eta) = exp(-a eta)``.

    ``eta`` is the memory energy normalized to that of a reliable memory (``0 <= eta <= 1``);
    an inference costs ``eta * E_0`` memory accesses' worth of energy.
    """

    a: float = A_PAPER
    """Decay constant of eq. (1), dimensionless (the paper's fit to 65 nm CMOS SRAM data)."""

    def __post_init__(self) -> None:
        if isinstance(self.a, bool) or not isinstance(self.a, (int, float)) or not (
                math.isfinite(self.a) and self.a > 0):
            raise ParameterError(f"a={self.a!r}: must be a float > 0")

    def fault_rate(self, eta: float | np.ndarray) -> float | np.ndarray:
        """p(eta) = exp(-a eta), the bit-cell fault probability at normalized energy eta."""
        eta_arr = np.asarray(eta, dtype=float)
        if np.any(eta_arr < 0) or np.any(eta_arr > 1) or np.any(~np.isfinite(eta_arr)):
            raise ParameterError(f"eta={eta!r}: must be in [0, 1]")
        out = np.exp(-self.a * eta_arr)
        return float(out) if out.ndim == 0 else out

    def eta(self, p: float | np.ndarray) -> float | np.ndarray:
        """The normalized energy at fault rate p, ``-ln(p) / a``, capped at 1.

        A rate at or below the nominal ``exp(-a)`` (``p = 0`` included) is a reliable memory,
        ``eta = 1``.
        """
        p_arr = np.asarray(p, dtype=float)
        check_probability("p", p_arr)
        with np.errstate(divide="ignore"):
            out = np.minimum(1.0, -np.log(p_arr) / self.a)
        return float(out) if out.ndim == 0 else out


# --- blocks: which memories a blockwise policy gives which rate ----------------------------------

_LAYER = re.compile(r"^layer([1-4])(\.|$)")


def block_of(name: str, model: nn.Module | None = None) -> int:
    """The block (1 to 4) a module or parameter belongs to, from its qualified name: the
    convention of the four-stage networks of :mod:`hwlib.models.resnets` (and of torchvision's
    ResNets), whose stages are ``layer1`` to ``layer4``.

    Modules under ``layerK`` belong to block K; the stem (registered before ``layer1``)
    to block 1; the head (registered after ``layer4``) to block 4. Models without
    ``layerK`` stages give 0 (no blocks: only uniform fault rates apply).

    Args:
        name: a qualified module or parameter name, e.g. ``layer2.0.conv1.weight``.
        model: the model, to tell the stem from the head (default: by the names of the
            four architectures here: ``conv1``, ``bn1`` and ``relu`` are the stem).
    """
    m = _LAYER.match(name)
    if m:
        return int(m.group(1))
    top = name.split(".")[0]
    if model is not None:
        order = [n for n, _ in model.named_children()]
        if "layer1" not in order or top not in order:
            return 0
        return 1 if order.index(top) < order.index("layer1") else 4
    return 1 if top in ("conv1", "bn1", "relu") else 4


# --- counting memory accesses -----------------------------------------------------------------


def activation_sites(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are stored activations: every ``nn.ReLU`` and every module
    with ``signed = True``, in registration order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.ReLU) or getattr(m, "signed", None) is True]


@dataclass(frozen=True)
class MemoryAccesses:
    """The values one inference reads from or writes to memory, per block.

    Attributes:
        parameters: parameters per block (index 0: outside any block; 1..4: the blocks).
        activations: stored activation values per block, for one input.
        conv_weights: weights of convolutions and linear layers per block (no BatchNorm).
    """

    parameters: tuple[int, ...]
    activations: tuple[int, ...]
    conv_weights: tuple[int, ...]

    @property
    def n_parameters(self) -> int:
        """All parameters."""
        return sum(self.parameters)

    @property
    def n_activations(self) -> int:
        """All stored activation values per inference."""
        return sum(self.activations)

    @property
    def e0(self) -> int:
        """The base energy E_0: parameters plus activation values (memory accesses)."""
        return self.n_parameters + self.n_activations


def memory_accesses(model: nn.Module, input_shape: Sequence[int]) -> MemoryAccesses:
    """Count E_0's terms from the model: trainable parameters, and the values stored by the
    activation sites during one inference on one input of ``input_shape`` (C, H, W).

    This is the counting rule that reproduces Table I: the parameters are every trainable
    tensor (BatchNorm's scale and shift included, its running statistics not); the stored
    activations are the outputs of the ReLUs and of the squeeze-and-excitation rescaling.
    """
    params, convw, acts = [0] * 5, [0] * 5, [0] * 5
    for name, p in model.named_parameters():
        b = block_of(name, model)
        params[b] += p.numel()
        mod = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and name.endswith("weight"):
            convw[b] += p.numel()
    handles = []
    for name, mod in activation_sites(model):
        b = block_of(name, model)

        def hook(_m, _i, out, b=b):
            acts[b] += out[0].numel()

        handles.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        dev = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return MemoryAccesses(tuple(params), tuple(acts), tuple(convw))


# --- quantization and bit masking ---------------------------------------------------------------


def quantization_scale(x: torch.Tensor, per_sample: bool = False,
                       nonnegative: bool = False) -> torch.Tensor:
    """The scale rule: ``s = max|x| / 127``, per tensor or per sample (leading dimension).

    An all-zero tensor gets ``s = 1`` (every code is 0 anyway). ``nonnegative``: the values
    are known to be >= 0 (then ``max|x| = max x``).
    """
    if per_sample:
        flat = x.reshape(x.shape[0], -1)
        m = flat.amax(dim=1) if nonnegative else torch.maximum(flat.amax(dim=1),
                                                               flat.amin(dim=1).neg())
        m = m.unsqueeze(1)
    elif nonnegative:
        m = x.amax()
    else:  # one pass for both extremes (per sample, two reductions are faster)
        lo, hi = torch.aminmax(x)
        m = torch.maximum(hi, lo.neg())
    return torch.where(m > 0, m / QMAX, torch.ones_like(m))


def quantize(x: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
    """8-bit two's complement codes of ``x``: ``q = round(x / s)`` in [-127, 127].

    Args:
        x: values.
        scale: the scale ``s`` (default: :func:`quantization_scale` of the whole tensor).

    Returns:
        ``(q, s)``: int8 codes and the scale (``x ~ s q``).
    """
    s = quantization_scale(x) if scale is None else scale
    q = torch.round(x / s).clamp_(-QMAX - 1, QMAX).to(torch.int8)
    return q, s


def bit_masking_codes(q: torch.Tensor, faults: torch.Tensor) -> torch.Tensor:
    """Bit masking on 8-bit two's complement codes.

    A fault on the sign bit (bit 7) sets the value to zero; a fault on any other bit replaces
    that bit with the sign bit (0 for a positive value, 1 for a negative one), so the value
    moves toward zero and never changes sign.

    Args:
        q: codes in [-128, 127] (any integer dtype).
        faults: the faulty bit cells of each value, a bit mask in [0, 255] (bit k set: bit k
            of the value is faulty), broadcastable to ``q``.

    Returns:
        The masked codes, int8.

    Raises:
        ParameterError: a code outside [-128, 127] or a mask outside [0, 255] (they would
            wrap silently).
    """
    for name, t, lo, hi in (("q", q, -QMAX - 1, QMAX), ("faults", faults, 0, 255)):
        if t.numel() and (int(t.min()) < lo or int(t.max()) > hi):
            raise ParameterError(f"{name}: values in [{int(t.min())}, {int(t.max())}]; an 8-bit "
                                 f"{'code' if name == 'q' else 'fault mask'} must lie in "
                                 f"[{lo}, {hi}]")
    u = q.to(torch.int32) & 0xFF
    f = faults.to(torch.int32) & 0xFF
    out = torch.where(u >= 0x80, u | f, u & ~f)
    out = torch.where((f & 0x80) != 0, torch.zeros_like(out), out)
    return torch.where(out >= 0x80, out - 0x100, out).to(torch.int8)


@functools.lru_cache(maxsize=None)
def _bm_table(device: str = "cpu") -> torch.Tensor:
    """BM of every (code, fault mask) pair as a float table: ``T[(q + 128) * 256 + f]``."""
    q = torch.arange(-QMAX - 1, QMAX + 1).repeat_interleave(256)
    f = torch.arange(256).repeat(256)
    return bit_masking_codes(q, f).to(torch.float32).to(device)


def _masked_values(v: torch.Tensor, s: torch.Tensor, faults: torch.Tensor) -> torch.Tensor:
    """BM on float values ``v`` with scale ``s``: the deviation ``s (BM(q) - q)`` computed on the
    codes is added to the float value; a value whose masked code is 0 becomes exactly 0."""
    q = torch.round(v / s).clamp_(-QMAX - 1, QMAX)
    key = q.to(torch.int64).add_(QMAX + 1).mul_(256).add_(faults.to(torch.int64))
    m = _bm_table(str(v.device))[key].to(v.dtype)
    return (v + s * (m - q)).mul_(m != 0)


def _masked_nonnegative(v: torch.Tensor, s: torch.Tensor, faults: torch.Tensor) -> torch.Tensor:
    """:func:`_masked_values` for non-negative values without sign-bit faults: BM clears the
    faulty bits of the code, ``BM(q) = q & ~f``, so the deviation is ``-s (q & f)``."""
    q = torch.round(v / s).to(torch.int32)
    cleared = q & faults.to(torch.int32)
    out = v - s * cleared.to(v.dtype)
    return out.masked_fill_(q == cleared, 0.0)


# --- fault maps ---------------------------------------------------------------------------------


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (instance seed, memory kind, tensor index)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def faulty_cells(n_cells: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Sorted positions of the faulty cells among ``n_cells``, each faulty independently with
    probability ``p``.

    Only the faulty cells are drawn: the gaps between them are geometric,
    ``G = floor(ln(1 - U) / ln(1 - p)) + 1`` with ``P(G > k) = (1 - p)^k``, so the cost grows
    with ``n_cells * p``, not with ``n_cells``.
    """
    check_probability("p", p)
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0:
        raise ParameterError(f"n_cells={n_cells!r}: must be an int >= 0")
    return _draw_cells(int(n_cells), float(p), generator, fresh=True)


def _gaps(n_cells: int, p: float, last: int, generator: torch.Generator, fresh: bool
          ) -> torch.Tensor:
    """The next chunk of floored geometric gaps after cell ``last`` (float32; enough to reach
    ``n_cells`` with high probability, never more than ``n_cells`` each).

    ``ln(1 - U)`` is torch's float32 ``log1p`` for the nested maps of seeded chips (the book's
    stored chips were drawn with it) and numpy's for ``fresh`` maps (measured on this project's
    2-core machine: a chunk of 8e5 gaps in 2.8 ms instead of 7 to 9, torch's float32 ``log1p``
    not being vectorized there; the two differed by one unit in the last place on 14 % of
    8e5 draws, never more)."""
    remaining = (n_cells - 1 - last) * p
    m = int(remaining + 6 * math.sqrt(remaining) + 64)
    u = torch.rand(m, generator=generator).neg_()  # float32: a CDF error below 1e-7
    if fresh:
        np.log1p(u.numpy(), out=u.numpy())
    else:
        u.log1p_()
    return u.mul_(1.0 / math.log1p(-p)).floor_().clamp_(max=n_cells)


def _mark_cells(n_values: int, p: float, bits: int, generator: torch.Generator
                ) -> torch.Tensor:
    """The dense map of :func:`faulty_cells` over ``n_values * bits`` cells at ``0 < p < 1``
    (cell c: bit ``c mod bits`` of value ``c // bits``): the same gaps, from the same random
    numbers, marked straight into every value's bits."""
    n_cells, last = n_values * bits, -1
    dense = torch.zeros(n_values, dtype=torch.uint8)
    while last < n_cells:
        last = int(kernels.mark_cells(_gaps(n_cells, p, last, generator, True).numpy(), last,
                                      n_cells, bits, dense.numpy()))
    return dense


def _draw_cells(n_cells: int, p: float, generator: torch.Generator, fresh: bool
                ) -> torch.Tensor:
    """:func:`faulty_cells` without the input checks (``fresh``: see :func:`_gaps`)."""
    if p <= 0 or n_cells <= 0:
        return torch.zeros(0, dtype=torch.int64)
    if p >= 1:
        return torch.arange(n_cells, dtype=torch.int64)
    parts, last = [], -1
    while True:
        gaps = _gaps(n_cells, p, last, generator, fresh).to(torch.int64).add_(1)
        pos = torch.cumsum(gaps, 0).add_(last)
        if int(pos[-1]) >= n_cells:
            parts.append(pos[:int(torch.searchsorted(pos, n_cells))])
            break
        parts.append(pos)
        last = int(pos[-1])
    return parts[0] if len(parts) == 1 else torch.cat(parts)


#: Nested fault maps: levels of ceilings 2^-j, j = 0 .. at most NESTED_LEVELS.
NESTED_LEVELS = 30


def nested_faulty_cells(n_cells: int, p: float, seed: int) -> torch.Tensor:
    """Sorted positions of the faulty cells among ``n_cells`` at rate ``p``, *nested* in p:
    the same ``seed`` gives every cell one uniform number u, and a cell is faulty at p when
    u < p. So a cell faulty at p is faulty at every p' > p, and an accuracy against p is a
    curve of one chip, not of independent chips.

    Only the cells with u below the first dyadic ceiling c_top = 2^-top >= p are drawn, level
    by level from the base up, all from one generator seeded with ``seed``. The base level
    (ceiling 2^-B, floor 0, B = min(30, ceil(log2 n_cells) + 10): below it a memory expects
    fewer than 2^-10 faults) marks cells at rate 2^-B; level j < B (ceiling 2^-j, floor
    2^-(j+1)) marks cells at the rate (2^-j - 2^-(j+1)) / (1 - 2^-(j+1)) (:func:`faulty_cells`);
    every level gives each cell it marks a u uniform between its floor and ceiling, and a
    cell's u is that of the deepest level marking it. Since 1 - prod over levels k >= j of
    (1 - r_k) is 2^-j, u is uniform on [0, c_top) with probability c_top, independently per
    cell. A cell is faulty at p when a level below the top marks it, or the top level marks it
    with u < p. Every level consumes the same random numbers whatever p is, so the maps of
    one seed are nested. The cost grows with ``n_cells * 2 p`` plus a few draws per level.
    """
    check_probability("p", p)
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0:
        raise ParameterError(f"n_cells={n_cells!r}: must be an int >= 0")
    n_cells, p = int(n_cells), float(p)
    if p <= 0 or n_cells <= 0:
        return torch.zeros(0, dtype=torch.int64)
    if p >= 1:
        return torch.arange(n_cells, dtype=torch.int64)
    base = min(NESTED_LEVELS, max(1, math.ceil(math.log2(n_cells))) + 10)
    top = min(int(math.floor(-math.log2(p))), base)  # 2^-top >= p (> 2^-(top+1) above base)
    gen = torch.Generator().manual_seed(int(seed) & (2 ** 63 - 1))
    parts: list[torch.Tensor] = []
    for level in range(base, top - 1, -1):
        ceiling = 2.0 ** -level
        below = 2.0 ** -(level + 1) if level < base else 0.0
        marked = _draw_cells(n_cells, (ceiling - below) / (1.0 - below), gen, False)
        u = torch.rand(len(marked), generator=gen, dtype=torch.float64)
        if level == top:
            marked = marked[u.mul_(ceiling - below).add_(below) < p]
        parts.append(marked)
    return torch.unique(torch.cat(parts))  # sorted; a cell marked twice counts once


#: Dense maps: a map is applied by the compiled one-pass kernel (CPU, float32, bit masking)
#: in training, when it is held dense, or when at least this fraction of its values are faulty
#: (below it, indexing the faulty values is cheaper than writing the dense map; both give the
#: same bits).
DENSE_FROM = 1 / 8
#: A fresh map is drawn pattern by pattern (the alias method) when its values expect at least
#: this many faulty cells each (``bits p``; measured: from about here one uniform per value
#: costs less than geometric gaps between faulty cells), or when it has at most
#: :data:`SMALL_MAP` values (where the fixed cost of the gaps' steps dominates).
DENSE_DRAW_FROM = 1 / 8
SMALL_MAP = 4096
#: Below that, a fresh map's geometric gaps are marked straight into a dense map when at least
#: this fraction of its values expect a faulty cell, ``1 - (1 - p)^bits`` (measured: from
#: here, drawing dense and applying by the kernel costs less than the sparse map's indexing,
#: for memories of 6.5e4 to 1e7 values).
DENSE_GAPS_FROM = 1 / 64


class FaultMap:
    """The faulty cells of one memory of ``numel`` values: which values, which bits.

    A map is held sparse (the faulty values and their bits) or dense (every value's bits), and
    gives the other form on demand.

    Attributes:
        numel: values in the memory (a tensor, or one inference's activation tensor).
        index: sorted positions of the values with at least one faulty cell (int64).
        faults: each such value's faulty bits, a mask in [1, 255] (uint8); an erased value
            has its sign bit marked (BM then gives 0).
        dense: every value's faulty bits (uint8, ``numel`` of them, 0 where none).
        model: ``bm`` or ``erasure``.
        signed: False for a memory of non-negative values (no sign-bit faults; applying the
            map then takes a shorter path, valid for non-negative values only).
    """

    def __init__(self, numel: int, index: torch.Tensor | None = None,
                 faults: torch.Tensor | None = None, model: str = "bm", signed: bool = True,
                 dense: torch.Tensor | None = None) -> None:
        if (index is None) != (faults is None) or (index is None and dense is None):
            raise ParameterError("FaultMap: give index and faults, or dense")
        self.numel, self.model, self.signed = int(numel), model, bool(signed)
        self._index, self._faults, self._dense = index, faults, dense

    @property
    def index(self) -> torch.Tensor:  # noqa: D102
        if self._index is None:
            self._index = torch.nonzero(self._dense).reshape(-1)
            self._faults = self._dense[self._index]
        return self._index

    @property
    def faults(self) -> torch.Tensor:  # noqa: D102
        return self._faults if self._faults is not None else self._dense[self.index]

    @property
    def dense(self) -> torch.Tensor:  # noqa: D102
        if self._dense is None:
            self._dense = torch.zeros(self.numel, dtype=torch.uint8, device=self._index.device)
            self._dense[self._index] = self._faults
        return self._dense

    def __repr__(self) -> str:
        return (f"FaultMap(numel={self.numel}, model={self.model!r}, signed={self.signed}, "
                f"{'dense' if self._index is None else f'{len(self._index)} faulty values'})")

    @classmethod
    def sample(cls, numel: int, rate: float, model: str = "bm", signed: bool = True,
               generator: torch.Generator | None = None, seed: int | None = None
               ) -> "FaultMap":
        """Draw a fault map.

        Args:
            numel: values in the memory (>= 0).
            rate: BM: the bit-cell fault probability p; erasure: the value erasure
                probability p_e.
            model: ``bm`` or ``erasure``.
            signed: BM only: whether the sign bit can fault (False for non-negative values,
                such as ReLU outputs: only the 7 other bits have faulty cells).
            generator: draw an independent map from this generator (a CPU one): by
                geometric gaps between faulty cells, or, for BM maps of small memories or
                with at least :data:`DENSE_DRAW_FROM` faulty cells expected per value, every
                value's pattern at once (:func:`~hwlib.hardware.sram_kernels.alias_patterns`).
            seed: without a generator, the memory's seed: maps of one seed are *nested* in
                the rate (:func:`nested_faulty_cells`), as one chip's faulty cells are when
                its supply voltage drops (default seed 0).
        """
        check_probability("p_e" if model == "erasure" else "p", rate)
        rate = float(rate)
        if model not in FAULT_MODELS:
            raise ParameterError(f"model={model!r}: must be one of {', '.join(FAULT_MODELS)}")
        if isinstance(numel, bool) or not isinstance(numel, (int, np.integer)) or numel < 0:
            raise ParameterError(f"numel={numel!r}: must be an int >= 0 (values in the memory)")
        numel = int(numel)

        def cells_of(n: int) -> torch.Tensor:
            if generator is not None:
                return faulty_cells(n, rate, generator)
            return nested_faulty_cells(n, rate, 0 if seed is None else int(seed))

        if model == "erasure":
            idx = cells_of(numel)
            return cls(numel, idx, torch.full((len(idx),), 0x80, dtype=torch.uint8), model,
                       True)
        bits = BITS if signed else BITS - 1
        fresh = generator is not None and generator.device.type == "cpu" and 0 < rate < 1
        if fresh and (bits * rate >= DENSE_DRAW_FROM or numel <= SMALL_MAP):
            words = torch.empty((numel + 1) // 2, dtype=torch.int64).random_(
                generator=generator)
            dense = torch.empty(numel, dtype=torch.uint8)
            threshold, alias = kernels.alias_table(rate, bits)
            kernels.alias_patterns(words.numpy(), threshold, alias, bits, dense.numpy())
            return cls(numel, model=model, signed=signed, dense=dense)
        if fresh and 1.0 - (1.0 - rate) ** bits >= DENSE_GAPS_FROM:
            return cls(numel, model=model, signed=signed,
                       dense=_mark_cells(numel, rate, bits, generator))
        cells = cells_of(numel * bits)
        if bits == BITS:
            value, bit = cells >> 3, cells & 7
        else:  # floor(c / 7), exact: (c + 0.5) / 7 is never within 1/14 of an integer
            value = cells.to(torch.float64).add_(0.5).div_(bits).floor_().to(torch.int64)
            bit = cells - value * bits
        idx, inverse = torch.unique_consecutive(value, return_inverse=True)
        faults = torch.zeros(len(idx), dtype=torch.int32).index_add_(
            0, inverse, torch.bitwise_left_shift(torch.ones_like(bit, dtype=torch.int32),
                                                 bit.to(torch.int32)))
        return cls(numel, idx, faults.to(torch.uint8), model, signed)

    @property
    def n_faulty_cells(self) -> int:
        """Faulty bit cells (BM) or erased values (erasure)."""
        if self.model == "erasure":
            return len(self.index)
        f = self.faults.to(torch.int32)
        return int(sum(((f >> k) & 1).sum() for k in range(BITS)))

    def to(self, device: torch.device | str) -> "FaultMap":
        """The same map on another device."""
        held = self._index if self._index is not None else self._dense
        if held.device == torch.device(device):
            return self
        move = (lambda t: None if t is None else t.to(device))
        return FaultMap(self.numel, move(self._index), move(self._faults), self.model,
                        self.signed, move(self._dense))

    def _compiled(self, x: torch.Tensor, training: bool = False) -> bool:
        """Whether applying the map to ``x`` takes the compiled kernel (CPU float32 BM: in
        training, for a map held dense, or for one with at least :data:`DENSE_FROM` of its
        values faulty)."""
        return (self.model == "bm" and x.device.type == "cpu" and x.dtype == torch.float32
                and self.numel > 0 and (training or self._index is None
                                        or len(self._index) >= DENSE_FROM * self.numel))

    def _kernel(self, x: torch.Tensor, scales: torch.Tensor, clamp: float | None,
                out: torch.Tensor, keep: torch.Tensor | None) -> None:
        """Run :func:`~hwlib.hardware.sram_kernels.mask_values` on ``x`` viewed as rows of
        ``numel`` values (``clamp``: the fixed step's saturation ``127 s``, or None)."""
        top = np.float32(0.0 if clamp is None else clamp)
        lo = np.float32(-top if self.signed else 0.0)
        rows = x.view(-1, self.numel)
        kernels.mask_values(rows.detach().numpy(), scales.reshape(-1).numpy(),
                            self.dense.numpy(), self.signed, clamp is not None, lo, top,
                            out.view(-1, self.numel).numpy(),
                            np.zeros((0, 0), np.bool_) if keep is None
                            else keep.view(-1, self.numel).numpy())

    def _per_sample(self, x: torch.Tensor, scale: float | None, out: torch.Tensor,
                    keep: torch.Tensor | None) -> None:
        """The kernel over the samples of a contiguous batch ``x``: each sample's scale rule,
        or the fixed step ``scale`` (values saturate at +-127 s)."""
        rows = x.detach().view(x.shape[0], -1)
        if scale is None:
            s = quantization_scale(rows, per_sample=True, nonnegative=not self.signed)
        else:
            s = torch.full((x.shape[0],), float(scale), dtype=torch.float32)
        self._kernel(x, s, None if scale is None else QMAX * float(scale), out, keep)

    def apply(self, x: torch.Tensor, scale: torch.Tensor | None = None,
              out: torch.Tensor | None = None) -> torch.Tensor:
        """The faulty copy of a tensor of ``numel`` values (per-tensor scale rule).

        Args:
            x: the values.
            scale: the quantization step (default: the rule's, ``max|x| / 127``).
            out: write the copy into this tensor of ``x``'s shape, dtype and device, not ``x``
                itself (a chip writes its faulty weights straight into the parameters). Its
                version counter moves as for any in-place write, so a graph that saved its
                old values refuses to back-propagate through them.
        """
        if x.numel() != self.numel:
            raise ParameterError(f"tensor of {x.numel()} values; the map covers {self.numel}")
        if out is not None and (out.shape != x.shape or out.dtype != x.dtype
                                or out.device != x.device):
            raise ParameterError(f"out: a {out.dtype} tensor of shape {tuple(out.shape)} on "
                                 f"{out.device}; must match x ({x.dtype}, {tuple(x.shape)}, "
                                 f"{x.device})")
        x = x.detach()
        into = out if out is not None and out.is_contiguous() else None
        if self._compiled(x):  # into another tensor: the kernel vectorizes over distinct arrays
            s = quantization_scale(x) if scale is None else scale
            res = torch.empty(x.shape, dtype=x.dtype) if into is None else into
            self._kernel(x.contiguous(), s.to(torch.float32), None, res, None)
            if into is not None:  # written through numpy, unseen by autograd
                torch.autograd.graph.increment_version(into)
        else:
            res = x.clone(memory_format=torch.contiguous_format) if into is None \
                else into.copy_(x)
            if len(self.index):
                flat = res.view(-1)
                if self.model == "erasure":
                    flat.index_fill_(0, self.index, 0)
                else:
                    s = quantization_scale(x) if scale is None else scale
                    flat.index_copy_(0, self.index,
                                     self._masked(flat.index_select(0, self.index), s))
        return res if out is None or res is out else out.copy_(res)

    def _masked(self, v: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if self.signed:
            return _masked_values(v, s, self.faults)
        return _masked_nonnegative(v, s, self.faults)

    def apply_per_sample(self, x: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """Apply the map to every sample of a batch ``(B, ...)`` whose samples have ``numel``
        values. Returns the faulty batch: a new tensor, or ``x`` itself, changed in place,
        where only a few values are faulty and no gradient is needed.

        Args:
            x: the batch.
            scale: the memory's fixed quantization step s, calibrated beforehand (then every
                value saturates at +-127 s, as a fixed-point memory does); ``None``: the scale
                rule of each sample, ``max|x| / 127`` of that inference (hardware that computes
                it per inference).
        """
        b = x.shape[0]
        if x.numel() != b * self.numel:
            raise ParameterError(f"samples of {x.numel() // max(b, 1)} values; the map covers "
                                 f"{self.numel}")
        training = torch.is_grad_enabled() and x.requires_grad
        if not len(self.index) and scale is None:
            return x
        if self._compiled(x, training):
            if training:
                return _MaskedSamples.apply(x, self, scale)
            out = torch.empty_like(x, memory_format=torch.contiguous_format)
            self._per_sample(x.contiguous(), scale, out, None)  # never in place: the kernel
            return out  # vectorizes only over distinct arrays
        if torch.is_grad_enabled() and x.requires_grad or not x.is_contiguous():
            x = x.clone()
        flat = x.view(b, -1)
        if scale is not None and self.model == "bm":
            top = QMAX * float(scale)
            flat.clamp_(min=0.0 if not self.signed else -top, max=top)
        if not len(self.index):
            return x
        if self.model == "erasure":
            flat.index_fill_(1, self.index, 0)
        else:
            s = (quantization_scale(flat.detach(), per_sample=True, nonnegative=not self.signed)
                 if scale is None else torch.tensor(float(scale), dtype=flat.dtype,
                                                    device=flat.device))
            flat.index_copy_(1, self.index, self._masked(flat.index_select(1, self.index), s))
        return x


class _MaskedSamples(torch.autograd.Function):
    """:meth:`FaultMap.apply_per_sample` by the compiled kernel, with a gradient: it passes
    where the indexed path's does (values neither zeroed by a fault nor saturated by a fixed
    step)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, fmap: FaultMap, scale: float | None) -> torch.Tensor:
        src = x.contiguous()
        out = torch.empty_like(src)
        keep = torch.empty(src.shape, dtype=torch.bool)
        fmap._per_sample(src, scale, out, keep)
        ctx.save_for_backward(keep)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # noqa: D102
        (keep,) = ctx.saved_tensors
        g = g.contiguous()
        out = torch.empty_like(g)
        kernels.pass_gradient(g.view(-1).numpy(), keep.view(-1).numpy(), out.view(-1).numpy())
        return out, None, None


@torch.no_grad()
def calibrate_activation_scales(model: nn.Module, x: torch.Tensor, batch_size: int = 500
                                ) -> tuple[float, ...]:
    """Fixed quantization steps of the activation memories, as hardware calibrates them: for
    each activation site (:func:`activation_sites`, in order), ``s = max|a| / 127`` over the
    calibration images ``x`` (training images), the clean network in eval mode. A site never
    active gets s = 1."""
    sites = [m for _, m in activation_sites(model)]
    top = [0.0] * len(sites)

    def record(k: int, out: torch.Tensor) -> None:
        top[k] = max(top[k], float(out.detach().abs().amax()))

    observe_outputs(model, sites, x, record, batch_size)
    return tuple(t / QMAX if t > 0 else 1.0 for t in top)


def bit_masking(x: torch.Tensor, p: float, signed: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """BM with freshly drawn faults: every bit cell of every value faulty with probability p.

    Args:
        x: values (quantized on 8 bits with the per-tensor scale rule).
        p: bit-cell fault probability.
        signed: False for non-negative values (the sign bit never faults).
        generator: the random source.

    Returns:
        The faulty copy of ``x``.
    """
    return FaultMap.sample(x.numel(), p, "bm", signed, generator).apply(x)


def erasure(x: torch.Tensor, p_e: float, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    """The erasure model: every value set to zero with probability p_e (freshly drawn)."""
    return FaultMap.sample(x.numel(), p_e, "erasure", generator=generator).apply(x)


# --- a chip at one operating point ---------------------------------------------------------------


def blockwise_rates(p_b4: float, ratios: Sequence[float] = PAPER_BLOCK_RATIOS
                    ) -> tuple[float, float, float, float]:
    """The blockwise policy of Sec. IV-C: block i gets ``p_Bi = p_B4 / ratios[i]``.

    The paper's ratios ``(10, 5, 5, 1)`` give ``p_B4 = 5 p_B3 = 5 p_B2 = 10 p_B1``.
    """
    check_probability("p_B4", p_b4)
    if len(ratios) != 4 or any(not (isinstance(r, (int, float)) and r >= 1) for r in ratios):
        raise ParameterError(f"ratios={list(ratios)!r}: must be 4 numbers >= 1 (p_B4 / p_Bi)")
    return tuple(float(p_b4) / float(r) for r in ratios)  # type: ignore[return-value]


@dataclass(frozen=True)
class FaultConfig:
    """One operating point of a chip: which memories fault, under which model, how often."""

    model: str = "bm"
    """``bm`` (bit masking) or ``erasure``."""
    rate: float = 0.0
    """BM: bit-cell fault probability p; erasure: value erasure probability p_e (unitless)."""
    targets: str = "both"
    """Which memories fault: ``weights``, ``activations`` or ``both``."""
    block_rates: tuple[float, float, float, float] | None = None
    """Per-block rates for blocks 1..4 (the stem counts as block 1, the classifier as block
    4); overrides ``rate``. ``None``: ``rate`` everywhere."""

    def __post_init__(self) -> None:
        if self.model not in FAULT_MODELS:
            raise ParameterError(f"model={self.model!r}: must be one of "
                                 f"{', '.join(FAULT_MODELS)}")
        if self.targets not in TARGETS:
            raise ParameterError(f"targets={self.targets!r}: must be one of {', '.join(TARGETS)}")
        check_probability("p_e" if self.model == "erasure" else "p", self.rate)
        if self.block_rates is not None:
            if len(self.block_rates) != 4:
                raise ParameterError(f"block_rates={self.block_rates!r}: must be 4 rates")
            for r in self.block_rates:
                check_probability("block_rates", r)
            object.__setattr__(self, "block_rates", tuple(float(r) for r in self.block_rates))

    def rate_of(self, block: int, memory: str) -> float:
        """The rate of one memory (``weights`` or ``activations``) of one block (0: none)."""
        if self.targets not in (memory, "both"):
            return 0.0
        if self.block_rates is None:
            return float(self.rate)
        if block == 0:
            raise ParameterError("block_rates needs a model with blocks layer1..layer4")
        return self.block_rates[block - 1]

    def energy(self, counts: MemoryAccesses, energy_model: EnergyModel = EnergyModel()
               ) -> float:
        """The energy per inference, ``sum_memories eta(p_memory) * accesses``, in units of
        one reliable memory access (E_0 for a reliable chip). Erasure rates are charged as
        bit-cell rates."""
        total = 0.0
        for b in range(5):
            for memory, n in (("weights", counts.parameters[b]),
                              ("activations", counts.activations[b])):
                if n:
                    rate = self.rate_of(b, memory)
                    total += energy_model.eta(rate) * n
        return total

    def as_dict(self) -> dict:
        """A JSON-able dict (for store configs)."""
        return {"model": self.model, "rate": float(self.rate), "targets": self.targets,
                "block_rates": None if self.block_rates is None else list(self.block_rates)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "FaultConfig":
        """The inverse of :meth:`as_dict`."""
        br = d.get("block_rates")
        return cls(d.get("model", "bm"), d.get("rate", 0.0), d.get("targets", "both"),
                   None if br is None else tuple(br))


@contextlib.contextmanager
def _restoring() -> Iterator[tuple[list, list]]:
    """Hooks and overwritten parameters of an attached chip: ``(handles, saved)``, where
    ``saved`` holds ``(parameter, original values)``; all undone on exit."""
    handles: list = []
    saved: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        yield handles, saved
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for p, original in saved:
                p.copy_(original)


class FaultyChip(Chip):
    """One hardware instance: a chip at one operating point, with its own fixed fault map.

    The weight memories' faulty cells are drawn once per parameter tensor; the activation
    memories' once per activation site, over the values one inference stores there (the
    same cells for every input). Everything is reproducible from ``seed``: tensor ``k`` of
    kind ``m`` (0 weights, 1 activations) draws its map from the seed ``(seed, m, k)``, and
    the maps are nested in the rate (:func:`nested_faulty_cells`): the same chip at a higher
    fault rate has every faulty cell it had at a lower one, as when its voltage drops.

    Faulty weights are written into the parameters while the chip is attached (and restored
    exactly on exit); activation faults are applied by forward hooks at every
    stored-activation site. In training, gradients are taken at the faulty values; an erased
    weight (erasure model) gets no gradient.

    Args:
        config: the operating point (a :class:`FaultConfig` or an :class:`SRAMFaults`).
        seed: the chip.
    """

    def __init__(self, config: "FaultConfig | SRAMFaults", seed: int | None = 0,
                 generator: torch.Generator | None = None) -> None:
        hardware = config if isinstance(config, SRAMFaults) else SRAMFaults(config)
        super().__init__(hardware, None if seed is None else int(seed))
        self.config = hardware.fault_config
        self.generator = generator
        self._maps: dict = {}

    def _draw(self, kind: int, k: int, numel: int, rate: float, signed: bool) -> FaultMap:
        if self.seed is None:  # a fresh chip of one training step: independent draws
            return FaultMap.sample(numel, rate, self.config.model, signed, self.generator
                                   if self.generator is not None else torch.Generator()
                                   .manual_seed(int(torch.randint(0, 2 ** 62, (1,)))))
        return FaultMap.sample(numel, rate, self.config.model, signed,
                               seed=_seed(self.seed, kind, k))

    def weight_map(self, k: int, numel: int, rate: float) -> FaultMap:
        """The fault map of parameter tensor ``k`` (cached)."""
        key = ("w", k)
        if key not in self._maps:
            self._maps[key] = self._draw(0, k, numel, rate, True)
        return self._maps[key]

    def activation_map(self, k: int, numel: int, rate: float, signed: bool,
                       device: torch.device) -> FaultMap:
        """The fault map of activation site ``k``, over one inference's values (cached)."""
        key = ("a", k, str(device))
        if key not in self._maps:
            self._maps[key] = self._draw(1, k, numel, rate, signed).to(device)
        fmap = self._maps[key]
        if fmap.numel != numel:
            raise ParameterError(f"activation site {k}: {numel} values per inference; the "
                                 f"chip's map covers {fmap.numel} (another input size?)")
        return fmap

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run ``model`` on this chip inside the ``with`` block (see the class text)."""
        with _restoring() as (handles, saved):
            with torch.no_grad():
                for k, (name, p) in enumerate(model.named_parameters()):
                    rate = self.config.rate_of(block_of(name, model), "weights")
                    if rate > 0:
                        fmap = self.weight_map(k, p.numel(), rate).to(p.device)
                        original = p.detach().clone()
                        saved.append((p, original))
                        fmap.apply(original, out=p.detach())  # shares p's version
                        if self.config.model == "erasure" and p.requires_grad and len(
                                fmap.index):
                            keep = torch.ones(p.numel(), dtype=p.dtype, device=p.device)
                            keep[fmap.index] = 0
                            keep = keep.view_as(p)
                            handles.append(p.register_hook(lambda g, keep=keep: g * keep))
            for k, (name, mod) in enumerate(activation_sites(model)):
                rate = self.config.rate_of(block_of(name, model), "activations")
                if rate <= 0:
                    continue
                signed = bool(getattr(mod, "signed", False))

                scales = self.hardware.activation_scales

                def hook(_m, _i, out, k=k, rate=rate, signed=signed, scales=scales):
                    fmap = self.activation_map(k, out[0].numel(), rate, signed, out.device)
                    scale = None if scales is None else scales[k]
                    if out.dtype != torch.float32:  # mixed precision: the faults in float32
                        return fmap.apply_per_sample(out.float(), scale).to(out.dtype)
                    return fmap.apply_per_sample(out, scale)

                handles.append(mod.register_forward_hook(hook))
            yield model


class ErasureChip(Chip):
    """Erasures drawn anew at every forward pass: the erasure regularizer of Sec. V, as the
    fresh chip of one training step.

    While attached, each weight (every trainable parameter) is zero with probability ``p_e``
    (one draw per attachment), and each stored activation value of each forward pass with
    probability ``p_e`` (drawn per value, so every sample of a batch sees its own erasures);
    the surviving values are not rescaled (a faulty memory does not rescale them, unlike
    inverted dropout). Gradients flow through the surviving values only.

    Args:
        hardware: an :class:`SRAMFaults` of the erasure model.
        generator: the random source (default: torch's global one).
    """

    def __init__(self, hardware: "SRAMFaults", generator: torch.Generator | None = None
                 ) -> None:
        super().__init__(hardware, None)
        self.config = hardware.fault_config
        self.generator = generator

    def _keep(self, t: torch.Tensor, rate: float) -> torch.Tensor:
        u = (torch.rand(t.shape, generator=self.generator, device=t.device, dtype=t.dtype)
             if self.generator is not None else torch.rand_like(t))
        return (u >= rate).to(t.dtype)

    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator[nn.Module]:  # noqa: D102
        with _restoring() as (handles, saved):
            for name, mod in activation_sites(model):
                rate = self.config.rate_of(block_of(name, model), "activations")
                if rate > 0:
                    handles.append(mod.register_forward_hook(
                        lambda _m, _i, out, rate=rate: out * self._keep(out, rate)))
            with torch.no_grad():
                for n, p in model.named_parameters():
                    rate = self.config.rate_of(block_of(n, model), "weights")
                    if rate <= 0:
                        continue
                    keep = self._keep(p, rate)
                    saved.append((p, p.detach().clone()))
                    p.mul_(keep)
                    if p.requires_grad:
                        handles.append(p.register_hook(lambda g, keep=keep: g * keep))
            yield model


class SRAMFaults(Hardware):
    """SRAM at low supply voltage: bit-cell faults in the weight and activation memories
    (Boukli Hacene et al.), at one operating point.

    Args:
        config: the operating point: bit masking (``bm``, every bit cell faulty with
            probability p) or erasures (``erasure``, every value zeroed with probability
            p_e), on ``weights``, ``activations`` or ``both``, at one rate or a rate per block.
        activation_scales: the activation memories' fixed quantization steps, one per
            activation site (:func:`calibrate_activation_scales`); ``None`` (the default): the
            scale of each inference, ``max|a| / 127``, which assumes hardware that computes it.
        **fields: or the fields of :class:`FaultConfig` (``model``, ``rate``, ``targets``,
            ``block_rates``).

    A fresh chip of the erasure model (one training step) is an :class:`ErasureChip`:
    erasure training is training on a fresh chip per step.
    """

    family = "sram"

    def __init__(self, config: FaultConfig | None = None,
                 activation_scales: Sequence[float] | None = None, **fields) -> None:
        super().__init__()
        if config is not None and fields:
            raise ParameterError("SRAMFaults: give a FaultConfig or its fields, not both")
        self.fault_config = config if config is not None else FaultConfig(**fields)
        if activation_scales is not None:
            activation_scales = tuple(float(v) for v in activation_scales)
            if not all(math.isfinite(v) and v > 0 for v in activation_scales):
                raise ParameterError(f"activation_scales={activation_scales!r}: must be "
                                     "steps > 0, one per activation site")
        self.activation_scales = activation_scales

    def _sample(self, seed: int) -> FaultyChip:
        return FaultyChip(self, seed)

    def fresh(self, generator: torch.Generator | None) -> Chip:
        """A chip for one training step: erasures drawn anew at every forward pass
        (:class:`ErasureChip`, the erasure regularizer), or a bit-masking chip whose maps are
        drawn from ``generator`` (independent maps, not the nested ones of a seeded chip)."""
        if self.fault_config.model == "erasure":
            return ErasureChip(self, generator)
        if generator is not None and generator.device.type != "cpu":
            generator = torch.Generator().manual_seed(
                int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device)))
        return FaultyChip(self, None, generator)

    @property
    def is_ideal(self) -> bool:  # noqa: D102
        c = self.fault_config
        return c.rate == 0 and (c.block_rates is None or not any(c.block_rates))

    def config(self) -> dict:  # noqa: D102
        return {"family": self.family, **self.fault_config.as_dict(),
                "activation_scales": None if self.activation_scales is None
                else list(self.activation_scales)}


def count_outputs(model: nn.Module, input_shape: Sequence[int], kinds: tuple[type, ...]
                  ) -> int:
    """Values output by the modules of ``kinds`` during one inference on one input (for
    comparing counting rules; :func:`memory_accesses` applies the book's rule)."""
    total = [0]
    handles = [m.register_forward_hook(lambda _m, _i, out: total.__setitem__(
        0, total[0] + out[0].numel())) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total[0]
