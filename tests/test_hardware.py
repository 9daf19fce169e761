"""One hardware interface: every family behind it, through the public API; every training
method on every family where it is defined; presets against the papers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

import hwlib
from hwlib.errors import ParameterError
from hwlib.hardware import memristor, mram
from hwlib.models.binary import BinaryMLP, VGGBinaryNet
from hwlib.models.mlp import MLP

FAMILIES = {
    "mram": lambda: hwlib.presets.sddhr_mram(scale=10),
    "mram_conductance": lambda: hwlib.presets.sddhr_mram(scale=10, instance_model="conductance"),
    "sram_bm": lambda: hwlib.presets.sram_65nm(p=0.01),
    "sram_erasure": lambda: hwlib.presets.sram_65nm(p=0.02, model="erasure"),
    "crossbar": lambda: hwlib.presets.hasgd_crossbar(sigma=0.1, shift=0.01),
    "memristive": lambda: hwlib.presets.babu_rajendran(sigma_over_b=0.3),
}
BINARY = {"mram", "mram_conductance"}


def _torchvision_model():
    """A torchvision-style model: a ResNet-18 for 10 classes, small input."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    return model.eval(), torch.randn(2, 3, 32, 32)


def _binary_model():
    torch.manual_seed(0)
    return VGGBinaryNet(10, width=0.125).eval(), torch.rand(2, 3, 32, 32)


def _model_for(family):
    return _binary_model() if family in BINARY else _torchvision_model()


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_attach_detach_restores_exactly(family):
    model, x = _model_for(family)
    hw = FAMILIES[family]()
    before, state = model(x), _state(model)
    with torch.no_grad(), hwlib.attach(model, hw, seed=3) as on_chip:
        a = on_chip(x)
        b = model(x)  # the same chip for every input while attached
    with torch.no_grad(), hwlib.attach(model, hw, seed=3):
        again = model(x)
    with torch.no_grad(), hwlib.attach(model, hw, seed=4):
        other = model(x)
    assert torch.equal(a, b) and torch.equal(a, again)  # reproducible from the seed
    assert not torch.equal(a, before) and not torch.equal(a, other)
    after = _state(model)
    assert all(torch.equal(state[k], after[k]) for k in state)  # restored exactly
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert [h for m in model.modules() for h in m._forward_hooks.values()] == []


def test_expected_chip_and_moments():
    model, x = _binary_model()
    hw = FAMILIES["mram"]()
    with torch.no_grad():
        clean = model(x)
        with hwlib.attach(model, hw):  # no seed: the expected chip
            assert torch.equal(model(x), clean)
    hw.moments()  # MRAM arrays have analytical moments
    with pytest.raises(ParameterError, match="no analytical output moments"):
        FAMILIES["crossbar"]().moments()
    with pytest.raises(ParameterError, match="no XNOR array layers"):
        with hwlib.attach(_torchvision_model()[0], hw, seed=1):
            pass


METHODS = {
    "standard": hwlib.Standard(),
    "one_chip": hwlib.OneChip(5),
    "fresh_chip": hwlib.FreshChip(),
    "parametric": hwlib.Parametric(),
    "approximate": hwlib.Parametric(approximate=True),
    "hasgd_1": hwlib.HASGD(1),
    "hasgd_3": hwlib.HASGD(3),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_method_on_every_family(family, method):
    hw = FAMILIES[family]()
    m = METHODS[method]
    if isinstance(m, hwlib.Parametric) and family not in BINARY:
        with pytest.raises(ParameterError, match="no analytical output moments"):
            m.chips(hw, None)
        return
    torch.manual_seed(0)
    model = BinaryMLP(784, (32, 32), 10) if family in BINARY else MLP((1, 28, 28), (32, 32), 10)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    step = hwlib.Step(model, torch.optim.SGD(model.parameters(), lr=0.05), hw, m,
                      generator=torch.Generator().manual_seed(1))
    before = _state(model)
    losses = [float(step(x[i:i + 16], y[i:i + 16])) for i in range(0, 64, 16)]
    assert all(math.isfinite(v) for v in losses)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in _state(model).items())


