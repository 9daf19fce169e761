"""The stochastic memristive chapter: Babu & Rajendran, "Stochastic deep learning in memristive
networks" (ICECS 2017).

The device is :mod:`hwlib.hardware.memristor` (the write model of a two-device synapse), the
arithmetic :mod:`hwlib.hardware.bitstream`, and the networks train with bit-stream training,
:mod:`hwlib.methods.bitstream_training` (a specialised consumer of the write model, with its
compiled path in :mod:`hwlib.methods.bitstream_kernels`).

Sections, as in every chapter module:

* **configs**: the chapter's networks from a notebook's parameters (:func:`float_networks`,
  :func:`memristive_networks`, :func:`reset_networks`, :func:`w_max_networks`,
  :func:`baseline_networks`, :func:`reading_networks`, :func:`chapter_networks`) and their
  labels;
* **stored experiments**: :func:`product_mc` (Monte Carlo of eq. (3)), :func:`train_run` (one
  network trained, its final weights kept), :func:`noisy_inference` (a trained network on
  noisy test images, Fig. 5);
* **sweeps to frames**: :func:`product_sweep`, :func:`train_networks` (groups of networks in
  parallel workers, one stored entry per network), :func:`noisy_table`,
  :func:`history_frame`, :func:`summary_frame`, :func:`sigma_table`, :func:`w_max_table`;
* **claim readings**: the measurements each scorecard claim's rule reads
  (:func:`readings_products`, :func:`readings_streams`, :func:`readings_synapses`,
  :func:`readings_noise`).

Training runs are shared across notebooks: notebook 2 trains every network of the chapter
(:func:`chapter_networks`), and notebooks 3 and 4 read them back from the store.
"""

from __future__ import annotations

import json
import math
import time
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..errors import ParameterError, check_probability
from ..hardware.bitstream import (and_stream, bernoulli_stream, check_bl, product_moments,
                                  sng_probability, sng_stream)
from ..methods.bitstream_training import (INPUT_NORMS, NetworkConfig, forward_labels,
                                          load_split, network_inputs, plan_groups,
                                          relative_cost, stored_weights, stream_seed,
                                          train_lockstep)
from ..study.profiles import settings
from ..study.rules import Stat
from ..study.store import current_store, experiment
from ..study.sweep import default_workers, run_sweep, worker_init

#: Below this much work (images times relative cost) a sweep runs in this process.
SMALL_WORK = 200_000
#: Names of the input readings (:data:`hwlib.methods.bitstream_training.INPUT_NORMS`) in tables.
INPUT_NORM_LABELS = {"image_mean": "each image minus its mean", "unit": "pixels in [0, 1]"}
#: The paper's best test accuracy of the memristive network at sigma = 0.1B (Fig. 4), %.
PAPER_SIGMA01 = 95.31


# --- configs ----------------------------------------------------------------------------------


def _settings(p: Any, device: str) -> dict[str, Any]:
    return dict(dataset=p.dataset, epochs=p.epochs, n_train=p.n_train, n_test=p.n_test,
                lr=p.lr_first, lr_final=p.lr_last, seed=p.seed, device=device,
                input_norm=p.input_norm)


def float_networks(p: Any, device: str = "cpu") -> list[NetworkConfig]:
    """The networks of Fig. 3: the deterministic one and one per ``p.stream_lengths``."""
    base = _settings(p, device)
    return [NetworkConfig(bl=0, **base)] + [NetworkConfig(bl=int(b), **base)
                                            for b in p.stream_lengths]


def baseline_networks(p: Any, device: str = "cpu", seeds: int = 1) -> list[NetworkConfig]:
    """The references of the memristive networks: the deterministic network (``seeds``
    networks, seeds ``p.seed``, ``p.seed + 1``, ...) and the stochastic one with floating-point
    weights and the memristive networks' BL (``p.train_bl``, seed ``p.seed``), last."""
    base = _settings(p, device)
    seed0 = base.pop("seed")
    return ([NetworkConfig(bl=0, seed=seed0 + i, **base) for i in range(int(seeds))]
            + [NetworkConfig(bl=int(p.train_bl), seed=seed0, **base)])


