"""Memory faults: bit masking against a bit-by-bit reference, fault and erasure rates, the
energy model, the four architectures at full size, chips, the erasure regularizer, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwlib.chapters import memory_faults as study
from hwlib.errors import ParameterError
from hwlib.hardware import sram as mf
from hwlib.methods.training import FreshChip, Step, fit
from hwlib.models import resnets as cm


def erasure_chip(p_e, targets="both", block_rates=None):
    """The erasure regularizer: a fresh chip of the SRAM erasure model."""
    return mf.SRAMFaults(model="erasure", rate=p_e, targets=targets,
                         block_rates=block_rates).fresh(None)

# --------------------------------------------------------------------------------------
# an independent reference: bit masking one value at a time, on Python integers
# --------------------------------------------------------------------------------------


def bm_reference(value: int, faults: int) -> int:
    """BM by the paper's words, bit by bit: a faulty sign bit zeroes the value; any other
    faulty bit takes the sign bit's value."""
    bits = [(value & 0xFF) >> k & 1 for k in range(8)]  # two's complement, LSB first
    if faults >> 7 & 1:
        return 0
    sign = bits[7]
    out = [sign if faults >> k & 1 else bits[k] for k in range(7)] + [sign]
    u = sum(b << k for k, b in enumerate(out))
    return u - 256 if u >= 128 else u


def test_bm_codes_match_the_reference_exhaustively():
    q = torch.arange(-128, 128).repeat_interleave(256)
    f = torch.arange(256).repeat(256)
    got = mf.bit_masking_codes(q, f).tolist()
    want = [bm_reference(int(a), int(b)) for a, b in zip(q.tolist(), f.tolist())]
    assert got == want
    # the lookup table used on float tensors is the same rule
    table = mf._bm_table().long().tolist()
    assert table == want


def test_bm_never_grows_a_value_nor_flips_its_sign_exhaustively():
    q = torch.arange(-128, 128).repeat_interleave(256)
    f = torch.arange(256).repeat(256)
    m = mf.bit_masking_codes(q, f).long()
    assert (m.abs() <= q.abs()).all()
    assert (m * q >= 0).all()
    assert (m[(f & 0x80) != 0] == 0).all()  # a sign-bit fault zeroes the value
    assert (m[f == 0] == q[f == 0]).all()  # no fault, no change


def test_float_bm_matches_the_reference_on_random_fault_patterns():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(20_000, generator=gen, dtype=torch.float64)
    fmap = mf.FaultMap.sample(x.numel(), 0.05, generator=gen)
    out = fmap.apply(x)
    s = float(mf.quantization_scale(x))
    q = torch.round(x / s).long()
    assert int(q.abs().max()) == 127  # the scale rule: the largest magnitude maps to 127
    want = x.clone()
    for i, f in zip(fmap.index.tolist(), fmap.faults.tolist()):
        m = bm_reference(int(q[i]), int(f))
        want[i] = 0.0 if m == 0 else float(x[i]) + s * (m - int(q[i]))
    assert torch.equal(out, want)
    untouched = torch.ones(x.numel(), dtype=torch.bool)
    untouched[fmap.index] = False
    assert torch.equal(out[untouched], x[untouched])
    # in the float domain too: never away from zero, never across it
    assert (out.abs() <= x.abs()).all() and (out * x >= 0).all()


