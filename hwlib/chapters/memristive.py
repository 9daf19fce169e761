"""The stochastic memristive chapter (Babu & Rajendran): the claim readings.

The simulator (bit-stream training with two-device memristive synapses) is
:mod:`hwlib.stochastic_dnn`; this module reads the measurements each scorecard claim's rule
judges.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..study.rules import Stat


def readings_products(table: pd.DataFrame, slope: float, bl_grid: Sequence[int]
                      ) -> dict[str, tuple[dict, str]]:
    """Eq. (3): the largest ``|z|`` of the Monte Carlo mean and variance of the stream product
    against ab and ab(1 - ab)/N, and the log-log slope of the error against N."""
    return {
        "memristive.eq3.mean": ({"max_abs_z": float(table.z_mean.abs().max()),
                                 "points": len(table)},
                                f"max |z| over {len(table)} points"),
        "memristive.eq3.var": ({"max_abs_z": float(table.z_var.abs().max()),
                                "points": len(table)},
                               f"max |z| over {len(table)} points"),
        "memristive.eq3.error_vs_bl": ({"value": float(slope)},
                                       f"N = {min(bl_grid)} to {max(bl_grid)}"),
    }


def readings_streams(summary: pd.DataFrame, epochs: int) -> dict[str, tuple[dict, str]]:
    """Fig. 3: best test accuracy over the epochs of the floating-point network (BL 0) and of
    the stochastic ones, and their final training errors."""
    best = dict(zip(summary.bl, summary.best_test_acc))
    err = dict(zip(summary.bl, summary.final_train_error))
    what = f"best of {epochs} epochs"
    return {
        "memristive.fig3.float": ({"value": best.get(0, math.nan)}, what),
        "memristive.fig3.bl100": ({"value": best.get(100, math.nan)}, what),
        "memristive.fig3.bl10": ({"value": best.get(10, math.nan)}, what),
        "memristive.fig3.bl_ordering": (
            {**{f"error_bl{b}": err.get(b, math.nan) for b in (2, 10, 50, 100)},
             "accuracy_bl100": best.get(100, math.nan), "accuracy_float": best.get(0, math.nan)},
            "final training error " + ", ".join(f"BL {b}: {err[b]:.2f}" for b in sorted(err)
                                                if b) + f"; float {err.get(0, math.nan):.2f}"),
    }


def _seed_stat(row: Mapping[str, Any]) -> Stat:
    n = int(row["n"])
    return Stat(float(row["best"]), float(row["sd"]) / math.sqrt(n) if n > 1 else math.nan, n)


def readings_synapses(by_sigma: pd.DataFrame, best_float: float) -> dict[str, tuple[dict, str]]:
    """Fig. 4: the memristive networks' best test accuracy against the programming noise
    sigma/B (means over network seeds, with standard errors), against the floating-point
    baseline."""
    stats = {float(s): _seed_stat(r) for s, r in by_sigma.iterrows()}
    a01 = stats.get(0.1, Stat(math.nan, math.nan, 0))
    a03 = stats.get(0.3, Stat(math.nan, math.nan, 0))
    beyond = [stats[s] for s in sorted(stats) if s >= 0.3]
    gap = best_float - a01.mean
    return {
        "memristive.fig4.sigma01": ({"value": a01.mean}, f"{a01} over network seeds"),
        "memristive.fig4.sigma01_gap": ({"value": gap},
                                        f"float {best_float:.2f} - memristive {a01.mean:.2f}"),
        "memristive.abstract.loss_under_3": (
            {"value": gap}, f"float {best_float:.2f} - memristive {a01.mean:.2f}"),
        "memristive.fig4.sigma03_negligible": (
            {"value": a01.mean - a03.mean, "at_01": a01, "at_03": a03},
            f"{a01.mean:.2f} at 0.1B, {a03.mean:.2f} at 0.3B"),
        "memristive.fig4.falls_beyond_03": (
            {"from_03": beyond, "at_03": a03, "at_10": stats.get(1.0, Stat(math.nan,
                                                                             math.nan, 0))},
            ", ".join(f"{s:g}B: {v.mean:.2f}" for s, v in sorted(stats.items()))),
    }


def readings_noise(table: pd.DataFrame, drops: pd.DataFrame, names: Mapping[str, str],
                   spread: pd.DataFrame, networks: int, top: float
                   ) -> dict[str, tuple[dict, str]]:
    """Fig. 5: accuracy drops from clean to input-noise variance ``top`` of the floating-point
    network and of the memristive one at BL 10 and 100 (means over networks, standard errors
    from the spread over networks), and their accuracies there."""
    def stat(frame: pd.DataFrame, key: str) -> Stat:
        name = names[key]
        if name not in frame.index:
            return Stat(math.nan, math.nan, 0)
        sd = float(spread.loc[name, top]) if name in spread.index else math.nan
        return Stat(float(frame.loc[name, top]), sd / math.sqrt(networks) if networks > 1
                    else math.nan, networks)

    d = {k: stat(drops, k) for k in names}
    a = {k: stat(table, k) for k in names}
    per = f"variance {top:g}, mean of {networks} networks"
    return {
        "memristive.fig5.drop_bl10": ({"value": d["bl10"].mean}, per),
        "memristive.fig5.drop_float": ({"value": d["float"].mean}, per),
        "memristive.fig5.drop_bl100": ({"value": d["bl100"].mean}, per),
        "memristive.fig5.drop_order": (
            {"bl100": d["bl100"], "bl10": d["bl10"], "float": d["float"]},
            f"drops: BL=100 {d['bl100'].mean:.2f}, BL=10 {d['bl10'].mean:.2f}, float "
            f"{d['float'].mean:.2f}"),
        "memristive.fig5.bl100_beats_float": (
            {"bl100": a["bl100"], "float": a["float"]},
            f"{a['bl100'].mean:.2f} vs {a['float'].mean:.2f} at {per}"),
    }
