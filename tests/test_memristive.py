"""Stochastic deep learning in memristive networks: streams, synapses, the simulator."""

import math

import numpy as np
import pytest
import torch

from hwlib import bitstream as bs
from hwlib import memristor as mr
from hwlib import stochastic_dnn as sd
from hwlib import stochastic_kernels as kern
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
    out = bs.product_mc({"a": a, "b": b, "bl": n, "samples": 40_000, "generator": gen,
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
        b = sd.hash_words(key, torch.from_numpy(addr.view(np.int64))).numpy()
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
            ref = sd.torch_row_streams(torch.from_numpy(p), 99, r * 1000, bl).numpy()
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
            tb, ts, tc, _ = sd.torch_error_streams(torch.from_numpy(delta), 1.0, 3, u0, t0, bl)
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
    u = sd._unit(sd.hash_words(8, torch.arange(len(qs)))).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.floor(np.log(u) / np.log1p(-qs))
    formula = np.nonzero((qs > 0) & (first < 10))[0]
    assert np.array_equal(np.sort(act[:act_n]), formula)


def test_rounded_noise_table_is_the_rounded_gaussian():
    """The simulator draws round(sigma z / B) by inverting its exact distribution: Monte Carlo
    of that against the device model's own rounding (memristor.program)."""
    for s in (0.1, 0.5, 1.0, 3.0):
        table, kmax = sd.noise_table(s)
        u = np.random.default_rng(1).random(200_000)
        k = np.array([kern.rounded_noise(v, table, kmax) for v in u[:2000]])
        kk = torch.searchsorted(torch.from_numpy(table), torch.from_numpy(u), right=True) - 1 \
            - kmax
        assert np.array_equal(k, kk.numpy()[:2000])              # walk == search (torch path)
        z = torch.randn(200_000, generator=torch.Generator().manual_seed(2),
                        dtype=torch.float64)
        ref = mr.program(torch.zeros_like(z), torch.full_like(z, 40.0), s, z, 10 ** 6) - 40
        for v in range(-2, 3):
            p_a, p_b = float((kk == v).double().mean()), float((ref == v).double().mean())
            assert abs(p_a - p_b) <= 5 * math.sqrt(max(p_b, 1e-6) / 200_000) + 2e-5, (s, v)


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("call,needle", [
    (lambda: bs.check_bl(0), "BL=0: must be a whole number >= 1"),
    (lambda: bs.bernoulli_stream(0.5, 0), "BL=0"),
    (lambda: bs.sng_stream(torch.tensor([0.2, 1.5]), 8), "p=1.5: must be a probability in [0, 1]"),
    (lambda: bs.product_moments(-0.1, 0.5, 4), "a=-0.1: must be a probability in [0, 1]"),
    (lambda: mr.MemristorConfig(sigma_over_b=-0.1), "sigma_over_b=-0.1: must be a number >= 0"),
    (lambda: mr.MemristorConfig(levels=1), "levels=1"),
    (lambda: mr.MemristorConfig(on_off_ratio=1.0), "on_off_ratio=1.0"),
    (lambda: sd.NetworkConfig(bl=-1), "bl=-1"),
    (lambda: sd.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=-1),
     "sigma_over_b=-1"),
    (lambda: sd.NetworkConfig(bl=0, synapse="memristive"), "needs bl >= 1"),
    (lambda: sd.NetworkConfig(synapse="pcm"), "synapse='pcm'"),
    (lambda: sd.NetworkConfig(input_norm="zscore"), "input_norm='zscore': must be one of"),
    (lambda: sd.NetworkConfig.from_dict({"bogus": 1}), "unknown network setting 'bogus'"),
    (lambda: sd.noisy_images(torch.zeros(2), -0.1, None), "variance=-0.1"),
    (lambda: sd.Lockstep([sd.NetworkConfig(**SMALL)], backend="jax"), "backend='jax'"),
])
def test_bad_input_one_line(call, needle):
    with pytest.raises(ParameterError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


# --- memristive synapses ----------------------------------------------------------------------


def test_device_levels_and_spacing():
    dev = mr.MemristorConfig()
    assert dev.top == 31 and math.isclose(dev.spacing, 14 / 31)
    g = dev.conductance(torch.arange(32))
    assert math.isclose(float(g[0]), 1.0) and math.isclose(float(g[-1]), 15.0)


def test_programming_event_distribution():
    """k_f = min(top, k_i + max(0, round(n + sigma/B z))): Monte Carlo against the rounded
    Gaussian's exact probabilities; no overlap, no change; saturation at the top."""
    n = 200_000
    z = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    level = torch.full((n,), 3.0, dtype=torch.float64)
    new = mr.program(level, torch.full((n,), 2.0, dtype=torch.float64), 0.5, z, 31)
    steps = (new - level).long()
    for s in range(0, 5):
        lo, hi = (s - 2 - 0.5) / 0.5, (s - 2 + 0.5) / 0.5
        cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
        p = cdf(hi) - (cdf(lo) if s > 0 else 0.0)
        got = float((steps == s).double().mean())
        assert abs(got - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-4
    assert torch.equal(mr.program(level, torch.zeros(n, dtype=torch.float64), 0.5, z, 31), level)
    assert float(mr.program(torch.full((3,), 30.0), torch.full((3,), 5.0), 0.0,
                            torch.zeros(3), 31).max()) == 31


def test_synapse_array_reset_keeps_weight():
    arr = mr.SynapseArray((50, 40), mr.MemristorConfig(sigma_over_b=0.3),
                          torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    for _ in range(15):
        arr.program(torch.randint(-3, 4, (50, 40), generator=g).double())
    before = arr.weight_levels().clone()
    arr.reset()
    assert (arr.weight_levels() - before).abs().max() <= 1
    assert ((arr.g_plus == 0) | (arr.g_minus == 0)).all()


def _memristive_group(**kw):
    base = dict(SMALL, bl=6, synapse="memristive", lr=0.5, lr_final=0.5,
                w_max=(0.05, 0.1, 0.2))
    base.update(kw)
    return [sd.NetworkConfig(**dict(base, sigma_over_b=s, seed=i))
            for i, s in enumerate((0.0, 0.3, 1.0))]


def _levels(net, k):
    return [net.layer_levels(k, i) for i in range(3)]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_conductances_on_levels_rise_between_resets_and_resets_keep_weights(backend):
    x, y = _images(45)
    net = sd.Lockstep(_memristive_group(reset_every=7), backend=backend)
    top = 31
    prev = [[(p.clone(), m.clone()) for p, m, _ in _levels(net, k)] for k in range(net.K)]
    programmed = 0
    for i in range(45):
        net.step(x[i], y[i])
        for k in range(net.K):
            for lay, (p, m, d) in enumerate(_levels(net, k)):
                for g in (p, m):
                    assert int(g.min()) >= 0 and int(g.max()) <= top          # on the levels
                    levels = 1.0 + g.double() * (14 / 31)                     # G / G_min
                    assert float(levels.min()) >= 1.0 and float(levels.max()) <= 15.0 + 1e-9
                assert torch.equal(d.long(), p.long() - m.long())
                p0, m0 = prev[k][lay]
                if net.steps % 7:                                         # no reset: only rise
                    assert (p >= p0).all() and (m >= m0).all()
                else:                        # after a reset one device of each pair at G_min,
                    assert ((p == 0) | (m == 0)).all()                # the weight unchanged
                programmed += int((p != p0).any() or (m != m0).any())
                prev[k][lay] = (p.clone(), m.clone())
    assert programmed > 20
    # the weights read by the network are always B_w (k+ - k-)
    for k, ws in enumerate(net.weights()):
        for lay, w in enumerate(ws):
            assert torch.allclose(w.t(), _levels(net, k)[lay][2].float() * float(net.bw[k, lay]))


@pytest.mark.parametrize("noisy", [False, True])
def test_reset_changes_no_weight_by_more_than_a_level(noisy):
    x, y = _images(30)
    net = sd.Lockstep(_memristive_group(reset_every=0, reset_noise=noisy))
    net.train(x, y)
    before = [[d.long().clone() for _, _, d in _levels(net, k)] for k in range(net.K)]
    assert any(((p > 0) & (m > 0)).any() for k in range(net.K) for p, m, _ in _levels(net, k))
    for k in range(net.K):
        net.reset(k)
        for lay, (p, m, d) in enumerate(_levels(net, k)):
            change = (p.long() - m.long()) - before[k][lay]
            assert torch.equal(d.long(), p.long() - m.long())
            if k < 2:                    # sigma = 0 or 0.3B: exact, or within one level
                assert int(change.abs().max()) <= (1 if noisy and k else 0)
            assert ((p == 0) | (m == 0)).all()


# --- the simulator ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("input_norm", ["image_mean", "unit"])
def test_deterministic_path_matches_autograd_reference_step_for_step(backend, input_norm):
    x, y = _images(40)
    cfgs = [sd.NetworkConfig(bl=0, lr=0.3, lr_final=0.3, seed=s, input_norm=input_norm,
                             **SMALL) for s in (0, 1, 2)]
    net = sd.Lockstep(cfgs, backend=backend)
    refs = [sd.ReferenceMLP(sd.initial_weights(c)) for c in cfgs]
    xin = sd.network_inputs(x, input_norm)
    for i in range(40):
        net.step(x[i], y[i])
        for ref, ws in zip(refs, net.weights()):
            ref.train_step(xin[i], int(y[i]), 0.3)
            for a, b in zip(ws, ref.ws):
                assert torch.allclose(a, b.detach(), atol=1e-6), i


def test_compiled_and_torch_paths_train_the_same_networks():
    """The compiled kernels and the plain PyTorch path: the same streams, counts, updates,
    programming events and resets, image after image (floating-point stochastic weights and
    memristive levels equal, the deterministic network to float rounding)."""
    x, y = _images(30)
    cfgs = [sd.NetworkConfig(bl=0, **SMALL), sd.NetworkConfig(bl=8, seed=1, **SMALL),
            sd.NetworkConfig(bl=70, seed=2, **SMALL),
            sd.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.5, lr=0.5,
                             lr_final=0.5, w_max=(0.05, 0.1, 0.2), seed=3, reset_every=7,
                             **SMALL),
            sd.NetworkConfig(bl=6, synapse="memristive", sigma_over_b=0.2, lr=0.5, lr_final=0.5,
                             w_max=(0.05, 0.1, 0.2), seed=4, reset_every=5, reset_noise=True,
                             input_norm="unit", **SMALL)]
    a = sd.Lockstep(cfgs, backend="numba")
    b = sd.Lockstep(cfgs, backend="torch")
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
    for k in (3, 4):
        for la, lb in zip(_levels(a, k), _levels(b, k)):
            assert all(torch.equal(p, q) for p, q in zip(la, lb))


def test_stochastic_update_counts_are_exact_coincidences():
    """The weight change of a floating-point stochastic network is -sign B times the exact
    coincidence counts, recomputed here bit by bit from the recorded streams."""
    x, y = _images(4)
    cfg = sd.NetworkConfig(bl=8, lr=0.4, lr_final=0.4, **SMALL)
    net = sd.Lockstep([cfg], backend="torch")
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
    det = sd.Lockstep([sd.NetworkConfig(bl=0, **cfg)])
    w0 = det.weights()[0]
    det.step(x[0], y[0])
    dw = [a - b for a, b in zip(det.weights()[0], w0)]
    n = 64
    nets = sd.Lockstep([sd.NetworkConfig(bl=512, **cfg)] * n)
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
    a = sd.NetworkConfig(bl=6, seed=4, **SMALL)
    m = sd.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=0.5, seed=5,
                         w_max=(0.05, 0.1, 0.2), **SMALL)
    d = sd.NetworkConfig(bl=0, seed=6, **SMALL)
    alone = []
    for c in (a, m):
        net = sd.Lockstep([c])
        net.train(x, y)
        alone.append(net.weights()[0])
    group = sd.Lockstep([m, d, a])
    for i in range(25):
        group.step(x[i], y[i])
    ws = group.weights()
    for ref, got in zip(alone, (ws[2], ws[0])):
        for u, v in zip(ref, got):
            assert torch.equal(u, v)


def test_network_inputs_mean_normalization():
    x, _ = _images(5)
    z = sd.network_inputs(x)
    assert torch.allclose(z.mean(1), torch.zeros(5), atol=1e-6)
    assert float(z.min()) >= -1 and float(z.max()) <= 1 and (z < 0).any()
    assert torch.equal(sd.network_inputs(x, "unit"), x)


def test_plan_groups_balanced():
    cs = [sd.NetworkConfig(bl=b) for b in (100, 0, 10, 50, 2)] + [
        sd.NetworkConfig(bl=10, synapse="memristive", sigma_over_b=s) for s in (0.1, 0.5, 1.0)]
    groups = sd.plan_groups(cs, 2)
    assert len(groups) == 2 and sorted(c.bl for g in groups for c in g) == sorted(
        c.bl for c in cs)
    costs = [sum(map(sd.relative_cost, g)) for g in groups]
    assert max(costs) - min(costs) <= max(map(sd.relative_cost, cs))
    assert len(sd.plan_groups(cs[:1], 2)) == 1


def test_train_run_end_to_end_and_noisy_inference(tmp_path, monkeypatch):
    from hwlib.data import DATASETS, data_root
    from hwlib.study.store import ResultStore

    if not (data_root() / DATASETS["mnist"].folder / "train-images-idx3-ubyte").exists():
        pytest.skip("MNIST not under the data root (set HWLIB_DATA)")
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path))
    cfgs = [sd.NetworkConfig(bl=0, epochs=2, n_train=300, n_test=200, hidden=(32, 16)),
            sd.NetworkConfig(bl=10, synapse="memristive", epochs=2, n_train=300, n_test=200,
                             hidden=(32, 16), w_max=(0.3, 0.6, 1.5))]
    store = ResultStore("smoke")
    entries = sd.train_networks(store, cfgs, workers=2)
    for e in entries:
        assert e["test_acc"].shape == (2,) and 10 < e["best_test_acc"] <= 100
    assert entries[1]["level1"].dtype == np.int8 and abs(entries[1]["level1"]).max() <= 31
    assert entries[1]["events_per_image"].min() > 0
    again = sd.train_run(cfgs[1].to_dict())                 # deterministic on the CPU
    np.testing.assert_array_equal(again["test_acc"], entries[1]["test_acc"])
    out = sd.noisy_inference({"network": cfgs[1].to_dict(), "profile": "smoke",
                              "noise_vars": [0.0, 0.2], "bls": [10, 100], "runs": 2, "seed": 0})
    assert out["accuracy"].shape == (2, 2, 2)
    clean = sd.stored_weights(entries[1].result, cfgs[1])
    assert all(torch.equal(w, torch.round(w / b) * b) for w, b in
               zip(clean, [0.3 / 31, 0.6 / 31, 1.5 / 31]))


