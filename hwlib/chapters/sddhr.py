"""The S-DDHR chapter: training binarized networks for the distribution of MRAM hardware.

Zhang, Chen & Verma (ICASSP 2019; the journal follow-up, TCAS-I 2021). The hardware is
:class:`hwlib.hardware.mram.MRAMArray`, the networks :mod:`hwlib.models.binary`, and the five
training regimes are the methods of :mod:`hwlib.methods.training`:

========  ==========================================  =========================================
regime    loss                                        method
========  ==========================================  =========================================
Ideal     (3), variability-free model                 :class:`~hwlib.methods.training.Standard`
DDHR      (4), trained on test chip z_i               :class:`~hwlib.methods.training.OneChip`
Fixed     (5), trained on chip z_0                    :class:`~hwlib.methods.training.OneChip`
PS-DDHR   (6), N(mu(a, W), sigma^2(a, W)) per pass     :class:`~hwlib.methods.training.Parametric`
AS-DDHR   (6), N(mu(a, W), sigma_A^2) per pass         :class:`~hwlib.methods.training.Parametric`
Sampled   (6), Z a fresh device-model chip per step   :class:`~hwlib.methods.training.FreshChip`
========  ==========================================  =========================================

The first five are the paper's. *Sampled* is this book's: loss (6) with Z the device model
itself (Gaussian resistances, G = 1/R), a fresh chip drawn on the training device at every
mini-batch, forward through the chip and gradients through the expected chip (Algorithm 1).
Test chips are drawn from the device model (``instance_model="resistance"``); the
first-order Gaussian conductances that PS-DDHR trains on are a labelled ablation.

Sections: configs; stored experiments (:func:`conductance_mc`, :func:`train_run`); sweeps to
frames (:func:`moment_sweep`, :func:`run_study`, :func:`table1`, the column levels of Fig. 3);
claim readings (:func:`readings_moments`, :func:`readings_levels`,
:func:`readings_convergence`, :func:`readings_table1`).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import DATASETS, load_dataset
from ..errors import ParameterError, check_int
from ..hardware.mram import (MU_P_OHM, R_MIN_REL, SIGMA_REL_NOMINAL, TMR, ArrayInstance,
                             MRAMArray, MRAMCell, column_levels, g_moments_exact,
                             g_moments_first_order, g_moments_second_order,
                             preactivation_shift, preactivation_std, prob_below_floor)
from ..methods.evaluation import accuracy_on_chips
from ..methods.training import (FreshChip, Method, OneChip, Parametric, Standard, Step,
                                cosine_schedule, fit, optimizer_for, steps_per_epoch)
from ..models.binary import BinaryMLP, VGGBinaryNet, clip_latent_weights
from ..study.rules import Stat
from ..study.store import experiment

# --- configs ----------------------------------------------------------------------------------

#: The paper's five training regimes, in its order of Table 1.
PAPER_REGIMES = ("ddhr", "ideal", "fixed", "ps_ddhr", "as_ddhr")
#: Every regime: the paper's, then this book's sampling of the device model.
REGIMES = (*PAPER_REGIMES, "sampled")
#: Display names.
REGIME_LABELS = {"ideal": "Ideal", "ddhr": "DDHR", "fixed": "Fixed", "ps_ddhr": "PS-DDHR",
                 "as_ddhr": "AS-DDHR", "sampled": "Sampled"}
#: The seed of the Fixed regime's training chip z_0 (never a test chip: those are
#: 1..instances).
FIXED_SEED = 10_000
#: Images per forward pass in evaluations.
EVAL_BATCH = 2000
#: The smallest Monte Carlo sample (its standard errors need a large sample).
MIN_MC = 100


def cell_at(config: dict[str, Any], scale: float) -> MRAMCell:
    """The bit cell at ``scale`` times the config's nominal variation."""
    return MRAMCell.from_variation(config["sigma_rel_nominal"], scale, config["mu_p_ohm"],
                                   config["tmr"], config["r_min_rel"])


def hardware_at(config: dict[str, Any], scale: float) -> MRAMArray:
    """The MRAM arrays of a config at ``scale`` times its nominal variation."""
    return MRAMArray(cell_at(config, scale), config["instance_model"])


