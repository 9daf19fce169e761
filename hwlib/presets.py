"""Presets: the papers' hardware models with their published parameters, one call each.

Every preset returns a :class:`hwlib.Hardware` model, ready for :func:`hwlib.attach`, the
training methods (:class:`hwlib.Step`) and :func:`hwlib.accuracy_on_chips`::

    hw = hwlib.presets.hasgd_crossbar(sigma=0.1)            # 10 % of the dynamic range
    with hwlib.attach(model, hw, seed=3):                    # chip 3
        logits = model(x)

=======================  =================================================================
preset                   hardware and parameters
=======================  =================================================================
:func:`sddhr_mram`       S-DDHR's MRAM XNOR arrays: mu_P = 3 kOhm, TMR 100 %, sigma/mu 0.05
                         (published MTJ spreads; the paper's foundry data is confidential),
                         times ``scale``
:func:`sram_65nm`        Boukli Hacene et al.'s SRAM: bit masking at fault rate p, eq. (1)
                         p(eta) = exp(-12.8 eta) for the energy (:func:`sram_energy_model`)
:func:`hasgd_crossbar`   the HA-SGD poster's crossbar: nu ~ N(shift R, (sigma R)^2), range-
                         matched bias folding (Fig. 5)
:func:`babu_rajendran`   Babu & Rajendran's memristive device pairs: on/off ratio 15, 32
                         levels, write noise sigma = 0.1 B (each weight programmed from reset)
=======================  =================================================================
"""

from __future__ import annotations

from typing import Sequence

from .hardware.crossbar import ADC, AnalogCrossbar, GaussianPerturbation
from .hardware.memristor import MemristivePairs, MemristorConfig
from .hardware.mram import MU_P_OHM, R_MIN_REL, SIGMA_REL_NOMINAL, TMR, MRAMArray, MRAMCell
from .hardware.sram import A_PAPER, EnergyModel, FaultConfig, SRAMFaults


def sddhr_mram(scale: float = 1.0, sigma_rel: float = SIGMA_REL_NOMINAL,
               instance_model: str = "resistance") -> MRAMArray:
    """S-DDHR's MRAM arrays at ``scale`` times the nominal variation.

    Args:
        scale: the paper's "k x sigma_MRAM" (10: Table 1's level).
        sigma_rel: nominal sigma/mu of R_P and R_AP (dimensionless; 0.05, published MTJ spreads).
        instance_model: chips of Gaussian ``resistance`` (the device model) or ``conductance``
            (the first-order model PS-DDHR trains on).
    """
    cell = MRAMCell.from_variation(sigma_rel, scale, MU_P_OHM, TMR, R_MIN_REL)
    return MRAMArray(cell, instance_model)


def sram_energy_model() -> EnergyModel:
    """Eq. (1) of Boukli Hacene et al., fitted to 65 nm SRAM: p(eta) = exp(-a eta), a = 12.8."""
    return EnergyModel(A_PAPER)


def sram_65nm(p: float = 0.001, model: str = "bm", targets: str = "both") -> SRAMFaults:
    """Boukli Hacene et al.'s faulty SRAM at bit-cell fault rate ``p`` (dimensionless).

    Args:
        p: the bit-cell fault probability (bit masking) or the erasure probability p_e.
        model: ``bm`` (bit masking on 8-bit two's complement) or ``erasure``.
        targets: ``weights``, ``activations`` or ``both`` (activations: ReLU outputs).
    """
    return SRAMFaults(FaultConfig(model, p, targets))


def hasgd_crossbar(sigma: float = 0.05, shift: float = 0.0, adc_bits: int | None = None,
                   fold: str = "range") -> AnalogCrossbar:
    """The HA-SGD poster's analog crossbars (its "5 % noise" is ``sigma=0.05``).

    Args:
        sigma: std of each crossbar entry's perturbation, a fraction of the crossbar's dynamic
            range R (dimensionless).
        shift: the device mean shift, in the same unit.
        adc_bits: ADC resolution B (bits) on every crossbar output, or None; the ADC must be
            calibrated on the model (``hw.adc.calibrate(model, x)``) before use.
        fold: the bias column's folding constant s: ``range`` (range-matched) or ``unit``.
    """
    return AnalogCrossbar(GaussianPerturbation(sigma, shift), fold,
                          ADC(adc_bits) if adc_bits else None)


def babu_rajendran(sigma_over_b: float = 0.1, w_max: float | Sequence[float] | None = None
                   ) -> MemristivePairs:
    """Babu & Rajendran's memristive synapses at inference: every weight on a pair of linear,
    unidirectional devices (on/off ratio 15, 32 levels), programmed from reset by one event of
    the write model with noise sigma = ``sigma_over_b`` level spacings B.

    Args:
        sigma_over_b: the programming noise sigma/B (dimensionless; the paper's best devices:
            0.1, its Fig. 4 sweeps it).
        w_max: the weight of a pair with G+ at G_max and G- at G_min (the layer's weight units;
            the paper does not give it): one for every layer, one per layer, or None: each
            layer's ``max |W|``.
    """
    return MemristivePairs(MemristorConfig(on_off_ratio=15.0, levels=32,
                                           sigma_over_b=sigma_over_b), w_max)