def test_inference_streams_same_in_kernels_and_torch():
    x, _ = _images(6)
    ws = sd.initial_weights(sd.NetworkConfig(**SMALL))
    xin = sd.network_inputs(x)
    for bl in (0, 7, 100):
        a = sd.forward_labels(ws, xin, bl, key=11, backend="numba")
        b = sd.forward_labels(ws, xin, bl, key=11, backend="torch")
        assert torch.equal(a, b)
    est = sd.stream_estimate(xin, 100, 5)
    assert torch.equal(torch.sign(est), torch.sign(xin) * (est != 0))
    assert float((est - xin).abs().max()) < 0.25


def test_every_profile_resolves_and_full_size_networks_step():
    """The smoke, book and paper profiles build the chapter's networks (the paper profile:
    all of MNIST, CUDA when present); one full-size step of each kind runs on both paths."""
    import hwlib

    for profile in ("smoke", "book", "paper"):
        S = hwlib.setup(profile, chapter="memristive", stream_lengths=None, epochs=None,
                        n_train=None, n_test=None, eta_first=None, eta_last=None, dataset=None,
                        sigma_over_b_values=None, train_bl=None, on_off_ratio=None,
                        levels=None, reset_every=None, reset_noise=None, w_max=None,
                        sigma_over_b=None, input_norm=None, seed=0)
        nets = sd.chapter_networks(S)
        kinds = {c.kind for c in nets}
        assert kinds == {"deterministic", "float", "memristive"}
        assert all(c.hidden == (256, 128) and c.dataset == "mnist" for c in nets)
        assert {c.input_norm for c in nets} == {"image_mean", "unit"}
        if profile == "paper":
            assert all(c.n_train is None and c.epochs == 30 for c in nets)
    x, y = _images(2)
    cfgs = [sd.NetworkConfig(bl=0), sd.NetworkConfig(bl=100),
            sd.NetworkConfig(bl=10, synapse="memristive", w_max=(0.3, 0.6, 1.5))]
    for backend in ("numba", "torch"):
        net = sd.Lockstep(cfgs, backend=backend)
        net.train(x, y)
        assert all(torch.isfinite(w).all() for ws in net.weights() for w in ws)
