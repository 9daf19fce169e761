"""Compiled (numba) kernels of the stochastic DNN: one fused training step per network and image.

The training step of :mod:`hwlib.stochastic_dnn` (forward pass with streams, back-propagation
with streams, the exact coincidence counts of eq. (4), the update of floating-point weights or
the programming events of memristive synapses, and the periodic reset) runs here as compiled
code, one network at a time over a sequence of images, so that no step pays Python or PyTorch
dispatch and each network's weights stay in the core's cache while it trains.

Random numbers. Every random number of a network is a *counter-based* hash of the network's
key and an address: ``word(key, a) = mix64(key + (a + 1) gamma)``, the SplitMix64 generator
read at state ``a`` (64 uniform bits). Each use has its own address (image step, signal, bit
position; see :func:`step_layout`), so a number does not depend on the order in which numbers
are drawn or on which are skipped: the compiled path may skip streams that cannot pulse and
the pure-PyTorch path (:mod:`hwlib.stochastic_dnn`) computes every number, and both see the
same streams. A 64-bit word holds four 16-bit numbers ``r`` for the 16-bit stochastic number
generator (a bit is one when ``r < ceil(65536 p)``), or one double-precision uniform
``((w >> 11) + 0.5) 2**-53`` in (0, 1).

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


# --- address layout of one training step ------------------------------------------------------


@njit(cache=True)
def step_layout(n0, n1, n2, n3, bl):
    """Offsets of each use's random words within one step of one network, and the stride.

    Returns:
        ``(rows, err_u, err_tail, noise, reset, stride)``: the row streams of x, h1, h2
        (``ceil(BL / 4)`` words each), the first-one uniforms of the error streams (back-
        propagation: delta3, delta2; update: delta1, delta2, delta3), their tails, one word per
        synapse for programming noise, one per synapse for a noisy reset.
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
def affine_levels(Ld, v, bias_in, scale, wide, out):
    """Memristive layer: ``out[j] = scale (sum_i d[j, i] v[i] + d[j, n] bias_in)`` with
    ``d = k+ - k-`` (whole levels) and whole-number signals ``v`` (signed stream counts). Every
    partial sum is a whole number within the accumulator's exact range (float32 up to 2**24,
    float64 when ``wide``; the caller decides from ``BL top (fan-in + 1)``), so the sum is exact
    in any order."""
    n_out, m = Ld.shape
    n_in = m - 1
    for j in range(n_out):
        rd = Ld[j]
        if wide:
            acc = 0.0
            for i in range(n_in):
                acc += float(rd[i]) * float(v[i])
        else:
            acc32 = np.float32(0.0)
            for i in range(n_in):
                acc32 += np.float32(rd[i]) * v[i]
            acc = float(acc32)
        out[j] = (acc + float(rd[n_in]) * bias_in) * scale


@njit(cache=True)
def back_levels(Ld, e, wide, out):
    """``out[i] = sum_j d[j, i] e[j]`` for whole-number signed counts ``e`` (exact, see
    :func:`affine_levels`), skipping ``e[j] = 0``."""
    n_out, m = Ld.shape
    n_in = m - 1
    for i in range(n_in):
        out[i] = 0.0
    for j in range(n_out):
        ej = e[j]
        if ej == 0:
            continue
        rd = Ld[j]
        if wide:
            for i in range(n_in):
                out[i] += float(rd[i]) * float(ej)
        else:
            for i in range(n_in):
                out[i] += np.float32(rd[i]) * np.float32(ej)


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
def rounded_noise(u, table, kmax):
    """The programming noise rounded to whole levels, ``round(sigma z / B)``, for a uniform
    ``u``, by inverting its exact distribution: ``table[kmax + k] = P(round(sigma z / B) < k)``
    for ``k = -kmax .. kmax + 1`` (0 and 1 at the ends)."""
    k = 0
    while k > -kmax and u < table[kmax + k]:
        k -= 1
    while k < kmax and u >= table[kmax + k + 1]:
        k += 1
    return k


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
def program_events(Fp, Fm, Fd, ev_i, ev_c, ne, top, key, addr0, table, kmax, ev_u, ev_k):
    """One programming event per nonzero count ``n`` (see :func:`coincidence_events`): the
    device (``G+`` if the weight must rise, else ``G-``) moves by ``max(0, n + round(sigma z /
    B))`` levels and saturates at ``top``; the programming noise of synapse ``s`` comes from
    word ``addr0 + s``. ``Fp``, ``Fm``, ``Fd``: the layer's ``k+``, ``k-`` and ``k+ - k-``,
    flat."""
    for e in range(ne):
        ev_k[e] = 0
    if kmax > 0:
        for e in range(ne):
            ev_u[e] = unit(word(key, addr0 + U64(ev_i[e])))
        if kmax <= 16:                 # the noise's inverse distribution, without branches
            for e in range(ne):
                ev_k[e] = -kmax
            for t in range(1, 2 * kmax + 1):
                level = table[t]
                for e in range(ne):
                    ev_k[e] += ev_u[e] >= level
        else:
            for e in range(ne):
                ev_k[e] = rounded_noise(ev_u[e], table, kmax)
    for e in range(ne):
        c = ev_c[e]
        step = max(0, abs(c) + ev_k[e])
        up = 1 if c > 0 else 0
        s = ev_i[e]
        p = int(Fp[s])
        q = int(Fm[s])
        p2 = min(top, p + step * up)
        q2 = min(top, q + step * (1 - up))
        Fp[s] = p2
        Fm[s] = q2
        Fd[s] = int(Fd[s]) + (p2 - p) - (q2 - q)


