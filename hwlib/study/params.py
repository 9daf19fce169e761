"""Notebook parameters: the registry of every knob, its allowed values, and the checks.

Each knob a notebook exposes in its ``parameters`` cell is registered here with its type,
range, unit and meaning, so that a bad value fails before any compute with one line naming
the parameter and what is allowed (from the command line, from papermill or inside Jupyter).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ParameterError
from .profiles import CHAPTER_PROFILES, DEFAULT_PROFILE, PROFILES, settings

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")
#: Images in the training and test splits of each dataset (the published sizes).
SPLIT_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000),
               "cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
               "svhn": (73_257, 26_032)}
#: The smallest Monte Carlo sample the notebooks accept: their standard errors (of means and
#: of variances, from sample moments) and the z scores built on them need a sample large
#: enough for the central limit theorem; 100 is the usual floor.
MIN_MC_SAMPLES = 100
#: The largest relative resistance spread sigma/mu the MRAM notebooks accept: beyond 1 a
#: Gaussian resistance is non-positive in more than 16 % of the cells, and the model means
#: nothing.
MAX_SIGMA_REL = 1.0


@dataclass(frozen=True)
class Knob:
    """One notebook parameter.

    Attributes:
        kind: ``"float"``, ``"int"``, ``"str"``, ``"bool"``, or ``"list[float]"`` etc.
        doc: what it is, in the paper's terms, with the paper's symbol.
        unit: the unit of the value ("" for dimensionless).
        lo: smallest allowed value (inclusive), for numbers and list elements.
        hi: largest allowed value (inclusive).
        choices: the allowed values, for strings.
        nullable: ``None`` is allowed and means "the profile's value".
        length: for a list, the number of elements it must have (``None``: any, >= 1).
    """

    kind: str
    doc: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False
    length: int | None = None

    def allowed(self) -> str:
        """A short phrase saying what is allowed."""
        base = self.kind.removeprefix("list[").removesuffix("]")
        if self.choices:
            what = "one of " + ", ".join(self.choices)
        elif self.lo is not None and self.hi is not None:
            what = f"a {base} in [{self.lo:g}, {self.hi:g}]"
        elif self.lo is not None:
            what = f"a {base} >= {self.lo:g}"
        elif self.hi is not None:
            what = f"a {base} <= {self.hi:g}"
        else:
            what = f"a {base}"
        if self.kind.startswith("list["):
            size = f"a list of {self.length}" if self.length else "a non-empty list"
            what = f"{size}, each element {what}"
        if self.nullable:
            what += " (or None for the profile's value)"
        return what


KNOBS: dict[str, Knob] = {
    # --- common to every notebook -------------------------------------------------------
    "PROFILE": Knob("str", "execution profile", choices=tuple(PROFILES)),
    "seed": Knob("int", "base random seed; instance i uses seed + i", lo=0),
    "torch_device": Knob("str", "the torch device computations run on (auto: CUDA when "
                         "present)", choices=("auto", "cpu", "cuda"), nullable=True),
    "precision": Knob("str", "arithmetic of the digital forward passes on CUDA (device models "
                      "stay float32; the CPU is always float32)", choices=("fp32", "tf32", "bf16"),
                      nullable=True),
    "channels_last": Knob("bool", "channels-last memory format for convolutional networks",
                          nullable=True),
    "devices": Knob("list[str]", "device families of the arena (hwlib.chapters.arena.DEVICES)",
                    choices=("mram", "sram", "crossbar", "crossbar_adc4", "memristive"),
                    nullable=True),
    "methods": Knob("list[str]", "training methods of the arena (hwlib.chapters.arena.METHODS)",
                    choices=("standard", "ddhr", "fixed", "sampling", "hasgd4", "parametric",
                             "erasure"), nullable=True),
    "drops": Knob("list[float]", "the standard network's loss at each calibrated severity",
                  "points", lo=0.01, hi=100, nullable=True),
    "train_seeds": Knob("list[int]", "training seeds of every method", lo=0, nullable=True),
    "test_chips": Knob("int", "test chips per accuracy (seeds 1..test_chips)", lo=1,
                       nullable=True),
    "ddhr_chips": Knob("int", "test chips DDHR trains one network for", lo=1, nullable=True),
    "calib_chips": Knob("int", "chips the severity calibration averages", lo=1, nullable=True),
    "grid_points": Knob("int", "severities of the calibration's coarse sweep", lo=3,
                        nullable=True),
    "bisections": Knob("int", "halvings of the calibration's bracket", lo=0, nullable=True),
    "n_calib": Knob("int", "held-out training images of the severity calibration", lo=1,
                    nullable=True),
    "mc_samples": Knob("int", "Monte Carlo draws per sweep point", lo=MIN_MC_SAMPLES,
                       nullable=True),
    "n_train": Knob("int", "training images used", lo=1, nullable=True),
    "n_test": Knob("int", "test images used", lo=1, nullable=True),
    "epochs": Knob("int", "training epochs", lo=1, nullable=True),
    "instances": Knob("int", "hardware instances per accuracy point", lo=1, nullable=True),
    "datasets": Knob("list[str]", "datasets to train on", choices=DATASETS, nullable=True),
    # --- S-DDHR: MRAM bit cells ---------------------------------------------------------
    "mu_p_ohm": Knob("float", "mean parallel-state resistance mu_P", "ohm", lo=1e-9),
    "tmr": Knob("float", "tunnel magnetoresistance ratio (mu_AP - mu_P) / mu_P", lo=1e-9),
    "sigma_rel_nominal": Knob(
        "float", "nominal relative resistance spread sigma/mu of both states", lo=0, hi=1
    ),
    "sigma_scales": Knob(
        "list[float]", "multiples of the nominal variation to sweep", lo=0, hi=1000
    ),
    "r_min_rel": Knob(
        "float", "resistance floor as a fraction of the state's mean (clip rule)", lo=1e-6, hi=1
    ),
    "fan_ins": Knob("list[int]", "array fan-ins M (rows) to compare", lo=1, hi=100_000),
    "instance_model": Knob("str", "how hardware instances are drawn: Gaussian resistances "
                           "(the device model) or first-order Gaussian conductances",
                           choices=("resistance", "conductance")),
    "ablation_model": Knob("str", "how the ablation's hardware instances are drawn",
                           choices=("resistance", "conductance")),
    "regimes": Knob("list[str]", "training regimes to run",
                    choices=("ddhr", "ideal", "fixed", "ps_ddhr", "as_ddhr", "sampled")),
    "table_scale": Knob("float", "variation multiple of Table 1", lo=0, hi=1000),
    "network": Knob("str", "the network: S-DDHR's binarized MLP or the paper's VGG BNN; HA-SGD's "
                    "ReLU MLP, small CNN or WideResNet (the poster's)",
                    choices=("mlp", "vgg", "cnn", "wrn"), nullable=True),
    "width": Knob("float", "channel multiplier of the VGG BNN (1: the paper's)", lo=1e-3, hi=8),
    # --- training --------------------------------------------------------------------------
    "lr": Knob("float", "initial learning rate (cosine decay to zero)", lo=1e-8, hi=10,
               nullable=True),
    "batch_size": Knob("int", "images per mini-batch (x^(i) of Algorithm 1)", lo=1,
                       nullable=True),
    "n_test_epoch": Knob("int", "test images for the per-epoch curves", lo=1, nullable=True),
    # --- hasgd ---
    "dataset": Knob("str", "the dataset the chapter trains and tests on", choices=DATASETS,
                    nullable=True),
    "hidden_widths": Knob("list[int]", "hidden widths of the ReLU MLP", lo=1, hi=100_000,
                          nullable=True),
    "wrn_depth": Knob("int", "WideResNet depth, 6 n + 4 (28: the poster's)", lo=10, hi=1000,
                      nullable=True),
    "wrn_width": Knob("int", "WideResNet widening factor k (10: WRN-28-10)", lo=1, hi=64,
                      nullable=True),
    "optimizer": Knob("str", "the optimizer HA-SGD drives", choices=("adam", "sgd"),
                      nullable=True),
    "weight_decay": Knob("float", "L2 weight decay of the optimizer", lo=0, hi=1, nullable=True),
    "augment": Knob("bool", "random crops and flips of the training images (CIFAR)",
                    nullable=True),
    "batch_norm": Knob("str", "batch normalization in HA-SGD's perturbed passes: the clean "
                       "network's statistics, or training mode inside each perturbed pass",
                       choices=("clean", "perturbed"), nullable=True),
    "shift_model": Knob("str", "how a device drift acts: on differential pairs (a gain) or on "
                        "single devices (an offset of every entry)", choices=("pair", "single")),
    "ablation_shift_model": Knob("str", "the drift model of the mean-shift ablation",
                                 choices=("pair", "single")),
    "scale_fault_rates": Knob("list[float]", "fault rates p of the activation-scale comparison",
                              lo=0, hi=1, nullable=True),
    "fold": Knob("str", "folding constant s of the bias column: range-matched (Fig. 5) or s = 1",
                 choices=("range", "unit"), nullable=True),
    "curve_images": Knob("int", "test images behind the per-epoch accuracy curves", lo=1,
                         nullable=True),
    "curve_instances": Knob("int", "hardware instances behind the per-epoch curves", lo=1,
                            nullable=True),
    "train_sigmas": Knob("list[float]", "HA-SGD training noise levels q: std of nu as a "
                         "fraction of the dynamic range", lo=0, hi=1, nullable=True),
    "test_sigmas": Knob("list[float]", "test noise levels p: std of nu as a fraction of the "
                        "dynamic range", lo=0, hi=1, nullable=True),
    "samples": Knob("int", "L, perturbation samples per mini-batch of the main networks", lo=1,
                    hi=1000, nullable=True),
    "train_shifts": Knob("list[float]", "device mean shifts used as prior knowledge in "
                         "training (fraction of the dynamic range)", lo=-1, hi=1, nullable=True),
    "test_shifts": Knob("list[float]", "device mean shifts of the tested hardware (fraction of "
                        "the dynamic range)", lo=-1, hi=1, nullable=True),
    "shift_sigma": Knob("float", "noise level of the mean-shift study, training and test "
                        "(Fig. 8: 5 %)", lo=0, hi=1, nullable=True),
    "samples_sweep": Knob("list[int]", "values of L compared", lo=1, hi=1000, nullable=True),
    "samples_sigma": Knob("float", "training and test noise level of the L study", lo=0, hi=1,
                          nullable=True),
    "adc_bits": Knob("list[int]", "ADC resolutions B (bits) swept", lo=1, hi=16, nullable=True),
    "adc_sigma": Knob("float", "test noise level of the ADC sweep's noisy panel", lo=0, hi=1,
                      nullable=True),
    "calib_images": Knob("int", "training images calibrating the ADC ranges", lo=1,
                         nullable=True),
    "hessian_images": Knob("int", "training images the Hessian's loss averages over", lo=1,
                           nullable=True),
    "hessian_probes": Knob("int", "Rademacher probes of Hutchinson's estimator", lo=2,
                           nullable=True),
    "toy_sigma": Knob("float", "std of the perturbation of HA-SGD on the toy loss (units of w)",
                      lo=1e-6, hi=10),
    "toy_samples": Knob("int", "L of HA-SGD on the toy loss", lo=1, hi=10_000),
    "toy_steps": Knob("int", "descent steps on the toy loss", lo=1, hi=1_000_000),
    "toy_lr": Knob("float", "step size on the toy loss", lo=1e-8, hi=10),
    "sharp_width": Knob("float", "width of the toy loss's sharp well (the flat one's is 1)",
                        lo=1e-3, hi=1),
    "well_distance": Knob("float", "distance between the toy loss's two wells", lo=0.1, hi=10),
    "expansion_sigma": Knob("float", "perturbation std of the expansion check (units of w)",
                            lo=1e-6, hi=1),
    # --- memory_faults ---
    "energy_a": Knob("float", "a of the energy-reliability function p(eta) = exp(-a eta)",
                     lo=1e-3, hi=1000),
    "width_f": Knob("float", "channel multiplier of the width-F network relative to the "
                    "paper's F (1: full size)", lo=1e-3, hi=4, nullable=True),
    "networks": Knob("list[str]", "the architectures of Table I to train and test",
                     choices=("preactresnet18", "mobilenetv2", "senet18", "resnet18")),
    "momentum": Knob("float", "SGD momentum", lo=0, hi=0.999, nullable=True),
    "fault_rates": Knob("list[float]", "bit-cell fault probabilities p swept, weights and "
                        "activations", lo=0, hi=1, nullable=True),
    "weight_fault_rates": Knob("list[float]", "bit-cell fault probabilities p swept with faults "
                               "on the weights only", lo=0, hi=1, nullable=True),
    "erasure_ratios": Knob("list[float]", "erasure probabilities tested, as multiples p_e/p of "
                           "the swept p", lo=0.01, hi=100, nullable=True),
    "block_fault_rates": Knob("list[float]", "fault probabilities p swept on one block at a "
                              "time", lo=0, hi=1, nullable=True),
    "block_ratios": Knob("list[float]", "blockwise policy p_B4 / p_Bi for blocks 1..4 (the "
                         "paper's: 10, 5, 5, 1)", lo=1, hi=1e6, length=4),
    "policy_fault_rates": Knob("list[float]", "p_B4 of the blockwise policy, swept", lo=0, hi=1,
                               nullable=True),
    "reg_fault_rates": Knob("list[float]", "test fault rates p the erasure regularizer trains "
                            "a network for", lo=0, hi=1, nullable=True),
    "reg_pe_ratios": Knob("list[float]", "erasure regularizer's p_e / p (2: the paper's, 1: "
                          "its control)", lo=0.01, hi=100),
    "width_seeds": Knob("int", "training seeds per reliable width", lo=1, hi=100,
                        nullable=True),
    "robust_drop": Knob("float", "accuracy drop below clean (points) that defines the tolerated "
                        "fault rate", lo=0, hi=100, nullable=True),
    "reg_init": Knob("str", "erasure regularizer: train from scratch, or fine-tune the standard "
                     "network", choices=("scratch", "standard"), nullable=True),
    "reg_epochs": Knob("int", "epochs of training with the erasure regularizer", lo=1,
                       nullable=True),
    "reg_lr": Knob("float", "initial learning rate with the erasure regularizer (cosine decay "
                   "to zero)", lo=1e-8, hi=10, nullable=True),
    "mc_chips": Knob("int", "chips drawn for the Monte Carlo check of BM's mean-square "
                     "deviation", lo=2, hi=100_000, nullable=True),
    "pe2p_chips": Knob("int", "chips per point of Fig. 3's comparison of BM at p with erasures "
                       "at p_e = 2p (a standard error well below its 1-point tolerance)", lo=2,
                       hi=100_000, nullable=True),
    "pe2p_rates": Knob("list[float]", "fault rates p of Fig. 3's comparison of BM at p with "
                       "erasures at p_e = 2p", lo=0, hi=0.5, nullable=True),
    # --- memristive ---
    "factors": Knob("list[float]", "stream values a and b of the Monte Carlo grid (eq. 3)",
                    lo=0, hi=1),
    "bl_grid": Knob("list[int]", "stream lengths N of the Monte Carlo of eq. (3)", lo=1,
                    hi=1_000_000),
    "stream_lengths": Knob("list[int]", "BL of the stochastic floating-point networks of Fig. 3 "
                           "(bits)", lo=1, hi=4096, nullable=True),
    "train_bl": Knob("int", "BL of the memristive networks in training (the paper: 10 bits)",
                     lo=1, hi=4096, nullable=True),
    "sigma_over_b_values": Knob("list[float]", "programming noise sigma/B swept (Fig. 4), in "
                                "level spacings", lo=0, hi=100, nullable=True),
    "sigma_over_b": Knob("float", "programming noise sigma/B of the network of Fig. 5, in "
                         "level spacings", lo=0, hi=100, nullable=True),
    "on_off_ratio": Knob("float", "device dynamic range G_max / G_min", lo=1.0001, hi=1e6,
                         nullable=True),
    "levels": Knob("int", "conductance levels per device", lo=2, hi=65536, nullable=True),
    "reset_every": Knob("int", "images between resets of the synapses (0: never)", lo=0,
                        hi=1_000_000, nullable=True),
    "reset_noise": Knob("bool", "whether a reset's re-programming is a programming event with "
                        "the same noise (True, the paper's write model) or exact (False)",
                        nullable=True),
    "w_max": Knob("list[float]", "per layer, the weight of G+ = G_max, G- = G_min (the "
                  "conductance-to-weight scale), one per layer of 784-256-128-10", lo=1e-6,
                  hi=100, nullable=True, length=3),
    "lr_first": Knob("float", "learning rate eta in the first epoch (batch size 1)", lo=1e-8,
                     hi=10, nullable=True),
    "lr_last": Knob("float", "learning rate eta in the last epoch (geometric in between)",
                    lo=1e-8, hi=10, nullable=True),
    "noise_vars": Knob("list[float]", "variances of the Gaussian input noise (images in [0, 1])",
                       lo=0, hi=10),
    "inference_bls": Knob("list[int]", "stream lengths BL used for inference (bits)", lo=1,
                          hi=4096),
    "noise_runs": Knob("int", "stochastic runs averaged per noise level", lo=1, hi=1000,
                       nullable=True),
    "input_norm": Knob("str", "how pixels in [0, 1] become network inputs: image_mean (each "
                       "image minus its own mean, the paper's mean normalization) or unit "
                       "(pixels as they are)", choices=("image_mean", "unit"), nullable=True),
    "network_seeds": Knob("int", "networks (seeds seed, seed + 1, ... of initial weights and "
                          "streams) per configuration of Fig. 4 (each sigma/B) and Fig. 5",
                          lo=1, hi=100, nullable=True),
    "reset_compare_seeds": Knob("int", "networks (seeds) per sigma/B trained with the other reset "
                                "setting (not reset_noise), for Fig. 4's comparison", lo=1,
                                hi=100, nullable=True),
    "w_max_factors": Knob("list[float]", "scales of every layer's w_max in the w_max sweep (1: "
                          "the chapter's w_max)", lo=1e-3, hi=1000, nullable=True),
    "w_max_seeds": Knob("int", "networks (seeds) per factor of the w_max sweep", lo=1, hi=100,
                        nullable=True),
    "w_max_reset_noise": Knob("bool", "the reset setting of the w_max sweep (None: reset_noise, "
                              "the chapter's)", nullable=True),
    # --- peers: hwlib and aihwkit ---
    "train_sigma": Knob("float", "training noise level of both libraries' hardware-aware "
                        "training: q of HA-SGD and std_dev of aihwkit's ADD_NORMAL, a fraction "
                        "of each layer's max|W|", lo=0, hi=1, nullable=True),
    "train_seeds": Knob("int", "training seeds per network (seed, seed + 1, ...)", lo=1,
                        hi=100, nullable=True),
    "nets": Knob("list[str]", "the networks compared: standard training, hwlib HA-SGD, "
                 "aihwkit hardware-aware training on its C++ or torch tile",
                 choices=("standard", "hwlib", "aihwkit", "aihwkit_torch"), nullable=True),
    "drift_times": Knob("list[float]", "times after programming at which aihwkit's PCM-like "
                        "devices are read (drift)", "s", lo=1, hi=1e10, nullable=True),
    "pcm_peripheries": Knob("list[str]", "aihwkit periphery of the PCM tests: ideal (only the "
                            "devices noisy) or default (InferenceRPUConfig's DAC, ADC and "
                            "output noise)", choices=("ideal", "default"), nullable=True),
    "draws": Knob("int", "training-noise draws per configuration in the equivalence check",
                  lo=2, hi=10_000, nullable=True),
    "timing_steps": Knob("int", "training steps per timed block", lo=1, hi=10_000,
                         nullable=True),
    "step_rounds": Knob("int", "round-robin rounds of the step timing", lo=1, hi=1000,
                        nullable=True),
    "timing_instances": Knob("int", "chips of the timed evaluation", lo=1, hi=10_000,
                             nullable=True),
    "timing_images": Knob("int", "test images of the timed evaluation", lo=1, nullable=True),
    "instance_rounds": Knob("int", "round-robin rounds of the evaluation timing", lo=1,
                            hi=1000, nullable=True),
}


def _check_scalar(name: str, knob: Knob, base: str, value: Any) -> None:
    ok_type = {
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "bool": isinstance(value, bool),
    }[base]
    if not ok_type or (base == "float" and not math.isfinite(value)):
        raise ParameterError(f"{name}={value!r}: must be {knob.allowed()}")
    if knob.choices is not None and value not in knob.choices:
        raise ParameterError(f"{name}={value!r}: must be {knob.allowed()}")
    if knob.lo is not None and value < knob.lo or knob.hi is not None and value > knob.hi:
        raise ParameterError(f"{name}={value!r}: must be {knob.allowed()}")


def check_param(name: str, value: Any, allowed_names: set[str] | None = None,
                chapter: str | None = None) -> None:
    """Check one parameter against the registry.

    Args:
        name: the parameter's name as in the notebook's ``parameters`` cell.
        value: its value.
        allowed_names: the names the notebook accepts; ``None`` accepts any registered name.

    Raises:
        ParameterError: one line naming the parameter and what is allowed.
    """
    if name not in KNOBS or (allowed_names is not None and name not in allowed_names):
        names = sorted(allowed_names if allowed_names is not None else KNOBS)
        raise ParameterError(f"unknown parameter {name!r}; allowed: {', '.join(names)}")
    knob = CHAPTER_KNOBS.get((chapter or "", name), KNOBS[name])
    if value is None:
        if knob.nullable:
            return
        raise ParameterError(f"{name}=None: must be {knob.allowed()}")
    if knob.kind.startswith("list["):
        base = knob.kind[5:-1]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not value or (
                knob.length is not None and len(value) != knob.length):
            raise ParameterError(f"{name}={value!r}: must be {knob.allowed()}")
        for item in value:
            try:
                _check_scalar(name, knob, base, item)
            except ParameterError:
                raise ParameterError(f"{name}={value!r}: must be {knob.allowed()}") from None
    else:
        _check_scalar(name, knob, knob.kind, value)


def check_profile(profile: str, chapter: str | None = None) -> dict[str, object]:
    """Return the profile's settings (as ``chapter`` sees them), or raise one line naming
    the allowed profiles (or chapters)."""
    if profile not in PROFILES:
        raise ParameterError(
            f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}"
        )
    if chapter is not None and chapter not in CHAPTER_PROFILES:
        raise ParameterError(
            f"unknown chapter {chapter!r}; allowed: {', '.join(CHAPTER_PROFILES)}"
        )
    return settings(profile, chapter)


def _datasets(params: Mapping[str, Any]) -> list[str]:
    out = list(params.get("datasets") or [])
    if params.get("dataset"):
        out.append(params["dataset"])
    return out


#: Knobs whose allowed values depend on the chapter: (chapter, knob) -> the chapter's knob.
CHAPTER_KNOBS: dict[tuple[str, str], Knob] = {
    ("sddhr", "network"): Knob("str", "the network: binarized MLP or the paper's VGG BNN",
                               choices=("mlp", "vgg"), nullable=True),
    ("hasgd", "network"): Knob("str", "the network: ReLU MLP, small CNN or WideResNet (the "
                               "poster's)", choices=("mlp", "cnn", "wrn"), nullable=True),
    ("arena", "network"): Knob("str", "the networks: the ReLU MLP and its binarized twin, or "
                               "ResNet-18 and the VGG BNN (CIFAR-10)", choices=("mlp", "resnet"),
                               nullable=True),
    ("arena", "width"): Knob("float", "channel multiplier of ResNet-18 and the VGG BNN",
                             lo=1e-3, hi=8, nullable=True),
}

#: Knobs that count images of a split: (knob, split index 0 train / 1 test).
IMAGE_COUNTS = (("n_train", 0), ("n_test", 1), ("n_test_epoch", 1), ("curve_images", 1),
                ("calib_images", 0), ("hessian_images", 0), ("timing_images", 1))


def check_relations(params: Mapping[str, Any]) -> None:
    """The checks that involve several knobs (after profile defaults), before any compute.

    * image counts (``n_train``, ``n_test``, ...) fit in every dataset the notebook uses;
    * ``n_test_epoch`` is at most ``n_test``;
    * ``table_scale`` is one of ``sigma_scales``;
    * the largest swept spread ``sigma_rel_nominal * max(sigma_scales)`` is at most
      :data:`MAX_SIGMA_REL`.

    Raises:
        ParameterError: one line naming the parameters and what is allowed.
    """
    sets = _datasets(params)
    for name, split in IMAGE_COUNTS:
        value = params.get(name)
        if value is None or not sets:
            continue
        for ds in sets:
            size = SPLIT_SIZES[ds][split]
            if value > size:
                which = "training" if split == 0 else "test"
                raise ParameterError(f"{name}={value!r}: must be at most {size:,}, the {ds} "
                                     f"{which} set")
    if params.get("n_test_epoch") and params.get("n_test") and (
            params["n_test_epoch"] > params["n_test"]):
        raise ParameterError(f"n_test_epoch={params['n_test_epoch']!r}: must be at most "
                             f"n_test={params['n_test']!r}")
    scales = params.get("sigma_scales")
    if scales and params.get("table_scale") is not None and (
            float(params["table_scale"]) not in [float(x) for x in scales]):
        raise ParameterError(f"table_scale={params['table_scale']!r}: must be one of "
                             f"sigma_scales={scales!r}")
    if scales and params.get("sigma_rel_nominal") is not None:
        top = float(params["sigma_rel_nominal"]) * max(float(x) for x in scales)
        if top > MAX_SIGMA_REL:
            raise ParameterError(
                f"sigma_scales={scales!r} with sigma_rel_nominal="
                f"{params['sigma_rel_nominal']!r}: the largest sigma/mu is {top:g}; must be "
                f"at most {MAX_SIGMA_REL:g} (a Gaussian resistance model means nothing beyond)")


def resolve(profile: str = DEFAULT_PROFILE, chapter: str | None = None,
            **knobs: Any) -> dict[str, Any]:
    """Check every knob and fill the ``None`` ones from the profile.

    Args:
        profile: ``smoke``, ``book`` or ``paper``.
        chapter: the chapter whose profile settings apply (``None``: the shared ones).
        **knobs: the notebook's parameters.

    Returns:
        The fully resolved parameters, ``PROFILE`` included.
    """
    settings = check_profile(profile, chapter)
    out: dict[str, Any] = {"PROFILE": profile}
    for name, value in knobs.items():
        check_param(name, value, chapter=chapter)
        if value is None and name in settings:
            value = settings[name]
        out[name] = value
    check_relations(out)
    return out


def parse_value(text: str) -> Any:
    """Parse a command-line value: a Python literal (``12``, ``[1, 2]``, ``None``) or a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
