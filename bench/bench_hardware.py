"""The hardware interface's own cost: attaching a chip to a full-size network and restoring it,
against one clean forward pass of the same network (target: less than one pass, ratio < 1).

Full-size networks on a CIFAR-shaped batch of 32 images: the VGG-style BNN on MRAM arrays
(attaching sets each array layer's readout; the chip's arrays are drawn at its first pass, which
is timed with it), PreActResNet18 on an SRAM with bit masking on weights and activations
(attaching writes the faulty weights, restoring copies them back) and on analog crossbars
(attaching draws and adds the perturbation of every crossbar). Each chip is a new one, so the
time includes drawing it.
"""

from __future__ import annotations

import itertools

import torch

from hwlib import presets
from hwlib.hardware.base import attach
from hwlib.models import resnets
from hwlib.models.binary import VGGBinaryNet

from .common import Ratio, interleaved


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
    return rows