def memristive_networks(p: Any, device: str = "cpu", sigmas: Sequence[float] | None = None,
                        seeds: int = 1) -> list[NetworkConfig]:
    """The memristive networks of Fig. 4, per programming noise (default
    ``p.sigma_over_b_values``) ``seeds`` networks (seeds ``p.seed``, ``p.seed + 1``, ...),
    trained with streams of ``p.train_bl`` bits; ordered by noise, then seed."""
    base = _settings(p, device)
    seed0 = base.pop("seed")
    return [NetworkConfig(bl=int(p.train_bl), synapse="memristive", sigma_over_b=float(s),
                          on_off_ratio=float(p.on_off_ratio), levels=int(p.levels),
                          reset_every=int(p.reset_every), reset_noise=bool(p.reset_noise),
                          w_max=tuple(float(w) for w in p.w_max), seed=seed0 + i, **base)
            for s in (p.sigma_over_b_values if sigmas is None else sigmas)
            for i in range(int(seeds))]


#: Factors of the w_max sweep (:func:`w_max_networks`): the chapter's w_max scaled by each.
W_MAX_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def w_max_networks(p: Any, device: str = "cpu", factors: Sequence[float] = W_MAX_FACTORS,
                   sigma: float | None = None, seeds: int = 1,
                   reset_noise: bool | None = None) -> list[NetworkConfig]:
    """The memristive networks of a ``w_max`` sweep: the chapter's networks of
    :func:`memristive_networks` at one programming noise (default ``p.sigma_over_b``, the
    paper's 0.1B of its 95.31 %), with all three layers' ``w_max`` (the weight of a device
    pair, our choice) scaled by each of ``factors``; ``seeds`` networks per factor, ordered by
    factor, then seed. ``reset_noise`` overrides ``p.reset_noise`` (None: keep it). A factor
    of 1 gives the chapter's own networks (the same stored entries)."""
    bad = [f for f in factors if isinstance(f, bool) or not isinstance(f, (int, float))
           or not math.isfinite(f) or f <= 0]
    if bad or not factors:
        raise ParameterError(f"factors={list(factors)!r}: must be one or more numbers > 0 "
                             "(scales of w_max)")
    s = float(p.sigma_over_b if sigma is None else sigma)
    nets = []
    for f in factors:
        q = _replace(p, w_max=[float(w) * float(f) for w in p.w_max])
        if reset_noise is not None:
            q = _replace(q, reset_noise=bool(reset_noise))
        nets += memristive_networks(q, device, [s], seeds)
    return nets


def _replace(p: Any, **changes: Any) -> Any:
    """A copy of a notebook's parameters ``p`` (attributes) with ``changes``."""
    return SimpleNamespace(**{**vars(p), **changes})


def reading_networks(p: Any, device: str = "cpu") -> list[NetworkConfig]:
    """The deterministic network under every input reading (:data:`INPUT_NORMS`), the
    chapter's own (``p.input_norm``) first: the evidence for the choice of reading."""
    base = _settings(p, device)
    norms = [p.input_norm] + [n for n in INPUT_NORMS if n != p.input_norm]
    return [NetworkConfig(bl=0, **{**base, "input_norm": n}) for n in norms]


def reset_networks(p: Any, device: str = "cpu", seeds: int | None = None
                   ) -> list[NetworkConfig]:
    """Fig. 4's comparison: the memristive networks of :func:`memristive_networks` (every
    ``p.sigma_over_b_values``) with the *other* reset setting, ``reset_noise = not
    p.reset_noise``; ``seeds`` networks per noise (default ``p.reset_compare_seeds``)."""
    n = int(p.reset_compare_seeds if seeds is None else seeds)
    return memristive_networks(_replace(p, reset_noise=not bool(p.reset_noise)), device,
                               seeds=n)


