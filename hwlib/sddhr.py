"""S-DDHR: training binarized networks for the distribution of MRAM hardware.

Zhang, Chen & Verma (ICASSP 2019). Layers whose inputs and weights are binary run on a
simulated MRAM XNOR array (:mod:`hwlib.mram`); the hardware model Z is one of

* :class:`IdealHardware`: no variation (loss (3), ``ideal``);
* :class:`InstanceHardware`: fixed samples z_i of every cell (DDHR, loss (4), trains and tests
  on z_i; Fixed, loss (5), trains on z_0 and tests on other instances);
* :class:`ParametricHardware`: PS-DDHR, each column output drawn from N(mu(a, W), sigma^2(a, W));
* :class:`ApproximateHardware`: AS-DDHR, a fixed sigma_A^2, the largest of the M+1 variances.

Following Algorithm 1, the forward pass runs through Z and the gradients through E[Z] (the
ideal layer, to first order); the sign function uses a straight-through estimator. The pieces
compose with any model built from :class:`MRAMLinear` and :class:`MRAMConv2d`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .binary import LastDimBatchNorm, SignActivation, binarize, clip_latent_weights
from .data import load_dataset
from .errors import ParameterError
from .mram import ArrayInstance, MRAMCell, as_ddhr_std, preactivation_std
from .store import experiment

#: The five training regimes, in the paper's order of Table 1.
REGIMES = ("ddhr", "ideal", "fixed", "ps_ddhr", "as_ddhr")
#: Display names.
REGIME_LABELS = {"ideal": "Ideal", "ddhr": "DDHR", "fixed": "Fixed", "ps_ddhr": "PS-DDHR",
                 "as_ddhr": "AS-DDHR"}


# --- hardware models Z -------------------------------------------------------------------


class IdealHardware:
    """Variability-free hardware: u = W a exactly (loss (3))."""

    name = "ideal"

    def linear(self, layer: "MRAMLinear", a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The layer's pre-activation for inputs ``a`` and binary weights ``w`` (N, M)."""
        return F.linear(a, w)

    def conv(self, layer: "MRAMConv2d", a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The convolution's pre-activation (kernels unrolled: M = C k k rows)."""
        return F.conv2d(a, w, padding=layer.padding)


class _ThroughExpectation(torch.autograd.Function):
    """Forward ``u_z = a @ W_odd + abs(a) @ W_even`` (an instance); backward as ``u = a @ W^T``."""

    @staticmethod
    def forward(ctx, a, w, w_odd, even_sum):  # noqa: D102
        ctx.save_for_backward(a, w)
        return a @ w_odd + even_sum

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        a, w = ctx.saved_tensors
        g2 = grad.reshape(-1, grad.shape[-1])
        return grad @ w, g2.t() @ a.reshape(-1, a.shape[-1]), None, None


class InstanceHardware(IdealHardware):
    """Fixed hardware instances: every cell's resistance sampled once, reproducibly.

    Args:
        cell: the bit cells' resistance distributions (the variation level).
        seeds: one seed per instance; instance ``s`` gives layer ``k`` the array drawn with seed
            ``1000 * s + k``. The same seed at another variation level is the same chip with its
            deviations scaled.
        stacked: evaluate all instances in one pass (outputs gain a leading instance
            dimension); otherwise exactly one seed is allowed.
        model: ``"conductance"`` (Gaussian conductances, the paper's model) or
            ``"resistance"`` (Gaussian resistances, G = 1/R); see
            :meth:`hwlib.mram.ArrayInstance.sample`.
    """

    name = "instance"

    def __init__(self, cell: MRAMCell, seeds: Sequence[int], stacked: bool = False,
                 model: str = "conductance") -> None:
        self.cell = cell
        self.model = model
        self.seeds = [int(s) for s in seeds]
        self.stacked = stacked
        if not stacked and len(self.seeds) != 1:
            raise ParameterError(f"seeds={self.seeds}: one seed unless stacked=True")
        self._arrays: dict[int, ArrayInstance] = {}

    def array(self, layer: nn.Module, M: int, N: int) -> ArrayInstance:
        """The (cached) array instance of one layer."""
        key = layer.array_index
        if key not in self._arrays:
            parts = [ArrayInstance.sample(M, N, self.cell, 1000 * s + key, model=self.model)
                     for s in self.seeds]  # drawn on the CPU: the same chip on any device
            device = layer.weight.device
            if self.stacked:
                arr = ArrayInstance(torch.stack([p.g_p for p in parts]).to(device),
                                    torch.stack([p.g_ap for p in parts]).to(device), self.cell)
            else:
                arr = ArrayInstance(parts[0].g_p.to(device), parts[0].g_ap.to(device), self.cell)
            self._arrays[key] = arr
        return self._arrays[key]

    def linear(self, layer, a, w):  # noqa: D102
        arr = self.array(layer, w.shape[1], w.shape[0])
        w_odd, w_even = arr.effective_weights(w.t())
        even_sum = w_even.sum(dim=-2, keepdim=True)
        if self.stacked or not torch.is_grad_enabled():
            return a @ w_odd + even_sum
        return _ThroughExpectation.apply(a, w, w_odd, even_sum)

    def conv(self, layer, a, w):  # noqa: D102
        n, c, kh, kw = w.shape
        arr = self.array(layer, c * kh * kw, n)
        w_odd, w_even = arr.effective_weights(w.reshape(n, -1).t())
        pad = layer.padding

        def as_kernel(m):
            return m.t().reshape(n, c, kh, kw)

        if self.stacked:  # conv layers: one pass per instance
            return torch.stack([
                F.conv2d(a[i] if a.dim() == 5 else a, as_kernel(w_odd[i]), padding=pad)
                + F.conv2d((a[i] if a.dim() == 5 else a).abs(), as_kernel(w_even[i]),
                           padding=pad)
                for i in range(len(self.seeds))])
        u_z = (F.conv2d(a, as_kernel(w_odd), padding=pad)
               + F.conv2d(a.abs(), as_kernel(w_even), padding=pad))
        u = F.conv2d(a, w, padding=pad)
        return u + (u_z - u).detach()  # forward through z, gradient through E[Z]


class ParametricHardware(IdealHardware):
    """PS-DDHR: u_n ~ N(W a, sigma^2(a, W)), resampled at every forward pass (first order)."""

    name = "ps_ddhr"

    def __init__(self, cell: MRAMCell) -> None:
        self.cell = cell

    def _noisy(self, u: torch.Tensor, M: int) -> torch.Tensor:
        std = preactivation_std(u.detach().clamp(-M, M), M, self.cell)
        return u + std * torch.randn_like(u)

    def linear(self, layer, a, w):  # noqa: D102
        return self._noisy(F.linear(a, w), w.shape[1])

    def conv(self, layer, a, w):  # noqa: D102
        # M counts every row of the unrolled kernel, padded ones too (slightly conservative
        # at the borders, where fewer rows are driven)
        return self._noisy(F.conv2d(a, w, padding=layer.padding), w[0].numel())


class ApproximateHardware(ParametricHardware):
    """AS-DDHR: u_n ~ N(W a, sigma_A^2) with sigma_A^2 the largest of the M+1 variances."""

    name = "as_ddhr"

    def _noisy(self, u: torch.Tensor, M: int) -> torch.Tensor:
        return u + as_ddhr_std(M, self.cell) * torch.randn_like(u)


# --- layers and models -------------------------------------------------------------------


class _ArrayLayer(nn.Module):
    """A binarized layer with real-valued latent weights, on an MRAM array when ``on_array``."""

    binary_weights = True

    def __init__(self, shape: tuple[int, ...], on_array: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-1, 1))
        self.on_array = on_array
        self.hardware: IdealHardware = IdealHardware()
        self.array_index = 0