def method_for(regime: str, train_seed: int = 0) -> Method:
    """The training method of a regime (see the module text)."""
    if regime == "ideal":
        return Standard()
    if regime in ("ddhr", "fixed"):
        return OneChip(int(train_seed))
    if regime in ("ps_ddhr", "as_ddhr"):
        return Parametric(approximate=regime == "as_ddhr")
    if regime == "sampled":
        return FreshChip()
    raise ParameterError(f"regime={regime!r}: must be one of {', '.join(REGIMES)}")


def build_network(config: dict[str, Any]) -> nn.Module:
    """The config's network: ``mlp`` (book profile) or ``vgg`` (the paper's BNN)."""
    torch.manual_seed(config["seed"])
    info = DATASETS[config["dataset"]]
    if config["network"] == "mlp":
        return BinaryMLP(int(np.prod(info.shape)), tuple(config["hidden_widths"]), info.classes)
    if config["network"] == "vgg":
        return VGGBinaryNet(info.classes, config["width"], info.shape[0], info.shape[1])
    raise ParameterError(f"network={config['network']!r}: must be 'mlp' or 'vgg'")


#: The knobs of a notebook that every training run of the study shares.
TRAIN_KNOBS = ("epochs", "n_train", "n_test", "n_test_epoch", "batch_size", "lr", "network",
               "hidden_widths", "width", "sigma_rel_nominal", "mu_p_ohm", "tmr", "r_min_rel",
               "instance_model", "precision", "channels_last", "seed")


def study_settings(session: Any, **changes: Any) -> dict[str, Any]:
    """The settings every training run of a notebook's study shares (its knobs and torch
    device), with ``changes`` applied."""
    out = {k: session.params[k] for k in TRAIN_KNOBS}
    out["torch_device"] = session.torch_device.type
    out.update(changes)
    return out


def study_configs(dataset: str, scales: Sequence[float], instances: int,
                  regimes: Sequence[str] = REGIMES, **common: Any) -> list[dict[str, Any]]:
    """The training runs behind Figs. 4 and 5 and Table 1 for one dataset.

    Ideal is trained once and tested at every level; Fixed, PS-DDHR, AS-DDHR and Sampled once
    per level; DDHR once per level and test chip (trained and tested on z_i). Test chips are
    seeds 1..instances, the same chips at every level.

    Args:
        dataset: the dataset.
        scales: the variation multiples (a non-empty list).
        instances: test chips per level.
        regimes: the regimes to run.
        **common: the rest of :func:`train_run`'s config (epochs, sizes, cell, ...).
    """
    if not len(scales):
        raise ParameterError("sigma_scales=[]: must be a non-empty list of variation multiples")
    if not len(regimes):
        raise ParameterError(f"regimes=[]: must be a non-empty list of {', '.join(REGIMES)}")
    for r in regimes:
        if r not in REGIMES:
            raise ParameterError(f"regime {r!r}: must be one of {', '.join(REGIMES)}")
    check_int("epochs", common.get("epochs"), 1)
    check_int("instances", instances, 1)
    seeds = list(range(1, instances + 1))
    base = dict(common, dataset=dataset, eval_seeds=seeds, train_seed=0)
    out = []
    if "ideal" in regimes:
        out.append(dict(base, regime="ideal", train_scale=0.0,
                        eval_scales=[0.0, *map(float, scales)]))
    for s in map(float, scales):
        for r in ("fixed", "ps_ddhr", "as_ddhr", "sampled"):
            if r in regimes:
                out.append(dict(base, regime=r, train_scale=s, eval_scales=[s],
                                train_seed=FIXED_SEED if r == "fixed" else 0))
        if "ddhr" in regimes:
            out += [dict(base, regime="ddhr", train_scale=s, eval_scales=[s], train_seed=i,
                         eval_seeds=[i]) for i in seeds]
    return out


# --- stored experiments -------------------------------------------------------------------------


@experiment("sddhr.conductance_mc", outputs=("mean", "var", "skew", "mean_se", "var_se",
                                             "clipped_fraction", "hist_edges", "hist_density"))
