"""HA-SGD benchmarks (targets from the chapter issue).

* A training step with L = 1 (one perturbation of every crossbar, forward, backward, restore,
  optimizer step) against a clean step of the same network: at most 1.2x. With L samples: at
  most 1.1 L x (L forward-backward passes, one optimizer step). Both are timed as the chapter
  trains: an epoch of steps on shuffled mini-batches (30 of them, 4 when quick).
* Evaluating 32 noisy hardware instances on a 10,000-image test set against 32 clean inference
  passes: at most 1.5x (the GPU issue's target for a chip evaluation, on the CPU too).

The network is the book profile's (the ReLU MLP 784-256-256-10, mini-batches of 512); images
are synthetic (Fashion-MNIST-shaped): timings do not depend on pixel values.
"""

from __future__ import annotations

import torch

from hwlib.chapters import hasgd
from hwlib.hardware import crossbar as analog
from hwlib.methods.evaluation import accuracy_on_chips
from hwlib.methods.training import HASGD, Step, fit
from hwlib.study.profiles import CHAPTER_PROFILES

from .common import Ratio, interleaved

BOOK = CHAPTER_PROFILES["hasgd"]["book"]


def _data(n: int):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _epoch(sigma: float, samples: int, x, y):
    """One epoch of HA-SGD training as the chapter trains (shuffled mini-batches gathered from
    the training tensors, Adam with its cosine schedule): its steps are the timed steps."""
    torch.manual_seed(0)
    model = hasgd.build_network("mlp", "fashion_mnist", BOOK["hidden_widths"])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 10_000)
    step = Step(model, opt, analog.AnalogCrossbar(analog.GaussianPerturbation(sigma)),
                HASGD(samples), generator=torch.Generator().manual_seed(0))
    return lambda: fit(step, x, y, 1, BOOK["batch_size"], scheduler=sched)


def run(quick: bool = False) -> list[Ratio]:
    """Measure every HA-SGD ratio; ``quick`` uses small sizes (for the test suite)."""
    rows = []
    x, y = _data(BOOK["batch_size"] * (4 if quick else 30))
    reps = 1 if quick else 5
    clean = _epoch(0.0, 1, x, y)
    for samples in ((1, 2) if quick else (1, 2, 4, 8)):
        b, c = interleaved(clean, _epoch(0.1, samples, x, y), repeats=reps)
        target = 1.2 if samples == 1 else 1.1 * samples
        rows.append(Ratio("hasgd", f"training step, L = {samples}", "clean training step",
                          b, c, target))

    xt, yt = _data(2_000 if quick else 10_000)
    torch.manual_seed(0)
    model = hasgd.build_network("mlp", "fashion_mnist", BOOK["hidden_widths"]).eval()
    seeds = list(range(1, 33))
    noisy = analog.AnalogCrossbar(analog.GaussianPerturbation(0.1))
    ideal = analog.AnalogCrossbar(analog.IDEAL)

    def passes():
        for _ in seeds:
            accuracy_on_chips(model, ideal, xt, yt, [0], 1000)

    def instances():
        accuracy_on_chips(model, noisy, xt, yt, seeds, 1000)

    b, c = interleaved(passes, instances, repeats=reps)
    rows.append(Ratio("hasgd", f"32 instances, {len(yt):,} test images",
                      "32 clean inference passes", b, c, target=1.5))
    return rows
