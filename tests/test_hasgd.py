"""HA-SGD chapter: crossbar folding, perturbation statistics, ADCs, Algorithm 1, Hutchinson's
estimator, the toy loss, WideResNet-28-10, the paper path on synthetic CIFAR-100, bad input."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwlib.chapters import hasgd as X
from hwlib.data import random_crop_flip
from hwlib.errors import ParameterError
from hwlib.hardware import crossbar as analog
from hwlib.hardware.crossbar import AnalogCrossbar
from hwlib.methods import curvature, training
from hwlib.methods.evaluation import accuracy_on_chips
from hwlib.models.wideresnet import WideResNet


def hasgd_step(model, optimizer, noise, samples=1, fold="range", seed=0):
    """Algorithm 1 through the public pieces: L fresh crossbar chips per step."""
    device = next(model.parameters()).device
    return training.Step(model, optimizer, AnalogCrossbar(noise, fold),
                         training.HASGD(samples),
                         generator=torch.Generator(device=device).manual_seed(seed))


def accuracy_on_instances(model, x, y, noise, seeds, fold="range", adc=None):
    return accuracy_on_chips(model, AnalogCrossbar(noise, fold, adc), x, y, seeds, 1000)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 5 * 5, 4))


# --- the folded crossbar ---------------------------------------------------------------------


@pytest.mark.parametrize("fold", analog.FOLDS)
@pytest.mark.parametrize("kind", ["linear", "conv", "conv_strided", "nobias", "zerobias"])
def test_folded_layer_equals_unfolded(fold, kind):
    torch.manual_seed(1)
    if kind == "linear":
        layer, x = nn.Linear(7, 5), torch.randn(6, 7)
    elif kind == "conv":
        layer, x = nn.Conv2d(3, 4, 3, padding=1), torch.randn(2, 3, 6, 6)
    elif kind == "conv_strided":
        layer, x = nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 7, 7)
    elif kind == "nobias":
        layer, x = nn.Conv2d(3, 4, 1, bias=False), torch.randn(2, 3, 5, 5)
    else:
        layer, x = nn.Linear(7, 5), torch.randn(6, 7)
        nn.init.zeros_(layer.bias)
    with torch.no_grad():
        layer.weight.mul_(3)  # weights and bias on different ranges
        wt, s = analog.folded_matrix(layer, fold)
        assert wt.shape == (layer.weight.shape[0], layer.weight[0].numel() + 1)
        torch.testing.assert_close(analog.folded_forward(layer, x, fold), layer(x),
                                   rtol=1e-5, atol=1e-5)
    if kind in ("linear", "conv") and fold == "range":  # Fig. 5: b/s spans the range of W
        assert math.isclose(float(wt[:, -1].abs().max()), float(wt[:, :-1].abs().max()),
                            rel_tol=1e-6)
    if fold == "unit" and layer.bias is not None:
        assert s == 1.0


def test_range_matched_s_minimizes_the_dynamic_range():
    layer = nn.Linear(10, 3)
    with torch.no_grad():
        layer.weight.fill_(0.1)
        layer.bias.copy_(torch.tensor([0.5, -2.0, 0.3]))
    s, r = analog.folding_scale(layer, "range")
    s1, r1 = analog.folding_scale(layer, "unit")
    assert math.isclose(float(s), 20.0, rel_tol=1e-6) and math.isclose(float(r), 0.1,
                                                                        rel_tol=1e-6)
    assert float(s1) == 1.0 and math.isclose(float(r1), 2.0)


# --- perturbation statistics -----------------------------------------------------------------


@pytest.mark.parametrize("fold", analog.FOLDS)
@pytest.mark.parametrize("sigma,shift", [(0.05, 0.0), (0.1, 0.02), (0.0, -0.03), (0.3, 0.1)])
def test_perturbation_statistics_match_sigma_and_shift(sigma, shift, fold):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Conv2d(1, 64, 5))
    with torch.no_grad():
        model[0].bias.mul_(30)  # bias range above the weights' (s = 1 differs from range s)
    bars = analog.Crossbars(model, fold)
    before = [p.detach().clone() for _, p, _ in bars.params]
    ranges = {id(m): [float(t) for t in analog.folding_scale(m, fold)] for m in bars.layers}
    noise = analog.GaussianPerturbation(sigma, shift, "single")  # an offset per entry
    bars.perturb(noise, torch.Generator().manual_seed(3))
    for (layer, p, kind), p0 in zip(bars.params, before):
        s, rng = ranges[id(layer)]  # the range mapped from the unperturbed weights
        scale = rng * (1.0 if kind == "weight" else s)
        nu = (p.detach() - p0).flatten().double() / scale  # nu_ij in units of the range
        n = nu.numel()
        assert abs(float(nu.mean()) - shift) <= 4 * max(sigma, 1e-12) / math.sqrt(n) + 1e-6
        if sigma > 0 and n > 1000:
            se = sigma / math.sqrt(2 * n)
            assert abs(float(nu.std()) - sigma) <= 4 * se, (kind, float(nu.std()))
        elif sigma == 0:
            assert float(nu.std()) < 1e-6
    bars.restore()
    for (_, p, _), p0 in zip(bars.params, before):
        assert torch.equal(p.detach(), p0)  # restored exactly


@pytest.mark.parametrize("sigma,shift", [(0.0, 0.04), (0.1, 0.02), (0.1, -0.03)])
def test_a_drift_on_differential_pairs_is_a_gain(sigma, shift):
    """Fig. 2's pair W~ = G+ - G-: a drift common to both devices cancels; a drift in
    proportion to each device's conductance scales the stored number, (1 + shift)(W~ + nu)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 10))
    bars = analog.Crossbars(model)
    before = [p.detach().clone() for _, p, _ in bars.params]
    ranges = {id(m): [float(t) for t in analog.folding_scale(m)] for m in bars.layers}
    bars.perturb(analog.GaussianPerturbation(sigma, shift), torch.Generator().manual_seed(3))
    for (layer, p, kind), p0 in zip(bars.params, before):
        s, rng = ranges[id(layer)]  # mapped from the unperturbed weights
        scale = rng * (1.0 if kind == "weight" else s)
        nu = (p.detach() / (1 + shift) - p0).flatten().double() / scale
        if sigma == 0:
            torch.testing.assert_close(p.detach(), p0 * (1 + shift))
        elif nu.numel() > 1000:
            assert abs(float(nu.mean())) <= 4 * sigma / math.sqrt(nu.numel())
            assert abs(float(nu.std()) - sigma) <= 4 * sigma / math.sqrt(2 * nu.numel())
    bars.restore()
    for (_, p, _), p0 in zip(bars.params, before):
        assert torch.equal(p.detach(), p0)
    # a common additive drift of both devices cancels in G+ - G-: the gain model has no
    # offset, so a network's output on pairs moves only through the gain
    with pytest.raises(ParameterError, match="shift_model"):
        analog.GaussianPerturbation(0.1, 0.02, "triple")
    with pytest.raises(ParameterError, match="> -1"):
        analog.GaussianPerturbation(0.1, -1.0)