def conductance_mc(config: dict) -> dict:
    """Monte Carlo moments and histogram of G = 1/R for one state at one variation level.

    Args:
        config: ``mu`` and ``sigma`` (ohm), ``r_min_rel``, ``n_samples``, ``seed``,
            ``bins`` (histogram bins over mean +- 6 first-order standard deviations).

    Returns:
        ``mean``, ``var``, ``skew`` of G and their standard errors, the clipped fraction,
        and ``hist_edges``/``hist_density`` arrays.
    """
    mu, sigma, n = float(config["mu"]), float(config["sigma"]), int(config["n_samples"])
    gen = torch.Generator().manual_seed(int(config["seed"]))
    m1, v1 = g_moments_first_order(mu, sigma)
    half = 6 * math.sqrt(v1) if sigma > 0 else 0.5 * m1
    edges = torch.linspace(m1 - half, m1 + half, int(config.get("bins", 120)) + 1,
                           dtype=torch.float64)
    counts = torch.zeros(len(edges) - 1, dtype=torch.float64)
    s1 = s2 = s3 = s4 = 0.0
    clipped = 0
    done = 0
    chunk = 1_000_000
    while done < n:
        k = min(chunk, n - done)
        r = torch.randn(k, generator=gen, dtype=torch.float64).mul_(sigma).add_(mu)
        clipped += int((r < config["r_min_rel"] * mu).sum())
        g = r.clamp_(min=config["r_min_rel"] * mu).reciprocal_()
        d = g - m1  # moments about the first-order mean: numerically stable
        s1 += float(d.sum())
        s2 += float((d * d).sum())
        d2 = d * d
        s3 += float((d2 * d).sum())
        s4 += float((d2 * d2).sum())
        counts += torch.histc(g, bins=len(counts), min=float(edges[0]), max=float(edges[-1]))
        done += k
    mean_d = s1 / n
    var = s2 / n - mean_d**2
    m2, m3, m4 = s2 / n, s3 / n, s4 / n
    third = m3 - 3 * mean_d * m2 + 2 * mean_d**3
    fourth = m4 - 4 * mean_d * m3 + 6 * mean_d**2 * m2 - 3 * mean_d**4
    width = float(edges[1] - edges[0])
    return {
        "mean": m1 + mean_d,
        "var": var * n / (n - 1),
        "skew": third / var**1.5 if var > 0 else 0.0,
        "mean_se": math.sqrt(var / n),
        "var_se": math.sqrt(max(fourth - var**2, 0.0) / n),
        "clipped_fraction": clipped / n,
        "hist_edges": edges.numpy(),
        "hist_density": (counts / (n * width)).numpy() if width > 0 else counts.numpy(),
    }


