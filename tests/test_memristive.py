"""Stochastic deep learning in memristive networks: streams, synapses, the simulator."""

import math

import numpy as np
import pytest
import torch

from hwlib.chapters import memristive as ch
from hwlib.hardware import bitstream as bs
from hwlib.hardware import memristor as mr
from hwlib.methods import bitstream_kernels as kern
from hwlib.methods import bitstream_training as bt
from hwlib.errors import ParameterError

SMALL = dict(hidden=(24, 16), epochs=1, n_train=64, n_test=64)
U64 = np.uint64


def _images(n=40, seed=0):
    """MNIST-like images: sparse, values in (0, 1], some exactly 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=g)
    x[x < 0.8] = 0
    x[x > 0.97] = 1.0
    return x, torch.randint(0, 10, (n,), generator=g)


def _pack(bits: np.ndarray) -> np.ndarray:
    """Bool streams (n, BL) as the kernels' packed words (ceil(BL / 64), n)."""
    n, bl = bits.shape
    out = np.zeros(((bl + 63) // 64, n), dtype=np.uint64)
    for t in range(bl):
        out[t >> 6] |= bits[:, t].astype(np.uint64) << U64(t & 63)
    return out


def _unpack(words: np.ndarray, bl: int) -> np.ndarray:
    t = np.arange(bl)
    return ((words[t >> 6] >> (t & 63).astype(np.uint64)[:, None]) & U64(1)).T.astype(bool)


# --- streams: eq. (3) -------------------------------------------------------------------------


@pytest.mark.parametrize("gen", ["sng", "exact"])
@pytest.mark.parametrize("a,b,n", [(0.3, 0.7, 10), (0.9, 0.5, 2), (0.05, 0.6, 100),
                                   (1.0, 0.25, 50)])
def test_stream_product_moments_within_binomial_tolerance(gen, a, b, n):
    out = ch.product_mc({"a": a, "b": b, "bl": n, "samples": 40_000, "generator": gen,
                         "seed": 3})
    mean, var = bs.product_moments(out["p_a"], out["p_b"], n)
    assert abs(out["mean"] - mean) <= 4 * out["mean_se"]
    assert abs(out["var"] - var) <= 4 * out["var_se"]
    # the SNG's probability is within 2**-16 of the value
    assert 0 <= out["p_a"] - a <= 2 ** -16 and 0 <= out["p_b"] - b <= 2 ** -16


def test_sng_probability_exact_at_ends_and_ceil():
    r = bs.random_int16((1, 200_000), torch.Generator().manual_seed(1))
    for p in (0.0, 1.0):
        assert float((r < bs.sng_threshold(torch.tensor([p]))).float().mean()) == p
    assert float(bs.sng_probability(1.5 / 65536)) == 2 / 65536


def test_first_one_streams_match_dense_streams():
    """The error-stream rule (exact first one, SNG tail) has the pattern distribution of
    Bernoulli streams: all 2^BL patterns within binomial tolerance."""
    q, bl, n = 0.3, 4, 60_000
    g = torch.Generator().manual_seed(5)
    bits = bs.first_one_streams(torch.full((n,), q), bl, g)
    codes = (bits.long() * (2 ** torch.arange(bl))).sum(1)
    freq = torch.bincount(codes, minlength=2 ** bl).double() / n
    k = torch.tensor([bin(c).count("1") for c in range(2 ** bl)], dtype=torch.float64)
    expect = q ** k * (1 - q) ** (bl - k)
    se = (expect * (1 - expect) / n).sqrt()
    assert ((freq - expect).abs() <= 4.5 * se).all()


def test_first_one_keeps_tiny_probabilities():
    """A stream of p = 1e-5 (below the SNG's 2**-16) still pulses with probability 1-(1-p)^BL."""
    q, bl, n = 1e-5, 10, 400_000
    u = torch.rand(n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    first = bs.first_one_position(torch.full((n,), q), u.clamp_min(1e-300))
    hits = float((first < bl).double().mean())
    expect = 1 - (1 - q) ** bl
    assert abs(hits - expect) <= 4 * math.sqrt(expect / n)


def test_coincidence_counts_exact_against_bit_by_bit():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(17, 23, generator=g) < 0.4
    d = torch.rand(9, 23, generator=g) < 0.3
    assert torch.equal(bs.coincidence_counts(x, d), bs.coincidence_counts_reference(x, d))


def test_sign_magnitude():
    v = torch.tensor([-0.5, 0.0, 0.25, -2.0])
    sign, bits = bs.encode_signed(v, 64, torch.Generator().manual_seed(0))
    assert sign.tolist() == [-1, 0, 1, -1]
    assert bits[3].all() and not bits[1].any()            # |v| clipped to 1; 0 never pulses
    dec = bs.decode_signed(sign, bits)
    assert dec[3] == -1.0 and dec[1] == 0.0


# --- the compiled kernels' streams ------------------------------------------------------------


def test_counter_hash_same_in_kernels_and_torch():
    addr = np.array([0, 1, 7, 2 ** 40 + 3, 2 ** 62 + 11], dtype=np.uint64)
    for key in (0, 12345, 2 ** 59 + 77):
        a = kern.words_array(U64(key), addr).view(np.int64)
        b = bt.hash_words(key, torch.from_numpy(addr.view(np.int64))).numpy()
        assert np.array_equal(a, b)


def test_kernel_row_streams_probability_and_torch_agreement():
    """Row streams: P(1) = ceil(65536 p)/65536 within binomial tolerance, counts equal the
    packed bits' popcounts, and the PyTorch path draws the very same bits."""
    p = np.array([0.0, 1.0, 0.3, 0.05, 1.5 / 65536, 0.77], dtype=np.float32)
    reps, bl = 4000, 100
    ones = np.zeros(len(p))
    bits = np.zeros((2, len(p)), np.uint64)
    counts = np.zeros(len(p), np.int32)
    for r in range(reps):
        kern.row_streams(p, U64(99), U64(r * 1000), bl, bits, counts)
        unpacked = _unpack(bits, bl)
        assert np.array_equal(unpacked.sum(1), counts)
        ones += counts
        if r < 3:
            ref = bt.torch_row_streams(torch.from_numpy(p), 99, r * 1000, bl).numpy()
            assert np.array_equal(unpacked, ref)
    n = reps * bl
    pe = np.ceil(p.astype(np.float64) * 65536) / 65536
    assert ones[0] == 0 and ones[1] == n
    se = np.sqrt(pe * (1 - pe) / n)
    assert np.all(np.abs(ones / n - pe) <= 4.5 * se + 1e-12)


def test_kernel_error_streams_patterns_and_exact_skip():
    """Error streams from the kernel: every 2^BL pattern with its Bernoulli probability, the
    sign-magnitude counts, the same bits as the PyTorch path, and the skip of certain misses
    (u < 1 - BL q) never drops a stream the log formula would place."""
    bl, n, reps = 4, 64, 1500
    rng = np.random.default_rng(0)
    q = 0.3
    delta = np.where(rng.random(n) < 0.5, -q, q)
    codes = []
    w = dict(bits=np.zeros((1, n), np.uint64), sgn=np.zeros(n, np.int32),
             cnt=np.zeros(n, np.int32), act=np.zeros(n, np.int64), first=np.zeros(n, np.int64),
             thr=np.zeros(n, np.uint64), qv=np.zeros(n), uv=np.zeros(n),
             comp=np.zeros((1, n), np.uint64))
    for r in range(reps):
        u0, t0 = r * 10_000, r * 10_000 + 500
        kern.error_streams(delta, 1.0, U64(3), U64(u0), U64(t0), bl, *w.values())
        bits = _unpack(w["bits"], bl)
        assert np.array_equal(w["cnt"], w["sgn"] * bits.sum(1))
        assert np.all(w["sgn"][bits.any(1)] == np.sign(delta[bits.any(1)]))
        if r < 3:
            tb, ts, tc, _ = bt.torch_error_streams(torch.from_numpy(delta), 1.0, 3, u0, t0, bl)
            assert np.array_equal(bits, tb.numpy()) and np.array_equal(w["cnt"], tc.numpy())
        codes.append((bits * (2 ** np.arange(bl))).sum(1))
    codes = np.concatenate(codes)
    freq = np.bincount(codes, minlength=2 ** bl) / len(codes)
    k = np.array([bin(c).count("1") for c in range(2 ** bl)])
    pe = np.ceil(q * 65536) / 65536                   # tail bits come from the 16-bit SNG
    expect = np.array([q * pe ** (kk - 1) * (1 - pe) ** (bl - kk - pos) * (1 - q) ** pos
                       if kk else (1 - q) ** bl
                       for kk, pos in ((bin(c).count("1"),
                                        (c & -c).bit_length() - 1 if c else 0)
                                       for c in range(2 ** bl))])
    se = np.sqrt(expect * (1 - expect) / len(codes))
    assert np.all(np.abs(freq - expect) <= 4.5 * se + 1e-12), (freq, expect)
    assert abs(expect.sum() - 1) < 1e-12 and len(k) == 2 ** bl
    # the skip is exact: same active streams as the bare log formula, tiny q included
    qs = np.concatenate([10.0 ** rng.uniform(-12, 0, 4000), [1.0, 0.0]])
    m = len(qs)
    act = np.zeros(m, np.int64)
    act_n = kern.error_streams(qs, 1.0, U64(8), U64(0), U64(10 ** 6), 10,
                               np.zeros((1, m), np.uint64), np.zeros(m, np.int32),
                               np.zeros(m, np.int32), act, np.zeros(m, np.int64),
                               np.zeros(m, np.uint64), np.zeros(m), np.zeros(m),
                               np.zeros((1, m), np.uint64))
    u = bt._unit(bt.hash_words(8, torch.arange(len(qs)))).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.floor(np.log(u) / np.log1p(-qs))
    formula = np.nonzero((qs > 0) & (first < 10))[0]
    assert np.array_equal(np.sort(act[:act_n]), formula)


def _phi_sf(x):
    """P(Z > x) for a standard normal Z."""
    return 0.5 * math.erfc(x / math.sqrt(2))


def test_normals_same_in_kernels_and_torch_and_standard_normal():
    """The programming noise's normals: the compiled ziggurat and its PyTorch twin give the same
    doubles (wedges and the tail beyond R included); their distribution is N(0, 1): moments,
    Kolmogorov-Smirnov and tail frequencies within 5 standard errors."""
    from scipy import stats

    n = 1_000_000
    addr = (np.arange(n, dtype=np.uint64) * U64(13) + U64(2 ** 40))
    z = kern.normals_array(U64(2024), addr)
    zt = bt.torch_normals(2024, torch.from_numpy(addr.view(np.int64))).numpy()
    assert np.array_equal(z, zt)
    assert np.sum(np.abs(z) > kern.ZIG_R) > 300           # the tail path ran
    se = 1 / math.sqrt(n)
    assert abs(z.mean()) <= 5 * se
    assert abs(z.std() - 1) <= 5 * se / math.sqrt(2)
    assert stats.kstest(z, "norm").pvalue > 1e-4
    for t in (1.0, 2.0, kern.ZIG_R, 4.0):
        p = 2 * _phi_sf(t)
        assert abs(np.mean(np.abs(z) > t) - p) <= 5 * math.sqrt(p * (1 - p) / n), t
    assert len(set(np.round(z[:10_000], 12))) == 10_000     # continuous: no repeated values


def test_exact_log_and_exp_same_in_kernels_and_torch():
    """The ziggurat's log and exp use exact operations and series only: the same doubles in
    both paths (library log and exp differ in the last bit), within 2 ulp of numpy's."""
    from numba import njit

    @njit
    def both(x, t):
        a, b = np.empty_like(x), np.empty_like(t)
        for i in range(x.shape[0]):
            a[i], b[i] = kern.plog(x[i]), kern.pexp(t[i])
        return a, b

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.random(100_000), 2.0 ** -rng.uniform(0, 54, 1000), [0.5, 1.0]])
    t = -rng.random(x.size) * 8
    lg, ex = both(x, t)
    assert np.array_equal(lg, bt.torch_log(torch.from_numpy(x)).numpy())
    assert np.array_equal(ex, bt.torch_exp(torch.from_numpy(t)).numpy())
    ok = x != 1.0
    assert np.all(np.abs(lg - np.log(x))[ok] <= 2 * np.spacing(np.abs(np.log(x[ok]))))
    assert np.all(np.abs(ex - np.exp(t)) <= 2 * np.spacing(np.exp(t)))


# --- bad input ------------------------------------------------------------------------------


def _params(**kw):
    """A notebook's parameters (the smoke profile's memristive settings)."""
    from types import SimpleNamespace

    from hwlib.study.profiles import settings

    return SimpleNamespace(**{**settings("smoke", "memristive"), "seed": 0, **kw})


@pytest.mark.parametrize("call,needle", [
    (lambda: bs.check_bl(0), "BL=0: must be a whole number >= 1"),
    (lambda: bs.bernoulli_stream(0.5, 0), "BL=0"),
    (lambda: bs.sng_stream(torch.tensor([0.2, 1.5]), 8), "p=1.5: must be a probability in [0, 1]"),
    (lambda: bs.product_moments(-0.1, 0.5, 4), "a=-0.1: must be a probability in [0, 1]"),
    (lambda: mr.MemristorConfig(sigma_over_b=-0.1), "sigma_over_b=-0.1: must be a number >= 0"),
    (lambda: mr.MemristorConfig(levels=1), "levels=1"),
    (lambda: mr.MemristorConfig(on_off_ratio=1.0), "on_off_ratio=1.0"),
    (lambda: bt.NetworkConfig(bl=-1), "bl=-1"),
    (lambda: bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=-1),
     "sigma_over_b=-1"),
    (lambda: bt.NetworkConfig(bl=0, synapse="memristive"), "needs bl >= 1"),
    (lambda: bt.NetworkConfig(synapse="pcm"), "synapse='pcm'"),
    (lambda: bt.NetworkConfig(input_norm="zscore"), "input_norm='zscore': must be one of"),
    (lambda: bt.NetworkConfig.from_dict({"bogus": 1}), "unknown network setting 'bogus'"),
    (lambda: ch.noisy_images(torch.zeros(2), -0.1, None), "variance=-0.1"),
    (lambda: bt.Lockstep([bt.NetworkConfig(**SMALL)], backend="jax"), "backend='jax'"),
    (lambda: mr.MemristorConfig(sigma_over_b=float("nan")), "sigma_over_b=nan: must be a number"),
    (lambda: bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=float("inf")),
     "sigma_over_b=inf: must be a number >= 0"),
    (lambda: mr.MemristorConfig(reset_noise=1), "reset_noise=1: must be True or False"),
    (lambda: bt.NetworkConfig(bl=4096, synapse="memristive", levels=65536, hidden=(256, 2 ** 16)),
     "levels=65536, bl=4096, hidden=[256, 65536]: too large for exact sums"),
    (lambda: ch.w_max_networks(_params(), factors=[1.0, -0.5]),
     "factors=[1.0, -0.5]: must be one or more numbers > 0"),
    (lambda: ch.w_max_networks(_params(), factors=[]), "factors=[]: must be one or more"),
    (lambda: bt.Lockstep([bt.NetworkConfig(**SMALL)]).layer_states(0, 0),
     "layer_states: network 0 has no memristive synapses"),
    (lambda: bt.stored_weights({"level1": np.zeros((3, 2), np.int8)},
                               bt.NetworkConfig(bl=10, synapse="memristive")),
     "stored_weights: this entry holds whole levels"),
])
def test_bad_input_one_line(call, needle):
    with pytest.raises(ParameterError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


# --- memristive synapses: the write model -----------------------------------------------------
#
# G_f = min(G_max, G_i + max(0, n B + sigma z)): in level coordinates k = (G - G_min) / B,
# k_f = min(top, k_i + max(0, n + (sigma / B) z)). The simulator keeps k in fixed point (FIX steps
# per level); the tolerances below are 5 standard errors of the Monte Carlo estimates.

FIX = kern.FIX


def _program(k_i, n, sigma_over_b, top=31, key=7, addr0=1000):
    """One programming event per device (raising G+) through the compiled kernel: start level
    coordinates ``k_i`` (array), overlaps ``n``; returns the end level coordinates."""
    m = len(k_i)
    kp = np.round(np.asarray(k_i, float) * FIX).astype(np.int32)
    km = np.zeros(m, np.int32)
    kd = kp.copy()
    ev_i = np.arange(m, dtype=np.int64)
    ev_c = np.full(m, n, dtype=np.int64)
    kern.program_events(kp, km, kd, ev_i, ev_c, m, top * FIX, U64(key), U64(addr0),
                        float(sigma_over_b) * FIX)
    assert np.array_equal(kd, kp - km) and not km.any()
    return kp / FIX


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5])
def test_programming_event_mean_n_b_and_std_sigma_far_from_bounds(sigma):
    """Far from G_min and G_max, G_f - G_i - n B has mean 0 and standard deviation sigma
    (Fig. 2's Gaussian), within 5 standard errors; the noise is not rounded away: almost no
    event lands on G_i + n B (with rounding to whole levels nearly all did at 0.1B)."""
    n_ev, n, k_i = 400_000, 3, 10.0
    move = _program(np.full(n_ev, k_i), n, sigma) - k_i - n        # (G_f - G_i - n B) / B
    se_mean, se_std = sigma / math.sqrt(n_ev), sigma / math.sqrt(2 * n_ev)
    assert abs(move.mean()) <= 5 * se_mean, move.mean()
    assert abs(move.std() - sigma) <= 5 * se_std + 1 / FIX ** 2, move.std()
    assert np.mean(move == 0) < 0.01
    kurt = np.mean(move ** 4) / move.var() ** 2                      # Gaussian: 3
    assert abs(kurt - 3) < 0.05


