"""Timing helpers: ratios measured in one run, best of several repeats, one torch thread."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Ratio:
    """One benchmark line: a candidate's time over its baseline's, against a target.

    Attributes:
        chapter: the chapter the benchmark belongs to.
        name: what is measured.
        baseline: what it is compared with.
        baseline_s: the baseline's best time, seconds.
        candidate_s: the candidate's best time, seconds.
        target: the largest acceptable ratio.
    """

    chapter: str
    name: str
    baseline: str
    baseline_s: float
    candidate_s: float
    target: float

    @property
    def ratio(self) -> float:
        """candidate_s / baseline_s."""
        return self.candidate_s / self.baseline_s

    @property
    def ok(self) -> bool:
        """Whether the ratio meets the target."""
        return self.ratio <= self.target


def best_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """The best wall time of ``repeats`` calls, seconds (after one warm-up call)."""
    torch.set_num_threads(1)
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def interleaved(baseline: Callable[[], object], candidate: Callable[[], object],
                repeats: int = 5) -> tuple[float, float]:
    """Best times of two functions measured alternately, so machine noise hits both alike."""
    torch.set_num_threads(1)
    baseline(), candidate()
    b = c = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        baseline()
        t1 = time.perf_counter()
        candidate()
        t2 = time.perf_counter()
        b, c = min(b, t1 - t0), min(c, t2 - t1)
    return b, c


def training_steps(net: Callable[[], torch.nn.Module], hardware, method, x: torch.Tensor,
                   y: torch.Tensor, n_steps: int, binary: bool = False) -> Callable[[], object]:
    """``n_steps`` training steps (Adam) of a fresh ``net()`` through ``method`` on
    ``hardware``, as one callable (a binarized network's latent weights clipped after each)."""
    from hwlib.methods.training import Step
    from hwlib.models.binary import clip_latent_weights

    model = net()
    step = Step(model, torch.optim.Adam(model.parameters(), lr=1e-3), hardware, method,
                generator=torch.Generator().manual_seed(1),
                after_step=clip_latent_weights if binary else None)
    return lambda: [step(x, y) for _ in range(n_steps)]