@experiment("sddhr.train_run", outputs=("history", "final", "clean", "epoch_time_s"))
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network in one regime and test it on chips after every epoch.

    Args:
        config: ``dataset``, ``regime``, ``train_scale`` (variation multiple it trains at),
            ``train_seed`` (z_i for DDHR, z_0 for Fixed), ``eval_scales``, ``eval_seeds``,
            ``epochs``, ``n_train``, ``n_test``, ``n_test_epoch`` (test images for the
            per-epoch curves), ``batch_size``, ``lr``, ``network``, ``hidden_widths``/``width``,
            the cell (``sigma_rel_nominal``, ``mu_p_ohm``, ``tmr``, ``r_min_rel``),
            ``instance_model``, ``precision`` and ``channels_last`` (CUDA arithmetic),
            ``torch_device`` (``cpu`` or ``cuda``), ``seed``.

    Returns:
        ``history`` (epochs x eval scales x chips) and ``final`` (eval scales x chips)
        accuracies, ``clean`` (variability-free accuracy per epoch) and ``epoch_time_s``.
    """
    device = torch.device(config["torch_device"])
    x, y = (t.to(device) for t in load_dataset(config["dataset"], True, config["n_train"],
                                               config["seed"]))
    xt, yt = (t.to(device) for t in load_dataset(config["dataset"], False, config["n_test"],
                                                 config["seed"]))
    xe, ye = xt[:config["n_test_epoch"]], yt[:config["n_test_epoch"]]
    model = build_network(config).to(device)
    opt = optimizer_for(model, "adam", config["lr"])
    sched = cosine_schedule(opt, config["epochs"],
                            steps_per_epoch(len(y), config["batch_size"]))
    step = Step(model, opt, hardware_at(config, config["train_scale"]),
                method_for(config["regime"], config["train_seed"]),
                generator=torch.Generator(device).manual_seed(int(config["seed"]) + 2),
                after_step=clip_latent_weights, precision=config["precision"],
                channels_last=config["channels_last"] and config["network"] == "vgg")
    tests = {s: hardware_at(config, s) for s in [0.0, *config["eval_scales"]]}
    history, clean = [], []

    def evaluate(xs, ys):
        return np.stack([accuracy_on_chips(model, tests[s], xs, ys, config["eval_seeds"],
                                           EVAL_BATCH, config["precision"])
                         for s in config["eval_scales"]])

    def on_epoch(_):
        history.append(evaluate(xe, ye))
        clean.append(float(accuracy_on_chips(model, tests[0.0], xe, ye, [0], EVAL_BATCH,
                                             config["precision"])[0]))

    hist = fit(step, x, y, config["epochs"], config["batch_size"], config["seed"], sched,
               on_epoch=on_epoch, desc=f"{config['regime']} x{config['train_scale']:g}")
    return {"history": np.stack(history), "final": evaluate(xt, yt), "clean": np.array(clean),
            "epoch_time_s": np.array(hist["epoch_time_s"])}


# --- sweeps to frames ---------------------------------------------------------------------------


def moment_sweep(session, sigma_scales, sigma_rel: float = SIGMA_REL_NOMINAL,
                 mu_p: float = MU_P_OHM, tmr: float = TMR, r_min_rel: float = R_MIN_REL,
                 n_samples: int = 1_000_000, seed: int = 0):
    """Monte Carlo moments of G_P and G_AP at each variation multiple, beside the closed forms.

    Each (state, multiple) point is one stored experiment, run in parallel workers.

    Args:
        session: the notebook's :class:`hwlib.Session` (its store is used).
        sigma_scales: multiples of the nominal variation.
        sigma_rel: nominal sigma/mu.
        mu_p: mean parallel resistance, ohm.
        tmr: tunnel magnetoresistance ratio.
        r_min_rel: resistance floor / mean.
        n_samples: Monte Carlo draws per point.
        seed: base seed; point i uses ``seed + i``.

    Returns:
        ``(table, entries)``: a DataFrame with one row per point (Monte Carlo mean and
        variance, their standard errors, first- and second-order predictions, relative
        errors, the clipped fraction) and the stored entries, in the same order.
    """
    from ..study.sweep import run_sweep

    if not len(sigma_scales):
        raise ParameterError("sigma_scales=[]: must be a non-empty list of variation multiples")
    check_int("n_samples", n_samples, MIN_MC)
    configs, rows = [], []
    for scale in sigma_scales:
        cell = MRAMCell.from_variation(sigma_rel, scale, mu_p, tmr, r_min_rel)
        for state in ("P", "AP"):
            mu, sigma = cell.state(state)
            configs.append({"mu": mu, "sigma": sigma, "r_min_rel": r_min_rel,
                            "n_samples": int(n_samples), "seed": seed + len(configs),
                            "bins": 120})
            rows.append({"state": state, "scale": float(scale), "sigma_rel": sigma / mu,
                         "mu": mu, "sigma": sigma})
    entries = run_sweep(conductance_mc, configs, session.store, desc="G moments",
                        device=str(session.torch_device))
    for row, entry in zip(rows, entries):
        m1, v1 = g_moments_first_order(row["mu"], row["sigma"])
        m2, v2 = g_moments_second_order(row["mu"], row["sigma"])
        row.update(
            mc_mean=entry["mean"], mc_mean_se=entry["mean_se"], mc_var=entry["var"],
            mc_var_se=entry["var_se"], skew=entry["skew"],
            clipped=entry["clipped_fraction"],
            first_mean=m1, first_var=v1, second_mean=m2, second_var=v2,
            err_first_mean=entry["mean"] / m1 - 1, err_first_var=entry["var"] / v1 - 1,
            err_second_mean=entry["mean"] / m2 - 1, err_second_var=entry["var"] / v2 - 1,
        )
    return pd.DataFrame(rows), entries


def run_study(session, datasets: Sequence[str], scales: Sequence[float], instances: int,
              regimes: Sequence[str] = REGIMES, **common: Any):
    """Run (or read back) every training run of the study, in parallel workers.

    Returns:
        ``(final, history, entries)``: a DataFrame of final accuracies (dataset, regime,
        scale, instance, accuracy), one of per-epoch accuracies (plus epoch), and the
        stored entries.
    """
    from ..study.sweep import run_sweep

    if not len(datasets):
        raise ParameterError("datasets=[]: must be a non-empty list of datasets")
    configs = [c for d in datasets for c in study_configs(d, scales, instances, regimes,
                                                          **common)]
    entries = run_sweep(train_run, configs, session.store, desc="S-DDHR training runs",
                        device=str(session.torch_device),
                        run_gib=3.0 if common.get("network") == "vgg" else 0.5)
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


def table1(final: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Table 1: mean, standard deviation, count and standard error over chips of each regime
    at one level."""
    at = final[final.scale == float(scale)]
    out = (at.groupby(["dataset", "regime"]).accuracy.agg(["mean", "std", "count"])
           .reset_index())
    out["se"] = out["std"] / np.sqrt(out["count"])
    return out


