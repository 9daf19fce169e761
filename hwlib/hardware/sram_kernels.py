"""Compiled (numba) kernels of SRAM bit masking on the CPU: one pass over a memory's values.

:mod:`hwlib.hardware.sram` applies a fault map with PyTorch's indexing where few values are
faulty. Near the low-voltage end of the energy curve (p of a few percent and up) most values
have a faulty bit cell, and a dozen elementwise passes of PyTorch cost more than the layer's
matrix product; these kernels do the same arithmetic in one pass:

* :func:`mask_values`: bit masking (BM) of float values through their 8-bit codes, with the
  same float32 operations in the same order as the indexed path (``round(v / s)``, the masked
  code ``m``, then ``v + s (m - q)``, zero where ``m = 0``), so both give the same bits.
  It also writes where a gradient passes (the straight-through rule of the indexed path).
* :func:`alias_patterns`: a fresh map's fault pattern of every value, drawn by the alias
  method (Walker; Vose's construction in :func:`alias_table`) from 31 uniform bits per value:
  pattern ``f`` (bit k set: bit cell k faulty) has probability
  ``p^popcount(f) (1 - p)^(bits - popcount(f))`` up to ``2^-31``.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

#: Uniform bits per value of a fresh map (two values per 63-bit word of the generator).
UNIFORM_BITS = 31


@njit(cache=True, nogil=True, error_model="numpy")
def mask_values(x, scales, faults, signed, clamp, lo, hi, out, keep):  # pragma: no cover
    """BM of the values ``x`` (B, n) under one map ``faults`` (n,) shared by the B rows.

    Branch-free (selects only), so that the loop compiles to vector instructions.

    Args:
        x: float32 (B, n), C-contiguous.
        scales: float32 (B,), each row's quantization step s.
        faults: uint8 (n,), each value's faulty bits (bit k set: bit k faulty).
        signed: two's complement values (a sign-bit fault zeroes the value; any other fault
            replaces its bit with the sign bit); False: non-negative values (faults clear bits).
        clamp: saturate every value to [lo, hi] first (float32 bounds: a memory with a fixed
            step).
        out: float32 (B, n), the result (may be ``x`` itself).
        keep: bool (B, n), where the gradient passes, or a (0, 0) array (not written).
    """
    rows, n = x.shape
    want = keep.shape[0] > 0
    zero = np.float32(0.0)
    for b in range(rows):
        s = scales[b]
        for j in range(n):
            v = x[b, j]
            g = True
            if clamp:  # saturated values get no gradient, at the bound too (as torch's clamp)
                g = (v > lo) & (v < hi)
                v = min(max(v, lo), hi)
            f = np.int32(faults[j])
            q = np.rint(v / s)
            if signed:
                q = min(max(q, np.float32(-128.0)), np.float32(127.0))
                qi = np.int32(q)
                low = f & 0x7F
                m = (qi & ~low) | ((qi >> 31) & low)  # q & ~f if q >= 0, else q | f
                m = 0 if f >= 0x80 else m
                drop = (f != 0) & (m == 0)
                r = v + s * (np.float32(m) - q)
                r = r * zero if drop else r
            else:
                qi = np.int32(q)
                c = qi & f
                drop = (f != 0) & (qi == c)
                r = zero if drop else v - s * np.float32(c)
            out[b, j] = v if f == 0 else r
            if want:
                keep[b, j] = g & (not drop)


@njit(cache=True, nogil=True, error_model="numpy")
def pass_gradient(g, keep, out):  # pragma: no cover
    """``out = g`` where ``keep``, else 0 (flat arrays)."""
    zero = np.float32(0.0)
    for i in range(g.size):
        out[i] = g[i] if keep[i] else zero


@njit(cache=True, nogil=True, error_model="numpy")
def mark_cells(gaps, last, n_cells, bits, out):  # pragma: no cover
    """Walk geometric gaps from cell ``last`` and mark the cells they reach in ``out``.

    Cell ``c`` is bit ``c mod bits`` of value ``c // bits``, ``bits`` 8 or 7 (the layout of
    :meth:`~hwlib.hardware.sram.FaultMap.sample`); each gap ``g`` (float32, already floored)
    moves ``g + 1`` cells on. Stops at the first cell at or past ``n_cells``.

    Returns:
        The last cell reached (``>= n_cells``: the map is complete).
    """
    pos = np.int64(last)
    for i in range(gaps.size):
        pos += np.int64(gaps[i]) + 1
        if pos >= n_cells:
            return pos
        value = pos >> 3 if bits == 8 else pos // 7  # constant divisors: no division
        out[value] |= np.uint8(1 << (pos - value * bits))
    return pos


@njit(cache=True, nogil=True, error_model="numpy")
def alias_patterns(words, threshold, alias, bits, out):  # pragma: no cover
    """Fill ``out`` (uint8) with fault patterns: value ``i`` reads 31 bits of ``words[i // 2]``
    (the low or the high half), its top ``bits`` bits pick a column c of the table, the rest
    keep c when below ``threshold[c]``, else give ``alias[c]``."""
    shift = 31 - bits
    low = (np.int64(1) << shift) - 1
    for i in range(out.size):
        w = words[i >> 1]
        r = (w >> 32) if i & 1 else w
        r &= 0x7FFFFFFF
        c = r >> shift
        other = np.int64(alias[c])  # loaded either way: a select, not a branch
        out[i] = c if (r & low) < threshold[c] else other


@functools.lru_cache(maxsize=64)
def alias_table(p: float, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table of the ``2^bits`` fault patterns of one value at bit-cell rate p.

    Returns:
        ``(threshold, alias)``: int64 thresholds on ``31 - bits`` uniform bits, and each
        column's alias (uint8).
    """
    k = 1 << bits
    ones = np.array([bin(f).count("1") for f in range(k)])
    prob = p ** ones * (1.0 - p) ** (bits - ones) * k  # mean 1
    alias = np.arange(k, dtype=np.uint8)
    keep = np.ones(k)
    small = [i for i in range(k) if prob[i] < 1.0]
    large = [i for i in range(k) if prob[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        keep[s], alias[s] = prob[s], g
        prob[g] -= 1.0 - prob[s]
        (small if prob[g] < 1.0 else large).append(g)
    scale = 1 << (UNIFORM_BITS - bits)
    threshold = np.minimum(np.rint(keep * scale), scale).astype(np.int64)
    return threshold, alias


def implied_probabilities(p: float, bits: int) -> np.ndarray:
    """The exact probability of each pattern that :func:`alias_patterns` draws at rate p,
    enumerated from the table (for testing it against the closed form)."""
    threshold, alias = alias_table(p, bits)
    k, scale = 1 << bits, 1 << (UNIFORM_BITS - bits)
    out = np.zeros(k)
    for c in range(k):
        out[c] += threshold[c] / scale / k
        out[alias[c]] += (scale - threshold[c]) / scale / k
    return out