def test_nonnegative_path_is_the_general_rule():
    """Activations take a shorter path (BM(q) = q & ~f); it must equal the general rule on
    every non-negative code with every pattern of the 7 non-sign bits, and on random floats."""
    q = torch.arange(0, 128).repeat_interleave(128).double()
    f = torch.arange(128).repeat(128).to(torch.uint8)
    s = torch.tensor(1.0, dtype=torch.float64)
    assert torch.equal(mf._masked_nonnegative(q, s, f), mf._masked_values(q, s, f))
    v = torch.rand(10_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    s = mf.quantization_scale(v)
    f = torch.randint(0, 128, (10_000,), generator=torch.Generator().manual_seed(2))
    assert torch.equal(mf._masked_nonnegative(v, s, f), mf._masked_values(v, s, f))


def test_activation_faults_spare_the_sign_bit():
    gen = torch.Generator().manual_seed(4)
    fmap = mf.FaultMap.sample(50_000, 0.2, signed=False, generator=gen)
    assert int(fmap.faults.max()) < 0x80
    a = torch.rand(3, 50_000, generator=gen)
    out = fmap.apply_per_sample(a.clone())
    assert (out >= 0).all() and (out <= a).all()
    # per-sample scale: each row quantized by its own maximum
    for r in range(3):
        row = fmap.apply(a[r])
        assert torch.allclose(out[r], row)


# --------------------------------------------------------------------------------------
# rates: binomial tolerance (5 standard deviations)
# --------------------------------------------------------------------------------------


def _within(count: int, n: int, p: float, z: float = 5.0) -> bool:
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [1e-4, 0.01, 0.3, 0.9])
@pytest.mark.parametrize("signed", [True, False])
def test_fault_rates_are_binomial(p, signed):
    n = 200_000
    bits = 8 if signed else 7
    fmap = mf.FaultMap.sample(n, p, signed=signed, seed=11)
    assert _within(fmap.n_faulty_cells, n * bits, p)
    f = fmap.faults.long()
    for k in range(bits):  # every bit position faults at rate p, independently of the others
        assert _within(int(((f >> k) & 1).sum()), n, p), k
    if not signed:
        assert int(((f >> 7) & 1).sum()) == 0
    # values with at least one faulty cell: 1 - (1 - p)^bits
    assert _within(len(fmap.index), n, 1 - (1 - p) ** bits)
    assert (fmap.index[1:] > fmap.index[:-1]).all() and int(fmap.index[-1]) < n


