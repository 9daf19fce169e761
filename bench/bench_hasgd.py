"""HA-SGD benchmarks (targets from the chapter issue).

* A training step with L = 1 (one perturbation of every crossbar, forward, backward, restore,
  optimizer step) against a clean step of the same network: at most 1.2x. With L samples: at
  most 1.1 L x (L forward-backward passes, one optimizer step). Both are timed as the chapter
  trains: an epoch of steps on shuffled mini-batches (30 of them, 4 when quick).
* Evaluating 32 noisy hardware instances on a 10,000-image test set against 32 clean inference
  passes: at most 2.5x.

The network is the book profile's (the ReLU MLP 784-256-256-10, mini-batches of 512); images
are synthetic (Fashion-MNIST-shaped): timings do not depend on pixel values.
"""

from __future__ import annotations

import torch

from hwlib import analog, hasgd
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
    step = hasgd.HASGD(model, opt, analog.GaussianPerturbation(sigma), samples)
    return lambda: hasgd.train(step, x, y, 1, BOOK["minibatch_size"], scheduler=sched)


def run(quick: bool = False) -> list[Ratio]:
    """Measure every HA-SGD ratio; ``quick`` uses small sizes (for the test suite)."""
    rows = []
    x, y = _data(BOOK["minibatch_size"] * (4 if quick else 30))
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
    noise = analog.GaussianPerturbation(0.1)

    def passes():
        for _ in seeds:
            analog.accuracy_on_instances(model, xt, yt, analog.IDEAL, [0])

    def instances():
        analog.accuracy_on_instances(model, xt, yt, noise, seeds)

    b, c = interleaved(passes, instances, repeats=reps)
    rows.append(Ratio("hasgd", f"32 instances, {len(yt):,} test images",
                      "32 clean inference passes", b, c, target=2.5))
    return rows
