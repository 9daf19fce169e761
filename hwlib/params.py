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

from .errors import ParameterError
from .profiles import CHAPTER_PROFILES, DEFAULT_PROFILE, PROFILES, settings

DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn")


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
    """

    kind: str
    doc: str
    unit: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False

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
            what = f"a non-empty list, each element {what}"
        if self.nullable:
            what += " (or None for the profile's value)"
        return what


KNOBS: dict[str, Knob] = {
    # --- common to every notebook -------------------------------------------------------
    "PROFILE": Knob("str", "execution profile", choices=tuple(PROFILES)),
    "seed": Knob("int", "base random seed; instance i uses seed + i", lo=0),
    "device": Knob("str", "torch device", choices=("auto", "cpu", "cuda"), nullable=True),
    "mc_samples": Knob("int", "Monte Carlo draws per sweep point", lo=1, nullable=True),
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
    "instance_model": Knob("str", "how hardware instances are drawn",
                           choices=("conductance", "resistance")),
    "regimes": Knob("list[str]", "training regimes to run",
                    choices=("ddhr", "ideal", "fixed", "ps_ddhr", "as_ddhr")),
    "table_scale": Knob("float", "variation multiple of Table 1", lo=0, hi=1000),
    "model": Knob("str", "network: binarized MLP or the paper's VGG BNN", choices=("mlp", "vgg"),
                  nullable=True),
    "hidden": Knob("list[int]", "hidden widths of the binarized MLP", lo=1, hi=100_000),
    "width": Knob("float", "channel multiplier of the VGG BNN (1: the paper's)", lo=1e-3, hi=8),
    # --- training --------------------------------------------------------------------------
    "lr": Knob("float", "initial learning rate (Adam, cosine decay)", lo=1e-8, hi=10),
    "batch_size": Knob("int", "mini-batch size", lo=1),
    "n_test_epoch": Knob("int", "test images for the per-epoch curves", lo=1),
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


def check_param(name: str, value: Any, allowed_names: set[str] | None = None) -> None:
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
    knob = KNOBS[name]
    if value is None:
        if knob.nullable:
            return
        raise ParameterError(f"{name}=None: must be {knob.allowed()}")
    if knob.kind.startswith("list["):
        base = knob.kind[5:-1]
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list) or not value:
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
        check_param(name, value)
        if value is None and name in settings:
            value = settings[name]
        out[name] = value
    return out


def parse_value(text: str) -> Any:
    """Parse a command-line value: a Python literal (``12``, ``[1, 2]``, ``None``) or a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