def chapter_networks(session) -> list[NetworkConfig]:
    """Every network the chapter's notebooks train, at this notebook's training settings and
    the chapter profile's device settings (notebook 2 trains them all, one group per core;
    notebooks 3 and 4 read them back): Fig. 3's, Fig. 4's under both reset settings, the
    ``w_max`` sweep, the baselines and the other input reading."""
    prof = settings(session.profile, "memristive")
    p = SimpleNamespace(**{**prof, **{k: v for k, v in session.params.items()
                                      if v is not None}})
    sigmas = sorted({*map(float, p.sigma_over_b_values), float(p.sigma_over_b)})
    dev = session.torch_device.type
    seeds = int(p.network_seeds)
    nets = (float_networks(p, dev) + memristive_networks(p, dev, sigmas, seeds)
            + baseline_networks(p, dev, seeds)[1:-1] + reading_networks(p, dev)[1:]
            + reset_networks(p, dev) + w_max_networks(p, dev, p.w_max_factors,
                                                       seeds=int(p.w_max_seeds),
                                                       reset_noise=p.w_max_reset_noise))
    unique = {json_key(c.to_dict()): c for c in nets}
    return list(unique.values())


def label(cfg: NetworkConfig) -> str:
    """A short name: ``floating point``, ``BL = 10``, ``memristive, sigma/B = 0.1``."""
    if cfg.kind == "deterministic":
        return "floating point"
    if cfg.kind == "float":
        return f"BL = {cfg.bl}"
    return f"memristive, σ/B = {cfg.sigma_over_b:g}"


# --- stored experiments -----------------------------------------------------------------------


@experiment("memristive.product_mc")
def product_mc(config: dict[str, Any]) -> dict[str, Any]:
    """Monte Carlo of the stream product for one (a, b, N).

    Args:
        config: ``a``, ``b`` (values in [0, 1]), ``bl`` (N), ``samples`` (independent stream
            pairs), ``generator`` (``"sng"``: the simulator's 16-bit SNG; ``"exact"``: float
            uniforms), ``seed``.

    Returns:
        The sample mean and variance of ``c`` with their standard errors, the RMS error of
        ``c`` against ``ab``, and the SNG's effective probabilities.
    """
    a, b, bl, n = config["a"], config["b"], check_bl(config["bl"]), int(config["samples"])
    check_probability("a", a)
    check_probability("b", b)
    gen = torch.Generator().manual_seed(int(config["seed"]))
    stream = sng_stream if config["generator"] == "sng" else bernoulli_stream
    counts = []
    chunk = max(1, 4_000_000 // bl)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ca = stream(torch.full((m,), float(a)), bl, gen)
        cb = stream(torch.full((m,), float(b)), bl, gen)
        counts.append(and_stream(ca, cb).sum(-1))
    k = torch.cat(counts).to(torch.float64)
    c = k / bl
    if config["generator"] == "sng":
        pa, pb = float(sng_probability(a)), float(sng_probability(b))
    else:
        pa, pb = float(a), float(b)
    ab = pa * pb
    mean, var = float(c.mean()), float(c.var())
    # standard error of the sample variance from the fourth central moment
    m4 = float(((c - c.mean()) ** 4).mean())
    return {"mean": mean, "var": var, "mean_se": math.sqrt(var / n),
            "var_se": math.sqrt(max(m4 - var ** 2, 0.0) / n),
            "rms_error": float(((c - a * b) ** 2).mean().sqrt()),
            "p_a": pa, "p_b": pb, "ab_effective": ab}


@experiment("memristive.train_run")
def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """Train one network (a :class:`NetworkConfig` as a dict); see :func:`train_lockstep`."""
    return train_lockstep([NetworkConfig.from_dict(config)], progress=False)[0]


def noisy_images(x: torch.Tensor, variance: float, generator: torch.Generator) -> torch.Tensor:
    """Zero-mean Gaussian noise of ``variance`` added to images in [0, 1], clipped to [0, 1]
    (the network inputs are then normalized as in training, :func:`network_inputs`)."""
    if not (math.isfinite(variance) and variance >= 0):
        raise ParameterError(f"variance={variance!r}: must be a number >= 0")
    if variance == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, device=x.device)
    return torch.clamp(x + math.sqrt(variance) * noise, 0.0, 1.0)


