"""The HA-SGD chapter: Hessian-aware SGD for analog non-volatile-memory compute-in-memory.

Sections, as in every chapter module:

* **configs**: :func:`train_config` (one network: training level q, shift, L), :func:`point`
  (one test condition), the study's networks (:func:`main_networks`, :func:`shift_networks`,
  :func:`samples_networks`), :func:`build_network`;
* **stored experiments**: :func:`train_run` (HA-SGD training, weights kept),
  :func:`evaluate_run` (accuracy on chips at test points), :func:`hessian_run` (Hutchinson's
  trace at the minimum), :func:`toy_run` (the two-dimensional intuition);
* **sweeps to frames**: :func:`train_networks`, :func:`evaluate_networks`,
  :func:`hessian_traces`, :func:`summarize`, :func:`training_curves` and the tables;
* **claim readings**: the measurements each scorecard claim's rule reads
  (:func:`readings_curvature`, :func:`readings_noise_level`, :func:`readings_fold`,
  :func:`readings_shift`, :func:`readings_adc`).

Training runs are shared across notebooks: a notebook asks for a network by its full training
config, and the store returns the one already trained.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import DATASETS, load_dataset, random_crop_flip
from ..errors import ParameterError, check_int
from ..hardware.crossbar import (ADC, AnalogCrossbar, GaussianPerturbation, check_fold,
                                 crossbar_layers, folding_scale)
from ..methods.curvature import hessian_trace, range_weights
from ..methods.evaluation import accuracy_on_chips
from ..methods.training import HASGD, Step, cosine_schedule, fit, optimizer_for, steps_per_epoch
from ..models.checkpoint import load_state_arrays, state_arrays
from ..models.mlp import MLP, SmallCNN
from ..models.wideresnet import WideResNet
from ..study.rules import Stat
from ..study.store import Entry, current_store, experiment

#: The keys of a training config that come from the notebook's parameters.
TRAIN_KNOBS = ("dataset", "network", "hidden_widths", "wrn_depth", "wrn_width", "epochs",
               "n_train", "batch_size", "optimizer", "lr", "weight_decay",
               "augment", "fold", "batch_norm", "precision", "channels_last", "curve_images",
               "curve_instances", "seed")
#: Seed of the first test chip; chip i uses INSTANCE_SEED + i (the same chips for every
#: network, so that networks are compared on the same hardware).
INSTANCE_SEED = 1
#: Images per forward pass in evaluations.
EVAL_BATCH = 1000


# --- configs ----------------------------------------------------------------------------------

def train_config(params: Any, train_sigma: float, train_shift: float = 0.0, samples: int = 1,
                 device: str = "cpu", shift_model: str = "pair") -> dict[str, Any]:
    """The full config of one training run.

    Args:
        params: the session's resolved parameters (``S.p``), holding every :data:`TRAIN_KNOBS`.
        train_sigma: sigma of the training distribution q (fraction of the dynamic range).
        train_shift: the device drift of q (see
            :class:`~hwlib.hardware.crossbar.GaussianPerturbation`).
        samples: L, perturbation samples per mini-batch.
        device: ``cpu`` or ``cuda``.
        shift_model: how the drift acts: ``pair`` (the poster's differential pair) or
            ``single``.
    """
    GaussianPerturbation(train_sigma, train_shift, shift_model)  # checks the values
    check_int("samples", samples, 1)
    cfg = {k: getattr(params, k) for k in TRAIN_KNOBS}
    cfg.update(train_sigma=float(train_sigma), train_shift=float(train_shift),
               shift_model=shift_model, samples=int(samples), torch_device=device)
    return cfg


def point(sigma: float, shift: float = 0.0, fold: str = "range", bits: int = 0,
          shift_model: str = "pair") -> dict[str, Any]:
    """One test condition: noise level p, device drift and how it acts, folding rule, ADC
    bits (0: no ADC)."""
    GaussianPerturbation(sigma, shift, shift_model)
    if bits:
        ADC(bits)
    return {"sigma": float(sigma), "shift": float(shift), "shift_model": shift_model,
            "fold": fold, "bits": int(bits)}


# --- training -------------------------------------------------------------------------------



def main_networks(params: Any, device: str = "cpu") -> list[dict[str, Any]]:
    """The chapter's main networks: one per training noise level (``train_sigmas``), zero
    shift, ``samples`` (L) perturbations per mini-batch."""
    return [train_config(params, s, 0.0, params.samples, device) for s in params.train_sigmas]


def shift_networks(params: Any, device: str = "cpu", shift_model: str = "pair"
                   ) -> list[dict[str, Any]]:
    """The mean-shift study's networks (Fig. 8): ``shift_sigma`` noise, one per training shift,
    the drift acting as ``shift_model`` says."""
    return [train_config(params, params.shift_sigma, m, params.samples, device, shift_model)
            for m in params.train_shifts]


def samples_networks(params: Any, device: str = "cpu") -> list[dict[str, Any]]:
    """The L study's networks: ``samples_sigma`` noise, one per value of L."""
    return [train_config(params, params.samples_sigma, 0.0, L, device)
            for L in params.samples_sweep]


#: The networks of the chapter.
NETWORKS = ("mlp", "cnn", "wrn")


def build_network(network: str, dataset: str, hidden: Sequence[int] = (256, 256),
                  wrn_depth: int = 28, wrn_width: int = 10) -> nn.Module:
    """The chapter's network for a dataset: ``mlp``, ``cnn`` or ``wrn``."""
    if dataset not in DATASETS:
        raise ParameterError(f"dataset={dataset!r}: must be one of {', '.join(DATASETS)}")
    info = DATASETS[dataset]
    norm = (info.mean, info.std)
    if network == "mlp":
        return MLP(info.shape, tuple(hidden), info.classes, norm)
    if network == "cnn":
        return SmallCNN(info.shape, info.classes, norm)
    if network == "wrn":
        return WideResNet(wrn_depth, wrn_width, info.classes, 0.0, info.shape[0], norm)
    raise ParameterError(f"network={network!r}: must be one of {', '.join(NETWORKS)}")



def _device(config: Mapping[str, Any]) -> torch.device:
    return torch.device(config.get("torch_device", "cpu"))


# --- stored experiments -------------------------------------------------------------------------

@experiment("hasgd.train_run", outputs=("epoch_time_s", "train_loss", "curve_clean",
                                         "curve_noisy", "parameters"))
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network with HA-SGD (Algorithm 1) and keep its weights.

    Args:
        config: see :func:`train_config`: the data (``dataset``, ``n_train``), the network
            (``network``, ``hidden_widths``, ``wrn_depth``, ``wrn_width``), the optimizer
            (``optimizer``, ``lr`` with cosine decay to zero over all steps,
            ``weight_decay``, ``batch_size``, ``epochs``, ``augment``), the training
            distribution q (``train_sigma``, ``train_shift``, ``fold``), L (``samples``), the
            per-epoch curves (``curve_images`` test images, ``curve_instances`` chips at the
            training level), ``seed`` and ``torch_device``.

    Returns:
        The state dict (``state.<name>`` arrays), ``epoch_time_s`` (training steps only),
        ``train_loss`` (mean HA-SGD loss per epoch), ``curve_clean`` (noise-free test accuracy
        per epoch), ``curve_noisy`` (epochs x chips, at the training level) and
        ``parameters``.
    """
    device = _device(config)
    seed = int(config["seed"])
    x, y = (t.to(device) for t in load_dataset(config["dataset"], True, config["n_train"], seed))
    xe, ye = (t.to(device) for t in load_dataset(config["dataset"], False,
                                                 config["curve_images"], seed))
    torch.manual_seed(seed)
    model = build_network(config["network"], config["dataset"], config["hidden_widths"],
                          config["wrn_depth"], config["wrn_width"]).to(device)
    opt = optimizer_for(model, config["optimizer"], config["lr"], config["weight_decay"])
    sched = cosine_schedule(opt, config["epochs"],
                            steps_per_epoch(len(y), config["batch_size"]))
    q = AnalogCrossbar(GaussianPerturbation(config["train_sigma"], config["train_shift"],
                                            config["shift_model"]), config["fold"])
    step = Step(model, opt, q, HASGD(config["samples"], config["batch_norm"]),
                generator=torch.Generator(device=device).manual_seed(seed),
                precision=config["precision"],
                channels_last=config["channels_last"] and config["network"] != "mlp")
    clean_hw = AnalogCrossbar(GaussianPerturbation(), config["fold"])
    seeds = [INSTANCE_SEED + i for i in range(config["curve_instances"])]
    clean, noisy = [], []

    def on_epoch(_):
        clean.append(float(accuracy_on_chips(model, clean_hw, xe, ye, [0], EVAL_BATCH,
                                             config["precision"])[0]))
        noisy.append(accuracy_on_chips(model, q, xe, ye, seeds, EVAL_BATCH,
                                       config["precision"]))

    hist = fit(step, x, y, config["epochs"], config["batch_size"], seed, sched,
               random_crop_flip if config["augment"] else None, on_epoch=on_epoch,
               desc=f"q sigma={q.noise.sigma:g} shift={q.noise.shift:g} L={config['samples']}")
    return {**state_arrays(model), "epoch_time_s": np.array(hist["epoch_time_s"]),
            "train_loss": np.array(hist["loss"]),
            "curve_clean": np.array(clean), "curve_noisy": np.stack(noisy),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def network_from(result: Mapping[str, Any], config: Mapping[str, Any],
                 device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a trained network from a :func:`train_run` result (in eval mode)."""
    model = build_network(config["network"], config["dataset"], config["hidden_widths"],
                          config["wrn_depth"], config["wrn_width"])
    return load_state_arrays(model, result).to(device).eval()


def _trained(config: Mapping[str, Any]) -> torch.nn.Module:
    """The trained network of an evaluation config (trained now if the store lacks it)."""
    store = current_store(config["profile"])
    entry = store.get_or_compute(train_run, config["train"], device=str(_device(config)))
    return network_from(entry.result, config["train"], _device(config))


@experiment("hasgd.evaluate_run", outputs=("accuracy",))
def evaluate_run(config: dict[str, Any]) -> dict[str, Any]:
    """Test one trained network on hardware instances at every test point.

    Args:
        config: ``train`` (the network's training config), ``profile`` (whose store holds it),
            ``points`` (a list of :func:`point` dicts), ``instances``, ``n_test`` test images,
            ``calib_images`` (training images calibrating the ADC ranges), ``device``.

    Returns:
        ``accuracy``: fractions, shape (points, instances); instance i is the chip drawn with
        seed ``INSTANCE_SEED + i`` at every point.
    """
    device = _device(config)
    model = _trained(config)
    tc = config["train"]
    xt, yt = (t.to(device) for t in load_dataset(tc["dataset"], False, config["n_test"],
                                                 tc["seed"]))
    seeds = [INSTANCE_SEED + i for i in range(config["instances"])]
    ranges = None
    out = []
    for pt in config["points"]:
        adc = None
        if pt["bits"]:
            if ranges is None:
                xc, _ = load_dataset(tc["dataset"], True, config["calib_images"], tc["seed"] + 1)
                ranges = ADC(8).calibrate(model, xc.to(device)).ranges
            adc = ADC(pt["bits"])
            adc.ranges = ranges
        hw = AnalogCrossbar(GaussianPerturbation(pt["sigma"], pt["shift"], pt["shift_model"]),
                            pt["fold"], adc)
        out.append(accuracy_on_chips(model, hw, xt, yt, seeds, EVAL_BATCH, tc["precision"]))
    return {"accuracy": np.stack(out)}


@experiment("hasgd.hessian_run", outputs=("trace", "trace_se", "weighted", "weighted_se",
                                           "loss"))
def hessian_run(config: dict[str, Any]) -> dict[str, Any]:
    """Hutchinson's estimate of the Hessian trace of the training loss at a trained network.

    Args:
        config: ``train``, ``profile``, ``images`` (training images the loss averages over),
            ``probes`` (Rademacher vectors), ``seed`` (of the probes), ``device``.

    Returns:
        ``trace`` and ``trace_se`` (``tr(H)`` over every crossbar weight and bias),
        ``weighted`` and ``weighted_se`` (``tr(D H D)``, D the perturbation scale of each
        entry per unit sigma, see :func:`hwlib.hasgd.range_weights`), the per-probe values
        ``trace_samples`` and ``weighted_samples``, and the training ``loss`` on those images.
    """
    device = _device(config)
    model = _trained(config)
    tc = config["train"]
    x, y = (t.to(device) for t in load_dataset(tc["dataset"], True, config["images"],
                                               tc["seed"] + 2))
    plain = hessian_trace(model, x, y, config["probes"], config["seed"], batch_size=250)
    weighted = hessian_trace(model, x, y, config["probes"], config["seed"],
                             weights=range_weights(model, tc["fold"]), batch_size=250)
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(x), y))
    return {"trace": plain.value, "trace_se": plain.stderr, "trace_samples": plain.samples,
            "weighted": weighted.value, "weighted_se": weighted.stderr,
            "weighted_samples": weighted.samples, "loss": loss}





