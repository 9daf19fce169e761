"""MRAM bit cells: closed forms against numerical integration and Monte Carlo."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from hwlib.chapters import sddhr as chapter
from hwlib.hardware import mram
from hwlib.errors import ParameterError

MU = 3000.0


def _exact_moments(mu, sigma, r_min_rel):
    """E[G], Var[G] of G = 1/max(R, r_min mu) by quadrature (independent of the code)."""
    lo = r_min_rel * mu
    pdf = stats.norm(mu, sigma).pdf
    p_lo = stats.norm(mu, sigma).cdf(lo)
    a, b = max(lo, mu - 12 * sigma), mu + 12 * sigma
    m1 = integrate.quad(lambda r: pdf(r) / r, a, b, epsabs=0, epsrel=1e-12)[0] + p_lo / lo
    m2 = integrate.quad(lambda r: pdf(r) / r**2, a, b, epsabs=0, epsrel=1e-12)[0] + p_lo / lo**2
    return m1, m2 - m1**2


@pytest.mark.parametrize("eps", [0.005, 0.01, 0.03])
def test_second_order_is_the_leading_correction(eps):
    sigma = eps * MU
    m, v = _exact_moments(MU, sigma, 0.1)
    m1, v1 = mram.g_moments_first_order(MU, sigma)
    m2, v2 = mram.g_moments_second_order(MU, sigma)
    assert m / m1 - 1 == pytest.approx(eps**2, rel=0.05 + 20 * eps**2)
    assert v / v1 - 1 == pytest.approx(8 * eps**2, rel=0.05 + 60 * eps**2)
    assert abs(m / m2 - 1) < 4 * eps**4 and abs(v / v2 - 1) < 80 * eps**4


@pytest.mark.parametrize("scale", [1, 5, 10])
def test_monte_carlo_matches_quadrature(scale):
    cell = mram.MRAMCell.from_variation(0.03, scale)
    for state in ("P", "AP"):
        mu, sigma = cell.state(state)
        r = chapter.conductance_mc({"mu": mu, "sigma": sigma, "r_min_rel": 0.1,
                                 "n_samples": 400_000, "seed": 11})
        m, v = _exact_moments(mu, sigma, 0.1)
        assert abs(r["mean"] - m) < 4 * r["mean_se"]
        assert abs(r["var"] - v) < 4 * r["var_se"]
        assert r["clipped_fraction"] == pytest.approx(
            mram.prob_below_floor(mu, sigma, 0.1), abs=5 * math.sqrt(1e-3 / 400_000) + 1e-6)


def test_exact_density_integrates_and_matches_histogram():
    mu, sigma = MU, 0.2 * MU
    total = integrate.quad(lambda g: mram.g_density(g, mu, sigma), 1e-9, 50 / mu, limit=200)[0]
    assert total == pytest.approx(1.0, abs=1e-6)  # P(R<=0) ~ 3e-7 is the only missing mass
    r = chapter.conductance_mc({"mu": mu, "sigma": sigma, "r_min_rel": 1e-3,
                             "n_samples": 1_000_000, "seed": 2, "bins": 60})
    edges = r["hist_edges"]
    expected = np.array([integrate.quad(lambda g: mram.g_density(g, mu, sigma), a, b)[0]
                         for a, b in zip(edges[:-1], edges[1:])])
    counts = r["hist_density"] * np.diff(edges) * 1_000_000
    ok = expected * 1_000_000 > 50
    chi2 = np.sum((counts[ok] - expected[ok] * 1e6) ** 2 / (expected[ok] * 1e6))
    assert chi2 < stats.chi2(ok.sum()).ppf(0.999)


def test_resistance_samples_reproducible_and_floored():
    a = mram.sample_resistance(MU, 0.5 * MU, 10_000, torch.Generator().manual_seed(4))
    b = mram.sample_resistance(MU, 0.5 * MU, 10_000, torch.Generator().manual_seed(4))
    c = mram.sample_resistance(MU, 0.5 * MU, 10_000, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0.1 * MU


@pytest.mark.parametrize("kwargs,needle", [
    ({"sigma_rel": -0.1}, "sigma_rel=-0.1"),
    ({"scale": -1}, "scale=-1"),
    ({"tmr": 0}, "tmr=0"),
    ({"mu_p": -5}, "mu_p=-5"),
    ({"r_min_rel": 0}, "r_min_rel=0"),
])
def test_bad_cell_parameters(kwargs, needle):
    with pytest.raises(ParameterError, match=needle):
        mram.MRAMCell.from_variation(**kwargs)


def test_tmr_sets_the_ap_mean():
    cell = mram.MRAMCell.from_variation(0.03, 2, mu_p=2000, tmr=1.5)
    assert cell.mu_ap == pytest.approx(5000) and cell.sigma_ap / cell.mu_ap == pytest.approx(0.06)
    with pytest.raises(ParameterError, match="state='X'"):
        cell.state("X")
