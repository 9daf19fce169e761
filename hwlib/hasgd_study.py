"""The HA-SGD chapter's studies: sweeps over the stored experiments, summaries and claims.

The notebooks call these; the numbers come from the stored experiments of
:mod:`hwlib.hasgd_experiments`, re-exported here. Nothing in this module changes a stored
number, so editing it leaves the stored results fresh.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .analog import ADC
from .data import load_dataset
from .hasgd_experiments import (INSTANCE_SEED, TRAIN_KNOBS, evaluate_run, hessian_run,
                                nearest_minimum, network_from, point, toy_run, train_config,
                                train_run)
from .store import Entry

__all__ = ["INSTANCE_SEED", "TRAIN_KNOBS", "evaluate_run", "hessian_run",
           "nearest_minimum", "network_from", "point", "toy_run", "train_config", "train_run"]


# --- sweeps for the notebooks ---------------------------------------------------------------


def _workers(session) -> int | None:
    """Parallel workers: the default (one per core) on a CPU; one at a time on a GPU (each run
    uses all of it); none at the smoke profile, whose seconds-long runs would take longer to
    start worker processes than to compute."""
    return 1 if session.profile == "smoke" or session.device.type == "cuda" else None


def train_networks(session, configs: Sequence[Mapping[str, Any]], desc: str = "HA-SGD training"
                   ) -> list[Entry]:
    """Train (or read back) networks in parallel workers, one torch thread each."""
    from .sweep import run_sweep

    return run_sweep(train_run, configs, session.store, desc=desc, device=str(session.device),
                     workers=_workers(session))


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
    from .sweep import run_sweep

    if not any(pt["bits"] for pt in points):
        calib_images = 0  # no ADC: the calibration set plays no part (nor in the key)
    evals = [{"train": dict(c), "profile": session.profile, "points": [dict(p) for p in points],
              "instances": int(instances), "n_test": n_test, "calib_images": int(calib_images),
              "device": str(session.device.type)} for c in configs]
    entries = run_sweep(evaluate_run, evals, session.store, desc=desc,
                        device=str(session.device), workers=_workers(session))
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
    from .sweep import run_sweep

    cfgs = [{"train": dict(c), "profile": session.profile, "images": int(images),
             "probes": int(probes), "seed": int(seed), "device": str(session.device.type)}
            for c in configs]
    entries = run_sweep(hessian_run, cfgs, session.store, desc="Hutchinson traces",
                        device=str(session.device), workers=_workers(session))
    rows = [{"train_sigma": c["train_sigma"], "train_shift": c["train_shift"],
             "samples": c["samples"], **{k: float(e[k]) for k in
                                         ("trace", "trace_se", "weighted", "weighted_se", "loss")}}
            for c, e in zip(configs, entries)]
    return pd.DataFrame(rows), entries


def summarize(table: pd.DataFrame, by: Iterable[str]) -> pd.DataFrame:
    """Mean, standard deviation (the error bars: spread over instances) and count."""
    return (table.groupby(list(by)).accuracy.agg(["mean", "std", "count"]).reset_index()
            .fillna({"std": 0.0}))


# --- the claims' measurements ---------------------------------------------------------------


def at_least(a_mean: float, a_std: float, b_mean: float, b_std: float) -> bool:
    """``a >= b`` within error bars: the bars ``mean +- std`` of a reach those of b."""
    return a_mean + a_std >= b_mean - b_std


def gain_over_standard(summary: pd.DataFrame, level: str = "train_sigma",
                       over: str = "sigma") -> dict[str, float]:
    """The largest mean accuracy gain of a noise-trained network over the standard one.

    Args:
        summary: from :func:`summarize`, with columns ``level`` (the network) and ``over``
            (the test condition); the standard network has ``level == 0``.
        level: the column naming the network.
        over: the column of test conditions the maximum runs over.

    Returns:
        ``gain`` (points), ``relative`` (gain over the standard network's accuracy there),
        ``at`` (the test condition), ``by`` (the network), ``standard`` and ``best`` accuracies.
    """
    std = summary[summary[level] == 0].set_index(over)["mean"]
    rest = summary[summary[level] != 0]
    best = None
    for _, r in rest.iterrows():
        g = r["mean"] - std[r[over]]
        if best is None or g > best["gain"]:
            best = {"gain": float(g), "relative": float(g / std[r[over]]), "at": r[over],
                    "by": r[level], "standard": float(std[r[over]]), "best": float(r["mean"])}
    return best or {"gain": float("nan"), "relative": float("nan"), "at": float("nan"),
                    "by": float("nan"), "standard": float("nan"), "best": float("nan")}


def non_decreasing(means: Sequence[float], stds: Sequence[float]) -> bool:
    """Each value is at least the previous one within error bars (:func:`at_least`)."""
    return all(at_least(means[i + 1], stds[i + 1], means[i], stds[i])
               for i in range(len(means) - 1))


def main_networks(params: Any, device: str = "cpu") -> list[dict[str, Any]]:
    """The chapter's main networks: one per training noise level (``train_sigmas``), zero
    shift, ``samples`` (L) perturbations per mini-batch."""
    return [train_config(params, s, 0.0, params.samples, device) for s in params.train_sigmas]


def shift_networks(params: Any, device: str = "cpu") -> list[dict[str, Any]]:
    """The mean-shift study's networks (Fig. 8): ``shift_sigma`` noise, one per training shift."""
    return [train_config(params, params.shift_sigma, m, params.samples, device)
            for m in params.train_shifts]


def samples_networks(params: Any, device: str = "cpu") -> list[dict[str, Any]]:
    """The L study's networks: ``samples_sigma`` noise, one per value of L."""
    return [train_config(params, params.samples_sigma, 0.0, L, device)
            for L in params.samples_sweep]


def resilience_order(summary: pd.DataFrame, sigma: float) -> tuple[bool, str]:
    """At test level ``sigma``, accuracy non-decreasing with the training level within error
    bars; returns the verdict and the numbers behind it."""
    at = summary[summary.sigma == sigma].sort_values("train_sigma")
    ok = non_decreasing(list(at["mean"]), list(at["std"]))
    detail = ", ".join(f"q={q:g}: {m:.1f}+-{s:.1f}" for q, m, s in
                       zip(at.train_sigma, at["mean"], at["std"]))
    return bool(ok), f"at p={sigma:g}: {detail}"


def clean_cost(summary: pd.DataFrame, bound: float = 3.0, rise: float = 0.5
               ) -> tuple[bool, float, str]:
    """Noise-free accuracy against the training level: it falls from the standard network to
    the highest level by at most ``bound`` points, never rising by more than ``rise`` points
    from one level to the next (the sampling error of the test set)."""
    at = summary[summary.sigma == 0].sort_values("train_sigma")
    acc = list(at["mean"])
    cost = acc[0] - acc[-1]
    ok = 0 < cost <= bound and all(b <= a + rise for a, b in zip(acc[:-1], acc[1:]))
    detail = ", ".join(f"q={q:g}: {m:.2f}" for q, m in zip(at.train_sigma, acc))
    return bool(ok), float(cost), detail


def shift_compensated(summary: pd.DataFrame) -> tuple[bool, str]:
    """At each nonzero test shift, the network trained with that shift is the most accurate
    within error bars and beats the network trained without shift (Fig. 8)."""
    ok, parts = True, []
    for m in sorted(set(summary["shift"]) - {0.0}):
        at = summary[summary["shift"] == m].set_index("train_shift")
        if m not in at.index or 0.0 not in at.index:
            continue
        diag = at.loc[m]
        best = all(at_least(diag["mean"], diag["std"], r["mean"], r["std"])
                   for _, r in at.iterrows())
        beats = diag["mean"] > at.loc[0.0, "mean"]
        ok = ok and best and beats
        parts.append(f"shift {m:g}: trained with it {diag['mean']:.1f}, without "
                     f"{at.loc[0.0, 'mean']:.1f}, best other "
                     f"{at.drop(index=m)['mean'].max():.1f}")
    return bool(ok and parts), "; ".join(parts)


def adc_drops(summary: pd.DataFrame, bits: int) -> pd.Series:
    """Per network (``train_sigma``, ``samples``), the noise-free accuracy lost by quantizing
    every crossbar output with ``bits``-bit ADCs."""
    clean = summary[summary.sigma == 0]
    full = clean[clean.bits == 0].set_index(["train_sigma", "samples"])["mean"]
    low = clean[clean.bits == bits].set_index(["train_sigma", "samples"])["mean"]
    return (full - low).rename("drop")


def trace_decreasing(table: pd.DataFrame, column: str = "trace") -> tuple[bool, str]:
    """The Hessian trace non-increasing with the training level within the sum of standard
    errors of neighbours, the standard network's the largest."""
    t = table.sort_values("train_sigma")
    v, se = list(t[column]), list(t[column + "_se"])
    ok = all(b <= a + sa + sb for a, b, sa, sb in zip(v[:-1], v[1:], se[:-1], se[1:]))
    ok = ok and all(v[0] + se[0] >= x - s for x, s in zip(v[1:], se[1:]))
    detail = ", ".join(f"q={q:g}: {a:.3g}+-{s:.2g}" for q, a, s in zip(t.train_sigma, v, se))
    return bool(ok), detail


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
    from .analog import crossbar_layers, folding_scale

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


def adc_drop_reduced(summary: pd.DataFrame, bits: Sequence[int], chance: float,
                     hurt: float = 5.0, above: float = 20.0) -> tuple[bool, str]:
    """Fig. 9: at every bit width where quantization hurts the standard network (its noise-free
    accuracy drops by at least ``hurt`` points) without sending it to chance (it stays at least
    ``above`` points above ``chance``, in percent), every noise-trained network drops less.

    Returns:
        The verdict (False if no bit width qualifies) and the drops behind it.
    """
    ok, parts = None, []
    for b in sorted(bits):
        drops = adc_drops(summary, b)
        clean = summary[(summary.sigma == 0) & (summary.bits == b) & (summary.train_sigma == 0)]
        std = drops[drops.index.get_level_values("train_sigma") == 0]
        if std.empty or clean.empty:
            continue
        d0, acc0 = float(std.iloc[0]), float(clean["mean"].iloc[0])
        if d0 < hurt or acc0 < chance + above:
            continue
        others = drops[drops.index.get_level_values("train_sigma") > 0]
        ok = (ok is not False) and bool((others < d0).all())
        parts.append(f"{b} bits: standard {d0:.1f}, noise-trained "
                     f"{others.min():.1f} to {others.max():.1f}")
    return bool(ok), ("; ".join(parts) if parts else "no bit width qualifies")


class Phrase:
    """Words glued into a page's text (myst-nb shows a glued value's ``repr``, which for a
    plain ``str`` would carry quotes).

    Args:
        text: the words.
    """

    def __init__(self, text: Any) -> None:
        self.text = str(text)

    def __repr__(self) -> str:
        return self.text
