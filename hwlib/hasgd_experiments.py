"""The HA-SGD chapter's stored experiments.

* :func:`train_run`: one network trained with HA-SGD at a training level q (sigma, shift, L);
  the trained weights are part of the stored result (npz arrays), so that every notebook of the
  chapter evaluates the same networks without retraining them.
* :func:`evaluate_run`: one trained network tested on hardware instances at a list of test
  points (noise level p, device shift, folding rule, ADC bits).
* :func:`hessian_run`: Hutchinson's estimate of the Hessian trace at the minimum found.
* :func:`toy_run`: gradient descent and HA-SGD on a two-dimensional loss with a sharp and a
  flat minimum, and the check of the second-order expansion of the expected loss.

Training runs are shared across notebooks: a notebook asks for a network by its full training
config (:func:`train_config`), and the store returns the one already trained. The sweeps,
summaries and claims that the notebooks show live in :mod:`hwlib.hasgd_study`, outside the
code fingerprint of these results.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch

from .analog import ADC, GaussianPerturbation, accuracy_on_instances
from .data import load_dataset, random_crop_flip
from .errors import check_int
from .hasgd import (HASGD, build_network, hessian_trace, make_optimizer, range_weights,
                    sharp_and_flat, train)
from .store import ResultStore, experiment, load_state_arrays, state_arrays

#: The keys of a training config that come from the notebook's parameters.
TRAIN_KNOBS = ("dataset", "network", "hidden_widths", "wrn_depth", "wrn_width", "epochs",
               "n_train", "minibatch_size", "optimizer", "learning_rate", "weight_decay",
               "augment", "fold", "curve_images", "curve_instances", "seed")
#: Seed of the first test instance; instance i uses INSTANCE_SEED + i (the same chips for
#: every network, so that networks are compared on the same hardware).
INSTANCE_SEED = 1


# --- configs --------------------------------------------------------------------------------


def train_config(params: Any, train_sigma: float, train_shift: float = 0.0, samples: int = 1,
                 device: str = "cpu") -> dict[str, Any]:
    """The full config of one training run.

    Args:
        params: the session's resolved parameters (``S.p``), holding every :data:`TRAIN_KNOBS`.
        train_sigma: sigma of the training distribution q (fraction of the dynamic range).
        train_shift: the device shift of q (same unit).
        samples: L, perturbation samples per mini-batch.
        device: ``cpu`` or ``cuda``.
    """
    GaussianPerturbation(train_sigma, train_shift)  # checks the values
    check_int("samples", samples, 1)
    cfg = {k: getattr(params, k) for k in TRAIN_KNOBS}
    cfg.update(train_sigma=float(train_sigma), train_shift=float(train_shift),
               samples=int(samples), device=device)
    return cfg


def point(sigma: float, shift: float = 0.0, fold: str = "range", bits: int = 0
          ) -> dict[str, Any]:
    """One test condition: noise level p, device shift, folding rule, ADC bits (0: no ADC)."""
    GaussianPerturbation(sigma, shift)
    if bits:
        ADC(bits)
    return {"sigma": float(sigma), "shift": float(shift), "fold": fold, "bits": int(bits)}


# --- training -------------------------------------------------------------------------------


def _device(config: Mapping[str, Any]) -> torch.device:
    return torch.device(config.get("device", "cpu"))


@experiment("hasgd.train_run")
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network with HA-SGD (Algorithm 1) and keep its weights.

    Args:
        config: see :func:`train_config`: the data (``dataset``, ``n_train``), the network
            (``network``, ``hidden_widths``, ``wrn_depth``, ``wrn_width``), the optimizer
            (``optimizer``, ``learning_rate`` with cosine decay to zero over all steps,
            ``weight_decay``, ``minibatch_size``, ``epochs``, ``augment``), the training
            distribution q (``train_sigma``, ``train_shift``, ``fold``), L (``samples``), the
            per-epoch curves (``curve_images`` test images, ``curve_instances`` instances at the
            training level), ``seed`` and ``device``.

    Returns:
        The state dict (``state:<name>`` arrays), ``epoch_time_s`` (training steps only),
        ``train_loss`` (mean HA-SGD loss per epoch), ``curve_clean`` (noise-free test accuracy
        per epoch), ``curve_noisy`` (epochs x instances, at the training level) and
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
    opt = make_optimizer(model, config["optimizer"], config["learning_rate"],
                         config["weight_decay"])
    steps = config["epochs"] * math.ceil(len(y) / config["minibatch_size"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    q = GaussianPerturbation(config["train_sigma"], config["train_shift"])
    step = HASGD(model, opt, q, config["samples"], config["fold"], seed=seed)
    seeds = [INSTANCE_SEED + i for i in range(config["curve_instances"])]
    clean, noisy = [], []

    def on_epoch(_):
        clean.append(float(accuracy_on_instances(model, xe, ye, GaussianPerturbation(), [0])[0]))
        noisy.append(accuracy_on_instances(model, xe, ye, q, seeds, config["fold"]))

    times, losses = train(step, x, y, config["epochs"], config["minibatch_size"], seed, sched,
                          random_crop_flip if config["augment"] else None, on_epoch,
                          desc=f"q sigma={q.sigma:g} shift={q.shift:g} L={step.samples}")
    return {**state_arrays(model), "epoch_time_s": np.array(times), "train_loss": np.array(losses),
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
    store = ResultStore(config["profile"])
    entry = store.get_or_compute(train_run, config["train"], device=str(_device(config)))
    return network_from(entry.result, config["train"], _device(config))


# --- evaluation -----------------------------------------------------------------------------


@experiment("hasgd.evaluate_run")
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
        out.append(accuracy_on_instances(model, xt, yt,
                                         GaussianPerturbation(pt["sigma"], pt["shift"]), seeds,
                                         pt["fold"], adc))
    return {"accuracy": np.stack(out)}


@experiment("hasgd.hessian_run")
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


# --- the two-dimensional intuition ----------------------------------------------------------


@experiment("hasgd.toy_run")
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