def test_hasgd_gradient_is_at_the_perturbed_point_and_mram_through_the_expectation():
    """The families' gradient rules: crossbars at the perturbed weights (Algorithm 1 of
    HA-SGD), MRAM arrays through the expected chip (Algorithm 1 of S-DDHR)."""
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    hw = hwlib.presets.hasgd_crossbar(sigma=0.2)
    chip = hw.sample(7)
    with chip.attached(lin):
        perturbed = [p.detach().clone() for p in lin.parameters()]
        F.cross_entropy(lin(x), y).backward()
    got = [p.grad.clone() for p in lin.parameters()]
    ref = torch.nn.Sequential(torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), perturbed):
            p.copy_(q)
    F.cross_entropy(ref(x), y).backward()
    for g, p in zip(got, ref.parameters()):
        torch.testing.assert_close(g, p.grad)

    bnn = BinaryMLP(784, (16, 16), 10)
    xb, yb = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    with hwlib.attach(bnn, hwlib.presets.sddhr_mram(10), seed=2):
        F.cross_entropy(bnn(xb), yb).backward()
    assert all(p.grad is not None for p in bnn.parameters())


def test_chips_are_cached_by_seed_and_drawn_on_the_models_device():
    hw = FAMILIES["crossbar"]()
    assert hw.sample(3) is hw.sample(3) and hw.sample(3) is not hw.sample(4)
    model, x = _torchvision_model()
    with torch.no_grad(), hwlib.attach(model, hw, seed=1):
        pass
    bars = hw.crossbars(model)
    assert bars._noise.device == next(model.parameters()).device


def test_memristive_gradient_is_at_the_programmed_weights():
    """Device pairs follow the crossbars' rule: the gradient at the programmed weights."""
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    with hwlib.attach(lin, hwlib.presets.babu_rajendran(0.5), seed=7):
        programmed = [p.detach().clone() for p in lin.parameters()]
        F.cross_entropy(lin(x), y).backward()
    ref = torch.nn.Sequential(torch.nn.Linear(8, 3))
    with torch.no_grad():
        for p, q in zip(ref.parameters(), programmed):
            p.copy_(q)
    F.cross_entropy(ref(x), y).backward()
    for p, q in zip(lin.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert not torch.equal(programmed[0], lin[0].weight.detach())  # the weight was programmed
    assert torch.equal(programmed[1], lin[0].bias.detach())  # biases stay digital


def _pair_layer(targets, rows=500):
    """A bias-free Linear layer whose weights are the level counts ``targets``, each in
    ``rows`` rows, with alternating signs (B_w = 1 with w_max = top)."""
    lin = torch.nn.Linear(len(targets), rows, bias=False)
    sign = torch.where(torch.arange(rows) % 2 == 0, 1.0, -1.0)[:, None]
    with torch.no_grad():
        lin.weight.copy_(sign * torch.tensor(targets, dtype=torch.float32)[None, :])
    return lin


@pytest.mark.parametrize("sigma", [0.3, 1.0])
def test_memristive_programmed_weights_follow_the_write_model(sigma):
    """Monte Carlo over chips of the programmed levels against the closed form of one
    programming event from reset (a normal censored at 0 and at the top level), clipping at
    both bounds included; the expected chip is the nearest nominal level."""
    targets = [1, 2, 5, 15, 30, 31]
    device = hwlib.MemristorConfig(sigma_over_b=sigma)
    top = device.top
    hw = hwlib.MemristivePairs(device, w_max=float(top))            # B_w = 1: weight = level
    lin = _pair_layer(targets)
    sign = torch.sign(lin.weight.detach())
    levels = []
    with torch.no_grad():
        for seed in range(6):
            with hwlib.attach(lin, hw, seed=seed):
                k = lin.weight.detach() * sign                   # the level, sign removed
            levels.append(k)
    k = torch.cat(levels).double()
    assert float(k.min()) >= 0 and float(k.max()) <= top          # within [G_min, G_max]
    for j, n in enumerate(targets):
        mean, std = memristor.programmed_level_moments(n, sigma, top)
        col = k[:, j]
        se = max(std, 1e-3) / math.sqrt(len(col))
        assert abs(float(col.mean()) - mean) < 4 * se, (n, float(col.mean()), mean)
        assert abs(float(col.std()) - std) < 5 * std / math.sqrt(2 * len(col)) + 1e-3, n
    inner = memristor.programmed_level_moments(15, sigma, top)
    assert inner[0] == pytest.approx(15, abs=1e-9) and inner[1] == pytest.approx(sigma, rel=1e-6)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.4, -2.6, 0.4, 40.0, -0.6, 7.0]]).repeat(500, 1))
        with hwlib.attach(lin, hw):                              # the expected chip
            assert torch.equal(lin.weight[0], torch.tensor([2.0, -3.0, 0.0, 31.0, -1.0, 7.0]))