@pytest.mark.parametrize("mode", training.BATCH_NORM_MODES)
def test_batch_norm_in_perturbed_passes(mode):
    """``clean``: the perturbed passes normalize with the clean network's batch statistics and
    the running statistics move once per step, from the clean pass; ``perturbed``: batch
    statistics of each perturbed pass, the running statistics moved L times under noise."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.randint(0, 4, (64,))

    def net():
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4))

    model = net()
    step = training.Step(model, torch.optim.SGD(model.parameters(), lr=0.0),
                         AnalogCrossbar(analog.GaussianPerturbation(0.5)),
                         training.HASGD(3, batch_norm=mode),
                         generator=torch.Generator().manual_seed(2))
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append((m.training, o.detach())))
    step(x, y)
    assert model[1].training  # the mode is restored
    ref = net()
    with torch.no_grad():
        ref(x)  # one clean pass in training mode: the clean running statistics
    clean_mean, clean_var = ref[1].running_mean, ref[1].running_var
    same = torch.allclose(model[1].running_mean, clean_mean) and torch.allclose(
        model[1].running_var, clean_var)
    assert same == (mode == "clean")
    if mode == "clean":
        assert [t for t, _ in seen] == [True, False, False, False]  # clean pass, then L = 3
        # each perturbed pass normalized with the clean batch statistics: its output's batch
        # mean is not zero (it would be, in training mode, with the perturbed statistics)
        assert all(float(o.mean(0).abs().max()) > 1e-3 for _, o in seen[1:])
    else:
        assert [t for t, _ in seen] == [True, True, True]
        assert all(float(o.mean(0).abs().max()) < 1e-4 for _, o in seen)
    with pytest.raises(ParameterError, match="batch_norm"):
        training.HASGD(1, batch_norm="frozen")


def test_instances_are_reproducible_and_distinct():
    model = _net()
    x, y = torch.randn(64, 2, 5, 5), torch.randint(0, 4, (64,))
    bars = analog.Crossbars(model)
    noise = analog.GaussianPerturbation(0.2)
    outs = []
    for seed in (7, 7, 8):
        with bars.instance(noise, seed=seed), torch.no_grad():
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])
    a = accuracy_on_instances(model, x, y, noise, [1, 2, 3])
    b = accuracy_on_instances(model, x, y, noise, [1, 2, 3])
    np.testing.assert_array_equal(a, b)
    clean = accuracy_on_instances(model, x, y, analog.IDEAL, [1, 2])
    assert clean[0] == clean[1]


# --- ADCs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 6, 8])
def test_adc_has_2_to_the_b_levels_over_its_calibrated_range(bits):
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    calib = torch.randn(500, 4)
    adc = analog.ADC(bits).calibrate(nn.Sequential(layer), calib)
    lo, hi = adc.ranges[0]
    with torch.no_grad():
        out = layer(calib)
    assert math.isclose(lo, float(out.min()), rel_tol=1e-6)
    assert math.isclose(hi, float(out.max()), rel_tol=1e-6)
    assert lo < 0 < hi
    u = torch.linspace(lo - 1, hi + 1, 100_000, dtype=torch.float64)
    q = adc.quantize(u, lo, hi)
    levels = torch.unique(q)
    step = (hi - lo) / (2 ** bits - 1)
    assert len(levels) == 2 ** bits == adc.levels
    assert (levels == 0).any()  # zero is a level (a zero output stays exactly zero)
    assert abs(float(levels[0]) - lo) <= step / 2 + 1e-9  # the calibrated range, moved by
    assert abs(float(levels[-1]) - hi) <= step / 2 + 1e-9  # less than half a step
    torch.testing.assert_close(levels.diff(), torch.full((len(levels) - 1,), step,
                                                         dtype=torch.float64))
    inside = (u >= levels[0]) & (u <= levels[-1])
    assert float((q - u)[inside].abs().max()) <= step / 2 + 1e-9
    assert float(q.min()) == float(levels[0]) and float(q.max()) == float(levels[-1])


def test_adc_quantizes_every_crossbar_output_in_a_model():
    model = _net()
    x = torch.randn(32, 2, 5, 5)
    adc = analog.ADC(2).calibrate(model, x)
    seen = []
    with adc.attached(model), torch.no_grad():
        hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(torch.unique(o).numel()))
                 for m in analog.crossbar_layers(model)]
        model(x)
    for h in hooks:
        h.remove()
    # the hooks registered after the ADC's see its quantized outputs: at most 4 values each
    assert len(seen) == 2 and max(seen) <= 4
    with pytest.raises(ParameterError, match="not calibrated"):
        with analog.ADC(2).attached(model):
            pass


# --- HA-SGD (Algorithm 1) ----------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 3])
@pytest.mark.parametrize("shift", [0.0, 0.02])
def test_averaged_gradient_is_the_mean_of_L_separate_gradients(samples, shift):
    x, y = torch.randn(16, 2, 5, 5), torch.randint(0, 4, (16,))
    noise = analog.GaussianPerturbation(0.1, shift)
    model = _net()
    step = hasgd_step(model, torch.optim.SGD(model.parameters(), lr=0.1), noise, samples, seed=5)
    step.gradients(x, y)
    got = [p.grad.clone() for p in model.parameters()]

    ref = _net()
    bars = analog.Crossbars(ref)
    gen = torch.Generator().manual_seed(5)
    separate = []
    for _ in range(samples):
        bars.perturb(noise, gen)
        grads = torch.autograd.grad(F.cross_entropy(ref(x), y), list(ref.parameters()))
        bars.restore()
        separate.append(grads)
    for i, g in enumerate(got):
        mean = torch.stack([s[i] for s in separate]).mean(0)
        torch.testing.assert_close(g, mean, rtol=1e-5, atol=1e-7)
    # the update is applied to the unperturbed weights
    before = [p.detach().clone() for p in model.parameters()]
    step.optimizer.step()
    for p, b, g in zip(model.parameters(), before, got):
        torch.testing.assert_close(p.detach(), b - 0.1 * g)


def test_zero_noise_step_is_a_clean_step():
    x, y = torch.randn(16, 2, 5, 5), torch.randint(0, 4, (16,))
    a, b = _net(), _net()
    hasgd_step(a, torch.optim.Adam(a.parameters(), 1e-2), analog.IDEAL, 1)(x, y)
    opt = torch.optim.Adam(b.parameters(), 1e-2)
    F.cross_entropy(b(x), y).backward()
    opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


# --- Hutchinson's estimator --------------------------------------------------------------------


def _tiny():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2)).double()
    x = torch.randn(40, 2, dtype=torch.float64)
    y = torch.randint(0, 2, (40,))
    return model, x, y


def _exact_hessian(model, x, y):
    params = list(model.parameters())
    shapes = [p.shape for p in params]
    flat = torch.cat([p.detach().flatten() for p in params])

    def loss(theta):
        out, at = {}, 0
        for (name, _), shape in zip(model.named_parameters(), shapes):
            n = int(np.prod(shape))
            out[name] = theta[at:at + n].view(shape)
            at += n
        return F.cross_entropy(torch.func.functional_call(model, out, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


def test_hutchinson_matches_the_exact_trace():
    model, x, y = _tiny()
    H = _exact_hessian(model, x, y)
    params = list(model.parameters())
    n = sum(p.numel() for p in params)
    # every one of the 2^n sign vectors: the estimator's mean is exactly tr(H)
    vectors = []
    for signs in itertools.product((-1.0, 1.0), repeat=n):
        v, at = [], 0
        for p in params:
            v.append(torch.tensor(signs[at:at + p.numel()], dtype=torch.float64).view_as(p))
            at += p.numel()
        vectors.append(v)
    full = curvature.hessian_trace(model, x, y, vectors=vectors, batch_size=16)
    assert math.isclose(full.value, float(H.trace()), rel_tol=1e-9)
    # random probes: within 4 standard errors of the exact trace
    est = curvature.hessian_trace(model, x, y, probes=400, seed=1)
    assert abs(est.value - float(H.trace())) <= 4 * est.stderr
    # the weighted trace tr(D H D)
    w = [torch.tensor(0.5 + i, dtype=torch.float64) for i in range(len(params))]
    d = torch.cat([torch.full((p.numel(),), float(wi)) for p, wi in zip(params, w)]).double()
    weighted = curvature.hessian_trace(model, x, y, vectors=vectors, weights=w)
    assert math.isclose(weighted.value, float((d * d * H.diagonal()).sum()), rel_tol=1e-9)


# --- the toy loss ------------------------------------------------------------------------------


def test_toy_loss_smoothing_is_the_gaussian_expectation():
    loss = X.sharp_and_flat(2, 2.0, 0.15, 1.0)
    m = torch.stack([loss.minimum_near(loss.centers[0], 0.05, 4000),
                     loss.minimum_near(loss.centers[1], 0.002, 4000)])
    assert math.isclose(float(loss(m[0])), float(loss(m[1])), rel_tol=1e-8)  # equal depth
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([0.7, -0.2], dtype=torch.float64)
    dw = 0.3 * torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    vals = loss(w + dw)
    mc, se = float(vals.mean()), float(vals.std() / math.sqrt(len(vals)))
    assert abs(mc - float(loss.smoothed(w, 0.3))) <= 4 * se
    # the closed-form trace of the Hessian against autograd
    H = torch.autograd.functional.hessian(lambda v: loss(v), m[1])
    assert math.isclose(float(H.trace()), float(loss.hessian_trace(m[1])), rel_tol=1e-6)


# --- networks ----------------------------------------------------------------------------------


def test_wide_resnet_28_10_one_step_on_cifar_shaped_data():
    start = time.perf_counter()
    torch.manual_seed(0)
    model = X.build_network("wrn", "cifar100", wrn_depth=28, wrn_width=10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 3 * 4 * 2 + 3  # stem, 12 blocks of two, 3 projection shortcuts
    assert [c.out_channels for c in convs][-2:] == [640, 640] and model.fc.out_features == 100
    assert 36.4e6 < sum(p.numel() for p in model.parameters()) < 36.6e6
    x = torch.rand(2, 3, 32, 32)
    y = torch.tensor([3, 97])
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    step = hasgd_step(model, opt, analog.GaussianPerturbation(0.05, 0.01), samples=1)
    before = model.fc.weight.detach().clone()
    loss = float(step(random_crop_flip(x, torch.Generator().manual_seed(0)), y))
    assert math.isfinite(loss) and not torch.equal(before, model.fc.weight)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    acc = accuracy_on_instances(model, x, y, analog.GaussianPerturbation(0.05), [1])
    assert acc.shape == (1,)
    assert time.perf_counter() - start < 60


def test_random_crop_flip_is_a_crop_of_the_padded_image():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    out = random_crop_flip(x, torch.Generator().manual_seed(4), pad=2)
    xp = F.pad(x, (2, 2, 2, 2))
    for i in range(2):
        found = any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1))
                    for a in range(5) for b in range(5) for c in [xp[i, :, a:a + 6, b:b + 6]])
        assert found


def test_random_crop_flip_pads_normalized_images_with_black():
    """Padding of normalized images is a black pixel (-mean/std), as torchvision's RandomCrop
    pads pixel values with 0; 0 would be the mean pixel."""
    from hwlib.data import black, normalize

    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(normalize(x, "cifar10"), torch.Generator().manual_seed(1), pad=4,
                           fill=black("cifar10"))
    zero = normalize(torch.zeros(1, 3, 1, 1), "cifar10").view(3)
    assert torch.allclose(torch.tensor(black("cifar10")), zero)
    border = out[:, :, 0, :]  # at least one padded row in most crops
    padded = torch.isclose(border, zero.view(1, 3, 1).expand_as(border)).all(1)
    assert padded.any()
    with pytest.raises(ParameterError, match="fill: 1 values for 3 channels"):
        random_crop_flip(x, torch.Generator(), fill=(0.0,))


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make,needle", [
    (lambda: analog.GaussianPerturbation(-0.1), "sigma=-0.1: must be a float >= 0"),
    (lambda: analog.GaussianPerturbation(float("nan")), "sigma=nan"),
    (lambda: analog.GaussianPerturbation(0.1, float("inf")), "shift=inf"),
    (lambda: analog.Crossbars(_net(), fold="half"), "fold='half': must be one of range, unit"),
    (lambda: analog.ADC(0), "bits=0: must be an int in [1, 16]"),
    (lambda: analog.ADC(2.5), "bits=2.5"),
    (lambda: training.HASGD(samples=0), "samples=0: must be an int >= 1"),
    (lambda: curvature.hessian_trace(_net(), torch.randn(2, 2, 5, 5), torch.tensor([0, 1]),
                                 probes=0), "probes=0"),
    (lambda: X.build_network("resnet", "mnist"), "network='resnet'"),
    (lambda: WideResNet(27), "depth=27: must be 6 n + 4"),
    (lambda: training.optimizer_for(_net(), "rmsprop", 0.1), "optimizer='rmsprop'"),
    (lambda: X.point(-0.2), "sigma=-0.2"),
    (lambda: X.point(0.1, bits=20), "bits=20"),
    (lambda: X.sharp_and_flat(2, 0.2, 0.5), "sharp_width=0.5, well_distance=0.2"),
])
def test_bad_input_one_clear_line(make, needle):
    with pytest.raises(ParameterError) as err:
        make()
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_bad_knob_fails_in_setup_before_compute():
    import hwlib

    with pytest.raises(ParameterError, match=r"train_sigmas=\[0.0, -0.1\]: must be"):
        hwlib.setup("smoke", chapter="hasgd", train_sigmas=[0.0, -0.1])
    with pytest.raises(ParameterError, match="fold='half'"):
        hwlib.setup("smoke", chapter="hasgd", fold="half")


# --- stored experiments: book path on real data, paper path on synthetic CIFAR-100 ------------


def _params(**over):
    from types import SimpleNamespace

    base = dict(dataset="fashion_mnist", network="mlp", hidden_widths=[16], wrn_depth=10,
                wrn_width=1, epochs=2, n_train=512, batch_size=64, optimizer="adam",
                lr=3e-3, weight_decay=0.0, augment=False, fold="range", batch_norm="clean",
                precision="fp32", channels_last=False, curve_images=128, curve_instances=2,
                seed=0)
    base.update(over)
    return SimpleNamespace(**base)


def test_train_and_evaluate_are_deterministic(tmp_path, monkeypatch):
    from hwlib.data import DATASETS, data_root

    if not (data_root() / DATASETS["fashion_mnist"].folder).exists():
        pytest.skip("Fashion-MNIST not under the data root (set HWLIB_DATA)")
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path))
    cfg = X.train_config(_params(), 0.1, 0.01, samples=2)
    a, b = X.train_run(cfg), X.train_run(cfg)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k]) if k != "epoch_time_s" else None
    assert a["curve_noisy"].shape == (2, 2) and a["train_loss"].shape == (2,)
    ev = {"train": cfg, "profile": "smoke", "points": [X.point(0.0), X.point(0.1, 0.01),
                                                       X.point(0.1, bits=3)],
          "instances": 3, "n_test": 200, "calib_images": 64, "torch_device": "cpu"}
    out = X.evaluate_run(ev)["accuracy"]
    assert out.shape == (3, 3) and len(set(out[0])) == 1 and 0 <= out.min() <= out.max() <= 1
    np.testing.assert_array_equal(out, X.evaluate_run(ev)["accuracy"])


@pytest.fixture
def synthetic_cifar100(tmp_path, monkeypatch):
    """Tiny CIFAR-100 in its on-disk format (the writers of tests/test_data.py)."""
    from test_data import WRITERS
    from torchvision.datasets import cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None:
                        __import__("os").path.isfile(fpath))
    root = tmp_path / "data"
    WRITERS["cifar100"](root, np.random.default_rng(7))
    monkeypatch.setenv("HWLIB_DATA", str(root))
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path / "results"))
    return root


def test_paper_path_on_synthetic_cifar100(synthetic_cifar100):
    from hwlib.study.profiles import CHAPTER_PROFILES

    paper = CHAPTER_PROFILES["hasgd"]["paper"]
    assert paper["dataset"] == "cifar100" and paper["network"] == "wrn"
    assert (paper["wrn_depth"], paper["wrn_width"]) == (28, 10)
    p = _params(**{k: paper[k] for k in ("dataset", "network", "optimizer", "lr",
                                         "weight_decay", "augment")},
                wrn_depth=10, wrn_width=1, epochs=1, n_train=None, batch_size=4,
                curve_images=6)
    cfg = X.train_config(p, 0.05, samples=2)
    out = X.train_run(cfg)
    assert out["parameters"] > 0 and np.isfinite(out["train_loss"]).all()
    model = X.network_from(out, cfg)
    assert model.fc.out_features == 100
    ev = {"train": cfg, "profile": "paper", "points": [X.point(0.05), X.point(0.05, bits=4)],
          "instances": 2, "n_test": None, "calib_images": 6, "torch_device": "cpu"}
    acc = X.evaluate_run(ev)["accuracy"]
    assert acc.shape == (2, 2)
    h = X.hessian_run({"train": cfg, "profile": "paper", "images": 6, "probes": 3, "seed": 0,
                       "torch_device": "cpu"})
    assert math.isfinite(h["trace"]) and math.isfinite(h["weighted"])


def test_toy_run_hasgd_leaves_the_sharp_minimum():
    cfg = dict(distance=2.0, sharp_width=0.15, flat_width=1.0, lr=0.05, steps=300, grid=7,
               extent=1.5, sigma=0.3, samples=2, seed=0, expansion_sigma=0.01,
               mc_samples=200_000)
    r = X.toy_run(cfg)
    gd = X.nearest_minimum(r["gd_end"], r["minima"])
    ha = X.nearest_minimum(r["hasgd_end"], r["minima"])
    assert (gd == 1).any() and not (ha == 1).any()
    assert np.allclose(r["mc_increase"], r["taylor_increase"], rtol=0.05)


@pytest.mark.parametrize("profile", ["smoke", "book", "paper"])
def test_chapter_profiles_are_valid_knobs(profile):
    from hwlib.study.params import check_param
    from hwlib.study.profiles import CHAPTER_PROFILES

    settings = CHAPTER_PROFILES["hasgd"][profile]
    assert set(settings) == set(CHAPTER_PROFILES["hasgd"]["book"])
    for name, value in settings.items():
        check_param(name, value, chapter="hasgd")
    shared = {"seed", "n_train", "precision", "channels_last"}  # the shared profiles' settings
    assert set(X.TRAIN_KNOBS) - shared <= set(settings)


def test_small_cnn_trains_on_crossbars():
    torch.manual_seed(0)
    model = X.build_network("cnn", "fashion_mnist")
    layers = analog.crossbar_layers(model)
    assert [type(m).__name__ for m in layers] == ["Conv2d", "Conv2d", "Linear"]
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    step = hasgd_step(model, torch.optim.Adam(model.parameters(), 1e-3),
                      analog.GaussianPerturbation(0.1, 0.01), samples=2)
    assert math.isfinite(float(step(x, y)))
    with torch.no_grad():  # the first convolution through its explicitly folded crossbar
        conv = layers[0]
        torch.testing.assert_close(analog.folded_forward(conv, x), conv(x), rtol=1e-5,
                                   atol=1e-5)


def test_grouped_convolution_is_refused():
    with pytest.raises(ParameterError, match="groups=1"):
        analog.Crossbars(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)))


def test_the_chapter_page_example_runs():
    """The Python example on book/hasgd/index.md runs as printed."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "book" / "hasgd" / "index.md").read_text()
    block = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    scope: dict = {}
    exec(compile(block, "book/hasgd/index.md", "exec"), scope)
    assert scope["acc"].shape == (10,)