def noise_seed(seed: int, variance: float, run: int) -> int:
    """Seed of run ``run`` at ``variance``: every network and BL sees the same noisy images."""
    return (seed * 1_000_003 + round(float(variance) * 1e6) * 1009 + run) % (2 ** 62)


@experiment("memristive.noisy_inference")
def noisy_inference(config: dict[str, Any]) -> dict[str, Any]:
    """Test accuracy of a trained network on noise-corrupted test images (Fig. 5).

    Args:
        config: ``network`` (a :class:`NetworkConfig` dict: deterministic or memristive; its
            training run is read from the store of ``profile``, or trained), ``profile``,
            ``noise_vars`` (input-noise variances; 0: clean), ``bls`` (inference stream
            lengths; 0: exact signals), ``runs`` (noise and stream draws averaged), ``seed``.

    Returns:
        ``accuracy`` (bls x noise_vars x runs, %), with ``noise_vars`` and ``bls``. Run ``r`` at
        a variance uses the same noisy images for every network and BL (paired comparisons).
    """
    cfg = NetworkConfig.from_dict(config["network"])
    entry = current_store(config["profile"]).get_or_compute(train_run, cfg.to_dict())
    ws = [w.to(cfg.device) for w in stored_weights(entry.result, cfg)]
    xt, yt = load_split(cfg, False)
    bls, variances, runs = list(config["bls"]), list(config["noise_vars"]), int(config["runs"])
    acc = np.zeros((len(bls), len(variances), runs))
    for v, var in enumerate(variances):
        for r in range(runs):
            g = torch.Generator(cfg.device).manual_seed(noise_seed(int(config["seed"]), var, r))
            xn = network_inputs(noisy_images(xt, float(var), g), cfg.input_norm)
            for b, bl in enumerate(bls):
                key = stream_seed(cfg, 3) + noise_seed(int(bl), var, r)
                acc[b, v, r] = 100.0 * float((forward_labels(ws, xn, int(bl), key) == yt)
                                             .float().mean())
    return {"accuracy": acc, "noise_vars": np.array(variances, dtype=float),
            "bls": np.array(bls, dtype=int)}


# --- sweeps to frames ---------------------------------------------------------------------------


def product_sweep(session, factors, bl_grid, samples: int, seed: int = 0,
                  generator: str = "sng"):
    """Monte Carlo of eq. (3) over every pair ``a <= b`` of ``factors`` and every N of
    ``bl_grid``; each point one stored experiment, run in parallel workers.

    Returns:
        ``(table, entries)``: one row per point with the measured and predicted mean and
        variance, their z-scores (difference over the Monte Carlo standard error) and the RMS
        error of ``c`` against ``ab``; the entries in the same order.
    """
    for f in factors:
        check_probability("factors", f)
    configs, rows = [], []
    pairs = [(a, b) for i, a in enumerate(factors) for b in factors[i:]]
    for a, b in pairs:
        for n in bl_grid:
            configs.append({"a": float(a), "b": float(b), "bl": check_bl(int(n)),
                            "samples": int(samples), "generator": generator,
                            "seed": seed + len(configs)})
            rows.append({"a": float(a), "b": float(b), "bl": int(n)})
    bits = sum(c["samples"] * c["bl"] for c in configs)
    entries = run_sweep(product_mc, configs, session.store, desc="stream products",
                        workers=1 if bits < 100_000_000 else None, device="cpu")
    for row, e in zip(rows, entries):
        mean, var = product_moments(e["p_a"], e["p_b"], row["bl"])
        row.update(ab=row["a"] * row["b"], mc_mean=e["mean"], mc_var=e["var"],
                   mean_pred=mean, var_pred=var, mean_se=e["mean_se"], var_se=e["var_se"],
                   z_mean=(e["mean"] - mean) / e["mean_se"] if e["mean_se"] > 0 else 0.0,
                   z_var=(e["var"] - var) / e["var_se"] if e["var_se"] > 0 else 0.0,
                   rms_error=e["rms_error"], rms_pred=math.sqrt(var + (mean - row["a"] *
                                                                    row["b"]) ** 2))
    return pd.DataFrame(rows), entries


