"""Compiled (numba) kernels of bit-stream training: one fused step per network and image.

The training step of :mod:`hwlib.methods.bitstream_training` (forward pass with streams,
back-propagation with streams, the exact coincidence counts of eq. (4), the update of
floating-point weights or the programming events of memristive synapses, and the periodic
reset) runs here as compiled code, one network at a time over a sequence of images, so that no
step pays Python or PyTorch dispatch and each network's weights stay in the core's cache while
it trains. The programming events follow the write model of :mod:`hwlib.hardware.memristor`.

Random numbers. Every random number of a network is a *counter-based* hash of the network's
key and an address: ``word(key, a) = mix64(key + (a + 1) gamma)``, the SplitMix64 generator
read at state ``a`` (64 uniform bits). Each use has its own address (image step, signal, bit
position; see :func:`step_layout`), so a number does not depend on the order in which numbers
are drawn or on which are skipped: the compiled path may skip streams that cannot pulse and
the pure-PyTorch path (:mod:`hwlib.methods.bitstream_training`) computes every number, and
both see the same streams. A 64-bit word holds four 16-bit numbers ``r`` for the 16-bit
stochastic number generator (a bit is one when ``r < ceil(65536 p)``), or one double-precision
uniform ``((w >> 11) + 0.5) 2**-53`` in (0, 1), or a standard normal (:func:`normal`: the
ziggurat method, computed with additions, multiplications, divisions and comparisons only, so
that the PyTorch path computes the very same double).

Memristive device states are fixed-point numbers: a device's level coordinate ``k`` (its
conductance is ``G_min + k B``) is stored as the integer ``k 2**FRAC_BITS`` (:data:`FIX` steps
per level spacing ``B``). The programming noise is a continuous normal; only the stored result
is rounded, to ``B / 1024``. Sums of products of these integers with whole-number stream counts
are exact, in any order, in both implementations.

Streams are bit-packed, 64 bits to a word (``ceil(BL / 64)`` words per stream), and a
coincidence count ``sum_n x_n AND d_n`` is ``popcount(X AND D)``: exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

U64 = np.uint64
GAMMA = U64(0x9E3779B97F4A7C15)
_M1 = U64(0xBF58476D1CE4E5B9)
_M2 = U64(0x94D049BB133111EB)
_MASK16 = U64(0xFFFF)
_TWO53 = 2.0 ** -53
#: fast-math flags for reductions (dot products): reassociation, no signed zeros, fused
#: multiply-add; no finite-math assumptions (error streams use infinities).
_FM = {"reassoc", "nsz", "contract"}

KIND_DET, KIND_FLOAT, KIND_MEM = 0, 1, 2

#: Fraction bits of a stored device state: a level coordinate ``k`` is kept as the integer
#: ``round(k * FIX)``, a resolution of ``B / 1024`` (the smallest programming noise studied,
#: ``sigma = 0.1 B``, spans a hundred such steps).
FRAC_BITS = 10
FIX = 1 << FRAC_BITS


def _bit_intrinsic(build, doc):
    """A numba intrinsic ``uint64 -> uint64`` from an LLVM IR builder call."""

    def typer(typingctx, x):
        if x != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            return build(context, builder, args[0])

        return types.uint64(types.uint64), codegen

    typer.__doc__ = doc
    return intrinsic(typer)


popcount = _bit_intrinsic(lambda ctx, b, x: b.ctpop(x),
                          "Number of one bits of a uint64 (LLVM ``ctpop``).")
trailing_zeros = _bit_intrinsic(
    lambda ctx, b, x: b.cttz(x, ctx.get_constant(types.boolean, True)),
    "Index of the lowest one bit of a nonzero uint64 (LLVM ``cttz``).")


@njit(cache=True, inline="always")
def word(key, addr):
    """The 64 random bits at address ``addr`` of generator ``key`` (SplitMix64 at that state)."""
    z = key + (addr + U64(1)) * GAMMA
    z = (z ^ (z >> U64(30))) * _M1
    z = (z ^ (z >> U64(27))) * _M2
    return z ^ (z >> U64(31))


@njit(cache=True, inline="always")
def unit(w):
    """A uniform in the open interval (0, 1) from 64 random bits (53 of them used)."""
    return (float(w >> U64(11)) + 0.5) * _TWO53


@njit(cache=True, inline="always")
def sng_threshold(p):
    """The 16-bit SNG's comparator level for probability ``p`` in [0, 1]: ``ceil(65536 p)``."""
    return U64(math.ceil(p * 65536.0))


@njit(cache=True)
def words_array(key, addr):
    """``word(key, a)`` for every address of ``addr`` (uint64 array); for tests and the
    PyTorch path's checks."""
    out = np.empty(addr.shape[0], np.uint64)
    for i in range(addr.shape[0]):
        out[i] = word(U64(key), addr[i])
    return out


# --- standard normals (programming noise) -------------------------------------------------------
#
# A normal is drawn by the ziggurat method (G. Marsaglia and W. W. Tsang, "The ziggurat method
# for generating random variables", J. Stat. Softw. 5(8), 2000), in the layout of J. A. Doornik
# ("An improved ziggurat method to generate normal random samples", 2005): 128 layers of equal
# area under exp(-x^2 / 2), layer 0 holding the tail beyond R. One 64-bit word gives the layer
# (its low 7 bits) and a uniform u in (-1, 1) (its high 53 bits); |u| below the layer's ratio
# (98.8 % of the draws) returns u X[i] at once. The rest (wedges, the tail) need further words,
# the j-th at address ``addr + j 2**56`` of the same generator, and exp and log, computed here
# from additions, multiplications, divisions and exact scalings only (:func:`plog`,
# :func:`pexp`), so that the PyTorch path
# (:func:`hwlib.methods.bitstream_training.torch_normals`) computes the same doubles (library
# exp and log differ between the two in the last bit).

