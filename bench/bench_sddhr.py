"""S-DDHR benchmarks.

* Monte Carlo of the conductance moments (notebook 1): the cost per sample of drawing a
  clipped Gaussian resistance and accumulating G's moments and histogram, against drawing the
  same number of plain Gaussian samples (``torch.randn``), the floor for any sampler.

The training-epoch and 32-instance evaluation ratios of the chapter issue are added with the
chapter's training code.
"""

from __future__ import annotations

import torch

from hwlib import mram

from .common import Ratio, interleaved


def run(quick: bool = False) -> list[Ratio]:
    """Measure every S-DDHR ratio; ``quick`` uses small sizes (for the test suite)."""
    n = 200_000 if quick else 4_000_000
    cfg = {"mu": 3000.0, "sigma": 300.0, "r_min_rel": 0.1, "n_samples": n, "seed": 0}
    gen = torch.Generator().manual_seed(0)

    def baseline():
        for start in range(0, n, 1_000_000):
            torch.randn(min(1_000_000, n - start), generator=gen, dtype=torch.float64)

    b, c = interleaved(baseline, lambda: mram.conductance_mc(cfg), repeats=2 if quick else 4)
    return [Ratio("sddhr", f"conductance Monte Carlo, {n:,} samples", "torch.randn, same size",
                  b, c, target=4.0)]
