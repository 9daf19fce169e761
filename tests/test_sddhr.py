"""S-DDHR training pieces: regimes, gradients through E[Z], chips, the paper's VGG BNN."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwlib.chapters import sddhr
from hwlib.errors import ParameterError
from hwlib.hardware import mram
from hwlib.hardware.base import attach
from hwlib.methods.evaluation import accuracy_on_chips
from hwlib.methods.training import Step, fit
from hwlib.models.binary import BinaryMLP, MRAMConv2d, MRAMLinear, VGGBinaryNet, binarize

CELL = mram.MRAMCell.from_variation(0.03, 10.0)
HW = mram.MRAMArray(CELL, "conductance")


def _train_chip(regime, seed=3):
    """The chip a regime trains on (its method's chips for one step)."""
    return sddhr.method_for(regime, seed).chips(HW, None)[0]


def _data(n=64, side=28, ch=1, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, ch, side, side, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_sign_ste():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [-1, -1, 1, 1, 1]
    y.sum().backward()
    assert x.grad.tolist() == [0, 1, 1, 1, 0]


@pytest.mark.parametrize("regime", sddhr.REGIMES)
def test_gradients_flow_through_every_regime(regime):
    x, y = _data()
    model = BinaryMLP(784, (32, 32), 10)
    with attach(model, _train_chip(regime)):
        F.cross_entropy(model(x), y).backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "weight" in n)


def test_instance_gradient_is_the_ideal_gradient():
    """Algorithm 1: forward through z_i, backward through E[Z] (the ideal layer)."""
    torch.manual_seed(0)
    a = torch.randint(0, 2, (8, 40)).float() * 2 - 1
    a.requires_grad_(True)
    layer = MRAMLinear(40, 6)
    mram.set_readout(layer, mram.InstanceReadout(CELL, [2]))
    u = layer(a)
    w = binarize(layer.weight)
    arr = layer.readout.array(layer, 40, 6)
    assert torch.allclose(u, arr.preactivation(a.detach(), w.detach().t()), atol=1e-4)
    g = torch.randn_like(u)
    (u * g).sum().backward()
    a_ref = a.detach().clone().requires_grad_(True)
    lin = MRAMLinear(40, 6)
    lin.weight.data.copy_(layer.weight.data)
    (lin(a_ref) * g).sum().backward()
    assert torch.allclose(a.grad, a_ref.grad) and torch.allclose(layer.weight.grad,
                                                                 lin.weight.grad)


def test_ps_ddhr_mean_is_the_ideal_mapping():
    torch.manual_seed(1)
    a = torch.randint(0, 2, (4, 64)).float() * 2 - 1
    layer = MRAMLinear(64, 3)
    mram.set_readout(layer, mram.ParametricReadout(CELL))
    with torch.no_grad():
        draws = torch.stack([layer(a) for _ in range(4000)])
        ideal = F.linear(a, binarize(layer.weight))
    std = mram.preactivation_std(ideal, 64, CELL)
    assert torch.allclose(draws.mean(0), ideal, atol=float(5 * std.max() / 4000**0.5))
    assert torch.allclose(draws.std(0) / std, torch.ones_like(std), atol=0.08)
    mram.set_readout(layer, mram.ApproximateReadout(CELL))
    with torch.no_grad():
        spread = torch.stack([layer(a) for _ in range(4000)]).std(0)
    assert torch.allclose(spread, torch.full_like(spread, mram.as_ddhr_std(64, CELL)), rtol=0.08)


def test_stacked_instance_evaluation_equals_one_by_one():
    x, y = _data(200)
    model = BinaryMLP(784, (48, 48), 10).eval()
    seeds = [1, 2, 3]
    stacked = accuracy_on_chips(model, HW, x, y, seeds, batch_size=64)
    model.stackable = False
    looped = accuracy_on_chips(model, HW, x, y, seeds, batch_size=64)
    np.testing.assert_allclose(stacked, looped)


def test_padding_rows_add_nothing():
    inst = mram.ArrayInstance.sample(6, 2, CELL, seed=4, dtype=torch.float64)
    w = torch.tensor([[1.0, -1], [1, 1], [-1, 1], [1, -1], [-1, -1], [1, 1]], dtype=torch.float64)
    a = torch.tensor([[1.0, -1, 0, 0, 1, 0]], dtype=torch.float64)
    rows = [0, 1, 4]
    sub = mram.ArrayInstance(inst.g_p[:, rows], inst.g_ap[:, rows], CELL)
    assert torch.allclose(inst.preactivation(a, w), sub.preactivation(a[:, rows], w[rows]))


@pytest.mark.parametrize("regime", ["ideal", "ddhr", "ps_ddhr"])
def test_vgg_bnn_full_size_one_step_on_cifar_shaped_data(regime):
    torch.manual_seed(0)
    model = VGGBinaryNet(10, width=1.0)
    convs = [m for m in model.modules() if isinstance(m, MRAMConv2d)]
    fcs = [m for m in model.modules() if isinstance(m, MRAMLinear)]
    assert len(convs) == 6 and len(fcs) == 3 and [c.weight.shape[0] for c in convs] == [
        128, 128, 256, 256, 512, 512] and fcs[0].weight.shape == (1024, 8192)
    x, y = _data(4, side=32, ch=3)
    step = Step(model, torch.optim.Adam(model.parameters(), 1e-3), HW,
                sddhr.method_for(regime, 1))
    fit(step, x, y, epochs=1, batch_size=4)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert accuracy_on_chips(model, HW, x, y, [1, 2], batch_size=4).shape == (2,)


def test_study_configs_and_bad_regime():
    cfgs = sddhr.study_configs("mnist", [1, 10], 5, epochs=1, torch_device="cpu")
    by = {}
    for c in cfgs:
        by.setdefault(c["regime"], []).append(c)
    assert len(by["ideal"]) == 1 and by["ideal"][0]["eval_scales"] == [0.0, 1.0, 10.0]
    assert len(by["ddhr"]) == 10 and all(c["eval_seeds"] == [c["train_seed"]] for c in by["ddhr"])
    assert all(c["train_seed"] not in c["eval_seeds"] for c in by["fixed"])
    with pytest.raises(ParameterError, match="regime 'magic'"):
        sddhr.study_configs("mnist", [1], 5, regimes=["magic"], epochs=1)


def test_train_run_end_to_end_on_mnist():
    from hwlib.data import DATASETS, data_root

    if not (data_root() / DATASETS["mnist"].folder / "train-images-idx3-ubyte").exists():
        pytest.skip("MNIST not under the data root (set HWLIB_DATA)")
    cfg = dict(dataset="mnist", regime="ps_ddhr", train_scale=10.0, train_seed=0,
               eval_scales=[0.0, 10.0], eval_seeds=[1, 2], epochs=2, n_train=2048, n_test=256,
               n_test_epoch=128, batch_size=64, lr=0.01, network="mlp", hidden_widths=[32, 32],
               width=1.0, sigma_rel_nominal=0.03, mu_p_ohm=3000.0, tmr=1.0, r_min_rel=0.1,
               instance_model="conductance", precision="fp32", channels_last=False,
               torch_device="cpu", seed=0)
    out = sddhr.train_run(cfg)
    assert out["history"].shape == (2, 2, 2) and out["final"].shape == (2, 2)
    assert out["final"][0, 0] == out["final"][0, 1]  # scale 0: variability-free, same for all
    assert 0 <= out["final"].min() and out["final"].max() <= 1 and out["final"][0, 0] > 0.2
    again = sddhr.train_run(cfg)
    np.testing.assert_array_equal(out["final"], again["final"])  # deterministic on the CPU