def test_no_overlap_no_programming_and_no_noise():
    kp = np.array([3 * FIX, 5 * FIX], np.int32)
    before = kp.copy()
    kern.program_events(kp, np.zeros(2, np.int32), kp.copy(), np.arange(2), np.zeros(2, np.int64),
                        0, 31 * FIX, U64(1), U64(0), 0.3 * FIX)
    assert np.array_equal(kp, before)
    z = torch.randn(5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lv = torch.full((5,), 4.25, dtype=torch.float64)
    assert torch.equal(mr.program(lv, torch.zeros(5, dtype=torch.float64), 0.5, z, 31), lv)


def test_programming_clips_at_g_max_and_never_moves_down():
    """Near G_max: no state beyond it, and the fraction that saturates is the normal tail
    P(n + (sigma/B) z >= top - k_i); a unidirectional device never moves down: with sigma = B
    the fraction of events left where they were is P(n + z <= 0). Within 5 standard errors."""
    n_ev = 300_000
    # top: k_i = 29.5, n = 1, sigma = 0.5B: saturates when 1 + 0.5 z >= 1.5, i.e. z >= 1
    end = _program(np.full(n_ev, 29.5), 1, 0.5)
    assert end.max() <= 31 and end.min() >= 29.5
    p = _phi_sf((0.5 * FIX - 0.5) / (0.5 * FIX))           # rint(512 z) >= 512
    assert abs(np.mean(end == 31) - p) <= 5 * math.sqrt(p * (1 - p) / n_ev)
    below = end[end < 31] - 30.5                            # the rest: n B + noise, unclipped
    assert below.max() < 0.5
    # bottom: k_i = 2, n = 1, sigma = B: no move when 1 + z <= 0
    end = _program(np.full(n_ev, 2.0), 1, 1.0, addr0=10 ** 7)
    assert end.min() >= 2.0
    p = 1 - _phi_sf(-(FIX - 0.5) / FIX)                   # rint(1024 z) <= -1024
    assert abs(np.mean(end == 2.0) - p) <= 5 * math.sqrt(p * (1 - p) / n_ev)
    moved = end[end > 2.0] - 3.0                             # a move: n B + noise > 0
    assert moved.min() > -1.0


def test_reference_model_agrees_with_simulator_in_distribution():
    """memristor.program (float64, torch.randn) and the simulator's kernel (hashed normals,
    fixed point) draw the same distribution of end states: two-sample Kolmogorov-Smirnov at
    level 1e-4 and equal saturation fractions, in the interior and at both bounds."""
    from scipy import stats

    n_ev = 200_000
    for k_i, n, sigma in ((10.0, 2, 0.3), (29.5, 1, 0.5), (2.0, 1, 1.0), (0.0, 1, 0.1)):
        sim = _program(np.full(n_ev, k_i), n, sigma, addr0=3 * 10 ** 6)
        z = torch.randn(n_ev, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
        ref = mr.program(torch.full((n_ev,), k_i, dtype=torch.float64),
                         torch.full((n_ev,), float(n), dtype=torch.float64), sigma, z, 31).numpy()
        assert stats.ks_2samp(sim, ref).pvalue > 1e-4, (k_i, n, sigma)
        for edge in (31.0, k_i):
            a, b = np.mean(sim == edge), np.mean(ref == edge)
            assert abs(a - b) <= 5 * math.sqrt(max(b, 1e-5) * 2 / n_ev), (k_i, edge, a, b)
        assert 0 <= ref.min() and ref.max() <= 31


def _reset(kp, km, noisy, sigma, key=5, addr0=0, top=31):
    """The compiled reset on level coordinates; returns the new (k+, k-, k+ - k-)."""
    kp, km = (np.round(np.asarray(v, float) * FIX).astype(np.int32) for v in (kp, km))
    kd = kp - km
    kern.reset_levels(kp, km, kd, top * FIX, noisy, U64(key), U64(addr0), sigma * FIX)
    return kp / FIX, km / FIX, kd / FIX


def test_reset_exact_and_noisy():
    """Reset: both devices to G_min, |G+ - G-| re-programmed onto one device. Exact: no weight
    changes. Noisy (the same write model): the re-programmed magnitude is |d| + sigma z,
    clipped to [0, top] (mean 0 and std sigma far from the bounds, within 5 standard errors);
    the weight keeps its sign, a zero weight is not programmed."""
    rng = np.random.default_rng(0)
    n = 200_000
    kp, km = rng.uniform(0, 31, n), rng.uniform(0, 31, n)
    kp[:100] = km[:100]                                   # zero weights
    d0 = np.round(kp * FIX) / FIX - np.round(km * FIX) / FIX
    p, m, d = _reset(kp, km, False, 0.3)
    assert np.array_equal(d, d0) and np.array_equal(p - m, d)
    assert np.all((p == 0) | (m == 0)) and p.min() >= 0 and m.min() >= 0
    for sigma in (0.1, 0.3):
        p, m, d = _reset(kp, km, True, sigma, addr0=7 * n)
        assert np.all((p == 0) | (m == 0)) and max(p.max(), m.max()) <= 31
        assert np.array_equal(d, p - m) and np.all(d[:100] == 0)
        inner = (np.abs(d0) > 6 * sigma) & (np.abs(d0) < 31 - 6 * sigma)
        assert np.all(np.sign(d[inner]) == np.sign(d0[inner]))
        change = np.abs(d[inner]) - np.abs(d0[inner])
        assert abs(change.mean()) <= 5 * sigma / math.sqrt(inner.sum())
        assert abs(change.std() - sigma) <= 5 * sigma / math.sqrt(2 * inner.sum())
        near0 = (np.abs(d0) > 0) & (np.abs(d0) < 0.05)      # clipped at G_min: weight 0
        expect = np.mean([1 - _phi_sf(-a / sigma) for a in np.abs(d0[near0])])
        assert abs(np.mean(d[near0] == 0) - expect) <= 0.05
    # the reference model's reset agrees in distribution with the kernel's
    z = torch.randn(n, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rp, rm = mr.reset_pair(torch.from_numpy(kp), torch.from_numpy(km), 0.3, z, 31)
    from scipy import stats
    p, m, d = _reset(kp, km, True, 0.3, addr0=11 * n)
    assert stats.ks_2samp((rp - rm).numpy(), d).pvalue > 1e-4


def test_synapse_array_continuous_states_rise_between_resets():
    """The reference SynapseArray: continuous conductances within [G_min, G_max] that only rise
    between resets; an exact reset keeps every weight, a noisy one moves it by about sigma."""
    for noisy in (False, True):
        arr = mr.SynapseArray((50, 40), mr.MemristorConfig(sigma_over_b=0.3, reset_noise=noisy),
                              torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(2)
        for _ in range(15):
            p0, m0 = arr.g_plus.clone(), arr.g_minus.clone()
            arr.program(torch.randint(-3, 4, (50, 40), generator=g).double())
            assert (arr.g_plus >= p0).all() and (arr.g_minus >= m0).all()
        gp, gm = arr.conductances()
        assert float(torch.cat([gp, gm]).min()) >= 1.0 and float(torch.cat([gp, gm]).max()) <= 15
        assert float((arr.g_plus != torch.round(arr.g_plus)).double().mean()) > 0.5
        before = arr.weight_levels().clone()
        arr.reset()
        change = arr.weight_levels() - before
        assert ((arr.g_plus == 0) | (arr.g_minus == 0)).all()
        if noisy:
            moved = change[before.abs() > 3]
            assert 0.2 < float(moved.std()) < 0.4
        else:
            assert torch.equal(change, torch.zeros_like(change))


def _memristive_group(**kw):
    base = dict(SMALL, bl=6, synapse="memristive", lr=0.5, lr_final=0.5,
                w_max=(0.05, 0.1, 0.2))
    base.update(kw)
    return [bt.NetworkConfig(**dict(base, sigma_over_b=s, seed=i))
            for i, s in enumerate((0.0, 0.3, 1.0))]


def _states(net, k):
    return [net.layer_states(k, i) for i in range(3)]


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("noisy", [False, True])
def test_conductances_continuous_rise_between_resets_and_resets(backend, noisy):
    x, y = _images(45)
    net = bt.Lockstep(_memristive_group(reset_every=7, reset_noise=noisy), backend=backend)
    top = 31 * FIX
    prev = [[(p.clone(), m.clone(), d.clone()) for p, m, d in _states(net, k)]
            for k in range(net.K)]
    programmed = 0
    for i in range(45):
        net.step(x[i], y[i])
        for k in range(net.K):
            for lay, (p, m, d) in enumerate(_states(net, k)):
                for g in (p, m):                               # within [G_min, G_max]
                    assert int(g.min()) >= 0 and int(g.max()) <= top
                assert torch.equal(d.long(), p.long() - m.long())
                p0, m0, _ = prev[k][lay]
                if net.steps % 7:                                   # no reset: only rise
                    assert (p >= p0).all() and (m >= m0).all()
                else:                         # after a reset one device of each pair at G_min
                    assert ((p == 0) | (m == 0)).all()
                programmed += int((p != p0).any() or (m != m0).any())
                prev[k][lay] = (p.clone(), m.clone(), d.clone())
    assert programmed > 20
    # continuous: with noise most programmed states are off the whole levels
    p = torch.cat([t.flatten() for t, _, _ in _states(net, 2)]).long()
    programmed_states = p[p > 0]
    assert float((programmed_states % FIX != 0).double().mean()) > 0.9
    # the weights read by the network are always B_w (k+ - k-), continuous
    for k, ws in enumerate(net.weights()):
        for lay, w in enumerate(ws):
            lv = net.layer_levels(k, lay)[2]
            assert torch.equal(w.t(), (lv * float(net.bw[k, lay])).float())


@pytest.mark.parametrize("noisy", [False, True])
def test_lockstep_reset_exact_or_within_noise_and_same_on_both_backends(noisy):
    x, y = _images(30)
    nets = [bt.Lockstep(_memristive_group(reset_every=0, reset_noise=noisy), backend=b)
            for b in ("numba", "torch")]
    for net in nets:
        net.train(x, y)
    net = nets[0]
    before = [[d.long().clone() for _, _, d in _states(net, k)] for k in range(net.K)]
    assert any(((p > 0) & (m > 0)).any() for k in range(net.K) for p, m, _ in _states(net, k))
    for k in range(net.K):
        for other in nets:
            other.reset(k)
        for lay, (p, m, d) in enumerate(_states(net, k)):
            change = (d.long() - before[k][lay]).double() / FIX
            assert torch.equal(d.long(), p.long() - m.long())
            assert ((p == 0) | (m == 0)).all()
            if not noisy or k == 0:                         # exact, or sigma = 0
                assert float(change.abs().max()) == 0
            elif k == 1:                                    # sigma = 0.3B
                assert 0.2 < float(change[before[k][lay] != 0].std()) < 0.4
            for u, v in zip(_states(nets[1], k)[lay], (p, m, d)):
                assert torch.equal(u, v)                    # numba and torch: bit for bit


# --- the simulator ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("input_norm", ["image_mean", "unit"])
def test_deterministic_path_matches_autograd_reference_step_for_step(backend, input_norm):
    x, y = _images(40)
    cfgs = [bt.NetworkConfig(bl=0, lr=0.3, lr_final=0.3, seed=s, input_norm=input_norm,
                             **SMALL) for s in (0, 1, 2)]
    net = bt.Lockstep(cfgs, backend=backend)
    refs = [bt.ReferenceMLP(bt.initial_weights(c)) for c in cfgs]
    xin = bt.network_inputs(x, input_norm)
    for i in range(40):
        net.step(x[i], y[i])
        for ref, ws in zip(refs, net.weights()):
            ref.train_step(xin[i], int(y[i]), 0.3)
            for a, b in zip(ws, ref.ws):
                assert torch.allclose(a, b.detach(), atol=1e-6), i


def test_compiled_and_torch_paths_train_the_same_networks():
    """The compiled kernels and the plain PyTorch path: the same streams, counts, updates,
    programming events (continuous noise, clipping at both bounds) and resets (noisy and
    exact), image after image (floating-point stochastic weights and memristive device states
    equal bit for bit, the deterministic network to float rounding)."""
    x, y = _images(30)
    cfgs = [bt.NetworkConfig(bl=0, **SMALL), bt.NetworkConfig(bl=8, seed=1, **SMALL),
            bt.NetworkConfig(bl=70, seed=2, **SMALL),
            bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.5, lr=0.5,
                             lr_final=0.5, w_max=(0.05, 0.1, 0.2), seed=3, reset_every=7,
                             **SMALL),
            bt.NetworkConfig(bl=6, synapse="memristive", sigma_over_b=0.2, lr=0.5, lr_final=0.5,
                             w_max=(0.05, 0.1, 0.2), seed=4, reset_every=5, reset_noise=True,
                             input_norm="unit", **SMALL),
            bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=1.0, lr=0.5, lr_final=0.5,
                             w_max=(0.02, 0.04, 0.08), seed=5, reset_every=6, reset_noise=False,
                             **SMALL),
            bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.0, lr=0.5, lr_final=0.5,
                             w_max=(0.05, 0.1, 0.2), seed=6, **SMALL)]
    wide = [bt.NetworkConfig(bl=100, synapse="memristive", sigma_over_b=0.3, lr=0.5,
                             lr_final=0.5, w_max=(0.05, 0.1, 0.2), seed=7, reset_every=4,
                             **SMALL),                        # sums beyond int32: float64
            bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.3, levels=64, lr=0.5,
                             lr_final=0.5, w_max=(0.05, 0.1, 0.2), seed=8, reset_every=4,
                             **SMALL)]                        # 64 levels: int32 states
    for group in ([wide[0]], [wide[1]]):
        u, v = (bt.Lockstep(group, backend=be) for be in ("numba", "torch"))
        u.train(x, y)
        v.train(x, y)
        assert (u.wide, u.Ld.dtype) == ((True, torch.int16) if group[0].bl == 100
                                        else (False, torch.int32))
        assert all(torch.equal(s, t) for la, lb in zip(_states(u, 0), _states(v, 0))
                   for s, t in zip(la, lb))
    a = bt.Lockstep(cfgs, backend="numba")
    b = bt.Lockstep(cfgs, backend="torch")
    a.train(x, y)
    b.train(x, y)
    assert np.array_equal(a.wrong, b.wrong) and np.array_equal(a.events, b.events)
    assert a.events[3] > 1000
    for k, (wa, wb) in enumerate(zip(a.weights(), b.weights())):
        for u, v in zip(wa, wb):
            if k == 0:
                assert torch.allclose(u, v, atol=1e-6)
            else:
                assert torch.equal(u, v), k
    for k in (3, 4, 5, 6):
        for la, lb in zip(_states(a, k), _states(b, k)):
            assert all(torch.equal(p, q) for p, q in zip(la, lb))
    top = [int((p == 31 * FIX).sum()) for p, _, _ in _states(a, 5)]
    assert sum(top) > 0                                      # saturation exercised


