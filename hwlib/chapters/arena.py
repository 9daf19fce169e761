"""The arena: every training method on every device family, on one benchmark (this book's).

Each paper tests its own method on its own hardware. The arena asks the designer's questions
across them: does training on the distribution (S-DDHR's idea) help an SRAM at low voltage,
does HA-SGD help MRAM arrays, which method is worth its training cost on which device? Every
piece is the library's: the families of :mod:`hwlib.hardware` behind one interface, the
methods of :mod:`hwlib.methods.training`, :func:`~hwlib.methods.evaluation.accuracy_on_chips`.

Sections, as in the other chapters: configs (the grid: :data:`DEVICES`, :data:`METHODS`, one
line each); stored experiments (:func:`train_run`, :func:`calibrate`, :func:`evaluate_run`);
sweeps to frames (:func:`calibrate_devices`, :func:`run_grid`, :func:`heat_table`); claim
readings (:func:`readings_findings`).

The grid. On one dataset (Fashion-MNIST at the ``book`` profile), a ReLU MLP (784-256-256-10)
and its binarized twin (for MRAM arrays, which compute XNOR products only) are trained by every
method that applies, at three severities per device, with several training seeds, and tested
on the same test chips. A device's severities are *calibrated*: the levels at which the
standard network loses ``drops`` points (2, 10 and 30) on held-out training images.

Methods in hwlib's terms (:data:`METHODS`): a fresh chip per step (``sampling``) is HA-SGD with
L = 1 and q = p, the same method, so it appears once; HA-SGD with L = 4 averages four chips per
step; ``ddhr`` trains one network per test chip on that chip (the upper reference); ``fixed``
trains on chip z_0, never a test chip; ``parametric`` samples the family's analytical moments
(MRAM arrays: PS-DDHR); ``erasure`` trains with erasures at p_e = 2p (SRAM, bit masking at p).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import presets
from ..data import DATASETS, load_dataset
from ..errors import ParameterError, check_int
from ..hardware.base import Hardware, Ideal
from ..hardware.sram import SRAMFaults
from ..methods.evaluation import accuracy, accuracy_on_chips
from ..methods.training import (HASGD, FreshChip, Method, OneChip, Parametric, Standard, Step,
                                cosine_schedule, fit, optimizer_for, steps_per_epoch)
from ..models import resnets
from ..models.binary import BinaryMLP, VGGBinaryNet, clip_latent_weights
from ..models.checkpoint import load_state_arrays, state_arrays
from ..models.mlp import MLP, Normalize
from ..study.rules import Stat
from ..study.store import current_store, experiment

# --- configs: the grid ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One device family at a severity set by one number.

    Attributes:
        label: the name on the page.
        severity: what the severity number is, with its unit.
        build: ``build(severity) -> Hardware``.
        lo: the smallest severity the calibration searches.
        hi: the largest.
        binary: computes the binarized twin (XNOR arrays) instead of the ReLU MLP.
        calibrated_adc: ADC bits whose ranges are calibrated on the network (0: none).
    """

    label: str
    severity: str
    build: Callable[[float], Hardware]
    lo: float
    hi: float
    binary: bool = False
    calibrated_adc: int = 0

    def hardware(self, severity: float, model: nn.Module | None = None,
                 calib: torch.Tensor | None = None) -> Hardware:
        """The hardware at ``severity``; with ADCs, their ranges calibrated on ``model``'s
        clean outputs for ``calib`` (as :class:`hwlib.hardware.crossbar.ADC` does)."""
        hw = self.build(float(severity))
        if self.calibrated_adc:
            if model is None or calib is None:
                raise ParameterError(f"{self.label}: the ADC needs a model and calibration "
                                     "images")
            hw.adc.calibrate(model, calib)
        return hw


