"""The GPU benchmark: each chapter's paper-size step on one GPU, the levers that speed it up,
chip evaluation against a clean pass, several runs sharing the GPU, and the paper profile's
extrapolated hours.

    python bench/gpu.py [--quick] [--out FILE]

Prints one table and writes a JSON record (``--out``; :func:`hwlib.study.records.save_gpu`
stores it where the book's pages and the README read it). Every timing is on synthetic data in
the paper's shapes (timings do not depend on pixel values); the accuracy checks train on a
synthetic task with a learnable answer (labels from a fixed random teacher network), the same
steps in float32 and with the levers, two seeds each.

Per chapter:

* the training step of the paper network in float32 (TF32 off: the baseline) and with the
  chapter's paper-profile levers (bfloat16 autocast or TF32, channels-last), with each
  method's chip per step where it has one;
* a chip evaluation (one chip, 2,000 images) against a clean evaluation pass;
* the aggregate step rate of ``workers`` runs sharing the GPU (the sweep's policy,
  :func:`hwlib.study.sweep.default_workers`) against one run alone;
* the paper profile's hours: the chapter's runs and epochs (from its paper profile) times the
  measured step and evaluation times, divided by the measured sharing speed-up.

Without CUDA it runs the same code on the CPU at tiny sizes (``--quick`` implied): a dry run of
the script, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

#: Training images per paper dataset (CIFAR-10/100: 50,000; SVHN: 73,257).
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "mnist": 60_000}
TEST_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032, "mnist": 10_000}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, steps: int, warmup: int = 3) -> float:
    """Seconds per call of ``fn`` (after ``warmup`` calls), synchronized."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / steps


# --- the chapters' paper networks and steps ------------------------------------------------------


def sddhr_net(width: float = 1.0) -> nn.Module:
    from hwlib.models.binary import VGGBinaryNet

    return VGGBinaryNet(10, width, 3, 32)


def preact_net(width: float = 1.0) -> nn.Module:
    from hwlib.models import resnets

    return resnets.build("preactresnet18", 10, width)


def wrn_net(depth: int = 28, k: int = 10) -> nn.Module:
    from hwlib.models.wideresnet import WideResNet

    return WideResNet(depth, k, 100, 0.0, 3)


def arena_net(width: float = 0.25) -> nn.Module:
    from hwlib.models import resnets

    return resnets.build("resnet18", 10, width)


def make_step(net: nn.Module, hardware, method, device, precision: str, channels_last: bool,
              binary: bool = False):
    from hwlib.methods.training import Step
    from hwlib.models.binary import clip_latent_weights

    return Step(net, torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9), hardware, method,
                generator=torch.Generator(device).manual_seed(0), precision=precision,
                channels_last=channels_last, after_step=clip_latent_weights if binary else None)


def chapter_specs(quick: bool) -> list[dict[str, Any]]:
    """Each chapter's paper network, batch, hardware, methods and levers."""
    from hwlib import presets
    from hwlib.hardware.base import Ideal
    from hwlib.methods.training import HASGD, FreshChip, OneChip, Parametric, Standard

    small = 0.125 if quick else 1.0
    return [
        dict(chapter="sddhr", net=lambda: sddhr_net(small), batch=8 if quick else 200,
             classes=10, binary=True, precision="tf32", run_gib=3.0,
             hardware=presets.sddhr_mram(scale=10.0),
             methods={"Ideal": (Standard(), Ideal()), "PS-DDHR": (Parametric(), None),
                      "Sampled": (FreshChip(), None), "DDHR": (OneChip(1), None)}),
        dict(chapter="memory_faults", net=lambda: preact_net(small), batch=8 if quick else 128,
             classes=10, binary=False, precision="bf16", run_gib=2.0,
             hardware=presets.sram_65nm(p=0.005),
             methods={"standard": (Standard(), Ideal()),
                      "erasure": (FreshChip(), presets.sram_65nm(p=0.01, model="erasure"))}),
        dict(chapter="hasgd",
             net=(lambda: wrn_net(10, 1)) if quick else (lambda: wrn_net(28, 10)),
             batch=8 if quick else 128, classes=100, binary=False, precision="bf16",
             run_gib=12.0, hardware=presets.hasgd_crossbar(sigma=0.1),
             methods={"HA-SGD L=1": (HASGD(1), None)}),
        dict(chapter="arena", net=lambda: arena_net(0.125 if quick else 0.25),
             batch=8 if quick else 256, classes=10, binary=False, precision="bf16",
             run_gib=2.0, hardware=presets.sram_65nm(p=0.01),
             methods={"standard": (Standard(), Ideal()), "sampling": (FreshChip(), None)}),
    ]