def test_stochastic_update_counts_are_exact_coincidences():
    """The weight change of a floating-point stochastic network is -sign B times the exact
    coincidence counts, recomputed here bit by bit from the recorded streams."""
    x, y = _images(4)
    cfg = bt.NetworkConfig(bl=8, lr=0.4, lr_final=0.4, **SMALL)
    net = bt.Lockstep([cfg], backend="torch")
    net.trace = []
    before = [w.clone() for w in net.weights()[0]]
    net.step(x[0], y[0])
    after = net.weights()[0]
    seen = 0
    for rec in net.trace:
        ref = bs.coincidence_counts_reference(rec["cols"], rec["rows"])         # (A, rows)
        assert torch.equal(rec["counts"], ref)
        seen += int(ref.sum())
    assert seen > 0
    # weight change: -B sign(delta) sign(x) count, B = eta / BL, at every touched synapse
    changed = [(a - b).abs() > 0 for a, b in zip(after, before)]
    assert any(c.any() for c in changed)
    steps = torch.cat([(a - b)[c] for a, b, c in zip(after, before, changed)]).abs()
    unit = 0.4 / 8
    assert torch.allclose(steps / unit, torch.round(steps / unit), atol=1e-3)


def test_kernel_coincidences_exact_against_bit_by_bit():
    """The compiled update's counts (popcount of AND, by bit planes or row by row) against
    bit-by-bit counts, for single- and multi-word streams."""
    rng = np.random.default_rng(4)
    for bl, n_in, n_out, n_act in ((10, 70, 9, 5), (10, 70, 9, 1), (100, 40, 6, 4)):
        rows = rng.random((n_in, bl)) < 0.3
        cols = np.zeros((n_out, bl), bool)
        act = np.sort(rng.choice(n_out, n_act, replace=False)).astype(np.int64)
        cols[act] = rng.random((n_act, bl)) < 0.15
        cols[act, rng.integers(0, bl, n_act)] = True                     # a pulse each
        sgn = np.where(rng.random(n_out) < 0.5, -1, 1).astype(np.int32)
        sr = np.where(rng.random(n_in) < 0.3, -1.0, 1.0).astype(np.float32)
        nw = (bl + 63) // 64
        planes, cnt, union, ev_i, ev_c = (np.zeros((64 * nw, (n_in + 63) // 64), np.uint64),
                                          np.zeros(n_in, np.int64), np.zeros(8, np.uint64),
                                          np.zeros(n_out * (n_in + 1), np.int64),
                                          np.zeros(n_out * (n_in + 1), np.int64))
        ne = kern.coincidence_events(_pack(rows), sr, _pack(cols), act, n_act, sgn, n_in, bl,
                                     planes, cnt, union, ev_i, ev_c)
        got = np.zeros((n_out, n_in + 1), np.int64)
        got.reshape(-1)[ev_i[:ne]] = ev_c[:ne]
        ref = bs.coincidence_counts_reference(torch.from_numpy(cols),
                                              torch.from_numpy(rows)).numpy()
        expect = np.zeros_like(got)
        expect[:, :n_in] = -sgn[:, None] * sr[None, :] * ref
        expect[:, n_in] = -sgn * cols.sum(1)
        mask = np.zeros(n_out, bool)
        mask[act] = True
        expect[~mask] = 0
        assert np.array_equal(got, expect), bl
        # floating-point weights: W -= (B sgn) (sr count)
        W = rng.standard_normal((n_out, n_in + 1)).astype(np.float32)
        W0 = W.copy()
        kern.update_float(W, _pack(rows), sr, _pack(cols), act, n_act, sgn, 0.25)
        assert np.allclose(W0 - W, 0.25 * (-expect), atol=1e-5)


def test_stochastic_update_is_unbiased():
    """With long streams, the mean stochastic update over many stream draws is the SGD step."""
    x, y = _images(2)
    cfg = dict(SMALL, lr=0.2, lr_final=0.2)
    det = bt.Lockstep([bt.NetworkConfig(bl=0, **cfg)])
    w0 = det.weights()[0]
    det.step(x[0], y[0])
    dw = [a - b for a, b in zip(det.weights()[0], w0)]
    n = 64
    nets = bt.Lockstep([bt.NetworkConfig(bl=512, **cfg)] * n)
    nets.keys[:] = np.arange(1000, 1000 + n, dtype=np.uint64)   # same network, other streams
    nets.step(x[0], y[0])
    mean = [torch.stack([w[i] for w in nets.weights()]).mean(0) - w0[i] for i in range(3)]
    for i in (1, 2):
        err = float((mean[i] - dw[i]).norm() / dw[i].norm())
        assert err < 0.2, (i, err)


def test_group_does_not_change_a_network_and_runs_are_deterministic():
    """Each network has its own key: trained alone or in a group, in one call or image by
    image, the same numbers."""
    x, y = _images(25)
    a = bt.NetworkConfig(bl=6, seed=4, **SMALL)
    m = bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.5, seed=5,
                         w_max=(0.05, 0.1, 0.2), **SMALL)
    d = bt.NetworkConfig(bl=0, seed=6, **SMALL)
    alone = []
    for c in (a, m):
        net = bt.Lockstep([c])
        net.train(x, y)
        alone.append(net.weights()[0])
    group = bt.Lockstep([m, d, a])
    for i in range(25):
        group.step(x[i], y[i])
    ws = group.weights()
    for ref, got in zip(alone, (ws[2], ws[0])):
        for u, v in zip(ref, got):
            assert torch.equal(u, v)


def test_network_inputs_mean_normalization():
    x, _ = _images(5)
    z = bt.network_inputs(x)
    assert torch.allclose(z.mean(1), torch.zeros(5), atol=1e-6)
    assert float(z.min()) >= -1 and float(z.max()) <= 1 and (z < 0).any()
    assert torch.equal(bt.network_inputs(x, "unit"), x)


def test_plan_groups_balanced():
    cs = [bt.NetworkConfig(bl=b) for b in (100, 0, 10, 50, 2)] + [
        bt.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=s) for s in (0.1, 0.5, 1.0)]
    groups = bt.plan_groups(cs, 2)
    assert len(groups) == 2 and sorted(c.bl for g in groups for c in g) == sorted(
        c.bl for c in cs)
    costs = [sum(map(bt.relative_cost, g)) for g in groups]
    assert max(costs) - min(costs) <= max(map(bt.relative_cost, cs))
    assert len(bt.plan_groups(cs[:1], 2)) == 1