def test_memristive_chips_are_cached_and_drawn_on_the_models_device():
    hw = hwlib.presets.babu_rajendran(0.1)
    model, x = _torchvision_model()
    chip = hw.sample(2)
    assert chip is hw.sample(2)
    with torch.no_grad(), hwlib.attach(model, hw, seed=2):
        first = model(x)
    drawn = dict(chip._z)
    with torch.no_grad(), hwlib.attach(model, hw, seed=2):
        assert torch.equal(model(x), first)
    assert drawn and all(chip._z[k] is v for k, v in drawn.items())  # drawn once, kept
    dev = next(model.parameters()).device
    assert all(z.device == dev for z in chip._z.values())
    assert len(drawn) == len(memristor.pair_layers(model))


def test_presets_match_the_papers():
    cell = hwlib.presets.sddhr_mram(scale=1).cell
    assert (cell.mu_p, cell.mu_ap) == (3000.0, 6000.0)  # mu_P 3 kOhm, TMR 100 %
    assert cell.sigma_p / cell.mu_p == pytest.approx(0.05)  # published MTJ spreads, 5 %
    assert cell.sigma_ap / cell.mu_ap == pytest.approx(0.05)
    assert hwlib.presets.sddhr_mram(scale=10).cell.sigma_p / cell.mu_p == pytest.approx(0.5)
    assert hwlib.presets.sram_energy_model().a == 12.8  # eq. (1), 65 nm
    sram = hwlib.presets.sram_65nm(p=0.001)
    assert (sram.fault_config.model, sram.fault_config.rate, sram.fault_config.targets) == (
        "bm", 0.001, "both")
    xb = hwlib.presets.hasgd_crossbar()
    assert (xb.noise.sigma, xb.noise.shift, xb.fold) == (0.05, 0.0, "range")  # "5 % noise"
    assert hwlib.presets.hasgd_crossbar(adc_bits=4).adc.bits == 4
    pairs = hwlib.presets.babu_rajendran()
    assert (pairs.device.on_off_ratio, pairs.device.levels, pairs.device.sigma_over_b) == (
        15.0, 32, 0.1)  # on/off 15, 32 levels, the paper's best devices at 0.1 B
    assert pairs.device.spacing == pytest.approx(14 / 31)  # B = 14 G_min / 31
    assert pairs.family == "memristive" and pairs.w_max is None


def test_bad_hardware_input():
    with pytest.raises(ParameterError, match="seed=-1: must be an int >= 0"):
        FAMILIES["crossbar"]().sample(-1)
    with pytest.raises(ParameterError, match="instance_model='exact'"):
        mram.MRAMArray(mram.MRAMCell(), "exact")
    with pytest.raises(ParameterError, match="must be a hwlib Hardware model"):
        with hwlib.attach(torch.nn.Linear(2, 2), "crossbar"):
            pass
    with pytest.raises(ParameterError, match="w_max=-1.0: must be a number > 0"):
        hwlib.presets.babu_rajendran(0.1, w_max=-1.0)
    with pytest.raises(ParameterError, match="w_max: 2 values for 1 layers"):
        with hwlib.attach(torch.nn.Linear(2, 2), hwlib.presets.babu_rajendran(0.1, (1.0, 2.0))):
            pass
    with pytest.raises(ParameterError, match="method="):
        hwlib.Step(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters(),
                                                          lr=0.1), method="hasgd")
