"""The hardware interface's own cost.

Attaching a chip to a full-size network and restoring it, against one clean forward pass of
the same network (target: less than one pass, ratio < 1).

Full-size networks on a CIFAR-shaped batch of 32 images: the VGG-style BNN on MRAM arrays
(attaching sets each array layer's readout; the chip's arrays are drawn at its first pass, which
is timed with it), PreActResNet18 on an SRAM with bit masking on weights and activations
(attaching writes the faulty weights, restoring copies them back) and on analog crossbars
(attaching draws and adds the perturbation of every crossbar). Each chip is a new one, so the
time includes drawing it.

HA-SGD with L = 1 (a fresh chip per step) on each family at its preset's operating point (the
papers' parameters: the nominal MRAM cell, SRAM at p = 0.001 and 0.01, crossbars at the
poster's 5 % noise, the memristive device at sigma/B = 0.1), against a clean step of the same
network (target 1.2x): the arena's 784-256-256-10 MLP, or its binarized twin on MRAM arrays, at
batch 1024 (with batch normalization, the baseline adds the clean forward pass that HA-SGD's
clean batch statistics take; see :func:`hasgd_steps`). The arena's bench measures the same
method at each device's calibrated severities.
"""

from __future__ import annotations

import itertools

import torch

from hwlib import presets
from hwlib.hardware.base import Ideal, attach
from hwlib.methods.training import HASGD, Standard
from hwlib.models import resnets
from hwlib.models.binary import BinaryMLP, VGGBinaryNet
from hwlib.models.mlp import MLP

from .common import Ratio, interleaved, training_steps


def run(quick: bool = False) -> list[Ratio]:
    """Attach-and-restore against one clean forward pass, per family."""
    width = 0.125 if quick else 1.0
    x = torch.rand(8 if quick else 32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    cases = [("MRAM arrays, VGG BNN", VGGBinaryNet(10, width).eval(), presets.sddhr_mram(10.0)),
             ("SRAM, PreActResNet18", resnets.build("preactresnet18", 10, width).eval(),
              presets.sram_65nm(p=0.01)),
             ("crossbars, PreActResNet18", resnets.build("preactresnet18", 10, width).eval(),
              presets.hasgd_crossbar(sigma=0.1))]
    rows = []
    for name, model, hw in cases:
        seeds = itertools.count(1)

        def forward():
            with torch.no_grad():
                model(x)

        def attach_restore():
            chip = hw.sample(next(seeds))
            with torch.no_grad(), attach(model, chip):
                pass
            if name.startswith("MRAM"):  # the arrays are drawn at the chip's first pass: time
                from hwlib.hardware.mram import array_layers  # drawing them, not the pass

                layers = array_layers(model)
                for layer in layers:
                    n, m = layer.weight.shape[0], layer.weight[0].numel()
                    chip.readout.array(layer, m, n)

        b, c = interleaved(forward, attach_restore, repeats=1 if quick else 3)
        rows.append(Ratio("hardware", f"attach a new chip and restore, {name}",
                          "one clean forward pass", b, c, target=1.0))
    return rows + hasgd_steps(quick)


def _has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def hasgd_steps(quick: bool = False) -> list[Ratio]:
    """HA-SGD with L = 1 on each family at its preset's operating point, against a clean step.

    On a network with batch normalization (the binarized MLP of MRAM arrays) HA-SGD's default
    runs one extra forward pass of the clean network per step for clean batch statistics
    (:class:`hwlib.methods.training.HASGD`, ``batch_norm="clean"``); that row's baseline is a
    clean step plus that clean pass (the method's own work, as L = 4 is measured against four
    clean steps), and a second row runs the poster's Algorithm 1 as written (statistics of the
    perturbed pass) against a clean step."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1024, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (1024,), generator=gen)
    hidden = (64, 64) if quick else (256, 256)
    cases = [("MRAM arrays, nominal cell", presets.sddhr_mram(), True, HASGD(1)),
             ("MRAM arrays, nominal cell, perturbed batch statistics", presets.sddhr_mram(), True,
              HASGD(1, batch_norm="perturbed")),
             ("SRAM, p = 0.001", presets.sram_65nm(p=0.001), False, HASGD(1)),
             ("SRAM, p = 0.01", presets.sram_65nm(p=0.01), False, HASGD(1)),
             ("crossbars, sigma = 0.05", presets.hasgd_crossbar(sigma=0.05), False, HASGD(1)),
             ("memristive pairs, sigma/B = 0.1", presets.babu_rajendran(0.1), False, HASGD(1))]
    rows = []
    n_steps = 2 if quick else 6
    for name, hw, binary, method in cases[::2] if quick else cases:
        def net(binary=binary):
            torch.manual_seed(0)
            return BinaryMLP(784, hidden, 10) if binary else MLP((1, 28, 28), hidden, 10)

        clean = training_steps(net, Ideal(), Standard(), x, y, n_steps, binary)
        baseline, label = clean, "clean step"
        reference = net()
        if method.batch_norm == "clean" and _has_batch_norm(reference):
            def baseline(clean=clean, reference=reference):
                clean()
                with torch.no_grad():
                    for _ in range(n_steps):
                        reference(x)

            label = "clean step + clean forward"
        b, c = interleaved(baseline, training_steps(net, hw, method, x, y, n_steps, binary),
                           repeats=1 if quick else 7)
        rows.append(Ratio("hardware", f"HA-SGD L = 1 step, {name}", label, b, c, 1.2))
    return rows