def _train_group(dicts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    worker_init()
    start = time.perf_counter()
    with torch.inference_mode():
        out = train_lockstep([NetworkConfig.from_dict(d) for d in dicts], progress=False)
    return out, time.perf_counter() - start


def train_networks(store, configs: Sequence[NetworkConfig], workers: int | None = None,
                   desc: str = "training networks") -> list:
    """Train (or read back) every network, each stored as one ``memristive.train_run`` entry.

    Networks whose entries are stored and fresh are read back. The others are split into
    groups (:func:`plan_groups`), one per worker process with one torch thread
    (``HWLIB_WORKERS``, default the number of cores; on CUDA one group). A network's numbers
    do not depend on its group, so an entry is the same whichever notebook computed it.

    Returns:
        The entries, in the order of ``configs``.
    """
    from joblib import Parallel, delayed, parallel_config

    dicts = [c.to_dict() for c in configs]
    entries = [store.load(train_run, d) for d in dicts]
    todo: dict[str, NetworkConfig] = {}
    for c, d, e in zip(configs, dicts, entries):
        if e is None:
            todo.setdefault(json_key(d), c)
    if todo:
        workers = default_workers() if workers is None else workers
        if any(c.device == "cuda" for c in todo.values()) or sum(
                relative_cost(c) * (c.n_train or 60_000) * c.epochs
                for c in todo.values()) < SMALL_WORK:
            workers = 1                     # a small sweep: worker start-up would dominate
        groups = plan_groups(list(todo.values()), workers)
        bar = tqdm(total=len(todo), desc=desc, leave=False)

        def save(group, results, wall):
            for c, r in zip(group, results):
                store.save(train_run, c.to_dict(), r, wall, c.device, threads=1)
                bar.update()

        if len(groups) == 1:
            save(groups[0], *_train_group([c.to_dict() for c in groups[0]]))
        else:
            with parallel_config(backend="loky", inner_max_num_threads=1):
                runs = Parallel(n_jobs=len(groups), return_as="generator")(
                    delayed(_train_group)([c.to_dict() for c in g]) for g in groups)
                for g, (results, wall) in zip(groups, runs):
                    save(g, results, wall)
        bar.close()
        entries = [store.load(train_run, d) for d in dicts]
    return entries


def json_key(d: dict[str, Any]) -> str:
    """A canonical text of a config (to find duplicates)."""
    return json.dumps(d, sort_keys=True)


def noisy_table(session, jobs: Sequence[tuple[NetworkConfig, int, str]],
                noise_vars: Sequence[float], runs: int, seed: int = 0) -> Any:
    """Fig. 5's accuracies: one :func:`noisy_inference` entry per (network, inference BL,
    name) of ``jobs`` over every noise variance, in parallel workers (in this process when the
    work is small). Jobs with the same name (networks of several seeds) are averaged.

    Returns:
        ``(table, entries)``: per name and noise variance, ``mean`` (the test accuracy averaged
        over the runs and then over the name's networks), ``std`` (the standard deviation of
        the networks' means; the runs' when a name has one network), ``networks``; and the
        entries.
    """
    configs = [{"network": c.to_dict(), "profile": session.profile,
                "noise_vars": [float(v) for v in noise_vars], "bls": [int(bl)],
                "runs": int(runs), "seed": int(seed)} for c, bl, _ in jobs]
    work = sum((c.n_test or 10_000) * runs * len(noise_vars) * (1 + bl / 10)
               for c, bl, _ in jobs)
    entries = run_sweep(noisy_inference, configs, session.store, desc="noisy inference",
                        workers=1 if work < 10 * SMALL_WORK else None,
                        device=session.torch_device.type)
    rows = []
    for (c, bl, name), e in zip(jobs, entries):
        for var, acc in zip(e["noise_vars"], e["accuracy"][0]):
            rows.append({"network": name, "noise_var": float(var), "mean": float(acc.mean()),
                         "run_std": float(acc.std(ddof=1)) if acc.size > 1 else 0.0})
    long = pd.DataFrame(rows)
    table = long.groupby(["network", "noise_var"], sort=False).agg(
        mean=("mean", "mean"), net_std=("mean", "std"), run_std=("run_std", "mean"),
        networks=("mean", "size")).reset_index()
    table["std"] = table.net_std.where(table.networks > 1, table.run_std)
    return table[["network", "noise_var", "mean", "std", "networks"]], entries


def history_frame(configs: Sequence[NetworkConfig], entries: Sequence) -> Any:
    """Per network and epoch: test accuracy, training error and learning rate (long form)."""
    rows = []
    for c, e in zip(configs, entries):
        for ep, (acc, err, lr) in enumerate(zip(e["test_acc"], e["train_error"], e["lr"])):
            rows.append({"network": label(c), "bl": c.bl, "synapse": c.synapse,
                         "sigma_over_b": c.sigma_over_b if c.kind == "memristive" else np.nan,
                         "seed": c.seed, "input_norm": c.input_norm, "epoch": ep + 1,
                         "test_acc": float(acc), "train_error": float(err), "lr": float(lr)})
    return pd.DataFrame(rows)


def summary_frame(configs: Sequence[NetworkConfig], entries: Sequence) -> Any:
    """Per network: best and final test accuracy, the epoch of the best, final training error."""
    return pd.DataFrame([{
        "network": label(c), "bl": c.bl, "synapse": c.synapse,
        "sigma_over_b": c.sigma_over_b if c.kind == "memristive" else np.nan,
        "seed": c.seed, "input_norm": c.input_norm,
        "best_test_acc": float(e["best_test_acc"]), "best_epoch": int(e["best_epoch"]),
        "final_test_acc": float(e["final_test_acc"]),
        "final_train_error": float(e["train_error"][-1]),
    } for c, e in zip(configs, entries)])


def sigma_table(configs: Sequence[NetworkConfig], entries: Sequence) -> pd.DataFrame:
    """Fig. 4: per programming noise sigma/B, the memristive networks' best test accuracy over
    the epochs, its mean, standard deviation, count, range and the mean final accuracy (the
    index is sigma/B)."""
    summary = summary_frame(configs, entries)
    return summary.groupby("sigma_over_b").agg(
        best=("best_test_acc", "mean"), sd=("best_test_acc", "std"), n=("best_test_acc", "size"),
        lo=("best_test_acc", "min"), hi=("best_test_acc", "max"),
        final=("final_test_acc", "mean"))


def w_max_table(configs: Sequence[NetworkConfig], entries: Sequence, base_w_max: Sequence[float],
                paper: float = PAPER_SIGMA01) -> pd.DataFrame:
    """The ``w_max`` sweep: per factor (``w_max`` over the chapter's ``base_w_max``), the
    layers' ``w_max``, the best test accuracy (mean over seeds, its standard deviation and
    count) and its difference from the paper's ``paper`` (%)."""
    rows = []
    for c, e in zip(configs, entries):
        rows.append({"factor": round(c.w_max[0] / float(base_w_max[0]), 6),
                     "w_max": ", ".join(f"{w:g}" for w in c.w_max),
                     "best": float(e["best_test_acc"])})
    t = pd.DataFrame(rows).groupby(["factor", "w_max"], sort=True).agg(
        best=("best", "mean"), sd=("best", "std"), n=("best", "size")).reset_index()
    t["vs_paper"] = t.best - paper
    return t


# --- claim readings: what each scorecard rule reads ---------------------------------------------


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