def level_patterns(M: int) -> torch.Tensor:
    """Inputs with p1 = 0..M products equal to +1, for the all-(+1) weight column."""
    return torch.tensor([[1.0] * k + [-1.0] * (M - k) for k in range(M + 1)],
                        dtype=torch.float64)


def enumerate_levels(M: int, cell: MRAMCell) -> dict[str, Any]:
    """Every input pattern a and weight column W of an M-row column (2^M x 2^M pairs), read
    through the array model with each cell at its expected conductance: the distinct column
    conductances, and the pairs whose reading is not ``p1 E[G_P] + p-1 E[G_AP]`` with p1 the
    number of XNOR products a_m W_m equal to +1."""
    mp, _ = g_moments_first_order(cell.mu_p, cell.sigma_p)
    map_, _ = g_moments_first_order(cell.mu_ap, cell.sigma_ap)
    inst = ArrayInstance(torch.full((2, M, 1), mp, dtype=torch.float64),
                         torch.full((2, M, 1), map_, dtype=torch.float64), cell)
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=M)), dtype=torch.float64)
    values, mismatches = [], 0
    for w in signs:
        g = inst.column_conductance(signs, w[:, None])[:, 0]
        p1 = (signs * w > 0).sum(1).to(torch.float64)
        expected = p1 * mp + (M - p1) * map_
        mismatches += int((~torch.isclose(g, expected, rtol=1e-12, atol=0)).sum())
        values.append(g)
    g = torch.cat(values)
    distinct = torch.unique(torch.round(g / (mp - map_) * 1e6)).numel()
    return {"patterns": int(len(signs) ** 2), "levels": int(distinct),
            "mismatches": int(mismatches)}


def level_monte_carlo(M: int, cell: MRAMCell, n: int, seed: int,
                      model: str = "resistance") -> pd.DataFrame:
    """Monte Carlo of the M+1 levels of an M-row column: ``n`` chips drawn from the device
    model (Gaussian resistances by default), read with one input pattern per level; the
    sample mean and variance of G_n per level beside the first-order moments."""
    check_int("n", n, MIN_MC)
    inst = ArrayInstance.sample(M, 1, cell, seed, instances=n, dtype=torch.float64, model=model)
    g = inst.column_conductance(level_patterns(M), torch.ones(M, 1, dtype=torch.float64))
    g = g[..., 0].numpy()
    _, m1, v1 = column_levels(M, cell)
    rows = []
    for k in range(M + 1):
        mean, var = float(g[:, k].mean()), float(g[:, k].var(ddof=1))
        rows.append({"p1": k, "mc_mean": mean, "mc_var": var, "first_mean": float(m1[k]),
                     "first_var": float(v1[k]), "mean_err": mean / m1[k] - 1,
                     "var_err": var / v1[k] - 1,
                     "mean_se_rel": float(g[:, k].std(ddof=1) / math.sqrt(n) / m1[k]),
                     "var_se_rel": math.sqrt(2 / (n - 1)) * var / v1[k]})
    return pd.DataFrame(rows)


