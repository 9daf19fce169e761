"""GPU checks (pytest marker ``gpu``, skipped without CUDA): every chapter's paper path for a
few steps on synthetic data in the real formats, every tensor on the device, and the device
models' moments the same on the CPU and on CUDA.

Run them with ``pytest -m gpu tests/test_gpu.py`` on a machine with a GPU
(``HWLIB_TEST_DEVICE=cpu`` runs the same checks on the CPU, a dry run of the test code).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from torch import nn

CUDA = torch.device(os.environ.get("HWLIB_TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(CUDA.type == "cuda" and not torch.cuda.is_available(),
                                 reason="needs a CUDA device")]


def _z(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """|z| of the difference of two samples' means and variances."""
    za = abs(a.mean() - b.mean()) / math.sqrt(a.var() / len(a) + b.var() / len(b))

    def var_se(x):
        d = x - x.mean()
        return math.sqrt(max((d ** 4).mean() - x.var() ** 2, 0.0) / len(x))

    zv = abs(a.var() - b.var()) / math.hypot(var_se(a), var_se(b))
    return float(za), float(zv)


# --- the device models on CUDA ------------------------------------------------------------------


def test_mram_chips_are_drawn_on_the_device_with_the_cpu_moments():
    from hwlib.hardware import mram

    cell = mram.MRAMCell.from_variation(0.05, 6.0)
    M, n = 8, 40_000
    a = torch.tensor([[1.0] * k + [-1.0] * (M - k) for k in range(M + 1)])
    w = torch.ones(M, 1)
    g = {}
    for dev in ("cpu", CUDA.type):
        inst = mram.ArrayInstance.sample(M, 1, cell, seed=3, instances=n, model="resistance",
                                         device=dev)
        assert inst.g_p.device.type == dev and inst.g_ap.device.type == dev
        g[dev] = inst.column_conductance(a.to(dev), w.to(dev))[..., 0].double().cpu().numpy()
    for k in range(M + 1):
        zm, zv = _z(g["cpu"][:, k], g[CUDA.type][:, k])
        assert zm < 5 and zv < 5, (k, zm, zv)


def test_every_family_computes_on_the_device():
    import hwlib
    from hwlib.models.binary import BinaryMLP
    from hwlib.models.mlp import MLP

    x = torch.rand(64, 1, 28, 28, device=CUDA)
    seen = []

    def devices(model):
        return {t.device.type for t in [*model.parameters(), *model.buffers()]}

    torch.manual_seed(0)
    bnn = BinaryMLP(784, (64, 64), 10).to(CUDA).eval()
    mlp = MLP((1, 28, 28), (64, 64), 10).to(CUDA).eval()
    for model, hw in ((bnn, hwlib.presets.sddhr_mram(scale=5.0)),
                      (mlp, hwlib.presets.sram_65nm(p=0.01)),
                      (mlp, hwlib.presets.hasgd_crossbar(sigma=0.1))):
        with torch.no_grad(), hwlib.attach(model, hw, seed=1):
            out = model(x)
            seen.append(devices(model))
        assert out.device.type == CUDA.type and torch.isfinite(out).all()
        assert devices(model) == {CUDA.type}
    assert all(s == {CUDA.type} for s in seen)
    readout = hwlib.presets.sddhr_mram(scale=5.0).sample(1).readout
    with hwlib.attach(bnn, hwlib.presets.sddhr_mram(scale=5.0).sample(1)), torch.no_grad():
        bnn(x)
    assert readout is not None


def test_crossbar_and_sram_chips_match_the_cpu():
    import hwlib
    from hwlib.hardware import crossbar, sram

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 200), nn.ReLU(), nn.Linear(200, 10))
    for dev in ("cpu", CUDA.type):
        bars = crossbar.Crossbars(model.to(dev))
        before = [p.detach().clone() for _, p, _ in bars.params]
        bars.perturb(crossbar.GaussianPerturbation(0.1), torch.Generator(dev).manual_seed(1))
        w, w0 = bars.params[0][1].detach(), before[0]
        s, rng = (float(t) for t in crossbar.folding_scale(bars.layers[0]))
        nu = ((w - w0) / float(w0.abs().max())).flatten().double()
        assert abs(float(nu.std()) - 0.1) < 5 * 0.1 / math.sqrt(2 * nu.numel())
        bars.restore()
    # an SRAM chip's faults are the same values on both devices (maps drawn once, moved)
    hw = hwlib.presets.sram_65nm(p=0.02)
    outs = []
    for dev in ("cpu", CUDA.type):
        with torch.no_grad(), hwlib.attach(model.to(dev), hw, seed=4):
            outs.append(model[0].weight.detach().cpu().clone())
    assert torch.equal(outs[0], outs[1])
    assert sram.FaultMap.sample(1000, 0.1, seed=2).to(CUDA).index.device.type == CUDA.type