def measure_chapter(spec: dict[str, Any], device: torch.device, steps: int) -> dict[str, Any]:
    """Step times (float32 and levers, per method), chip evaluation against a clean pass."""
    from hwlib.hardware.base import attach
    from hwlib.methods.evaluation import accuracy

    gen = torch.Generator(device).manual_seed(0)
    x = torch.rand(spec["batch"], 3, 32, 32, device=device, generator=gen)
    y = torch.randint(0, spec["classes"], (spec["batch"],), device=device, generator=gen)
    out: dict[str, Any] = {"chapter": spec["chapter"], "batch": spec["batch"], "steps": {}}
    for name, (method, hw) in spec["methods"].items():
        hw = spec["hardware"] if hw is None else hw
        row = {}
        for label, precision, cl in (("fp32", "fp32", False),
                                     ("levers", spec["precision"], True)):
            torch.manual_seed(0)
            net = spec["net"]().to(device)
            step = make_step(net, hw, method, device, precision, cl, spec["binary"])
            row[label] = timed(lambda: step(x, y), device, steps)
        out["steps"][name] = row
    torch.manual_seed(0)
    net = spec["net"]().to(device).eval()
    n_eval = 64 if device.type == "cpu" else 2000
    xe = torch.rand(n_eval, 3, 32, 32, device=device, generator=gen)
    ye = torch.randint(0, spec["classes"], (n_eval,), device=device, generator=gen)
    clean = timed(lambda: accuracy(net, xe, ye, 500, spec["precision"]), device, 3, 1)
    hw = spec["hardware"]
    seeds = iter(range(1, 10_000))

    def one_chip():  # a new chip each time: drawn, attached, evaluated
        with attach(net, hw, seed=next(seeds)):
            accuracy(net, xe, ye, 500, spec["precision"])

    out["eval_clean_s"] = clean
    out["eval_chip_s"] = timed(one_chip, device, 3, 1)
    out["chip_ratio"] = out["eval_chip_s"] / clean
    return out


# --- several runs sharing the GPU ------------------------------------------------------------------


def _worker(rank: int, chapter: str, steps: int, quick: bool, barrier, queue) -> None:
    torch.set_num_threads(1)
    device = torch.device("cuda")
    spec = next(s for s in chapter_specs(quick) if s["chapter"] == chapter)
    method, hw = next(iter(spec["methods"].values()))
    hw = spec["hardware"] if hw is None else hw
    torch.manual_seed(rank)
    net = spec["net"]().to(device)
    step = make_step(net, hw, method, device, spec["precision"], True, spec["binary"])
    x = torch.rand(spec["batch"], 3, 32, 32, device=device)
    y = torch.randint(0, spec["classes"], (spec["batch"],), device=device)
    for _ in range(3):
        step(x, y)
    torch.cuda.synchronize()
    barrier.wait()
    t = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    torch.cuda.synchronize()
    queue.put(time.perf_counter() - t)


def sharing_speedup(chapter: str, workers: int, steps: int, quick: bool) -> dict[str, float]:
    """Aggregate steps per second of ``workers`` processes on one GPU over one process."""
    ctx = mp.get_context("spawn")
    rates = {}
    for k in sorted({1, workers}):
        barrier, queue = ctx.Barrier(k), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(r, chapter, steps, quick, barrier, queue))
                 for r in range(k)]
        for p in procs:
            p.start()
        times = [queue.get(timeout=600) for _ in range(k)]
        for p in procs:
            p.join()
        rates[k] = k * steps / max(times)
    return {"workers": workers, "speedup": rates[workers] / rates[1], "rate_1": rates[1],
            "rate_k": rates[workers]}


# --- accuracy agreement on a short run -----------------------------------------------------------