def moment_gap_table(scales: Sequence[float], M: int, sigma_rel: float = SIGMA_REL_NOMINAL,
                     mu_p: float = MU_P_OHM, tmr: float = TMR, r_min_rel: float = R_MIN_REL
                     ) -> pd.DataFrame:
    """Why PS-DDHR's first-order model and chips of the device model part: per variation
    multiple, what an M-row column's pre-activation does on Gaussian-resistance chips that the
    first-order model leaves out (exact moments of G = 1/R by quadrature, no sampling).

    Columns: ``scale``; ``sigma_rel`` (sigma/mu); ``floored`` (the share of cells at the
    resistance floor); ``g_mean_rise`` (E[G] mu - 1, the same in both states); ``shift`` (the
    mean of u_n above the ideal u at u = 0, in pre-activation units), ``shift_sd`` (that shift
    in standard deviations of u_n over chips), ``shift_rel`` (that shift over sqrt(M), the
    spread of u over random +-1 inputs and weights) and ``std_ratio`` (the exact std of u_n
    over the first-order std PS-DDHR samples).
    """
    rows = []
    for scale in map(float, scales):
        cell = MRAMCell.from_variation(sigma_rel, scale, mu_p, tmr, r_min_rel)
        shift, std = preactivation_shift(0.0, M, cell)
        first = preactivation_std(0.0, M, cell)
        mean_p, _ = g_moments_exact(cell.mu_p, cell.sigma_p, r_min_rel)
        rows.append({"scale": scale, "sigma_rel": cell.sigma_p / cell.mu_p,
                     "floored": prob_below_floor(cell.mu_p, cell.sigma_p, r_min_rel),
                     "g_mean_rise": mean_p * cell.mu_p - 1.0, "shift": float(shift),
                     "shift_sd": float(shift / std) if std > 0 else 0.0,
                     "shift_rel": float(shift) / math.sqrt(M),
                     "std_ratio": float(std / first) if first > 0 else 1.0})
    return pd.DataFrame(rows)


def separation_scale(final: pd.DataFrame, dataset: str, points: float) -> float:
    """The smallest swept variation multiple at which Ideal and Fixed both fall at least
    ``points`` below DDHR (means over chips), NaN when none does."""
    d = final[(final.dataset == dataset) & (final.scale > 0)]
    means = d.pivot_table(index="scale", columns="regime", values="accuracy", aggfunc="mean")
    if not {"ideal", "fixed", "ddhr"} <= set(means.columns):
        return math.nan
    far = means[(means.ideal <= means.ddhr - points) & (means.fixed <= means.ddhr - points)]
    return float(far.index.min()) if len(far) else math.nan


# --- claim readings: what each scorecard rule reads ---------------------------------------------


def readings_moments(table: pd.DataFrame) -> dict[str, tuple[dict, str]]:
    """Sec. 4.3: the relative error of the first-order mean and variance of G_P and G_AP
    against Monte Carlo at the nominal spread (scale 1)."""
    out = {}
    for state, name in (("P", "gp"), ("AP", "gap")):
        row = table[(table.scale == 1.0) & (table.state == state)].iloc[0]
        for moment in ("mean", "var"):
            err = abs(float(row[f"err_first_{moment}"]))
            se = float(row[f"mc_{moment}_se"] / row[f"mc_{moment}"])
            out[f"sddhr.eq.{name}_first_order_{moment}"] = (
                {"value": err}, f"{100 * err:.3f} % off at 1x nominal (Monte Carlo relative "
                                f"SE {100 * se:.3f} %)")
    return out


def readings_levels(enum: dict[str, Any], nominal: pd.DataFrame, large: pd.DataFrame,
                    large_scale: float, n: int) -> dict[str, tuple[dict, str]]:
    """Fig. 3: the level count by enumeration, and the Monte Carlo level moments of Gaussian
    resistances against the first-order form at 1x (judged) and at ``large_scale`` (shown)."""
    return {
        "sddhr.fig3.m4_levels": (
            {"value": enum["levels"], "mismatches": enum["mismatches"]},
            f"{enum['patterns']} (a, W) pairs enumerated"),
        "sddhr.fig3.m4_level_moments": (
            {"mean_err": float(nominal.mean_err.abs().max()),
             "var_err": float(nominal.var_err.abs().max()),
             "mean_err_large": float(large.mean_err.abs().max()),
             "var_err_large": float(large.var_err.abs().max())},
            f"{n:,} chips of Gaussian resistances; at {large_scale:g}x nominal the largest "
            f"errors are {100 * large.mean_err.abs().max():.2f} % (mean) and "
            f"{100 * large.var_err.abs().max():.1f} % (variance)"),
    }