def test_mixed_precision_leaves_device_models_in_float32():
    from hwlib.hardware import mram
    from hwlib.methods.training import FreshChip, Step
    from hwlib.models.binary import BinaryMLP, MRAMLinear

    torch.manual_seed(0)
    model = BinaryMLP(784, (64, 64), 10).to(CUDA)
    dtypes = []
    for m in model.modules():
        if isinstance(m, MRAMLinear) and m.on_array:
            m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    step = Step(model, torch.optim.Adam(model.parameters(), 1e-3),
                mram.MRAMArray(mram.MRAMCell.from_variation(0.05, 5.0)), FreshChip(),
                generator=torch.Generator(CUDA).manual_seed(0), precision="bf16")
    loss = step(torch.rand(128, 1, 28, 28, device=CUDA), torch.randint(0, 10, (128,),
                                                                       device=CUDA))
    assert math.isfinite(float(loss)) and dtypes and all(d == torch.float32 for d in dtypes)
    if CUDA.type == "cuda":  # the digital first layer did run in bfloat16
        first = []
        model.layers[0].register_forward_hook(lambda _m, _i, out: first.append(out.dtype))
        step(torch.rand(128, 1, 28, 28, device=CUDA), torch.randint(0, 10, (128,), device=CUDA))
        assert first == [torch.bfloat16]


# --- every chapter's paper path, a few steps, on synthetic data in the real formats ----------


@pytest.fixture
def synthetic(tmp_path, monkeypatch):
    from test_data import WRITERS
    from torchvision.datasets import cifar as tv_cifar

    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None:
                        __import__("os").path.isfile(fpath))
    root = tmp_path / "data"
    for name in ("cifar10", "cifar100"):
        WRITERS[name](root, np.random.default_rng(3))
    monkeypatch.setenv("HWLIB_DATA", str(root))
    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HWLIB_WORKERS", "1")
    return root


def test_sddhr_paper_path_on_cuda(synthetic):
    from hwlib.chapters import sddhr

    cfg = dict(dataset="cifar10", regime="sampled", train_scale=10.0, train_seed=0,
               eval_scales=[10.0], eval_seeds=[1, 2], epochs=1, n_train=24, n_test=6,
               n_test_epoch=6, batch_size=8, lr=0.01, network="vgg", hidden_widths=[32],
               width=0.0625, sigma_rel_nominal=0.05, mu_p_ohm=3000.0, tmr=1.0, r_min_rel=0.1,
               instance_model="resistance", precision="tf32", channels_last=True,
               torch_device=CUDA.type, seed=0)
    out = sddhr.train_run(cfg)
    assert np.isfinite(out["final"]).all() and out["final"].shape == (1, 2)


def test_hasgd_paper_path_on_cuda(synthetic):
    from types import SimpleNamespace

    from hwlib.chapters import hasgd

    p = SimpleNamespace(dataset="cifar100", network="wrn", hidden_widths=[16], wrn_depth=10,
                        wrn_width=1, epochs=1, n_train=None, batch_size=8, optimizer="sgd",
                        lr=0.1, weight_decay=5e-4, augment=True, fold="range",
                        batch_norm="clean", precision="bf16", channels_last=True,
                        curve_images=6, curve_instances=2, seed=0)
    cfg = hasgd.train_config(p, 0.05, samples=2, device=CUDA.type)
    out = hasgd.train_run(cfg)
    assert np.isfinite(out["train_loss"]).all()
    ev = {"train": cfg, "profile": "paper", "points": [hasgd.point(0.05),
                                                       hasgd.point(0.05, bits=4)],
          "instances": 2, "n_test": None, "calib_images": 6, "torch_device": CUDA.type}
    assert np.isfinite(hasgd.evaluate_run(ev)["accuracy"]).all()


def test_memory_faults_paper_path_on_cuda(synthetic):
    import hwlib
    from hwlib.chapters import memory_faults as study

    study.load_split.cache_clear()
    S = hwlib.setup("paper", chapter="memory_faults", dataset=None, width_f=0.0625, epochs=1,
                    n_train=None, n_test=None, batch_size=16, lr=None, momentum=None,
                    weight_decay=None, augment=None, seed=0, torch_device=CUDA.type,
                    reg_init=None, reg_epochs=1, reg_lr=0.01, precision=None,
                    channels_last=None)
    cfg = study.train_config(S.p, "preactresnet18", 1.0, reg_pe=0.02, device=CUDA.type)
    entry = study.run_training(S, [cfg])[0]
    assert 0 <= entry["clean_accuracy"] <= 1
    frame, _ = study.run_points(S, study.bm_points("bm", cfg, [0.01]), instances=2)
    assert np.isfinite(frame.accuracy).all()
    study.load_split.cache_clear()


def test_arena_runs_on_cuda(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hwlib.chapters import arena
    from hwlib.study.store import ResultStore

    from test_data import WRITERS  # noqa: F401  (the same fixtures' module)

    monkeypatch.setenv("HWLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HWLIB_WORKERS", "1")
    store = ResultStore("smoke", root=tmp_path / "results")
    S = SimpleNamespace(store=store, torch_device=CUDA,
                        params=dict(dataset="fashion_mnist", hidden_widths=[32, 32], epochs=1,
                                    batch_size=256, lr=3e-3, n_train=1024, n_calib=512,
                                    n_test=512))
    from hwlib.data import DATASETS, data_root

    if not (data_root() / DATASETS["fashion_mnist"].folder).exists():
        pytest.skip("Fashion-MNIST not under the data root")
    common = arena.settings(S)
    sev = {"sram": [0.01, 0.05, 0.1], "mram": [1.0, 3.0, 5.0]}
    frame, _ = arena.run_grid(S, arena.grid_configs(common, ["sram", "mram"],
                                                    ["standard", "sampling", "fixed"], sev,
                                                    [0], 2))
    assert np.isfinite(frame.accuracy).all()
