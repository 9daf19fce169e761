"""hwlib beside aihwkit: the side-by-side ratios of the chapter "hwlib and aihwkit", measured in
one run.

Every row is a candidate timed against its own baseline (interleaved, best of several, one
torch thread), on the chapter's network (the ReLU MLP 784-256-256-10, mini-batches of 1,024,
Adam); images are synthetic (Fashion-MNIST-shaped): timings do not depend on pixel values.

* a training step of hwlib HA-SGD (L = 1, q = 0.1), of aihwkit's C++ and torch tiles
  (``ADD_NORMAL`` 0.1 relative to max|W|, ideal forward, one tile per layer, digital bias) and
  of aihwkit's default ``InferenceRPUConfig()``, each over a plain torch step;
* 32 noisy chips on 10,000 test images: hwlib (``accuracy_on_chips``), aihwkit's torch and C++
  tiles (``program_analog_weights`` with the same Gaussian noise) and aihwkit's PCM-like noise
  with a day of drift, each over 32 clean passes.

hwlib's rows keep the HA-SGD chapter's targets; aihwkit's rows have none (an infinite target):
they are the comparison, not a requirement. Without aihwkit the module prints one line saying
so and returns hwlib's rows only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hwlib import presets
from hwlib.chapters import peers
from hwlib.methods.evaluation import accuracy, accuracy_on_chips
from hwlib.methods.training import HASGD, Step

from .common import Ratio, interleaved

CHAPTER = "peers"
BATCH = 1024
#: No target: aihwkit's rows are the comparison.
NONE = math.inf
CONFIG = {"dataset": "fashion_mnist", "hidden_widths": [256, 256], "seed": 0}


def _data(n: int):
    gen = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return peers.build_network(CONFIG)


def _epoch(model, step, x, y):
    """A function running one pass of training steps over ``(x, y)``."""
    def run():
        model.train()
        for i in range(0, len(y), BATCH):
            step(x[i:i + BATCH], y[i:i + BATCH])
    return run


def _plain(model):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def step(xb, yb):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return step


def run(quick: bool = False) -> list[Ratio]:
    """Measure every ratio; ``quick`` uses small sizes (for the test suite)."""
    have = peers.aihwkit_version() is not None
    if not have:
        print(f"bench_peers: aihwkit is not installed ({peers.INSTALL_HINT}): its rows are "
              "skipped")
    reps = 1 if quick else 5
    x, y = _data(BATCH * (1 if quick else 10))
    m = _mlp()
    plain = _epoch(m, _plain(m), x, y)
    rows = []
    m = _mlp()
    hs = Step(m, torch.optim.Adam(m.parameters(), lr=3e-3), presets.hasgd_crossbar(sigma=0.1),
              HASGD(1), generator=torch.Generator().manual_seed(0))
    b, c = interleaved(plain, _epoch(m, hs, x, y), reps)
    rows.append(Ratio(CHAPTER, "hwlib HA-SGD step, L = 1, q = 0.1", "plain torch step", b, c,
                      1.2))
    if have:
        for name, cfg in (("aihwkit C++ tile step, ADD_NORMAL 0.1", peers.rpu_config("cpp")),
                          ("aihwkit torch tile step, ADD_NORMAL 0.1",
                           peers.rpu_config("torch")),
                          ("aihwkit default InferenceRPUConfig() step",
                           peers.rpu_config("default"))):
            am, step = peers.aihwkit_step(_mlp(), cfg, 3e-3)
            b, c = interleaved(plain, _epoch(am, step, x, y), reps)
            rows.append(Ratio(CHAPTER, name, "plain torch step", b, c, NONE))

    xt, yt = _data(1_000 if quick else 10_000)
    model = _mlp().eval()
    seeds = list(range(1, (5 if quick else 33)))
    n = len(seeds)
    hw = presets.hasgd_crossbar(sigma=0.1)

    def passes():
        for _ in seeds:
            accuracy(model, xt, yt, 1000)

    def chips():  # each chip draws its perturbation when attached
        accuracy_on_chips(model, hw, xt, yt, seeds, 1000)

    b, c = interleaved(passes, chips, reps)
    rows.append(Ratio(CHAPTER, f"hwlib: {n} chips", f"{n} clean passes", b, c, 2.5))
    if have:
        def programmed(cfg, drift=None):
            am = peers.convert(model, cfg).eval()

            def fn():
                for s in seeds:
                    torch.manual_seed(s)
                    am.program_analog_weights()
                    if drift is not None:
                        am.drift_analog_weights(drift)
                    accuracy(am, xt, yt, 1000)
            return fn

        for name, fn in (
                (f"aihwkit torch tile: {n} chips",
                 programmed(peers.inference_config("torch", "gaussian"))),
                (f"aihwkit C++ tile: {n} chips",
                 programmed(peers.inference_config("cpp", "gaussian"))),
                (f"aihwkit PCM-like, 1 day of drift: {n} chips",
                 programmed(peers.inference_config("cpp", "pcm"), peers.ONE_DAY_S))):
            b, c = interleaved(passes, fn, reps)
            rows.append(Ratio(CHAPTER, name, f"{n} clean passes", b, c, NONE))
    return rows