@njit(cache=True)
def reset_levels(Fp, Fm, Fd, top, noisy, key, addr0, table, kmax):
    """The reset: both devices to G_min, the weight ``d = k+ - k-`` re-programmed onto ``G+``
    (d > 0) or ``G-`` (d < 0), exactly, or as a noisy programming event of ``|d|`` levels
    (synapse ``s``'s noise from word ``addr0 + s``)."""
    if not noisy:
        for i in range(Fp.shape[0]):
            d = Fd[i]
            Fp[i] = d if d > 0 else 0
            Fm[i] = -d if d < 0 else 0
        return
    for i in range(Fp.shape[0]):
        d = int(Fd[i])
        if d == 0:
            Fp[i] = 0
            Fm[i] = 0
            continue
        mag = abs(d)
        if kmax > 0:
            mag = min(top, max(0, mag + rounded_noise(unit(word(key, addr0 + U64(i))), table,
                                                      kmax)))
        Fp[i] = mag if d > 0 else 0
        Fm[i] = mag if d < 0 else 0
        Fd[i] = mag if d > 0 else -mag


@njit(cache=True)
def program_layer(Fp, Fm, Fd, R, sr, D, act, n_act, sgn, n_in, bl, top, key, addr0, table, kmax,
                  work):
    """A memristive layer's update: its coincidence events (:func:`coincidence_events`), each
    a programming event (:func:`program_events`). Returns the number of events."""
    planes, cnt, union, ev_i, ev_c, ev_u, ev_k = work
    ne = coincidence_events(R, sr, D, act, n_act, sgn, n_in, bl, planes, cnt, union, ev_i, ev_c)
    program_events(Fp, Fm, Fd, ev_i, ev_c, ne, top, key, addr0, table, kmax, ev_u, ev_k)
    return ne