class MRAMLinear(_ArrayLayer):
    """A binarized linear layer; on the array when its inputs are binary.

    Args:
        in_features: M, the fan-in (rows of the array).
        out_features: N, the outputs (columns).
        on_array: False for a layer whose inputs are real (computed exactly).
    """

    def __init__(self, in_features: int, out_features: int, on_array: bool = True) -> None:
        super().__init__((out_features, in_features), on_array)

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w = binarize(self.weight)
        if not self.on_array:
            return F.linear(a, w)
        return self.hardware.linear(self, a, w)


class MRAMConv2d(_ArrayLayer):
    """A binarized 2-D convolution; on the array (unrolled, M = C k k) when inputs are binary."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int = 1, on_array: bool = True) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), on_array)
        self.padding = padding

    def forward(self, a: torch.Tensor) -> torch.Tensor:  # noqa: D102
        w = binarize(self.weight)
        if not self.on_array:
            return F.conv2d(a, w, padding=self.padding)
        return self.hardware.conv(self, a, w)


def set_hardware(model: nn.Module, hardware: IdealHardware) -> nn.Module:
    """Put every array layer of ``model`` on ``hardware`` (layers are numbered in order)."""
    k = 0
    for module in model.modules():
        if isinstance(module, _ArrayLayer):
            module.hardware = hardware
            module.array_index = k
            k += 1
    return model


class BinaryMLP(nn.Module):
    """A binarized MLP: a real-input first layer (exact), then array layers; BN + sign between.

    Args:
        in_features: input size (784 for MNIST).
        hidden: hidden widths.
        classes: outputs.
    """

    stackable = True  # evaluates stacked instances in one pass

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (256, 256),
                 classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [in_features, *hidden]
        for i, (m, n) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [MRAMLinear(m, n, on_array=i > 0), LastDimBatchNorm(n), SignActivation()]
        layers += [MRAMLinear(widths[-1], classes), LastDimBatchNorm(classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x.flatten(1) * 2 - 1)


class VGGBinaryNet(nn.Module):
    """The VGG-style BNN of Courbariaux et al. for CIFAR-10: 6 conv + 3 FC layers.

    (2x128C3)-MP2-(2x256C3)-MP2-(2x512C3)-MP2-(2x1024FC)-10FC, each followed by batch norm
    and, but for the last, the sign. ``width`` scales the channel counts (1.0: the paper's).
    """

    stackable = False

    def __init__(self, classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 image: int = 32) -> None:
        super().__init__()
        c = [max(1, int(round(x * width))) for x in (128, 256, 512)]
        f = max(1, int(round(1024 * width)))
        chans = [in_channels, c[0], c[0], c[1], c[1], c[2], c[2]]
        layers: list[nn.Module] = []
        for i in range(6):
            layers.append(MRAMConv2d(chans[i], chans[i + 1], on_array=i > 0))
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.BatchNorm2d(chans[i + 1]), SignActivation()]
        layers.append(nn.Flatten())
        side = image // 8
        layers += [MRAMLinear(c[2] * side * side, f), LastDimBatchNorm(f), SignActivation(),
                   MRAMLinear(f, f), LastDimBatchNorm(f), SignActivation(),
                   MRAMLinear(f, classes), LastDimBatchNorm(classes)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.layers(x * 2 - 1)


# --- training and evaluation ---------------------------------------------------------------


def hardware_for(regime: str, cell: MRAMCell, instance_seed: int = 0,
                 instance_model: str = "conductance") -> IdealHardware:
    """The hardware model a regime trains on.

    Args:
        regime: ``ideal``, ``ddhr``, ``fixed``, ``ps_ddhr`` or ``as_ddhr``.
        cell: the variation level.
        instance_seed: the instance z_i (DDHR) or z_0 (Fixed).
        instance_model: how instances are drawn (``conductance`` or ``resistance``).
    """
    if regime == "ideal":
        return IdealHardware()
    if regime in ("ddhr", "fixed"):
        return InstanceHardware(cell, [instance_seed], model=instance_model)
    if regime == "ps_ddhr":
        return ParametricHardware(cell)
    if regime == "as_ddhr":
        return ApproximateHardware(cell)
    raise ParameterError(f"regime={regime!r}: must be one of {', '.join(REGIMES)}")


@torch.no_grad()
def accuracy_on_instances(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          cell: MRAMCell | None, seeds: Sequence[int],
                          batch_size: int = 2000, instance_model: str = "conductance"
                          ) -> np.ndarray:
    """Test accuracy on each hardware instance (one value per seed; ``cell=None``: ideal).

    Stackable models evaluate every instance in one pass per batch (no loop over instances).
    """
    model.eval()
    if cell is None:
        hws = [IdealHardware()]
    elif getattr(model, "stackable", False):
        hws = [InstanceHardware(cell, seeds, stacked=True, model=instance_model)]
    else:
        hws = [InstanceHardware(cell, [s], model=instance_model) for s in seeds]
    correct = []
    for hw in hws:
        set_hardware(model, hw)
        hits = 0
        for i in range(0, len(y), batch_size):
            logits = model(x[i:i + batch_size])
            hits = hits + (logits.argmax(-1) == y[i:i + batch_size]).sum(-1)
        correct.append(np.atleast_1d(torch.as_tensor(hits).cpu().numpy().astype(float)))
    acc = np.concatenate(correct) / len(y)
    return np.repeat(acc, len(seeds)) if cell is None else acc


def train(model: nn.Module, hardware: IdealHardware, x: torch.Tensor, y: torch.Tensor,
          epochs: int, batch_size: int = 100, lr: float = 3e-3, seed: int = 0,
          on_epoch=None, desc: str = "training") -> list[float]:
    """Train with Adam on cross-entropy through ``hardware`` (Algorithm 1, one call per epoch).

    Args:
        model: a binarized model of array layers.
        hardware: the training regime's hardware model Z.
        x: training images (N, C, H, W) in [0, 1].
        y: labels.
        epochs: passes over the data.
        batch_size: mini-batch size.
        lr: initial learning rate (cosine decay to zero).
        seed: shuffling seed.
        on_epoch: called as ``on_epoch(epoch)`` after each epoch.
        desc: the progress bar's label.

    Returns:
        The wall time of each epoch, seconds.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * ((len(y) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    times = []
    for epoch in tqdm(range(epochs), desc=desc, leave=False):
        model.train()
        set_hardware(model, hardware)
        start = time.perf_counter()
        perm = torch.randperm(len(y), generator=gen).to(y.device)
        for i in range(0, len(y), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            clip_latent_weights(model)
        times.append(time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(epoch)
    return times


def cell_at(config: dict[str, Any], scale: float) -> MRAMCell:
    """The bit cell at ``scale`` times the config's nominal variation."""
    return MRAMCell.from_variation(config["sigma_rel_nominal"], scale, config["mu_p_ohm"],
                                   config["tmr"], config["r_min_rel"])


def build_model(config: dict[str, Any]) -> nn.Module:
    """The config's model: ``mlp`` (book profile) or ``vgg`` (the paper's BNN)."""
    torch.manual_seed(config["seed"])
    if config["model"] == "mlp":
        return BinaryMLP(784 if config["dataset"] in ("mnist", "fashion_mnist") else 3072,
                         tuple(config["hidden"]), 100 if config["dataset"] == "cifar100" else 10)
    if config["model"] == "vgg":
        return VGGBinaryNet(100 if config["dataset"] == "cifar100" else 10, config["width"])
    raise ParameterError(f"model={config['model']!r}: must be 'mlp' or 'vgg'")


@experiment("sddhr.train_run")
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network in one regime and test it on hardware instances after every epoch.

    Args:
        config: ``dataset``, ``regime``, ``train_scale`` (variation multiple it trains at),
            ``train_seed`` (z_i for DDHR, z_0 for Fixed), ``eval_scales``, ``eval_seeds``,
            ``epochs``, ``n_train``, ``n_test``, ``n_test_epoch`` (test images for the
            per-epoch curves), ``batch_size``, ``lr``, ``model``, ``hidden``/``width``,
            the cell (``sigma_rel_nominal``, ``mu_p_ohm``, ``tmr``, ``r_min_rel``),
            ``instance_model``, ``device`` (``cpu`` or ``cuda``), ``seed``.

    Returns:
        ``history`` (epochs x eval scales x instances) and ``final`` (eval scales x
        instances) accuracies, ``clean`` (variability-free accuracy per epoch) and
        ``epoch_time_s``.
    """
    device = torch.device(config["device"])
    x, y = (t.to(device) for t in load_dataset(config["dataset"], True, config["n_train"],
                                               config["seed"]))
    xt, yt = (t.to(device) for t in load_dataset(config["dataset"], False, config["n_test"],
                                                 config["seed"]))
    xe, ye = xt[:config["n_test_epoch"]], yt[:config["n_test_epoch"]]
    model = build_model(config).to(device)
    hw = hardware_for(config["regime"], cell_at(config, config["train_scale"]),
                      config["train_seed"], config["instance_model"])
    history, clean = [], []

    def evaluate(xs, ys):
        return np.stack([accuracy_on_instances(model, xs, ys, cell_at(config, s)
                                               if s > 0 else None, config["eval_seeds"],
                                               instance_model=config["instance_model"])
                         for s in config["eval_scales"]])

    def on_epoch(_):
        history.append(evaluate(xe, ye))
        clean.append(float(accuracy_on_instances(model, xe, ye, None, [0])[0]))

    times = train(model, hw, x, y, config["epochs"], config["batch_size"], config["lr"],
                  config["seed"], on_epoch, desc=f"{config['regime']} x{config['train_scale']:g}")
    return {"history": np.stack(history), "final": evaluate(xt, yt), "clean": np.array(clean),
            "epoch_time_s": np.array(times)}


# --- the chapter's study: every regime at every variation level ----------------------------

#: The seed of the Fixed regime's training instance z_0 (never a test instance: those are
#: 1..instances).
FIXED_SEED = 10_000


def study_configs(dataset: str, scales: Sequence[float], instances: int,
                  regimes: Sequence[str] = REGIMES, **common: Any) -> list[dict[str, Any]]:
    """The training runs behind Figs. 4 and 5 and Table 1 for one dataset.

    Ideal is trained once and tested at every level; Fixed, PS-DDHR and AS-DDHR once per
    level; DDHR once per level and test instance (trained and tested on z_i). Test instances
    are seeds 1..instances, the same chips at every level.

    Args:
        dataset: the dataset.
        scales: the variation multiples.
        instances: test instances per level.
        regimes: the regimes to run.
        **common: the rest of :func:`train_run`'s config (epochs, sizes, cell, ...).
    """
    for r in regimes:
        if r not in REGIMES:
            raise ParameterError(f"regime {r!r}: must be one of {', '.join(REGIMES)}")
    seeds = list(range(1, instances + 1))
    base = dict(common, dataset=dataset, eval_seeds=seeds, train_seed=0)
    out = []
    if "ideal" in regimes:
        out.append(dict(base, regime="ideal", train_scale=0.0,
                        eval_scales=[0.0, *map(float, scales)]))
    for s in map(float, scales):
        for r in ("fixed", "ps_ddhr", "as_ddhr"):
            if r in regimes:
                out.append(dict(base, regime=r, train_scale=s, eval_scales=[s],
                                train_seed=FIXED_SEED if r == "fixed" else 0))
        if "ddhr" in regimes:
            out += [dict(base, regime="ddhr", train_scale=s, eval_scales=[s], train_seed=i,
                         eval_seeds=[i]) for i in seeds]
    return out


def run_study(session, datasets: Sequence[str], scales: Sequence[float], instances: int,
              regimes: Sequence[str] = REGIMES, **common: Any):
    """Run (or read back) every training run of the study, in parallel workers.

    Returns:
        ``(final, history, entries)``: a DataFrame of final accuracies (dataset, regime,
        scale, instance, accuracy), one of per-epoch accuracies (plus epoch), and the
        stored entries.
    """
    import pandas as pd

    from .sweep import run_sweep

    configs = [c for d in datasets for c in study_configs(d, scales, instances, regimes,
                                                          **common)]
    entries = run_sweep(train_run, configs, session.store, desc="S-DDHR training runs",
                        device=str(session.device))
    final, history = [], []
    for cfg, e in zip(configs, entries):
        for k, scale in enumerate(cfg["eval_scales"]):
            for j, inst in enumerate(cfg["eval_seeds"]):
                row = {"dataset": cfg["dataset"], "regime": cfg["regime"], "scale": scale,
                       "instance": inst}
                final.append({**row, "accuracy": 100 * float(e["final"][k, j])})
                for ep in range(len(e["history"])):
                    history.append({**row, "epoch": ep + 1,
                                    "accuracy": 100 * float(e["history"][ep, k, j])})
    return pd.DataFrame(final), pd.DataFrame(history), entries


def table1(final, scale: float):
    """Table 1: mean and standard deviation over instances of each regime at one level."""
    at = final[final.scale == float(scale)]
    return (at.groupby(["dataset", "regime"]).accuracy.agg(["mean", "std", "count"])
            .reset_index())
