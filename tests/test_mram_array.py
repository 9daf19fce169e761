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


# --- the device model (Gaussian resistances) against an independent Monte Carlo of 1/R --------


def _reference_levels(M, cell, n, rng):
    """Column conductances G_n = sum of p1 P cells and p-1 AP cells, each 1/max(R, floor) with R
    Gaussian: numpy, written from the paper's model alone. Returns (n, M+1)."""
    out = np.empty((n, M + 1))
    for p1 in range(M + 1):
        rp = np.maximum(rng.normal(cell.mu_p, cell.sigma_p, (n, p1)), cell.r_min_rel * cell.mu_p)
        rap = np.maximum(rng.normal(cell.mu_ap, cell.sigma_ap, (n, M - p1)),
                         cell.r_min_rel * cell.mu_ap)
        out[:, p1] = (1 / rp).sum(1) + (1 / rap).sum(1)
    return out


def _assert_same_moments(a, b, z=4.5):
    """Means and variances of two independent samples agree within z standard errors."""
    n_a, n_b = len(a), len(b)
    se_mean = np.sqrt(a.var() / n_a + b.var() / n_b)
    assert abs(a.mean() - b.mean()) <= z * se_mean, (a.mean(), b.mean(), se_mean)

    def var_se(x):
        d = x - x.mean()
        return np.sqrt(max((d**4).mean() - x.var() ** 2, 0.0) / len(x))

    se_var = np.sqrt(var_se(a) ** 2 + var_se(b) ** 2)
    assert abs(a.var() - b.var()) <= z * se_var, (a.var(), b.var(), se_var)


def _level_inputs(M):
    return torch.tensor([[1.0] * k + [-1.0] * (M - k) for k in range(M + 1)], dtype=torch.float64)


@pytest.mark.parametrize("scale", [1.0, 6.0, 10.0])  # sigma/mu 0.05, 0.3, 0.5 (floor active)
def test_resistance_instances_match_an_independent_monte_carlo(scale):
    M, n = 6, 40_000
    cell = mram.MRAMCell.from_variation(0.05, scale)
    inst = mram.ArrayInstance.sample(M, 1, cell, seed=1, instances=n, dtype=torch.float64,
                                     model="resistance")
    g = inst.column_conductance(_level_inputs(M), torch.ones(M, 1, dtype=torch.float64))
    ref = _reference_levels(M, cell, n, np.random.default_rng(0))
    for p1 in range(M + 1):
        _assert_same_moments(g[:, p1, 0].numpy(), ref[:, p1])


class _Layer:
    array_index = 0


@pytest.mark.parametrize("model", ["resistance", "conductance"])
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_fresh_chips_draw_the_instance_distribution(model, scale):
    """A fresh training chip draws only the cells' current states: its columns have the same
    distribution as an instance's (resistance: against the independent Monte Carlo of 1/R)."""
    M, N = 6, 40_000  # every column an independent draw of the same weight column
    cell = mram.MRAMCell.from_variation(0.05, scale)
    readout = mram.FreshReadout(cell, torch.Generator().manual_seed(5), model)
    w = torch.ones(M, N)
    w_odd, w_even = readout.weights(_Layer(), w)
    a = _level_inputs(M).float()
    u = (a @ w_odd + w_even.sum(0, keepdim=True)).double().numpy()  # (M+1, N)
    if model == "resistance":
        ref = mram.conductance_to_preactivation(
            _reference_levels(M, cell, N, np.random.default_rng(1)), M, cell)
    else:
        inst = mram.ArrayInstance.sample(M, 1, cell, seed=2, instances=N, dtype=torch.float64,
                                         model="conductance")
        ref = mram.conductance_to_preactivation(
            inst.column_conductance(_level_inputs(M), torch.ones(M, 1, dtype=torch.float64))
            [..., 0].numpy(), M, cell)
    for p1 in range(M + 1):
        _assert_same_moments(u[p1], ref[:, p1], z=5.0)  # float32 draws: a touch more slack


def test_fresh_chip_forward_through_the_chip_gradient_through_the_expectation():
    """Algorithm 1: the forward value is the chip's, the weight gradient the ideal layer's."""
    from hwlib.models.binary import MRAMLinear

    torch.manual_seed(0)
    layer = MRAMLinear(64, 8)
    a = torch.randint(0, 2, (32, 64)).float() * 2 - 1
    c = torch.randn(32, 8)
    hw = mram.MRAMArray(mram.MRAMCell.from_variation(0.05, 10.0))
    (layer(a) * c).sum().backward()
    ideal_grad, ideal_out = layer.weight.grad.clone(), layer(a).detach()
    layer.weight.grad = None
    with hw.fresh(torch.Generator().manual_seed(1)).attached(layer):
        out = layer(a)
        (out * c).sum().backward()
    assert not torch.allclose(out, ideal_out)  # the chip changes the forward value
    assert torch.isfinite(layer.weight.grad).all()
    assert torch.allclose(layer.weight.grad, ideal_grad, atol=1e-5)


def test_sampled_regime_is_deterministic_from_its_seed():
    from hwlib.methods.training import FreshChip, Step
    from hwlib.models.binary import BinaryMLP, clip_latent_weights

    hw = mram.MRAMArray(mram.MRAMCell.from_variation(0.05, 5.0))
    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))

    def train(seed):
        torch.manual_seed(0)
        model = BinaryMLP(784, (32, 32), 10)
        step = Step(model, torch.optim.Adam(model.parameters(), lr=0.01), hw, FreshChip(),
                    generator=torch.Generator().manual_seed(seed), after_step=clip_latent_weights)
        losses = [float(step(x[i:i + 16], y[i:i + 16])) for i in range(0, 64, 16)]
        assert all(np.isfinite(losses))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(train(3), train(3))
    assert not torch.equal(train(3), train(4))


def test_model_checks_name_the_parameter():
    cell = mram.MRAMCell.from_variation(0.05, 1.0)
    with pytest.raises(ParameterError, match="u_ideal.*M=8"):
        mram.preactivation_std(torch.tensor([9.0]), 8, cell)
    with pytest.raises(ParameterError, match="u_ideal"):
        mram.preactivation_shift(np.array([-20.0]), 16, cell)
    with pytest.raises(ParameterError, match="sigma=0"):
        mram.g_density(np.array([1e-4]), 3000.0, 0.0)
    assert mram.g_density(np.array([0.0]), 3000.0, 30.0)[0] == 0.0
    with pytest.raises(ParameterError, match="instance_model"):
        mram.FreshReadout(cell, None, "lognormal")


def test_exact_conductance_moments_against_monte_carlo():
    """g_moments_exact (quadrature) against a large numpy sample, floor active and not."""
    rng = np.random.default_rng(3)
    for eps in (0.05, 0.3, 0.5):
        r = np.maximum(rng.normal(3000.0, eps * 3000.0, 2_000_000), 300.0)
        g = 1 / r
        m, v = mram.g_moments_exact(3000.0, eps * 3000.0, 0.1)
        assert abs(g.mean() - m) <= 4 * g.std() / np.sqrt(len(g))
        assert v == pytest.approx(g.var(), rel=0.01)
