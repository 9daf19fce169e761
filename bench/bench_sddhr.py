"""S-DDHR benchmarks (targets from the chapter issue).

* Training-epoch time of each regime against Ideal training of the same network (the book
  profile's binarized MLP, 784-256-256-10, batch 200): DDHR-instance and PS-DDHR at most 2x,
  AS-DDHR at most 1.3x, Sampled (a fresh device-model chip per step) at most 1.5x.
* Evaluating 32 hardware instances on a 10,000-image test set against 32 clean inference
  passes: at most 1.5x (instances are stacked and evaluated in one pass per batch).
* Monte Carlo of the conductance moments (notebook 1) against drawing the same number of
  plain Gaussian samples (``torch.randn``), the floor for any sampler.

Images are synthetic (MNIST-shaped): timings do not depend on pixel values.
"""

from __future__ import annotations

import torch

from hwlib import presets
from hwlib.chapters import sddhr
from hwlib.methods.evaluation import accuracy_on_chips
from hwlib.methods.training import Step, fit
from hwlib.models.binary import BinaryMLP, clip_latent_weights

from .common import Ratio, interleaved

HW = presets.sddhr_mram(scale=10.0)  # the book's test chips: Gaussian resistances, 10x nominal


def _data(n: int):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _epoch(regime: str, x, y):
    model = BinaryMLP(784, (256, 256), 10)
    step = Step(model, torch.optim.Adam(model.parameters(), lr=3e-3), HW,
                sddhr.method_for(regime, 1), generator=torch.Generator().manual_seed(2),
                after_step=clip_latent_weights)
    return lambda: fit(step, x, y, epochs=1, batch_size=200)


def run(quick: bool = False) -> list[Ratio]:
    """Measure every S-DDHR ratio; ``quick`` uses small sizes (for the test suite)."""
    rows = []
    x, y = _data(2_000 if quick else 10_000)
    reps = 1 if quick else 3
    targets = {"ddhr": 2.0, "ps_ddhr": 2.0, "as_ddhr": 1.3, "sampled": 1.5}
    for regime, target in targets.items():
        b, c = interleaved(_epoch("ideal", x, y), _epoch(regime, x, y), repeats=reps)
        rows.append(Ratio("sddhr", f"training epoch, {sddhr.REGIME_LABELS[regime]}",
                          "Ideal training epoch", b, c, target))

    xt, yt = _data(2_000 if quick else 10_000)
    model = BinaryMLP(784, (256, 256), 10).eval()
    seeds = list(range(1, 33))
    ideal = presets.sddhr_mram(scale=0.0)

    def clean():
        for _ in seeds:
            accuracy_on_chips(model, ideal, xt, yt, [0], 2000)

    def instances():
        accuracy_on_chips(model, HW, xt, yt, seeds, 2000)

    b, c = interleaved(clean, instances, repeats=reps)
    rows.append(Ratio("sddhr", f"32 instances, {len(yt):,} test images",
                      "32 clean inference passes", b, c, target=1.5))

    n = 200_000 if quick else 4_000_000
    cfg = {"mu": 3000.0, "sigma": 300.0, "r_min_rel": 0.1, "n_samples": n, "seed": 0}
    gen = torch.Generator().manual_seed(0)

    def randn():
        for start in range(0, n, 1_000_000):
            torch.randn(min(1_000_000, n - start), generator=gen, dtype=torch.float64)

    b, c = interleaved(randn, lambda: sddhr.conductance_mc(cfg), repeats=2 if quick else 4)
    rows.append(Ratio("sddhr", f"conductance Monte Carlo, {n:,} samples",
                      "torch.randn, same size", b, c, target=4.0))
    return rows
