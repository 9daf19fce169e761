"""Memory-faults benchmarks (targets from the chapter issue).

* BM fault injection at p = 0.01 on a tensor of 10^7 values quantized on 8 bits (float32,
  out of place, per-tensor scale rule) against one plain elementwise torch op on the same
  tensor (``x * 2``, out of place): at most 3x the time, i.e. at least a third of its
  throughput. Only the faulty bit cells are drawn (geometric gaps between them), and only the
  values they hit are touched. Both sides write a new 40 MB tensor, whose allocation is a
  large part of either time at this size; against an in-place op on a tensor already in
  memory the injection is several times slower, the cost of drawing 8 x 10^5 faulty cells.
* A forward pass with BM on weights and activations (p = 0.01, one chip attached: its weight
  faults written once, its activation fault positions fixed) against a clean forward pass of
  the same network and batch: at most 1.5x. Measured on the book profile's PreActResNet18
  (width F = 8 channels, 28x28 inputs, batch 500, the evaluation batch) and, in full mode,
  on the full-size PreActResNet18 on a 32x32 CIFAR-shaped batch of 32.

Inputs are synthetic: timings do not depend on the values.
"""

from __future__ import annotations

import copy

import torch

from hwlib.hardware import sram as mf
from hwlib.models import resnets as cifar_models

from .common import Ratio, interleaved


def _forward_ratio(model: torch.nn.Module, x: torch.Tensor, name: str, reps: int,
                   passes: int = 1) -> Ratio:
    model.eval()
    # two copies made alike: a deep copy alone can run some 10% faster than its original
    clean, faulty = copy.deepcopy(model), copy.deepcopy(model)
    chip = mf.FaultyChip(mf.FaultConfig("bm", 0.01, "both"), seed=1)

    def forward(net):
        def call():  # several passes per timing: one pass is shorter than the machine's noise
            with torch.no_grad():
                for _ in range(passes):
                    net(x)
        return call

    with chip.attached(faulty):
        b, c = interleaved(forward(clean), forward(faulty), repeats=reps)
    return Ratio("memory_faults", f"forward, BM w+a p=0.01, {name}", "clean forward", b, c,
                 target=1.5)


def run(quick: bool = False) -> list[Ratio]:
    """Measure every memory-faults ratio; ``quick`` uses small sizes (for the test suite)."""
    rows = []
    n = 1_000_000 if quick else 10_000_000
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen)
    b, c = interleaved(lambda: x * 2, lambda: mf.bit_masking(x, 0.01, generator=gen),
                       repeats=3 if quick else 7)
    rows.append(Ratio("memory_faults", f"BM injection p=0.01, {n:.0e} values",
                      "x * 2, same tensor", b, c, target=3.0))

    torch.manual_seed(0)
    book = cifar_models.build("preactresnet18", 10, 0.125, 1)
    batch = torch.randn(100 if quick else 500, 1, 28, 28, generator=gen)
    rows.append(_forward_ratio(book, batch, "book PreActResNet18", 2 if quick else 5,
                               1 if quick else 4))
    if not quick:
        full = cifar_models.build("preactresnet18")
        rows.append(_forward_ratio(full, torch.randn(32, 3, 32, 32, generator=gen),
                                   "full-size PreActResNet18", 5, 3))
    return rows