# --- the two-dimensional intuition: a loss with a sharp and a flat minimum --------------------




class WellLoss:
    """``J(w) = -sum_k a_k exp(-|w - m_k|^2 / (2 s_k^2))``: isotropic Gaussian wells in d dims.

    Under an isotropic Gaussian perturbation ``dw ~ N(0, sigma^2 I)`` the expected loss has
    the closed form ``E[J(w + dw)] = -sum_k a_k (s_k^2 / (s_k^2 + sigma^2))^(d/2)
    exp(-|w - m_k|^2 / (2 (s_k^2 + sigma^2)))``: each well widens and gets shallower, the
    sharp one (small ``s_k``) much more than the flat one.

    Args:
        centers: the wells' centers m_k, shape (K, d).
        widths: their widths s_k (K,).
        depths: their depths a_k (K,).
    """

    def __init__(self, centers, widths, depths) -> None:
        self.centers = torch.as_tensor(np.asarray(centers, dtype=float))
        self.widths = torch.as_tensor(np.asarray(widths, dtype=float))
        self.depths = torch.as_tensor(np.asarray(depths, dtype=float))
        if self.centers.dim() != 2 or not (len(self.centers) == len(self.widths)
                                           == len(self.depths)):
            raise ParameterError("WellLoss: centers (K, d), widths (K,) and depths (K,)")
        if (self.widths <= 0).any():
            raise ParameterError(f"widths={self.widths.tolist()}: must all be > 0")

    @property
    def dim(self) -> int:
        """The dimension d."""
        return self.centers.shape[1]

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        """``J`` at points ``w`` of shape (..., d)."""
        return self.smoothed(w, 0.0)

    def smoothed(self, w: torch.Tensor, sigma: float) -> torch.Tensor:
        """``E[J(w + dw)]``, ``dw ~ N(0, sigma^2 I)``, in closed form, at points (..., d)."""
        w = torch.as_tensor(w, dtype=torch.float64)
        var = self.widths ** 2 + sigma ** 2
        r2 = ((w[..., None, :] - self.centers) ** 2).sum(-1)
        factor = (self.widths ** 2 / var) ** (self.dim / 2)
        return -(self.depths * factor * torch.exp(-r2 / (2 * var))).sum(-1)

    def grad(self, w: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
        """Gradient of :meth:`smoothed` (of ``J`` for ``sigma = 0``) at points (..., d)."""
        w = torch.as_tensor(w, dtype=torch.float64).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(self.smoothed(w, sigma).sum(), w)
        return g

    def hessian_trace(self, w: torch.Tensor) -> torch.Tensor:
        """``tr(H)`` of ``J`` at points (..., d), in closed form."""
        w = torch.as_tensor(w, dtype=torch.float64)
        r2 = ((w[..., None, :] - self.centers) ** 2).sum(-1)
        s2 = self.widths ** 2
        e = self.depths * torch.exp(-r2 / (2 * s2))
        return (e / s2 * (self.dim - r2 / s2)).sum(-1)

    def minimum_near(self, w0, lr: float = 0.01, steps: int = 20000) -> torch.Tensor:
        """The local minimum of ``J`` reached by gradient descent from ``w0``."""
        w = torch.as_tensor(np.asarray(w0, dtype=float))
        for _ in range(steps):
            g = self.grad(w)
            w = w - lr * g
            if float(g.norm()) < 1e-12:
                break
        return w

    def descend(self, starts, lr: float, steps: int, sigma: float = 0.0, samples: int = 1,
                seed: int = 0) -> np.ndarray:
        """Gradient descent (``sigma = 0``) or HA-SGD from many starts at once.

        HA-SGD follows Algorithm 1: each step averages the gradients of ``J`` at ``samples``
        (L) points ``w + dw``, ``dw ~ N(0, sigma^2 I)``.

        Args:
            starts: starting points (n, d).
            lr: the step size.
            steps: number of steps.
            sigma: the perturbation's standard deviation (absolute, in units of w).
            samples: L.
            seed: the perturbations' seed.

        Returns:
            The trajectories, shape (steps + 1, n, d).
        """
        check_int("samples", samples, 1)
        gen = torch.Generator().manual_seed(int(seed))
        w = torch.as_tensor(np.asarray(starts, dtype=float)).clone()
        path = [w.clone()]
        for _ in range(steps):
            if sigma > 0:
                dw = sigma * torch.randn((samples, *w.shape), generator=gen, dtype=torch.float64)
                g = self.grad(w + dw).mean(0)
            else:
                g = self.grad(w)
            w = w - lr * g
            path.append(w.clone())
        return torch.stack(path).numpy()


def sharp_and_flat(dim: int = 2, distance: float = 2.0, sharp_width: float = 0.15,
                   flat_width: float = 1.0) -> WellLoss:
    """A flat well at the origin and a sharp one at ``distance`` along the first axis, with
    the sharp well's depth set so that both minima have the same loss."""
    from scipy.optimize import brentq

    centers = np.zeros((2, dim))
    centers[1, 0] = distance
    widths = [flat_width, sharp_width]

    def gap(a_sharp: float) -> float:
        loss = WellLoss(centers, widths, [1.0, a_sharp])
        flat = loss(loss.minimum_near(centers[0], lr=0.05, steps=4000))
        sharp = loss(loss.minimum_near(centers[1], lr=0.002, steps=4000))
        return float(flat - sharp)

    if gap(0.05) * gap(1.0) >= 0:
        raise ParameterError(f"sharp_width={sharp_width!r}, well_distance={distance!r}: the "
                             "wells do not form two separate minima of equal depth; allowed: "
                             "a narrower sharp well farther away (e.g. 0.15 and 2)")
    a = brentq(gap, 0.05, 1.0, xtol=1e-10)
    return WellLoss(centers, widths, [1.0, a])


@experiment("hasgd.toy_run", outputs=("minima", "trace", "gd_end", "hasgd_end", "mc_increase",
                                       "taylor_increase"))
def toy_run(config: dict[str, Any]) -> dict[str, Any]:
    """Gradient descent and HA-SGD on a 2-D loss with a sharp and a flat minimum of equal depth.

    Args:
        config: the loss (``distance``, ``sharp_width``, ``flat_width``); the descent (``lr``,
            ``steps``, ``grid`` starts per axis over ``extent``); HA-SGD (``sigma``, ``samples``);
            the expansion check (``expansion_sigma``, ``mc_samples``); ``seed``.

    Returns:
        The wells' ``depths``, the two ``minima`` (flat first) with their loss and ``trace``,
        the ``starts``, the ``gd_end`` and ``hasgd_end`` points and a few ``paths``; for the
        expansion at each minimum, the Monte Carlo increase ``mc_increase`` (with ``mc_se``),
        the closed-form ``exact_increase`` and the second-order ``taylor_increase``.
    """
    loss = sharp_and_flat(2, config["distance"], config["sharp_width"], config["flat_width"])
    minima = torch.stack([loss.minimum_near(loss.centers[0], 0.05, 4000),
                          loss.minimum_near(loss.centers[1], 0.002, 4000)])
    lin = np.linspace(-config["extent"], config["extent"], config["grid"])
    starts = np.stack(np.meshgrid(lin + config["distance"] / 2, lin), -1).reshape(-1, 2)
    gd = loss.descend(starts, config["lr"], config["steps"])
    ha = loss.descend(starts, config["lr"], config["steps"], config["sigma"], config["samples"],
                      config["seed"])
    gen = torch.Generator().manual_seed(int(config["seed"]) + 1)
    mc, se, exact, taylor = [], [], [], []
    s = config["expansion_sigma"]
    for w in minima:
        dw = s * torch.randn(config["mc_samples"], 2, generator=gen, dtype=torch.float64)
        inc = loss(w + dw) - loss(w)
        mc.append(float(inc.mean()))
        se.append(float(inc.std() / math.sqrt(len(inc))))
        exact.append(float(loss.smoothed(w, s) - loss(w)))
        taylor.append(float(s ** 2 / 2 * loss.hessian_trace(w)))
    sharp = np.flatnonzero(nearest_minimum(gd[-1], minima.numpy()) == 1)
    pick = np.unique(np.concatenate([np.linspace(0, len(starts) - 1, 6).round(),
                                     sharp[np.linspace(0, len(sharp) - 1, min(4, len(sharp)))
                                           .round().astype(int)]]).astype(int))
    return {"depths": loss.depths.numpy(), "centers": loss.centers.numpy(),
            "widths": loss.widths.numpy(), "minima": minima.numpy(),
            "minima_loss": loss(minima).numpy(), "trace": loss.hessian_trace(minima).numpy(),
            "starts": starts, "gd_end": gd[-1], "hasgd_end": ha[-1],
            "gd_paths": gd[:, pick], "hasgd_paths": ha[:, pick],
            "mc_increase": np.array(mc), "mc_se": np.array(se),
            "exact_increase": np.array(exact), "taylor_increase": np.array(taylor)}


def nearest_minimum(points: np.ndarray, minima: np.ndarray) -> np.ndarray:
    """Index of the minimum (0 flat, 1 sharp) nearest to each point."""
    d = ((points[:, None, :] - minima[None]) ** 2).sum(-1)
    return d.argmin(1)


# --- sweeps to frames ---------------------------------------------------------------------------


def _workers(session) -> int | None:
    """Parallel workers: the sweep's default (one per core on a CPU; as many as fit in a GPU's
    memory, see :func:`run_gib`); none at the smoke profile, whose seconds-long runs would take
    longer to start worker processes than to compute."""
    return 1 if session.profile == "smoke" else None


def run_gib(session) -> float:
    """GPU memory of one run, GiB: WideResNet-28-10 at batch 128 (bfloat16 activations) about
    12; the small networks about 1."""
    return 12.0 if session.p.network == "wrn" else 1.0


def train_networks(session, configs: Sequence[Mapping[str, Any]], desc: str = "HA-SGD training"
                   ) -> list[Entry]:
    """Train (or read back) networks in parallel workers, one torch thread each."""
    from ..study.sweep import run_sweep

    return run_sweep(train_run, configs, session.store, desc=desc, device=str(session.torch_device),
                     workers=_workers(session), run_gib=run_gib(session))


def evaluate_networks(session, configs: Sequence[Mapping[str, Any]],
                      points: Sequence[Mapping[str, Any]], instances: int, n_test: int | None,
                      calib_images: int, desc: str = "hardware instances"
                      ) -> tuple[pd.DataFrame, list[Entry]]:
    """Test every network at every point on ``instances`` hardware instances.

    Returns:
        ``(table, entries)``: one row per network, point and instance, with the network's
        ``train_sigma``, ``train_shift`` and ``samples``, the point's ``sigma``, ``shift``,
        ``fold`` and ``bits``, the ``instance`` and its ``accuracy`` in percent.
    """
    from ..study.sweep import run_sweep

    if not any(pt["bits"] for pt in points):
        calib_images = 0  # no ADC: the calibration set plays no part (nor in the key)
    evals = [{"train": dict(c), "profile": session.profile, "points": [dict(p) for p in points],
              "instances": int(instances), "n_test": n_test, "calib_images": int(calib_images),
              "torch_device": str(session.torch_device.type)} for c in configs]
    entries = run_sweep(evaluate_run, evals, session.store, desc=desc,
                        device=str(session.torch_device), workers=_workers(session),
                        run_gib=run_gib(session))
    rows = []
    for c, e in zip(configs, entries):
        acc = np.asarray(e["accuracy"])
        for j, pt in enumerate(points):
            for i in range(acc.shape[1]):
                rows.append({"train_sigma": c["train_sigma"], "train_shift": c["train_shift"],
                             "samples": c["samples"], **pt, "instance": i,
                             "accuracy": 100 * float(acc[j, i])})
    return pd.DataFrame(rows), entries


def hessian_traces(session, configs: Sequence[Mapping[str, Any]], images: int, probes: int,
                   seed: int = 0) -> tuple[pd.DataFrame, list[Entry]]:
    """Hutchinson traces of every network (one row each), in parallel workers."""
    from ..study.sweep import run_sweep

    cfgs = [{"train": dict(c), "profile": session.profile, "images": int(images),
             "probes": int(probes), "seed": int(seed), "torch_device": str(session.torch_device.type)}
            for c in configs]
    entries = run_sweep(hessian_run, cfgs, session.store, desc="Hutchinson traces",
                        device=str(session.torch_device), workers=_workers(session),
                        run_gib=run_gib(session))
    rows = [{"train_sigma": c["train_sigma"], "train_shift": c["train_shift"],
             "samples": c["samples"], **{k: float(e[k]) for k in
                                         ("trace", "trace_se", "weighted", "weighted_se", "loss")}}
            for c, e in zip(configs, entries)]
    return pd.DataFrame(rows), entries


def summarize(table: pd.DataFrame, by: Iterable[str]) -> pd.DataFrame:
    """Per group: the mean accuracy over chips, its standard deviation (the figures' error
    bars: the spread over chips), the count and the standard error of the mean."""
    out = (table.groupby(list(by)).accuracy.agg(["mean", "std", "count"]).reset_index()
           .fillna({"std": 0.0}))
    out["se"] = out["std"] / np.sqrt(out["count"])
    return out


def adc_drops(summary: pd.DataFrame, bits: int) -> pd.Series:
    """Per network (``train_sigma``, ``samples``), the noise-free accuracy lost by quantizing
    every crossbar output with ``bits``-bit ADCs."""
    clean = summary[summary.sigma == 0]
    full = clean[clean.bits == 0].set_index(["train_sigma", "samples"])["mean"]
    low = clean[clean.bits == bits].set_index(["train_sigma", "samples"])["mean"]
    return (full - low).rename("drop")



def training_curves(configs: Sequence[Mapping[str, Any]], entries: Sequence[Entry]
                    ) -> pd.DataFrame:
    """Per network and epoch: cumulative training time (s), noise-free accuracy and accuracy
    at the training level (mean and std over the curve's instances), in percent."""
    rows = []
    for c, e in zip(configs, entries):
        spent = np.cumsum(np.asarray(e["epoch_time_s"]))
        noisy = 100 * np.asarray(e["curve_noisy"])
        for k in range(len(spent)):
            rows.append({"train_sigma": c["train_sigma"], "train_shift": c["train_shift"],
                         "samples": c["samples"], "epoch": k + 1, "time_s": float(spent[k]),
                         "clean": 100 * float(e["curve_clean"][k]),
                         "noisy": float(noisy[k].mean()), "noisy_std": float(noisy[k].std())})
    return pd.DataFrame(rows)


def crossbar_table(model: torch.nn.Module) -> pd.DataFrame:
    """Per crossbar: ``max|W|``, ``max|b|``, the range-matched ``s`` and the dynamic range under
    both folding rules (Fig. 5)."""
    rows = []
    for i, layer in enumerate(crossbar_layers(model)):
        s, r = folding_scale(layer, "range")
        _, r1 = folding_scale(layer, "unit")
        rows.append({"crossbar": i + 1, "shape": "x".join(map(str, layer.weight.shape)),
                     "max|W|": float(layer.weight.detach().abs().max()),
                     "max|b|": (float(layer.bias.detach().abs().max())
                                if layer.bias is not None else 0.0),
                     "s (range-matched)": float(s), "range, s matched": float(r),
                     "range, s = 1": float(r1)})
    return pd.DataFrame(rows)


def samples_table(configs: Sequence[Mapping[str, Any]], entries: Sequence[Entry],
                  summary: pd.DataFrame, sigma: float, top: float) -> pd.DataFrame:
    """The L study: per L, the training time, its ratio to L = 1's, the final accuracy at the
    training level ``sigma`` and at the highest test level ``top``, and the gains over L = 1."""
    rows = []
    for c, e in zip(configs, entries):
        s = summary[summary.samples == c["samples"]].set_index("sigma")["mean"]
        rows.append({"L": c["samples"], "training time (s)": float(np.sum(e["epoch_time_s"])),
                     "accuracy at q (%)": float(s.get(sigma, np.nan)),
                     "accuracy at max p (%)": float(s.get(top, np.nan))})
    t = pd.DataFrame(rows).sort_values("L").reset_index(drop=True)
    base = t.iloc[0]
    t["time / time at L = 1"] = t["training time (s)"] / base["training time (s)"]
    t["gain at q (points)"] = t["accuracy at q (%)"] - base["accuracy at q (%)"]
    t["gain at max p (points)"] = t["accuracy at max p (%)"] - base["accuracy at max p (%)"]
    extra = t["training time (s)"] - base["training time (s)"]
    t["gain at q per extra second"] = t["gain at q (points)"] / extra.where(extra > 0)
    return t[["L", "training time (s)", "time / time at L = 1", "accuracy at q (%)",
              "gain at q (points)", "accuracy at max p (%)", "gain at max p (points)",
              "gain at q per extra second"]]


def adc_range_table(configs: Sequence[Mapping[str, Any]], entries: Sequence[Entry],
                    calib_images: int, bits: int) -> pd.DataFrame:
    """Per network and crossbar: the calibrated ADC range and its step at ``bits`` bits."""
    rows = []
    for c, e in zip(configs, entries):
        model = network_from(e.result, c)
        xc, _ = load_dataset(c["dataset"], True, calib_images, c["seed"] + 1)
        adc = ADC(bits).calibrate(model, xc)
        for i, (lo, hi) in enumerate(adc.ranges):
            rows.append({"q": c["train_sigma"], "L": c["samples"], "crossbar": i + 1,
                         "min": lo, "max": hi,
                         f"step at {bits} bits": adc.step_and_zero(lo, hi)[0]})
    return pd.DataFrame(rows)




# --- claim readings: what each scorecard rule reads --------------------------------------------


def _stat(row: Mapping[str, Any]) -> Stat:
    """The mean over chips of one summary row and its standard error."""
    return Stat(float(row["mean"]), float(row["se"]), int(row["count"]))


def _gain(a: Stat, b: Stat) -> Stat:
    """The difference of two independent means (``a - b``) and its standard error."""
    return Stat(a.mean - b.mean, math.hypot(a.se, b.se), min(a.n, b.n))


def readings_toy(toy: Entry) -> dict[str, tuple[dict, str]]:
    """Fig. 6 on the toy loss: does HA-SGD leave the sharp minimum from every start where
    gradient descent ends in it? Does the second-order expansion hold?"""
    gd = nearest_minimum(toy["gd_end"], toy["minima"])
    ha = nearest_minimum(toy["hasgd_end"], toy["minima"])
    trapped = gd == 1
    gap = np.abs(np.asarray(toy["mc_increase"]) / np.asarray(toy["taylor_increase"]) - 1)
    return {
        "hasgd.fig6.toy_flat_minimum": (
            {"trapped": int(trapped.sum()), "escaped": int((ha[trapped] == 0).sum())},
            f"{int((ha[trapped] == 0).sum())} of {int(trapped.sum())} starts where gradient "
            "descent ends sharp"),
        "hasgd.fig6.expected_loss_expansion": (
            {"value": float(gap.max())}, "largest relative gap over the two minima"),
    }


def readings_traces(traces: pd.DataFrame, probes: int) -> dict[str, tuple[dict, str]]:
    """Fig. 6 on the trained networks: the Hessian traces (Hutchinson, ``probes`` probes),
    ordered by training level q."""
    t = traces.sort_values("train_sigma")
    qs = "q = " + ", ".join(f"{q:g}" for q in t.train_sigma)
    return {
        f"hasgd.fig6.{name}": ({"trace": [Stat(float(a), float(b), int(probes)) for a, b in
                                          zip(t[col], t[col + "_se"])]}, qs)
        for name, col in (("hessian_trace_lower", "trace"), ("weighted_trace_lower", "weighted"))
    }


def network_label(p: Any) -> str:
    """The chapter's network, in words (``MLP 784-256-256-10``, ``WideResNet-28-10``)."""
    return {"mlp": f"MLP 784-{'-'.join(map(str, p.hidden_widths))}-10", "cnn": "small CNN",
            "wrn": f"WideResNet-{p.wrn_depth}-{p.wrn_width}"}[p.network]


def readings_noise_level(table: pd.DataFrame, fold: str) -> dict[str, tuple[dict, str]]:
    """Fig. 7 and the headline gain: accuracy of every network (training level q) at every
    test level p, under the folding rule ``fold``; Fig. 5: range-matched s against s = 1."""
    summary = summarize(table, ["fold", "train_sigma", "sigma"])
    fig7 = summary[summary.fold == fold]
    top = float(fig7.sigma.max())
    std = fig7[fig7.train_sigma == 0].set_index("sigma")
    rest = fig7[fig7.train_sigma != 0]
    best = max(rest.itertuples(), key=lambda r: r.mean - std.loc[r.sigma, "mean"])
    best_s, best_std = _stat(best._asdict()), _stat(std.loc[best.sigma])
    gain = _gain(best_s, best_std)
    at_top = fig7[fig7.sigma == top].sort_values("train_sigma")
    clean = fig7[fig7.sigma == 0].sort_values("train_sigma")["mean"].to_numpy()
    wide = table[table.sigma > 0].pivot_table(index=["train_sigma", "sigma", "instance"],
                                              columns="fold", values="accuracy")
    diffs = []
    if {"range", "unit"} <= set(wide.columns):
        for _, g in wide.groupby(level=[0, 1]):
            diffs.append(Stat.of(g["range"] - g["unit"]))
    gain_text = (f"+{gain.mean:.1f} points at p={best.sigma:g} by q={best.train_sigma:g}; the "
                 f"standard network loses {std.loc[0.0, 'mean'] - std.loc[top, 'mean']:.1f} "
                 f"points at p={top:g}")
    return {
        "hasgd.intro.gain_analog": (
            {"value": gain.mean, "standard_clean": _stat(std.loc[0.0]),
             "standard_top": _stat(std.loc[top]), "best": best_s, "best_standard": best_std},
            gain_text),
        "hasgd.fig7.resilience_order": (
            {"at_top": [_stat(r) for _, r in at_top.iterrows()]},
            f"at p={top:g}, q = " + ", ".join(f"{q:g}" for q in at_top.train_sigma)),
        "hasgd.fig7.clean_cost": (
            {"cost": float(clean[0] - clean[-1]),
             "max_rise": float(np.max(np.diff(clean))) if len(clean) > 1 else math.nan},
            "noise-free accuracy by q: " + ", ".join(f"{a:.2f}" for a in clean)),
        "hasgd.fig5.range_matched_s": (
            {"diffs": diffs}, f"range minus unit, paired over chips, {len(diffs)} (network, p) "
                              "pairs"),
    }


def readings_shift(summary: pd.DataFrame) -> dict[str, tuple[dict, str]]:
    """Fig. 8: at each nonzero test shift, the network trained with that shift, the best of the
    others, and the network trained without shift."""
    with_, other, without, parts = [], [], [], []
    for m in sorted(set(summary["shift"]) - {0.0}):
        at = summary[summary["shift"] == m].set_index("train_shift")
        if m not in at.index or 0.0 not in at.index:
            continue
        rivals = at.drop(index=m)
        top = rivals.loc[rivals["mean"].idxmax()]
        with_.append(_stat(at.loc[m]))
        other.append(_stat(top))
        without.append(_stat(at.loc[0.0]))
        parts.append(f"shift {m:g}")
    return {"hasgd.fig8.shift_compensated": (
        {"trained_with": with_, "best_other": other, "trained_without": without},
        "; ".join(parts))}


def readings_adc(summary: pd.DataFrame, bits: Sequence[int], samples: int
                 ) -> dict[str, tuple[dict, str]]:
    """Fig. 9 and the ADC headline: noise-free drops from quantizing at each bit width, and the
    largest HA-SGD gain with low-resolution ADCs (B <= 4) against the largest without."""
    clean = summary[summary.sigma == 0]
    full = clean[clean.bits == 0].set_index(["train_sigma", "samples"])["mean"]
    base_drop, base_acc, other_drop = [], [], []
    for b in sorted(bits):
        low = clean[clean.bits == b].set_index(["train_sigma", "samples"])["mean"]
        d = (full - low).dropna()
        std = d[d.index.get_level_values("train_sigma") == 0]
        rest = d[d.index.get_level_values("train_sigma") > 0]
        base_drop.append(float(std.iloc[0]) if len(std) else math.nan)
        base_acc.append(float(low[low.index.get_level_values("train_sigma") == 0].iloc[0])
                        if len(std) else math.nan)
        other_drop.append(float(rest.max()) if len(rest) else math.nan)
    main = summary[summary.samples == samples]

    def best_gain(rows: pd.DataFrame) -> Stat:
        std = rows[rows.train_sigma == 0].set_index(["sigma", "bits"])
        out = None
        for r in rows[rows.train_sigma != 0].itertuples():
            g = _gain(_stat(r._asdict()), _stat(std.loc[(r.sigma, r.bits)]))
            if out is None or g.mean > out.mean:
                out = g
        return out or Stat(math.nan, math.nan, 0)

    with_adc = best_gain(main[main.bits.isin([b for b in bits if b <= 4])])
    without = best_gain(main[main.bits == 0])
    return {
        "hasgd.fig9.adc_drop_reduced": (
            {"base_drop": base_drop, "base_accuracy": base_acc, "drops": other_drop},
            "bits " + ", ".join(map(str, sorted(bits)))),
        "hasgd.intro.gain_adc": (
            {"value": with_adc.mean, "gain_adc": with_adc, "gain_float": without},
            f"with ADCs (B <= 4): +{with_adc.mean:.1f}; without: +{without.mean:.1f}"),
    }