#: The devices, one line each (add one here and rerun the chapter's notebook).
DEVICES: dict[str, Device] = {
    "mram": Device("MRAM arrays", "k, multiple of the nominal sigma/mu = 0.05 of R_P and R_AP",
                   lambda k: presets.sddhr_mram(scale=k), 0.05, 20.0, binary=True),
    "sram": Device("SRAM, bit masking", "p, bit-cell fault probability (weights, activations)",
                   lambda p: presets.sram_65nm(p=p), 1e-5, 0.9),
    "crossbar": Device("Analog crossbars", "sigma, perturbation std / dynamic range",
                       lambda s: presets.hasgd_crossbar(sigma=s), 0.002, 2.0),
    "crossbar_adc4": Device("Analog crossbars, 4-bit ADC", "sigma, perturbation std / range",
                            lambda s: presets.hasgd_crossbar(sigma=s, adc_bits=4), 0.0, 2.0,
                            calibrated_adc=4),
    "memristive": Device("Memristive pairs", "sigma/B, programming noise / level spacing",
                         lambda s: presets.babu_rajendran(sigma_over_b=s), 0.01, 100.0),
}


@dataclass(frozen=True)
class MethodSpec:
    """One training method of the arena.

    Attributes:
        label: the name on the page.
        make: ``make(device, hardware, chip) -> (Method, training hardware)``, or ``None``
            where the method does not apply to the device.
        per_chip: one network per test chip (DDHR).
        cost: chips computed per step (the expected training cost in clean steps, roughly).
    """

    label: str
    make: Callable[[str, Hardware, int], tuple[Method, Hardware] | None]
    per_chip: bool = False
    cost: int = 1


#: The seed of Fixed's training chip z_0 (never a test chip: those are 1..test_chips).
FIXED_CHIP = 10_000


def _parametric(device: str, hw: Hardware, chip: int):
    try:
        hw.moments(False)
    except ParameterError:
        return None  # the family has no analytical moments
    return Parametric(False), hw


def _erasure(device: str, hw: Hardware, chip: int):
    if not isinstance(hw, SRAMFaults) or hw.fault_config.model != "bm":
        return None
    c = hw.fault_config
    return FreshChip(), SRAMFaults(model="erasure", rate=min(1.0, 2 * c.rate),
                                   targets=c.targets)


#: The methods, one line each.
METHODS: dict[str, MethodSpec] = {
    "standard": MethodSpec("Standard", lambda d, hw, z: (Standard(), Ideal())),
    "ddhr": MethodSpec("DDHR (the test chip)", lambda d, hw, z: (OneChip(z), hw), per_chip=True),
    "fixed": MethodSpec("Fixed (chip z0)", lambda d, hw, z: (OneChip(FIXED_CHIP), hw)),
    "sampling": MethodSpec("Sampling = HA-SGD L=1", lambda d, hw, z: (FreshChip(), hw)),
    "hasgd4": MethodSpec("HA-SGD L=4", lambda d, hw, z: (HASGD(4), hw), cost=4),
    "parametric": MethodSpec("Parametric (PS-DDHR)", _parametric),
    "erasure": MethodSpec("Erasure p_e = 2p", _erasure),
}

#: The three severities: the standard network's loss in points at each.
DROPS = (2.0, 10.0, 30.0)
#: Images per forward pass in evaluations.
EVAL_BATCH = 2000
#: Seed of the fixed split of the training set into training and calibration images.
SPLIT_SEED = 1234
#: The knobs every training run shares.
TRAIN_KNOBS = ("dataset", "network", "hidden_widths", "width", "epochs", "batch_size", "lr",
               "n_train", "n_calib", "n_test", "precision", "torch_device", "profile")
#: The networks: the ReLU MLP and its binarized twin (``mlp``), or a small ResNet-18 and the
#: VGG-style BNN at the same channel multiplier (``resnet``, the paper profile's, CIFAR-10).
NETWORKS = ("mlp", "resnet")


