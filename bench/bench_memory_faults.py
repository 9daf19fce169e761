"""Memory-faults benchmarks (targets from the chapter issue).

* BM fault injection at p = 0.01 on a tensor of 10^7 values quantized on 8 bits (float32,
  out of place, per-tensor scale rule) against one plain elementwise torch op on the same
  tensor (``x * 2``, out of place): at most 3x the time, i.e. at least a third of its
  throughput. Only the faulty bit cells are drawn (geometric gaps between them, marked into a
  dense map that one compiled pass applies). Both sides write a new 40 MB tensor, whose
  allocation is a large part of either time at this size. How large depends on what the
  process did before: a fresh process maps and zeroes new pages for it, while after the other
  benchmarks the allocator may hand back a block already in memory (``x * 2`` then took
  2.8 ms instead of 18 ms, and the ratio read 11x). The row is therefore measured in a process
  of its own, as a newly started script allocates. A second line, without a target, gives
  the same comparison with both outputs allocated beforehand: the arithmetic alone, where
  drawing 8 x 10^5 faulty cells (torch's generator) and the masking pass cost several
  elementwise ops.
* A forward pass with BM on weights and activations (p = 0.01, one chip attached: its weight
  faults written once, its activation fault positions fixed) against a clean forward pass of
  the same network and batch: at most 1.5x. Measured on the book profile's PreActResNet18
  (width F = 8 channels, 28x28 inputs, batch 500, the evaluation batch) and, in full mode,
  on the full-size PreActResNet18 on a 32x32 CIFAR-shaped batch of 32.

Inputs are synthetic: timings do not depend on the values.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

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


def injection_times(n: int, repeats: int) -> list[float]:
    """Best times of ``x * 2`` and of BM injection at p = 0.01 on ``n`` values, out of place,
    then of both into outputs allocated beforehand (run in a process of its own)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, generator=gen)
    times = list(interleaved(lambda: x * 2, lambda: mf.bit_masking(x, 0.01, generator=gen),
                             repeats))
    twice, masked = torch.empty_like(x), torch.empty_like(x)
    times += interleaved(lambda: torch.mul(x, 2, out=twice),
                         lambda: mf.FaultMap.sample(n, 0.01, generator=gen).apply(x, out=masked),
                         repeats)
    return times


def _injection_rows(n: int, repeats: int) -> list[Ratio]:
    code = ("import json; from bench.bench_memory_faults import injection_times; "
            f"print(json.dumps(injection_times({n}, {repeats})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the injection benchmark's process failed:\n{done.stderr[-2000:]}")
    b, c, bi, ci = json.loads(done.stdout.strip().splitlines()[-1])
    return [Ratio("memory_faults", f"BM injection p=0.01, {n:.0e} values", "x * 2, same tensor",
                  b, c, target=3.0),
            Ratio("memory_faults", f"BM injection p=0.01, {n:.0e} values, into an allocated "
                  "output", "x * 2 into one", bi, ci, target=math.inf)]


def run(quick: bool = False) -> list[Ratio]:
    """Measure every memory-faults ratio; ``quick`` uses small sizes (for the test suite)."""
    rows = _injection_rows(1_000_000 if quick else 10_000_000, 3 if quick else 7)
    gen = torch.Generator().manual_seed(0)
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