def _regime_stats(rows: pd.DataFrame) -> dict[str, Stat]:
    return {r: Stat.of(g.accuracy.to_numpy()) for r, g in rows.groupby("regime")}


def readings_convergence(history: pd.DataFrame, dataset: str, scale: float
                         ) -> dict[str, tuple[dict, str]]:
    """Fig. 4: each regime's accuracy at the last epoch at ``scale``, mean over chips."""
    last = history[(history.dataset == dataset) & (history.epoch == history.epoch.max())
                   & (history.scale == float(scale))]
    stats = _regime_stats(last)
    detail = ", ".join(f"{REGIME_LABELS[r]} {stats[r].mean:.1f}" for r in REGIMES if r in stats)
    return {"sddhr.fig4.convergence": (stats, f"last epoch at {scale:g}x: {detail}")}


def readings_table1(final: pd.DataFrame, dataset: str, scale: float
                    ) -> dict[str, tuple[dict, str]]:
    """Table 1, Fig. 5, Sec. 4.4 and the journal's drop, on one dataset: every regime's
    accuracy over chips at ``scale``; DDHR, PS-DDHR and AS-DDHR at every level up to it; the
    variability-free accuracy (the Ideal network on sigma = 0 hardware)."""
    d = final[final.dataset == dataset]
    at = _regime_stats(d[d.scale == float(scale)])
    clean = Stat.of(d[(d.regime == "ideal") & (d.scale == 0)].accuracy.to_numpy())
    levels = sorted(s for s in d.scale.unique() if 0 < s <= float(scale))
    per = {r: [Stat.of(d[(d.regime == r) & (d.scale == s)].accuracy.to_numpy())
               for s in levels] for r in ("ddhr", "ps_ddhr", "as_ddhr")}
    worse = min(at["ps_ddhr"].mean, at["as_ddhr"].mean) if {"ps_ddhr", "as_ddhr"} <= set(at) \
        else math.nan
    table = ", ".join(f"{REGIME_LABELS[r]} {at[r].mean:.1f}" for r in REGIMES if r in at)
    up_to = "levels " + ", ".join(f"{s:g}x" for s in levels)
    out = {
        "sddhr.table1.sddhr_near_ddhr": (at, f"{scale:g}x: {table}"),
        "sddhr.table1.ideal_fixed_far": (at, f"{scale:g}x: {table}"),
        "sddhr.table1.fixed_below_ideal": (at, f"{scale:g}x: {table}"),
        "sddhr.fig5.ddhr_flat": ({"ddhr_levels": per["ddhr"], "variability_free": clean},
                                 up_to),
        "sddhr.fig5.sddhr_slight_drop": (
            {"ddhr_levels": per["ddhr"], "ps_ddhr_levels": per["ps_ddhr"],
             "as_ddhr_levels": per["as_ddhr"]}, up_to),
        "sddhr.fig5.ddhr_high": ({"value": min(s.mean for s in per["ddhr"])} if per["ddhr"]
                                 else {"value": math.nan}, up_to),
        "sddhr.tcas.drop": ({"value": clean.mean - worse},
                            f"variability-free {clean.mean:.1f}; {table}"),
    }
    for r in PAPER_REGIMES:
        if r in at:
            out[f"sddhr.table1.{r}"] = ({"value": at[r].mean}, f"{at[r]} over chips")
    if "sampled" in at:  # this book's findings on the Sampled regime
        gap = f"{scale:g}x: Sampled {at['sampled']}, PS-DDHR " + (
            f"{at['ps_ddhr']}" if "ps_ddhr" in at else "not run") + ", DDHR " + (
            f"{at['ddhr']}" if "ddhr" in at else "not run")
        out["sddhr.findings.sampled_beats_ps"] = (at, gap)
        out["sddhr.findings.sampled_near_ddhr"] = (at, gap)
    for r in ("ps_ddhr", "as_ddhr"):
        if r in at:
            out[f"sddhr.sec44.{r}_drop"] = ({"value": clean.mean - at[r].mean},
                                            f"variability-free {clean.mean:.1f}")
    return out