def teacher_task(n: int, classes: int, device: torch.device, seed: int = 0):
    """Images with labels from a fixed random teacher network: a task a short run can learn."""
    g = torch.Generator(device).manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, device=device, generator=g)
    torch.manual_seed(1234)
    teacher = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                            nn.Flatten(), nn.Linear(32, classes)).to(device)
    with torch.no_grad():
        y = teacher(x).argmax(1)
    return x, y


def agreement(spec: dict[str, Any], device: torch.device, steps: int) -> dict[str, Any]:
    """Test accuracy after ``steps`` steps, float32 against the levers, two seeds each."""
    from hwlib.hardware.base import Ideal
    from hwlib.methods.evaluation import accuracy
    from hwlib.methods.training import Standard

    x, y = teacher_task(spec["batch"] * 8, spec["classes"], device)
    xt, yt = teacher_task(1000 if device.type == "cuda" else 64, spec["classes"], device, 1)
    acc = {"fp32": [], "levers": []}
    for seed in (0, 1):
        for label, precision, cl in (("fp32", "fp32", False),
                                     ("levers", spec["precision"], True)):
            torch.manual_seed(seed)
            net = spec["net"]().to(device)
            step = make_step(net, Ideal(), Standard(), device, precision, cl, spec["binary"])
            for i in range(steps):
                j = (i % 8) * spec["batch"]
                step(x[j:j + spec["batch"]], y[j:j + spec["batch"]])
            acc[label].append(100 * accuracy(net, xt, yt, 500, precision))
    spread = max(abs(acc["fp32"][0] - acc["fp32"][1]), abs(acc["levers"][0] - acc["levers"][1]))
    gap = abs(sum(acc["fp32"]) - sum(acc["levers"])) / 2
    return {"fp32": acc["fp32"], "levers": acc["levers"], "mean_gap": gap,
            "seed_spread": spread, "agree": gap <= max(spread, 1.0)}


# --- the paper profile's hours -------------------------------------------------------------------


def paper_hours(m: dict[str, Any], sharing: float) -> dict[str, float]:
    """The chapter's paper-profile hours from the measured step and evaluation times."""
    from hwlib.chapters import hasgd, sddhr
    from hwlib.study.profiles import CHAPTER_PROFILES, PROFILES

    ch = m["chapter"]
    steps = {k: v["levers"] for k, v in m["steps"].items()}
    chip = m["eval_chip_s"] / 2000  # seconds per image per chip
    clean = m["eval_clean_s"] / 2000
    if ch == "sddhr":
        p = {**PROFILES["paper"], **CHAPTER_PROFILES["sddhr"]["paper"]}
        total = 0.0
        for ds in p["datasets"]:
            for c in sddhr.study_configs(ds, [1, 2, 3, 5, 10], p["instances"], epochs=1):
                per = math.ceil(TRAIN_IMAGES[ds] / 200)
                key = {"ideal": "Ideal", "ps_ddhr": "PS-DDHR", "as_ddhr": "PS-DDHR",
                       "sampled": "Sampled"}.get(c["regime"], "DDHR")
                n_chips = len(c["eval_scales"]) * len(c["eval_seeds"])
                total += p["epochs"] * (per * steps[key] + n_chips * 2000 * chip + 2000 * clean)
                total += n_chips * TEST_IMAGES[ds] * chip
    elif ch == "memory_faults":
        p = CHAPTER_PROFILES["memory_faults"]["paper"]
        # the paper profile's 18 networks: Table I / Figs. 1-2 (4 architectures), the reliable
        # widths F/sqrt(2) and F/2 (2), the erasure regularizer and its blockwise variants (12)
        nets = 18
        per = math.ceil(TRAIN_IMAGES["cifar10"] / 128)
        total = nets * p["epochs"] * per * steps["standard"]
        points = (4 * len(p["fault_rates"]) + len(p["weight_fault_rates"]) * 7
                  + 4 * len(p["block_fault_rates"]) + 2 * len(p["policy_fault_rates"])
                  + 2 * len(p["reg_fault_rates"]) * len(p["fault_rates"]))
        total += points * p["instances"] * TEST_IMAGES["cifar10"] * chip
    elif ch == "hasgd":
        p = SimpleNamespace(**{**PROFILES["paper"], **CHAPTER_PROFILES["hasgd"]["paper"],
                               "seed": 0, "n_train": None})
        nets = (hasgd.main_networks(p) + hasgd.shift_networks(p)
                + hasgd.shift_networks(p, shift_model="single") + hasgd.samples_networks(p))
        per = math.ceil(TRAIN_IMAGES["cifar100"] / 128)
        total = sum(p.epochs * per * steps["HA-SGD L=1"] * c["samples"] for c in nets)
        points = len(p.test_sigmas) * 2 + len(p.test_shifts) + len(p.test_sigmas) * (
            1 + len(p.adc_bits))
        total += len(nets) * points * p.instances * TEST_IMAGES["cifar100"] * chip
    else:  # the arena at paper scale: its grid of methods, devices and severities
        per = math.ceil(TRAIN_IMAGES["cifar10"] / 256)
        runs = 3 * (4 * 3 * 4 + 2) + 10 * 4 * 3  # seeds x (devices x severities x methods) + DDHR
        total = runs * 30 * per * steps["sampling"]
        total += runs * 3 * 10 * TEST_IMAGES["cifar10"] * chip
    return {"serial_h": total / 3600, "hours": total / 3600 / max(sharing, 1.0)}


