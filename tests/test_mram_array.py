"""The in-memory XNOR array: exactness at zero variation, enumeration, instances, PS/AS-DDHR."""

import itertools

import numpy as np
import pytest
import torch

from hwlib.hardware import mram
from hwlib.errors import ParameterError


def _pm1(shape, gen):
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def test_zero_variation_gives_the_exact_popcount():
    gen = torch.Generator().manual_seed(0)
    a, w = _pm1((16, 37), gen), _pm1((37, 9), gen)
    inst = mram.ArrayInstance.sample(37, 9, mram.MRAMCell.from_variation(0.03, 0.0), seed=3,
                                     dtype=torch.float64)
    assert torch.allclose(inst.preactivation(a, w), a @ w, atol=1e-9)


@pytest.mark.parametrize("model,order", [("conductance", "first"), ("resistance", "second")])
def test_column_conductance_by_enumeration(model, order):
    """Every input and weight pattern of a 3-row column: the mean and variance over instances
    equal p_1 E[G_P] + p_-1 E[G_AP] and p_1 Var[G_P] + p_-1 Var[G_AP] (the first-order cell
    moments for Gaussian conductances, second order for Gaussian resistances)."""
    M, n_inst = 3, 40_000
    cell = mram.MRAMCell.from_variation(0.03, 3.0)
    inst = mram.ArrayInstance.sample(M, 1, cell, seed=5, instances=n_inst, dtype=torch.float64,
                                     model=model)
    _, mean, var = mram.column_levels(M, cell, order=order)
    patterns = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=M)), dtype=torch.float64)
    for w in patterns:
        g = inst.column_conductance(patterns, w[:, None])[..., 0]  # (I, 8 inputs)
        p1 = ((patterns * w) > 0).sum(1).numpy()
        m, v = g.mean(0).numpy(), g.var(0).numpy()
        assert np.all(np.abs(m - mean[p1]) < 5 * np.sqrt(var[p1] / n_inst))
        assert np.all(np.abs(v / var[p1] - 1) < 5 * np.sqrt(2 / n_inst) + 2e-3)


def test_levels_shape_and_spacing():
    cell = mram.MRAMCell.from_variation(0.03, 1.0)
    p1, mean, var = mram.column_levels(4, cell)
    assert list(p1) == [0, 1, 2, 3, 4]
    assert np.allclose(np.diff(mean), 1 / cell.mu_p - 1 / cell.mu_ap)  # equal spacing
    assert np.all(np.diff(var) > 0)  # G_P (more conductive) has the larger variance
    u = mram.conductance_to_preactivation(mean, 4, cell)
    assert np.allclose(u, 2 * p1 - 4)
    with pytest.raises(ParameterError, match="M=0"):
        mram.column_levels(0, cell)


def test_ps_ddhr_std_matches_instances_and_as_ddhr_is_the_largest():
    cell = mram.MRAMCell.from_variation(0.03, 1.0)  # small spread: first order holds
    gen = torch.Generator().manual_seed(1)
    a, w = _pm1((6, 64), gen), _pm1((64, 4), gen)
    inst = mram.ArrayInstance.sample(64, 4, cell, seed=2, instances=20_000, dtype=torch.float64)
    u = inst.preactivation(a, w)  # the paper's Gaussian conductances: PS-DDHR is exact
    pred = mram.preactivation_std(a @ w, 64, cell)
    assert torch.allclose(u.mean(0), a @ w, atol=5 * float(pred.max()) / 20_000**0.5)
    assert torch.allclose(u.std(0) / pred, torch.ones_like(pred), atol=0.03)
    inst = mram.ArrayInstance.sample(64, 4, cell, seed=2, instances=20_000, dtype=torch.float64,
                                     model="resistance")
    u = inst.preactivation(a, w)
    # Gaussian resistances: the ideal popcount, shifted by the second-order bias of E[G].
    _, level_mean, _ = mram.column_levels(64, cell, order="second")
    p1 = ((a @ w + 64) / 2).long().numpy()
    expect = torch.from_numpy(mram.conductance_to_preactivation(level_mean[p1], 64, cell))
    assert torch.allclose(u.mean(0), expect, atol=5 * float(pred.max()) / 20_000**0.5)
    assert (expect - a @ w).abs().max() < 0.5  # the bias is small at the nominal spread
    assert torch.allclose(u.std(0) / pred, torch.ones_like(pred), atol=0.03)
    assert mram.as_ddhr_std(64, cell) == pytest.approx(float(mram.preactivation_std(64, 64, cell)))
    assert mram.as_ddhr_std(64, cell) >= float(pred.max())


def test_instances_reproducible_from_seed():
    cell = mram.MRAMCell.from_variation(0.03, 10.0)
    a = mram.ArrayInstance.sample(8, 4, cell, seed=7)
    b = mram.ArrayInstance.sample(8, 4, cell, seed=7)
    c = mram.ArrayInstance.sample(8, 4, cell, seed=8)
    assert torch.equal(a.g_p, b.g_p) and torch.equal(a.g_ap, b.g_ap)
    assert not torch.equal(a.g_p, c.g_p)


def test_stacked_instances_equal_a_loop():
    cell = mram.MRAMCell.from_variation(0.03, 10.0)
    gen = torch.Generator().manual_seed(4)
    a, w = _pm1((5, 12), gen), _pm1((12, 3), gen)
    many = mram.ArrayInstance.sample(12, 3, cell, seed=9, instances=4, dtype=torch.float64)
    u = many.preactivation(a, w)
    for i in range(4):
        one = mram.ArrayInstance(many.g_p[i], many.g_ap[i], cell)
        assert torch.allclose(u[i], one.preactivation(a, w))