def check_grid(devices: Sequence[str], methods: Sequence[str]) -> None:
    """One line for an unknown device or method."""
    for d in devices:
        if d not in DEVICES:
            raise ParameterError(f"device {d!r}: must be one of {', '.join(DEVICES)}")
    for m in methods:
        if m not in METHODS:
            raise ParameterError(f"method {m!r}: must be one of {', '.join(METHODS)}")
    if not len(devices) or not len(methods):
        raise ParameterError("devices and methods: each must name at least one")


def settings(session: Any) -> dict[str, Any]:
    """The training settings a notebook's session gives every run (its knobs, torch device
    and profile: the store the standard networks are read back from)."""
    p = session.params
    if p["network"] not in NETWORKS:
        raise ParameterError(f"network={p['network']!r}: must be one of {', '.join(NETWORKS)}")
    out = {k: p[k] for k in TRAIN_KNOBS if k not in ("torch_device", "profile")}
    out["hidden_widths"] = [int(w) for w in out["hidden_widths"]]
    out["torch_device"] = session.torch_device.type
    out["profile"] = session.store.profile
    return out


def standard_config(common: Mapping[str, Any], binary: bool, seed: int) -> dict[str, Any]:
    """The standard network (ideal hardware) of one training seed: the ReLU MLP or its
    binarized twin."""
    return {**common, "binary": bool(binary), "device": None, "severity": 0.0,
            "method": "standard", "chip": 0, "seed": int(seed), "test_severities": [],
            "test_chips": []}


# --- data and networks --------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, n_train: int, n_calib: int, n_test: int):
    x, y = load_dataset(dataset, True)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    if n_train + n_calib > len(y):
        raise ParameterError(f"n_train + n_calib = {n_train + n_calib}: the {dataset} training "
                             f"set has {len(y)} images")
    tr, ca = perm[:n_train], perm[n_train:n_train + n_calib]
    xt, yt = load_dataset(dataset, False, min(n_test, 10_000) if n_test else None, 0)
    return (x[tr], y[tr]), (x[ca], y[ca]), (xt, yt)


def splits(config: Mapping[str, Any]):
    """``(train, calib, test)`` image/label pairs on the config's torch device: a fixed split
    of the training set into training and held-out calibration images, and the test set."""
    device = torch.device(config["torch_device"])
    parts = _splits(config["dataset"], int(config["n_train"]), int(config["n_calib"]),
                    int(config["n_test"]))
    return tuple((x.to(device), y.to(device)) for x, y in parts)


def build_network(config: Mapping[str, Any]) -> nn.Module:
    """The config's network (``mlp``: the ReLU MLP; ``resnet``: ResNet-18 at ``width`` with a
    digital input normalization), or its binarized twin for XNOR arrays, seeded from the
    config."""
    torch.manual_seed(int(config["seed"]))
    info = DATASETS[config["dataset"]]
    c, h, _ = info.shape
    if config["network"] == "mlp":
        hidden = tuple(config["hidden_widths"])
        if config["binary"]:
            return BinaryMLP(int(np.prod(info.shape)), hidden, info.classes)
        return MLP(info.shape, hidden, info.classes, (info.mean, info.std))
    if config["network"] == "resnet":
        if config["binary"]:
            return VGGBinaryNet(info.classes, float(config["width"]), c, h)
        return nn.Sequential(Normalize(info.mean, info.std),
                             resnets.build("resnet18", info.classes, float(config["width"]), c))
    raise ParameterError(f"network={config['network']!r}: must be one of {', '.join(NETWORKS)}")


def _standard_network(config: Mapping[str, Any]) -> nn.Module:
    """The stored standard network a config needs (trained now if the store lacks it)."""
    std = standard_config({k: config[k] for k in TRAIN_KNOBS}, config["binary"],
                          int(config["seed"]))
    entry = current_store(config["profile"]).get_or_compute(train_run, std,
                                                            device=config["torch_device"])
    model = build_network(std)
    return load_state_arrays(model, entry.result).to(config["torch_device"]).eval()


def _workers(session: Any) -> int | None:
    """None (the sweep's default) but at the smoke profile, whose second-long runs would take
    longer to start worker processes than to compute."""
    return 1 if session.store.profile == "smoke" else None