@njit(cache=True)
def forward_layer(mem, W, L, counts, bl, bw, inv, wide, out):
    """A layer's pre-activations from its inputs' signed stream counts: through floating-point
    weights ``W``, or, when ``mem``, through levels ``L`` (``w = B_w (k+ - k-)``); the bias row's
    stream is all ones."""
    if mem:
        affine_levels(L, counts, bl, bw * inv, wide, out)
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
def back_errors(mem, W, L, counts, bw, inv, wide, h, f32, e32, out):
    """Back-propagation through one layer: ``out[i] = (sum_j w_ji count_j / BL) h_i (1 - h_i)``
    from the signed error counts ``count_j``, through floating-point weights ``W`` or, when
    ``mem``, through levels ``L`` (``w = B_w (k+ - k-)``, an exact whole-number sum)."""
    n_out = counts.shape[0]
    n_in = h.shape[0]
    for j in range(n_out):
        e32[j] = np.float32(counts[j])
    if mem:
        back_levels(L, e32[:n_out], wide, out)
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
def sto_step(mem, W1, W2, W3, Lp, Lm, Ld, x, y, bl, key, base, B, gains, bw, top, table, kmax,
             wide, s):
    """One training step of a stochastic network on input ``x`` (signed, sign-magnitude
    streams) with label ``y``: floating-point weights ``W1..W3``, or, when ``mem``, memristive
    levels ``Lp``, ``Lm``, ``Ld`` (``k+``, ``k-``, ``k+ - k-``: the network's three layers,
    flat). Random words at ``base`` plus the offsets of :func:`step_layout`. Returns
    (misclassified, programming events)."""
    (h1, h2, z3, d1, d2, d3, sx, mx, vx, c0, c1, c2, X, H1, H2, D1, D2, D3, Dw, s1, s2, s3,
     k1, k2, k3, a1, a2, a3, fb, tb, f1, f2, ones, planes, cnt, union, ev_i, ev_c, ev_u,
     ev_k, qw, uw, cw) = s
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
    forward_layer(mem, W1, L1, vx, bl, bw[0], inv, wide, h1)
    hidden_streams(h1, f1, key, base + U64(o_rows + n0 * wps), bl, H1, c1)
    forward_layer(mem, W2, L2, f1[:n1], bl, bw[1], inv, wide, h2)
    hidden_streams(h2, f2, key, base + U64(o_rows + (n0 + n1) * wps), bl, H2, c2)
    forward_layer(mem, W3, L3, f2[:n2], bl, bw[2], inv, wide, z3)
    best = softmax_error(z3, y, d3)
    # back-propagation: sign-magnitude streams of |delta|; the layer below reads their signed
    # counts over BL through the transposed array; the sigmoid's derivative in the periphery
    error_streams(d3, 1.0, key, base + U64(o_eu), base + U64(o_et), bl, Dw, s3, k3, a3, fb, tb,
                  qw, uw, cw)
    back_errors(mem, W3, L3, k3, bw[2], inv, wide, h2, f1, f2, d2)
    error_streams(d2, 1.0, key, base + U64(o_eu + n3), base + U64(o_et + n3 * wps), bl, Dw, s2,
                  k2, a2, fb, tb, qw, uw, cw)
    back_errors(mem, W2, L2, k2, bw[1], inv, wide, h1, f1, f2, d1)
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
        work = (planes, cnt, union, ev_i, ev_c, ev_u, ev_k)
        nz = base + U64(o_noise)
        for lo, hi, R, sr, D, act, n_act, sgn, n_in in (
                (0, q1, X, sx, D1, a1, n_a1, s1, n0),
                (q1, q1 + q2, H1, ones, D2, a2, n_a2, s2, n1),
                (q1 + q2, q1 + q2 + q3, H2, ones, D3, a3, n_a3, s3, n2)):
            events += program_layer(Lp[lo:hi], Lm[lo:hi], Ld[lo:hi], R, sr, D, act, n_act, sgn,
                                    n_in, bl, top, key, nz + U64(lo), table, kmax, work)
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
            np.zeros(n_syn, i8), np.zeros(n_syn, i8), np.zeros(n_syn, f8),
            np.zeros(n_syn, i8), np.zeros(nm, f8), np.zeros(nm, f8), np.zeros((nw, nm), u8))


# --- the driver --------------------------------------------------------------------------------


@njit(cache=True)
def train_network(x, y, order, step0, kind, bl, key, eta, B, gains, bw, top, reset_every,
                  reset_noise, table, kmax, W, Fp, Fm, Fd, n1, n2, n3, wide):
    """Train one network on images ``order`` of ``x`` (its inputs, (N, n0)) with labels ``y``,
    one image at a time; the first image is step ``step0 + 1``. Floating-point weights in ``W``,
    memristive levels ``k+``, ``k-``, ``k+ - k-`` in ``Fp``, ``Fm``, ``Fd`` (layers 1 to 3, each
    (outputs, inputs + 1), bias last, flat). Returns (misclassified images, programming
    events)."""
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
                         top, table, kmax, wide, ss)
        wrong += w
        events += ev
        if mem and reset_every > 0 and step % reset_every == 0:
            reset_levels(Fp, Fm, Fd, top, reset_noise != 0, key, base + U64(layout[4]), table,
                         kmax)
    return wrong, events