def memristive_hours() -> dict[str, float] | None:
    """The CPU chapter: the recorded book cold run (the paper profile's networks and epochs at
    MNIST scale) spread over this machine's cores, one network per core."""
    from hwlib.study.records import timing

    t = timing("memristive")
    if t is None:
        return None
    cores = os.cpu_count() or 1
    return {"serial_h": t["total_s"] * int(t["workers"] or 2) / 3600,
            "hours": t["total_s"] * int(t["workers"] or 2) / cores / 3600}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a dry run)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    parser.add_argument("--store", action="store_true",
                        help="store the record where the book reads it")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    quick = args.quick or not cuda
    torch.set_num_threads(1 if not cuda else 4)
    from hwlib.study.sweep import default_workers

    record: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if cuda else "cpu (dry run)",
                              "torch": torch.__version__, "quick": quick, "chapters": []}
    steps = 3 if quick else 20
    for spec in chapter_specs(quick):
        t0 = time.perf_counter()
        m = measure_chapter(spec, device, steps)
        workers = min(8, default_workers(str(device), spec["run_gib"])) if cuda else 1
        m["sharing"] = (sharing_speedup(spec["chapter"], workers, steps, quick) if cuda and
                        workers > 1 else {"workers": workers, "speedup": 1.0})
        m["agreement"] = agreement(spec, device, 20 if quick else 200)
        m.update(paper_hours(m, m["sharing"]["speedup"]))
        m["seconds"] = time.perf_counter() - t0
        record["chapters"].append(m)
        if args.out:  # what is done so far survives a time-out
            args.out.write_text(json.dumps(record, indent=1))
        print(f"{spec['chapter']}: done in {m['seconds']:.0f} s", flush=True)
    mem = memristive_hours()
    if mem is not None:
        record["chapters"].append({"chapter": "memristive", "steps": {}, **mem,
                                   "note": "CPU chapter (numba), one network per core"})
    record["total_hours"] = sum(c["hours"] for c in record["chapters"])
    print(table(record))
    if args.out:
        args.out.write_text(json.dumps(record, indent=1))
    if args.store:
        from hwlib.study.records import save_gpu

        print(f"stored: {save_gpu(record)}")
    return 0


def table(record: dict[str, Any]) -> str:
    """The record as one text table."""
    lines = [f"GPU benchmark on {record['device']} (torch {record['torch']})", "",
             f"{'chapter':<14}{'step fp32 ms':>13}{'levers ms':>11}{'speed-up':>10}"
             f"{'chip/clean':>12}{'sharing':>9}{'paper h':>9}"]
    for c in record["chapters"]:
        if c.get("steps"):
            first = next(iter(c["steps"].values()))
            lines.append(f"{c['chapter']:<14}{1e3 * first['fp32']:>13.1f}"
                         f"{1e3 * first['levers']:>11.1f}{first['fp32'] / first['levers']:>9.2f}x"
                         f"{c['chip_ratio']:>11.2f}x{c['sharing']['speedup']:>8.2f}x"
                         f"{c['hours']:>9.2f}")
        else:
            lines.append(f"{c['chapter']:<14}{'(CPU chapter)':>45}{c['hours']:>9.2f}")
    lines.append(f"{'total':<14}{record['total_hours']:>68.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