@pytest.mark.parametrize("p", [0.001, 0.004, 0.011, 0.02, 0.3, 0.9])
@pytest.mark.parametrize("signed", [True, False])
def test_fresh_dense_maps_are_binomial(p, signed):
    """A fresh map held dense: drawn pattern by pattern (the alias method: small memories, or
    from DENSE_DRAW_FROM faulty cells per value), or by geometric gaps marked into the dense
    map (from DENSE_GAPS_FROM faulty values; p = 0.004 and 0.011): every bit cell faulty at
    rate p, independently (per-bit rates, pairwise joint rates, the number of faulty cells per
    value against Binomial(bits, p)). Small memories are drawn many times over and pooled."""
    bits = 8 if signed else 7
    gen = torch.Generator().manual_seed(5)
    small = 1 - (1 - p) ** bits < mf.DENSE_GAPS_FROM
    n = 400_000 if not small else mf.SMALL_MAP
    maps = [mf.FaultMap.sample(n, p, signed=signed, generator=gen)
            for _ in range(1 if not small else 2_000_000 // n)]
    assert all(m._index is None for m in maps)  # drawn dense
    fmap = mf.FaultMap(n * len(maps), model="bm", signed=signed,
                       dense=torch.cat([m.dense for m in maps]))
    n = fmap.numel
    f = fmap.dense.long()
    cells = [(f >> k) & 1 for k in range(8)]
    for k in range(bits):
        assert _within(int(cells[k].sum()), n, p), k
        for j in range(k):
            assert _within(int((cells[k] & cells[j]).sum()), n, p * p), (j, k)
    if not signed:
        assert int(cells[7].sum()) == 0
    counts = np.bincount(sum(cells).numpy(), minlength=bits + 1)
    for c in range(bits + 1):
        assert _within(int(counts[c]), n, math.comb(bits, c) * p ** c * (1 - p) ** (bits - c)), c
    again = mf.FaultMap.sample(len(maps[0].dense), p, signed=signed,
                               generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.dense, maps[0].dense)


@pytest.mark.parametrize("n,p", [(5000, 0.002), (200_000, 0.01), (200_000, 0.015),
                                 (30_000, 0.004)])
@pytest.mark.parametrize("signed", [True, False])
def test_fresh_maps_marked_dense_are_the_geometric_maps(n, p, signed, monkeypatch):
    """Marking a fresh map's geometric gaps straight into a dense map (from DENSE_GAPS_FROM
    faulty values) gives the sparse draw's map, cell for cell, from the same random numbers
    (the generators end in the same state)."""
    def draw(dense_from):
        monkeypatch.setattr(mf, "DENSE_GAPS_FROM", dense_from)
        monkeypatch.setattr(mf, "SMALL_MAP", 0)  # no alias draw for the small memory
        gen = torch.Generator().manual_seed(9)
        fmap = mf.FaultMap.sample(n, p, signed=signed, generator=gen)
        return fmap, torch.rand(4, generator=gen)

    (dense, after_d), (sparse, after_s) = draw(0.0), draw(2.0)
    assert dense._index is None and sparse._dense is None
    assert torch.equal(dense.dense, sparse.dense) and torch.equal(after_d, after_s)
    assert torch.equal(dense.index, sparse.index) and torch.equal(dense.faults, sparse.faults)


def test_marking_gaps_continues_across_chunks():
    """The kernel that marks gaps stops at the memory's end, or returns where a chunk left off
    so the next chunk goes on from there: two chunks mark what one does."""
    from hwlib.hardware import sram_kernels
    gen = torch.Generator().manual_seed(2)
    gaps = torch.rand(3000, generator=gen).mul_(20).floor_()
    n_cells, bits = int(gaps.add(1).sum()) - 500, 7
    whole = np.zeros(-(-n_cells // bits), np.uint8)
    assert sram_kernels.mark_cells(gaps.numpy(), -1, n_cells, bits, whole) >= n_cells
    parts = np.zeros_like(whole)
    last = sram_kernels.mark_cells(gaps[:1000].numpy(), -1, n_cells, bits, parts)
    assert last == int(gaps[:1000].add(1).sum()) - 1 < n_cells
    assert sram_kernels.mark_cells(gaps[1000:].numpy(), last, n_cells, bits, parts) >= n_cells
    assert np.array_equal(parts, whole)
    cells = torch.cumsum(gaps.add(1).long(), 0) - 1
    cells = cells[cells < n_cells]
    expect = np.zeros_like(whole)
    np.bitwise_or.at(expect, (cells // bits).numpy(), (1 << (cells % bits)).numpy().astype(np.uint8))
    assert np.array_equal(whole, expect)


@pytest.mark.parametrize("compiled", [True, False])
def test_applying_into_a_tensor_gives_the_copy(compiled, monkeypatch):
    """``apply(x, out=t)`` writes into t the copy that ``apply(x)`` returns (the kernel and the
    indexed path; a non-contiguous target too), and leaves x alone."""
    monkeypatch.setattr(mf.FaultMap, "_compiled", lambda self, x, training=False: compiled)
    fmap = mf.FaultMap.sample(6 * 50, 0.05, seed=1)
    x = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    expect = fmap.apply(x)
    assert not torch.equal(expect, x)
    for target in (torch.empty(6, 50), torch.empty(50, 6).t()):
        version = target._version
        got = fmap.apply(x, out=target)
        assert got is target and torch.equal(target, expect)
        assert target._version > version  # an in-place write, as autograd sees it
    assert torch.equal(x, before)
    with pytest.raises(ParameterError, match="out: a torch.float64 tensor"):
        fmap.apply(x, out=torch.empty(6, 50, dtype=torch.float64))


@pytest.mark.parametrize("p", [0.002, 0.3])
def test_a_graph_built_before_attaching_refuses_the_faulty_weights(p):
    """Attaching a chip writes the parameters in place, as autograd sees it: a graph that saved
    the clean weights cannot back-propagate inside the block (it would mix the two)."""
    layer = torch.nn.Linear(300, 40)
    x = torch.randn(8, 300, requires_grad=True)
    loss = layer(x).sum()
    chip = mf.FaultyChip(mf.FaultConfig("bm", p, "weights"), seed=0)
    with chip.attached(layer):
        with pytest.raises(RuntimeError, match="inplace"):
            loss.backward()


@pytest.mark.parametrize("p", [0.008, 0.05, 0.3, 0.7])
@pytest.mark.parametrize("bits", [7, 8])
def test_alias_table_gives_the_pattern_probabilities(p, bits):
    """Enumerating the alias table: each pattern f is drawn with probability
    p^|f| (1 - p)^(bits - |f|), up to the 31-bit resolution of the uniform draws."""
    from hwlib.hardware import sram_kernels
    implied = sram_kernels.implied_probabilities(p, bits)
    ones = np.array([bin(f).count("1") for f in range(1 << bits)])
    exact = p ** ones * (1 - p) ** (bits - ones)
    assert abs(implied.sum() - 1) < 1e-12
    assert np.abs(implied - exact).max() < 2.0 ** -24


@pytest.mark.parametrize("p", [0.001, 0.02, 0.3])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("scale", [None, 0.004])
def test_compiled_masking_matches_the_indexed_path(p, signed, scale, monkeypatch):
    """The one-pass kernel and the indexed path give the same bits, forward and backward
    (per-sample scale rule and a fixed step; the per-tensor rule of weights)."""
    n = 3000
    fmap = mf.FaultMap.sample(n, p, signed=signed, seed=3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, n, generator=gen) * 0.3
    x = x if signed else x.relu()
    weights = torch.arange(n, dtype=torch.float32)

    def run(compiled):
        monkeypatch.setattr(mf.FaultMap, "_compiled", lambda self, x, training=False: compiled)
        xg = x.clone().requires_grad_()
        out = fmap.apply_per_sample(xg, scale)
        (out * weights).sum().backward()
        return out.detach(), xg.grad, fmap.apply_per_sample(x.clone(), scale), fmap.apply(x[0])

    compiled, indexed = run(True), run(False)
    for a, b in zip(compiled, indexed):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("model,signed", [("bm", True), ("bm", False), ("erasure", True)])
def test_fault_maps_of_one_seed_are_nested(model, signed):
    """One uniform number per bit cell: a fault at p is a fault at every p' > p (the same
    value, the same bit), and each map keeps the binomial rate."""
    n = 100_000
    rates = [1e-4, 3e-4, 0.002, 0.0155, 0.0157, 0.05, 0.2, 0.26, 0.6]
    prev = None
    for p in rates:
        fmap = mf.FaultMap.sample(n, p, model, signed, seed=42)
        cells = n if model == "erasure" else n * (8 if signed else 7)
        assert _within(fmap.n_faulty_cells, cells, p), p
        if prev is not None:
            pos = torch.searchsorted(fmap.index, prev.index)
            assert bool((fmap.index[pos] == prev.index).all()), p  # every faulty value stays
            old, new = prev.faults.long(), fmap.faults.long()[pos]
            assert bool(((old & new) == old).all()), p  # and keeps its faulty bits
        prev = fmap
    # another seed: another chip
    other = mf.FaultMap.sample(n, 0.05, model, signed, seed=43)
    assert not torch.equal(other.index, mf.FaultMap.sample(n, 0.05, model, signed,
                                                           seed=42).index)


def test_nested_cells_are_independent_uniform_per_cell():
    """Across many seeds, a fixed cell is faulty at p with probability p, and its faults at
    two rates are nested: P(faulty at p1 and at p2) = min(p1, p2)."""
    hits = {0.01: 0, 0.2: 0, "both": 0}
    seeds = 1_500
    for s in range(seeds):
        a = mf.nested_faulty_cells(64, 0.01, s)
        b = mf.nested_faulty_cells(64, 0.2, s)
        hits[0.01] += int((a == 5).any())
        hits[0.2] += int((b == 5).any())
        hits["both"] += int((a == 5).any() and (b == 5).any())
    assert _within(hits[0.01], seeds, 0.01) and _within(hits[0.2], seeds, 0.2)
    assert hits["both"] == hits[0.01]


@pytest.mark.parametrize("p_e", [0.001, 0.05, 0.5])
def test_erasure_rate_is_binomial(p_e):
    n = 500_000
    x = torch.ones(n)
    out = mf.erasure(x, p_e, torch.Generator().manual_seed(5))
    assert _within(int((out == 0).sum()), n, p_e)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_extreme_rates():
    assert len(mf.FaultMap.sample(1000, 0.0).index) == 0
    full = mf.FaultMap.sample(1000, 1.0)
    assert len(full.index) == 1000 and (full.faults == 255).all()
    assert (mf.bit_masking(torch.randn(1000), 1.0) == 0).all()


def test_chip_rates_on_a_network_and_regularizer_rate():
    model = study.build_network("preactresnet18", 0.25, "fashion_mnist").eval()
    chip = mf.FaultyChip(mf.FaultConfig("erasure", 0.05, "weights"), seed=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with chip.attached(model):
        erased = sum(int(((p == 0) & (before[n] != 0)).sum())
                     for n, p in model.named_parameters())
    nonzero = sum(int((b != 0).sum()) for b in before.values())
    assert _within(erased, nonzero, 0.05)
    for n, p in model.named_parameters():  # weights restored
        assert torch.equal(p, before[n]), n
    # the regularizer's erasures of stored activations, at p_e
    block = model.layer1[0]
    seen = {}
    h1 = block.relu2.register_forward_pre_hook(lambda m, i: seen.update(pre=i[0]))
    h2 = block.conv2.register_forward_pre_hook(lambda m, i: seen.update(stored=i[0]))
    model.train()
    with erasure_chip(0.1, "activations").attached(model):
        model(torch.randn(8, 1, 28, 28))
    h1.remove()
    h2.remove()
    positive = seen["pre"] > 0
    erased = (seen["stored"] == 0) & positive
    assert _within(int(erased.sum()), int(positive.sum()), 0.1)
    assert torch.equal(seen["stored"][~(seen["stored"] == 0)],
                       F.relu(seen["pre"])[~(seen["stored"] == 0)])  # survivors not rescaled


def test_chip_is_reproducible_and_fixed_for_every_input():
    torch.manual_seed(0)
    model = study.build_network("resnet18", 0.125, "fashion_mnist").eval()
    x = torch.randn(6, 1, 28, 28)
    cfg = mf.FaultConfig("bm", 0.02, "both")
    with torch.no_grad():
        with mf.FaultyChip(cfg, 7).attached(model):
            a = model(x)
            a_single = torch.cat([model(x[i:i + 1]) for i in range(6)])  # same cells per input
        with mf.FaultyChip(cfg, 7).attached(model):
            b = model(x)
        with mf.FaultyChip(cfg, 8).attached(model):
            c = model(x)
        clean = model(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, clean)
    assert torch.allclose(a, a_single, atol=1e-5)


def test_blockwise_rates_and_energy():
    assert mf.blockwise_rates(0.01) == pytest.approx((0.001, 0.002, 0.002, 0.01))
    model = study.build_network("preactresnet18", 0.125, "fashion_mnist")
    counts = mf.memory_accesses(model, (1, 28, 28))
    em = mf.EnergyModel()
    assert mf.FaultConfig().energy(counts, em) == pytest.approx(counts.e0)
    uniform = mf.FaultConfig("bm", 0.01).energy(counts, em)
    assert uniform == pytest.approx(em.eta(0.01) * counts.e0)
    rates = mf.blockwise_rates(0.01)
    policy = mf.FaultConfig("bm", 0.0, "both", rates).energy(counts, em)
    want = sum(em.eta(r) * (counts.parameters[b + 1] + counts.activations[b + 1])
               for b, r in enumerate(rates))
    assert policy == pytest.approx(want)
    only_w = mf.FaultConfig("bm", 0.01, "weights").energy(counts, em)
    assert only_w == pytest.approx(em.eta(0.01) * counts.n_parameters + counts.n_activations)
    # one block at a time touches only that block
    one = mf.FaultConfig("bm", 0.0, "both", (0, 0, 0.05, 0))
    assert one.rate_of(3, "weights") == 0.05 and one.rate_of(2, "activations") == 0.0


def test_energy_model():
    em = mf.EnergyModel()
    assert em.a == 12.8
    for p in (1e-4, 1e-3, 0.01, 0.1):
        assert em.fault_rate(em.eta(p)) == pytest.approx(p)
    assert em.eta(0.001) == pytest.approx(0.5397, abs=1e-4)
    assert em.eta(0.01) == pytest.approx(0.3598, abs=1e-4)
    assert em.eta(0.0) == 1.0 and em.eta(1e-9) == 1.0  # below the nominal rate: reliable


# --------------------------------------------------------------------------------------
# exhaustive MSD against Monte Carlo
# --------------------------------------------------------------------------------------


def test_bm_mean_square_deviation_closed_form_against_monte_carlo():
    gen = torch.Generator().manual_seed(9)
    w = [torch.randn(40_000, generator=gen) * 0.05, torch.randn(5_000, generator=gen)]
    p = 0.02
    dev, power = study.bm_mean_square_deviation(w, p)
    draws = []
    for k in range(60):
        g = torch.Generator().manual_seed(100 + k)
        draws.append(sum(float(((mf.bit_masking(t, p, generator=g) - t) ** 2).sum())
                         for t in w))
    mc = np.mean(draws)
    assert abs(mc - dev) <= 4 * np.std(draws) / math.sqrt(len(draws))
    pe = study.mse_matched_erasure_rate(w, p)
    assert pe == pytest.approx(dev / power) and pe > p


def test_readings():
    assert study.rate_at_drop([0.001, 0.01, 0.1], [90, 89.5, 80], 89) == pytest.approx(
        0.01 * 10 ** (0.5 / 9.5))
    assert study.rate_at_drop([0.001, 0.01], [90, 89.5], 89) == math.inf
    assert study.rate_at_drop([0.001, 0.01], [88, 80], 89) == 0.001
    p = np.array([0.001, 0.002, 0.005, 0.01])
    pe = np.geomspace(1e-4, 0.1, 30)
    acc_e = 90 - 300 * pe  # a made-up erasure curve: BM is erasure at 2p
    r, _, _ = study.best_erasure_ratio(p, 90 - 300 * 2 * p, pe, acc_e)
    assert r == pytest.approx(2.0, rel=0.03)
    ref = study.ReliableReference([100, 200, 400], [90, 91, 92])
    assert ref.energy_at(91.5)[0] == pytest.approx(math.sqrt(200 * 400))
    assert math.isnan(ref.energy_at(89)[0]) and ref.energy_at(93)[0] == pytest.approx(400)
    assert study.energy_reductions(ref, [100], [92])[0] == pytest.approx(4.0)


# --------------------------------------------------------------------------------------
# the four architectures at full size (Table I) and one step on CIFAR-shaped data
# --------------------------------------------------------------------------------------

TABLE_I = {  # exact counts; the paper prints them rounded
    "preactresnet18": (11_171_146, 548_864, 11.2, 0.55),
    "mobilenetv2": (2_296_922, 1_534_976, 2.30, 1.53),
    "senet18": (11_260_354, 860_280, 11.3, 0.86),
    "resnet18": (11_173_962, 557_056, 11.2, 0.56),
}


@pytest.mark.parametrize("arch", cm.ARCHITECTURES)
def test_table_i_counts_at_full_size(arch):
    model = cm.build(arch)
    counts = mf.memory_accesses(model, (3, 32, 32))
    n_params, n_acts, paper_params, paper_acts = TABLE_I[arch]
    assert counts.n_parameters == n_params == sum(p.numel() for p in model.parameters())
    assert counts.n_activations == n_acts
    assert round(n_params / 1e6, 1 if paper_params > 5 else 2) == paper_params
    assert round(n_acts / 1e6, 2) == paper_acts
    assert all(counts.parameters[1:]) and counts.parameters[0] == 0  # every tensor in a block


def test_preactresnet18_block_weights_at_full_size():
    counts = mf.memory_accesses(cm.build("preactresnet18"), (3, 32, 32))
    blocks = [round(w / 1e5, 1) for w in counts.conv_weights[1:]]
    assert blocks == [1.5, 5.2, 21.0, 83.9]  # the paper: [1.5, 5.2, 21, 84] x 10^5


def test_width_multipliers():
    full = mf.memory_accesses(cm.build("preactresnet18"), (3, 32, 32)).n_parameters
    half = mf.memory_accesses(cm.build("preactresnet18", width=0.5), (3, 32, 32)).n_parameters
    root = mf.memory_accesses(cm.build("preactresnet18", width=2 ** -0.5),
                              (3, 32, 32)).n_parameters
    assert half / full == pytest.approx(0.25, rel=0.01)
    assert root / full == pytest.approx(0.5, rel=0.02)
    assert [cm.channels(c, 2 ** -0.5) for c in (64, 128, 256, 512)] == [45, 91, 181, 362]


@pytest.mark.parametrize("arch", cm.ARCHITECTURES)
def test_full_size_one_step_on_cifar_shaped_data(arch):
    torch.manual_seed(0)
    model = cm.build(arch)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    opt.zero_grad()
    with erasure_chip(0.02).attached(model):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    opt.step()
    assert math.isfinite(float(loss.detach()))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    model.eval()
    with torch.no_grad(), mf.FaultyChip(mf.FaultConfig("bm", 0.01), 1).attached(model):
        out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()


# --------------------------------------------------------------------------------------
# the paper path on synthetic CIFAR-10 (real on-disk format), through the store
# --------------------------------------------------------------------------------------


def test_paper_path_on_synthetic_cifar10(tmp_path, monkeypatch):
    from test_data import _write_cifar10
    from torchvision.datasets import cifar as tv_cifar

    import os

    _write_cifar10(tmp_path / "data", np.random.default_rng(0))
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    monkeypatch.setenv("HWLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HWLIB_WORKERS", "1")  # in-process: the md5 patches above apply
    study.load_split.cache_clear()
    study._trained.cache_clear()
    import hwlib

    S = hwlib.setup("paper", chapter="memory_faults", dataset=None, width_f=0.0625, epochs=1,
                    n_train=None, n_test=None, batch_size=8, lr=None, momentum=None,
                    weight_decay=None, augment=None, seed=0, torch_device="cpu", reg_init=None,
                    reg_epochs=1, reg_lr=0.01, precision=None, channels_last=None)
    assert S.p.dataset == "cifar10" and S.p.augment is True
    cfg = study.train_config(S.p, "preactresnet18", 0.5, reg_pe=0.02)
    entry = study.run_training(S, [cfg])[0]
    assert 0 <= entry["clean_accuracy"] <= 1 and len(entry["loss"]) == 1
    points = study.bm_points("reg", cfg, [0.01])
    frame, entries = study.run_points(S, points, instances=2)
    assert len(frame) == 3 and frame.energy.iloc[0] > frame.energy.iloc[1]
    assert len(entries) == 3 and entries[0].path == entry.path  # read back, not retrained
    # the regularizer as fine-tuning of a stored network (the book profile's way)
    assert S.p.reg_init == "scratch"
    ft = study.fine_tune_config(S.p, cfg, "paper", reg_pe=0.05)
    assert ft["init"]["train"] == cfg and ft["epochs"] == 1 and ft["lr"] == 0.01
    tuned = study.run_training(S, [ft, cfg])[0]
    base = study.load_network(cfg, entry.result)
    after = study.load_network(ft, tuned.result)
    assert any(not torch.equal(a, b) for a, b in zip(base.parameters(), after.parameters()))
    study.load_split.cache_clear()
    study._trained.cache_clear()


def test_training_is_deterministic():
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = study.build_network("senet18", 0.0625, "fashion_mnist")
        hw = mf.SRAMFaults(model="erasure", rate=0.05, block_rates=(0.01, 0.02, 0.02, 0.1))
        step = Step(model, torch.optim.SGD(model.parameters(), lr=0.05), hw, FreshChip())
        fit(step, x, y, epochs=1, batch_size=16, seed=1, drop_last=True)
        outs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    assert torch.equal(outs[0], outs[1])


# --------------------------------------------------------------------------------------
# bad input: one clear line before any compute
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("call,needle", [
    (lambda: mf.FaultMap.sample(10, 1.5), "p=1.5: must be a probability in [0, 1]"),
    (lambda: mf.FaultMap.sample(10, -0.1, "erasure"), "p_e=-0.1: must be a probability"),
    (lambda: mf.bit_masking(torch.ones(3), float("nan")), "p=nan"),
    (lambda: mf.erasure(torch.ones(3), 2), "p_e=2"),
    (lambda: mf.FaultConfig("flip", 0.1), "model='flip': must be one of bm, erasure"),
    (lambda: mf.FaultConfig("bm", 0.1, "biases"), "targets='biases': must be one of"),
    (lambda: mf.FaultConfig("bm", 0.0, "both", (0.1, 0.2)), "must be 4 rates"),
    (lambda: mf.EnergyModel(-1.0), "a=-1.0: must be a float > 0"),
    (lambda: mf.EnergyModel().eta(1.2), "must be a probability in [0, 1]"),
    (lambda: mf.EnergyModel().fault_rate(-0.5), "eta=-0.5: must be in [0, 1]"),
    (lambda: mf.blockwise_rates(0.01, (10, 5, 0.5, 1)), "must be 4 numbers >= 1"),
    (lambda: mf.SRAMFaults(model="erasure", rate=3.0), "p_e=3.0"),
    (lambda: cm.build("vgg16"), "arch='vgg16': must be one of preactresnet18"),
    (lambda: cm.build("resnet18", width=0), "width=0: must be a float > 0"),
    (lambda: study.check_train_config({"arch": "resnet18"}), "training config lacks"),
    (lambda: study.bm_code_moments(7), "p=7"),
    (lambda: mf.FaultMap.sample(-5, 0.1), "numel=-5: must be an int >= 0"),
    (lambda: mf.FaultMap.sample(-5, 0.1, "erasure", seed=3), "numel=-5"),
    (lambda: mf.bit_masking_codes(torch.tensor([200]), torch.tensor([1])),
     "q: values in [200, 200]; an 8-bit code must lie in [-128, 127]"),
    (lambda: mf.bit_masking_codes(torch.tensor([3]), torch.tensor([256])),
     "faults: values in [256, 256]; an 8-bit fault mask must lie in [0, 255]"),
    (lambda: mf.nested_faulty_cells(-1, 0.1, 0), "n_cells=-1"),
])
def test_bad_input_one_line(call, needle):
    with pytest.raises(ParameterError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_fault_map_size_mismatch():
    fmap = mf.FaultMap.sample(10, 0.5)
    with pytest.raises(ParameterError, match="the map covers 10"):
        fmap.apply(torch.ones(11))


def test_calibrated_activation_scales_fix_the_step_and_saturate():
    """Fixed activation scales (calibrated on training images): s = max|a| / 127 per site;
    values beyond 127 s saturate; a faulty value is masked on the fixed step's code."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5),
                                torch.nn.ReLU())
    xc = torch.randn(200, 10)
    scales = mf.calibrate_activation_scales(model, xc)
    with torch.no_grad():
        h = model[1](model[0](xc))
    assert len(scales) == 2 and scales[0] == pytest.approx(float(h.max()) / 127)
    a = torch.tensor([[0.0, 50.0 * scales[0] * 127, 10.3 * scales[0]]])
    clean_map = mf.FaultMap(3, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.uint8),
                            "bm", False)
    out = clean_map.apply_per_sample(a.clone(), scales[0])
    assert float(out[0, 1]) == pytest.approx(127 * scales[0])  # saturated
    assert float(out[0, 2]) == pytest.approx(10.3 * scales[0])  # not quantized without a fault
    faulty = mf.FaultMap(3, torch.tensor([2]), torch.tensor([0b1000], dtype=torch.uint8), "bm",
                         False)
    out = faulty.apply_per_sample(a.clone(), scales[0])
    assert float(out[0, 2]) == pytest.approx((10.3 - 8) * scales[0], rel=1e-5)  # code 10 & ~8
    hw = mf.SRAMFaults(model="bm", rate=0.05, activation_scales=scales)
    assert hw.config()["activation_scales"] == list(scales)
    with pytest.raises(ParameterError, match="activation_scales"):
        mf.SRAMFaults(model="bm", rate=0.05, activation_scales=(0.0, 1.0))
    x = torch.randn(64, 10)
    y = torch.randint(0, 5, (64,))
    from hwlib.methods.evaluation import accuracy_on_chips
    a1 = accuracy_on_chips(model, hw, x, y, [1, 2], 32)
    assert a1.shape == (2,) and np.isfinite(a1).all()