def test_w_max_sweep_configs():
    p = _params()
    base = ch.memristive_networks(p, sigmas=[p.sigma_over_b])
    nets = ch.w_max_networks(p, factors=(0.5, 1.0, 2.0), seeds=2)
    assert len(nets) == 6 and [c.seed for c in nets] == [0, 1] * 3
    assert nets[2] == base[0]                                 # factor 1: the chapter's network
    assert nets[0].w_max == tuple(0.5 * w for w in p.w_max)
    assert nets[4].w_max == tuple(2.0 * w for w in p.w_max)
    assert {c.sigma_over_b for c in nets} == {0.1} and {c.reset_noise for c in nets} == {True}
    assert {c.reset_noise for c in ch.w_max_networks(p, reset_noise=False)} == {False}
    assert all(c.kind == "memristive" and c.bl == p.train_bl for c in nets)


def test_train_run_end_to_end_and_noisy_inference(tmp_path, monkeypatch):
    from hwlib.data import DATASETS, data_root
    from hwlib.study.store import ResultStore

    if not (data_root() / DATASETS["mnist"].folder / "train-images-idx3-ubyte").exists():
        pytest.skip("MNIST not under the data root (set HWLIB_DATA)")
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path))
    cfgs = [bt.NetworkConfig(bl=0, epochs=2, n_train=300, n_test=200, hidden=(32, 16)),
            bt.NetworkConfig(bl=10, synapse="memristive", epochs=2, n_train=300, n_test=200,
                             hidden=(32, 16), w_max=(0.3, 0.6, 1.5))]
    store = ResultStore("smoke")
    entries = ch.train_networks(store, cfgs, workers=2)
    for e in entries:
        assert e["test_acc"].shape == (2,) and 10 < e["best_test_acc"] <= 100
    levels = entries[1]["weight_levels1"]                     # (G+ - G-) / B, continuous
    assert levels.dtype == np.float32 and levels.shape == (785, 32)
    assert np.abs(levels).max() <= 31 and np.mean(levels != np.round(levels)) > 0.9
    assert entries[1]["events_per_image"].min() > 0
    again = ch.train_run(cfgs[1].to_dict())                 # deterministic on the CPU
    np.testing.assert_array_equal(again["test_acc"], entries[1]["test_acc"])
    torch_run = bt.train_lockstep(cfgs[1:], progress=False, backend="torch")[0]
    for i in (1, 2, 3):                                     # both backends: the same network
        np.testing.assert_array_equal(torch_run[f"weight_levels{i}"],
                                      entries[1][f"weight_levels{i}"])
    np.testing.assert_array_equal(torch_run["test_acc"], entries[1]["test_acc"])
    out = ch.noisy_inference({"network": cfgs[1].to_dict(), "profile": "smoke",
                              "noise_vars": [0.0, 0.2], "bls": [10, 100], "runs": 2, "seed": 0})
    assert out["accuracy"].shape == (2, 2, 2)
    clean = bt.stored_weights(entries[1].result, cfgs[1])
    net = bt.Lockstep(cfgs[1:])                             # the stored weights are the network's
    x, y = bt.load_split(cfgs[1], True)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(2):
        net.set_epoch(epoch)
        net.train(x, y, torch.randperm(len(y), generator=gen).numpy())
    assert all(torch.equal(a, b) for a, b in zip(clean, net.weights()[0]))