ZIG_LAYERS = 128
ZIG_R = 3.442619855899
"""Start of the tail (the right edge of layer 1)."""
ZIG_V = 9.91256303526217e-3
"""Area of each layer under ``exp(-x^2 / 2)``: ``R f(R) + integral of f beyond R``."""


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (layer edges, ``X[0] = V / f(R)``, ``X[1] = R``, decreasing to ``X[128] = 0``),
    ``X**2`` and the fast-path ratios ``X[i + 1] / X[i]``."""
    x = np.zeros(ZIG_LAYERS + 1)
    f = math.exp(-0.5 * ZIG_R * ZIG_R)
    x[0], x[1] = ZIG_V / f, ZIG_R
    for i in range(2, ZIG_LAYERS):
        x[i] = math.sqrt(-2.0 * math.log(ZIG_V / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    return x, x * x, x[1:] / x[:-1]


ZIG_X, ZIG_X2, ZIG_RATIO = ziggurat_tables()
_HALF_2_53 = np.int64(1 << 52)
LN2_HI = 6.93147180369123816490e-01        # ln 2 with 32 trailing zero bits: n LN2_HI is exact
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e+00
SQRT_HALF = 0.70710678118654752440
#: log(m) = 2 s + s^3 T(s^2), s = (m - 1) / (m + 1): T's coefficients 2 / (2k + 3), highest first
LOG_SERIES = tuple(2.0 / (2 * k + 3) for k in range(11, -1, -1))
#: exp(r) for |r| <= ln(2) / 2: Taylor coefficients 1 / k!, highest first (k = 13 .. 0)
EXP_SERIES = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))


@njit(cache=True, inline="always")
def horner(x, coefs):
    """``coefs[0] x^n + ... + coefs[n]``, evaluated as ``p = p * x + c`` (the PyTorch path
    evaluates the same sequence)."""
    p = coefs[0]
    for k in range(1, len(coefs)):
        p = p * x + coefs[k]
    return p


@njit(cache=True)
def plog(x):
    """Natural log of a positive normal double from exact operations and a series (error below
    two units in the last place): ``x = m 2**e`` with ``m`` in [sqrt(1/2), sqrt(2))."""
    m, e = math.frexp(x)
    if m < SQRT_HALF:
        m = m * 2.0
        e -= 1
    f = m - 1.0
    s = f / (2.0 + f)
    s2 = s * s
    return e * LN2_HI + (e * LN2_LO + (2.0 * s + s * s2 * horner(s2, LOG_SERIES)))


@njit(cache=True)
def pexp(t):
    """``exp(t)`` for moderate ``t`` from exact operations and a series: ``t = n ln 2 + r``,
    ``exp(t) = 2**n exp(r)``."""
    n = math.floor(t * INV_LN2 + 0.5)
    r = (t - n * LN2_HI) - n * LN2_LO
    return math.ldexp(horner(r, EXP_SERIES), n)


@njit(cache=True, inline="always")
def extra_word(key, addr, j):
    """The ``j``-th further word of the draw at ``addr`` (ziggurat rejections and tails)."""
    return word(key, addr + (U64(j) << U64(56)))


@njit(cache=True, inline="always")
def signed_unit(w):
    """A uniform in the open interval (-1, 1) from the high 53 bits of ``w``, exactly
    ``(2 (w >> 11) - 2**53 + 1) 2**-53`` (symmetric about 0)."""
    return float(2 * (np.int64(w >> U64(11)) - _HALF_2_53) + 1) * _TWO53


@njit(cache=True)
def normal_rejected(key, addr, w):
    """The ziggurat's slow path, for a first word ``w`` that missed its layer's rectangle."""
    j = 0
    while True:
        i = int(w & U64(ZIG_LAYERS - 1))
        u = signed_unit(w)
        if abs(u) < ZIG_RATIO[i]:
            return u * ZIG_X[i]
        if i == 0:                          # the tail beyond R (Marsaglia's method)
            while True:
                x = plog(unit(extra_word(key, addr, j + 1))) / ZIG_R
                y = plog(unit(extra_word(key, addr, j + 2)))
                j += 2
                if -2.0 * y >= x * x:
                    return x - ZIG_R if u < 0.0 else ZIG_R - x
        x = u * ZIG_X[i]                    # a wedge: accept under the density
        f0 = pexp(-0.5 * (ZIG_X2[i] - x * x))
        f1 = pexp(-0.5 * (ZIG_X2[i + 1] - x * x))
        if f1 + unit(extra_word(key, addr, j + 1)) * (f0 - f1) < 1.0:
            return x
        w = extra_word(key, addr, j + 2)
        j += 2


@njit(cache=True, inline="always")
def normal(key, addr):
    """A standard normal (float64) at address ``addr`` of generator ``key`` (the ziggurat; see
    the section's notes)."""
    w = word(key, addr)
    i = int(w & U64(ZIG_LAYERS - 1))
    u = signed_unit(w)
    if abs(u) < ZIG_RATIO[i]:
        return u * ZIG_X[i]
    return normal_rejected(key, addr, w)


@njit(cache=True)
def normals_array(key, addr):
    """``normal(key, a)`` for every address of ``addr`` (uint64 array); for tests and the
    PyTorch path's checks."""
    out = np.empty(addr.shape[0])
    for i in range(addr.shape[0]):
        out[i] = normal(U64(key), addr[i])
    return out


@njit(cache=True, inline="always")
def noise_steps(s_fx, key, addr):
    """Programming noise in fixed-point steps: ``rint(sigma/B FIX z)`` (``s_fx = sigma/B FIX``),
    z the normal at ``addr``; 0 without noise (no random number is drawn)."""
    if s_fx == 0.0:
        return 0
    return int(np.rint(s_fx * normal(key, addr)))


# --- address layout of one training step ------------------------------------------------------


@njit(cache=True)
def step_layout(n0, n1, n2, n3, bl):
    """Offsets of each use's random words within one step of one network, and the stride.

    Returns:
        ``(rows, err_u, err_tail, noise, reset, stride)``: the row streams of x, h1, h2
        (``ceil(BL / 4)`` words each), the first-one uniforms of the error streams (back-
        propagation: delta3, delta2; update: delta1, delta2, delta3), their tails, one word per
        synapse for programming noise, one per synapse for a noisy reset (the first word of a
        normal; the ziggurat's rare further words lie at ``+ j 2**56``, see :func:`normal`).
    """
    wps = (bl + 3) // 4
    n_rows = n0 + n1 + n2
    n_err = n3 + n2 + n1 + n2 + n3
    n_syn = n1 * (n0 + 1) + n2 * (n1 + 1) + n3 * (n2 + 1)
    rows = 0
    err_u = rows + n_rows * wps
    err_tail = err_u + n_err
    noise = err_tail + n_err * wps
    reset = noise + n_syn
    return rows, err_u, err_tail, noise, reset, reset + n_syn


# --- streams -----------------------------------------------------------------------------------


@njit(cache=True)
def row_streams(p, key, base, bl, bits, counts):
    """Streams of the 16-bit SNG for probabilities ``p`` (n,): bits (nw, n) and counts (n,).

    Stream ``i``'s bit ``t`` is one when 16-bit number ``t % 4`` of word
    ``base + i ceil(BL/4) + t // 4`` is below ``ceil(65536 p_i)``.
    """
    n = p.shape[0]
    wps = (bl + 3) // 4
    thr = np.empty(n, np.uint64)
    for i in range(n):
        thr[i] = sng_threshold(p[i])
        counts[i] = 0
    for k in range(bits.shape[0]):
        row = bits[k]
        for i in range(n):
            row[i] = U64(0)
    for w in range(wps):
        t0 = 4 * w
        nq = min(4, bl - t0)
        m = (U64(1) << U64(nq)) - U64(1)
        sh = U64(t0 & 63)
        row = bits[t0 >> 6]
        a0 = base + U64(w)
        for i in range(n):
            z = word(key, a0 + U64(i) * U64(wps))
            th = thr[i]
            b = (U64((z & _MASK16) < th) | (U64(((z >> U64(16)) & _MASK16) < th) << U64(1))
                 | (U64(((z >> U64(32)) & _MASK16) < th) << U64(2))
                 | (U64((z >> U64(48)) < th) << U64(3))) & m
            row[i] |= b << sh
            counts[i] += np.int32(popcount(b))


@njit(cache=True)
def error_streams(delta, gain, key, u0, t0, bl, bits, sgn, cnt, act, first, thr, qv, uv, comp):
    """Sign-magnitude error streams of ``q_j = min(1, gain |delta_j|)`` (one per value of
    ``delta``), into column ``j`` of ``bits`` (nw, m).

    The first one of stream ``j`` is placed exactly, in double precision:
    ``floor(log u / log(1 - q))`` with the uniform of word ``u0 + j`` (at or beyond BL: an empty
    stream); the later bits come from the 16-bit SNG, bit ``t`` from 16-bit number ``t % 4`` of
    word ``t0 + j ceil(BL/4) + t // 4``. A stream with ``u < 1 - BL q`` is certainly empty
    (``(1 - q)^BL >= 1 - BL q``) and costs no logarithm.

    Writes ``sgn[j]`` (the sign of a stream with a pulse, else 0) and ``cnt[j]`` (its signed
    count ``sign(delta_j) count``), and lists the columns with a pulse in ``act``; returns how
    many. ``first``, ``thr``, ``qv``, ``uv``, ``comp``: work arrays.
    """
    n = delta.shape[0]
    nw = bits.shape[0]
    wps = (bl + 3) // 4
    for j in range(n):                        # probabilities and first-one uniforms
        qv[j] = min(1.0, abs(delta[j]) * gain)
        uv[j] = unit(word(key, u0 + U64(j)))
        sgn[j] = 0
        cnt[j] = 0
    for k in range(nw):
        row = bits[k]
        for j in range(n):
            row[j] = U64(0)
    nc = 0
    for j in range(n):                        # candidates: no certain miss
        act[nc] = j
        nc += (qv[j] > 0.0) & (uv[j] >= 1.0 - bl * qv[j] - 1e-9)
    n_act = 0
    for c in range(nc):                       # first ones (exact), the columns with a pulse
        j = act[c]
        f = math.floor(math.log(uv[j]) / math.log1p(-qv[j]))
        act[n_act] = j
        first[n_act] = int(min(f, float(bl)))
        n_act += f < bl
    if n_act == 0:
        return 0
    for a in range(n_act):
        thr[a] = sng_threshold(qv[act[a]])
    for k in range(nw):
        row = comp[k]
        for a in range(n_act):
            row[a] = U64(0)
    for w in range(wps):                      # tails: word by word, over the active streams
        tw = 4 * w
        nq = min(4, bl - tw)
        m = (U64(1) << U64(nq)) - U64(1)
        sh = U64(tw & 63)
        row = comp[tw >> 6]
        for a in range(n_act):
            z = word(key, t0 + U64(act[a] * wps + w))
            th = thr[a]
            b = (U64((z & _MASK16) < th) | (U64(((z >> U64(16)) & _MASK16) < th) << U64(1))
                 | (U64(((z >> U64(32)) & _MASK16) < th) << U64(2))
                 | (U64((z >> U64(48)) < th) << U64(3))) & m
            row[a] |= b << sh
    for k in range(nw):                       # keep the bits after the first one, set it
        lo = 64 * k
        row = comp[k]
        for a in range(n_act):
            rel = first[a] - lo
            clear = min(max(rel + 1, 0), 63)
            keep = (~U64(0)) << U64(clear)
            keep = keep if rel < 63 else U64(0)
            one = U64(1) << U64(min(max(rel, 0), 63))
            one = one if (rel >= 0) & (rel < 64) else U64(0)
            row[a] = (row[a] & keep) | one
    for a in range(n_act):
        j = act[a]
        c = 0
        for k in range(nw):
            v = comp[k, a]
            bits[k, j] = v
            c += int(popcount(v))
        s = 1 if delta[j] > 0 else -1
        sgn[j] = s
        cnt[j] = s * c
    return n_act


@njit(cache=True)
def stream_counts(values, key, base, bl):
    """Signed stream counts for inference: ``sign(v) count`` of a 16-bit-SNG stream of
    ``min(1, |v|)`` for every value of ``values`` (N, n); value ``(a, i)``'s bit ``t`` uses
    16-bit number ``t % 4`` of word ``base + (a n + i) ceil(BL/4) + t // 4``. Float32 (N, n)."""
    N, n = values.shape
    wps = (bl + 3) // 4
    out = np.empty((N, n), np.float32)
    thr = np.empty(n, np.uint64)
    cnt = np.empty(n, np.int64)
    for a in range(N):
        row = values[a]
        for i in range(n):
            thr[i] = sng_threshold(min(1.0, abs(float(row[i]))))
            cnt[i] = 0
        a0 = base + U64(a * n * wps)
        for w in range(wps):
            nq = min(4, bl - 4 * w)
            for i in range(n):
                z = word(key, a0 + U64(i * wps + w))
                th = thr[i]
                c = U64((z & _MASK16) < th)
                if nq > 1:
                    c += U64(((z >> U64(16)) & _MASK16) < th)
                if nq > 2:
                    c += U64(((z >> U64(32)) & _MASK16) < th)
                if nq > 3:
                    c += U64((z >> U64(48)) < th)
                cnt[i] += c
        o = out[a]
        for i in range(n):
            v = row[i]
            o[i] = cnt[i] if v > 0 else (-cnt[i] if v < 0 else 0)
    return out


# --- dense pieces ------------------------------------------------------------------------------


@njit(cache=True, fastmath=_FM)
def affine(W, v, scale, out):
    """``out[j] = scale * sum_i W[j, i] v[i] + W[j, n_in]`` (float32 weights, bias last)."""
    n_out, m = W.shape
    n_in = m - 1
    for j in range(n_out):
        row = W[j]
        acc = np.float32(0.0)
        for i in range(n_in):
            acc += row[i] * v[i]
        out[j] = float(acc) * scale + float(row[n_in])


@njit(cache=True, fastmath=_FM)
def affine_levels(Ld, v, vi, bias_in, wide, out):
    """Memristive layer, before scaling: ``out[j] = sum_i d[j, i] v[i] + d[j, n] bias_in``, with
    ``d = K+ - K-`` the fixed-point weights (integers, :data:`FIX` per level) and whole-number
    signals ``v`` (signed stream counts). Every partial sum is an integer within the
    accumulator's exact range (int32, or float64 when ``wide``; the caller decides from
    ``BL top FIX (fan-in + 1)``), so the sum is exact in any order. ``vi``: int16 work array
    (the counts; int16 products summed in int32 compile to ``vpmaddwd``)."""
    n_out, m = Ld.shape
    n_in = m - 1
    if wide:
        for j in range(n_out):
            rd = Ld[j]
            acc = 0.0
            for i in range(n_in):
                acc += float(rd[i]) * float(v[i])
            out[j] = acc + float(rd[n_in]) * bias_in
        return
    for i in range(n_in):
        vi[i] = np.int16(v[i])
    for j in range(n_out):
        rd = Ld[j]
        acc32 = np.int32(0)
        for i in range(n_in):                   # int32 arithmetic (numba would widen to int64)
            acc32 = np.int32(acc32 + np.int32(np.int32(rd[i]) * np.int32(vi[i])))
        out[j] = float(acc32) + float(rd[n_in]) * bias_in


@njit(cache=True)
def back_levels(Ld, e, wide, acc, out):
    """``out[i] = sum_j d[j, i] e[j]`` for whole-number signed counts ``e`` (exact, see
    :func:`affine_levels`), skipping ``e[j] = 0``; ``acc``: int32 work array."""
    n_out, m = Ld.shape
    n_in = m - 1
    if wide:
        for i in range(n_in):
            out[i] = 0.0
        for j in range(n_out):
            ej = float(e[j])
            if ej != 0.0:
                rd = Ld[j]
                for i in range(n_in):
                    out[i] += float(rd[i]) * ej
        return
    for i in range(n_in):
        acc[i] = 0
    for j in range(n_out):
        ej = np.int32(e[j])
        if ej != 0:
            rd = Ld[j]
            for i in range(n_in):
                acc[i] = np.int32(acc[i] + np.int32(np.int32(rd[i]) * ej))
    for i in range(n_in):
        out[i] = float(acc[i])


@njit(cache=True)
def back_float(W, e, out):
    """``out[i] = sum_j W[j, i] e[j]`` over the inputs (bias excluded), skipping ``e[j] = 0``."""
    n_out, m = W.shape
    n_in = m - 1
    for i in range(n_in):
        out[i] = 0.0
    for j in range(n_out):
        ej = np.float32(e[j])
        if ej == 0:
            continue
        row = W[j]
        for i in range(n_in):
            out[i] += row[i] * ej


@njit(cache=True, inline="always")
def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


@njit(cache=True)
def softmax_error(z, y, d):
    """``d = softmax(z) - onehot(y)``; returns the argmax of ``z`` (first maximum)."""
    n = z.shape[0]
    best = 0
    for j in range(1, n):
        if z[j] > z[best]:
            best = j
    s = 0.0
    for j in range(n):
        d[j] = math.exp(z[j] - z[best])
        s += d[j]
    for j in range(n):
        d[j] /= s
    d[y] -= 1.0
    return best


# --- the deterministic network -----------------------------------------------------------------


@njit(cache=True)
def det_step(W1, W2, W3, x, y, eta, s):
    """One SGD step (batch size one, cross-entropy of the softmax) of the floating-point network
    on input ``x`` with label ``y``; ``s``: work arrays (:func:`det_scratch`). Returns 1 if the
    image was misclassified."""
    h1, h2, z3, d1, d2, d3, v1, v2, t1, t2 = s
    n1 = W1.shape[0]
    n2 = W2.shape[0]
    affine(W1, x, 1.0, h1)
    for j in range(n1):
        h1[j] = sigmoid(h1[j])
        v1[j] = np.float32(h1[j])
    affine(W2, v1, 1.0, h2)
    for j in range(n2):
        h2[j] = sigmoid(h2[j])
        v2[j] = np.float32(h2[j])
    affine(W3, v2, 1.0, z3)
    best = softmax_error(z3, y, d3)
    back_float(W3, d3, t2)
    for i in range(n2):
        d2[i] = float(t2[i]) * h2[i] * (1.0 - h2[i])
    back_float(W2, d2, t1)
    for i in range(n1):
        d1[i] = float(t1[i]) * h1[i] * (1.0 - h1[i])
    _rank1(W1, x, d1, eta)
    _rank1(W2, v1, d2, eta)
    _rank1(W3, v2, d3, eta)
    return 1 if best != y else 0


@njit(cache=True)
def _rank1(W, v, d, eta):
    """``W[j, :n] -= (eta d[j]) v``, ``W[j, n] -= eta d[j]`` (float32)."""
    n_out, m = W.shape
    n_in = m - 1
    for j in range(n_out):
        g = np.float32(eta * d[j])
        row = W[j]
        for i in range(n_in):
            row[i] -= g * v[i]
        row[n_in] -= g


@njit(cache=True)
def det_scratch(n0, n1, n2, n3):
    """Work arrays of a deterministic network's step (see :func:`det_step`)."""
    f8, f4 = np.float64, np.float32
    return (np.zeros(n1, f8), np.zeros(n2, f8), np.zeros(n3, f8), np.zeros(n1, f8),
            np.zeros(n2, f8), np.zeros(n3, f8), np.zeros(n1, f4), np.zeros(n2, f4),
            np.zeros(n1, f4), np.zeros(n2, f4))


# --- the update of eq. (4) ---------------------------------------------------------------------


@njit(cache=True)
def update_float(W, R, sr, D, act, n_act, sgn, B):
    """Eq. (4) for floating-point weights: ``W[j, i] -= (B sgn_j) (sr_i popcount(R_i AND D_j))``
    for the active columns ``j``; the bias row's stream is all ones (count ``popcount(D_j)``)."""
    n_out, m = W.shape
    n_in = m - 1
    nw = R.shape[0]
    for a in range(n_act):
        j = act[a]
        cj = np.float32(B * sgn[j])
        row = W[j]
        if nw == 1:
            dj = D[0, j]
            r0 = R[0]
            for i in range(n_in):
                row[i] -= cj * (sr[i] * np.float32(popcount(r0[i] & dj)))
            row[n_in] -= cj * np.float32(popcount(dj))
        elif nw == 2:
            dj0 = D[0, j]
            dj1 = D[1, j]
            r0 = R[0]
            r1 = R[1]
            for i in range(n_in):
                row[i] -= cj * (sr[i] * np.float32(popcount(r0[i] & dj0)
                                                   + popcount(r1[i] & dj1)))
            row[n_in] -= cj * np.float32(popcount(dj0) + popcount(dj1))
        else:
            cb = U64(0)
            for k in range(nw):
                cb += popcount(D[k, j])
            for i in range(n_in):
                c = U64(0)
                for k in range(nw):
                    c += popcount(R[k, i] & D[k, j])
                row[i] -= cj * (sr[i] * np.float32(c))
            row[n_in] -= cj * np.float32(cb)


@njit(cache=True)
def bit_planes(R, n_in, bl, planes):
    """Transpose row streams: ``planes[t, w]`` bit ``b`` = bit ``t`` of row stream
    ``64 w + b``."""
    nwr = (n_in + 63) // 64
    for t in range(bl):
        Rk = R[t >> 6]
        sh = U64(t & 63)
        for w in range(nwr):
            lo = 64 * w
            nb = min(64, n_in - lo)
            acc = U64(0)
            for b in range(nb):
                acc |= ((Rk[lo + b] >> sh) & U64(1)) << U64(b)
            planes[t, w] = acc


@njit(cache=True)
def coincidence_events(R, sr, D, act, n_act, sgn, n_in, bl, planes, cnt, union, ev_i, ev_c):
    """The nonzero coincidence counts of a layer, as events: ``ev_i`` the synapse (``j (n_in +
    1) + i``), ``ev_c`` the count times the direction of the weight change
    (``-sign(delta_j) sign(x_i)``: positive raises the weight). Returns how many.

    With several active columns the row streams are transposed into bit planes (for each bit
    position, which rows pulse), so that a column's work follows its pulses; a single column is
    counted row by row."""
    nw = R.shape[0]
    m = n_in + 1
    nwr = (n_in + 63) // 64
    ne = 0
    by_planes = n_act * nw * 8 >= bl
    if by_planes and n_act > 0:
        bit_planes(R, n_in, bl, planes)
    for a in range(n_act):
        j = act[a]
        sj = sgn[j]
        cb = 0
        for k in range(nw):
            cb += int(popcount(D[k, j]))
        ev_i[ne] = j * m + n_in                    # the bias row: an all-ones stream
        ev_c[ne] = -sj * cb
        ne += 1
        if by_planes:
            if cb == 1:
                t = 0
                for k in range(nw):
                    if D[k, j]:
                        t = 64 * k + int(trailing_zeros(D[k, j]))
                for w in range(nwr):
                    x = planes[t, w]
                    while x:
                        i = 64 * w + int(trailing_zeros(x))
                        x &= x - U64(1)
                        ev_i[ne] = j * m + i
                        ev_c[ne] = -sj * int(sr[i])
                        ne += 1
                continue
            for w in range(nwr):
                union[w] = U64(0)
            for k in range(nw):
                y = D[k, j]
                while y:
                    t = 64 * k + int(trailing_zeros(y))
                    y &= y - U64(1)
                    for w in range(nwr):
                        x = planes[t, w]
                        union[w] |= x
                        while x:
                            i = 64 * w + int(trailing_zeros(x))
                            x &= x - U64(1)
                            cnt[i] += 1
            for w in range(nwr):
                x = union[w]
                while x:
                    i = 64 * w + int(trailing_zeros(x))
                    x &= x - U64(1)
                    ev_i[ne] = j * m + i
                    ev_c[ne] = -sj * int(sr[i]) * cnt[i]
                    cnt[i] = 0
                    ne += 1
        else:
            for i in range(n_in):
                c = U64(0)
                for k in range(nw):
                    c += popcount(R[k, i] & D[k, j])
                cnt[i] = c
            for i in range(n_in):
                c = cnt[i]
                ev_i[ne] = j * m + i
                ev_c[ne] = -sj * int(sr[i]) * c
                ne += c != 0
                cnt[i] = 0
    return ne


@njit(cache=True)
def program_events(Fp, Fm, Fd, ev_i, ev_c, ne, top, key, addr0, s_fx):
    """One programming event per nonzero count ``n`` (see :func:`coincidence_events`) on the
    device that must rise (``G+`` if the weight must rise, else ``G-``), in fixed point:
    ``K_f = min(top, K_i + max(0, n FIX + rint(s_fx z)))``, ``s_fx = sigma/B FIX``, ``z`` the
    standard normal at word ``addr0 + s`` for synapse ``s``. A negative total move leaves the
    device where it is (unidirectional). ``Fp``, ``Fm``, ``Fd``: the layer's ``K+``, ``K-`` and
    ``K+ - K-``, flat; ``top``: ``(levels - 1) FIX``."""
    for e in range(ne):
        c = ev_c[e]
        s = ev_i[e]
        step = abs(c) * FIX + noise_steps(s_fx, key, addr0 + U64(s))
        if step <= 0:
            continue
        if c > 0:
            p = int(Fp[s])
            p2 = min(top, p + step)
            Fp[s] = p2
            Fd[s] = int(Fd[s]) + (p2 - p)
        else:
            q = int(Fm[s])
            q2 = min(top, q + step)
            Fm[s] = q2
            Fd[s] = int(Fd[s]) - (q2 - q)


#: Synapses per chunk of a noisy reset (normals first, then the state update, vectorized).
RESET_CHUNK = 512


@njit(cache=True)
def _reset_magnitudes(Fd, lo, m, top, s_fx, z, mag):
    """``mag[t] = min(top, max(0, |d| + rint(s_fx z[t])))`` for synapse ``lo + t`` (0 where
    ``d = 0``), in int32 (vectorizes)."""
    zero = np.int32(0)
    for t in range(m):
        d = np.int32(Fd[lo + t])
        a = d if d >= zero else -d
        v = np.int32(a + np.int32(np.rint(s_fx * z[t])))
        v = min(np.int32(top), max(zero, v))
        mag[t] = v if d != zero else zero


@njit(cache=True)
def _place_magnitudes(Fp, Fm, Fd, lo, m, mag):
    """Both devices of synapse ``lo + t`` from ``mag[t]``: on ``G+`` if its weight is positive,
    else on ``G-``."""
    for t in range(m):
        d = Fd[lo + t]
        g = mag[t]
        Fp[lo + t] = g if d > 0 else 0
        Fm[lo + t] = g if d < 0 else 0
    for t in range(m):
        d = Fd[lo + t]
        Fd[lo + t] = mag[t] if d > 0 else -mag[t]


@njit(cache=True)
def reset_levels(Fp, Fm, Fd, top, noisy, key, addr0, s_fx):
    """The reset: both devices to G_min, the weight ``d = K+ - K-`` re-programmed onto ``G+``
    (d > 0) or ``G-`` (d < 0), exactly, or, when ``noisy``, as a programming event of the same
    write model: ``|d|`` plus the noise of word ``addr0 + s`` (synapse ``s``), clipped to
    ``[0, top]``. A synapse with ``d = 0`` is not programmed (its noise is drawn and unused)."""
    n = Fp.shape[0]
    if not noisy or s_fx == 0.0:
        for i in range(n):
            d = Fd[i]
            Fp[i] = d if d > 0 else 0
            Fm[i] = -d if d < 0 else 0
        return
    z = np.empty(RESET_CHUNK)
    mag = np.empty(RESET_CHUNK, np.int32)
    for lo in range(0, n, RESET_CHUNK):
        m = min(RESET_CHUNK, n - lo)
        for t in range(m):
            z[t] = normal(key, addr0 + U64(lo + t))
        _reset_magnitudes(Fd, lo, m, top, s_fx, z, mag)
        _place_magnitudes(Fp, Fm, Fd, lo, m, mag)


@njit(cache=True)
def program_layer(Fp, Fm, Fd, R, sr, D, act, n_act, sgn, n_in, bl, top, key, addr0, s_fx, work):
    """A memristive layer's update: its coincidence events (:func:`coincidence_events`), each
    a programming event (:func:`program_events`). Returns the number of events."""
    planes, cnt, union, ev_i, ev_c = work
    ne = coincidence_events(R, sr, D, act, n_act, sgn, n_in, bl, planes, cnt, union, ev_i, ev_c)
    program_events(Fp, Fm, Fd, ev_i, ev_c, ne, top, key, addr0, s_fx)
    return ne


@njit(cache=True)
def forward_layer(mem, W, L, counts, vi, bl, bw, inv, wide, out):
    """A layer's pre-activations from its inputs' signed stream counts: through floating-point
    weights ``W``, or, when ``mem``, through fixed-point states ``L`` (``w = bw (K+ - K-)``,
    ``bw = B_w / FIX``; the exact sum, then one product by ``bw / BL``); the bias row's stream
    is all ones."""
    if mem:
        affine_levels(L, counts, vi, bl, wide, out)
        scale = bw * inv
        for j in range(out.shape[0]):
            out[j] = out[j] * scale
    else:
        affine(W, counts, inv, out)


@njit(cache=True)
def hidden_streams(h, f, key, addr, bl, H, c):
    """A hidden layer's outputs: ``h <- sigmoid(h)``, their streams into ``H`` (counts ``c``,
    words from ``addr``), and the counts as float32 in ``f``."""
    n = h.shape[0]
    for j in range(n):
        h[j] = sigmoid(h[j])
        f[j] = np.float32(h[j])
    row_streams(f[:n], key, addr, bl, H, c)
    for j in range(n):
        f[j] = np.float32(c[j])


@njit(cache=True)
def back_errors(mem, W, L, counts, bw, inv, wide, h, f32, e32, acc, out):
    """Back-propagation through one layer: ``out[i] = (sum_j w_ji count_j / BL) h_i (1 - h_i)``
    from the signed error counts ``count_j``, through floating-point weights ``W`` or, when
    ``mem``, through fixed-point states ``L`` (``w = bw (K+ - K-)``, an exact integer sum)."""
    n_out = counts.shape[0]
    n_in = h.shape[0]
    for j in range(n_out):
        e32[j] = np.float32(counts[j])
    if mem:
        back_levels(L, e32[:n_out], wide, acc, out)
        sc = bw * inv
    else:
        back_float(W, e32[:n_out], f32)
        for i in range(n_in):
            out[i] = float(f32[i])
        sc = inv
    for i in range(n_in):
        out[i] = out[i] * sc * h[i] * (1.0 - h[i])


# --- a stochastic network's step -----------------------------------------------------------------


@njit(cache=True)
def sto_step(mem, W1, W2, W3, Lp, Lm, Ld, x, y, bl, key, base, B, gains, bw, top, s_fx, wide,
             s):
    """One training step of a stochastic network on input ``x`` (signed, sign-magnitude
    streams) with label ``y``: floating-point weights ``W1..W3``, or, when ``mem``, memristive
    fixed-point states ``Lp``, ``Lm``, ``Ld`` (``K+``, ``K-``, ``K+ - K-``: the network's three
    layers, flat; ``bw = B_w / FIX`` per layer, ``top = (levels - 1) FIX``, ``s_fx = sigma/B
    FIX``). Random words at ``base`` plus the offsets of :func:`step_layout`. Returns
    (misclassified, programming events)."""
    (h1, h2, z3, d1, d2, d3, sx, mx, vx, c0, c1, c2, X, H1, H2, D1, D2, D3, Dw, s1, s2, s3,
     k1, k2, k3, a1, a2, a3, fb, tb, f1, f2, ones, planes, cnt, union, ev_i, ev_c, vi, ia,
     qw, uw, cw) = s
    n0 = x.shape[0]
    n1 = h1.shape[0]
    n2 = h2.shape[0]
    n3 = z3.shape[0]
    o_rows, o_eu, o_et, o_noise, o_reset, stride = step_layout(n0, n1, n2, n3, bl)
    wps = (bl + 3) // 4
    inv = 1.0 / bl
    q1, q2, q3 = n1 * (n0 + 1), n2 * (n1 + 1), n3 * (n2 + 1)
    L1 = Ld[:q1].reshape((n1, n0 + 1))
    L2 = Ld[q1:q1 + q2].reshape((n2, n1 + 1))
    L3 = Ld[q1 + q2:q1 + q2 + q3].reshape((n3, n2 + 1))
    # forward pass: sign-magnitude input streams, then the hidden layers' streams; the next
    # layer reads each stream's count over BL through exactly read weights
    for i in range(n0):
        v = x[i]
        sx[i] = np.float32(1.0) if v > 0 else (np.float32(-1.0) if v < 0 else np.float32(0.0))
        mx[i] = min(np.float32(1.0), abs(v))
    row_streams(mx, key, base + U64(o_rows), bl, X, c0)
    for i in range(n0):
        vx[i] = sx[i] * np.float32(c0[i])
    forward_layer(mem, W1, L1, vx, vi, bl, bw[0], inv, wide, h1)
    hidden_streams(h1, f1, key, base + U64(o_rows + n0 * wps), bl, H1, c1)
    forward_layer(mem, W2, L2, f1[:n1], vi, bl, bw[1], inv, wide, h2)
    hidden_streams(h2, f2, key, base + U64(o_rows + (n0 + n1) * wps), bl, H2, c2)
    forward_layer(mem, W3, L3, f2[:n2], vi, bl, bw[2], inv, wide, z3)
    best = softmax_error(z3, y, d3)
    # back-propagation: sign-magnitude streams of |delta|; the layer below reads their signed
    # counts over BL through the transposed array; the sigmoid's derivative in the periphery
    error_streams(d3, 1.0, key, base + U64(o_eu), base + U64(o_et), bl, Dw, s3, k3, a3, fb, tb,
                  qw, uw, cw)
    back_errors(mem, W3, L3, k3, bw[2], inv, wide, h2, f1, f2, ia, d2)
    error_streams(d2, 1.0, key, base + U64(o_eu + n3), base + U64(o_et + n3 * wps), bl, Dw, s2,
                  k2, a2, fb, tb, qw, uw, cw)
    back_errors(mem, W2, L2, k2, bw[1], inv, wide, h1, f1, f2, ia, d1)
    # update, eq. (4): the row streams (the forward pulses) meet error streams of
    # min(1, C |delta_j|); the counts are popcount(row AND column), exact
    eu = o_eu + n3 + n2
    et = o_et + (n3 + n2) * wps
    n_a1 = error_streams(d1, gains[0], key, base + U64(eu), base + U64(et), bl, D1, s1, k1, a1,
                         fb, tb, qw, uw, cw)
    n_a2 = error_streams(d2, gains[1], key, base + U64(eu + n1), base + U64(et + n1 * wps), bl,
                         D2, s2, k2, a2, fb, tb, qw, uw, cw)
    n_a3 = error_streams(d3, gains[2], key, base + U64(eu + n1 + n2),
                         base + U64(et + (n1 + n2) * wps), bl, D3, s3, k3, a3, fb, tb, qw,
                         uw, cw)
    events = 0
    if mem:
        work = (planes, cnt, union, ev_i, ev_c)
        nz = base + U64(o_noise)
        for lo, hi, R, sr, D, act, n_act, sgn, n_in in (
                (0, q1, X, sx, D1, a1, n_a1, s1, n0),
                (q1, q1 + q2, H1, ones, D2, a2, n_a2, s2, n1),
                (q1 + q2, q1 + q2 + q3, H2, ones, D3, a3, n_a3, s3, n2)):
            events += program_layer(Lp[lo:hi], Lm[lo:hi], Ld[lo:hi], R, sr, D, act, n_act, sgn,
                                    n_in, bl, top, key, nz + U64(lo), s_fx, work)
    else:
        update_float(W1, X, sx, D1, a1, n_a1, s1, B)
        update_float(W2, H1, ones, D2, a2, n_a2, s2, B)
        update_float(W3, H2, ones, D3, a3, n_a3, s3, B)
    return (1 if best != y else 0), events


@njit(cache=True)
def scratch(n0, n1, n2, n3, bl):
    """Work arrays of one stochastic network's step (a tuple, see :func:`sto_step`)."""
    nw = max(1, (bl + 63) // 64)
    f8, f4, i4, u8, i8 = np.float64, np.float32, np.int32, np.uint64, np.int64
    nm = max(n0, n1, n2, n3)
    n_syn = max(n1 * (n0 + 1), n2 * (n1 + 1), n3 * (n2 + 1))
    return (np.zeros(n1, f8), np.zeros(n2, f8), np.zeros(n3, f8), np.zeros(n1, f8),
            np.zeros(n2, f8), np.zeros(n3, f8),
            np.zeros(n0, f4), np.zeros(n0, f4), np.zeros(n0, f4),
            np.zeros(n0, i4), np.zeros(n1, i4), np.zeros(n2, i4),
            np.zeros((nw, n0), u8), np.zeros((nw, n1), u8), np.zeros((nw, n2), u8),
            np.zeros((nw, n1), u8), np.zeros((nw, n2), u8), np.zeros((nw, n3), u8),
            np.zeros((nw, max(n2, n3)), u8),
            np.zeros(n1, i4), np.zeros(n2, i4), np.zeros(n3, i4),
            np.zeros(n1, i4), np.zeros(n2, i4), np.zeros(n3, i4),
            np.zeros(n1, i8), np.zeros(n2, i8), np.zeros(n3, i8),
            np.zeros(nm, i8), np.zeros(nm, u8),
            np.zeros(max(n1, n2, n3), f4), np.zeros(max(n1, n2, n3), f4),
            np.ones(max(n1, n2), f4),
            np.zeros((64 * nw, (nm + 63) // 64), u8), np.zeros(nm, i8),
            np.zeros((nm + 63) // 64, u8),
            np.zeros(n_syn, i8), np.zeros(n_syn, i8), np.zeros(nm, np.int16), np.zeros(nm, i4),
            np.zeros(nm, f8), np.zeros(nm, f8), np.zeros((nw, nm), u8))


# --- the driver --------------------------------------------------------------------------------


@njit(cache=True)
def train_network(x, y, order, step0, kind, bl, key, eta, B, gains, bw, top, reset_every,
                  reset_noise, s_fx, W, Fp, Fm, Fd, n1, n2, n3, wide):
    """Train one network on images ``order`` of ``x`` (its inputs, (N, n0)) with labels ``y``,
    one image at a time; the first image is step ``step0 + 1``. Floating-point weights in ``W``,
    memristive fixed-point states ``K+``, ``K-``, ``K+ - K-`` in ``Fp``, ``Fm``, ``Fd`` (layers
    1 to 3, each (outputs, inputs + 1), bias last, flat; see :func:`sto_step`). Returns
    (misclassified images, programming events)."""
    n0 = x.shape[1]
    q1, q2, q3 = n1 * (n0 + 1), n2 * (n1 + 1), n3 * (n2 + 1)
    W1 = W[:q1].reshape((n1, n0 + 1))
    W2 = W[q1:q1 + q2].reshape((n2, n1 + 1))
    W3 = W[q1 + q2:q1 + q2 + q3].reshape((n3, n2 + 1))
    wrong = 0
    events = 0
    if kind == KIND_DET:
        sd = det_scratch(n0, n1, n2, n3)
        for m in range(order.shape[0]):
            i = order[m]
            wrong += det_step(W1, W2, W3, x[i], y[i], eta, sd)
        return wrong, events
    mem = kind == KIND_MEM
    ss = scratch(n0, n1, n2, n3, bl)
    layout = step_layout(n0, n1, n2, n3, bl)
    for m in range(order.shape[0]):
        i = order[m]
        step = step0 + m + 1
        base = U64(step) * U64(layout[5])
        w, ev = sto_step(mem, W1, W2, W3, Fp, Fm, Fd, x[i], y[i], bl, key, base, B, gains, bw,
                         top, s_fx, wide, ss)
        wrong += w
        events += ev
        if mem and reset_every > 0 and step % reset_every == 0:
            reset_levels(Fp, Fm, Fd, top, reset_noise != 0, key, base + U64(layout[4]), s_fx)
    return wrong, events
