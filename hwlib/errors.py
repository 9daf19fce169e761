"""Exceptions that carry one clear line for the user, and the checks shared by every chapter."""

from typing import Any


class HwlibError(Exception):
    """Base class: the message is one line naming what is wrong and what is allowed."""


class ParameterError(HwlibError, ValueError):
    """An unknown profile, an unknown parameter name, or a value out of range."""


class DatasetMissingError(HwlibError, FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded."""


class StoreError(HwlibError):
    """A result could not be stored or read back."""


def check_int(name: str, value: Any, lo: int) -> int:
    """Return ``value`` as an int, or raise one line unless it is an int ``>= lo``."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise ParameterError(f"{name}={value!r}: must be an int >= {lo}")
    return int(value)


def check_probability(name: str, value: Any) -> None:
    """Raise one line unless ``value`` (a number, or every entry of an array or tensor) is a
    probability in [0, 1]; NaN is not. The line names the first bad value."""
    import torch

    if isinstance(value, (bool, str)):
        raise ParameterError(f"{name}={value!r}: must be a probability in [0, 1]")
    if isinstance(value, (int, float)):  # the common case, without a tensor
        if not 0 <= value <= 1:
            raise ParameterError(f"{name}={value!r}: must be a probability in [0, 1]")
        return
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ParameterError(f"{name}={value!r}: must be a probability in [0, 1]") from None
    bad = ~((t >= 0) & (t <= 1))
    if bool(bad.any()):
        first = value if isinstance(value, (int, float)) else float(t[bad].flatten()[0])
        raise ParameterError(f"{name}={first!r}: must be a probability in [0, 1]")