def test_inference_streams_same_in_kernels_and_torch():
    x, _ = _images(6)
    ws = bt.initial_weights(bt.NetworkConfig(**SMALL))
    xin = bt.network_inputs(x)
    for bl in (0, 7, 100):
        a = bt.forward_labels(ws, xin, bl, key=11, backend="numba")
        b = bt.forward_labels(ws, xin, bl, key=11, backend="torch")
        assert torch.equal(a, b)
    est = bt.stream_estimate(xin, 100, 5)
    assert torch.equal(torch.sign(est), torch.sign(xin) * (est != 0))
    assert float((est - xin).abs().max()) < 0.25


def test_every_profile_resolves_and_full_size_networks_step():
    """The smoke, book and paper profiles build the chapter's networks (the paper profile:
    all of MNIST, CUDA when present); one full-size step of each kind runs on both paths."""
    import hwlib

    for profile in ("smoke", "book", "paper"):
        S = hwlib.setup(profile, chapter="memristive", stream_lengths=None, epochs=None,
                        n_train=None, n_test=None, lr_first=None, lr_last=None, dataset=None,
                        sigma_over_b_values=None, train_bl=None, on_off_ratio=None,
                        levels=None, reset_every=None, reset_noise=None, w_max=None,
                        sigma_over_b=None, input_norm=None, seed=0)
        nets = ch.chapter_networks(S)
        kinds = {c.kind for c in nets}
        assert kinds == {"deterministic", "float", "memristive"}
        assert all(c.hidden == (256, 128) and c.dataset == "mnist" for c in nets)
        assert {c.input_norm for c in nets} == {"image_mean", "unit"}
        if profile == "paper":
            assert all(c.n_train is None and c.epochs == 30 for c in nets)
    x, y = _images(2)
    cfgs = [bt.NetworkConfig(bl=0), bt.NetworkConfig(bl=100),
            bt.NetworkConfig(bl=10, synapse="memristive", w_max=(0.3, 0.6, 1.5))]
    for backend in ("numba", "torch"):
        net = bt.Lockstep(cfgs, backend=backend)
        net.train(x, y)
        assert all(torch.isfinite(w).all() for ws in net.weights() for w in ws)
