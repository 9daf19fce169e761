"""The memory-faults chapter: SRAM at low voltage, bit masking, erasures and the erasure
regularizer (Boukli Hacene et al.). Training runs, evaluations on faulty chips, and the energy
reduction at equal accuracy.

Sections: configs (:func:`train_config`, :func:`fine_tune_config`, the points of each figure);
stored experiments (:func:`train_network`, :func:`evaluate`); sweeps to frames
(:func:`run_training`, :func:`run_points`, :func:`summarize`); readings of the figures and the
scorecard's claims.

* :func:`train_network` (stored as ``memory_faults.train_network``): one network trained on
  reliable hardware or with the erasure regularizer; its weights are stored with it.
* :func:`evaluate` (``memory_faults.evaluate``): a trained network's test accuracy on several
  chips (hardware instances) at one operating point.
* :func:`mse_matched_erasure_rate`: the ``p_e`` whose erasures match BM's mean-square
  deviation on a set of weights, by exhaustive enumeration of the 256 fault patterns.
* :func:`rate_at_drop`, :func:`best_erasure_ratio`, :class:`ReliableReference` and
  :func:`energy_reductions`: the readings of Figs. 1 to 5.

Training recipe (the paper gives none): SGD with momentum, weight decay and a cosine schedule
to zero; inputs normalized with the dataset's published channel means and deviations; for the
``paper`` profile, random crops (4-pixel zero padding) and horizontal flips as in the usual
CIFAR-10 recipe.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..data import DATASETS, black, load_dataset, normalize, random_crop_flip
from ..errors import ParameterError, check_probability
from ..hardware.base import Ideal
from ..hardware.sram import (BITS, EnergyModel, FaultConfig, MemoryAccesses, SRAMFaults,
                             bit_masking_codes, blockwise_rates, calibrate_activation_scales,
                             memory_accesses, quantization_scale)
from ..methods.evaluation import accuracy, accuracy_on_chips
from ..methods.training import (FreshChip, Standard, Step, cosine_schedule, fit, optimizer_for,
                                steps_per_epoch)
from ..models import resnets
from ..models.checkpoint import load_state_arrays, state_arrays
from ..study.rules import Stat
from ..study.store import ResultStore, config_key, current_store, experiment, note_input

#: Test images are a fixed subset (this seed) shared by every evaluation.
TEST_SUBSET_SEED = 0


# --- data and training ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=6)
def load_split(dataset: str, train: bool, n: int | None, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A normalized split of a dataset (cached per process; do not modify the tensors)."""
    x, y = load_dataset(dataset, train, n, seed)
    return normalize(x, dataset), y



def build_network(arch: str, width: float, dataset: str) -> nn.Module:
    """One of the four architectures sized for a dataset's images and classes."""
    info = DATASETS[dataset]
    return resnets.build(arch, info.classes, width, info.shape[0])


#: How the activation memories' quantization step is set: per inference (max|a| / 127 of that
#: inference, hardware that computes it; the book's default) or calibrated once on training
#: images and fixed (values saturate at +-127 s).
ACTIVATION_SCALES = ("per_inference", "calibrated")
#: Training images that calibrate fixed activation scales.
CALIB_IMAGES = 1_000
#: Test images per forward pass (a speed setting only: BatchNorm is in evaluation mode and the
#: activation scale is per sample, so accuracies depend on it only through float rounding;
#: 200 runs about 1.5x faster than 500 on one CPU thread, the activations then fit in cache).
EVAL_BATCH = 200


def accuracy_on_faulty_chips(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                             config: FaultConfig, seeds: Sequence[int], batch_size: int = 500,
                             activation_scales: Sequence[float] | None = None,
                             precision: str = "fp32") -> np.ndarray:
    """Test accuracy on each chip (one per seed) at one operating point (``activation_scales``:
    fixed steps of the activation memories, or ``None`` for the per-inference rule)."""
    return accuracy_on_chips(model, SRAMFaults(config, activation_scales), x, y, seeds,
                             batch_size, precision)


REQUIRED_TRAIN = ("dataset", "arch", "width", "epochs", "n_train", "n_test", "batch_size", "lr",
                  "momentum", "weight_decay", "augment", "reg_pe", "reg_targets",
                  "reg_block_rates", "init", "precision", "channels_last", "seed", "torch_device")


def check_train_config(config: Mapping[str, Any]) -> None:
    """One clear line for a missing or bad training-config field."""
    missing = [k for k in REQUIRED_TRAIN if k not in config]
    if missing:
        raise ParameterError(f"training config lacks {', '.join(missing)}")
    if config["arch"] not in resnets.ARCHITECTURES:
        raise ParameterError(f"arch={config['arch']!r}: must be one of "
                             f"{', '.join(resnets.ARCHITECTURES)}")
    if config["dataset"] not in DATASETS:
        raise ParameterError(f"dataset={config['dataset']!r}: must be one of "
                             f"{', '.join(DATASETS)}")
    check_probability("reg_pe", config["reg_pe"])