def _hardware(device: str, severity: float, model: nn.Module, calib: torch.Tensor) -> Hardware:
    return DEVICES[device].hardware(severity, model, calib)


# --- stored experiments -------------------------------------------------------------------------


@experiment("arena.train_run", outputs=("accuracy", "clean", "epoch_time_s"))
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network by one method on one device at one severity; test it on chips.

    Args:
        config: the settings (:data:`TRAIN_KNOBS`), ``binary`` (the binarized twin),
            ``device`` and ``severity`` (``None``/0 for standard training), ``method``,
            ``chip`` (DDHR's training and test chip), ``seed``, ``test_severities`` and
            ``test_chips`` (the chips each is tested on; DDHR: its own chip).

    Returns:
        ``accuracy`` (test severities x chips, fractions), ``clean`` (accuracy on ideal
        hardware), ``epoch_time_s``; for standard training also the network's weights
        (``state.<name>``), which calibration and the baselines read back.
    """
    (x, y), (xc, _), (xt, yt) = splits(config)
    spec = METHODS[config["method"]]
    if config["method"] == "standard" and config["device"] is not None:
        # the standard network tested on a device: read back, not trained again
        model = _standard_network(config)
        std = standard_config({k: config[k] for k in TRAIN_KNOBS}, config["binary"],
                              int(config["seed"]))
        times = current_store(config["profile"]).get_or_compute(train_run, std)["epoch_time_s"]
        return {"clean": accuracy(model, xt, yt, EVAL_BATCH, config["precision"]),
                "epoch_time_s": np.asarray(times),
                "accuracy": _test(config, model, xc, xt, yt)}
    model = build_network(config).to(x.device)
    if config["method"] == "standard":
        method, train_hw = Standard(), Ideal()
    else:
        ref = _standard_network(config)  # the ADC ranges come from the standard network
        hw = _hardware(config["device"], config["severity"], ref, xc)
        made = spec.make(config["device"], hw, int(config["chip"]))
        if made is None:
            raise ParameterError(f"method {config['method']!r} does not apply to device "
                                 f"{config['device']!r}")
        method, train_hw = made
    opt = optimizer_for(model, "adam", config["lr"])
    sched = cosine_schedule(opt, config["epochs"], steps_per_epoch(len(y), config["batch_size"]))
    step = Step(model, opt, train_hw, method,
                generator=torch.Generator(x.device).manual_seed(int(config["seed"]) + 7),
                after_step=clip_latent_weights if config["binary"] else None,
                precision=config["precision"], channels_last=config["network"] == "resnet")
    hist = fit(step, x, y, config["epochs"], config["batch_size"], int(config["seed"]), sched,
               desc=f"{config['method']} {config['device']} {config['severity']:.3g}")
    model.eval()
    out: dict[str, Any] = {"clean": accuracy(model, xt, yt, EVAL_BATCH, config["precision"]),
                           "epoch_time_s": np.array(hist["epoch_time_s"]),
                           "accuracy": _test(config, model, xc, xt, yt)}
    if config["method"] == "standard":
        out.update(state_arrays(model))
    return out


def _test(config: Mapping[str, Any], model: nn.Module, xc, xt, yt) -> np.ndarray:
    """Accuracies (test severities x test chips) of a trained network."""
    rows = [accuracy_on_chips(model, _hardware(config["device"], s, model, xc), xt, yt,
                              config["test_chips"], EVAL_BATCH, config["precision"])
            for s in config["test_severities"]]
    return np.array(rows, dtype=float).reshape(len(config["test_severities"]),
                                               len(config["test_chips"]))


def search_levels(drop_at: Callable[[float], float], lo: float, hi: float, grid_points: int,
                  targets: Sequence[float], bisections: int, from_zero: bool = False
                  ) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """The severities at which a device costs ``targets`` points (the calibration's search).

    A coarse log-spaced grid of ``grid_points`` severities from ``lo`` to ``hi`` brackets each
    target; ``bisections`` halvings in log severity refine it. A target the grid never reaches
    takes the grid's end ``hi``, the worst the device gets within the searched range (its loss
    there is below the target, and the page says so); a second unreached target is NaN, as it
    would repeat that level. With ``from_zero`` (a device that may lose accuracy with no noise,
    an ADC alone), a target already lost at severity 0 gives 0.

    Args:
        drop_at: ``drop_at(severity)``, the loss in points there.

    Returns:
        ``(severities, achieved, grid, grid_drops)``: one severity and measured loss per
        target, and the coarse sweep.
    """
    grid = np.geomspace(lo, hi, int(grid_points))
    drops_grid = np.array([drop_at(float(s)) for s in grid])
    severities: list[float] = []
    achieved: list[float] = []
    for target in targets:
        if from_zero and drop_at(0.0) >= target:
            severities.append(0.0)  # the device loses more at no noise (an ADC alone)
            achieved.append(drop_at(0.0))
            continue
        above = np.nonzero(drops_grid >= target)[0]
        if not len(above):
            end = float(grid[-1])
            repeat = end in severities
            severities.append(math.nan if repeat else end)
            achieved.append(math.nan if repeat else float(drops_grid[-1]))
            continue
        k = int(above[0])
        a, b = (math.log(grid[k - 1]), math.log(grid[k])) if k > 0 else (
            math.log(lo) - 1.0, math.log(grid[0]))
        for _ in range(int(bisections)):
            mid = 0.5 * (a + b)
            if drop_at(math.exp(mid)) >= target:
                b = mid
            else:
                a = mid
        level = math.exp(0.5 * (a + b))
        severities.append(level)
        achieved.append(drop_at(level))
    return severities, achieved, grid, drops_grid


@experiment("arena.calibrate", outputs=("severities", "achieved", "grid", "grid_accuracy",
                                          "clean"))
def calibrate(config: dict[str, Any]) -> dict[str, Any]:
    """Calibrate a device's severities on the standard network (training seed ``seed``): the
    levels at which its mean accuracy over ``chips`` chips on the held-out calibration images
    lies ``drops`` points below its clean accuracy there (:func:`search_levels`; the same
    chips, seeds 1..chips, at every severity).

    Returns:
        ``severities`` (one per drop; the searched range's end where the device never loses
        that much, then NaN for any further such drop; 0 where the device's least severity
        already loses more), ``achieved`` (the drop measured there, points), ``grid`` and
        ``grid_accuracy`` (the coarse sweep, %), ``clean`` (%).
    """
    cfg = {k: config[k] for k in TRAIN_KNOBS}
    dev = DEVICES[config["device"]]
    model = _standard_network({**cfg, "binary": dev.binary, "seed": config["seed"]})
    _, (xc, yc), _ = splits(cfg)
    chips = list(range(1, int(config["chips"]) + 1))
    clean = 100 * accuracy(model, xc, yc, EVAL_BATCH, config["precision"])

    @functools.lru_cache(maxsize=None)
    def drop_at(s: float) -> float:
        hw = dev.hardware(s, model, xc)
        return clean - 100 * float(np.mean(accuracy_on_chips(
            model, hw, xc, yc, chips, EVAL_BATCH, config["precision"])))

    severities, achieved, grid, drops_grid = search_levels(
        drop_at, dev.lo if dev.lo > 0 else dev.hi * 1e-3, dev.hi, config["grid_points"],
        config["drops"], config["bisections"], from_zero=dev.lo == 0)
    return {"severities": np.array(severities), "achieved": np.array(achieved),
            "grid": grid, "grid_accuracy": clean - drops_grid, "clean": clean}


# --- sweeps to frames ---------------------------------------------------------------------------


def calibrate_devices(session: Any, common: Mapping[str, Any], devices: Sequence[str],
                      drops: Sequence[float] = DROPS, chips: int = 10, grid_points: int = 13,
                      bisections: int = 6, seed: int = 0):
    """Calibrate every device (standard networks trained first, in parallel workers).

    Returns:
        ``(table, severities, entries)``: a frame (device, drop, severity, achieved, reached:
        whether the device loses that much within its searched range), the severities per
        device (a list, one per drop), and the stored entries.
    """
    from ..study.sweep import run_sweep

    binaries = sorted({DEVICES[d].binary for d in devices})
    run_sweep(train_run, [standard_config(common, b, seed) for b in binaries], session.store,
              desc="standard networks", device=str(session.torch_device),
              workers=_workers(session))
    configs = [{**common, "device": d, "seed": int(seed), "drops": [float(x) for x in drops],
                "chips": int(chips), "grid_points": int(grid_points),
                "bisections": int(bisections)} for d in devices]
    entries = run_sweep(calibrate, configs, session.store, desc="calibration",
                        device=str(session.torch_device), workers=_workers(session))
    rows, sev = [], {}
    for d, e in zip(devices, entries):
        sev[d] = [float(s) for s in e["severities"]]
        for target, s, got in zip(drops, e["severities"], e["achieved"]):
            rows.append({"device": d, "drop": float(target), "severity": float(s),
                         "achieved": float(got),
                         "reached": bool(math.isfinite(s) and s < DEVICES[d].hi)})
    return pd.DataFrame(rows), sev, entries


def grid_configs(common: Mapping[str, Any], devices: Sequence[str], methods: Sequence[str],
                 severities: Mapping[str, Sequence[float]], seeds: Sequence[int],
                 test_chips: int, ddhr_chips: int | None = None, ddhr_seeds: Sequence[int] = (0,)
                 ) -> list[dict[str, Any]]:
    """Every training run of the grid. Each method trains at every calibrated severity of a
    device and is tested there; the networks trained at the middle severity are also tested at
    the others (the transfer row). DDHR trains one network per chip, for the first
    ``ddhr_chips`` test chips (default all), tested on that chip. Standard networks are tested
    at every severity of every device."""
    check_grid(devices, methods)
    check_int("test_chips", test_chips, 1)
    chips = list(range(1, test_chips + 1))
    own = chips[:check_int("ddhr_chips", ddhr_chips, 1)] if ddhr_chips else chips
    out = []
    for d in devices:
        dev, levels = DEVICES[d], [float(s) for s in severities[d]]
        usable = [s for s in levels if math.isfinite(s)]
        middle = sorted(usable)[len(usable) // 2] if usable else None
        for seed in seeds:
            if "standard" in methods:
                out.append({**standard_config(common, dev.binary, seed), "device": d,
                            "test_severities": usable, "test_chips": chips})
        for m in methods:
            if m == "standard":
                continue
            for s in usable:
                probe = METHODS[m].make(d, dev.build(s if s > 0 else 0.0), 1)
                if probe is None:
                    continue  # not defined on this family
                if METHODS[m].per_chip:
                    out += [{**common, "binary": dev.binary, "device": d, "severity": s,
                             "method": m, "chip": z, "seed": int(seed),
                             "test_severities": [s], "test_chips": [z]}
                            for seed in ddhr_seeds for z in own]
                else:
                    out += [{**common, "binary": dev.binary, "device": d, "severity": s,
                             "method": m, "chip": 0, "seed": int(seed),
                             "test_severities": usable if s == middle else [s],
                             "test_chips": chips}
                            for seed in seeds]
    return out


def run_grid(session: Any, configs: Sequence[Mapping[str, Any]]):
    """Train (or read back) every run of the grid in parallel workers.

    Returns:
        ``(frame, entries)``: one row per (run, test severity, chip): device, method, seed,
        train_severity, test_severity, level (0, 1, 2: the severity's index), chip, accuracy
        (%), clean (%), epoch_time_s (mean over epochs).
    """
    from ..study.sweep import run_sweep

    # the standard networks first: every other run reads one back
    plain = {(c["binary"], c["seed"]): standard_config({k: c[k] for k in TRAIN_KNOBS},
                                                       c["binary"], c["seed"])
             for c in configs}
    run_sweep(train_run, list(plain.values()), session.store, desc="standard networks",
              device=str(session.torch_device), workers=_workers(session))
    entries = run_sweep(train_run, configs, session.store, desc="arena",
                        device=str(session.torch_device), workers=_workers(session),
                        run_gib=2.0 if configs and configs[0]["network"] == "resnet" else 0.5)
    levels_of: dict[str, list[float]] = {}
    for c in configs:
        if c["method"] == "standard":
            levels_of[c["device"]] = sorted(set(c["test_severities"]))
    rows = []
    for c, e in zip(configs, entries):
        levels = {s: i for i, s in enumerate(levels_of.get(c["device"],
                                                           sorted(set(c["test_severities"]))))}
        for i, s in enumerate(c["test_severities"]):
            for j, z in enumerate(c["test_chips"]):
                rows.append({"device": c["device"], "method": c["method"], "seed": c["seed"],
                             "train_severity": c["severity"], "test_severity": s,
                             "level": levels[s], "chip": z,
                             "accuracy": 100 * float(e["accuracy"][i, j]),
                             "clean": 100 * float(e["clean"]),
                             "epoch_time_s": float(np.mean(e["epoch_time_s"]))})
    return pd.DataFrame(rows), entries


def heat_table(frame: pd.DataFrame, severities: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Per (device, method, level): accuracy at the trained severity (mean over seeds and
    chips, standard error over seeds, or over chips for DDHR), the share of the gap closed,
    ``(acc - acc_standard) / (acc_clean - acc_standard)``, with its standard error, and the
    training cost per epoch as a ratio to the standard network's."""
    rows = []
    for d, levels in severities.items():
        usable = sorted(s for s in levels if math.isfinite(s))
        f = frame[frame.device == d]
        std = f[f.method == "standard"]
        if std.empty:
            continue
        clean = std.groupby("seed").clean.first().mean()
        std_epoch = std.groupby("seed").epoch_time_s.first().mean()
        for lv, s in enumerate(usable):
            base = std[std.test_severity == s].groupby("seed").accuracy.mean()
            for m, g in f[(f.train_severity == s) & (f.test_severity == s)
                          | ((f.method == "standard") & (f.test_severity == s))].groupby("method"):
                unit = "chip" if METHODS[m].per_chip else "seed"
                per = g.groupby(unit).accuracy.mean()
                st = Stat.of(per.to_numpy())
                gap = clean - base.mean()
                share = (per - base.mean()) / gap if gap > 0 else per * math.nan
                sh = Stat.of(share.to_numpy())
                rows.append({"device": d, "level": lv, "severity": s, "method": m,
                             "accuracy": st.mean, "se": st.se, "n": st.n,
                             "share": sh.mean, "share_se": sh.se,
                             "cost": float(g.epoch_time_s.mean() / std_epoch),
                             "standard": float(base.mean()), "clean": float(clean)})
    return pd.DataFrame(rows)


def transfer_table(frame: pd.DataFrame, severities: Mapping[str, Sequence[float]],
                   method: str = "sampling") -> pd.DataFrame:
    """The extra row: ``method``'s networks trained at the middle severity, tested at every
    severity of their device (mean over seeds and chips, with the share of the gap closed)."""
    rows = []
    for d, levels in severities.items():
        usable = sorted(s for s in levels if math.isfinite(s))
        if len(usable) < 2:
            continue
        mid = usable[len(usable) // 2]
        f = frame[(frame.device == d)]
        std = f[f.method == "standard"]
        clean = std.groupby("seed").clean.first().mean()
        for lv, s in enumerate(usable):
            g = f[(f.method == method) & (f.train_severity == mid) & (f.test_severity == s)]
            if g.empty:
                continue
            per = g.groupby("seed").accuracy.mean()
            base = std[std.test_severity == s].accuracy.mean()
            share = (per - base) / (clean - base) if clean > base else per * math.nan
            st, sh = Stat.of(per.to_numpy()), Stat.of(share.to_numpy())
            rows.append({"device": d, "level": lv, "severity": s, "accuracy": st.mean,
                         "se": st.se, "share": sh.mean, "share_se": sh.se})
    return pd.DataFrame(rows)


# --- claim readings: this book's findings ----------------------------------------------------------


def _cell(heat: pd.DataFrame, d: str, lv: int, m: str) -> pd.Series | None:
    g = heat[(heat.device == d) & (heat.level == lv) & (heat.method == m)]
    return None if g.empty else g.iloc[0]


def readings_findings(heat: pd.DataFrame, transfer: pd.DataFrame, devices: Sequence[str]
                      ) -> dict[str, tuple[dict, str]]:
    """The findings the chapter stated before its results (the scorecard's ``arena`` rows):
    the values each rule reads, per device in ``devices`` order."""
    mid, top = 1, 2
    share_mid, share_transfer, l4_wins, fixed_not_below, ddhr_beaten = [], [], 0, 0, 0
    # a count over devices needs each device's cells at the severity it reads; a device
    # without them makes that count "not measured" (not a count over fewer devices)
    missing: dict[str, list[str]] = {"mid": [], "top": []}
    for d in devices:
        s = _cell(heat, d, mid, "sampling")
        share_mid.append(Stat(float(s.share), float(s.share_se), int(s.n)) if s is not None
                         else Stat(math.nan, math.nan, 0))
        t = transfer[(transfer.device == d) & (transfer.level == top)] if len(transfer) else []
        share_transfer.append(Stat(float(t.iloc[0].share), float(t.iloc[0].share_se), 3)
                              if len(t) else Stat(math.nan, math.nan, 0))
        l1, l4 = _cell(heat, d, mid, "sampling"), _cell(heat, d, mid, "hasgd4")
        f, smp = _cell(heat, d, top, "fixed"), _cell(heat, d, top, "sampling")
        dd = _cell(heat, d, top, "ddhr")
        if l1 is None or l4 is None:
            missing["mid"].append(d)
        else:
            se = math.hypot(l1.se, l4.se)
            l4_wins += int(l4.accuracy - l1.accuracy > 2 * se)
        if any(c is None for c in (f, smp, dd)):
            missing["top"].append(d)
        else:
            fixed_not_below += int(not (smp.accuracy - f.accuracy > 2 * math.hypot(f.se,
                                                                                    smp.se)))
            others = heat[(heat.device == d) & (heat.level == top) & (heat.method != "ddhr")]
            ddhr_beaten += int(any(o.accuracy - dd.accuracy > 2 * math.hypot(o.se, dd.se)
                                   for _, o in others.iterrows()))
    if missing["mid"]:
        l4_wins = math.nan
    if missing["top"]:
        fixed_not_below = ddhr_beaten = math.nan

    def names(level: str) -> str:
        """The devices a reading covers; those without a cell at its severity named apart."""
        measured = [d for d in devices if d not in missing[level]]
        out = ", ".join(measured)
        return out + (f" (no cell for {', '.join(missing[level])})" if missing[level] else "")

    return {
        "arena.findings.sampling_closes_half": ({"shares": share_mid},
                                                f"middle severity, devices {names('mid')}"),
        "arena.findings.hasgd4_rarely_better": ({"value": l4_wins},
                                                f"middle severity, devices {names('mid')}"),
        "arena.findings.fixed_below_sampling": ({"value": fixed_not_below},
                                                f"highest severity, devices {names('top')}"),
        "arena.findings.ddhr_on_top": ({"value": ddhr_beaten},
                                       f"highest severity, devices {names('top')}"),
        "arena.findings.transfer_holds": ({"shares": share_transfer},
                                          f"trained at the middle, tested at the highest "
                                          f"severity, devices {names('top')}"),
    }