@experiment("memory_faults.train_network", outputs=("clean_accuracy", "loss", "epoch_time_s"))
def train_network(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network and store its weights.

    Args:
        config: ``dataset``, ``arch``, ``width`` (channel multiplier of the paper's F),
            ``epochs``, ``n_train`` (None: all), ``n_test``, ``batch_size``, ``lr``,
            ``momentum``, ``weight_decay``, ``augment``, ``reg_pe`` (erasure regularizer's
            p_e; 0: standard training), ``reg_targets``, ``reg_block_rates`` (per-block p_e
            or None), ``init`` (None: from scratch; ``{"train": config, "profile": name}``:
            fine-tune that stored network), ``seed``, ``device``.

    Returns:
        ``state.<name>`` arrays (the state dict), ``clean_accuracy`` on the test subset,
        ``loss`` and ``epoch_time_s`` per epoch.
    """
    check_train_config(config)
    device = torch.device(config["torch_device"])
    torch.manual_seed(config["seed"])
    x, y = (t.to(device) for t in load_split(config["dataset"], True, config["n_train"],
                                             config["seed"]))
    xt, yt = (t.to(device) for t in load_split(config["dataset"], False, config["n_test"],
                                               TEST_SUBSET_SEED))
    if config["init"] is None:
        model = build_network(config["arch"], config["width"], config["dataset"]).to(device)
    else:
        init = config["init"]
        model = copy.deepcopy(trained_network(init["train"], init["profile"], str(device)))
    regularized = config["reg_pe"] > 0 or config["reg_block_rates"] is not None
    hardware = SRAMFaults(model="erasure", rate=config["reg_pe"],
                          targets=config["reg_targets"],
                          block_rates=None if config["reg_block_rates"] is None
                          else tuple(config["reg_block_rates"])) if regularized else Ideal()
    opt = optimizer_for(model, "sgd", config["lr"], config["weight_decay"], config["momentum"],
                        nesterov=False)
    sched = cosine_schedule(opt, config["epochs"],
                            steps_per_epoch(len(y), config["batch_size"], drop_last=True))
    step = Step(model, opt, hardware, FreshChip() if regularized else Standard(),
                precision=config["precision"], channels_last=config["channels_last"])
    black_pad = functools.partial(random_crop_flip, fill=black(config["dataset"]))
    hist = fit(step, x, y, config["epochs"], config["batch_size"], config["seed"], sched,
               black_pad if config["augment"] else None, drop_last=True,
               desc=f"{config['arch']} x{config['width']:.3g}")
    return {**state_arrays(model), "clean_accuracy": accuracy(model, xt, yt, 500,
                                                              config["precision"]),
            "loss": np.array(hist["loss"]), "epoch_time_s": np.array(hist["epoch_time_s"])}


def load_network(config: Mapping[str, Any], result: Mapping[str, Any],
                 device: torch.device | str = "cpu") -> nn.Module:
    """The trained network of a :func:`train_network` result."""
    model = build_network(config["arch"], config["width"], config["dataset"])
    return load_state_arrays(model, result).to(device).eval()


@functools.lru_cache(maxsize=4)
def _trained(key: str, spec_json: str, device: str, config_json: str):
    import json

    config = json.loads(config_json)
    store = ResultStore.from_spec(json.loads(spec_json))
    entry = store.get_or_compute(train_network, config, device)
    return load_network(config, entry.result, device), entry


def trained_network(config: Mapping[str, Any], profile: str, device: str = "cpu"
                    ) -> nn.Module:
    """The network of a training config, read from the store of ``profile`` (trained and
    stored first if missing or stale). Cached per process: do not modify it. Every call notes
    the network's entry as an input of the computation under way."""
    import json

    from ..study.store import canonical

    spec = json.dumps(current_store(profile).spec(), sort_keys=True)
    model, entry = _trained(config_key(train_network.name, config), spec, device,
                            json.dumps(canonical(config), sort_keys=True))
    note_input(entry)
    return model


@experiment("memory_faults.evaluate", outputs=("accuracy", "train_key"))
def evaluate(config: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy of a trained network on several chips at one operating point.

    Args:
        config: ``train`` (the network's :func:`train_network` config), ``faults`` (a
            :meth:`FaultConfig.as_dict`), ``seeds`` (one chip per seed), ``n_test``,
            ``batch_size``, ``activation_scale`` (:data:`ACTIVATION_SCALES`), ``profile``
            (whose store holds the network), ``device``.

    Returns:
        ``accuracy`` per chip (fractions) and ``train_key``, the network's store key.
    """
    device = config["torch_device"]
    model = trained_network(config["train"], config["profile"], device)
    xt, yt = (t.to(device) for t in load_split(config["train"]["dataset"], False,
                                               config["n_test"], TEST_SUBSET_SEED))
    faults = FaultConfig.from_dict(config["faults"])
    scales = None
    if config["activation_scale"] == "calibrated":
        xc, _ = load_split(config["train"]["dataset"], True, CALIB_IMAGES, TEST_SUBSET_SEED)
        scales = calibrate_activation_scales(model, xc.to(device))
    elif config["activation_scale"] != "per_inference":
        raise ParameterError(f"activation_scale={config['activation_scale']!r}: must be one of "
                             f"{', '.join(ACTIVATION_SCALES)}")
    acc = accuracy_on_faulty_chips(model, xt, yt, faults, config["seeds"], config["batch_size"],
                                   scales, config["train"]["precision"])
    return {"accuracy": acc, "train_key": config_key(train_network.name, config["train"])}


# --- running the study from a notebook ----------------------------------------------------------


def train_config(params: Any, arch: str = "preactresnet18", width: float = 1.0,
                 reg_pe: float = 0.0, reg_block_rates: Sequence[float] | None = None,
                 seed: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """A :func:`train_network` config from a session's parameters.

    Args:
        params: the session's resolved parameters (``S.p``).
        arch: the architecture.
        width: multiple of the profile's width F (1, 1/sqrt(2), 1/2).
        reg_pe: the erasure regularizer's p_e (0: standard training).
        reg_block_rates: per-block p_e of the regularizer, or None.
        seed: the training seed (default: the session's).
        device: ``cpu`` or ``cuda``.
    """
    return {"dataset": params.dataset, "arch": arch, "init": None,
            "width": round(float(params.width_f) * float(width), 6),
            "epochs": params.epochs, "n_train": params.n_train, "n_test": params.n_test,
            "batch_size": params.batch_size, "lr": params.lr,
            "momentum": params.momentum,
            "weight_decay": params.weight_decay, "augment": params.augment,
            "reg_pe": float(reg_pe), "reg_targets": "both",
            "reg_block_rates": None if reg_block_rates is None else [float(r) for r in
                                                                     reg_block_rates],
            "precision": params.precision, "channels_last": bool(params.channels_last),
            "seed": params.seed if seed is None else seed, "torch_device": device}


def fine_tune_config(params: Any, base: Mapping[str, Any], profile: str,
                     reg_pe: float = 0.0, reg_block_rates: Sequence[float] | None = None
                     ) -> dict[str, Any]:
    """A config that fine-tunes the stored network ``base`` for ``params.reg_epochs`` epochs
    from ``params.reg_learning_rate`` (cosine decay), with the erasure regularizer."""
    return {**base, "init": {"train": dict(base), "profile": profile},
            "epochs": params.reg_epochs, "lr": params.reg_lr,
            "reg_pe": float(reg_pe),
            "reg_block_rates": None if reg_block_rates is None else [float(r) for r in
                                                                     reg_block_rates]}


def run_training(session: Any, configs: Sequence[Mapping[str, Any]], desc: str = "training"):
    """Train (or read back) networks in parallel workers; returns their entries in order.

    Networks trained from scratch go first, then those fine-tuned from them."""
    from ..study.sweep import run_sweep

    entries: list[Any] = [None] * len(configs)
    for phase in (False, True):
        idx = [i for i, c in enumerate(configs) if (c.get("init") is not None) == phase]
        if idx:
            for i, e in zip(idx, run_sweep(train_network, [configs[i] for i in idx],
                                           session.store, desc=desc,
                                           device=str(session.torch_device), run_gib=2.0)):
                entries[i] = e
    return entries


def input_shape(dataset: str) -> tuple[int, int, int]:
    """One image's shape (C, H, W)."""
    return DATASETS[dataset].shape


def accesses(train_cfg: Mapping[str, Any]) -> MemoryAccesses:
    """E_0's terms of a training config's network, on its dataset's images."""
    model = build_network(train_cfg["arch"], train_cfg["width"], train_cfg["dataset"])
    return memory_accesses(model, input_shape(train_cfg["dataset"]))


@dataclass
class Point:
    """One operating point of one trained network, to be tested on several chips.

    Attributes:
        label: the curve it belongs to.
        train: the network's :func:`train_network` config.
        faults: the operating point (``FaultConfig()``: clean, one deterministic test).
        rate: the value shown on the x axis (p, p_e or p_B4).
    """

    label: str
    train: Mapping[str, Any]
    faults: FaultConfig = field(default_factory=FaultConfig)
    rate: float = 0.0

    @property
    def clean(self) -> bool:
        """No faulty memory at all."""
        f = self.faults
        return f.rate == 0 and (f.block_rates is None or not any(f.block_rates))


def run_points(session: Any, points: Sequence[Point], instances: int | None = None,
               energy_model: EnergyModel = EnergyModel(), desc: str = "chips",
               activation_scale: str = "per_inference"):
    """Test every point on ``instances`` chips (seeds 1..instances, the same chips at every
    point; a clean point is one test), in parallel workers, through the store. The networks
    are trained first (or read back). ``activation_scale``: how the activation memories'
    quantization step is set (:data:`ACTIVATION_SCALES`).

    Returns:
        ``(frame, entries)``: one row per chip (``label``, ``rate``, ``model``, ``targets``,
        ``instance``, ``accuracy`` in %, ``energy`` per inference in reliable memory
        accesses, ``e0``), and the stored entries (trainings and tests).
    """
    import pandas as pd

    from ..study.sweep import run_sweep

    trainings = run_training(session, trained(points))
    instances = session.p.instances if instances is None else instances
    configs, counts = [], {}
    for pt in points:
        key = config_key(train_network.name, pt.train)
        if key not in counts:
            counts[key] = accesses(pt.train)
        configs.append({"train": dict(pt.train), "faults": pt.faults.as_dict(),
                        "seeds": [0] if pt.clean else list(range(1, instances + 1)),
                        "n_test": pt.train["n_test"], "batch_size": EVAL_BATCH,
                        "activation_scale": activation_scale,
                        "profile": session.store.profile,
                        "torch_device": pt.train["torch_device"]})
    entries = run_sweep(evaluate, configs, session.store, desc=desc,
                        device=str(session.torch_device), run_gib=1.0)
    rows = []
    for pt, cfg, e in zip(points, configs, entries):
        c = counts[config_key(train_network.name, pt.train)]
        energy = pt.faults.energy(c, energy_model)
        for seed, acc in zip(cfg["seeds"], e["accuracy"]):
            rows.append({"label": pt.label, "rate": float(pt.rate), "model": pt.faults.model,
                         "targets": pt.faults.targets, "instance": seed,
                         "accuracy": 100 * float(acc), "energy": energy, "e0": c.e0})
    return pd.DataFrame(rows), list(trainings) + list(entries)


def summarize(frame, by: Sequence[str] = ("label", "rate")):
    """Mean, standard deviation and standard error of accuracy over chips, per point."""
    g = frame.groupby(list(by), dropna=False)
    out = g.agg(accuracy=("accuracy", "mean"), std=("accuracy", "std"),
                n=("accuracy", "size"), energy=("energy", "first"), e0=("e0", "first"))
    out["std"] = out["std"].fillna(0.0)
    out["sem"] = out["std"] / np.sqrt(out["n"])
    return out.reset_index()


# --- readings of the figures -----------------------------------------------------------------------


def rate_at_drop(rates: Sequence[float], acc: Sequence[float], level: float) -> float:
    """The fault rate at which accuracy first falls below ``level``, interpolated linearly in
    log rate between the grid points around the crossing.

    Returns ``rates[0]`` when the first point is already below (an upper bound) and ``inf``
    when no point is (beyond the grid).
    """
    r = np.asarray(rates, float)
    a = np.asarray(acc, float)
    order = np.argsort(r)
    r, a = r[order], a[order]
    below = np.nonzero(a < level)[0]
    if not len(below):
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(r[0])
    lr0, lr1 = math.log(r[i - 1]), math.log(r[i])
    t = (a[i - 1] - level) / (a[i - 1] - a[i])
    return float(math.exp(lr0 + t * (lr1 - lr0)))


def _interp_log(x_new: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation in log x, NaN outside the range of x."""
    order = np.argsort(x)
    lx, yy = np.log(np.asarray(x, float)[order]), np.asarray(y, float)[order]
    ln = np.log(np.asarray(x_new, float))
    out = np.interp(ln, lx, yy)
    out[(ln < lx[0] - 1e-12) | (ln > lx[-1] + 1e-12)] = np.nan
    return out


def best_erasure_ratio(p: Sequence[float], acc_bm: Sequence[float], p_e: Sequence[float],
                       acc_erasure: Sequence[float],
                       ratios: Sequence[float] = tuple(np.geomspace(0.5, 8.0, 161))
                       ) -> tuple[float, np.ndarray, np.ndarray]:
    """The ratio r = p_e/p whose erasure accuracy best predicts BM accuracy.

    Erasure accuracy at ``r p`` is interpolated linearly in log p_e; the score of r is the
    root-mean-square difference from BM accuracy over the points of ``p`` where ``r p`` lies
    inside the erasure grid (at least half of them).

    Returns:
        ``(best_ratio, ratios, rms)``.
    """
    p = np.asarray(p, float)
    acc_bm = np.asarray(acc_bm, float)
    ratios = np.asarray(ratios, float)
    rms = np.full(len(ratios), np.nan)
    for k, r in enumerate(ratios):
        pred = _interp_log(r * p, np.asarray(p_e, float), np.asarray(acc_erasure, float))
        ok = ~np.isnan(pred)
        if ok.sum() >= max(1, (len(p) + 1) // 2):
            rms[k] = float(np.sqrt(np.mean((pred[ok] - acc_bm[ok]) ** 2)))
    if np.all(np.isnan(rms)):
        return math.nan, ratios, rms
    return float(ratios[int(np.nanargmin(rms))]), ratios, rms


class ReliableReference:
    """Reliable networks of several widths: the energy a reliable network needs for an
    accuracy.

    The reference is the upper envelope of the reliable points (energy E_0 of each width,
    accuracy); between two envelope points the energy is interpolated linearly in log energy
    against accuracy. Above the best reliable accuracy the reference is the largest network's
    energy (a lower bound of what a reliable network would need, so reductions there are
    underestimated); below the smallest network's accuracy it is undefined (NaN).

    Args:
        energies: E_0 of each reliable network (memory accesses per inference).
        accuracies: their accuracies (%).
    """

    def __init__(self, energies: Sequence[float], accuracies: Sequence[float]) -> None:
        e = np.asarray(energies, float)
        a = np.asarray(accuracies, float)
        order = np.argsort(e)
        e, a = e[order], a[order]
        keep = [0]
        for i in range(1, len(e)):  # the envelope: more energy must buy more accuracy
            if a[i] > a[keep[-1]]:
                keep.append(i)
        self.energies, self.accuracies = e[keep], a[keep]

    def energy_at(self, acc: float | np.ndarray) -> np.ndarray:
        """The reliable energy for accuracy ``acc`` (NaN below the smallest network's)."""
        acc = np.atleast_1d(np.asarray(acc, float))
        le = np.log(self.energies)
        out = np.exp(np.interp(acc, self.accuracies, le))
        out[acc < self.accuracies[0] - 1e-12] = np.nan
        return out


def energy_reductions(reference: ReliableReference, energies: Sequence[float],
                      accuracies: Sequence[float]) -> np.ndarray:
    """Energy reduction at equal accuracy of each faulty point: E_reliable(acc) / E."""
    return reference.energy_at(accuracies) / np.asarray(energies, float)


def best_reduction(reference: ReliableReference, table) -> dict[str, float]:
    """The best energy reduction over the points of a summary table (columns ``rate``,
    ``energy``, ``accuracy``): ``reduction``, ``rate`` and ``accuracy`` there."""
    red = energy_reductions(reference, table["energy"], table["accuracy"])
    if np.all(np.isnan(red)):
        return {"reduction": math.nan, "rate": math.nan, "accuracy": math.nan}
    i = int(np.nanargmax(red))
    return {"reduction": float(red[i]), "rate": float(np.asarray(table["rate"])[i]),
            "accuracy": float(np.asarray(table["accuracy"])[i])}


# --- BM against erasures in mean-square deviation ----------------------------------------------


def bm_code_moments(p: float, signed: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exhaustive enumeration of BM over every code and every fault pattern.

    For each of the 256 codes q (index ``q + 128``), with each of the 256 patterns f of
    faulty bits weighted by ``p^|f| (1 - p)^(8 - |f|)`` (7 bits when ``signed`` is False):

    Returns:
        ``(msd_nonzero, p_zero)``: the expected ``(BM(q, f) - q)^2`` over the patterns that
        leave a nonzero code, and the probability that the code becomes 0.
    """
    check_probability("p", p)
    q = torch.arange(-128, 128).repeat_interleave(256)
    f = torch.arange(256).repeat(256)
    if not signed:
        keep = (f & 0x80) == 0
        q, f = q[keep], f[keep]
    nbits = torch.tensor([bin(int(v)).count("1") for v in range(256)], dtype=torch.float64)
    cells = BITS if signed else BITS - 1
    prob = (p ** nbits[f]) * ((1 - p) ** (cells - nbits[f]))
    m = bit_masking_codes(q, f).to(torch.float64)
    qd = q.to(torch.float64)
    idx = q + 128
    msd = torch.zeros(256, dtype=torch.float64).index_add_(
        0, idx, prob * (m - qd) ** 2 * (m != 0))
    pz = torch.zeros(256, dtype=torch.float64).index_add_(0, idx, prob * (m == 0))
    return msd.numpy(), pz.numpy()


def bm_mean_square_deviation(tensors: Iterable[torch.Tensor], p: float) -> tuple[float, float]:
    """Exact expected squared BM deviation summed over tensors (each quantized with its own
    scale), and the sum of squared values.

    A value whose code becomes 0 deviates by ``-x``; otherwise by ``s (BM(q) - q)``.
    """
    msd, pz = bm_code_moments(p)
    msd_t, pz_t = torch.from_numpy(msd), torch.from_numpy(pz)
    dev, power = 0.0, 0.0
    for t in tensors:
        x = t.detach().double().reshape(-1)
        s = quantization_scale(x)
        q = torch.round(x / s).clamp(-128, 127).long() + 128
        dev += float((s ** 2 * msd_t[q] + x ** 2 * pz_t[q]).sum())
        power += float((x ** 2).sum())
    return dev, power


def mse_matched_erasure_rate(tensors: Sequence[torch.Tensor], p: float) -> float:
    """The p_e whose erasures give the same mean-square deviation as BM at p.

    An erasure deviates a value x by -x with probability p_e, so its expected squared
    deviation is ``p_e * sum x^2``; BM's is computed exactly (:func:`bm_mean_square_deviation`).
    """
    dev, power = bm_mean_square_deviation(tensors, p)
    return dev / power


# --- the chapter's studies (what the notebooks run) ------------------------------------------------

#: Width multiples of F of the reliable reference networks (Sec. IV-D), in decreasing order.
REFERENCE_WIDTHS = (1.0, 2 ** -0.5, 0.5)
#: Their labels.
WIDTH_LABELS = {1.0: "F", 2 ** -0.5: "F/√2", 0.5: "F/2"}


def bm_points(label: str, train: Mapping[str, Any], rates: Sequence[float],
              targets: str = "both") -> list[Point]:
    """The clean point and BM at every rate, on ``targets``."""
    return [Point(label, train), *(Point(label, train, FaultConfig("bm", r, targets), r)
                                   for r in rates)]


def weights_only_points(train: Mapping[str, Any], rates: Sequence[float],
                        ratios: Sequence[float]) -> list[Point]:
    """Fig. 3: BM on the weights at every p, and erasures of the weights at ``p_e = r p`` for
    every swept p and ratio r (labels ``BM`` and ``erasure``)."""
    pes = sorted({round(float(r) * float(p), 12) for r in ratios for p in rates
                  if 0 < r * p <= 1})
    return [*bm_points("BM", train, rates, "weights"),
            *(Point("erasure", train, FaultConfig("erasure", pe, "weights"), pe) for pe in pes)]


def fit_erasure_ratio(summary, ratios: Sequence[float]) -> dict[str, Any]:
    """The readings of Fig. 3 from the summary of :func:`weights_only_points`.

    Returns:
        ``best_ratio`` (p_e/p that best predicts BM accuracy, see :func:`best_erasure_ratio`),
        ``rms`` there, and for each ratio r of ``ratios`` the per-p gaps ``gap_<r>`` (erasure
        accuracy at r p minus BM accuracy at p) with their standard errors ``se_<r>``.
    """
    b = summary[(summary.label == "BM") & (summary.rate > 0)].sort_values("rate")
    e = summary[(summary.label == "erasure") & (summary.rate > 0)].sort_values("rate")
    clean = float(summary[(summary.label == "BM") & (summary.rate == 0)].accuracy.iloc[0])
    pe = np.concatenate([[min(e.rate.min(), b.rate.min()) * 1e-3], e.rate])
    acc_e = np.concatenate([[clean], e.accuracy])  # erasures at a vanishing rate: clean
    best, _, rms = best_erasure_ratio(b.rate.to_numpy(), b.accuracy.to_numpy(), pe, acc_e)
    out: dict[str, Any] = {"best_ratio": best, "rms": float(np.nanmin(rms))
                           if not np.all(np.isnan(rms)) else math.nan}
    ev = e.set_index(e.rate.round(12))
    for r in ratios:
        gaps, ses = [], []
        for _, row in b.iterrows():
            key = round(float(r) * float(row.rate), 12)
            hit = key in ev.index
            gaps.append(float(ev.loc[key, "accuracy"] - row.accuracy) if hit else math.nan)
            ses.append(float(np.hypot(ev.loc[key, "sem"], row["sem"])) if hit else math.nan)
        out[f"gap_{r:g}"], out[f"se_{r:g}"] = np.array(gaps), np.array(ses)
    return out


def block_faults(rate: float, block: int) -> FaultConfig:
    """BM on the weights and activations of one block (1..4) only."""
    rates = [0.0] * 4
    rates[block - 1] = float(rate)
    return FaultConfig("bm", 0.0, "both", tuple(rates))


def depth_points(train: Mapping[str, Any], rates: Sequence[float]) -> list[Point]:
    """Fig. 4: BM on one block at a time (labels ``Block k``), and the clean point."""
    return [Point("clean", train),
            *(Point(f"Block {k}", train, block_faults(r, k), r)
              for k in range(1, 5) for r in rates)]


def policy_points(train: Mapping[str, Any], p_b4: Sequence[float], ratios: Sequence[float],
                  label: str = "Diff. Fault.") -> list[Point]:
    """The blockwise policy p_Bi = p_B4 / ratios[i] (Sec. IV-C) at every p_B4 (the x axis)."""
    return [Point(label, train, FaultConfig("bm", 0.0, "both", blockwise_rates(p, ratios)), p)
            for p in p_b4]


def tolerated_rates(summary, clean: Mapping[str, float] | float, drop: float
                    ) -> dict[str, float]:
    """Per curve (``label``), the rate at which accuracy falls ``drop`` points below its
    clean accuracy (:func:`rate_at_drop`)."""
    out = {}
    for label, g in summary[summary.rate > 0].groupby("label"):
        c = clean[label] if isinstance(clean, Mapping) else clean
        out[label] = rate_at_drop(g.rate, g.accuracy, c - drop)
    return out


def reliable_plan(params: Any, seeds: int, device: str) -> list[tuple[float, dict]]:
    """(width multiple of F, training config) of every reliable reference network."""
    return [(w, train_config(params, "preactresnet18", w, seed=params.seed + s, device=device))
            for w in REFERENCE_WIDTHS for s in range(seeds)]


def reliable_table(plan: Sequence[tuple[float, Mapping]], summary):
    """Sec. IV-D: one row per width (``width``, ``label``, ``accuracy`` mean over seeds in %,
    ``sem`` its standard error, ``n`` seeds, ``energy`` = E_0, ``accuracies`` per seed),
    from the clean points of :func:`reliable_plan` (labels ``reliable <width> <seed>``)."""
    import pandas as pd

    rows = []
    for w in REFERENCE_WIDTHS:
        cfgs = [c for v, c in plan if v == w]
        a = [float(summary[summary.label == f"reliable {w:.4f} {c['seed']}"].accuracy.iloc[0])
             for c in cfgs]
        rows.append({"width": w, "label": WIDTH_LABELS[w], "accuracy": float(np.mean(a)),
                     "sem": float(np.std(a, ddof=1) / np.sqrt(len(a))) if len(a) > 1
                     else math.nan, "n": len(a), "energy": float(accesses(cfgs[0]).e0),
                     "accuracies": a})
    return pd.DataFrame(rows)


def reliable_points(plan: Sequence[tuple[float, Mapping]]) -> list[Point]:
    """The clean test of every reliable network."""
    return [Point(f"reliable {w:.4f} {c['seed']}", c) for w, c in plan]


def reference(reliable) -> ReliableReference:
    """The reliable reference of a :func:`reliable_table`."""
    return ReliableReference(reliable.energy, reliable.accuracy)


def regularizer_plan(params: Any, rates: Sequence[float], pe_ratios: Sequence[float],
                     block_ratios: Sequence[float] | None, device: str,
                     profile: str = "book") -> list[Point]:
    """Sec. V: one width-F network trained with erasures per test rate p and ratio r = p_e/p,
    tested under BM at p on weights and activations (label ``reg. p_e = <r>p``).

    ``params.reg_init`` says how: ``scratch`` (trained like the standard network, with
    erasures) or ``standard`` (the standard network fine-tuned with erasures for
    ``params.reg_epochs`` epochs; then a control, the standard network fine-tuned as long
    without erasures, label ``standard, fine-tuned``, is tested at every p).

    With ``block_ratios``, also the combination with the blockwise policy, for the first
    ratio r: trained with per-block erasures ``p_e,Bi = r p_Bi`` and tested under the
    blockwise policy ``p_Bi = p / block_ratios[i]`` (p being p_B4; label
    ``reg. p_e = <r>p + Diff. Fault.``). Each network also gets its clean point (label
    suffixed ``, clean``).
    """
    std = train_config(params, device=device)

    def config(reg_pe: float = 0.0, reg_block_rates: Sequence[float] | None = None) -> dict:
        if params.reg_init == "standard":
            return fine_tune_config(params, std, profile, reg_pe, reg_block_rates)
        return train_config(params, reg_pe=reg_pe, reg_block_rates=reg_block_rates,
                            device=device)

    out = []
    for p in rates:
        for r in pe_ratios:
            cfg = config(reg_pe=min(1.0, r * p))
            out += [Point(f"reg. p_e = {r:g}p, clean", cfg, FaultConfig(), p),
                    Point(f"reg. p_e = {r:g}p", cfg, FaultConfig("bm", p, "both"), p)]
        if block_ratios is not None:
            r = pe_ratios[0]
            test = blockwise_rates(p, block_ratios)
            cfg = config(reg_block_rates=[min(1.0, r * q) for q in test])
            out += [Point(f"reg. p_e = {r:g}p + Diff. Fault., clean", cfg, FaultConfig(), p),
                    Point(f"reg. p_e = {r:g}p + Diff. Fault.", cfg,
                          FaultConfig("bm", 0.0, "both", test), p)]
        if params.reg_init == "standard":
            cfg = config()
            out += [Point("standard, fine-tuned, clean", cfg, FaultConfig(), p),
                    Point("standard, fine-tuned", cfg, FaultConfig("bm", p, "both"), p)]
    return out


def trained(points: Sequence[Point]) -> list[dict]:
    """The distinct training configs behind some points, in order."""
    seen, out = set(), []
    for pt in points:
        key = config_key(train_network.name, pt.train)
        if key not in seen:
            seen.add(key)
            out.append(dict(pt.train))
    return out


def best_reductions(reference_: ReliableReference, summary) -> "Any":
    """The best energy reduction at equal accuracy of every faulty curve of a summary (one
    row per ``label``: ``reduction``, ``rate`` and ``accuracy`` where it is reached)."""
    import pandas as pd

    rows = []
    for label, g in summary[summary.rate > 0].groupby("label", sort=False):
        rows.append({"label": label, **best_reduction(reference_, g)})
    return pd.DataFrame(rows)


def upper_envelope_share(summary, label: str, within: float) -> dict[str, Any]:
    """Fig. 2: whether curve ``label`` lies on the upper envelope of accuracy against energy.

    At the energy of each point of ``label`` whose accuracy is within ``within`` points of
    its clean accuracy, the best any other curve reaches with at most that energy (its clean
    point included: a smaller reliable network is a valid competitor).

    Returns:
        ``on_envelope`` (True when ``label`` is best at every such point and there is at
        least one), ``points`` (how many), ``margin`` (its smallest lead, points).
    """
    mine = summary[summary.label == label]
    clean = float(mine[mine.rate == 0].accuracy.iloc[0])
    near = mine[mine.accuracy >= clean - within]
    others = summary[summary.label != label]
    margins = []
    for _, row in near.iterrows():
        rivals = others[others.energy <= row.energy * (1 + 1e-9)]
        best = float(rivals.accuracy.max()) if len(rivals) else -math.inf
        margins.append(float(row.accuracy) - best)
    return {"on_envelope": bool(margins) and min(margins) > 0, "points": len(margins),
            "margin": min(margins) if margins else math.nan}


# --- claim readings: what each scorecard rule reads ---------------------------------------------


def readings_bit_masking() -> dict[str, tuple[dict, str]]:
    """Sec. III: bit masking on every (code, fault pattern) pair: how many move a value away
    from zero, flip its sign, or leave it nonzero under a sign-bit fault."""
    q = torch.arange(-128, 128).repeat_interleave(256)
    f = torch.arange(256).repeat(256)
    m = bit_masking_codes(q, f)
    return {"memory_faults.sec3.bm_toward_zero": (
        {"away_from_zero": int((m.abs() > q.abs()).sum()),
         "sign_flips": int((m.long() * q < 0).sum()),
         "sign_fault_nonzero": int((m[(f & 0x80) != 0] != 0).sum())},
        f"{len(q)} (code, pattern) pairs enumerated")}


def readings_mse_ratio(mse) -> dict[str, tuple[dict, str]]:
    """Sec. III: the MSE-matched erasure rate p_e at every swept p (exact enumeration)."""
    return {"memory_faults.sec3.pe_gt_p": (
        {"pe": [float(x) for x in mse["p_e (MSE)"]], "p": [float(x) for x in mse.p]},
        "p_e/p (MSE) " + ", ".join(f"{r:.2f}" for r in mse["p_e / p (MSE)"]))}


def readings_counts(full: Mapping[str, MemoryAccesses]) -> dict[str, tuple[dict, str]]:
    """Table I and Sec. IV-B: parameters and stored activations of the full-size networks."""
    out = {}
    for a, c in full.items():
        out[f"memory_faults.table1.{a}.params"] = (
            {"value": c.n_parameters / 1e6}, f"{c.n_parameters:,} trainable parameters")
        out[f"memory_faults.table1.{a}.activations"] = (
            {"value": c.n_activations / 1e6}, f"{c.n_activations:,} ReLU and SE-rescaling outputs")
    pre = full["preactresnet18"]
    out["memory_faults.sec4b.weight_activation_ratio"] = (
        {"value": pre.n_parameters / pre.n_activations},
        f"{pre.n_parameters:,} / {pre.n_activations:,}")
    return out


def readings_architectures(tolerated: Mapping[str, float], clean: Mapping[str, float],
                           params: Mapping[str, int], envelope: Mapping[str, Any]
                           ) -> dict[str, tuple[dict, str]]:
    """Figs. 1 and 2: the spread of the tolerated fault rates over the architectures, whether
    their ranking is the ranking by parameter count, PreActResNet18's lead on the envelope,
    and the reliable accuracies."""
    archs = list(tolerated)
    rates = np.array([tolerated[a] for a in archs])
    spread = float(rates.max() / rates.min()) if rates.min() > 0 else math.inf
    same = [a for a in sorted(archs, key=lambda a: -tolerated[a])] == sorted(
        archs, key=lambda a: -params[a])
    detail = ", ".join(f"{a} {tolerated[a]:.3g}" for a in archs)
    out = {"memory_faults.fig1.architectures_differ": (
        {"value": spread, "same_ranking_as_parameters": int(same)},
        f"tolerated p: {detail}"),
        "memory_faults.fig2.preact_tradeoff": (
            {"points": envelope["points"], "margin": envelope["margin"]},
            f"{envelope['points']} points near clean, smallest lead "
            f"{envelope['margin']:.2f}")}
    for a in archs:
        out[f"memory_faults.table1.{a}.accuracy"] = ({"value": clean[a]}, "")
    return out


def readings_erasure_fit(fit: Mapping[str, Any], summary) -> dict[str, tuple[dict, str]]:
    """Fig. 3: the best-fitting p_e/p, and erasure accuracy at p_e = 2p against BM at p (means
    over chips with their standard errors)."""
    b = summary[(summary.label == "BM") & (summary.rate > 0)].sort_values("rate")
    e = summary[(summary.label == "erasure") & (summary.rate > 0)].set_index(
        summary[(summary.label == "erasure") & (summary.rate > 0)].rate.round(12))
    bm, er = [], []
    for _, row in b.iterrows():
        key = round(2.0 * float(row.rate), 12)
        if key in e.index:
            bm.append(Stat(float(row["accuracy"]), float(row["sem"]), int(row["n"])))
            er.append(Stat(float(e.loc[key, "accuracy"]), float(e.loc[key, "sem"]),
                           int(e.loc[key, "n"])))
    return {
        "memory_faults.fig3.pe_over_p": ({"value": float(fit["best_ratio"])},
                                         f"rms {fit['rms']:.2f} points there"),
        "memory_faults.fig3.pe2p_predicts_bm": (
            {"erasure_at_2p": er, "bm": bm}, f"{len(bm)} fault rates p"),
    }


def readings_depth(tolerated: Sequence[float], ratios: Sequence[float]
                   ) -> dict[str, tuple[dict, str]]:
    """Fig. 4: the tolerated fault rate of each block (1 to 4), and p_B4 / p_Bk."""
    t = [float(x) for x in tolerated]
    detail = "tolerated p: " + ", ".join(f"B{k + 1} {x:.3g}" for k, x in enumerate(t))
    out = {"memory_faults.fig4.depth_monotone": ({"tolerated": t}, detail)}
    for k, name in ((3, "b3"), (2, "b2"), (1, "b1")):
        out[f"memory_faults.fig4.ratio_b4_{name}"] = ({"value": float(ratios[k - 1])}, detail)
    return out


def readings_block_counts(full: MemoryAccesses) -> dict[str, tuple[dict, str]]:
    """Sec. IV-C: the weights of each block of the full-size PreActResNet18."""
    return {f"memory_faults.sec4c.block{k}_params": (
        {"value": full.conv_weights[k] / 1e5},
        f"{full.conv_weights[k]:,} weights ({full.parameters[k]:,} with BatchNorm)")
        for k in range(1, 5)}


def bootstrap_reductions(frame, reference: "ReliableReference", labels: Sequence[str],
                         n_boot: int = 200, seed: int = 0) -> dict[str, Stat]:
    """The best energy reduction of each curve with a bootstrap standard error over chips:
    the chips of every (curve, fault rate) point are resampled with replacement ``n_boot``
    times, and the best reduction recomputed from the resampled mean accuracies (the
    reliable reference held fixed)."""
    rng = np.random.default_rng(seed)
    out = {}
    for label in labels:
        g = frame[(frame.label == label) & (frame.rate > 0)]
        points = [(r, grp.accuracy.to_numpy(), float(grp.energy.iloc[0]))
                  for r, grp in g.groupby("rate")]
        rates = np.array([r for r, _, _ in points])
        energy = np.array([e for _, _, e in points])
        point = best_reduction(reference, {"rate": rates, "energy": energy,
                                           "accuracy": np.array([a.mean() for _, a, _ in
                                                                 points])})["reduction"]
        boots = np.stack([a[rng.integers(0, len(a), (n_boot, len(a)))].mean(1)
                          for _, a, _ in points], axis=1)
        reds = [best_reduction(reference, {"rate": rates, "energy": energy,
                                           "accuracy": row})["reduction"] for row in boots]
        se = float(np.nanstd(reds, ddof=1)) if np.isfinite(reds).sum() > 1 else math.nan
        chips = min(len(a) for _, a, _ in points) if points else 0
        out[label] = Stat(float(point), se, int(chips))
    return out


def readings_policy(reductions: Mapping[str, Stat]) -> dict[str, tuple[dict, str]]:
    """Fig. 5: the blockwise policy ('Diff. Fault.') against a uniform p, best energy
    reductions with bootstrap standard errors."""
    pol, uni = reductions["Diff. Fault."], reductions["uniform p"]
    return {"memory_faults.fig5.diff_fault_gain": (
        {"policy": pol, "uniform": uni},
        f"best reduction {pol.mean:.2f}x (Diff. Fault.) vs {uni.mean:.2f}x (uniform)")}


def readings_widths(reliable, full: Mapping[float, MemoryAccesses]
                    ) -> dict[str, tuple[dict, str]]:
    """Sec. IV-D: parameter scaling with the width, and the reliable accuracy of each width
    (mean over training seeds with its standard error)."""
    acc = reliable.set_index("label")
    stats = [Stat(float(acc.accuracy[w]), float(acc["sem"][w]), int(acc["n"][w]))
             for w in ("F/2", "F/√2", "F")]
    detail = ", ".join(f"{w} {s}" for w, s in zip(("F/2", "F/√2", "F"), stats))
    return {
        "memory_faults.sec4d.param_scale_half": (
            {"value": full[0.5].n_parameters / full[1.0].n_parameters}, ""),
        "memory_faults.sec4d.param_scale_sqrt2": (
            {"value": full[2 ** -0.5].n_parameters / full[1.0].n_parameters}, ""),
        "memory_faults.sec4d.width_order": ({"accuracy": stats}, detail),
        "memory_faults.sec4d.acc_f_sqrt2": ({"value": stats[1].mean}, ""),
        "memory_faults.sec4d.acc_f_half": ({"value": stats[0].mean}, ""),
    }


def readings_regularizer(reductions: Mapping[str, Stat], best, at_top, labels: Mapping[str, str]
                         ) -> dict[str, tuple[dict, str]]:
    """Sec. V and Fig. 5: best energy reductions (bootstrap standard errors) of standard
    training, the regularizer at p_e = 2p and p_e = p, and the regularizer with the blockwise
    policy; accuracies at the largest trained-for fault rate (means over chips)."""
    std, base, reg2, reg1, combo = (reductions[labels[k]] for k in
                                    ("standard", "base", "reg2", "reg1", "combo"))
    detail = ", ".join(f"{labels[k]}: {reductions[labels[k]].mean:.2f}x"
                       for k in ("standard", "base", "reg2", "reg1", "combo"))
    top = {k: Stat(float(at_top.accuracy[labels[k]]), float(at_top["sem"][labels[k]]),
                   int(at_top["n"][labels[k]])) for k in ("base", "reg1", "reg2")}
    out = {
        "memory_faults.fig5.reg_beats_std": ({"regularizer": reg2, "standard": base}, detail),
        "memory_faults.fig5.pe_eq_p_no_gain": (
            {"ratio_to_standard": reg1.mean / base.mean, "value": reg1.mean / std.mean,
             "pe_eq_p": reg1, "pe_2p": reg2}, detail),
        "memory_faults.fig5.combined_gain": ({"combined": combo, "regularizer": reg2}, detail),
        "memory_faults.fig5.reg_more_robust": (
            {"standard": top["base"], "pe_eq_p": top["reg1"], "pe_2p": top["reg2"]},
            ", ".join(f"{labels[k]} {top[k]}" for k in ("base", "reg1", "reg2"))),
    }
    for key, label in (("std", labels["standard"]), ("reg", labels["reg2"])):
        out[f"memory_faults.fig5.{key}_reduction"] = ({"value": reductions[label].mean}, "")
        out[f"memory_faults.fig5.{key}_best_p"] = ({"value": float(best.rate[label])}, "")
        out[f"memory_faults.fig5.{key}_best_acc"] = ({"value": float(best.accuracy[label])}, "")
    return out
